// Features beyond figure 2: linearizable reads (ReadIndex, lease), learners,
// single-member membership change, leadership transfer, proposal
// forwarding, and configuration validation.

#include <catch2/catch.hpp>

#include "tests/raft/test_cluster.h"

namespace bulwark::raft {
namespace {

using testing::ElectedCluster;
using testing::TestCluster;

Config BaseConfig() { return testing::SmallClusterConfig(11); }

// ---- reads ----

TEST_CASE("ReadIndex on the leader answers only after a heartbeat quorum", "[raft][read]") {
  // Proves the safe read protocol: the read state (at the commit index) is
  // released only once a majority confirmed leadership after the request.
  TestCluster c = ElectedCluster(BaseConfig());
  REQUIRE(c.node(1).raw->Propose("x").ok());
  c.Stabilize();
  REQUIRE(c.node(1).raw->ReadIndex("ctx1").ok());
  c.ProcessReady(1);
  CHECK(c.node(1).read_states.empty());
  c.Stabilize();
  REQUIRE(c.node(1).read_states.size() == 1);
  CHECK(c.node(1).read_states[0].index == 2);
  CHECK(c.node(1).read_states[0].request_ctx == "ctx1");
}

TEST_CASE("ReadIndex on a leader that lost its quorum never answers", "[raft][read]") {
  // Proves a partitioned (possibly deposed) leader cannot serve a read.
  TestCluster c = ElectedCluster(BaseConfig());
  c.Isolate(1);
  REQUIRE(c.node(1).raw->ReadIndex("lost").ok());
  c.Stabilize();
  c.TickHeartbeat(1);
  c.Stabilize();
  CHECK(c.node(1).read_states.empty());
}

TEST_CASE("ReadIndex on a follower is forwarded to the leader", "[raft][read]") {
  // Proves followers get linearizable read indexes through the leader.
  TestCluster c = ElectedCluster(BaseConfig());
  REQUIRE(c.node(1).raw->Propose("x").ok());
  c.Stabilize();
  REQUIRE(c.node(2).raw->ReadIndex("f").ok());
  c.Stabilize();
  REQUIRE(c.node(2).read_states.size() == 1);
  CHECK(c.node(2).read_states[0].index == 2);
}

TEST_CASE("A new leader defers reads until it commits an entry of its term", "[raft][read]") {
  // Proves a leader does not answer with a commit index it has not yet
  // learned (thesis 6.4): the read waits for the leader's empty entry.
  TestCluster c(BaseConfig());
  c.AddNodes(3);
  c.ElectBeforeFirstCommit(1);  // now leader, empty entry not committed yet
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  REQUIRE(c.raft(1).log().committed() == 0);
  REQUIRE(c.node(1).raw->ReadIndex("early").ok());
  c.Stabilize();
  REQUIRE(c.node(1).read_states.size() == 1);
  CHECK(c.node(1).read_states[0].index == 1);
}

TEST_CASE("Lease reads require check-quorum", "[raft][read][config]") {
  // Proves the configuration guard: without check-quorum a deposed leader
  // would never notice and would serve stale reads from its lease.
  Config c = BaseConfig();
  c.id = 1;
  c.read_only_option = ReadOnlyOption::kLeaseBased;
  CHECK(c.Validate().code() == Code::kInvalidArgument);
  c.check_quorum = true;
  CHECK(c.Validate().ok());
}

TEST_CASE("Lease reads answer at once while a quorum's acks are fresh", "[raft][read][lease]") {
  // Proves the lease path: with heartbeat acks from a quorum sent less than
  // lease_timeout_ticks ago the read is answered without a new round; once
  // the acks are stale (leader cut off) it falls back to a heartbeat round,
  // which cannot complete without a quorum.
  Config cfg = BaseConfig();
  cfg.check_quorum = true;
  cfg.read_only_option = ReadOnlyOption::kLeaseBased;
  cfg.lease_timeout_ticks = 4;
  TestCluster c = ElectedCluster(cfg);
  c.TickHeartbeat(1);
  c.Stabilize();
  REQUIRE(c.node(1).raw->ReadIndex("lease").ok());
  c.ProcessReady(1);
  REQUIRE(c.node(1).read_states.size() == 1);
  CHECK(c.node(1).read_states[0].index == 1);

  c.Isolate(1);
  c.Tick(1, cfg.lease_timeout_ticks);
  c.Stabilize();
  REQUIRE(c.node(1).raw->ReadIndex("expired").ok());
  c.Stabilize();
  CHECK(c.node(1).read_states.size() == 1);  // no answer without a quorum
}

TEST_CASE("Lease reads stop once a leadership transfer has begun", "[raft][read][lease]") {
  // Proves a leader that sent TimeoutNow never trusts its lease again in
  // that term: the forced election ignores follower leases.
  Config cfg = BaseConfig();
  cfg.check_quorum = true;
  cfg.read_only_option = ReadOnlyOption::kLeaseBased;
  TestCluster c = ElectedCluster(cfg);
  c.TickHeartbeat(1);
  c.Stabilize();
  REQUIRE(c.node(1).raw->TransferLeader(2).ok());
  REQUIRE(c.node(1).raw->ReadIndex("during-transfer").ok());
  c.ProcessReady(1);
  CHECK(c.node(1).read_states.empty());
}

TEST_CASE("A restarted follower honours a lease it may have granted", "[raft][read][lease]") {
  // Proves the restart guard: with lease reads on, a node restarted in a
  // term ignores vote requests for one election timeout, since before the
  // crash it may have acknowledged the leader's heartbeat.
  Config cfg = BaseConfig();
  cfg.check_quorum = true;
  cfg.read_only_option = ReadOnlyOption::kLeaseBased;
  TestCluster c = ElectedCluster(cfg);
  c.Restart(2);
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = 3;
  vote.to = 2;
  vote.term = 5;
  vote.index = 10;
  vote.log_term = 5;
  REQUIRE(c.raft(2).Step(vote).ok());
  CHECK(c.raft(2).term() == 1);
  c.Tick(2, cfg.election_timeout_ticks);
  REQUIRE(c.raft(2).Step(vote).ok());
  CHECK(c.raft(2).term() == 5);
}

// ---- learners and membership ----

TEST_CASE("A learner receives the log but neither votes nor counts for commit", "[raft][learner]") {
  // Proves learners are non-voting: commit needs a voter majority, and a
  // learner never campaigns.
  TestCluster c(BaseConfig());
  c.AddNodes(3, ConfState{{1, 2}, {3}});
  c.ElectLeader(1);
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  CHECK(c.raft(3).is_learner());
  c.Isolate(2);
  REQUIRE(c.node(1).raw->Propose("x").ok());
  c.Stabilize();
  CHECK(c.raft(3).log().LastIndex() == 2);  // replicated to the learner
  CHECK(c.raft(1).log().committed() == 1);  // but not committed: 1 of 2 voters
  c.Tick(3, 100);
  CHECK(c.raft(3).state() == StateRole::kFollower);
  CHECK(c.raft(3).messages().empty());
}

TEST_CASE("Adding a voter: the new member catches up and then counts", "[raft][membership]") {
  // Proves a single-member add: the change commits under the old majority,
  // takes effect when applied, and the new node then receives the log.
  TestCluster c = ElectedCluster(BaseConfig());
  Config cfg4 = BaseConfig();
  cfg4.id = 4;
  c.AddNodeWithConfig(cfg4, ConfState{});
  REQUIRE(c.node(1).raw->ProposeConfChange(ConfChange{ConfChangeType::kAddNode, 4}).ok());
  c.Stabilize();
  CHECK(c.node(1).conf_state.voters == std::vector<uint64_t>{1, 2, 3, 4});
  // Node 4 started empty; it learns the log (by append or snapshot).
  REQUIRE(c.node(1).raw->Propose("after-add").ok());
  c.Stabilize();
  CHECK(c.raft(4).log().committed() == c.raft(1).log().committed());
  CHECK(c.raft(1).tracker().QuorumSize() == 3);
}

TEST_CASE("Only one membership change may be pending at a time", "[raft][membership]") {
  // Proves the single-change guard: a second change proposed before the
  // first is applied becomes an empty (no-op) entry.
  TestCluster c = ElectedCluster(BaseConfig(), 5);
  REQUIRE(c.node(1).raw->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 5}).ok());
  REQUIRE(c.node(1).raw->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 4}).ok());
  c.Stabilize();
  CHECK(c.node(1).conf_state.voters == std::vector<uint64_t>{1, 2, 3, 4});
  size_t conf_entries = 0;
  for (const Entry& e : c.node(1).applied) conf_entries += e.type == EntryType::kConfChange;
  CHECK(conf_entries == 1);
}

