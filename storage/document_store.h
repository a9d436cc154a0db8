#pragma once
// DocumentStore: databases > containers > JSON items in RocksDB, every item
// sealed with its container's data key, every write recorded in an ordered
// change log.
//
// Ownership: Open returns the only owner; destroying it closes RocksDB.
// Thread safety: every method may be called concurrently. Writes to one item
// are serialised (lock striping); database and container changes exclude
// item operations for their duration.
// Durability: a write is durable when its call returns (WAL fsync'd; many
// concurrent writers share one fsync). StoreOptions::sync_writes = false
// trades that for speed: a write then survives a process crash but not a
// power loss or kernel crash.
// Errors (Status codes): InvalidArgument for bad input, TooLarge for an item
// over 2 MiB, NotFound, AlreadyExists, PreconditionFailed for an etag
// mismatch, FailedPrecondition for a wrong master key at open, Corruption for
// stored bytes that fail authentication, IOError/Unavailable for the disk.
// No error leaves a stored item changed or lost.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "crypto/master_key.h"
#include "storage/commands.h"
#include "storage/fence.h"
#include "storage/records.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace bulwark::storage {

constexpr size_t kDefaultPageItems = 100;
constexpr size_t kMaxPageItems = 1000;
constexpr size_t kMaxPageBytes = 4 * 1024 * 1024;  // a page may exceed it by one item

struct StoreOptions {
  std::string path;         // the data directory; created if missing
  bool sync_writes = true;  // fsync the WAL before a write returns
  // Benchmarks only: store items unsealed, to measure what sealing costs. It
  // is recorded at creation; a store never opens in the other mode.
  bool seal_items = true;
  // Benchmarks only: write RocksDB's files in the clear (no page layer).
  // A store never opens in the other mode.
  bool encrypt_files = true;
  // After a data-key rotation (and at open, for one left unfinished), a
  // background thread compacts the container's data so every value is
  // re-sealed under the current version. Tests turn it off to leave
  // re-sealing to flushes and natural compactions.
  bool reseal_in_background = true;
};

struct DatabaseInfo {
  std::string id;
  std::string etag;
  int64_t ts = 0;
  std::vector<std::string> allowed_regions;  // its geo-fence, sorted (storage/fence.h); empty: none
};

struct ContainerInfo {
  std::string database;
  std::string id;
  std::string partition_key_path;
  std::string rid;  // internal id: 8 raw bytes, never reused
  std::string etag;
  int64_t ts = 0;
  // Its geo-fence, sorted: its own, or its database's (storage/fence.h); empty: none.
  std::vector<std::string> allowed_regions;
};

struct ItemResult {
  std::string json;  // the stored item, with _etag and _ts
  std::string etag;
  int64_t ts = 0;
  uint64_t lsn = 0;  // change-log position of the write (0 for reads)
};

struct ListOptions {
  // Canonical partition-key JSON (see CanonicalPartitionKey); all if empty.
  std::optional<std::string> partition_key;
  size_t max_items = kDefaultPageItems;  // 1..kMaxPageItems
  std::string continuation;              // from the previous page; empty for the first
};

// A named secret the store keeps for the node (e.g. an account key).
// The account's keys, by name (Cosmos DB's four).
constexpr std::array<std::string_view, 4> kAccountKeyNames = {"primary", "secondary", "primary-readonly",
                                                              "secondary-readonly"};

struct AccountKeyRecord {
  std::string name;
  uint64_t version = 0;  // raft index of the command that set it
  int64_t created_unix_s = 0;
  crypto::SecretBytes key;
};

struct StoredSecret {
  crypto::SecretBytes value;
  int64_t created_unix_s = 0;
};

// How many of the store's files, and bytes, each store-key version protects.
struct StoreKeyUsage {
  uint32_t version = 0;
  bool current = false;
  uint64_t files = 0;
  uint64_t bytes = 0;
};

// Sealed values under one data-key version of a container.
struct DataKeyVersionUsage {
  uint32_t version = 0;  // 0: values whose sealed header could not be read
  bool current = false;
  uint64_t items = 0;               // values in the items column family
  uint64_t change_log_records = 0;  // sealed item values in the change log
  uint64_t bytes = 0;               // of both
};

