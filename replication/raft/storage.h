#pragma once
// Storage: the core's read-only view of the stable (persisted) log, and
// MemoryStorage, an in-memory implementation for tests and the simulator.
//
// The core only reads through Storage; the runner writes to its concrete
// storage (append, hard state, snapshot, compaction) while handling a Ready.
//
// Errors returned by Storage:
//   - Code::kNotFound with IsCompacted(): the index is below FirstIndex()
//     (compacted into a snapshot);
//   - Code::kUnavailable: a snapshot is being prepared, try later.
// Asking for an index above LastIndex() is a programmer's error (asserted).
//
// Thread safety: not thread-safe; the runner serialises calls with the core.

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "replication/raft/types.h"

namespace bulwark::raft {

Status CompactedError();
bool IsCompacted(const Status& s);
Status SnapshotTemporarilyUnavailableError();

class Storage {
 public:
  virtual ~Storage() = default;

  // The persisted hard state and membership at start-up. The membership
  // must be the one as of Config.applied (every conf change applied up to
  // it, none after). Contract for the runner's writes (docs/raft.md):
  // entries are persisted no later than the hard state that refers to them,
  // and compaction never passes the latest snapshot, so every index below
  // FirstIndex() is covered by GetSnapshot().
  virtual Status InitialState(HardState* hs, ConfState* cs) const = 0;
  // Entries in [lo, hi), at least one if any exist, then as many as fit in
  // max_size_bytes.
  virtual Result<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_size_bytes) const = 0;
  // The term of entry i, for i in [FirstIndex()-1, LastIndex()].
  virtual Result<uint64_t> Term(uint64_t i) const = 0;
  virtual uint64_t LastIndex() const = 0;
  // The first index still held as an entry (snapshot index + 1).
  virtual uint64_t FirstIndex() const = 0;
  virtual Result<Snapshot> GetSnapshot() const = 0;
};

// Entries that fit in max_size_bytes (always at least one).
void LimitSize(std::vector<Entry>* ents, uint64_t max_size_bytes);

// An in-memory Storage. ents_[0] is a dummy entry holding the index and term
// of the last snapshot (or 0/0).
class MemoryStorage final : public Storage {
 public:
  MemoryStorage();

  Status InitialState(HardState* hs, ConfState* cs) const override;
  Result<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                     uint64_t max_size_bytes) const override;
  Result<uint64_t> Term(uint64_t i) const override;
  uint64_t LastIndex() const override;
  uint64_t FirstIndex() const override;
  Result<Snapshot> GetSnapshot() const override;

  // Runner-side writes.
  void SetHardState(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }
  // Replaces everything with the snapshot; FailedPrecondition if it is older
  // than the current one.
  Status ApplySnapshot(const Snapshot& snap);
  // Records a snapshot of the applied state at index i (<= LastIndex()).
  Status CreateSnapshot(uint64_t i, const ConfState& cs, std::string data);
  // Drops entries before compact_index (which must be <= LastIndex()).
  Status Compact(uint64_t compact_index);
  // Appends entries, truncating any conflicting suffix first.
  Status Append(const std::vector<Entry>& entries);
  // For tests: sets the membership reported by InitialState.
  void SetConfState(const ConfState& cs) { snapshot_.metadata.conf_state = cs; }

 private:
  uint64_t FirstIndexInternal() const { return ents_.front().index + 1; }
  uint64_t LastIndexInternal() const { return ents_.front().index + ents_.size() - 1; }

  HardState hard_state_;
  Snapshot snapshot_;
  std::vector<Entry> ents_;
};

}  // namespace bulwark::raft
