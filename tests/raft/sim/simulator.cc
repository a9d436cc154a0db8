#include "tests/raft/sim/simulator.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "replication/raft/raw_node.h"
#include "replication/raft/storage.h"
#include "tests/raft/sim/checker.h"

namespace bulwark::raft::sim {

namespace {

constexpr int kElectionTicks = 10;
constexpr uint64_t kCompactLagEntries = 24;   // compact when this far past FirstIndex
constexpr int kConvergeStepsMax = 4000;       // bound on the healing phase
constexpr size_t kMaxReadyRoundsPerStep = 4;  // bound on Ready loops per node per step
constexpr size_t kMaxInFlightMessages = 50000;
// After convergence, steps allowed for reads held by the leader to finish:
// a few heartbeat rounds (heartbeats carry the newest pending read).
constexpr int kReadDrainStepsMax = 200;

// Probabilities are in parts per million so that all arithmetic is integral.
struct Faults {
  uint32_t drop_ppm = 0;
  uint32_t dup_ppm = 0;
  uint32_t long_delay_ppm = 0;
  uint32_t partition_ppm = 0;
  uint32_t heal_ppm = 0;
  uint32_t crash_ppm = 0;
  uint32_t restart_ppm = 0;
  uint32_t propose_ppm = 0;
  uint32_t read_ppm = 0;
  uint32_t transfer_ppm = 0;
  uint32_t compact_ppm = 0;
  uint32_t conf_change_ppm = 0;
};

struct InFlight {
  uint64_t deliver_step;
  uint64_t seq;
  Message msg;
};

struct SimNode {
  uint64_t id = kNone;
  std::unique_ptr<MemoryStorage> storage;  // durable: survives crashes
  std::unique_ptr<RawNode> raw;            // null while crashed
  uint32_t tick_rate_ppm = 1000000;        // ticks per step, in ppm
  uint64_t tick_debt_ppm = 0;
  int crash_point = -1;  // >= 0: crash at that point of the next Ready
  // Volatile: the applied state machine and the client's pending requests.
  uint64_t applied_index = 0;
  uint64_t state_hash = 0;
  std::map<std::string, size_t> waiting_writes;  // data -> write op
  std::map<std::string, size_t> waiting_reads;   // ctx -> read op
  // Reads this node accepted while leading: ctx -> the term it led. Cleared
  // with waiting_reads on a crash.
  std::map<std::string, uint64_t> reads_accepted_as_leader;
  std::vector<size_t> reads_to_serve;
  uint64_t leader_term_checked = 0;
  uint64_t last_commit = 0;
  int group = 0;  // partition group; messages only flow within a group
  // Removed from the membership and stopped by the operator; restarted
  // (from its stale storage) only if it is added back.
  bool decommissioned = false;
};

class Simulator {
 public:
  explicit Simulator(const SimOptions& o) : opts_(o), rng_(o.seed * 0x2545F4914F6CDD1DULL + 7) {}

  SimResult Run();

 private:
  bool Chance(uint32_t ppm) { return rng_.Uniform(1000000) < ppm; }
  void Setup();
  Config NodeConfig(uint64_t id, uint64_t applied) const;
  void Start(SimNode& n);
  void Crash(SimNode& n);
  void Step(bool faults_on);
  void InjectFaults();
  void ClientRequests();
  void Deliver();
  void ProcessReady(SimNode& n);
  void Persist(SimNode& n, const Ready& rd);
  void Send(const std::vector<Message>& msgs);
  void Apply(SimNode& n, const Ready& rd);
  void MaybeCompact(SimNode& n);
  void CheckLeaders();
  void CheckSenders(SimNode& n, const std::vector<Message>& msgs);
  std::string StalledLeaderRead() const;
  void ProposeConfChange(SimNode& n);
  void OnConfChangeCommitted(const Entry& e, const ConfChange& cc);
  void RunOperatorActions();
  bool IsMember(uint64_t id) const;
  const Raft* CurrentLeader() const;
  bool Converged() const;
  void DumpState() const;
  void Log(const std::string& s) const {
    if (opts_.verbose) std::fprintf(stderr, "[step %llu] %s\n", (unsigned long long)step_, s.c_str());
  }

