// Elections: figure 2 rules for followers, candidates and RequestVote, plus
// randomized timeouts, pre-vote and check-quorum.

#include <catch2/catch.hpp>

#include "tests/raft/test_cluster.h"

namespace bulwark::raft {
namespace {

using testing::TestCluster;

Config BaseConfig() { return testing::SmallClusterConfig(42); }

std::vector<Message> MessagesOfType(const std::vector<Message>& msgs, MessageType t) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.type == t) out.push_back(m);
  }
  return out;
}

// A Raft over a storage holding entries with the given terms (1-based).
std::unique_ptr<Raft> RaftWithLog(MemoryStorage* s, uint64_t id, std::vector<uint64_t> terms,
                                  Config c = BaseConfig()) {
  s->SetConfState(ConfState{{1, 2, 3}, {}});
  std::vector<Entry> ents;
  for (size_t i = 0; i < terms.size(); ++i) ents.push_back(Entry{terms[i], i + 1, EntryType::kNormal, ""});
  REQUIRE(s->Append(ents).ok());
  if (!terms.empty()) s->SetHardState(HardState{terms.back(), kNone, 0});
  c.id = id;
  auto r = Raft::Open(c, s);
  REQUIRE(r.ok());
  return std::move(r).value();
}

Message Vote(MessageType t, uint64_t from, uint64_t to, uint64_t term, uint64_t index, uint64_t log_term) {
  Message m;
  m.type = t;
  m.from = from;
  m.to = to;
  m.term = term;
  m.index = index;
  m.log_term = log_term;
  return m;
}

TEST_CASE("A follower that hears nothing campaigns with a new term and a self vote", "[raft][figure2][election]") {
  // Proves figure 2 "Followers: if election timeout elapses, convert to
  // candidate" and "Candidates: increment currentTerm, vote for self, send
  // RequestVote with lastLogIndex/lastLogTerm to all other servers".
  TestCluster c(BaseConfig());
  c.AddNodes(3);
  c.TickElection(1);
  const Raft& r = c.raft(1);
  CHECK(r.state() == StateRole::kCandidate);
  CHECK(r.term() == 1);
  CHECK(r.vote() == 1);
  auto votes = MessagesOfType(r.messages(), MessageType::kVote);
  REQUIRE(votes.size() == 2);
  for (const Message& m : votes) {
    CHECK(m.term == 1);
    CHECK(m.index == 0);
    CHECK(m.log_term == 0);
  }
}

TEST_CASE("A candidate with a majority becomes leader and asserts itself with an append", "[raft][figure2][election]") {
  // Proves "Candidates: if votes received from majority, become leader" and
  // "Leaders: upon election send initial empty AppendEntries"; the empty
  // entry of the new term then commits everywhere.
  TestCluster c(BaseConfig());
  c.AddNodes(3);
  c.ElectLeader(1);
  CHECK(c.raft(1).state() == StateRole::kLeader);
  for (uint64_t id : {2, 3}) {
    CHECK(c.raft(id).state() == StateRole::kFollower);
    CHECK(c.raft(id).lead() == 1);
    CHECK(c.raft(id).term() == 1);
  }
  for (uint64_t id : c.ids()) CHECK(c.raft(id).log().committed() == 1);
}

TEST_CASE("A node grants at most one vote per term", "[raft][figure2][election]") {
  // Proves RequestVote rule 2: vote only if votedFor is null or the candidate.
  MemoryStorage s;
  auto r = RaftWithLog(&s, 2, {});
  REQUIRE(r->Step(Vote(MessageType::kVote, 1, 2, 1, 0, 0)).ok());
  REQUIRE(r->Step(Vote(MessageType::kVote, 3, 2, 1, 0, 0)).ok());
  REQUIRE(r->Step(Vote(MessageType::kVote, 1, 2, 1, 0, 0)).ok());  // repeat is fine
  auto resp = r->TakeMessages();
  REQUIRE(resp.size() == 3);
  CHECK_FALSE(resp[0].reject);
  CHECK(resp[1].reject);
  CHECK_FALSE(resp[2].reject);
  CHECK(r->vote() == 1);
}

