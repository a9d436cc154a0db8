#include "replication/raft/progress.h"

#include <algorithm>
#include <cassert>

namespace bulwark::raft {

void Inflights::Add(uint64_t last_index, uint64_t bytes) {
  assert(items_.size() < max_msgs_ && "adding to a full inflights window");
  assert((items_.empty() || items_.back().index < last_index) && "inflights out of order");
  items_.push_back(Item{last_index, bytes});
  bytes_ += bytes;
}

void Inflights::FreeLE(uint64_t to) {
  size_t n = 0;
  while (n < items_.size() && items_[n].index <= to) {
    bytes_ -= items_[n].bytes;
    ++n;
  }
  items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(n));
}

void Inflights::FreeFirstOne() {
  if (items_.empty()) return;
  FreeLE(items_.front().index);
}

std::string_view ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe: return "StateProbe";
    case ProgressState::kReplicate: return "StateReplicate";
    case ProgressState::kSnapshot: return "StateSnapshot";
  }
  return "StateUnknown";
}

void Progress::BecomeProbe() {
  // After a snapshot, resume after it (or after match if that is further).
  if (state == ProgressState::kSnapshot) {
    uint64_t pending = pending_snapshot;
    state = ProgressState::kProbe;
    next = std::max(match + 1, pending + 1);
  } else {
    state = ProgressState::kProbe;
    next = match + 1;
  }
  pending_snapshot = 0;
  msg_app_flow_paused = false;
  inflights.Reset();
}

void Progress::BecomeReplicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  pending_snapshot = 0;
  msg_app_flow_paused = false;
  inflights.Reset();
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  state = ProgressState::kSnapshot;
  pending_snapshot = snapshot_index;
  msg_app_flow_paused = false;
  inflights.Reset();
}

bool Progress::MaybeUpdate(uint64_t n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    msg_app_flow_paused = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t match_hint) {
  if (state == ProgressState::kReplicate) {
    // A rejection at or below match is stale (reordered message).
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // Probe: only the rejection of the last probe (at next-1) counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  msg_app_flow_paused = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe: return msg_app_flow_paused;
    case ProgressState::kReplicate: return inflights.Full();
    case ProgressState::kSnapshot: return true;
  }
  return true;
}

void Progress::SentEntries(uint64_t last_index, uint64_t bytes) {
  if (state == ProgressState::kReplicate) {
    if (last_index >= next) {
      OptimisticUpdate(last_index);
      inflights.Add(last_index, bytes);
    }
  } else if (state == ProgressState::kProbe) {
    msg_app_flow_paused = true;
  }
}

std::string Progress::Describe() const {
  std::string out(ProgressStateName(state));
  out += " match=" + std::to_string(match) + " next=" + std::to_string(next);
  if (is_learner) out += " learner";
  if (state == ProgressState::kSnapshot) out += " pending_snap=" + std::to_string(pending_snapshot);
  if (inflights.Count() > 0) out += " inflight=" + std::to_string(inflights.Count());
  if (msg_app_flow_paused) out += " paused";
  return out;
}

void ProgressTracker::Reset(const ConfState& cs, uint64_t next_index) {
  voters_.clear();
  learners_.clear();
  progress_.clear();
  for (uint64_t id : cs.voters) AddNode(id, false, next_index);
  for (uint64_t id : cs.learners) AddNode(id, true, next_index);
}

void ProgressTracker::AddNode(uint64_t id, bool learner, uint64_t next_index) {
  assert(id != kNone);
  auto it = progress_.find(id);
  if (it != progress_.end()) {
    // Promotion of a learner keeps its progress; demotion is not allowed.
    if (learner) return;
    learners_.erase(id);
    voters_.insert(id);
    it->second.is_learner = false;
    return;
  }
  (learner ? learners_ : voters_).insert(id);
  Progress pr(next_index, max_inflight_msgs_, max_inflight_bytes_, learner);
  // A newly added node counts as active so that check-quorum does not step
  // the leader down before the node had a chance to answer.
  pr.recent_active = true;
  progress_.emplace(id, std::move(pr));
}

void ProgressTracker::RemoveNode(uint64_t id) {
  voters_.erase(id);
  learners_.erase(id);
  progress_.erase(id);
  votes_.erase(id);
}

ConfState ProgressTracker::GetConfState() const {
  ConfState cs;
  cs.voters.assign(voters_.begin(), voters_.end());
  cs.learners.assign(learners_.begin(), learners_.end());
  return cs;
}

Progress* ProgressTracker::Get(uint64_t id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

uint64_t ProgressTracker::Committed() const {
  if (voters_.empty()) return UINT64_MAX;  // no voters: nothing constrains commit
  std::vector<uint64_t> matches;
  matches.reserve(voters_.size());
  for (uint64_t id : voters_) matches.push_back(progress_.at(id).match);
  std::sort(matches.begin(), matches.end(), std::greater<>());
  return matches[QuorumSize() - 1];
}

bool ProgressTracker::QuorumActive() const {
  size_t active = 0;
  for (uint64_t id : voters_) {
    if (progress_.at(id).recent_active) ++active;
  }
  return active >= QuorumSize();
}

void ProgressTracker::RecordVote(uint64_t id, bool granted) { votes_.emplace(id, granted); }

VoteResult ProgressTracker::TallyVotes(size_t* granted, size_t* rejected) const {
  *granted = 0;
  *rejected = 0;
  for (uint64_t id : voters_) {
    auto it = votes_.find(id);
    if (it == votes_.end()) continue;
    (it->second ? *granted : *rejected) += 1;
  }
  if (*granted >= QuorumSize()) return VoteResult::kWon;
  if (*rejected >= QuorumSize() || voters_.size() - *rejected < QuorumSize()) {
    return VoteResult::kLost;
  }
  return VoteResult::kPending;
}

}  // namespace bulwark::raft