  SimOptions opts_;
  Rng rng_;
  Config base_config_;
  Faults faults_;
  std::vector<SimNode> nodes_;
  std::vector<InFlight> network_;
  // Snapshots the transport failed to send: reported to the sender next step.
  std::vector<std::pair<uint64_t, uint64_t>> failed_snapshots_;
  uint64_t step_ = 0;
  uint64_t msg_seq_ = 0;
  bool network_faults_ = true;
  // Membership changes the operator acts on: each committed index once.
  uint64_t conf_actions_done_index_ = 0;
  std::vector<std::pair<uint64_t, bool>> operator_actions_;  // (node, start?)
  // Removed nodes to stop once every other live node applied the removal
  // (node, index of the removal).
  std::vector<std::pair<uint64_t, uint64_t>> pending_stops_;
  Checker checker_;
  SimStats stats_;
};

Config Simulator::NodeConfig(uint64_t id, uint64_t applied) const {
  Config c = base_config_;
  c.id = id;
  c.applied = applied;
  c.rng_seed = opts_.seed;
  return c;
}

void Simulator::Setup() {
  base_config_.election_timeout_ticks = kElectionTicks;
  base_config_.heartbeat_timeout_ticks = 1 + static_cast<int>(rng_.Uniform(2));
  base_config_.pre_vote = rng_.Uniform(4) != 0;
  base_config_.check_quorum = rng_.Uniform(4) != 0;
  base_config_.max_inflight_msgs = 1 + rng_.Uniform(8);
  base_config_.max_size_per_msg_bytes = 64ULL << rng_.Uniform(5);
  base_config_.max_committed_size_per_ready_bytes = 128ULL << rng_.Uniform(4);
  base_config_.max_uncommitted_entries_bytes = 512ULL << rng_.Uniform(4);
  if (base_config_.check_quorum && rng_.Uniform(2) == 0) {
    // Clocks differ by up to 2x, so the lease must be under half the
    // election timeout; one tick more of margin covers tick phase.
    base_config_.read_only_option = ReadOnlyOption::kLeaseBased;
    base_config_.lease_timeout_ticks = kElectionTicks / 2 - 2;
  }
  base_config_.testing_commit_old_term_by_counting = opts_.broken_commit_old_term;
  base_config_.testing_skip_vote_log_check = opts_.broken_skip_vote_log_check;

  faults_.drop_ppm = static_cast<uint32_t>(rng_.Uniform(150000));
  faults_.dup_ppm = static_cast<uint32_t>(rng_.Uniform(50000));
  faults_.long_delay_ppm = static_cast<uint32_t>(rng_.Uniform(80000));
  faults_.partition_ppm = 1000 + static_cast<uint32_t>(rng_.Uniform(6000));
  faults_.heal_ppm = 5000 + static_cast<uint32_t>(rng_.Uniform(20000));
  faults_.crash_ppm = static_cast<uint32_t>(rng_.Uniform(4000));
  faults_.restart_ppm = 10000 + static_cast<uint32_t>(rng_.Uniform(30000));
  faults_.propose_ppm = 50000 + static_cast<uint32_t>(rng_.Uniform(250000));
  faults_.read_ppm = 30000 + static_cast<uint32_t>(rng_.Uniform(150000));
  faults_.transfer_ppm = static_cast<uint32_t>(rng_.Uniform(3000));
  faults_.compact_ppm = 20000 + static_cast<uint32_t>(rng_.Uniform(100000));
  // One seed in four is crash-heavy with one-entry appends: the schedule in
  // which leaders die between replicating an old entry and their own.
  // Half the seeds also change membership, one member at a time.
  if (rng_.Uniform(2) == 0) faults_.conf_change_ppm = 1000 + static_cast<uint32_t>(rng_.Uniform(8000));
  if (rng_.Uniform(4) == 0) {
    faults_.crash_ppm = 10000 + static_cast<uint32_t>(rng_.Uniform(40000));
    faults_.restart_ppm = 50000 + static_cast<uint32_t>(rng_.Uniform(200000));
    base_config_.max_size_per_msg_bytes = 1;
  }

  ConfState cs;
  for (int i = 1; i <= opts_.nodes; ++i) cs.voters.push_back(static_cast<uint64_t>(i));
  nodes_.resize(static_cast<size_t>(opts_.nodes));
  for (int i = 0; i < opts_.nodes; ++i) {
    SimNode& n = nodes_[static_cast<size_t>(i)];
    n.id = static_cast<uint64_t>(i + 1);
    n.storage = std::make_unique<MemoryStorage>();
    n.storage->SetConfState(cs);
    // Clocks run at 50%..100% of the fastest rate.
    n.tick_rate_ppm = 500000 + static_cast<uint32_t>(rng_.Uniform(500001));
    Start(n);
  }
  Log("config pre_vote=" + std::to_string(base_config_.pre_vote) +
      " check_quorum=" + std::to_string(base_config_.check_quorum) +
      " lease=" + std::to_string(base_config_.read_only_option == ReadOnlyOption::kLeaseBased) +
      " inflight=" + std::to_string(base_config_.max_inflight_msgs));
}

void Simulator::Start(SimNode& n) {
  Result<Snapshot> snap = n.storage->GetSnapshot();
  uint64_t snap_index = snap->metadata.index;
  n.applied_index = snap_index;
  n.state_hash = snap_index == 0 ? 0 : ParseSnapshotHash(snap->data);
  Result<std::unique_ptr<RawNode>> raw = RawNode::Open(NodeConfig(n.id, snap_index), n.storage.get());
  if (!raw.ok()) {
    checker_.Fail("node " + std::to_string(n.id) + " failed to restart: " + raw.status().ToString());
    return;
  }
  n.raw = std::move(raw).value();
  n.last_commit = n.storage->hard_state().commit;
  n.leader_term_checked = 0;
  n.tick_debt_ppm = 0;
  n.crash_point = -1;
}

void Simulator::Crash(SimNode& n) {
  Log("crash node " + std::to_string(n.id));
  ++stats_.crashes;
  n.raw.reset();
  n.waiting_writes.clear();
  n.waiting_reads.clear();
  n.reads_accepted_as_leader.clear();
  n.reads_to_serve.clear();
  n.crash_point = -1;
}

void Simulator::InjectFaults() {
  bool partitioned = std::any_of(nodes_.begin(), nodes_.end(), [](const SimNode& n) { return n.group != 0; });
  if (!partitioned && Chance(faults_.partition_ppm)) {
    ++stats_.partitions;
    if (rng_.Uniform(2) == 0) {
      nodes_[rng_.Uniform(nodes_.size())].group = 1;  // isolate one node
    } else {
      for (SimNode& n : nodes_) n.group = static_cast<int>(rng_.Uniform(2));
    }
    std::string groups;
    for (const SimNode& n : nodes_) groups += std::to_string(n.group);
    Log("partition " + groups);
  } else if (partitioned && Chance(faults_.heal_ppm)) {
    for (SimNode& n : nodes_) n.group = 0;
    Log("heal");
  }
  SimNode& victim = nodes_[rng_.Uniform(nodes_.size())];
  if (victim.raw && victim.crash_point < 0 && Chance(faults_.crash_ppm)) {
    // Crash before persisting, after persisting but before sending, or
    // after sending but before applying the next Ready.
    victim.crash_point = static_cast<int>(rng_.Uniform(3));
    if (!victim.raw->HasReady()) Crash(victim);
  }
  for (SimNode& n : nodes_) {
    if (!n.raw && !n.decommissioned && Chance(faults_.restart_ppm)) {
      Log("restart node " + std::to_string(n.id));
      Start(n);
    }
  }
}

void Simulator::ClientRequests() {
  SimNode& n = nodes_[rng_.Uniform(nodes_.size())];
  if (!n.raw) return;
  if (Chance(faults_.propose_ppm)) {
    size_t op = checker_.StartWrite(n.id);
    std::string data = "w" + std::to_string(op);
    if (n.raw->Propose(data).ok()) n.waiting_writes.emplace(data, op);
  }
  if (Chance(faults_.read_ppm)) {
    size_t op = checker_.StartRead(n.id);
    std::string ctx = "r" + std::to_string(op);
    const Raft& r = n.raw->raft();
    bool leading = r.state() == StateRole::kLeader;
    uint64_t term = r.term();
    if (n.raw->ReadIndex(ctx).ok()) {
      ++stats_.reads_accepted;
      n.waiting_reads.emplace(ctx, op);
      if (leading) n.reads_accepted_as_leader.emplace(ctx, term);
    }
  }
  if (Chance(faults_.conf_change_ppm)) ProposeConfChange(n);
  if (n.raw->raft().state() == StateRole::kLeader && Chance(faults_.transfer_ppm)) {
    uint64_t target = 1 + rng_.Uniform(nodes_.size());
    Log("transfer leader " + std::to_string(n.id) + " -> " + std::to_string(target));
    (void)n.raw->TransferLeader(target);
  }
}

void Simulator::Send(const std::vector<Message>& msgs) {
  for (const Message& m : msgs) {
    if (network_.size() >= kMaxInFlightMessages) return;  // a full network drops
    if (network_faults_ && Chance(faults_.drop_ppm)) {
      if (m.type == MessageType::kSnap) failed_snapshots_.emplace_back(m.from, m.to);
      continue;
    }
    int copies = network_faults_ && Chance(faults_.dup_ppm) ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      uint64_t delay = 1 + rng_.Uniform(3);
      if (network_faults_ && Chance(faults_.long_delay_ppm)) delay += rng_.Uniform(40);
      network_.push_back(InFlight{step_ + delay, msg_seq_++, m});
    }
    if (m.type == MessageType::kSnap) ++stats_.snapshots_sent;
  }
}

void Simulator::Deliver() {
  for (const auto& [from, to] : failed_snapshots_) {
    if (nodes_[from - 1].raw) nodes_[from - 1].raw->ReportSnapshot(to, true);
  }
  failed_snapshots_.clear();
  std::vector<InFlight> due;
  std::vector<InFlight> rest;
  for (InFlight& f : network_) (f.deliver_step <= step_ ? due : rest).push_back(std::move(f));
  network_ = std::move(rest);
  std::sort(due.begin(), due.end(), [](const InFlight& a, const InFlight& b) {
    return a.deliver_step != b.deliver_step ? a.deliver_step < b.deliver_step : a.seq < b.seq;
  });
  for (InFlight& f : due) {
    SimNode& to = nodes_[f.msg.to - 1];
    SimNode& from = nodes_[f.msg.from - 1];
    bool delivered = to.raw && to.group == from.group;
    bool is_snap = f.msg.type == MessageType::kSnap;
    if (delivered) {
      ++stats_.messages_delivered;
      // Everything the simulated cluster sends is well formed: the
      // validator may refuse only a response from a node no longer a member.
      uint64_t to_id = f.msg.to;
      Status s = to.raw->Step(std::move(f.msg));
      if (s.code() == Code::kInvalidArgument && s.message().find("unknown peer") == std::string::npos) {
        checker_.Fail("node " + std::to_string(to_id) + " refused a message from a correct node: " +
                      s.ToString());
      }
    }
    // The transport tells the sender how a snapshot went, as etcd's does.
    if (is_snap && from.raw) from.raw->ReportSnapshot(to.id, !delivered);
  }
}

void Simulator::Persist(SimNode& n, const Ready& rd) {
  if (!rd.snapshot.IsEmpty()) {
    Status s = n.storage->ApplySnapshot(rd.snapshot);
    if (!s.ok()) checker_.Fail("node " + std::to_string(n.id) + " got a stale snapshot: " + s.ToString());
    n.applied_index = rd.snapshot.metadata.index;
    n.state_hash = ParseSnapshotHash(rd.snapshot.data);
    checker_.CheckSnapshot(n.id, n.applied_index, n.state_hash);
  }
  Status s = n.storage->Append(rd.entries);
  if (!s.ok()) checker_.Fail("append failed: " + s.ToString());
  checker_.CheckPersistedEntries(n.id, *n.storage, rd.entries);
  if (rd.hard_state) {
    n.storage->SetHardState(*rd.hard_state);
    if (rd.hard_state->commit > n.last_commit) {
      n.last_commit = rd.hard_state->commit;
      uint64_t t = n.raw->raft().log().ZeroTermOnOutOfBounds(n.last_commit);
      if (t != 0) checker_.RecordCommit(n.last_commit, t, rd.hard_state->term);
    }
  }
}

void Simulator::Apply(SimNode& n, const Ready& rd) {
  for (const Entry& e : rd.committed_entries) {
    if (e.index != n.applied_index + 1) {
      checker_.Fail("node " + std::to_string(n.id) + " applied index " + std::to_string(e.index) +
                    " after " + std::to_string(n.applied_index));
      return;
    }
    n.applied_index = e.index;
    n.state_hash = NextStateHash(n.state_hash, e);
    checker_.CheckApplied(n.id, e, n.state_hash);
    if (e.type == EntryType::kConfChange) {
      if (std::optional<ConfChange> cc = ConfChange::Decode(e.data)) {
        n.raw->ApplyConfChange(*cc);
        OnConfChangeCommitted(e, *cc);
      }
    }
    auto it = n.waiting_writes.find(e.data);
    if (it != n.waiting_writes.end()) {
      checker_.AckWrite(it->second, e.index);
      ++stats_.writes_acked;
      n.waiting_writes.erase(it);
    }
  }
  for (const ReadState& rs : rd.read_states) {
    auto it = n.waiting_reads.find(rs.request_ctx);
    if (it == n.waiting_reads.end()) continue;  // a duplicate answer
    checker_.ReadIndexKnown(it->second, rs.index);
    n.reads_to_serve.push_back(it->second);
    n.waiting_reads.erase(it);
    n.reads_accepted_as_leader.erase(rs.request_ctx);
  }
}

void Simulator::MaybeCompact(SimNode& n) {
  if (!Chance(faults_.compact_ppm)) return;
  if (n.applied_index < n.storage->FirstIndex() + kCompactLagEntries) return;
  ConfState cs = n.raw->raft().tracker().GetConfState();
  Status s = n.storage->CreateSnapshot(n.applied_index, cs, SnapshotData(n.applied_index, n.state_hash));
  if (!s.ok()) return;
  // Keep a few entries so that slightly lagging followers need no snapshot.
  uint64_t keep = rng_.Uniform(8);
  uint64_t compact_to = n.applied_index > keep ? n.applied_index - keep : n.applied_index;
  if (compact_to > n.storage->FirstIndex()) (void)n.storage->Compact(compact_to);
}

void Simulator::ProcessReady(SimNode& n) {
  for (size_t round = 0; round < kMaxReadyRoundsPerStep && n.raw && n.raw->HasReady(); ++round) {
    Ready rd = n.raw->GetReady();
    if (rd.soft_state) {
      Log("node " + std::to_string(n.id) + " " + std::string(StateRoleName(rd.soft_state->role)) +
          " term " + std::to_string(n.raw->raft().term()));
    }
    if (n.crash_point == 0) return Crash(n);
    Persist(n, rd);
    if (n.crash_point == 1) return Crash(n);
    CheckSenders(n, rd.messages);
    Send(rd.messages);
    if (n.crash_point == 2) return Crash(n);
    Apply(n, rd);
    n.raw->Advance(rd);
    // Serve reads whose index has been applied.
    std::vector<size_t> still_waiting;
    for (size_t op : n.reads_to_serve) {
      if (checker_.ReadIndexOf(op) <= n.applied_index) {
        checker_.ServeRead(op, n.applied_index, n.state_hash);
        ++stats_.reads_completed;
      } else {
        still_waiting.push_back(op);
      }
    }
    n.reads_to_serve = std::move(still_waiting);
    MaybeCompact(n);
  }
}

void Simulator::CheckLeaders() {
  for (SimNode& n : nodes_) {
    if (!n.raw || n.raw->raft().state() != StateRole::kLeader) continue;
    const Raft& r = n.raw->raft();
    stats_.max_term = std::max(stats_.max_term, r.term());
    if (n.leader_term_checked == r.term()) continue;
    n.leader_term_checked = r.term();
    ++stats_.leaders_elected;
    checker_.CheckNewLeader(n.id, r.term(), r.log());
  }
  std::vector<std::pair<uint64_t, const RaftLog*>> leaders;
  for (SimNode& n : nodes_) {
    if (n.raw && n.raw->raft().state() == StateRole::kLeader) {
      leaders.emplace_back(n.raw->raft().term(), &n.raw->raft().log());
      checker_.CheckElectionSafety(n.id, n.raw->raft().term());
    }
  }
  checker_.CheckNewCommitsAgainstLeaders(leaders);
}

// Only a leader sends kApp, kHeartbeat and kSnap, each in its term: check
// election safety (and, once per term, leader completeness) at the send,
// which also covers a leader deposed before the end of the step.
void Simulator::CheckSenders(SimNode& n, const std::vector<Message>& msgs) {
  for (const Message& m : msgs) {
    if (m.type != MessageType::kApp && m.type != MessageType::kHeartbeat &&
        m.type != MessageType::kSnap) {
      continue;
    }
    checker_.CheckElectionSafety(m.from, m.term);
    const Raft& r = n.raw->raft();
    if (r.state() == StateRole::kLeader && r.term() == m.term && n.leader_term_checked != m.term) {
      n.leader_term_checked = m.term;
      ++stats_.leaders_elected;
      stats_.max_term = std::max(stats_.max_term, m.term);
      checker_.CheckNewLeader(n.id, m.term, r.log());
    }
  }
}

// A read that a node accepted as leader and that is still unanswered while
// the node is up and leading in the same term (0 if none).
std::string Simulator::StalledLeaderRead() const {
  for (const SimNode& n : nodes_) {
    if (!n.raw || n.raw->raft().state() != StateRole::kLeader) continue;
    for (const auto& [ctx, term] : n.reads_accepted_as_leader) {
      if (term == n.raw->raft().term()) {
        return "read " + ctx + " accepted by leader " + std::to_string(n.id) + " in term " +
               std::to_string(term);
      }
    }
  }
  return "";
}

void Simulator::Step(bool faults_on) {
  ++step_;
  if (faults_on) InjectFaults();
  for (SimNode& n : nodes_) {
    if (!n.raw) continue;
    n.tick_debt_ppm += n.tick_rate_ppm;
    while (n.tick_debt_ppm >= 1000000) {
      n.tick_debt_ppm -= 1000000;
      n.raw->Tick();
    }
  }
  Deliver();
  if (faults_on) ClientRequests();
  // Process nodes in a random order each step.
  size_t start = rng_.Uniform(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) ProcessReady(nodes_[(start + i) % nodes_.size()]);
  for (SimNode& n : nodes_) {
    if (n.raw && n.crash_point >= 0 && !n.raw->HasReady()) Crash(n);
  }
  RunOperatorActions();
  CheckLeaders();
}

bool Simulator::Converged() const {
  for (const SimNode& n : nodes_) {
    if (!n.raw && !n.decommissioned) return false;
  }
  const Raft* leader = CurrentLeader();
  if (leader == nullptr) return false;
  uint64_t commit = leader->log().committed();
  if (commit != leader->log().LastIndex()) return false;
  if (leader->log().ZeroTermOnOutOfBounds(commit) != leader->term()) return false;
  for (const SimNode& n : nodes_) {
    if (!leader->tracker().IsMember(n.id)) continue;
    if (!n.raw || n.applied_index != commit || n.raw->raft().term() != leader->term()) return false;
  }
  return true;
}

void Simulator::DumpState() const {
  if (!opts_.verbose) return;
  for (const SimNode& n : nodes_) {
    if (!n.raw) {
      Log("node " + std::to_string(n.id) + " down");
      continue;
    }
    const Raft& r = n.raw->raft();
    std::string line = "node " + std::to_string(n.id) + " " + std::string(StateRoleName(r.state())) +
                       " term=" + std::to_string(r.term()) + " lead=" + std::to_string(r.lead()) +
                       " commit=" + std::to_string(r.log().committed()) +
                       " applied=" + std::to_string(n.applied_index) +
                       " last=" + std::to_string(r.log().LastIndex()) +
                       " first=" + std::to_string(r.log().FirstIndex());
    if (r.state() == StateRole::kLeader) {
      for (const auto& [id, pr] : r.tracker().progress()) {
        line += "\n    " + std::to_string(id) + ": " + pr.Describe();
      }
    }
    Log(line);
  }
}

// The client asks a node to change the membership it knows: add back a
// removed node (as learner or voter), promote a learner, or remove a voter.
void Simulator::ProposeConfChange(SimNode& n) {
  const ProgressTracker& t = n.raw->raft().tracker();
  std::vector<ConfChange> options;
  for (const SimNode& m : nodes_) {
    if (!t.IsMember(m.id)) {
      options.push_back(ConfChange{ConfChangeType::kAddLearnerNode, m.id});
      options.push_back(ConfChange{ConfChangeType::kAddNode, m.id});
    } else if (t.IsLearner(m.id)) {
      options.push_back(ConfChange{ConfChangeType::kAddNode, m.id});
      options.push_back(ConfChange{ConfChangeType::kRemoveNode, m.id});
    } else if (t.voters().size() > 2) {
      options.push_back(ConfChange{ConfChangeType::kRemoveNode, m.id});
    }
  }
  if (options.empty()) return;
  ConfChange cc = options[rng_.Uniform(options.size())];
  Log("node " + std::to_string(n.id) + " proposes conf change " + cc.Encode());
  (void)n.raw->ProposeConfChange(cc);
}

// The operator stops a node once its removal commits and starts it again
// (from its old storage) once it is added back. Each committed change is
// acted on once, in log order.
void Simulator::OnConfChangeCommitted(const Entry& e, const ConfChange& cc) {
  if (e.index <= conf_actions_done_index_) return;
  conf_actions_done_index_ = e.index;
  if (cc.type == ConfChangeType::kRemoveNode) {
    pending_stops_.emplace_back(cc.node_id, e.index);
  } else {
    // Added back before it was stopped: it must keep running.
    std::erase_if(pending_stops_, [&](const auto& p) { return p.first == cc.node_id; });
    operator_actions_.emplace_back(cc.node_id, true);
  }
}

void Simulator::RunOperatorActions() {
  // A removed node is stopped only when every other node that is not
  // stopped has applied its removal; stopping it earlier could take away
  // the only copy of the commit index the others need to move on.
  std::vector<std::pair<uint64_t, uint64_t>> still_pending;
  for (const auto& [id, index] : pending_stops_) {
    bool all_applied = true;
    for (const SimNode& n : nodes_) {
      if (n.id != id && !n.decommissioned && (!n.raw || n.applied_index < index)) all_applied = false;
    }
    if (all_applied) {
      operator_actions_.emplace_back(id, false);
    } else {
      still_pending.emplace_back(id, index);
    }
  }
  pending_stops_ = std::move(still_pending);
  for (const auto& [id, start] : operator_actions_) {
    SimNode& n = nodes_[id - 1];
    if (!start && !n.decommissioned) {
      Log("operator stops removed node " + std::to_string(id));
      n.decommissioned = true;
      if (n.raw) Crash(n);
    } else if (start && n.decommissioned) {
      Log("operator starts re-added node " + std::to_string(id));
      n.decommissioned = false;
      if (!n.raw) Start(n);
    }
  }
  operator_actions_.clear();
}

const Raft* Simulator::CurrentLeader() const {
  const Raft* leader = nullptr;
  for (const SimNode& n : nodes_) {
    if (!n.raw) continue;
    const Raft& r = n.raw->raft();
    if (r.state() == StateRole::kLeader && (leader == nullptr || r.term() > leader->term())) leader = &r;
  }
  return leader;
}

// Membership as the leader of the highest term sees it (a stale leader in
// an old term may still be around).
bool Simulator::IsMember(uint64_t id) const {
  if (const Raft* leader = CurrentLeader()) return leader->tracker().IsMember(id);
  return !nodes_[id - 1].decommissioned;
}

SimResult Simulator::Run() {
  Setup();
  for (int i = 0; i < opts_.steps && checker_.ok(); ++i) Step(true);
  // Heal everything and let the cluster converge.
  network_faults_ = false;
  for (SimNode& n : nodes_) {
    n.group = 0;
    if (n.raw && n.crash_point >= 0) n.crash_point = -1;
    if (!n.raw && !n.decommissioned) Start(n);
  }
  Log("heal all and converge");
  bool converged = false;
  for (int i = 0; i < kConvergeStepsMax && checker_.ok(); ++i) {
    Step(false);
    if (Converged()) {
      converged = true;
      break;
    }
  }
  if (!converged) DumpState();
  if (checker_.ok() && !converged) {
    checker_.Fail("liveness: cluster did not converge within " + std::to_string(kConvergeStepsMax) +
                  " steps after healing");
  }
  // Reads held by a leader that kept leading must be answered.
  for (int i = 0; converged && i < kReadDrainStepsMax && checker_.ok() && !StalledLeaderRead().empty(); ++i) {
    Step(false);
  }
  if (checker_.ok() && converged) {
    std::string stalled = StalledLeaderRead();
    if (!stalled.empty()) {
      DumpState();
      checker_.Fail("liveness: " + stalled + " was never answered although it still leads");
    }
  }
  if (checker_.ok()) {
    std::vector<uint64_t> applied;
    for (const SimNode& n : nodes_) {
      if (IsMember(n.id)) applied.push_back(n.applied_index);
    }
    checker_.CheckFinal(applied);
  }
  SimResult result;
  result.ok = checker_.ok();
  result.violation = checker_.violation();
  stats_.steps = step_;
  stats_.lease_reads = base_config_.read_only_option == ReadOnlyOption::kLeaseBased;
  stats_.final_applied_index = nodes_.empty() ? 0 : nodes_[0].applied_index;
  result.stats = stats_;
  return result;
}

}  // namespace

SimResult RunSimulation(const SimOptions& options) {
  Simulator sim(options);
  return sim.Run();
}

std::string ReplayCommand(const SimOptions& o) {
  std::string cmd = "build/bin/raft-sim --seed " + std::to_string(o.seed) + " --nodes " +
                    std::to_string(o.nodes) + " --steps " + std::to_string(o.steps);
  if (o.broken_commit_old_term) cmd += " --broken-commit-old-term";
  if (o.broken_skip_vote_log_check) cmd += " --broken-skip-vote-log-check";
  return cmd + " --verbose";
}

}  // namespace bulwark::raft::sim
