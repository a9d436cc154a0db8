#pragma once
// RaftLogStore: the Raft core's Storage (replication/raft/storage.h), kept in
// one column family of the node's RocksDB store, so the log is page-encrypted
// like everything else and shares the store's WAL (one fsync covers both).
//
// Keys in the column family:
//   "e/<u64 BE index>"  an entry: u64 term | u8 type | data
//   "m/hard"            the hard state: term, vote, commit
//   "m/snap"            the last snapshot point: index, term, conf state
// The entries held are [FirstIndex(), LastIndex()]; FirstIndex() is the
// snapshot point + 1. A bounded in-memory tail cache serves Entries() and
// Term() for recent indexes without touching RocksDB.
//
// Ownership: borrows `db` and `cf`, which must outlive the object.
// Thread safety: not thread-safe; the runner serialises every call (the Raft
// core's reads included).
// Errors: IOError/Corruption from RocksDB or a malformed stored record (never
// an abort on bad bytes from disk); Storage's own contract otherwise.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "common/status.h"
#include "replication/raft/storage.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace bulwark::replication {

// Bytes of recent entries kept in memory for Entries()/Term().
constexpr uint64_t kRaftLogCacheBytes = 16 << 20;

class RaftLogStore final : public raft::Storage {
 public:
  // Loads the hard state, the snapshot point and the last index.
  static Result<std::unique_ptr<RaftLogStore>> Open(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf);

  // raft::Storage. InitialState reports the stored hard state and the conf
  // state last given to SetConfState (initially the snapshot point's).
  Status InitialState(raft::HardState* hs, raft::ConfState* cs) const override;
  Result<std::vector<raft::Entry>> Entries(uint64_t lo, uint64_t hi, uint64_t max_size_bytes) const override;
  Result<uint64_t> Term(uint64_t i) const override;
  uint64_t LastIndex() const override;
  uint64_t FirstIndex() const override;
  // The snapshot point's metadata with empty data: the runner streams the
  // state image itself (the data would not fit in one message).
  Result<raft::Snapshot> GetSnapshot() const override;

  // The membership as of the state machine's applied index (the runner keeps
  // it with the applied state); not persisted here.
  void SetConfState(const raft::ConfState& cs) { conf_state_ = cs; }

  // Appends `entries` (contiguous; the first may be at or below LastIndex()+1:
  // any existing suffix from there is deleted first) and stores `hs` if set,
  // in one RocksDB write, fsync'd when `sync`. InvalidArgument if entries
  // leave a gap or reach below FirstIndex().
  Status Persist(const std::optional<raft::HardState>& hs, const std::vector<raft::Entry>& entries, bool sync);
  // Log compaction: records the snapshot point (index, its term, cs) and
  // deletes the entries up to and including `index`. REQUIRES (else
  // InvalidArgument): snapshot index <= index <= LastIndex().
  Status Compact(uint64_t index, const raft::ConfState& cs);
  // Installs a received snapshot's metadata: every entry is dropped and the
  // log restarts after meta.index (FirstIndex() == meta.index + 1,
  // LastIndex() == meta.index). FailedPrecondition if older than the current
  // snapshot point.
  Status ApplySnapshot(const raft::SnapshotMetadata& meta, bool sync);

  const raft::HardState& hard_state() const { return hard_state_; }
  const raft::SnapshotMetadata& snapshot_metadata() const { return snapshot_; }
  // Entries currently held (LastIndex() - FirstIndex() + 1).
  uint64_t EntryCount() const { return last_index_ + 1 - FirstIndex(); }

 private:
  RaftLogStore(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) : db_(db), cf_(cf) {}

  // The first index served by cache_ (last_index_ + 1 when it is empty).
  uint64_t CacheFirstIndex() const;
  // Appends the stored entries [lo, hi) to `out` under Entries()'s size rule;
  // true once the limit stopped it. Corruption if an entry is missing or
  // malformed.
  Result<bool> ReadFromDisk(uint64_t lo, uint64_t hi, uint64_t max_size_bytes, std::vector<raft::Entry>* out,
                            uint64_t* size_bytes) const;
  // After a successful write of `entries` (non-empty, contiguous, first <=
  // last_index_ + 1): drops the conflicting cached suffix, appends, sets
  // last_index_ and evicts from the front down to kRaftLogCacheBytes.
  void CacheAppend(const std::vector<raft::Entry>& entries);

  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* cf_;
  raft::HardState hard_state_;
  raft::SnapshotMetadata snapshot_;
  raft::ConfState conf_state_;
  uint64_t last_index_ = 0;
  // Recent entries, contiguous, ending at last_index_; bounded by
  // kRaftLogCacheBytes.
  std::deque<raft::Entry> cache_;
  uint64_t cache_bytes_ = 0;
};

// Reads the stored entries [lo, hi), at most max_bytes of data (at least
// one entry), straight from RocksDB: for readers outside the runner's thread
// (the region stream), which must only ask for committed indexes. Thread-safe.
// NotFound if `lo` is no longer held (compacted) or not yet written.
Result<std::vector<raft::Entry>> ReadStoredEntries(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, uint64_t lo,
                                                   uint64_t hi, uint64_t max_bytes);

}  // namespace bulwark::replication
