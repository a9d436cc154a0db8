#include "replication/raft_log_store.h"

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cassert>
#include <string>
#include <string_view>
#include <utility>

#include "common/coding.h"

namespace bulwark::replication {

namespace {

constexpr std::string_view kEntryPrefix = "e/";
// The first key after every "e/" key ('0' follows '/'), the exclusive end of
// the entry range for iterators and DeleteRange.
constexpr std::string_view kEntryPrefixEnd = "e0";
constexpr std::string_view kHardStateKey = "m/hard";
constexpr std::string_view kSnapshotKey = "m/snap";
constexpr size_t kEntryKeyBytes = kEntryPrefix.size() + 8;
constexpr size_t kHardStateBytes = 3 * 8;
// A stored entry value: u64 term | u8 type, then the data.
constexpr size_t kEntryHeaderBytes = 8 + 1;

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  std::string msg = "raft log: " + std::string(what) + ": " + s.ToString();
  if (s.IsCorruption()) return Status::Corruption(std::move(msg));
  if (s.IsInvalidArgument()) return Status::InvalidArgument(std::move(msg));
  return Status::IOError(std::move(msg));
}

rocksdb::Slice AsSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

std::string EntryKey(uint64_t index) {
  std::string key(kEntryPrefix);
  PutBigEndian64(key, index);
  return key;
}

Result<uint64_t> DecodeEntryKey(std::string_view key) {
  uint64_t index = 0;
  if (key.size() != kEntryKeyBytes || !key.starts_with(kEntryPrefix)) {
    return Status::Corruption("raft log: malformed entry key");
  }
  key.remove_prefix(kEntryPrefix.size());
  GetBigEndian64(key, index);  // cannot fail: the length was checked
  return index;
}

std::string EncodeEntryValue(const raft::Entry& e) {
  std::string out;
  out.reserve(kEntryHeaderBytes + e.data.size());
  PutFixed64(out, e.term);
  out.push_back(static_cast<char>(e.type));
  out.append(e.data);
  return out;
}

Result<raft::Entry> DecodeEntryValue(uint64_t index, std::string_view value) {
  raft::Entry e;
  e.index = index;
  if (!GetFixed64(value, e.term) || value.empty()) {
    return Status::Corruption("raft log: entry " + std::to_string(index) + " is truncated");
  }
  const auto type = static_cast<uint8_t>(value[0]);
  if (type > static_cast<uint8_t>(raft::EntryType::kConfChange)) {
    return Status::Corruption("raft log: entry " + std::to_string(index) + " has an unknown type");
  }
  e.type = static_cast<raft::EntryType>(type);
  value.remove_prefix(1);
  e.data.assign(value);
  return e;
}

std::string EncodeHardState(const raft::HardState& hs) {
  std::string out;
  PutFixed64(out, hs.term);
  PutFixed64(out, hs.vote);
  PutFixed64(out, hs.commit);
  return out;
}

Result<raft::HardState> DecodeHardState(std::string_view in) {
  raft::HardState hs;
  if (in.size() != kHardStateBytes) return Status::Corruption("raft log: malformed hard state");
  GetFixed64(in, hs.term);
  GetFixed64(in, hs.vote);
  GetFixed64(in, hs.commit);
  return hs;
}

void PutIds(std::string& out, const std::vector<uint64_t>& ids) {
  PutFixed32(out, static_cast<uint32_t>(ids.size()));
  for (uint64_t id : ids) PutFixed64(out, id);
}

bool GetIds(std::string_view& in, std::vector<uint64_t>& ids) {
  uint32_t count = 0;
  if (!GetFixed32(in, count)) return false;
  // Checked before reserving, so a corrupt count cannot make us allocate
  // more than the record itself holds.
  if (count > in.size() / 8) return false;
  ids.resize(count);
  for (uint64_t& id : ids) GetFixed64(in, id);
  return true;
}

std::string EncodeSnapshotMetadata(const raft::SnapshotMetadata& meta) {
  std::string out;
  PutFixed64(out, meta.index);
  PutFixed64(out, meta.term);
  PutIds(out, meta.conf_state.voters);
  PutIds(out, meta.conf_state.learners);
  return out;
}

Result<raft::SnapshotMetadata> DecodeSnapshotMetadata(std::string_view in) {
  raft::SnapshotMetadata meta;
  if (!GetFixed64(in, meta.index) || !GetFixed64(in, meta.term) || !GetIds(in, meta.conf_state.voters) ||
      !GetIds(in, meta.conf_state.learners) || !in.empty()) {
    return Status::Corruption("raft log: malformed snapshot metadata");
  }
  return meta;
}

// Reads one optional record; nullopt when the key is absent.
Result<std::optional<std::string>> ReadRecord(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, std::string_view key) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf, AsSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "read of " + std::string(key));
  return std::optional<std::string>(std::move(value));
}

