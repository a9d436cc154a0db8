#pragma once
// Private to storage/: the state behind DocumentStore, shared by
// document_store.cc (open, databases, containers, keys, change log) and
// item_ops.cc (items).
//
// Invariants:
//   - every container in `containers` has its meta record and at least one
//     DEK version in the keyring, both durable;
//   - a DEK version is durable before any item sealed under it is written
//     (rotation holds ddl_mu exclusively while it commits);
//   - change-log LSNs are dense and in commit order (CommitQueue).
// Locking order: ddl_mu, then one item stripe, then the CommitQueue's mutex.

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "crypto/keyring.h"
#include "storage/commit_queue.h"
#include "storage/document_store.h"
#include "storage/reseal.h"
#include "storage/store_keys.h"

namespace bulwark::storage {

constexpr size_t kItemLockStripes = 256;
constexpr size_t kMaxChangeLogRead = 10'000;

struct CachedContainer {
  ContainerInfo info;   // info.rid is the hex form
  std::string rid_raw;  // 8 bytes, the item-key prefix
  std::string fence;    // info.allowed_regions, joined (WriteCommand::fence)
};

struct DocumentStore::Impl {
  explicit Impl(StoreOptions opts, crypto::MasterKey master) : options(std::move(opts)), keyring(std::move(master)) {}
  ~Impl();

  StoreOptions options;
  // Declared before db: the page layer and the re-seal compaction filter use
  // it, so it must outlive the DB.
  crypto::Keyring keyring;
  StoreEnv store_env;  // declared before db: it must outlive it
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // owned; destroyed before db
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  rocksdb::ColumnFamilyHandle* items = nullptr;
  rocksdb::ColumnFamilyHandle* changelog = nullptr;
  rocksdb::ColumnFamilyHandle* raftlog = nullptr;  // written only by the replication runner
  rocksdb::ColumnFamilyHandle* staging = nullptr;  // a state image being received
  std::unique_ptr<CommitQueue> queue;
  // Bumped by the re-seal compaction filters (which share it).
  std::shared_ptr<ResealCounters> reseal_counters = std::make_shared<ResealCounters>();
  // Compacts rotated containers' data; null unless options.reseal_in_background.
  // Stopped first in ~Impl, since its jobs use db.
  std::unique_ptr<ResealWorker> reseal;

  std::atomic<uint64_t> applied_index{0};  // raft index of the last applied command
  mutable std::mutex geo_mu;
  GeoPosition geo;  // GUARDED_BY(geo_mu); written only by Apply/RecordApplied/installs
  // The highest purge index among this node's pending shreds (0: none
  // pending, or purges applied outside replication only). -1 as "none".
  std::atomic<int64_t> max_pending_shred_index{-1};
  std::mutex shred_mu;  // one ShredFiles at a time
  // Bumped whenever the replicated settings ("f/") may have changed, so
  // readers that cache them (the server's firewall) know to reload.
  std::atomic<uint64_t> settings_generation{1};
  // The regions record's epoch (1 without one): local account commands
  // stamped with another are refused (DocumentStore::write_epoch).
  std::atomic<uint64_t> write_epoch{1};

  mutable std::shared_mutex ddl_mu;
  // "<db>/<container>" -> container. GUARDED_BY(ddl_mu)
  std::map<std::string, std::shared_ptr<const CachedContainer>> containers;
  mutable std::array<std::mutex, kItemLockStripes> item_locks;

