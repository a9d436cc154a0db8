#pragma once
// CommitQueue: group commit that keeps the change log in commit order.
//
// Writers queue their mutations; the writer at the head becomes the leader,
// assigns consecutive LSNs to every queued change record, writes the whole
// group as one RocksDB WriteBatch (one WAL append, one fsync when sync is on),
// then wakes the others. Many concurrent writers thus share one fsync, and a
// change-log reader never sees LSN n+1 committed before n.
//
// After a failed write the queue refuses every later write: RocksDB may have
// part of a WAL record on disk, and retrying an fsync that failed can
// silently lose data. The process must restart and recover.
//
// Thread safety: Commit may be called from any number of threads.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include <rocksdb/db.h>

#include "common/status.h"
#include "storage/records.h"

namespace bulwark::storage {

// A group stops growing past this size (the leader always takes itself).
constexpr size_t kMaxCommitGroupBytes = 8 * 1024 * 1024;

struct Mutation {
  enum class Kind : uint8_t { kPut, kDelete, kDeleteRange };
  Kind kind = Kind::kPut;
  rocksdb::ColumnFamilyHandle* cf = nullptr;
  std::string key;
  std::string value;  // the value for kPut; the exclusive end key for kDeleteRange
};

class CommitQueue {
 public:
  // `db` and `changelog` are borrowed and must outlive the queue.
  CommitQueue(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* changelog, bool sync, uint64_t last_lsn)
      : db_(db), changelog_(changelog), sync_(sync), last_lsn_(last_lsn) {}

  // Writes `mutations` and, if `change` is not null, appends it to the change
  // log under the next LSN (stored into change->lsn). Returns when the group
  // is written (and fsync'd when sync is on). Returns the LSN, or 0 if no
  // change record was given. IOError if the write failed; Unavailable for
  // every write after one failed.
  // `force_sync` fsyncs this group even on a queue that does not sync (for
  // writes that files outside RocksDB depend on, such as key rotation).
  Result<uint64_t> Commit(std::vector<Mutation> mutations, ChangeRecord* change, bool force_sync = false);

  uint64_t last_lsn() const;
  // After the change log was replaced wholesale (a state image install).
  // REQUIRES: no Commit in progress.
  void ResetLastLsn(uint64_t lsn);

 private:
  struct Writer {
    std::vector<Mutation>* mutations = nullptr;
    ChangeRecord* change = nullptr;
    bool sync = false;
    bool done = false;
    Status status;
    uint64_t lsn = 0;
    std::condition_variable cv;
  };
  // REQUIRES: mu_ held. Builds the leader's group into `batch`.
  std::vector<Writer*> BuildGroup(rocksdb::WriteBatch& batch, bool& sync);

  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* const changelog_;
  const bool sync_;

  mutable std::mutex mu_;
  std::deque<Writer*> queue_;  // GUARDED_BY(mu_)
  uint64_t last_lsn_;          // GUARDED_BY(mu_)
  Status failed_;              // GUARDED_BY(mu_): set once a write fails
};

}  // namespace bulwark::storage
