// Crypto-shredding: `bulwark container purge`. The replicated part (the
// purge command) destroys a container's data keys and records in the store;
// the local part (ShredFiles) rewrites this node's files until none holds
// them, then destroys every store-key version that could read the files
// deleted on the way. docs/storage.md ("Purge") states the guarantee.

#include <chrono>
#include <set>
#include <thread>

#include <rocksdb/env.h>
#include <rocksdb/write_batch.h>

#include "common/coding.h"
#include "crypto/secret.h"
#include "storage/item_rules.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

// How long ShredFiles waits for RocksDB to delete the files a flush and a
// full compaction made obsolete (old WAL, MANIFEST, OPTIONS) before it
// reports Unavailable and lets the caller retry.
constexpr auto kObsoleteFilesWait = std::chrono::seconds(10);
constexpr std::string_view kWalRollKey = "s/wal-roll";  // its value: when it was last written

std::string PendingShredKey(std::string_view rid_hex) {
  return std::string(kPendingShredMetaPrefix) + std::string(rid_hex);
}

rocksdb::Slice AsSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

// Rewrites a small RocksDB file RocksDB reads only at open (IDENTITY) so it
// is encrypted under the current store key: a copy, then an atomic rename.
Status RewriteThroughEnv(rocksdb::Env* env, const std::string& path) {
  std::string data;
  rocksdb::Status s = rocksdb::ReadFileToString(env, path, &data);
  if (s.IsNotFound() || s.IsPathNotFound()) return Status::Ok();
  BULWARK_RETURN_IF_ERROR(FromRocks(s, "cannot read " + path));
  const std::string tmp = path + ".shredtmp";
  BULWARK_RETURN_IF_ERROR(
      FromRocks(rocksdb::WriteStringToFile(env, data, tmp, /*should_sync=*/true), "cannot write " + tmp));
  return FromRocks(env->RenameFile(tmp, path), "cannot replace " + path);
}

// The "p/" records.
Result<std::vector<PendingShred>> ReadPendingShreds(const DocumentStore::Impl& s) {
  std::vector<PendingShred> out;
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.meta));
  const std::string prefix(kPendingShredMetaPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view v = it->value().ToStringView();
    PendingShred p;
    p.rid = it->key().ToString().substr(prefix.size());
    if (!GetFixed64(v, p.purge_index)) return Status::Corruption("malformed pending-shred record");
    out.push_back(std::move(p));
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read metadata"));
  return out;
}

}  // namespace

