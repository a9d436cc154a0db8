#pragma once
// On-disk encodings of the document store: keys of every column family, the
// item record inside a sealed value, change-log records and continuation
// tokens. Pure functions; thread-safe.
//
// Column families and keys:
//   meta       "d/<db>"                 database metadata (JSON)
//              "c/<db>/<container>"     container metadata (JSON, holds the rid)
//              "k/<rid>/<u32 BE ver>"   a wrapped data key (WrappedDataKey)
//              "s/format", "s/keycheck" store format and master-key check
//              "x/<name>"               a node-local secret
//              "a/applied", "a/conf", "r/<id>", "q/<ms><id>", "m/<id>"  replication state
//   raftlog    the raft log (replication/raft_log_store.h)
//   items      <rid 8 B><u32 BE pk len><pk canonical JSON><id>  ->  sealed item record
//   changelog  <u64 BE lsn>             ->  ChangeRecord
// Names may not contain '/', so the meta prefixes never collide. The item key
// is length-prefixed so one partition's keys form a contiguous range.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bulwark::storage {

constexpr size_t kContainerRidBytes = 8;
constexpr size_t kMaxContinuationBytes = 8192;

std::string DatabaseMetaKey(std::string_view db);
std::string ContainerMetaKey(std::string_view db, std::string_view container);
std::string ContainerMetaPrefix(std::string_view db);  // every container of db
std::string DataKeyMetaKey(std::string_view rid_hex, uint32_t version);
constexpr std::string_view kDataKeyMetaPrefix = "k/";
constexpr std::string_view kDatabaseMetaPrefix = "d/";
constexpr std::string_view kContainerMetaPrefixAll = "c/";
constexpr std::string_view kSecretMetaPrefix = "x/";
// Replication state, part of the replicated state image:
constexpr std::string_view kAppliedIndexKey = "a/applied";  // u64: raft index of the last applied command
constexpr std::string_view kAppliedConfKey = "a/conf";      // the membership as of the applied index
constexpr std::string_view kDedupMetaPrefix = "r/";         // "r/<request id>" -> the first outcome
constexpr std::string_view kDedupExpiryMetaPrefix = "q/";   // "q/<u64 BE ms><request id>" -> ""
constexpr std::string_view kMemberMetaPrefix = "m/";        // "m/<u64 BE id>" -> peer address
// "t/<db>/<container>/<rid hex>" -> its fence ("" if none): a deleted
// container whose data keys are kept (its change-log records are still
// sealed under them) until a purge.
constexpr std::string_view kDeletedContainerMetaPrefix = "t/";
// Local, not replicated: "p/<rid hex>" -> u64 raft index of the purge (0
// outside replication). Files on this node may still hold that container's
// keys; the shred job clears the record once none does.
constexpr std::string_view kPendingShredMetaPrefix = "p/";
// The account's settings, replicated: "f/client-allowlist" -> the IP
// firewall's ranges, one per line (absent: open).
constexpr std::string_view kSettingsMetaPrefix = "f/";
constexpr std::string_view kClientAllowlistKey = "f/client-allowlist";
constexpr std::string_view kRegionsKey = "f/regions";           // the account's regions (JSON; DocumentStore::Regions)
constexpr std::string_view kRegionsGlsnKey = "f/regions-glsn";  // u64: the GLSN that set them
constexpr std::string_view kRegionsRemovedKey = "f/regions-removed";  // JSON: region -> GLSN of its removal
// This region's, not replicated across regions (an "a/" record, left out of
// region images): "a/epoch/<u64 BE epoch>" -> u64 GLSN | u64 raft index of
// the regions change that began that epoch here.
constexpr std::string_view kEpochStartMetaPrefix = "a/epoch/";
// Where each epoch began in the account's history, replicated with the
// account (it travels in region images, unlike a/epoch/): "f/epoch/<u64 BE
// epoch>" -> u64 GLSN | u8 takeover (the new write region proposed the
// change itself). What the conflict feed compares an old write region with.
constexpr std::string_view kAccountEpochStartPrefix = "f/epoch/";
// Geo-fences (storage/fence.h), replicated to every region, the regions
// outside a fence included (by its placeholders): "f/fence/<rid hex>" ->
// the fence of a live fenced container. A region outside it holds nothing
// else of that container; the record is how it knows it must never take
// the account's writes while the container lives (docs/geo-fencing.md).
constexpr std::string_view kFenceMetaPrefix = "f/fence/";
std::string FenceMetaKey(std::string_view rid_hex);
// Identity and access, replicated (docs/security.md):
//   "ak/<name>" -> u64 version | i64 created | the account key wrapped by
//                  this node's master key (each replica wraps its own copy)
//   "ac/..."    -> users, permissions, roles, assignments, issuer keys and
//                  access settings, as records the server builds
constexpr std::string_view kAccountKeyMetaPrefix = "ak/";
constexpr std::string_view kAccessMetaPrefix = "ac/";
// A database's users (and, under each, its permissions): "ac/u/<db>/".
std::string AccessUserPrefix(std::string_view db);
constexpr std::string_view kLocalValueMetaPrefix = "l/";  // node-local facts (DocumentStore::PutLocalValue)
constexpr std::string_view kFormatKey = "s/format";
constexpr std::string_view kKeyCheckKey = "s/keycheck";

