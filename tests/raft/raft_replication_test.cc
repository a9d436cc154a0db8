// Log replication: figure 2 rules for leaders and AppendEntries, commit by
// counting (current term only), flow control, snapshots and the
// uncommitted-size bound.

#include <catch2/catch.hpp>

#include "tests/raft/test_cluster.h"

namespace bulwark::raft {
namespace {

using testing::ElectedCluster;
using testing::TestCluster;

Config BaseConfig() { return testing::SmallClusterConfig(7); }

std::unique_ptr<Raft> RaftWithLog(MemoryStorage* s, uint64_t id, const std::vector<uint64_t>& terms,
                                  uint64_t term, Config c = BaseConfig()) {
  s->SetConfState(ConfState{{1, 2, 3}, {}});
  std::vector<Entry> ents;
  for (size_t i = 0; i < terms.size(); ++i) {
    ents.push_back(Entry{terms[i], i + 1, EntryType::kNormal, "e" + std::to_string(i + 1)});
  }
  REQUIRE(s->Append(ents).ok());
  s->SetHardState(HardState{term, kNone, 0});
  c.id = id;
  auto r = Raft::Open(c, s);
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Moves messages between Rafts until none are left (bounded).
void Exchange(const std::map<uint64_t, Raft*>& nodes) {
  for (int round = 0; round < 1000; ++round) {
    std::vector<Message> msgs;
    for (const auto& [id, r] : nodes) {
      for (Message& m : r->TakeMessages()) msgs.push_back(std::move(m));
    }
    if (msgs.empty()) return;
    for (Message& m : msgs) {
      auto it = nodes.find(m.to);
      if (it != nodes.end()) (void)it->second->Step(std::move(m));
    }
  }
  FAIL("messages did not quiesce");
}

std::vector<uint64_t> LogTerms(const Raft& r) {
  std::vector<uint64_t> out;
  for (const Entry& e : r.log().AllEntries()) out.push_back(e.term);
  return out;
}

Message Prop(uint64_t id, std::string data) {
  Message m;
  m.type = MessageType::kProp;
  m.from = id;
  m.entries.push_back(Entry{0, 0, EntryType::kNormal, std::move(data)});
  return m;
}

TEST_CASE("A proposal is replicated and committed by a majority and applied", "[raft][figure2][replication]") {
  // Proves "Leaders: if command received from client, append to local log,
  // respond after entry applied"; and that followers apply the same entry.
  TestCluster c = ElectedCluster(BaseConfig());
  REQUIRE(c.node(1).raw->Propose("hello").ok());
  c.Stabilize();
  for (uint64_t id : c.ids()) {
    REQUIRE(c.node(id).applied.size() == 2);
    CHECK(c.node(id).applied.back().data == "hello");
    CHECK(c.node(id).applied.back().index == 2);
  }
}

TEST_CASE("A batch of proposals travels in one append per follower and commits in order", "[raft][replication]") {
  // Proves RawNode::ProposeBatch: the runner's batched writes cost one
  // append message per follower, not one per entry, and keep their order.
  TestCluster c = ElectedCluster(BaseConfig());
  REQUIRE(c.node(1).raw->ProposeBatch({"a", "b", "c"}).ok());
  c.ProcessReady(1);
  int appends = 0;
  for (const Message& m : c.mailbox()) {
    if (m.type != MessageType::kApp) continue;
    ++appends;
    REQUIRE(m.entries.size() == 3);
    CHECK(m.entries[0].data == "a");
    CHECK(m.entries[2].data == "c");
  }
  CHECK(appends == 2);
  c.Stabilize();
  for (uint64_t id : c.ids()) {
    REQUIRE(c.node(id).applied.size() == 4);
    CHECK(c.node(id).applied[1].data == "a");
    CHECK(c.node(id).applied[3].data == "c");
    CHECK(c.node(id).applied[3].index == 4);
  }
  // A follower refuses the whole batch when it knows no leader.
  c.Isolate(2);
  c.TickElection(2);
  c.Stabilize();
  CHECK_FALSE(c.node(2).raw->ProposeBatch({"x", "y"}).ok());
}

TEST_CASE("A leader commits with a majority even when a minority is down", "[raft][figure2][replication]") {
  // Proves commit needs a majority, not everyone; and that the isolated
  // follower catches up after the partition heals.
  TestCluster c = ElectedCluster(BaseConfig(), 5);
  c.Partition({{1, 2, 3}, {4, 5}});
  REQUIRE(c.node(1).raw->Propose("x").ok());
  c.Stabilize();
  CHECK(c.raft(1).log().committed() == 2);
  CHECK(c.raft(4).log().committed() == 1);
  c.Partition({{1, 2}, {3, 4, 5}});
  REQUIRE(c.node(1).raw->Propose("y").ok());
  c.Stabilize();
  CHECK(c.raft(1).log().committed() == 2);  // only 2 of 5 hold "y"
  c.Heal();
  c.TickHeartbeat(1);
  c.Stabilize();
  for (uint64_t id : c.ids()) CHECK(c.raft(id).log().committed() == 3);
}

TEST_CASE("AppendEntries from a stale term is not applied", "[raft][figure2][replication]") {
  // Proves AppendEntries rule 1: reply false if term < currentTerm.
  MemoryStorage s;
  auto r = RaftWithLog(&s, 2, {1, 1}, 3);
  Message app;
  app.type = MessageType::kApp;
  app.from = 1;
  app.to = 2;
  app.term = 2;
  app.index = 2;
  app.log_term = 1;
  app.entries = {Entry{2, 3, EntryType::kNormal, "stale"}};
  REQUIRE(r->Step(app).ok());
  CHECK(r->log().LastIndex() == 2);
  CHECK(r->term() == 3);
}

TEST_CASE("A follower rejects an append whose previous entry does not match", "[raft][figure2][replication]") {
  // Proves AppendEntries rule 2 and that the rejection carries a hint.
  MemoryStorage s;
  auto r = RaftWithLog(&s, 2, {1, 1, 2}, 2);
  Message app;
  app.type = MessageType::kApp;
  app.from = 1;
  app.to = 2;
  app.term = 3;
  app.index = 3;
  app.log_term = 3;
  REQUIRE(r->Step(app).ok());
  auto resp = r->TakeMessages();
  REQUIRE(resp.size() == 1);
  CHECK(resp[0].reject);
  CHECK(resp[0].reject_hint == 3);
  CHECK(resp[0].log_term == 2);
}

TEST_CASE("A new leader repairs divergent follower logs (figure 7)", "[raft][figure2][replication]") {
  // Proves "Leaders: if AppendEntries fails because of log inconsistency,
  // decrement nextIndex and retry", and AppendEntries rules 3-4 (a
  // conflicting suffix is deleted): all logs end up equal to the leader's.
  MemoryStorage s1;
  MemoryStorage s2;
  MemoryStorage s3;
  auto leader = RaftWithLog(&s1, 1, {1, 1, 1, 4, 4, 5, 5, 6, 6, 6}, 7);
  auto missing = RaftWithLog(&s2, 2, {1, 1, 1, 4}, 7);
  auto extra = RaftWithLog(&s3, 3, {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}, 7);
  leader->BecomeCandidate();
  leader->BecomeLeader();  // term 8, appends 8/11
  REQUIRE(leader->Step(Prop(1, "x")).ok());
  Exchange({{1, leader.get()}, {2, missing.get()}, {3, extra.get()}});
  std::vector<uint64_t> want = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8, 8};
  CHECK(LogTerms(*leader) == want);
  CHECK(LogTerms(*missing) == want);
  CHECK(LogTerms(*extra) == want);
  CHECK(leader->log().committed() == 12);
}

TEST_CASE("Entries of older terms are never committed by counting (figure 8)", "[raft][figure2][replication]") {
  // Proves "Leaders: commit N only if log[N].term == currentTerm": an entry
  // of term 2 on a majority stays uncommitted until an entry of the
  // leader's own term is also on a majority. The test-only broken rule
  // commits it early, which is exactly the bug the rule prevents.
  for (bool broken : {false, true}) {
    Config cfg = BaseConfig();
    cfg.testing_commit_old_term_by_counting = broken;
    MemoryStorage s;
    auto r = RaftWithLog(&s, 1, {1, 2}, 3, cfg);
    r->BecomeCandidate();
    r->BecomeLeader();  // term 4; appends 4/3
    r->TakeMessages();
    Message ack;
    ack.type = MessageType::kAppResp;
    ack.from = 2;
    ack.to = 1;
    ack.term = 4;
    ack.index = 2;  // follower 2 holds 1/1 and 2/2 but not 4/3
    REQUIRE(r->Step(ack).ok());
    CHECK(r->log().committed() == (broken ? 2 : 0));
    ack.index = 3;
    REQUIRE(r->Step(ack).ok());
    CHECK(r->log().committed() == 3);
  }
}

TEST_CASE("A follower never commits past what the heartbeat proves it holds", "[raft][replication]") {
  // Proves the heartbeat carries min(match, commit), so a lagging follower
  // does not mark entries committed that it lacks or that may differ.
  TestCluster c = ElectedCluster(BaseConfig());
  c.Isolate(3);
  REQUIRE(c.node(1).raw->Propose("a").ok());
  c.Stabilize();
  c.Heal();
  c.TickHeartbeat(1);
  c.ProcessReady(1);
  for (Message& m : c.mailbox()) {
    if (m.to == 3) CHECK(m.commit == 1);
  }
}

TEST_CASE("Flow control: at most max_inflight_msgs appends are in flight", "[raft][flow]") {
  // Proves pipelining is bounded by max_inflight_msgs, and that an
  // acknowledgement reopens the window.
  Config cfg = BaseConfig();
  cfg.max_inflight_msgs = 2;
  TestCluster c = ElectedCluster(cfg);
  for (int i = 0; i < 6; ++i) REQUIRE(c.node(1).raw->Propose("p" + std::to_string(i)).ok());
  c.ProcessReady(1);
  size_t to_2 = 0;
  for (const Message& m : c.mailbox()) to_2 += m.to == 2 && m.type == MessageType::kApp;
  CHECK(to_2 == 2);
  c.Stabilize();
  for (uint64_t id : c.ids()) CHECK(c.raft(id).log().committed() == 7);
}

TEST_CASE("Flow control: appends respect max_size_per_msg_bytes", "[raft][flow]") {
  // Proves the byte limit splits entries across messages (one entry at
  // least, so nothing stalls).
  Config cfg = BaseConfig();
  cfg.max_size_per_msg_bytes = 150;
  TestCluster c = ElectedCluster(cfg);
  c.Isolate(2);
  for (int i = 0; i < 4; ++i) REQUIRE(c.node(1).raw->Propose(std::string(100, 'a' + i)).ok());
  c.Stabilize();
  c.Heal();
  c.TickHeartbeat(1);
  std::string trace = c.Stabilize();
  size_t apps = 0;
  for (const Message& m : c.raft(1).messages()) apps += m.type == MessageType::kApp;
  (void)apps;
  CHECK(c.raft(2).log().committed() == 5);
  // Every append to node 2 carried at most one 100-byte entry.
  CHECK(trace.find(std::string(100, 'a') + "\", ") == std::string::npos);
}

TEST_CASE("A follower behind the compacted log catches up from a snapshot", "[raft][snapshot]") {
  // Proves the leader sends its snapshot when the entries a follower needs
  // are compacted, the follower installs it, and then resumes appends.
  TestCluster c = ElectedCluster(BaseConfig());
  c.Isolate(3);
  for (int i = 0; i < 5; ++i) REQUIRE(c.node(1).raw->Propose("v" + std::to_string(i)).ok());
  c.Stabilize();
  REQUIRE(c.Compact(1, 5).ok());
  c.Heal();
  c.TickHeartbeat(1);
  std::string trace = c.Stabilize();
  CHECK(trace.find("MsgSnap") != std::string::npos);
  c.node(1).raw->ReportSnapshot(3, false);
  REQUIRE(c.node(1).raw->Propose("after").ok());
  c.Stabilize();
  CHECK(c.raft(3).log().FirstIndex() == 6);
  CHECK(c.raft(3).log().committed() == 7);
  REQUIRE_FALSE(c.node(3).applied.empty());
  CHECK(c.node(3).applied.back().data == "after");
  CHECK(c.node(3).storage->GetSnapshot()->data == "snap@5");
}

TEST_CASE("A snapshot older than the follower's commit is ignored", "[raft][snapshot]") {
  // Proves restore never moves a follower backwards.
  MemoryStorage s;
  auto r = RaftWithLog(&s, 2, {1, 1, 1}, 1);
  r->log().CommitTo(3);
  Message m;
  m.type = MessageType::kSnap;
  m.from = 1;
  m.to = 2;
  m.term = 1;
  m.snapshot = Snapshot{"", SnapshotMetadata{ConfState{{1, 2, 3}, {}}, 2, 1}};
  REQUIRE(r->Step(m).ok());
  CHECK(r->log().committed() == 3);
  CHECK_FALSE(r->log().UnstableSnapshot().has_value());
  auto resp = r->TakeMessages();
  REQUIRE(resp.size() == 1);
  CHECK(resp[0].index == 3);
}

TEST_CASE("Proposals beyond max_uncommitted_entries_bytes are refused until applied", "[raft][limits]") {
  // Proves the bound on uncommitted entries: a leader that cannot commit
  // (no quorum) stops accepting proposals instead of growing without bound.
  Config cfg = BaseConfig();
  cfg.max_uncommitted_entries_bytes = 10;
  TestCluster c = ElectedCluster(cfg);
  c.Isolate(1);
  REQUIRE(c.node(1).raw->Propose("123456").ok());
  Status s = c.node(1).raw->Propose("123456");
  CHECK(s.code() == Code::kResourceExhausted);
  c.Stabilize();
  c.Heal();
  c.TickHeartbeat(1);
  c.Stabilize();
  CHECK(c.raft(1).uncommitted_size() == 0);
  CHECK(c.node(1).raw->Propose("123456").ok());
}

}  // namespace
}  // namespace bulwark::raft
