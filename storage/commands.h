#pragma once
// WriteCommand: one write, fully resolved by the node that proposes it (the
// leader), so that applying it is deterministic: every replica that applies
// the same commands in the same order reaches the same state.
//
// The proposer validates the request and makes every random or clock-based
// choice: etags, timestamps, a new container's rid and data key, and it seals
// the item. Applying checks only what depends on the state at that point in
// the log (existence, If-Match, the container's rid) and writes.
//
// A command that creates a data key carries the raw key: it lives only in
// the raft log (page-encrypted like every file, and sent over mutual TLS),
// and each replica wraps it under its own master key when it applies it.
//
// Thread safety: values. Encode/Decode are pure; Decode validates everything
// (the bytes come from disk or a peer) and never aborts.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bulwark::storage {

// How long a request id is remembered for deduplication (replicated state,
// expired by the commands' own proposal times, so every replica agrees).
constexpr int64_t kDedupWindowMs = 10 * 60 * 1000;
// A request id longer than this is refused (it is stored per write).
constexpr size_t kMaxRequestIdBytes = 128;

// WriteCommand::geo_epoch of a command proposed in a region that believed
// it was not the write region: never an epoch, so always refused.
constexpr uint64_t kNotWriterEpoch = UINT64_MAX;

struct WriteCommand {
  enum class Kind : uint8_t {
    kCreateDatabase = 1,
    kDeleteDatabase = 2,
    kCreateContainer = 3,
    kDeleteContainer = 4,
    kCreateItem = 5,
    kUpsertItem = 6,
    kReplaceItem = 7,
    kDeleteItem = 8,
    kRotateDataKey = 9,
    // The replica set's address book: member_address for member_id, or
    // (empty address) forget it. Not a document change: no change record.
    kSetMember = 10,
    // Crypto-shredding: deletes the container (if live) and destroys the
    // data keys of it and of every deleted container of that name, with
    // their change-log records. database and container name it.
    kPurgeContainer = 11,
    // The account's IP firewall: add (kFirewallAllow) or remove
    // (kFirewallDeny) `setting`, an address or CIDR range, from the client
    // allowlist. Applied to the list as it is at that point of the log.
    kFirewallAllow = 12,
    kFirewallDeny = 13,
    // Identity and access (format 2). kSetAccountKey: `setting` names the
    // account key, `data_key` carries it raw (each replica wraps it under its
    // own master key); if_match "absent" sets it only if the account has no
    // key of that name (the bootstrap, proposed by whichever node leads).
    kSetAccountKey = 14,
    // kAccessPut: stores `sealed` (a record the server built and validated)
    // under access key `setting`; if_match "create" refuses an existing key.
    // kAccessDelete: removes access key `setting` and every key under
    // `setting` + "/" (a user's permissions go with it); NotFound if absent.
    kAccessPut = 15,
    kAccessDelete = 16,
    // Catch-up across regions (docs/geo-replication.md): replace the account
    // state with region image `setting` (DocumentStore::BeginRegionImage),
    // staged by node member_id, whose position is geo_glsn/geo_epoch/
    // geo_source_index. Applied by the replica, which fetches the image from
    // a member that has it; never by DocumentStore::Apply. Local to a region.
    kInstallRegionImage = 17,
    // The account's regions, changed online (docs/geo-replication.md):
    // `setting` is the whole new topology (JSON, validated by the server),
    // `if_match` the version of the record it replaces ("none": no record
    // yet), so two concurrent changes cannot lose each other: the second
    // applies as FailedPrecondition. An account command: it travels to every region.
    kSetRegions = 18,
    // Removes conflict `setting` (its id) of database/container from the
    // region's conflict feed (DocumentStore::ListConflicts): replayed or
    // discarded by an operator. Local to a region, like the feed.
    kDiscardConflict = 19,
    // What a region outside a geo-fence receives instead of a fenced
    // command (storage/fence.h, FencedOutPlaceholder): the command's stream
    // position and fence, and in `setting` the fence records it creates or
    // drops ("create:<rid hex>", "drop:<rid hex>,.."). No names, no data. An
    // account command: it takes the GLSN the fenced command took.
    kFencedOut = 20,
  };
  Kind kind = Kind::kCreateDatabase;
  std::string request_id;  // the client's idempotency key; may be empty
  int64_t proposed_unix_ms = 0;
  std::string database;
  std::string container;
  std::string partition_key_path;  // kCreateContainer
  std::string rid;                 // the container's raw rid (all container and item kinds)
  std::string data_key;            // kCreateContainer, kRotateDataKey: the raw new key
  std::string etag;
  int64_t ts = 0;
  std::string partition_key;  // canonical JSON (item kinds)
  std::string item_id;
  std::string sealed;          // the sealed item record (create, upsert, replace)
  std::string if_match;        // replace, delete
  uint64_t member_id = 0;      // kSetMember
  std::string member_address;  // kSetMember: "ip:port" of its peer port; empty to forget
  std::string setting;         // firewall: the range; access kinds: the key (command format 2 only)
  // Geo-replication (command format 3): geo_glsn is set on a command that a
  // remote region received from the write region's stream; 0 on a command
  // proposed in its own region. Apply applies a shipped command only at the
  // next GLSN (see DocumentStore::geo_position). geo_epoch is the epoch it
  // was written at; on an account command proposed here (geo_glsn 0) it is
  // the epoch at which the proposer believed its region was the write
  // region (kNotWriterEpoch: it believed it was not), and Apply refuses it
  // unless that is the account's epoch then (DocumentStore::write_epoch);
  // 0: not stamped (no geo-replication).
  uint64_t geo_glsn = 0;
  uint64_t geo_epoch = 0;
  uint64_t geo_source_index = 0;  // its raft index in the write region
  // Geo-fencing (command format 4): the regions the command's database or
  // container is pinned to (storage/fence.h; empty: not fenced), stamped by
  // the proposer. The write region's stream sends a region outside it a
  // kFencedOut placeholder instead. kDeleteDatabase and kPurgeContainer
  // list in `setting` ("drop:<rid hex>,..") the fenced containers they
  // drop, so that regions outside those fences drop their fence records.
  std::string fence;

  std::string Encode() const;
  static Result<WriteCommand> Decode(std::string_view bytes);
  // Wipes data_key (called once the command is encoded or applied).
  void WipeKey();
};

std::string_view CommandKindName(WriteCommand::Kind k);

// True for the commands that belong to the account and travel to every
// region in GLSN order: everything but the replica set's own address book
// (kSetMember), region-image installs and the conflict feed, which are local
// to a region.
inline bool IsAccountCommand(WriteCommand::Kind k) {
  return k != WriteCommand::Kind::kSetMember && k != WriteCommand::Kind::kInstallRegionImage &&
         k != WriteCommand::Kind::kDiscardConflict;
}

}  // namespace bulwark::storage