std::string DeletedContainerKey(std::string_view db, std::string_view container, std::string_view rid_hex);
std::string DeletedContainerPrefix(std::string_view db, std::string_view container);

// Parses "k/<rid>/<ver>"; false if malformed.
bool ParseDataKeyMetaKey(std::string_view key, std::string& rid_hex, uint32_t& version);

// `rid` is the container's raw 8-byte internal id.
std::string ItemKey(std::string_view rid, std::string_view partition_key, std::string_view id);
std::string ItemPartitionPrefix(std::string_view rid, std::string_view partition_key);
// Splits an item key into its parts (views into `key`); false if malformed.
bool ParseItemKey(std::string_view key, std::string_view& rid, std::string_view& partition_key, std::string_view& id);

std::string LsnKey(uint64_t lsn);
Result<uint64_t> ParseLsnKey(std::string_view key);

// The plaintext inside a sealed item: etag and timestamp first so a
// conditional write checks the etag without parsing the JSON.
struct ItemRecord {
  std::string etag;
  int64_t ts = 0;
  std::string body;  // the item's JSON, system properties included
};
std::string EncodeItemRecord(std::string_view etag, int64_t ts, std::string_view body);
Result<ItemRecord> DecodeItemRecord(std::string_view plaintext);
// The same, reusing `plaintext`'s buffer for the body (no second allocation).
Result<ItemRecord> DecodeItemRecord(std::string&& plaintext);

enum class ChangeOp : uint8_t {
  kCreateDatabase = 1,
  kDeleteDatabase = 2,
  kCreateContainer = 3,
  kDeleteContainer = 4,
  kPutItem = 5,  // create, upsert and replace
  kDeleteItem = 6,
  kRotateDataKey = 7,
  // A container's keys were destroyed; its earlier change-log records were
  // removed (LSN gaps). Carries only the rid: the name is gone too.
  kPurgeContainer = 8,
};

// One entry of the ordered change log. Item values stay sealed.
struct ChangeRecord {
  uint64_t lsn = 0;
  ChangeOp op = ChangeOp::kPutItem;
  std::string database;
  std::string container;
  std::string container_rid;  // raw 8 bytes; empty for database ops
  std::string partition_key;
  std::string item_id;
  std::string etag;
  int64_t ts = 0;
  std::string sealed_value;  // kPutItem only
  // The GLSN the change took (geo-replication; 0 outside it): which changes
  // a write region made after another took over (the conflict feed).
  uint64_t glsn = 0;

  std::string Encode() const;
  static Result<ChangeRecord> Decode(uint64_t lsn, std::string_view bytes);
};

// The conflict feed (docs/control-group.md): changes an old write region
// had committed at GLSNs the account's history does not have (another
// region took the writes over before they were shipped), kept when the
// region is rebuilt from the new write region's image. Region-local meta:
// "a/conflict/<db>\0<container>\0<u64 BE install index><u64 BE lsn>".
constexpr std::string_view kConflictMetaPrefix = "a/conflict/";
std::string ConflictPrefix(std::string_view db, std::string_view container);
struct ConflictRecord {
  uint64_t epoch = 0;            // the epoch it was written at
  int64_t captured_unix_ms = 0;  // when the region was rebuilt
  ChangeRecord change;           // as the change log had it (lsn, glsn, item, sealed value)
  std::string Encode() const;
  static Result<ConflictRecord> Decode(std::string_view bytes);
};

// Continuation tokens are opaque to clients: base64 of a format byte and the
// internal key of the last item returned.
std::string EncodeContinuation(std::string_view last_key);
Result<std::string> DecodeContinuation(std::string_view token);

}  // namespace bulwark::storage