TEST_CASE("A new leader may not change membership before its term's entry applies", "[raft][membership]") {
  // Proves the guard from the single-server-change bug (Ongaro, raft-dev
  // 2015): the leader's pending-conf index starts at its log tail.
  TestCluster c(BaseConfig());
  c.AddNodes(3);
  c.ElectBeforeFirstCommit(1);
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  REQUIRE(c.raft(1).log().applied() == 0);
  REQUIRE(c.node(1).raw->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 3}).ok());
  c.Stabilize();
  CHECK(c.node(1).conf_state.voters == std::vector<uint64_t>{1, 2, 3});
}

TEST_CASE("A node with a committed but unapplied conf change does not campaign", "[raft][membership]") {
  // Proves the campaign guard: the node's membership is unknown until the
  // change applies, so it must not start an election with a stale one.
  TestCluster c = ElectedCluster(BaseConfig());
  REQUIRE(c.node(1).raw->ProposeConfChange(ConfChange{ConfChangeType::kAddLearnerNode, 4}).ok());
  c.ProcessReady(1);
  c.DeliverMsgs(2);
  c.ProcessReady(2);
  c.DeliverMsgs(1);
  c.ProcessReady(1);
  c.DeliverMsgs(2);  // node 2 learns the commit index with the heartbeat/append
  Raft& r2 = c.raft(2);
  REQUIRE(r2.log().committed() > r2.log().applied());
  c.Tick(2, 100);
  CHECK(r2.state() == StateRole::kFollower);
  CHECK(r2.term() == 1);
}