  // REQUIRES: ddl_mu held (shared or exclusive).
  Result<std::shared_ptr<const CachedContainer>> FindContainer(std::string_view db, std::string_view container) const;
  std::mutex& ItemLock(std::string_view item_key) const {
    return item_locks[std::hash<std::string_view>{}(item_key) % kItemLockStripes];
  }
  // Seals (or, in benchmark mode, frames) an item record for storage.
  Result<std::string> SealRecord(const CachedContainer& c, std::string_view partition_key, std::string_view id,
                                 std::string_view record) const;
  Result<ItemRecord> OpenRecord(const CachedContainer& c, std::string_view partition_key, std::string_view id,
                                std::string_view stored) const;
  // Point lookup; NotFound if absent.
  Result<std::string> Get(rocksdb::ColumnFamilyHandle* cf, std::string_view key) const;
};

// What one command does, computed under the locks Apply holds. When
// outcome.status is not OK, `mutations` and `change` are empty.
struct CommandEffect {
  ApplyOutcome outcome;
  std::vector<Mutation> mutations;
  std::optional<ChangeRecord> change;
  std::vector<std::string> dropped_containers;  // cache keys to forget once committed
  std::vector<std::string> purged_rids;         // hex: DEKs to forget once committed
  bool settings_changed = false;                // an "f/" record: bump settings_generation
  uint64_t write_epoch = 0;                     // a regions change: the account's epoch after it
  std::shared_ptr<const CachedContainer> added_container;
};
// REQUIRES: ddl_mu held exclusively. `index` is the command's raft index.
Result<CommandEffect> DdlCommandEffect(DocumentStore::Impl& s, const WriteCommand& cmd, uint64_t index);
// REQUIRES: ddl_mu held exclusively.
Result<CommandEffect> FirewallEffect(DocumentStore::Impl& s, const WriteCommand& cmd);
// `glsn`: the GLSN the change takes (where removed regions stop); `index`:
// its raft index (where a new epoch begins in this region's log).
Result<CommandEffect> SetRegionsEffect(DocumentStore::Impl& s, const WriteCommand& cmd, uint64_t glsn, uint64_t index);
// Reads the account's write epoch from the regions record into s.write_epoch
// (at open and after an install).
Status LoadWriteEpoch(DocumentStore::Impl& s);
// REQUIRES: ddl_mu held exclusively (storage/access.cc).
Result<CommandEffect> SetAccountKeyEffect(DocumentStore::Impl& s, const WriteCommand& cmd, uint64_t index);
Result<CommandEffect> AccessEffect(DocumentStore::Impl& s, const WriteCommand& cmd);
Result<CommandEffect> DiscardConflictEffect(DocumentStore::Impl& s, const WriteCommand& cmd);
// Region image installs: the item changes this store made at GLSNs from the
// one where the epoch after its own began in the image (`staged_meta`: the
// staged image's meta prefix; its f/epoch/ record), as conflict records in
// `batch`, keyed by the install's raft `index`, stamped `captured_ms`. Only
// of containers the image keeps keys for (`keyed`, rid hex: a container
// purged meanwhile leaves nothing behind). Returns how many; none if the
// store is not ahead of that point.
Result<size_t> CaptureConflicts(DocumentStore::Impl& s, const std::string& staged_meta, uint64_t index,
                                int64_t captured_ms, const std::set<std::string>& keyed, rocksdb::WriteBatch& batch);
std::string EpochStartKey(uint64_t epoch);
// An account key record's value: u64 version | i64 created | payload (the
// wrapped key on disk; the raw key inside a state image).
std::string AccountKeyContext(std::string_view name);
std::string EncodeAccountKeyValue(uint64_t version, int64_t created, std::string_view payload);
bool DecodeAccountKeyValue(std::string_view value, uint64_t& version, int64_t& created, std::string_view& payload);
// REQUIRES: ddl_mu held exclusively.
Result<CommandEffect> PurgeContainerEffect(DocumentStore::Impl& s, const WriteCommand& cmd, uint64_t index);
// A database's meta record ("d/<db>", JSON); Corruption if malformed.
Result<DatabaseInfo> ParseDatabase(std::string_view text);
// Mutations that remove one container and everything in it. With keep_keys
// its data keys stay (its change-log records are sealed under them), noted
// by a deleted-container record, until a purge destroys them.
void AppendContainerRemoval(const DocumentStore::Impl& s, const CachedContainer& c, bool keep_keys,
                            std::vector<Mutation>& m);
// Deletes the fence records a "drop:<rid hex>,.." setting lists (storage/fence.h).
void AppendFenceRecordDrops(const DocumentStore::Impl& s, std::string_view setting, std::vector<Mutation>& m);
// Recomputes max_pending_shred_index from the "p/" records.
Status RefreshPendingShreds(DocumentStore::Impl& s);
// REQUIRES: ddl_mu held shared and the item's lock stripe held.
Result<CommandEffect> ItemCommandEffect(DocumentStore::Impl& s, const WriteCommand& cmd);
// The container a command was prepared against: NotFound if it is gone or
// was re-created under another rid since. REQUIRES: ddl_mu held.
Result<std::shared_ptr<const CachedContainer>> CommandContainer(const DocumentStore::Impl& s, const WriteCommand& cmd);
std::string ContainerCacheKey(std::string_view db, std::string_view container);
struct AppliedRecord {
  uint64_t index = 0;
  GeoPosition geo;
};
// The "a/applied" value: u64 index, then u64 glsn | u64 epoch | u64 source
// index (a record of 8 bytes predates geo-replication: GLSN 0, epoch 1).
std::string EncodeAppliedRecord(const AppliedRecord& r);
Result<AppliedRecord> DecodeAppliedRecord(std::string_view v);
Result<AppliedRecord> LoadAppliedIndex(const DocumentStore::Impl& s);
// Publishes what is now durable in "a/applied": the GLSN position, then the
// applied index (readers wait on the index).
void PublishApplied(DocumentStore::Impl& s, const AppliedRecord& r);
Result<uint64_t> LastLsn(const DocumentStore::Impl& s);
// (Re)loads the keyring and the container cache from the meta column family.
// REQUIRES: ddl_mu held exclusively, or no other user yet (Open).
Status LoadKeysAndContainers(DocumentStore::Impl& s);
// Queues a background re-seal for every container whose data the live SSTs
// show under a data-key version older than its current one (a rotation that
// an earlier run did not finish). REQUIRES: ddl_mu held, or no other user yet.
Status ScheduleResealWhereNeeded(DocumentStore::Impl& s);
// Compacts one container's items (and the change log) until no value is left
// under an old version, no pass makes progress, or `canceled`.
Status ResealContainer(DocumentStore::Impl& s, const std::string& rid, std::atomic<bool>& canceled);
// Finishes an image install that a crash interrupted (called by Open).
Status ResumeStateImageInstall(DocumentStore::Impl& s);
// Unavailable while a staged image may hold the keys of a purge at
// `purge_index` (ShredFiles waits for it).
Status StagingHoldsPurgedKeys(const DocumentStore::Impl& s, uint64_t purge_index);
// A master-key rotation: the staged images' keys, wrapped under `next`.
Status RewrapStagedKeys(const DocumentStore::Impl& s, const crypto::MasterKey& next, std::vector<Mutation>& m);

// Shared helpers.
int64_t NowUnixSeconds();
std::string NewEtag();
Status FromRocks(const rocksdb::Status& s, std::string_view what);

}  // namespace bulwark::storage