// A container's data keys and the values each still protects, from the
// live SST files' properties (see DataKeyUsage::unflushed_values).
struct ContainerKeyUsage {
  std::string database;  // empty for a deleted container whose data is still on disk
  std::string container;
  std::string rid;                            // hex
  uint32_t current_version = 0;               // 0 if the container has no keys any more
  std::vector<DataKeyVersionUsage> versions;  // ascending; always lists the current one
  bool reseal_pending = false;                // a background re-seal is queued or running
};

struct DataKeyUsage {
  std::vector<ContainerKeyUsage> containers;
  // Entries in the items and change-log memtables: not yet counted above.
  // A flush counts them, re-sealing old ones on the way.
  uint64_t unflushed_values = 0;
  // SST files written before usage was recorded in SST properties: their
  // values are not counted (a full compaction rewrites them).
  uint64_t unclassified_files = 0;
  uint64_t resealed = 0;         // values re-sealed since the store opened
  uint64_t reseal_failures = 0;  // since open: values that could not be opened, kept as they were
};

// What applying one WriteCommand did. `status` is the command's own outcome
// (NotFound, AlreadyExists, PreconditionFailed, ... are deterministic: every
// replica reaches the same one).
struct ApplyOutcome {
  Status status;
  bool duplicate = false;  // the request id was seen before: nothing was written again
  std::string etag;        // of the database, container or item written
  int64_t ts = 0;
  uint32_t key_version = 0;              // kRotateDataKey: the new version
  ContainerInfo container;               // kCreateContainer
  uint64_t lsn = 0;                      // change-log position, if a change was recorded
  uint64_t glsn = 0;                     // the GLSN position after it (0 outside replication)
  std::vector<std::string> purged_rids;  // kPurgeContainer: internal ids (hex) whose keys were destroyed
};

// A purge applied here whose traces this node's files may still hold.
struct PendingShred {
  std::string rid;           // hex
  uint64_t purge_index = 0;  // raft index of the purge (0 outside replication)
};

// Where a store stands in the account's replication stream (GLSN order).
// Every account command (IsAccountCommand) applied through replication takes
// the next GLSN: in the write region Apply assigns it (the same on every
// replica, since they apply the same log), in a remote region it comes with
// the shipped command and must be exactly the next one.
struct GeoPosition {
  uint64_t glsn = 0;          // of the last account command applied
  uint64_t epoch = 1;         // the write-region epoch it was written in
  uint64_t source_index = 0;  // its raft index in the region that wrote it
};

struct ItemPage {
  std::vector<std::string> items;  // JSON texts
  std::string continuation;        // empty when there are no more
};

// A regions record is at most this large; "none" versions the absent one.
constexpr size_t kMaxRegionsBytes = 256 << 10;
constexpr std::string_view kNoRegionsVersion = "none";
constexpr size_t kMaxRemovedRegions = 1000;  // removal points remembered
// An installed region image stays at least this long for the replicas
// still to apply its entry (DropRegionImages).
constexpr std::chrono::milliseconds kRegionImageKeep{10 * 60 * 1000};

class DocumentStore {
 public:
  // Opens or creates the store at options.path. A new store records the
  // master key's check value; an existing one refuses any other master key
  // (FailedPrecondition) before changing anything.
  static Result<std::unique_ptr<DocumentStore>> Open(const StoreOptions& options, crypto::MasterKey master_key);
  ~DocumentStore();
  DocumentStore(const DocumentStore&) = delete;
  DocumentStore& operator=(const DocumentStore&) = delete;

  // Databases.
  Result<DatabaseInfo> CreateDatabase(std::string_view db);
  Result<DatabaseInfo> ReadDatabase(std::string_view db) const;
  Result<std::vector<DatabaseInfo>> ListDatabases() const;
  // Deletes the database, its containers and their items.
  Status DeleteDatabase(std::string_view db);

  // Containers. `partition_key_path` is like "/tenant".
  Result<ContainerInfo> CreateContainer(std::string_view db, std::string_view container,
                                        std::string_view partition_key_path);
  Result<ContainerInfo> ReadContainer(std::string_view db, std::string_view container) const;
  Result<std::vector<ContainerInfo>> ListContainers(std::string_view db) const;
  Status DeleteContainer(std::string_view db, std::string_view container);