TEST_CASE("A vote is refused to a candidate whose log is behind", "[raft][figure2][election]") {
  // Proves RequestVote rule 2's "candidate's log is at least as up-to-date".
  MemoryStorage s;
  auto r = RaftWithLog(&s, 2, {1, 2});
  REQUIRE(r->Step(Vote(MessageType::kVote, 1, 2, 3, 5, 1)).ok());  // older last term
  REQUIRE(r->Step(Vote(MessageType::kVote, 3, 2, 3, 1, 2)).ok());  // shorter, same term
  auto resp = r->TakeMessages();
  REQUIRE(resp.size() == 2);
  CHECK(resp[0].reject);
  CHECK(resp[1].reject);
  REQUIRE(r->Step(Vote(MessageType::kVote, 3, 2, 3, 2, 2)).ok());
  resp = r->TakeMessages();
  REQUIRE(resp.size() == 1);
  CHECK_FALSE(resp[0].reject);
}

TEST_CASE("A vote request with a stale term is not granted", "[raft][figure2][election]") {
  // Proves RequestVote rule 1: reply false if term < currentTerm.
  MemoryStorage s;
  auto r = RaftWithLog(&s, 2, {1, 2});
  REQUIRE(r->term() == 2);
  REQUIRE(r->Step(Vote(MessageType::kVote, 1, 2, 1, 9, 9)).ok());
  for (const Message& m : r->TakeMessages()) CHECK(m.reject);
  CHECK(r->vote() == kNone);
}

TEST_CASE("Any message with a higher term turns a leader into a follower", "[raft][figure2][election]") {
  // Proves "All servers: if RPC request or response contains term T >
  // currentTerm: set currentTerm = T, convert to follower".
  TestCluster c(BaseConfig());
  c.AddNodes(3);
  c.ElectLeader(1);
  REQUIRE(c.raft(1).state() == StateRole::kLeader);
  Message m;
  m.type = MessageType::kAppResp;
  m.from = 2;
  m.to = 1;
  m.term = 5;
  REQUIRE(c.raft(1).Step(m).ok());
  CHECK(c.raft(1).state() == StateRole::kFollower);
  CHECK(c.raft(1).term() == 5);
}

TEST_CASE("A candidate that hears from a leader of its term becomes follower", "[raft][figure2][election]") {
  // Proves "Candidates: if AppendEntries received from new leader: convert
  // to follower".
  MemoryStorage s;
  auto r = RaftWithLog(&s, 2, {});
  r->BecomeCandidate();
  Message app;
  app.type = MessageType::kApp;
  app.from = 3;
  app.to = 2;
  app.term = r->term();
  REQUIRE(r->Step(app).ok());
  CHECK(r->state() == StateRole::kFollower);
  CHECK(r->lead() == 3);
}

TEST_CASE("A split vote leads to a new election in a higher term", "[raft][figure2][election]") {
  // Proves "Candidates: if election timeout elapses, start new election".
  TestCluster c(BaseConfig());
  c.AddNodes(3);
  c.TickElection(1);
  c.TickElection(2);  // both candidates in term 1; each has one vote
  c.ProcessReady(1);
  c.ProcessReady(2);
  c.mailbox().clear();  // the vote requests are lost
  c.TickElection(1);
  CHECK(c.raft(1).state() == StateRole::kCandidate);
  CHECK(c.raft(1).term() == 2);
  c.Stabilize();
  CHECK(c.raft(1).state() == StateRole::kLeader);
}

TEST_CASE("A refused vote request does not restart the election timer", "[raft][figure2][election]") {
  // Proves figure 2's timer rule: a higher-term vote request that is not
  // granted moves the term but leaves the election timer running, so a
  // stale candidate cannot keep electable nodes from campaigning.
  MemoryStorage s;
  auto r = RaftWithLog(&s, 2, {1, 2});
  for (int i = 0; i < 5; ++i) r->Tick();
  REQUIRE(r->election_elapsed() == 5);
  REQUIRE(r->Step(Vote(MessageType::kVote, 3, 2, 7, 1, 1)).ok());  // stale log: refused
  CHECK(r->term() == 7);
  CHECK(r->election_elapsed() == 5);
  REQUIRE(r->Step(Vote(MessageType::kVote, 1, 2, 8, 2, 2)).ok());  // granted
  CHECK(r->election_elapsed() == 0);
}