// Adds `e` to `out` under raft::LimitSize's rule (the first entry always,
// then entries while the running total stays within max_size_bytes).
// Returns false, leaving `out` alone, once the limit is reached.
bool TakeWithinLimit(std::vector<raft::Entry>* out, uint64_t* size_bytes, uint64_t max_size_bytes, raft::Entry e) {
  const uint64_t entry_bytes = raft::EntrySizeBytes(e);
  if (!out->empty() && *size_bytes + entry_bytes > max_size_bytes) return false;
  *size_bytes += entry_bytes;
  out->push_back(std::move(e));
  return true;
}

}  // namespace

Result<std::unique_ptr<RaftLogStore>> RaftLogStore::Open(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
  // The constructor is private, so make_unique cannot reach it.
  std::unique_ptr<RaftLogStore> store(new RaftLogStore(db, cf));

  BULWARK_ASSIGN_OR_RETURN(std::optional<std::string> hard, ReadRecord(db, cf, kHardStateKey));
  if (hard) {
    BULWARK_ASSIGN_OR_RETURN(store->hard_state_, DecodeHardState(*hard));
  }
  BULWARK_ASSIGN_OR_RETURN(std::optional<std::string> snap, ReadRecord(db, cf, kSnapshotKey));
  if (snap) {
    BULWARK_ASSIGN_OR_RETURN(store->snapshot_, DecodeSnapshotMetadata(*snap));
  }
  store->conf_state_ = store->snapshot_.conf_state;

  // Checking every entry would read the whole log at start-up; the two ends
  // catch the likely damage (a lost compaction record, a stray key) cheaply,
  // and Entries() checks contiguity of whatever it reads.
  const rocksdb::Slice upper = AsSlice(kEntryPrefixEnd);
  rocksdb::ReadOptions options;
  options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(options, cf));
  it->Seek(AsSlice(kEntryPrefix));
  if (it->Valid()) {
    BULWARK_ASSIGN_OR_RETURN(uint64_t first, DecodeEntryKey(it->key().ToStringView()));
    if (first != store->snapshot_.index + 1) {
      return Status::Corruption("raft log: first entry " + std::to_string(first) + " does not follow the snapshot at " +
                                std::to_string(store->snapshot_.index));
    }
    it->SeekToLast();
    if (!it->Valid()) BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "seek to the last entry"));
    if (!it->Valid()) return Status::Corruption("raft log: the last entry vanished during open");
    BULWARK_ASSIGN_OR_RETURN(store->last_index_, DecodeEntryKey(it->key().ToStringView()));
  } else {
    BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "seek to the first entry"));
    store->last_index_ = store->snapshot_.index;
  }
  return store;
}

Status RaftLogStore::InitialState(raft::HardState* hs, raft::ConfState* cs) const {
  *hs = hard_state_;
  *cs = conf_state_;
  return Status::Ok();
}

uint64_t RaftLogStore::FirstIndex() const { return snapshot_.index + 1; }
uint64_t RaftLogStore::LastIndex() const { return last_index_; }

Result<raft::Snapshot> RaftLogStore::GetSnapshot() const {
  raft::Snapshot snap;
  snap.metadata = snapshot_;
  return snap;
}

uint64_t RaftLogStore::CacheFirstIndex() const { return cache_.empty() ? last_index_ + 1 : cache_.front().index; }

Result<std::vector<raft::Entry>> RaftLogStore::Entries(uint64_t lo, uint64_t hi, uint64_t max_size_bytes) const {
  // The checks and their order follow MemoryStorage, so the core sees the
  // same errors whichever storage it runs on.
  if (lo <= snapshot_.index) return raft::CompactedError();
  assert(hi <= last_index_ + 1 && "entries out of bound");
  if (hi > last_index_ + 1) return Status::Internal("raft log: entries requested beyond the last index");
  if (last_index_ == snapshot_.index) return raft::CompactedError();
  assert(lo <= hi && "entries with lo > hi");
  if (lo > hi) return Status::Internal("raft log: entries requested with lo > hi");

  std::vector<raft::Entry> out;
  uint64_t size_bytes = 0;
  const uint64_t cache_first = CacheFirstIndex();
  uint64_t next = lo;
  if (next < cache_first && next < hi) {
    const uint64_t disk_hi = std::min(hi, cache_first);
    BULWARK_ASSIGN_OR_RETURN(bool full, ReadFromDisk(next, disk_hi, max_size_bytes, &out, &size_bytes));
    if (full) return out;
    next = disk_hi;
  }
  for (; next < hi; ++next) {
    if (!TakeWithinLimit(&out, &size_bytes, max_size_bytes, cache_[next - cache_first])) break;
  }
  return out;
}

