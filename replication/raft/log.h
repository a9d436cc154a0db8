#pragma once
// RaftLog: the core's view of the whole log, the stable part read through
// Storage and the unstable part (not yet persisted) held in memory.
//
// Invariants (asserted):
//   applied <= committed <= LastIndex();
//   unstable entries are contiguous and start at unstable.offset;
//   the unstable snapshot, if any, is at index unstable.offset - 1.
//
// Ownership: does not own Storage. Thread safety: not thread-safe.

#include <cstdint>
#include <optional>
#include <vector>

#include "common/status.h"
#include "replication/raft/storage.h"
#include "replication/raft/types.h"

namespace bulwark::raft {

// Entries and snapshot received but not yet written to stable storage.
struct Unstable {
  std::optional<Snapshot> snapshot;
  std::vector<Entry> entries;
  uint64_t offset = 0;  // index of entries[0]

  std::optional<uint64_t> MaybeFirstIndex() const;
  std::optional<uint64_t> MaybeLastIndex() const;
  std::optional<uint64_t> MaybeTerm(uint64_t i) const;
  void StableTo(uint64_t i, uint64_t t);
  void StableSnapTo(uint64_t i);
  void Restore(const Snapshot& s);
  void TruncateAndAppend(const std::vector<Entry>& ents);
  std::vector<Entry> Slice(uint64_t lo, uint64_t hi) const;
};

class RaftLog {
 public:
  // Storage must outlive the log. max_applying_size_bytes bounds
  // NextEntries() (the committed entries of one Ready).
  RaftLog(const Storage* storage, uint64_t max_applying_size_bytes);

  // Follower append (figure 2, AppendEntries rules 2-5). Returns the new
  // last index if the entry at `index` has term `log_term`, else nullopt.
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                      const std::vector<Entry>& ents);
  uint64_t Append(const std::vector<Entry>& ents);
  uint64_t FindConflict(const std::vector<Entry>& ents) const;
  // The largest index <= index whose term is <= term, with that term.
  std::pair<uint64_t, uint64_t> FindConflictByTerm(uint64_t index, uint64_t term) const;

  const std::vector<Entry>& UnstableEntries() const { return unstable_.entries; }
  std::vector<Entry> NextEntries() const;  // committed, not yet applied
  bool HasNextEntries() const;
  const std::optional<Snapshot>& UnstableSnapshot() const { return unstable_.snapshot; }
  Result<Snapshot> GetSnapshot() const;

  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  uint64_t LastTerm() const;
  Result<uint64_t> Term(uint64_t i) const;
  // Term(i), or 0 if i is compacted or beyond the end.
  uint64_t ZeroTermOnOutOfBounds(uint64_t i) const;
  bool MatchTerm(uint64_t i, uint64_t t) const;
  Result<std::vector<Entry>> Entries(uint64_t i, uint64_t max_size_bytes) const;
  Result<std::vector<Entry>> Slice(uint64_t lo, uint64_t hi, uint64_t max_size_bytes) const;
  std::vector<Entry> AllEntries() const;  // for tests

  // Figure 2 RequestVote: is (last_index, term) at least as up to date?
  bool IsUpToDate(uint64_t last_index, uint64_t term) const;
  bool MaybeCommit(uint64_t max_index, uint64_t term);
  void CommitTo(uint64_t to_commit);
  void AppliedTo(uint64_t i);
  void StableTo(uint64_t i, uint64_t t) { unstable_.StableTo(i, t); }
  void StableSnapTo(uint64_t i) { unstable_.StableSnapTo(i); }
  void Restore(const Snapshot& s);

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }

 private:
  Status CheckOutOfBounds(uint64_t lo, uint64_t hi) const;

  const Storage* storage_;
  Unstable unstable_;
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;
  uint64_t max_applying_size_bytes_;
};

}  // namespace bulwark::raft