TEST_CASE("Election timeouts are randomized between et and 2et and replay from the seed", "[raft][election]") {
  // Proves timeouts come only from the injected seeded source: the same
  // seed replays, and timeouts spread over the whole range.
  std::set<int> seen;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    MemoryStorage s1;
    MemoryStorage s2;
    Config cfg = BaseConfig();
    cfg.rng_seed = seed;
    auto a = RaftWithLog(&s1, 1, {}, cfg);
    auto b = RaftWithLog(&s2, 1, {}, cfg);
    CHECK(a->randomized_election_timeout() == b->randomized_election_timeout());
    CHECK(a->randomized_election_timeout() >= 10);
    CHECK(a->randomized_election_timeout() < 20);
    seen.insert(a->randomized_election_timeout());
  }
  CHECK(seen.size() == 10);
}

TEST_CASE("The vote is persisted in the same Ready as the vote response", "[raft][figure2][election]") {
  // Proves "persist currentTerm and votedFor before responding": the
  // runner must persist a Ready's hard state before sending its messages.
  TestCluster c(BaseConfig());
  c.AddNodes(3);
  c.TickElection(1);
  c.ProcessReady(1);
  c.DeliverMsgs(2);
  Ready rd = c.node(2).raw->GetReady();
  REQUIRE(rd.hard_state.has_value());
  CHECK(rd.hard_state->vote == 1);
  CHECK(rd.hard_state->term == 1);
  CHECK(MessagesOfType(rd.messages, MessageType::kVoteResp).size() == 1);
  c.node(2).raw->Advance(rd);
}

TEST_CASE("A restarted node remembers its vote", "[raft][figure2][election]") {
  // Proves the persisted vote survives a crash, so no second vote in a term.
  TestCluster c(BaseConfig());
  c.AddNodes(3);
  c.TickElection(1);
  c.ProcessReady(1);
  c.DeliverMsgs(2);
  c.ProcessReady(2);
  c.Restart(2);
  CHECK(c.raft(2).vote() == 1);
  REQUIRE(c.raft(2).Step(Vote(MessageType::kVote, 3, 2, 1, 0, 0)).ok());
  auto resp = c.raft(2).TakeMessages();
  REQUIRE(resp.size() == 1);
  CHECK(resp[0].reject);
}

TEST_CASE("Pre-vote keeps a partitioned node from inflating its term", "[raft][prevote]") {
  // Proves that with pre-vote an isolated node never raises its term, so
  // rejoining does not depose a healthy leader.
  Config cfg = BaseConfig();
  cfg.pre_vote = true;
  TestCluster c = testing::ElectedCluster(cfg);
  c.Isolate(3);
  for (int i = 0; i < 5; ++i) {
    c.ElectLeader(3);
  }
  CHECK(c.raft(3).term() == 1);
  CHECK(c.raft(3).state() == StateRole::kPreCandidate);
  c.Heal();
  c.TickHeartbeat(1);
  c.Stabilize();
  CHECK(c.raft(1).state() == StateRole::kLeader);
  CHECK(c.raft(1).term() == 1);
  CHECK(c.raft(3).state() == StateRole::kFollower);
}