Result<bool> RaftLogStore::ReadFromDisk(uint64_t lo, uint64_t hi, uint64_t max_size_bytes,
                                        std::vector<raft::Entry>* out, uint64_t* size_bytes) const {
  const std::string upper_key = EntryKey(hi);
  const rocksdb::Slice upper = AsSlice(upper_key);
  rocksdb::ReadOptions options;
  options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, cf_));
  uint64_t next = lo;
  // Bounded by the upper key: at most hi - lo steps.
  for (it->Seek(EntryKey(lo)); it->Valid(); it->Next()) {
    BULWARK_ASSIGN_OR_RETURN(uint64_t index, DecodeEntryKey(it->key().ToStringView()));
    if (index != next) {
      return Status::Corruption("raft log: entry " + std::to_string(next) + " is missing");
    }
    BULWARK_ASSIGN_OR_RETURN(raft::Entry e, DecodeEntryValue(index, it->value().ToStringView()));
    if (!TakeWithinLimit(out, size_bytes, max_size_bytes, std::move(e))) return true;
    ++next;
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "entry scan"));
  if (next != hi) return Status::Corruption("raft log: entry " + std::to_string(next) + " is missing");
  return false;
}

Result<std::vector<raft::Entry>> ReadStoredEntries(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, uint64_t lo,
                                                   uint64_t hi, uint64_t max_bytes) {
  std::vector<raft::Entry> out;
  if (hi <= lo) return out;
  const std::string upper_key = EntryKey(hi);
  const rocksdb::Slice upper = AsSlice(upper_key);
  rocksdb::ReadOptions options;
  options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(options, cf));
  uint64_t next = lo, bytes = 0;
  for (it->Seek(EntryKey(lo)); it->Valid(); it->Next()) {
    BULWARK_ASSIGN_OR_RETURN(uint64_t index, DecodeEntryKey(it->key().ToStringView()));
    if (index != next) break;  // compacted under us, or a gap: stop at what is contiguous
    BULWARK_ASSIGN_OR_RETURN(raft::Entry e, DecodeEntryValue(index, it->value().ToStringView()));
    bytes += e.data.size();
    out.push_back(std::move(e));
    ++next;
    if (bytes >= max_bytes) break;
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "entry scan"));
  if (out.empty()) return Status::NotFound("raft log: entry " + std::to_string(lo) + " is not held");
  return out;
}

Result<uint64_t> RaftLogStore::Term(uint64_t i) const {
  if (i < snapshot_.index) return raft::CompactedError();
  if (i == snapshot_.index) return snapshot_.term;
  assert(i <= last_index_ && "term of an index beyond the last");
  if (i > last_index_) return Status::Internal("raft log: term of an index beyond the last");
  const uint64_t cache_first = CacheFirstIndex();
  if (i >= cache_first) return cache_[i - cache_first].term;

  BULWARK_ASSIGN_OR_RETURN(std::optional<std::string> value, ReadRecord(db_, cf_, EntryKey(i)));
  if (!value) return Status::Corruption("raft log: entry " + std::to_string(i) + " is missing");
  BULWARK_ASSIGN_OR_RETURN(raft::Entry e, DecodeEntryValue(i, *value));
  return e.term;
}

Status RaftLogStore::Persist(const std::optional<raft::HardState>& hs, const std::vector<raft::Entry>& entries,
                             bool sync) {
  if (!hs && entries.empty()) return Status::Ok();
  rocksdb::WriteBatch batch;
  if (!entries.empty()) {
    const uint64_t first = entries.front().index;
    if (first < FirstIndex()) {
      return Status::InvalidArgument("raft log: append at " + std::to_string(first) + " is below the first index " +
                                     std::to_string(FirstIndex()));
    }
    if (first > last_index_ + 1) {
      return Status::InvalidArgument("raft log: append at " + std::to_string(first) + " leaves a gap after " +
                                     std::to_string(last_index_));
    }
    for (size_t k = 1; k < entries.size(); ++k) {
      if (entries[k].index != first + k)
        return Status::InvalidArgument("raft log: appended entries are not contiguous");
    }
    const uint64_t new_last = entries.back().index;
    // Keys up to new_last are overwritten by the puts; only a longer old
    // suffix needs deleting. One range tombstone, as conflicts are rare.
    if (new_last < last_index_) {
      BULWARK_RETURN_IF_ERROR(
          FromRocks(batch.DeleteRange(cf_, EntryKey(new_last + 1), EntryKey(last_index_ + 1)), "batch delete"));
    }
    for (const raft::Entry& e : entries) {
      BULWARK_RETURN_IF_ERROR(FromRocks(batch.Put(cf_, EntryKey(e.index), EncodeEntryValue(e)), "batch put"));
    }
  }
  if (hs) {
    BULWARK_RETURN_IF_ERROR(FromRocks(batch.Put(cf_, AsSlice(kHardStateKey), EncodeHardState(*hs)), "batch put"));
  }
  rocksdb::WriteOptions options;
  options.sync = sync;
  BULWARK_RETURN_IF_ERROR(FromRocks(db_->Write(options, &batch), "append"));

  // Only after the write succeeded: on failure the object still describes
  // what is on disk.
  if (hs) hard_state_ = *hs;
  if (!entries.empty()) CacheAppend(entries);
  return Status::Ok();
}

