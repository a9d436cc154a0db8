#pragma once
// Leader-side bookkeeping of each follower (Progress, Inflights) and of the
// membership as a whole (ProgressTracker: quorum commit index, vote tally,
// quorum activity).
//
// Invariants (asserted): match < next; in Replicate state the number of
// in-flight appends never exceeds max_inflight_msgs.
//
// Thread safety: not thread-safe; owned by the core.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "replication/raft/types.h"

namespace bulwark::raft {

// A bounded window of in-flight append messages, by last index and bytes.
class Inflights {
 public:
  Inflights(size_t max_msgs, uint64_t max_bytes) : max_msgs_(max_msgs), max_bytes_(max_bytes) {}

  void Add(uint64_t last_index, uint64_t bytes);
  // Frees every in-flight message whose last index is <= to.
  void FreeLE(uint64_t to);
  // Frees the oldest in-flight message (lets a stalled window probe again).
  void FreeFirstOne();
  bool Full() const { return items_.size() >= max_msgs_ || bytes_ >= max_bytes_; }
  size_t Count() const { return items_.size(); }
  void Reset() {
    items_.clear();
    bytes_ = 0;
  }

 private:
  struct Item {
    uint64_t index;
    uint64_t bytes;
  };
  size_t max_msgs_;
  uint64_t max_bytes_;
  std::vector<Item> items_;  // ascending index; at most max_msgs_ long
  uint64_t bytes_ = 0;
};

enum class ProgressState : uint8_t { kProbe, kReplicate, kSnapshot };
std::string_view ProgressStateName(ProgressState s);

struct Progress {
  Progress(uint64_t next_index, size_t max_inflight_msgs, uint64_t max_inflight_bytes, bool learner)
      : next(next_index), inflights(max_inflight_msgs, max_inflight_bytes), is_learner(learner) {}

  uint64_t match = 0;
  uint64_t next = 1;
  ProgressState state = ProgressState::kProbe;
  uint64_t pending_snapshot = 0;  // index of the snapshot in flight (kSnapshot)
  bool recent_active = false;     // heard from since the last quorum check
  bool msg_app_flow_paused = false;  // probe: one append per heartbeat interval
  uint64_t lease_ack_tick = 0;  // leader tick + 1 of the newest acked heartbeat
  Inflights inflights;
  bool is_learner = false;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);
  // Records an append acknowledgement; false if it was stale.
  bool MaybeUpdate(uint64_t n);
  // Pipelining: assumes the append of entries up to n will succeed.
  void OptimisticUpdate(uint64_t n) { next = n + 1; }
  // Handles a rejection of the append at `rejected`; false if it was stale.
  bool MaybeDecrTo(uint64_t rejected, uint64_t match_hint);
  bool IsPaused() const;
  void SentEntries(uint64_t last_index, uint64_t bytes);
  std::string Describe() const;
};

enum class VoteResult : uint8_t { kPending, kLost, kWon };

// The membership and every member's Progress. One configuration at a time:
// Bulwark changes membership one member at a time (docs/raft.md).
class ProgressTracker {
 public:
  ProgressTracker(size_t max_inflight_msgs, uint64_t max_inflight_bytes)
      : max_inflight_msgs_(max_inflight_msgs), max_inflight_bytes_(max_inflight_bytes) {}

  // Installs a membership; progress of new members starts at next_index.
  void Reset(const ConfState& cs, uint64_t next_index);
  void AddNode(uint64_t id, bool learner, uint64_t next_index);
  void RemoveNode(uint64_t id);

  ConfState GetConfState() const;
  bool IsVoter(uint64_t id) const { return voters_.count(id) != 0; }
  bool IsLearner(uint64_t id) const { return learners_.count(id) != 0; }
  bool IsMember(uint64_t id) const { return IsVoter(id) || IsLearner(id); }
  const std::set<uint64_t>& voters() const { return voters_; }
  size_t QuorumSize() const { return voters_.size() / 2 + 1; }
  bool IsSingleton() const { return voters_.size() == 1 && learners_.empty(); }

  Progress* Get(uint64_t id);
  std::map<uint64_t, Progress>& progress() { return progress_; }
  const std::map<uint64_t, Progress>& progress() const { return progress_; }

  // The largest index replicated on a quorum of voters (figure 2: N such
  // that a majority of matchIndex[i] >= N).
  uint64_t Committed() const;
  // True if a quorum of voters was recently active.
  bool QuorumActive() const;
  void ResetVotes() { votes_.clear(); }
  void RecordVote(uint64_t id, bool granted);
  VoteResult TallyVotes(size_t* granted, size_t* rejected) const;

 private:
  size_t max_inflight_msgs_;
  uint64_t max_inflight_bytes_;
  std::set<uint64_t> voters_;
  std::set<uint64_t> learners_;
  std::map<uint64_t, Progress> progress_;
  std::map<uint64_t, bool> votes_;
};

}  // namespace bulwark::raft