  // Items. `json` is the item's JSON text; the partition key comes from it.
  Result<ItemResult> CreateItem(std::string_view db, std::string_view container, std::string_view json);
  Result<ItemResult> UpsertItem(std::string_view db, std::string_view container, std::string_view json);
  // Replaces an existing item. `id` must equal the item's id; `if_match`, if
  // not empty, must equal its current etag.
  Result<ItemResult> ReplaceItem(std::string_view db, std::string_view container, std::string_view id,
                                 std::string_view json, std::string_view if_match = {});
  // `partition_key` is the value as JSON text, e.g. "\"acme\"" or "42".
  Result<ItemResult> ReadItem(std::string_view db, std::string_view container, std::string_view partition_key,
                              std::string_view id) const;
  Status DeleteItem(std::string_view db, std::string_view container, std::string_view partition_key,
                    std::string_view id, std::string_view if_match = {});
  Result<ItemPage> ListItems(std::string_view db, std::string_view container, const ListOptions& options) const;

  // ---- Replicated writes (see storage/commands.h) ----
  // Prepare* validate a request and resolve it into a command; nothing is
  // written. Errors: as the direct methods' validation errors.
  //
  // Geo-fences (storage/fence.h): `fence` pins a new database or container
  // to regions (the caller validates the names against the account); a
  // container without one takes its database's, and one with its own must
  // be within its database's (InvalidArgument). Every command of a fenced
  // database or container carries the fence (WriteCommand::fence).
  Result<WriteCommand> PrepareCreateDatabase(std::string_view db, std::string_view fence = {}) const;
  Result<WriteCommand> PrepareDeleteDatabase(std::string_view db) const;
  Result<WriteCommand> PrepareCreateContainer(std::string_view db, std::string_view container,
                                              std::string_view partition_key_path, std::string_view fence = {}) const;
  Result<WriteCommand> PrepareDeleteContainer(std::string_view db, std::string_view container) const;
  Result<WriteCommand> PrepareRotateDataKey(std::string_view db, std::string_view container) const;
  // kind is kCreateItem, kUpsertItem or kReplaceItem (`replace_id` and
  // `if_match` for the latter). Seals the item under the current data key;
  // `stored_json`, if given, receives the item as it will be stored (with
  // _etag and _ts).
  Result<WriteCommand> PrepareItemWrite(WriteCommand::Kind kind, std::string_view db, std::string_view container,
                                        std::string_view json, std::string_view replace_id = {},
                                        std::string_view if_match = {}, std::string* stored_json = nullptr) const;
  Result<WriteCommand> PrepareDeleteItem(std::string_view db, std::string_view container,
                                         std::string_view partition_key, std::string_view id,
                                         std::string_view if_match = {}) const;
  // Applies a command. `index` is its raft log index, recorded with the write
  // (applied_index()); 0 outside replication. With index > 0 an account
  // command also advances geo_position(): one proposed here takes the next
  // GLSN; a shipped one (geo_glsn set) applies only if it is the next GLSN,
  // is skipped as a duplicate (outcome.duplicate) if already applied, and is
  // refused with FailedPrecondition (nothing written) if it leaves a gap. A command whose request id was
  // applied within kDedupWindowMs returns the first outcome, duplicate set.
  // The Result is an error only for a local failure (I/O): the caller must
  // stop applying, since the replicas would otherwise diverge.
  // Deduplication is exact when commands are applied in one sequence (the
  // raft apply loop); concurrent direct calls with one id may both apply.
  Result<ApplyOutcome> Apply(uint64_t index, WriteCommand cmd);
  // The raft index of the last command applied (durable once the WAL is
  // synced: SyncWal). 0 for a store that never applied one.
  uint64_t applied_index() const;
  // The GLSN position as of the applied index (durable with it).
  GeoPosition geo_position() const;
  // Whether this store already holds everything a region image at `image`
  // would bring: it is at or past the image's GLSN in the same history. Not
  // if the image is of a later epoch than this store writes at: then the
  // store's GLSNs past where that epoch began are another history (an old
  // write region's), which the image replaces (the conflict feed keeps them).
  bool HasRegionImagePosition(const GeoPosition& image) const;
  // Records that raft entry `index` (a membership change or an empty entry)
  // was applied, with the membership after it (opaque bytes) if not empty.
  Status RecordApplied(uint64_t index, std::string_view conf_state);
  // The membership last recorded by RecordApplied; empty if none.
  Result<std::string> AppliedConfState() const;
  // The replica set's address book (kSetMember commands): id -> peer address.
  Result<std::map<uint64_t, std::string>> MemberAddresses() const;
  // Makes every write so far durable (fsyncs the WAL).
  Status SyncWal();

