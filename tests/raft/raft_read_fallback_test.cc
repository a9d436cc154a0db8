// Lease-mode reads that cannot use the lease fall back to the safe
// ReadIndex round (a heartbeat quorum); these tests prove that round
// completes in each case where the lease is not valid, and that the lease
// comes back after a leadership transfer that did not happen.

#include <catch2/catch.hpp>

#include "tests/raft/test_cluster.h"

namespace bulwark::raft {
namespace {

using testing::TestCluster;

Config LeaseConfig() {
  Config c = testing::SmallClusterConfig(11);
  c.check_quorum = true;
  c.read_only_option = ReadOnlyOption::kLeaseBased;
  c.lease_timeout_ticks = 4;
  return c;
}

TestCluster LeaseCluster() {
  TestCluster c(LeaseConfig());
  c.AddNodes(3);
  c.ElectLeader(1);
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  c.TickHeartbeat(1);
  c.Stabilize();
  return c;
}

// Starts a transfer from 1 to 2 whose TimeoutNow is lost, so that node 1
// stays leader with TimeoutNow sent.
void TransferWithLostTimeoutNow(TestCluster& c) {
  REQUIRE(c.node(1).raw->TransferLeader(2).ok());
  REQUIRE(c.raft(1).lead_transferee() == 2);
  c.ProcessReady(1);
  REQUIRE(c.DropMsgs(2) == 1);
}

TEST_CASE("Lease mode: a new leader's first read is answered", "[raft][read][lease]") {
  // Proves the read a new leader parks until its first commit, which finds
  // no lease yet (no heartbeat acknowledged), completes by the heartbeat
  // round instead of waiting forever.
  TestCluster c(LeaseConfig());
  c.AddNodes(3);
  c.ElectBeforeFirstCommit(1);
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  REQUIRE(c.raft(1).log().committed() == 0);
  REQUIRE(c.node(1).raw->ReadIndex("first").ok());
  c.Stabilize();
  REQUIRE(c.node(1).read_states.size() == 1);
  CHECK(c.node(1).read_states[0].request_ctx == "first");
  CHECK(c.node(1).read_states[0].index == 1);
}

TEST_CASE("Lease mode: a read during a transfer is answered", "[raft][read][lease]") {
  // Proves a read issued while a transfer is in progress (lease off) is
  // answered once a quorum acknowledges the heartbeat round.
  TestCluster c = LeaseCluster();
  TransferWithLostTimeoutNow(c);
  REQUIRE(c.node(1).raw->ReadIndex("during-transfer").ok());
  c.ProcessReady(1);
  CHECK(c.node(1).read_states.empty());  // not from the lease
  c.Stabilize();
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  REQUIRE(c.node(1).read_states.size() == 1);
  CHECK(c.node(1).read_states[0].request_ctx == "during-transfer");
}

TEST_CASE("Lease mode: reads work after a transfer that timed out", "[raft][read][lease]") {
  // Proves a leader whose TimeoutNow led nowhere answers reads afterwards:
  // by heartbeat rounds while a forced election could still win votes, and
  // from the lease again once acks of heartbeats sent an election timeout
  // after the TimeoutNow arrive (the transfer is abandoned by then).
  TestCluster c = LeaseCluster();
  Config cfg = LeaseConfig();
  TransferWithLostTimeoutNow(c);
  for (int i = 0; i < 3; ++i) {
    c.Tick(1, 1);
    c.Stabilize();
  }
  REQUIRE(c.node(1).raw->ReadIndex("soon-after").ok());
  c.ProcessReady(1);
  CHECK(c.node(1).read_states.empty());  // not from the lease
  c.Stabilize();
  REQUIRE(c.node(1).read_states.size() == 1);

  for (int i = 3; i < cfg.election_timeout_ticks; ++i) {
    c.Tick(1, 1);
    c.Stabilize();
  }
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  REQUIRE(c.raft(1).lead_transferee() == kNone);  // abandoned
  REQUIRE(c.node(1).raw->ReadIndex("lease-again").ok());
  c.ProcessReady(1);
  REQUIRE(c.node(1).read_states.size() == 2);  // answered from the lease
  CHECK(c.node(1).read_states[1].request_ctx == "lease-again");
}

TEST_CASE("Lease mode: a stale forced vote does not skip the lease", "[raft][read][lease]") {
  // Proves the other half of resuming leases after a transfer: a voter that
  // heard a heartbeat sent an election timeout after the TimeoutNow refuses
  // to skip its lease for that transfer's vote request, while a fresh one
  // still gets the vote.
  TestCluster c = LeaseCluster();
  Config cfg = LeaseConfig();
  for (int i = 0; i < cfg.election_timeout_ticks + 2; ++i) {
    c.Tick(1, 1);
    c.Stabilize();
  }
  uint64_t t = c.raft(3).term();
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = 2;
  vote.to = 3;
  vote.term = t + 1;
  vote.index = c.raft(2).log().LastIndex();
  vote.log_term = t;
  vote.context = "transfer";
  vote.commit = 1;  // TimeoutNow sent at the leader's first tick: stale
  REQUIRE(c.node(3).raw->Step(vote).ok());
  CHECK(c.raft(3).term() == t);
  CHECK(c.raft(3).lead() == 1);
  vote.commit = 1000;  // sent "now" by the leader's clock
  REQUIRE(c.node(3).raw->Step(vote).ok());
  CHECK(c.raft(3).term() == t + 1);
  CHECK(c.raft(3).vote() == 2);
}

TEST_CASE("Reads beyond max_pending_reads are refused, not dropped silently", "[raft][read]") {
  // Proves the leader reports a full read queue as ResourceExhausted, as it
  // does for proposals, both for reads parked before its first commit and
  // for reads waiting on a heartbeat round.
  Config cfg = LeaseConfig();
  cfg.max_pending_reads = 2;
  TestCluster c(cfg);
  c.AddNodes(3);
  c.ElectBeforeFirstCommit(1);
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  REQUIRE(c.node(1).raw->ReadIndex("p1").ok());
  REQUIRE(c.node(1).raw->ReadIndex("p2").ok());
  CHECK(c.node(1).raw->ReadIndex("p3").code() == Code::kResourceExhausted);

  c.Stabilize();
  c.Isolate(1);
  c.Tick(1, cfg.lease_timeout_ticks);
  c.Stabilize();
  REQUIRE(c.node(1).raw->ReadIndex("h2").ok());
  REQUIRE(c.node(1).raw->ReadIndex("h3").ok());
  CHECK(c.node(1).raw->ReadIndex("h4").code() == Code::kResourceExhausted);
}

TEST_CASE("A read waiting for acks is answered when removals shrink the quorum", "[raft][read]") {
  // Proves a read whose heartbeat round was lost is not stranded when the
  // other voters are removed: the acks it has (the leader's own) make a
  // quorum of the new membership, so it is answered as the change applies.
  // Found by the simulator's read-liveness check (seed 10351).
  Config cfg = LeaseConfig();
  cfg.read_only_option = ReadOnlyOption::kSafe;
  TestCluster c = testing::ElectedCluster(cfg);
  REQUIRE(c.node(1).raw->ReadIndex("r").ok());
  c.ProcessReady(1);
  c.DropMsgs(2);
  c.DropMsgs(3);
  REQUIRE(c.node(1).raw->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 3}).ok());
  c.Stabilize();
  REQUIRE(c.raft(1).tracker().voters().size() == 2);
  CHECK(c.node(1).read_states.empty());  // one ack of two needed
  REQUIRE(c.node(1).raw->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 2}).ok());
  c.Stabilize();
  REQUIRE(c.raft(1).tracker().voters().size() == 1);
  REQUIRE(c.node(1).read_states.size() == 1);
  CHECK(c.node(1).read_states[0].request_ctx == "r");
}

}  // namespace
}  // namespace bulwark::raft