Result<CommandEffect> PurgeContainerEffect(DocumentStore::Impl& s, const WriteCommand& cmd, uint64_t index) {
  CommandEffect e;
  std::vector<std::string> rids;                        // hex
  AppendFenceRecordDrops(s, cmd.setting, e.mutations);  // for a region outside the live one's fence
  auto live = s.FindContainer(cmd.database, cmd.container);
  if (live.ok()) {
    AppendContainerRemoval(s, **live, /*keep_keys=*/false, e.mutations);
    e.dropped_containers.push_back(ContainerCacheKey(cmd.database, cmd.container));
    rids.push_back((*live)->info.rid);
  } else if (live.status().code() != Code::kNotFound) {
    return live.status();
  }
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.meta));
  // The container's conflict feed goes with it (its values are sealed under
  // the keys destroyed below anyway).
  const std::string conflicts = ConflictPrefix(cmd.database, cmd.container);
  for (it->Seek(conflicts); it->Valid() && it->key().starts_with(conflicts); it->Next()) {
    e.mutations.push_back({Mutation::Kind::kDelete, s.meta, it->key().ToString(), {}});
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the conflict feed"));
  const std::string tomb = DeletedContainerPrefix(cmd.database, cmd.container);
  for (it->Seek(tomb); it->Valid() && it->key().starts_with(tomb); it->Next()) {
    rids.push_back(it->key().ToString().substr(tomb.size()));
    e.mutations.push_back({Mutation::Kind::kDelete, s.meta, it->key().ToString(), {}});
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read metadata"));
  if (rids.empty()) {
    e.outcome.status = Status::NotFound("container '" + cmd.container + "' in database '" + cmd.database +
                                        "' has nothing to purge: it does not exist, and no deleted container of that "
                                        "name still has keys");
    return e;
  }
  std::set<std::string> raw_rids;
  for (const std::string& rid : rids) {
    BULWARK_ASSIGN_OR_RETURN(std::string raw, crypto::HexDecode(rid));
    raw_rids.insert(std::move(raw));
    for (uint32_t v : s.keyring.Versions(rid)) {
      e.mutations.push_back({Mutation::Kind::kDelete, s.meta, DataKeyMetaKey(rid, v), {}});
    }
    std::string idx;
    PutFixed64(idx, index);
    e.mutations.push_back({Mutation::Kind::kPut, s.meta, PendingShredKey(rid), std::move(idx)});
  }
  // The change log holds these containers' names, ids, partition keys and
  // sealed values: remove their records (readers see LSN gaps). One pass
  // over the whole log: a purge is rare, and the log is not indexed by
  // container.
  std::unique_ptr<rocksdb::Iterator> log(s.db->NewIterator(rocksdb::ReadOptions(), s.changelog));
  for (log->SeekToFirst(); log->Valid(); log->Next()) {
    BULWARK_ASSIGN_OR_RETURN(uint64_t lsn, ParseLsnKey(log->key().ToStringView()));
    BULWARK_ASSIGN_OR_RETURN(ChangeRecord rec, ChangeRecord::Decode(lsn, log->value().ToStringView()));
    if (raw_rids.count(rec.container_rid) > 0) {
      e.mutations.push_back({Mutation::Kind::kDelete, s.changelog, log->key().ToString(), {}});
    }
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(log->status(), "cannot read the change log"));
  e.change.emplace();
  e.change->op = ChangeOp::kPurgeContainer;
  e.change->database = cmd.database;
  e.change->container_rid = *raw_rids.begin();
  e.change->ts = cmd.ts;
  e.outcome.ts = cmd.ts;
  e.outcome.purged_rids = rids;
  e.purged_rids = std::move(rids);
  return e;
}

Status RefreshPendingShreds(DocumentStore::Impl& s) {
  BULWARK_ASSIGN_OR_RETURN(std::vector<PendingShred> pending, ReadPendingShreds(s));
  int64_t max = -1;
  for (const auto& p : pending) max = std::max(max, static_cast<int64_t>(p.purge_index));
  s.max_pending_shred_index.store(max);
  return Status::Ok();
}

Result<WriteCommand> DocumentStore::PreparePurgeContainer(std::string_view db, std::string_view container) const {
  BULWARK_RETURN_IF_ERROR(ValidateId(db, "database id"));
  BULWARK_RETURN_IF_ERROR(ValidateId(container, "container id"));
  std::shared_lock lock(impl_->ddl_mu);
  WriteCommand c;
  c.kind = WriteCommand::Kind::kPurgeContainer;
  c.database = db;
  c.container = container;
  c.ts = NowUnixSeconds();
  // Geo-fences: the purge must reach every region that holds one of the
  // containers it destroys. If one of them is not fenced, that is every
  // region (no fence); else the union of their fences.
  std::vector<std::string> fences;
  auto live = impl_->FindContainer(db, container);
  if (live.ok()) {
    fences.push_back((*live)->fence);
    if (!(*live)->fence.empty()) c.setting = "drop:" + (*live)->info.rid;
  }
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
  const std::string tomb = DeletedContainerPrefix(db, container);
  for (it->Seek(tomb); it->Valid() && it->key().starts_with(tomb); it->Next()) {
    fences.push_back(it->value().ToString());
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read metadata"));
  if (fences.empty()) {
    return Status::NotFound("container '" + std::string(container) + "' in database '" + std::string(db) +
                            "' has nothing to purge");
  }
  std::vector<std::string> all;
  for (const auto& f : fences) {
    if (f.empty()) return c;  // everywhere
    for (auto& r : SplitFence(f)) all.push_back(std::move(r));
  }
  c.fence = JoinFence(std::move(all));
  return c;
}

Result<std::vector<std::string>> DocumentStore::PurgeContainer(std::string_view db, std::string_view container) {
  BULWARK_ASSIGN_OR_RETURN(WriteCommand cmd, PreparePurgeContainer(db, container));
  BULWARK_ASSIGN_OR_RETURN(ApplyOutcome out, Apply(0, std::move(cmd)));
  BULWARK_RETURN_IF_ERROR(out.status);
  return out.purged_rids;
}

Result<std::vector<PendingShred>> DocumentStore::PendingShreds() const { return ReadPendingShreds(*impl_); }

int64_t DocumentStore::max_pending_shred_index() const { return impl_->max_pending_shred_index.load(); }

Status DocumentStore::RetireOldStoreKeys() {
  Impl& s = *impl_;
  if (!s.options.encrypt_files) return Status::FailedPrecondition("this store has no page encryption");
  // A write into the live WAL, then a flush: RocksDB moves to a new WAL file
  // (under the current key). Without the write a flush of empty memtables
  // keeps the live WAL, which may predate the rotation (a WAL that was empty
  // at open stays the live one).
  BULWARK_RETURN_IF_ERROR(
      FromRocks(s.db->Put(rocksdb::WriteOptions(), s.meta, AsSlice(kWalRollKey), std::to_string(NowUnixSeconds())),
                "cannot write"));
  // RocksDB finds some obsolete files (a WAL that was empty when the store
  // opened) only in a full directory scan, every 6 hours by default: ask for
  // one with this flush.
  const uint64_t scan_period = s.db->GetDBOptions().delete_obsolete_files_period_micros;
  BULWARK_RETURN_IF_ERROR(
      FromRocks(s.db->SetDBOptions({{"delete_obsolete_files_period_micros", "0"}}), "cannot set options"));
  rocksdb::FlushOptions flush;
  flush.wait = true;
  const rocksdb::Status flushed = s.db->Flush(flush, s.handles);
  BULWARK_RETURN_IF_ERROR(
      FromRocks(s.db->SetDBOptions({{"delete_obsolete_files_period_micros", std::to_string(scan_period)}}),
                "cannot set options"));
  BULWARK_RETURN_IF_ERROR(FromRocks(flushed, "flush failed"));
  // RocksDB keeps the two newest OPTIONS files and writes one only when an
  // option changes: change a harmless one there and back.
  const unsigned period = s.db->GetDBOptions().stats_dump_period_sec;
  for (unsigned v : {period + 1, period}) {
    BULWARK_RETURN_IF_ERROR(
        FromRocks(s.db->SetDBOptions({{"stats_dump_period_sec", std::to_string(v)}}), "cannot set options"));
  }
  BULWARK_RETURN_IF_ERROR(RewriteThroughEnv(s.store_env.env.get(), s.options.path + "/IDENTITY"));
  const uint32_t current = s.store_env.provider->current_version();
  const auto deadline = std::chrono::steady_clock::now() + kObsoleteFilesWait;
  while (true) {
    BULWARK_ASSIGN_OR_RETURN(std::vector<StoreFileKey> files, ReadStoreFileKeys(s.options.path));
    std::vector<std::string> old;
    for (const StoreFileKey& f : files) {
      if (f.version != current) old.push_back(f.name + " (v" + std::to_string(f.version) + ")");
    }
    if (old.empty()) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string names;
      for (const auto& n : old) names += (names.empty() ? "" : ", ") + n;
      return Status::Unavailable("files still use older store keys: " + names + "; retry after they are rewritten");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // No file needs an older store key: destroy them. Deleted files' blocks
  // that the device still holds can no longer be decrypted.
  std::unique_lock lock(s.ddl_mu);  // the key file's one writer
  BULWARK_ASSIGN_OR_RETURN(auto key_file, ReadStoreKeyFile(s.options.path));
  if (!key_file) return Status::Corruption("the store-key file is missing");
  if (key_file->current != current) return Status::Unavailable("the store key was rotated meanwhile; retry");
  std::vector<StoreKeyRecord> keep;
  for (auto& r : key_file->keys) {
    if (r.version == key_file->current) keep.push_back(std::move(r));
  }
  if (keep.empty()) return Status::Corruption("the store-key file has no current key");
  if (keep.size() == key_file->keys.size()) return Status::Ok();
  key_file->keys = std::move(keep);
  BULWARK_RETURN_IF_ERROR(WriteStoreKeyFile(s.options.path, *key_file));
  s.store_env.provider->RetireStoreKeys({});
  return Status::Ok();
}

size_t DocumentStore::store_key_versions_held() const {
  return impl_->options.encrypt_files ? impl_->store_env.provider->key_count() : 0;
}

Status DocumentStore::ShredFiles() {
  Impl& s = *impl_;
  std::lock_guard shred(s.shred_mu);
  BULWARK_ASSIGN_OR_RETURN(std::vector<PendingShred> pending, PendingShreds());
  if (pending.empty()) return Status::Ok();
  // A state image staged before the purge may hold the purged data keys; it
  // is installed or discarded first, then the compaction drops it.
  uint64_t purge_index = 0;
  for (const auto& p : pending) purge_index = std::max(purge_index, p.purge_index);
  BULWARK_RETURN_IF_ERROR(StagingHoldsPurgedKeys(s, purge_index));
  if (s.options.encrypt_files) BULWARK_RETURN_IF_ERROR(RotateStoreKey().status());
  // Every SST rewritten without the deleted records; the MANIFEST rolls with
  // each version change (max_manifest_file_size).
  BULWARK_RETURN_IF_ERROR(Compact());
  if (s.options.encrypt_files) BULWARK_RETURN_IF_ERROR(RetireOldStoreKeys());
  rocksdb::WriteBatch done;
  for (const auto& p : pending) {
    BULWARK_RETURN_IF_ERROR(FromRocks(done.Delete(s.meta, PendingShredKey(p.rid)), "batch delete"));
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  BULWARK_RETURN_IF_ERROR(FromRocks(s.db->Write(sync, &done), "cannot record the finished shred"));
  return RefreshPendingShreds(s);
}

}  // namespace bulwark::storage