  // ---- State images (raft snapshots) ----
  // Streams the replicated state (databases, containers and their data keys,
  // items, the change log, the dedup table, the applied index and the
  // membership) from one consistent point, in chunks of at most `max_chunk`
  // bytes. Data keys travel unwrapped: the receiver wraps them under its own
  // master key, and the peer link is mutually authenticated TLS. Returns the
  // image's applied index. A `region_image` (for another region) leaves out
  // this region's conflict feed. With `fenced_for`, the image leaves out
  // everything geo-fences keep from that region ("": a region in no fence):
  // the fenced databases and containers, their data keys, items and
  // change-log records (the fence records stay: storage/records.h).
  Result<uint64_t> WriteStateImage(size_t max_chunk, const std::function<Status(std::string_view)>& emit,
                                   bool region_image = false, const std::string* fenced_for = nullptr) const;
  // The live geo-fences this store knows: fenced databases, and the fence
  // record of every live fenced container (a region outside a fence has
  // only the record). Errors: Corruption, IOError.
  Result<std::vector<GeoFence>> Fences() const;
  // Whether this store holds anything (live or deleted, keys kept) that a
  // geo-fence keeps out of `region` ("": a region in no fence), i.e. whether
  // an image for that region (fenced_for) differs from the whole one.
  Result<bool> HoldsFencedOutOf(const std::string& region) const;
  // Receiving an image: staged in a scratch column family (data keys wrapped
  // on arrival), then installed. Begin discards any earlier staging.
  Status BeginStateImage();
  Status AddStateImageChunk(std::string_view chunk);  // Corruption for a malformed chunk
  Status FinishStateImage();                          // the staging is complete
  Status AbortStateImage();
  // Backups' key catalogs: splits an image chunk into its data-key records
  // (appended to `keys`) and everything else (appended to `rest`); both are
  // image chunks AddStateImageChunk accepts. With `drop_rids` (hex internal
  // ids), data-key records of those containers are counted in `dropped` and
  // left out; `key_rids`, if given, receives the ids whose keys were kept.
  // Corruption for a malformed chunk.
  static Status SplitImageDataKeys(std::string_view chunk, std::string* rest, std::string* keys,
                                   const std::set<std::string>* drop_rids = nullptr, size_t* dropped = nullptr,
                                   std::set<std::string>* key_rids = nullptr);
  // Restoring a backup whose catalog lost keys to a purge: copies the image
  // chunk to `out` without the records of containers whose internal id (hex)
  // is not in `keyed` (their metadata, items and change-log records: the
  // container was crypto-shredded after the backup), counting them in
  // `dropped`. Corruption for a malformed chunk.
  static Status DropUnkeyedContainers(std::string_view chunk, const std::set<std::string>& keyed, std::string* out,
                                      uint64_t* dropped);
  // Replaces the replicated state with the staged image and returns its
  // applied index. Blocks reads and writes while it runs. Crash-safe: an
  // interrupted install is finished when the store next opens.
  // FailedPrecondition if no complete image is staged.
  Result<uint64_t> InstallStateImage();

