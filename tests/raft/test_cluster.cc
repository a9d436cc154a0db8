#include "tests/raft/test_cluster.h"

#include <algorithm>
#include <cassert>

#include <catch2/catch.hpp>

namespace bulwark::raft::testing {

namespace {
constexpr int kStabilizeRoundsMax = 1000;  // a livelocked test fails, not hangs
}  // namespace

void TestCluster::AddNodes(int count, const ConfState& initial) {
  uint64_t first = nodes_.empty() ? 1 : nodes_.rbegin()->first + 1;
  ConfState cs = initial;
  if (cs.voters.empty() && cs.learners.empty()) {
    for (int i = 0; i < count; ++i) cs.voters.push_back(first + static_cast<uint64_t>(i));
  }
  for (int i = 0; i < count; ++i) {
    Config c = base_;
    c.id = first + static_cast<uint64_t>(i);
    AddNodeWithConfig(c, cs);
  }
}

void TestCluster::AddNodeWithConfig(const Config& config, const ConfState& initial) {
  auto n = std::make_unique<TestNode>();
  n->id = config.id;
  n->config = config;
  n->storage = std::make_unique<MemoryStorage>();
  n->storage->SetConfState(initial);
  n->conf_state = initial;
  Start(*n);
  nodes_[config.id] = std::move(n);
}

void TestCluster::Start(TestNode& n) {
  Config c = n.config;
  c.applied = n.storage->FirstIndex() - 1;
  Result<std::unique_ptr<RawNode>> raw = RawNode::Open(c, n.storage.get());
  assert(raw.ok() && "test node failed to open");
  n.raw = std::move(raw).value();
  n.applied_index = c.applied;
}

void TestCluster::Restart(uint64_t id) {
  TestNode& n = node(id);
  uint64_t snap_index = n.storage->FirstIndex() - 1;
  n.applied.erase(std::remove_if(n.applied.begin(), n.applied.end(),
                                 [&](const Entry& e) { return e.index > snap_index; }),
                  n.applied.end());
  n.read_states.clear();
  Start(n);
}

std::vector<uint64_t> TestCluster::ids() const {
  std::vector<uint64_t> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

static std::string DescribeReady(const Ready& rd) {
  std::string out;
  if (rd.soft_state) {
    out += "Lead:" + std::to_string(rd.soft_state->lead) + " State:" +
           std::string(StateRoleName(rd.soft_state->role)) + "\n";
  }
  if (rd.hard_state) out += "HardState " + DescribeHardState(*rd.hard_state) + "\n";
  if (!rd.entries.empty()) {
    out += "Entries:\n";
    for (const Entry& e : rd.entries) out += DescribeEntry(e) + "\n";
  }
  if (!rd.snapshot.IsEmpty()) {
    out += "Snapshot Index:" + std::to_string(rd.snapshot.metadata.index) +
           " Term:" + std::to_string(rd.snapshot.metadata.term) + " " +
           DescribeConfState(rd.snapshot.metadata.conf_state) + "\n";
  }
  if (!rd.committed_entries.empty()) {
    out += "CommittedEntries:\n";
    for (const Entry& e : rd.committed_entries) out += DescribeEntry(e) + "\n";
  }
  if (!rd.messages.empty()) {
    out += "Messages:\n";
    for (const Message& m : rd.messages) out += DescribeMessage(m) + "\n";
  }
  for (const ReadState& rs : rd.read_states) {
    out += "ReadState Index:" + std::to_string(rs.index) + " Ctx:\"" + rs.request_ctx + "\"\n";
  }
  return out;
}

std::string TestCluster::ProcessReady(uint64_t id) {
  TestNode& n = node(id);
  if (!n.raw->HasReady()) return "";
  Ready rd = n.raw->GetReady();
  std::string out = DescribeReady(rd);
  // 1. Persist.
  if (!rd.snapshot.IsEmpty()) {
    Status s = n.storage->ApplySnapshot(rd.snapshot);
    assert(s.ok());
    n.applied_index = rd.snapshot.metadata.index;
    n.conf_state = rd.snapshot.metadata.conf_state;
  }
  Status s = n.storage->Append(rd.entries);
  assert(s.ok());
  if (rd.hard_state) n.storage->SetHardState(*rd.hard_state);
  // 2. Send.
  for (Message& m : rd.messages) mailbox_.push_back(std::move(m));
  // 3. Apply.
  for (const Entry& e : rd.committed_entries) {
    n.applied.push_back(e);
    n.applied_index = e.index;
    if (e.type == EntryType::kConfChange) {
      if (std::optional<ConfChange> cc = ConfChange::Decode(e.data)) {
        n.conf_state = n.raw->ApplyConfChange(*cc);
        out += "ApplyConfChange " + e.data + " -> " + DescribeConfState(n.conf_state) + "\n";
      }
    }
  }
  for (const ReadState& rs : rd.read_states) n.read_states.push_back(rs);
  n.raw->Advance(rd);
  (void)s;
  return out;
}

bool TestCluster::Connected(uint64_t from, uint64_t to) const {
  auto gf = group_.find(from);
  auto gt = group_.find(to);
  int a = gf == group_.end() ? 0 : gf->second;
  int b = gt == group_.end() ? 0 : gt->second;
  return a == b;
}

std::string TestCluster::DeliverMsgs(uint64_t id) {
  std::vector<Message> mine;
  std::vector<Message> rest;
  for (Message& m : mailbox_) (m.to == id ? mine : rest).push_back(std::move(m));
  mailbox_ = std::move(rest);
  std::string out;
  for (Message& m : mine) {
    if (!Connected(m.from, m.to) || nodes_.count(m.to) == 0) {
      out += "dropped: " + DescribeMessage(m) + "\n";
      continue;
    }
    out += DescribeMessage(m) + "\n";
    Status s = node(id).raw->Step(std::move(m));
    if (!s.ok()) out += "  error: " + s.ToString() + "\n";
  }
  return out;
}

size_t TestCluster::DropMsgs(uint64_t id) {
  size_t before = mailbox_.size();
  mailbox_.erase(std::remove_if(mailbox_.begin(), mailbox_.end(),
                                [&](const Message& m) { return m.to == id; }),
                 mailbox_.end());
  return before - mailbox_.size();
}

std::string TestCluster::Stabilize() {
  std::string out;
  for (int round = 0; round < kStabilizeRoundsMax; ++round) {
    bool progress = false;
    for (uint64_t id : ids()) {
      std::string r = ProcessReady(id);
      if (!r.empty()) {
        out += "> " + std::to_string(id) + " handling Ready\n" + r;
        progress = true;
      }
    }
    for (uint64_t id : ids()) {
      bool has_mail = std::any_of(mailbox_.begin(), mailbox_.end(),
                                  [&](const Message& m) { return m.to == id; });
      if (!has_mail) continue;
      out += "> " + std::to_string(id) + " receiving messages\n" + DeliverMsgs(id);
      progress = true;
    }
    if (!progress) return out;
  }
  assert(false && "Stabilize did not converge");
  return out;
}

void TestCluster::Tick(uint64_t id, int ticks) {
  for (int i = 0; i < ticks; ++i) node(id).raw->Tick();
}

void TestCluster::TickElection(uint64_t id) {
  Tick(id, node(id).raw->raft().randomized_election_timeout());
}

void TestCluster::TickHeartbeat(uint64_t id) { Tick(id, node(id).config.heartbeat_timeout_ticks); }

void TestCluster::Partition(const std::vector<std::set<uint64_t>>& groups) {
  group_.clear();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (uint64_t id : groups[g]) group_[id] = static_cast<int>(g) + 1;
  }
}

void TestCluster::Isolate(uint64_t id) {
  group_.clear();
  group_[id] = 1;
}

Status TestCluster::Compact(uint64_t id, uint64_t index) {
  TestNode& n = node(id);
  if (index > n.applied_index) return Status::InvalidArgument("compact beyond the applied index");
  BULWARK_RETURN_IF_ERROR(n.storage->CreateSnapshot(index, n.conf_state, "snap@" + std::to_string(index)));
  return n.storage->Compact(index);
}

std::string TestCluster::Describe() const {
  std::string out;
  for (const auto& [id, n] : nodes_) {
    const Raft& r = n->raw->raft();
    out += std::to_string(id) + ": " + std::string(StateRoleName(r.state())) +
           " term=" + std::to_string(r.term()) + " lead=" + std::to_string(r.lead()) +
           " commit=" + std::to_string(r.log().committed()) +
           " applied=" + std::to_string(n->applied_index) +
           " last=" + std::to_string(r.log().LastIndex()) + "\n";
  }
  return out;
}

std::string TestCluster::RaftLog(uint64_t id) const {
  const TestNode& n = *nodes_.at(id);
  const auto& log = n.raw->raft().log();
  std::string out;
  if (log.FirstIndex() > 1) out += "snapshot at " + std::to_string(log.FirstIndex() - 1) + "\n";
  for (const Entry& e : log.AllEntries()) out += DescribeEntry(e) + "\n";
  if (out.empty()) out = "log is empty\n";
  return out;
}

TestCluster ElectedCluster(const Config& base, int n) {
  TestCluster c(base);
  c.AddNodes(n);
  c.ElectLeader(1);
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  return c;
}

}  // namespace bulwark::raft::testing