TEST_CASE("A leader does not remove itself but transfers leadership first", "[raft][membership]") {
  // Proves the self-removal guard: the leader turns its own removal into a
  // no-op; after a transfer, the new leader removes the old one.
  TestCluster c = ElectedCluster(BaseConfig());
  REQUIRE(c.node(1).raw->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 1}).ok());
  c.Stabilize();
  CHECK(c.node(1).conf_state.voters == std::vector<uint64_t>{1, 2, 3});
  REQUIRE(c.node(1).raw->TransferLeader(2).ok());
  c.Stabilize();
  REQUIRE(c.raft(2).state() == StateRole::kLeader);
  REQUIRE(c.node(2).raw->Propose("commit-my-term").ok());
  c.Stabilize();
  REQUIRE(c.node(2).raw->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 1}).ok());
  c.Stabilize();
  CHECK(c.raft(2).tracker().voters() == std::set<uint64_t>{2, 3});
  CHECK(c.node(3).conf_state.voters == std::vector<uint64_t>{2, 3});
}

TEST_CASE("A leader that applies its own removal hands leadership over", "[raft][membership]") {
  // Proves a removed leader (its removal proposed under an earlier leader)
  // keeps the group live: it stops counting itself and transfers
  // leadership to a caught-up voter instead of just going silent.
  TestCluster c = ElectedCluster(BaseConfig());
  c.raft(1).ApplyConfChange(ConfChange{ConfChangeType::kRemoveNode, 1});
  CHECK(c.raft(1).lead_transferee() != kNone);
  c.Stabilize();
  uint64_t lead = c.raft(2).lead();
  CHECK((lead == 2 || lead == 3));
  CHECK(c.raft(lead).state() == StateRole::kLeader);
  CHECK(c.raft(1).state() == StateRole::kFollower);
}

