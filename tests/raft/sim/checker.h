#pragma once
// Checker: the safety and linearizability checks of the Raft simulation,
// separated from the simulator so that tests can feed it bad histories and
// prove each check fails when it should.
//
// The first failure is kept; later ones are ignored (they are usually
// consequences). Thread safety: not thread-safe.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "replication/raft/log.h"
#include "replication/raft/storage.h"
#include "replication/raft/types.h"

namespace bulwark::raft::sim {

// The simulated state machine is a hash chain over applied entries: equal
// hashes at an index mean equal applied histories up to it.
uint64_t NextStateHash(uint64_t hash, const Entry& e);
std::string SnapshotData(uint64_t index, uint64_t hash);
uint64_t ParseSnapshotHash(const std::string& data);

class Checker {
 public:
  void Fail(const std::string& why) {
    if (violation_.empty()) violation_ = why;
  }
  bool ok() const { return violation_.empty(); }
  const std::string& violation() const { return violation_; }

  // Election safety: at most one leader per term.
  void CheckElectionSafety(uint64_t node, uint64_t term);
  // Log matching, checked inductively as entries are persisted: an
  // (index, term) pair always names the same payload and the same previous
  // term. `storage` already holds `entries`.
  void CheckPersistedEntries(uint64_t node, const Storage& storage, const std::vector<Entry>& entries);
  // Records that `index` (whose entry has `entry_term`) was committed, as
  // seen by a node in `observed_term`.
  void RecordCommit(uint64_t index, uint64_t entry_term, uint64_t observed_term);
  // Leader completeness: a leader of `term` holds every entry committed in
  // an earlier term.
  void CheckNewLeader(uint64_t node, uint64_t term, const RaftLog& log);
  // The same check for commits recorded since the last call, against every
  // current leader.
  void CheckNewCommitsAgainstLeaders(const std::vector<std::pair<uint64_t, const RaftLog*>>& leaders);
  // State-machine safety: every node reaches the same state at an index.
  void CheckApplied(uint64_t node, const Entry& e, uint64_t state_hash);
  void CheckSnapshot(uint64_t node, uint64_t index, uint64_t state_hash);

  // Client history. Times are a logical clock advanced by every event.
  size_t StartWrite(uint64_t node);
  void AckWrite(size_t op, uint64_t index);
  size_t StartRead(uint64_t node);
  void ReadIndexKnown(size_t op, uint64_t read_index);
  uint64_t ReadIndexOf(size_t op) const { return reads_[op].read_index; }
  void ServeRead(size_t op, uint64_t served_index, uint64_t state_hash);

  // At the end: every acknowledged write is in the common applied history
  // of all nodes (given their final applied indexes), and every read was
  // linearizable.
  void CheckFinal(const std::vector<uint64_t>& final_applied);
  void CheckReadsLinearizable();

 private:
  struct Write {
    uint64_t node;
    uint64_t start;
    uint64_t ack = 0;  // 0: not acknowledged
    uint64_t index = 0;
  };
  struct Read {
    uint64_t node;
    uint64_t start;
    uint64_t end = 0;  // 0: not completed
    uint64_t read_index = 0;
    uint64_t served_index = 0;
    uint64_t state_hash = 0;
  };
  struct EntryId {
    uint64_t data_hash;
    uint64_t prev_term;
  };
  struct CommitFact {
    uint64_t index;
    uint64_t entry_term;
  };
  void CheckCommitFact(uint64_t observed_term, const CommitFact& f, uint64_t leader_term,
                       const RaftLog& log);

  std::string violation_;
  uint64_t clock_ = 0;
  std::map<uint64_t, uint64_t> leader_of_term_;
  std::map<std::pair<uint64_t, uint64_t>, EntryId> entries_;  // (index, term)
  std::map<uint64_t, uint64_t> committed_term_;               // index -> entry term
  std::map<uint64_t, CommitFact> commit_facts_;               // observed term -> highest fact
  std::vector<std::pair<uint64_t, CommitFact>> new_facts_;
  std::vector<uint64_t> applied_hash_{0};       // index -> state hash after it
  std::vector<uint64_t> applied_data_hash_{0};  // index -> hash of the entry's payload
  std::vector<Write> writes_;
  std::vector<Read> reads_;
};

}  // namespace bulwark::raft::sim
