#include "tests/raft/sim/checker.h"

#include <algorithm>
#include <charconv>

namespace bulwark::raft::sim {

namespace {

uint64_t HashBytes(std::string_view s, uint64_t seed) {
  uint64_t h = 1469598103934665603ULL ^ seed;  // FNV-1a
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

uint64_t EntryDataHash(const Entry& e) {
  return HashBytes(e.data, static_cast<uint64_t>(e.type) + 1);
}

std::string N(uint64_t v) { return std::to_string(v); }

}  // namespace

uint64_t NextStateHash(uint64_t hash, const Entry& e) {
  uint64_t h = hash ^ (EntryDataHash(e) + 0x9E3779B97F4A7C15ULL + (hash << 6) + (hash >> 2));
  return h * 0xBF58476D1CE4E5B9ULL + e.index;
}

std::string SnapshotData(uint64_t index, uint64_t hash) { return N(index) + ":" + N(hash); }

uint64_t ParseSnapshotHash(const std::string& data) {
  size_t colon = data.find(':');
  uint64_t hash = 0;
  if (colon == std::string::npos) return 0;
  std::from_chars(data.data() + colon + 1, data.data() + data.size(), hash);
  return hash;
}

void Checker::CheckElectionSafety(uint64_t node, uint64_t term) {
  auto [it, inserted] = leader_of_term_.emplace(term, node);
  if (!inserted && it->second != node) {
    Fail("election safety: nodes " + N(it->second) + " and " + N(node) + " both led term " + N(term));
  }
}

void Checker::CheckPersistedEntries(uint64_t node, const Storage& storage,
                                    const std::vector<Entry>& entries) {
  for (const Entry& e : entries) {
    if (e.index < storage.FirstIndex()) continue;  // already compacted away
    Result<uint64_t> prev = storage.Term(e.index - 1);
    uint64_t prev_term = prev.ok() ? *prev : UINT64_MAX;  // unknown: compacted
    EntryId id{EntryDataHash(e), prev_term};
    auto [it, inserted] = entries_.emplace(std::make_pair(e.index, e.term), id);
    if (inserted) continue;
    bool prev_conflict = prev_term != UINT64_MAX && it->second.prev_term != UINT64_MAX &&
                         it->second.prev_term != prev_term;
    if (it->second.data_hash != id.data_hash || prev_conflict) {
      Fail("log matching: node " + N(node) + " holds a different entry or history at index " +
           N(e.index) + " term " + N(e.term));
      return;
    }
    if (it->second.prev_term == UINT64_MAX) it->second.prev_term = prev_term;
  }
}

void Checker::RecordCommit(uint64_t index, uint64_t entry_term, uint64_t observed_term) {
  auto [it, inserted] = committed_term_.emplace(index, entry_term);
  if (!inserted && it->second != entry_term) {
    Fail("commit safety: index " + N(index) + " committed with terms " + N(it->second) + " and " +
         N(entry_term));
    return;
  }
  CommitFact f{index, entry_term};
  auto [fit, fresh] = commit_facts_.emplace(observed_term, f);
  if (!fresh && fit->second.index < index) fit->second = f;
  new_facts_.emplace_back(observed_term, f);
}

void Checker::CheckCommitFact(uint64_t observed_term, const CommitFact& f, uint64_t leader_term,
                              const RaftLog& log) {
  if (observed_term >= leader_term) return;
  if (f.index < log.FirstIndex()) return;  // inside the leader's snapshot
  if (log.ZeroTermOnOutOfBounds(f.index) != f.entry_term) {
    Fail("leader completeness: leader of term " + N(leader_term) + " lacks entry " + N(f.index) +
         " (term " + N(f.entry_term) + ") committed by term " + N(observed_term));
  }
}

void Checker::CheckNewLeader(uint64_t node, uint64_t term, const RaftLog& log) {
  (void)node;
  for (const auto& [observed_term, f] : commit_facts_) {
    if (observed_term >= term) break;
    CheckCommitFact(observed_term, f, term, log);
  }
}

void Checker::CheckNewCommitsAgainstLeaders(
    const std::vector<std::pair<uint64_t, const RaftLog*>>& leaders) {
  for (const auto& [observed_term, f] : new_facts_) {
    for (const auto& [term, log] : leaders) CheckCommitFact(observed_term, f, term, *log);
  }
  new_facts_.clear();
}

void Checker::CheckApplied(uint64_t node, const Entry& e, uint64_t state_hash) {
  if (e.index < applied_hash_.size()) {
    if (applied_hash_[e.index] != state_hash || applied_data_hash_[e.index] != EntryDataHash(e)) {
      Fail("state-machine safety: node " + N(node) + " applied a different entry at index " +
           N(e.index));
    }
    return;
  }
  if (e.index != applied_hash_.size()) {
    Fail("state-machine safety: node " + N(node) + " applied index " + N(e.index) +
         " before anyone applied " + N(applied_hash_.size()));
    return;
  }
  applied_hash_.push_back(state_hash);
  applied_data_hash_.push_back(EntryDataHash(e));
}

void Checker::CheckSnapshot(uint64_t node, uint64_t index, uint64_t state_hash) {
  if (index >= applied_hash_.size() || applied_hash_[index] != state_hash) {
    Fail("state-machine safety: node " + N(node) + " installed a snapshot at index " + N(index) +
         " that no node applied");
  }
}

size_t Checker::StartWrite(uint64_t node) {
  writes_.push_back(Write{node, ++clock_});
  return writes_.size() - 1;
}

void Checker::AckWrite(size_t op, uint64_t index) {
  writes_[op].ack = ++clock_;
  writes_[op].index = index;
}

size_t Checker::StartRead(uint64_t node) {
  reads_.push_back(Read{node, ++clock_});
  return reads_.size() - 1;
}

void Checker::ReadIndexKnown(size_t op, uint64_t read_index) { reads_[op].read_index = read_index; }

void Checker::ServeRead(size_t op, uint64_t served_index, uint64_t state_hash) {
  Read& r = reads_[op];
  r.end = ++clock_;
  r.served_index = served_index;
  r.state_hash = state_hash;
  if (served_index >= applied_hash_.size() || applied_hash_[served_index] != state_hash) {
    Fail("read " + N(op) + " served a state no node applied at index " + N(served_index));
  }
}

void Checker::CheckFinal(const std::vector<uint64_t>& final_applied) {
  uint64_t min_applied = final_applied.empty()
                             ? 0
                             : *std::min_element(final_applied.begin(), final_applied.end());
  for (size_t op = 0; op < writes_.size() && ok(); ++op) {
    const Write& w = writes_[op];
    if (w.ack == 0) continue;
    Entry expected{0, w.index, EntryType::kNormal, "w" + N(op)};
    if (w.index >= applied_data_hash_.size() ||
        applied_data_hash_[w.index] != EntryDataHash(expected)) {
      Fail("acknowledged write " + N(op) + " is not the entry applied at index " + N(w.index));
    } else if (w.index > min_applied) {
      Fail("acknowledged write " + N(op) + " at index " + N(w.index) +
           " is not applied on every node (min applied " + N(min_applied) + ")");
    }
  }
  CheckReadsLinearizable();
}

// A read that starts after a write was acknowledged must see it, and a read
// that starts after another read finished must see at least what that read
// saw: its read index must be >= both. Events are ordered by the logical
// clock, which is real time in the simulation.
void Checker::CheckReadsLinearizable() {
  std::vector<std::pair<uint64_t, uint64_t>> done;  // (time, index that must be visible)
  for (const Write& w : writes_) {
    if (w.ack != 0) done.emplace_back(w.ack, w.index);
  }
  for (const Read& r : reads_) {
    if (r.end != 0) done.emplace_back(r.end, r.served_index);
  }
  std::sort(done.begin(), done.end());
  std::vector<uint64_t> prefix_max(done.size());
  for (size_t i = 0; i < done.size(); ++i) {
    prefix_max[i] = std::max(i == 0 ? 0 : prefix_max[i - 1], done[i].second);
  }
  for (size_t op = 0; op < reads_.size() && ok(); ++op) {
    const Read& r = reads_[op];
    if (r.end == 0) continue;
    auto it = std::lower_bound(done.begin(), done.end(), std::make_pair(r.start, uint64_t{0}));
    if (it == done.begin()) continue;
    uint64_t must_see = prefix_max[static_cast<size_t>(it - done.begin()) - 1];
    if (r.read_index < must_see) {
      Fail("linearizability: read " + N(op) + " on node " + N(r.node) + " got read index " +
           N(r.read_index) + " but index " + N(must_see) + " completed before it started");
    }
  }
}

}  // namespace bulwark::raft::sim