TEST_CASE("Promoting a learner makes it a voter", "[raft][learner][membership]") {
  // Proves AddNode on a learner promotes it and keeps its progress.
  TestCluster c(BaseConfig());
  c.AddNodes(3, ConfState{{1, 2}, {3}});
  c.ElectLeader(1);
  REQUIRE(c.node(1).raw->ProposeConfChange(ConfChange{ConfChangeType::kAddNode, 3}).ok());
  c.Stabilize();
  CHECK_FALSE(c.raft(3).is_learner());
  CHECK(c.raft(1).tracker().IsVoter(3));
}

// ---- transfer and forwarding ----

TEST_CASE("Leadership transfer to an up-to-date follower", "[raft][transfer]") {
  // Proves TransferLeader sends TimeoutNow and the target wins at once.
  TestCluster c = ElectedCluster(BaseConfig());
  REQUIRE(c.node(1).raw->TransferLeader(2).ok());
  c.Stabilize();
  CHECK(c.raft(2).state() == StateRole::kLeader);
  CHECK(c.raft(1).state() == StateRole::kFollower);
  CHECK(c.raft(1).lead() == 2);
}

TEST_CASE("Leadership transfer to a lagging follower catches it up first", "[raft][transfer]") {
  // Proves the leader replicates to the target before TimeoutNow, and
  // refuses proposals while the transfer is in progress.
  TestCluster c = ElectedCluster(BaseConfig());
  c.Isolate(3);
  REQUIRE(c.node(1).raw->Propose("a").ok());
  c.Stabilize();
  c.Heal();
  REQUIRE(c.node(1).raw->TransferLeader(3).ok());
  CHECK(c.raft(1).lead_transferee() == 3);
  CHECK(c.node(1).raw->Propose("refused").code() == Code::kUnavailable);
  c.Stabilize();
  CHECK(c.raft(3).state() == StateRole::kLeader);
  CHECK(c.raft(3).log().LastIndex() >= 3);
}

TEST_CASE("A transfer requested on a follower is forwarded for the named target", "[raft][transfer]") {
  // Proves forwarding keeps the transferee (not the forwarding follower).
  TestCluster c = ElectedCluster(BaseConfig());
  REQUIRE(c.node(2).raw->TransferLeader(3).ok());
  c.Stabilize();
  CHECK(c.raft(3).state() == StateRole::kLeader);
}

TEST_CASE("A transfer that cannot finish is abandoned after an election timeout", "[raft][transfer]") {
  // Proves the leader does not refuse proposals forever for a dead target.
  TestCluster c = ElectedCluster(BaseConfig());
  c.Isolate(3);
  REQUIRE(c.node(1).raw->TransferLeader(3).ok());
  c.Tick(1, BaseConfig().election_timeout_ticks);
  CHECK(c.raft(1).lead_transferee() == kNone);
  CHECK(c.node(1).raw->Propose("ok again").ok());
}

TEST_CASE("A follower forwards proposals to the leader unless forwarding is off", "[raft][forwarding]") {
  // Proves proposal forwarding, and the option to disable it.
  TestCluster c = ElectedCluster(BaseConfig());
  REQUIRE(c.node(2).raw->Propose("via-2").ok());
  c.Stabilize();
  CHECK(c.node(1).applied.back().data == "via-2");

  Config off = BaseConfig();
  off.disable_proposal_forwarding = true;
  TestCluster d = ElectedCluster(off);
  CHECK(d.node(2).raw->Propose("refused").code() == Code::kUnavailable);
}

TEST_CASE("A node with no known leader drops proposals", "[raft][forwarding]") {
  // Proves the error contract: Unavailable, so the client can retry.
  TestCluster c(BaseConfig());
  c.AddNodes(3);
  CHECK(c.node(1).raw->Propose("x").code() == Code::kUnavailable);
  CHECK(c.node(1).raw->ReadIndex("r").code() == Code::kUnavailable);
}