  // ---- Region images (catch-up across regions) ----
  // A read region too far behind the write region's log receives a state
  // image of it (WriteStateImage on the write region's leader). Its leader
  // stages it under a fresh id, then proposes kInstallRegionImage; each
  // replica installs it when it applies that entry, fetching the image from
  // a member that has it (WriteRegionImage) if it has none. Staged apart
  // from a raft snapshot (the two may arrive at once), and kept after the
  // install for the other replicas until DropRegionImages.
  // InvalidArgument for a malformed id.
  static std::string NewRegionImageId();  // 32 hex digits, ordered by time
  Status BeginRegionImage(std::string_view id);
  Status AddRegionImageChunk(std::string_view id, std::string_view chunk);  // Corruption for a malformed chunk
  // Completes the staging: the image's position (its GLSN and epoch, and its
  // applied index in the write region as source_index: the stream resumes
  // after it). Corruption if the image held no applied-index record.
  Result<GeoPosition> FinishRegionImage(std::string_view id);
  // The position of a complete staged image; NotFound if there is none.
  Result<GeoPosition> RegionImagePosition(std::string_view id) const;
  // Streams a complete staged image as image chunks (keys unwrapped, as in
  // WriteStateImage). NotFound if this node holds no complete one by that id.
  Status WriteRegionImage(std::string_view id, size_t max_chunk,
                          const std::function<Status(std::string_view)>& emit) const;
  // Replaces the account state with the image, as the state at raft index
  // `index` of this region (its own membership is kept). Crash-safe like
  // InstallStateImage. Returns the new GLSN position. FailedPrecondition if
  // the image is not staged (complete) here.
  Result<GeoPosition> InstallRegionImage(std::string_view id, uint64_t index);
  // Forgets a staged region image (a receiver that will not propose it).
  Status DropRegionImage(std::string_view id);
  // After the raft log was cut through `compacted_through`: drops the images
  // installed at or before it at least `keep` ago (a replica still applying
  // the entry from its own log fetches it meanwhile; one whose log lost it
  // gets a raft snapshot), and those never installed within an hour. A
  // purge's shred waits for the images that may hold its keys to go this way.
  Status DropRegionImages(uint64_t compacted_through, std::chrono::milliseconds keep = kRegionImageKeep);

  // The raft log's column family and the database it lives in, for the
  // replication runner's RaftLogStore. Owned by the store.
  rocksdb::DB* raw_db() const;
  // RocksDB's estimate of the raft log's bytes (SSTs and memtables).
  uint64_t RaftLogBytes() const;
  rocksdb::ColumnFamilyHandle* raft_log_cf() const;
  // Tests only: the "items" or "changelog" column family; null for any other name.
  rocksdb::ColumnFamilyHandle* column_family_for_testing(std::string_view name) const;

  // Keys. A new DEK version seals new writes at once; older values are
  // re-sealed under it by compaction, in the background
  // (StoreOptions::reseal_in_background), and stay readable meanwhile.
  Result<uint32_t> RotateDataKey(std::string_view db, std::string_view container);
  // Per container: how many values each DEK version still seals, i.e. the
  // progress of re-sealing after a rotation. Reads SST properties only (no
  // scan). Empty for a store that does not seal items (benchmark mode).
  Result<DataKeyUsage> DataKeyUsageReport() const;
  std::vector<uint32_t> DataKeyVersions(std::string_view db, std::string_view container) const;
  // DEK versions of every live container, together.
  uint32_t DataKeyVersionCount() const;
  // Re-wraps every key under `new_master` atomically, online. Afterwards the
  // store opens with only the new key.
  Status RotateMasterKey(crypto::MasterKey new_master);
  std::string master_key_id() const;

  // The secret called `name` (e.g. "account-key/primary"); on first use,
  // `initial` if given (it must be `size` bytes), else `size` fresh random
  // bytes. Stored only wrapped by the master key (and
  // re-wrapped by RotateMasterKey). InvalidArgument for a bad name.
  // Small facts this node keeps about itself ("l/<name>" in the meta column
  // family): never replicated, never in a state image, page-encrypted like
  // everything else. Put is synced. Get: NotFound if absent.
  Status PutLocalValue(std::string_view name, std::string_view value);
  Result<std::string> GetLocalValue(std::string_view name) const;
  Result<StoredSecret> LoadOrCreateSecret(std::string_view name, size_t size, std::string_view initial = {});