TEST_CASE("Pre-vote is refused to a node whose log is behind", "[raft][prevote]") {
  // Proves the pre-vote applies the same up-to-date rule as the vote, and
  // does not change the voter's term or vote.
  Config cfg = BaseConfig();
  cfg.pre_vote = true;
  MemoryStorage s;
  auto r = RaftWithLog(&s, 2, {1, 2}, cfg);
  REQUIRE(r->Step(Vote(MessageType::kPreVote, 1, 2, 3, 1, 1)).ok());
  auto resp = r->TakeMessages();
  REQUIRE(resp.size() == 1);
  CHECK(resp[0].type == MessageType::kPreVoteResp);
  CHECK(resp[0].reject);
  CHECK(r->term() == 2);
  CHECK(r->vote() == kNone);
  REQUIRE(r->Step(Vote(MessageType::kPreVote, 1, 2, 3, 2, 2)).ok());
  resp = r->TakeMessages();
  REQUIRE(resp.size() == 1);
  CHECK_FALSE(resp[0].reject);
  CHECK(r->term() == 2);  // a pre-vote never moves the term
}

TEST_CASE("Check-quorum: a leader that stops hearing from a quorum steps down", "[raft][checkquorum]") {
  // Proves leader step-down on lost quorum, so a partitioned leader stops
  // accepting work within two election timeouts.
  Config cfg = BaseConfig();
  cfg.check_quorum = true;
  TestCluster c = testing::ElectedCluster(cfg);
  c.Isolate(1);
  for (int i = 0; i < 2 * cfg.election_timeout_ticks; ++i) {
    c.Tick(1, 1);
    c.Stabilize();
  }
  CHECK(c.raft(1).state() == StateRole::kFollower);
}

TEST_CASE("Check-quorum: followers ignore vote requests while the leader lease holds", "[raft][checkquorum]") {
  // Proves a node that recently heard from a leader does not grant votes
  // (nor adopt the term) of a disruptive candidate.
  Config cfg = BaseConfig();
  cfg.check_quorum = true;
  TestCluster c(cfg);
  c.AddNodes(3);
  c.ElectLeader(1);
  REQUIRE(c.raft(2).lead() == 1);
  REQUIRE(c.raft(2).Step(Vote(MessageType::kVote, 3, 2, 5, 10, 5)).ok());
  CHECK(c.raft(2).term() == 1);
  CHECK(c.raft(2).messages().empty());
}

TEST_CASE("Check-quorum: Campaign is refused while following a live leader", "[raft][checkquorum]") {
  // Proves RawNode::Campaign does not disrupt a leader whose lease the
  // follower honours, and works again once the leader has been silent for an
  // election timeout.
  Config cfg = BaseConfig();
  cfg.check_quorum = true;
  TestCluster c(cfg);
  c.AddNodes(3);
  c.ElectLeader(1);
  REQUIRE(c.raft(2).lead() == 1);
  uint64_t term = c.raft(2).term();
  CHECK(c.node(2).raw->Campaign().code() == Code::kFailedPrecondition);
  CHECK(c.raft(2).term() == term);
  CHECK(c.raft(2).state() == StateRole::kFollower);
  c.Isolate(2);
  c.Tick(2, cfg.election_timeout_ticks);
  CHECK(c.node(2).raw->Campaign().ok());
  CHECK(c.raft(2).term() > term);
}

TEST_CASE("Check-quorum and pre-vote: a stale leader learns the new term", "[raft][checkquorum]") {
  // Proves a deposed leader's appends are answered with the newer term so it
  // steps down (otherwise, with pre-vote, the cluster could wedge).
  Config cfg = BaseConfig();
  cfg.check_quorum = true;
  cfg.pre_vote = true;
  TestCluster c(cfg);
  c.AddNodes(3);
  c.ElectLeader(1);
  c.Isolate(1);
  for (int i = 0; i < 2 * cfg.election_timeout_ticks; ++i) {
    c.Tick(2, 1);
    c.Tick(3, 1);
    c.Stabilize();
  }
  uint64_t new_leader = c.raft(2).state() == StateRole::kLeader ? 2 : 3;
  REQUIRE(c.raft(new_leader).state() == StateRole::kLeader);
  REQUIRE(c.raft(1).state() == StateRole::kLeader);  // not yet noticed
  c.Heal();
  c.TickHeartbeat(1);
  c.Stabilize();
  CHECK(c.raft(1).state() == StateRole::kFollower);
  CHECK(c.raft(1).term() == c.raft(new_leader).term());
}

}  // namespace
}  // namespace bulwark::raft