void RaftLogStore::CacheAppend(const std::vector<raft::Entry>& entries) {
  const uint64_t first = entries.front().index;
  while (!cache_.empty() && cache_.back().index >= first) {
    cache_bytes_ -= raft::EntrySizeBytes(cache_.back());
    cache_.pop_back();
  }
  // The cache was emptied of anything at or after `first`; if it still
  // holds something, it ends right before `first` (it ended at last_index_
  // and first <= last_index_ + 1), so contiguity holds.
  for (const raft::Entry& e : entries) {
    cache_bytes_ += raft::EntrySizeBytes(e);
    cache_.push_back(e);
  }
  last_index_ = entries.back().index;
  while (!cache_.empty() && cache_bytes_ > kRaftLogCacheBytes) {
    cache_bytes_ -= raft::EntrySizeBytes(cache_.front());
    cache_.pop_front();
  }
}

Status RaftLogStore::Compact(uint64_t index, const raft::ConfState& cs) {
  if (index < snapshot_.index || index > last_index_) {
    return Status::InvalidArgument("raft log: compaction to " + std::to_string(index) + " is outside [" +
                                   std::to_string(snapshot_.index) + ", " + std::to_string(last_index_) + "]");
  }
  BULWARK_ASSIGN_OR_RETURN(uint64_t term, Term(index));
  raft::SnapshotMetadata meta;
  meta.index = index;
  meta.term = term;
  meta.conf_state = cs;

  rocksdb::WriteBatch batch;
  BULWARK_RETURN_IF_ERROR(FromRocks(batch.Put(cf_, AsSlice(kSnapshotKey), EncodeSnapshotMetadata(meta)), "batch put"));
  // Nothing to delete when re-recording the current point (a new conf state).
  if (index >= FirstIndex()) {
    BULWARK_RETURN_IF_ERROR(
        FromRocks(batch.DeleteRange(cf_, EntryKey(FirstIndex()), EntryKey(index + 1)), "batch delete"));
  }
  // An unsynced compaction lost in a crash would still leave a consistent
  // log (RocksDB's WAL is ordered), but syncing is cheap at this rate (once
  // per state snapshot) and means a returned Compact is what reopen sees.
  rocksdb::WriteOptions options;
  options.sync = true;
  BULWARK_RETURN_IF_ERROR(FromRocks(db_->Write(options, &batch), "compaction"));

  snapshot_ = std::move(meta);
  while (!cache_.empty() && cache_.front().index <= index) {
    cache_bytes_ -= raft::EntrySizeBytes(cache_.front());
    cache_.pop_front();
  }
  return Status::Ok();
}

Status RaftLogStore::ApplySnapshot(const raft::SnapshotMetadata& meta, bool sync) {
  // Same rule as MemoryStorage: a snapshot at the current point is also out
  // of date, as installing it again would only drop entries after it.
  if (meta.index <= snapshot_.index) return Status::FailedPrecondition("raft: snapshot is out of date");

  rocksdb::WriteBatch batch;
  BULWARK_RETURN_IF_ERROR(
      FromRocks(batch.DeleteRange(cf_, AsSlice(kEntryPrefix), AsSlice(kEntryPrefixEnd)), "batch delete"));
  BULWARK_RETURN_IF_ERROR(FromRocks(batch.Put(cf_, AsSlice(kSnapshotKey), EncodeSnapshotMetadata(meta)), "batch put"));
  // The snapshot holds only committed state, so the commit index is at least
  // its index; storing that with it keeps the hard state from pointing below
  // the first index after a restart (etcd does the same).
  raft::HardState hs = hard_state_;
  if (hs.commit < meta.index) {
    hs.commit = meta.index;
    BULWARK_RETURN_IF_ERROR(FromRocks(batch.Put(cf_, AsSlice(kHardStateKey), EncodeHardState(hs)), "batch put"));
  }
  rocksdb::WriteOptions options;
  options.sync = sync;
  BULWARK_RETURN_IF_ERROR(FromRocks(db_->Write(options, &batch), "snapshot install"));

  hard_state_ = hs;
  snapshot_ = meta;
  last_index_ = meta.index;
  cache_.clear();
  cache_bytes_ = 0;
  return Status::Ok();
}

}  // namespace bulwark::replication