  // Approximate bytes of live data on disk (SST files of every column family).
  uint64_t ApproximateDiskBytes() const;
  // Adds a store-key version, online: new files use it at once; old files
  // keep theirs until rewritten (Compact rewrites every SST; the WAL and the
  // MANIFEST roll over by themselves). Returns the new version.
  // FailedPrecondition for a store without page encryption.
  Result<uint32_t> RotateStoreKey();
  // Files and bytes under the store directory per store-key version, read
  // from each file's prefix: the progress of a rotation. Files that are not
  // RocksDB's (the key file) are not counted.
  Result<std::vector<StoreKeyUsage>> StoreKeyUsageReport() const;
  // The store-key version new files use (0 for a store without page
  // encryption). From memory: Status calls it often, and the usage report
  // reads every file's prefix.
  uint32_t current_store_key_version() const;

  // ---- Account settings (replicated) ----
  // A change to the IP firewall's client allowlist; `range` must already be
  // canonical (security::ParseCidr, FormatCidr). Apply answers AlreadyExists
  // (allow) or NotFound (deny) when there is nothing to change.
  Result<WriteCommand> PrepareFirewallChange(bool allow, std::string_view range) const;
  // The allowlist's ranges, in the order they were added; empty: open.
  Result<std::vector<std::string>> ClientAllowlist() const;
  // Changes whenever the settings may have changed (cheap; for caches).
  uint64_t settings_generation() const;

  // The account's regions, once changed online (kSetRegions; the server
  // owns the JSON's meaning). nullopt: never changed (the configuration
  // holds them). RegionsVersion names a record for PrepareSetRegions'
  // base_version (kNoRegionsVersion: replacing no record).
  struct RegionsRecord {
    std::string json;
    uint64_t glsn = 0;  // of the command that set it (0 outside replication)
    // Regions removed (the record's "removed" list at each change) -> the
    // GLSN of the change that removed them: their stream ends there.
    std::map<std::string, uint64_t> removed;
  };
  Result<std::optional<RegionsRecord>> Regions() const;
  static std::string RegionsVersion(std::string_view record);
  // The names under "regions" in a record; InvalidArgument if it has none.
  static Result<std::set<std::string>> RegionNames(std::string_view record);
  Result<WriteCommand> PrepareSetRegions(std::string_view record, std::string_view base_version) const;
  // The write region and epoch a regions record names ("write", "epoch";
  // empty / 1 when absent or malformed).
  struct RegionsWriter {
    std::string write;
    uint64_t epoch = 1;
  };
  static RegionsWriter RegionsWriterOf(std::string_view record);
  // The account's write epoch as of the applied index: the regions record's
  // (1 without one). It only grows (a regions change naming a lower one is
  // refused). An account command proposed here stamped with another
  // (WriteCommand::geo_epoch) is refused at apply, FailedPrecondition, and
  // takes no GLSN: this fences an old write region at the change that moved
  // the writes away.
  uint64_t write_epoch() const;
  // Where `epoch` began in this region's log: the GLSN and raft index of the
  // regions change that raised the epoch to it. nullopt if it was not
  // applied here (or an image replaced the state since).
  struct EpochStart {
    uint64_t glsn = 0;
    uint64_t index = 0;
    // The epoch began with a takeover: this region proposed the change itself
    // (the control group promoted it), so another region may hold another
    // write at that GLSN.
    bool takeover = false;
  };
  Result<std::optional<EpochStart>> EpochStartOf(uint64_t epoch) const;

  // ---- Identity and access (replicated; storage/access.cc) ----
  // Sets account key `name` to `key` (kAccountKeyBytes; the caller draws it
  // at random). With only_if_absent, Apply leaves an existing key alone
  // (AlreadyExists). The version Apply gives it is its raft index (or the
  // next LSN outside replication): unique and increasing.
  Result<WriteCommand> PrepareSetAccountKey(std::string_view name, std::string_view key, bool only_if_absent) const;
  // Stores `value` under access key `key` (which starts with "ac/"); with
  // create_only, Apply answers AlreadyExists if the key is present.
  Result<WriteCommand> PrepareAccessPut(std::string_view key, std::string_view value, bool create_only) const;
  // Removes `key` and everything under `key` + "/"; Apply answers NotFound
  // if `key` is absent.
  Result<WriteCommand> PrepareAccessDelete(std::string_view key) const;
  // Every account key, unwrapped. Corruption if a record fails to unwrap.
  Result<std::vector<AccountKeyRecord>> AccountKeys() const;
  // Access records whose key starts with `prefix`, in key order.
  Result<std::vector<std::pair<std::string, std::string>>> AccessRecords(std::string_view prefix) const;