// ---- configuration and API errors ----

TEST_CASE("Config validation rejects every bad limit", "[raft][config]") {
  // Proves each named limit is validated: world errors come back as Status.
  auto invalid = [](auto mutate) {
    Config c = BaseConfig();
    c.id = 1;
    mutate(c);
    return c.Validate().code() == Code::kInvalidArgument;
  };
  CHECK(invalid([](Config& c) { c.id = 0; }));
  CHECK(invalid([](Config& c) { c.heartbeat_timeout_ticks = 0; }));
  CHECK(invalid([](Config& c) { c.election_timeout_ticks = 1; }));
  CHECK(invalid([](Config& c) { c.max_inflight_msgs = 0; }));
  CHECK(invalid([](Config& c) { c.max_inflight_bytes = 0; }));
  CHECK(invalid([](Config& c) { c.max_size_per_msg_bytes = 0; }));
  CHECK(invalid([](Config& c) { c.max_committed_size_per_ready_bytes = 0; }));
  CHECK(invalid([](Config& c) { c.max_uncommitted_entries_bytes = 0; }));
  CHECK(invalid([](Config& c) { c.max_pending_reads = 0; }));
  CHECK(invalid([](Config& c) { c.lease_timeout_ticks = 0; }));
  CHECK(invalid([](Config& c) { c.lease_timeout_ticks = c.election_timeout_ticks; }));
  Config ok = BaseConfig();
  ok.id = 1;
  CHECK(ok.Validate().ok());
  MemoryStorage s;
  Config bad = BaseConfig();
  CHECK(RawNode::Open(bad, &s).status().code() == Code::kInvalidArgument);
}

TEST_CASE("Corrupt persisted state is reported and not trusted", "[raft][config]") {
  // Proves a commit index beyond the stored log is a Corruption error.
  MemoryStorage s;
  s.SetConfState(ConfState{{1}, {}});
  s.SetHardState(HardState{1, 1, 5});
  Config c = BaseConfig();
  c.id = 1;
  CHECK(RawNode::Open(c, &s).status().code() == Code::kCorruption);
}

TEST_CASE("Step refuses local message types and unknown peers' responses", "[raft][api]") {
  // Proves the network cannot inject local-only messages (e.g. MsgHup).
  TestCluster c = ElectedCluster(BaseConfig());
  Message hup;
  hup.type = MessageType::kHup;
  hup.from = 2;
  CHECK(c.node(1).raw->Step(hup).code() == Code::kInvalidArgument);
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.from = 9;
  resp.term = 1;
  CHECK(c.node(1).raw->Step(resp).code() == Code::kInvalidArgument);
}

TEST_CASE("ConfChange encoding round-trips and rejects garbage", "[raft][membership]") {
  // Proves conf-change entries read from the log are validated.
  ConfChange cc{ConfChangeType::kAddLearnerNode, 17};
  CHECK(ConfChange::Decode(cc.Encode()) == cc);
  CHECK_FALSE(ConfChange::Decode("add:").has_value());
  CHECK_FALSE(ConfChange::Decode("add:0").has_value());
  CHECK_FALSE(ConfChange::Decode("grow:1").has_value());
  CHECK_FALSE(ConfChange::Decode("remove:1x").has_value());
}

TEST_CASE("A single-node cluster commits and reads alone", "[raft][election]") {
  // Proves the degenerate quorum of one works for elections, commits and
  // reads.
  TestCluster c(BaseConfig());
  c.AddNodes(1);
  c.ElectLeader(1);
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  REQUIRE(c.node(1).raw->Propose("solo").ok());
  REQUIRE(c.node(1).raw->ReadIndex("r").ok());
  c.Stabilize();
  CHECK(c.node(1).applied.back().data == "solo");
  REQUIRE(c.node(1).read_states.size() == 1);
  CHECK(c.node(1).read_states[0].index == 2);
}

}  // namespace
}  // namespace bulwark::raft