  // ---- Crypto-shredding (docs/storage.md, "Purge") ----
  // Resolves `bulwark container purge`: the live container of that name, if
  // any, and every deleted one whose keys are still kept. NotFound if none.
  Result<WriteCommand> PreparePurgeContainer(std::string_view db, std::string_view container) const;
  // Prepare + Apply(0). Returns the purged internal ids (hex). The keys are
  // gone from the store at once; ShredFiles removes them from the files.
  Result<std::vector<std::string>> PurgeContainer(std::string_view db, std::string_view container);
  Result<std::vector<PendingShred>> PendingShreds() const;
  // The highest purge index among pending shreds; -1 if none is pending.
  // The replication runner compacts its raft log past it (the log holds
  // the purged container's commands, data keys included).
  int64_t max_pending_shred_index() const;
  // Rewrites this node's files so that none holds a purged container's keys
  // or records: a new store-key version, every memtable flushed, every
  // column family compacted to the bottom (the MANIFEST and WAL roll with
  // it), OPTIONS and IDENTITY rewritten, then every older store-key version
  // destroyed. The caller must first have removed the purged commands from
  // anything else in the directory (the raft log). Clears the pending
  // records it covered. Unavailable (retry later) while a state image is
  // staged or a file still uses an old store key; reads and writes go on.
  Status ShredFiles();
  // The last step of a store-key rotation, after Compact(): rewrites OPTIONS
  // and IDENTITY under the current version, waits (up to 10 s) until no file
  // uses an older one, then destroys the older versions (key file and
  // memory). Unavailable if a file still uses one; FailedPrecondition
  // without page encryption.
  Status RetireOldStoreKeys();
  // Store-key versions this node holds (1 once a rotation has finished).
  size_t store_key_versions_held() const;

  // Flushes every memtable and compacts every column family to the bottom,
  // rewriting every SST file (used by key rotation, tests and benchmarks).
  Status Compact();

  // The change log, from `from_lsn` (inclusive), at most `max_records`.
  Result<std::vector<ChangeRecord>> ReadChangeLog(uint64_t from_lsn, size_t max_records) const;
  uint64_t last_lsn() const;

  // The conflict feed (docs/control-group.md): changes this region
  // committed as the write region that the account's history does not have
  // (another region took the writes over before they were shipped). They are
  // kept when the region is rebuilt from the new write region's image
  // (InstallRegionImage), per container, until replayed or discarded.
  struct Conflict {
    std::string id;  // 32 hex digits (the install's raft index, the change's LSN)
    std::string database, container, partition_key, item_id, etag;
    bool deleted = false;  // the change deleted the item
    int64_t ts = 0;        // the write's time (unix seconds, as the item has it)
    uint64_t glsn = 0;     // the GLSN it took in the old history
    uint64_t epoch = 0;    // the epoch it was written at
    int64_t captured_unix_ms = 0;
  };
  // Conflicts of db/container (both empty: of every container), oldest
  // first, at most `max`.
  Result<std::vector<Conflict>> ListConflicts(std::string_view db, std::string_view container, size_t max) const;
  // One conflict and the item as it was written (its JSON; empty for a
  // delete). NotFound; Corruption if this store no longer holds the data
  // key it was sealed with (a container created or re-keyed while the
  // region was cut off).
  Result<std::pair<Conflict, std::string>> GetConflict(std::string_view db, std::string_view container,
                                                       std::string_view id) const;
  // kDiscardConflict (local to the region); InvalidArgument for a malformed id.
  Result<WriteCommand> PrepareDiscardConflict(std::string_view db, std::string_view container,
                                              std::string_view id) const;

  struct Impl;  // opaque; defined in storage/store_impl.h, private to storage/

 private:
  explicit DocumentStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::storage
