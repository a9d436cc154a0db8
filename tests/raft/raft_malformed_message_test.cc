// Malformed peer messages: RawNode::Step, the network entry, must refuse
// each with InvalidArgument (or ignore it) and never abort, and the core
// must not let such a message change its state. Where a test steps the
// core directly (Raft::Step), it proves the core's own defence for a
// message that bypasses RawNode.

#include <catch2/catch.hpp>

#include "tests/raft/test_cluster.h"

namespace bulwark::raft {
namespace {

using testing::TestCluster;

Config BaseConfig() { return testing::SmallClusterConfig(11); }

// An elected 3-node cluster that has also committed one entry.
TestCluster ElectedCluster(Config cfg = BaseConfig()) {
  TestCluster c = testing::ElectedCluster(cfg);
  REQUIRE(c.node(1).raw->Propose("x").ok());
  c.Stabilize();
  return c;
}

Message Msg(MessageType type, uint64_t from, uint64_t to, uint64_t term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

// What must not change when a malformed message is refused.
struct Snap {
  uint64_t term, vote, lead, committed, last;
  StateRole role;
  bool operator==(const Snap&) const = default;
};
Snap Capture(const Raft& r) {
  return Snap{r.term(), r.vote(), r.lead(), r.log().committed(), r.log().LastIndex(), r.state()};
}

void RequireInvalid(TestCluster& c, uint64_t id, Message m) {
  Snap before = Capture(c.raft(id));
  Status s = c.node(id).raw->Step(std::move(m));
  INFO(s.ToString());
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(Capture(c.raft(id)) == before);
  CHECK(c.raft(id).messages().empty());
}

TEST_CASE("Step refuses messages not addressed to us or from a bad sender", "[raft][malformed]") {
  // Proves the envelope checks: to == our id, from is neither 0 nor us.
  TestCluster c = ElectedCluster();
  uint64_t t = c.raft(2).term();
  RequireInvalid(c, 2, Msg(MessageType::kHeartbeat, 1, 3, t));
  RequireInvalid(c, 2, Msg(MessageType::kHeartbeat, 0, 2, t));
  RequireInvalid(c, 2, Msg(MessageType::kHeartbeat, 2, 2, t));
}

TEST_CASE("Step refuses local-only message types from the network", "[raft][malformed]") {
  // Proves a peer cannot start our election, make us heartbeat, or fake
  // transport reports.
  TestCluster c = ElectedCluster();
  for (MessageType type : {MessageType::kHup, MessageType::kBeat, MessageType::kUnreachable, MessageType::kSnapStatus,
                           MessageType::kCheckQuorum}) {
    RequireInvalid(c, 1, Msg(type, 2, 1, c.raft(1).term()));
    RequireInvalid(c, 2, Msg(type, 1, 2, 0));
  }
}

TEST_CASE("Step refuses term 0 on every message but forwarded requests", "[raft][malformed]") {
  // Proves a term-0 append, vote, vote response or TimeoutNow, which would
  // skip the term check, is refused.
  TestCluster c = ElectedCluster();
  Message app = Msg(MessageType::kApp, 3, 2, 0);
  app.index = c.raft(2).log().LastIndex();
  app.log_term = c.raft(2).term();
  RequireInvalid(c, 2, app);
  Message vote = Msg(MessageType::kVote, 3, 2, 0);
  vote.index = 100;
  vote.log_term = 100;
  RequireInvalid(c, 2, vote);
  vote.type = MessageType::kPreVote;
  RequireInvalid(c, 2, vote);
  RequireInvalid(c, 1, Msg(MessageType::kVoteResp, 2, 1, 0));
  RequireInvalid(c, 2, Msg(MessageType::kTimeoutNow, 3, 2, 0));
}

TEST_CASE("Forwarded proposals and reads carrying a term are refused", "[raft][malformed]") {
  // Proves a kProp/kReadIndex with a term neither trips the forwarding
  // assertion nor makes the node adopt the term; the core itself ignores
  // the term when stepped directly.
  TestCluster c = ElectedCluster();
  uint64_t t = c.raft(2).term();
  for (uint64_t term : {t, t + 5}) {
    Message prop = Msg(MessageType::kProp, 3, 2, term);
    prop.entries.push_back(Entry{0, 0, EntryType::kNormal, "p"});
    RequireInvalid(c, 2, prop);
    Message read = Msg(MessageType::kReadIndex, 3, 2, term);
    read.context = "r";
    RequireInvalid(c, 2, read);
    Message to_leader = prop;
    to_leader.to = 1;
    RequireInvalid(c, 1, to_leader);
  }
  // Directly into the core: forwarded to the leader, term dropped.
  Message prop = Msg(MessageType::kProp, 3, 2, t + 5);
  prop.entries.push_back(Entry{0, 0, EntryType::kNormal, "p"});
  REQUIRE(c.raft(2).Step(prop).ok());
  CHECK(c.raft(2).term() == t);
  REQUIRE(c.raft(2).messages().size() == 1);
  CHECK(c.raft(2).messages()[0].term == 0);
  CHECK(c.raft(2).messages()[0].to == 1);
  c.raft(2).TakeMessages();
  prop.to = 1;
  REQUIRE(c.raft(1).Step(prop).ok());
  CHECK(c.raft(1).state() == StateRole::kLeader);
  CHECK(c.raft(1).term() == t);
}

TEST_CASE("Empty proposals and context-less reads are refused", "[raft][malformed]") {
  // Proves the leader's empty-proposal and empty-context asserts cannot be
  // reached from a peer; the core refuses them with an error too.
  TestCluster c = ElectedCluster();
  RequireInvalid(c, 1, Msg(MessageType::kProp, 2, 1, 0));
  RequireInvalid(c, 2, Msg(MessageType::kProp, 3, 2, 0));
  RequireInvalid(c, 1, Msg(MessageType::kReadIndex, 2, 1, 0));
  RequireInvalid(c, 2, Msg(MessageType::kReadIndex, 3, 2, 0));
  CHECK(c.raft(1).Step(Msg(MessageType::kProp, 2, 1, 0)).code() == Code::kInvalidArgument);
  CHECK(c.raft(1).Step(Msg(MessageType::kReadIndex, 2, 1, 0)).code() == Code::kInvalidArgument);
}

TEST_CASE("Malformed snapshots are refused", "[raft][malformed]") {
  // Proves a kSnap without a snapshot, or whose membership names node 0,
  // lists a node twice or has no voter, is refused, and that the core
  // ignores one stepped directly instead of asserting.
  TestCluster c = ElectedCluster();
  uint64_t t = c.raft(2).term();
  Message no_snap = Msg(MessageType::kSnap, 1, 2, t);
  RequireInvalid(c, 2, no_snap);
  Snapshot s;
  s.metadata.index = 100;
  s.metadata.term = t;
  std::vector<ConfState> bad = {ConfState{{1, 0, 3}, {}}, ConfState{{1, 2, 3}, {0}}, ConfState{{1, 2, 2}, {}},
                                ConfState{{1, 2, 3}, {3}}, ConfState{{}, {1}}};
  for (const ConfState& cs : bad) {
    Message m = Msg(MessageType::kSnap, 1, 2, t);
    s.metadata.conf_state = cs;
    m.snapshot = s;
    RequireInvalid(c, 2, m);
    Snap before = Capture(c.raft(2));
    REQUIRE(c.raft(2).Step(m).ok());
    CHECK(Capture(c.raft(2)) == before);
    CHECK(c.raft(2).tracker().voters().size() == 3);
  }
  Snap before = Capture(c.raft(2));
  REQUIRE(c.raft(2).Step(no_snap).ok());
  CHECK(Capture(c.raft(2)) == before);
  // Snapshot term above the message term, or index 0.
  Message m = Msg(MessageType::kSnap, 1, 2, t);
  s.metadata.conf_state = ConfState{{1, 2, 3}, {}};
  s.metadata.term = t + 1;
  m.snapshot = s;
  RequireInvalid(c, 2, m);
  s.metadata.term = t;
  s.metadata.index = 0;
  m.snapshot = s;
  RequireInvalid(c, 2, m);
}

TEST_CASE("Appends whose entries are not numbered from index + 1 are refused", "[raft][malformed]") {
  // Proves non-consecutive, far-away, gapped, term-decreasing or
  // term-too-high entries neither abort nor pad or corrupt the log, through
  // RawNode or directly into the core.
  TestCluster c = ElectedCluster();
  uint64_t t = c.raft(2).term();
  uint64_t last = c.raft(2).log().LastIndex();
  auto app = [&](std::vector<Entry> ents) {
    Message m = Msg(MessageType::kApp, 1, 2, t);
    m.index = last;
    m.log_term = t;
    m.commit = last + ents.size();
    m.entries = std::move(ents);
    return m;
  };
  std::vector<Message> bad = {
      app({Entry{t, uint64_t{1} << 40, EntryType::kNormal, "far"}}),
      app({Entry{t, last + 3, EntryType::kNormal, "gap"}}),
      app({Entry{t, last + 1, EntryType::kNormal, "a"}, Entry{t, last + 3, EntryType::kNormal, "b"}}),
      app({Entry{t, last + 1, EntryType::kNormal, "a"}, Entry{t, last + 1, EntryType::kNormal, "a"}}),
      app({Entry{t, last, EntryType::kNormal, "behind"}}),
      app({Entry{t + 1, last + 1, EntryType::kNormal, "future"}}),
      app({Entry{t - 1, last + 1, EntryType::kNormal, "old"}}),  // below log_term
      app({Entry{0, last + 1, EntryType::kNormal, "zero"}}),
  };
  Message wrap = app({Entry{t, 0, EntryType::kNormal, "wrap"}});
  wrap.index = UINT64_MAX;
  bad.push_back(wrap);
  for (const Message& m : bad) {
    RequireInvalid(c, 2, m);
    Snap before = Capture(c.raft(2));
    REQUIRE(c.raft(2).Step(m).ok());
    CHECK(Capture(c.raft(2)) == before);
  }
  // A well-formed append still works.
  Message good = app({Entry{t, last + 1, EntryType::kNormal, "ok"}});
  REQUIRE(c.node(2).raw->Step(good).ok());
  CHECK(c.raft(2).log().LastIndex() == last + 1);
}

TEST_CASE("TimeoutNow is obeyed only from the leader", "[raft][malformed]") {
  // Proves a follower does not start a forced election (which skips every
  // lease) on a TimeoutNow from a node other than its leader.
  TestCluster c = ElectedCluster();
  uint64_t t = c.raft(2).term();
  Snap before = Capture(c.raft(2));
  REQUIRE(c.node(2).raw->Step(Msg(MessageType::kTimeoutNow, 3, 2, t)).ok());
  CHECK(Capture(c.raft(2)) == before);
  REQUIRE(c.node(2).raw->Step(Msg(MessageType::kTimeoutNow, 1, 2, t)).ok());
  CHECK(c.raft(2).state() == StateRole::kCandidate);
}

TEST_CASE("An append acknowledgement past the leader's log is ignored", "[raft][malformed]") {
  // Proves a kAppResp claiming an index the leader never sent cannot move
  // match beyond the leader's last index (nor commit anything).
  TestCluster c = ElectedCluster();
  uint64_t last = c.raft(1).log().LastIndex();
  uint64_t committed = c.raft(1).log().committed();
  Message resp = Msg(MessageType::kAppResp, 2, 1, c.raft(1).term());
  resp.index = last + 1000;
  REQUIRE(c.node(1).raw->Step(resp).ok());
  CHECK(c.raft(1).tracker().progress().at(2).match <= last);
  CHECK(c.raft(1).log().committed() == committed);
}

TEST_CASE("A granted pre-vote counts only in the term campaigned for", "[raft][malformed]") {
  // Proves a pre-candidate does not count a granted kPreVoteResp whose
  // term is not its term + 1.
  Config cfg = BaseConfig();
  cfg.pre_vote = true;
  TestCluster c(cfg);
  c.AddNodes(3);
  c.TickElection(1);
  REQUIRE(c.raft(1).state() == StateRole::kPreCandidate);
  c.ProcessReady(1);
  c.DropMsgs(2);
  c.DropMsgs(3);
  uint64_t t = c.raft(1).term();
  for (uint64_t term : {t + 2, t + 7}) {
    REQUIRE(c.node(1).raw->Step(Msg(MessageType::kPreVoteResp, 2, 1, term)).ok());
    CHECK(c.raft(1).state() == StateRole::kPreCandidate);
    CHECK(c.raft(1).term() == t);
  }
  REQUIRE(c.node(1).raw->Step(Msg(MessageType::kPreVoteResp, 2, 1, t + 1)).ok());
  CHECK(c.raft(1).state() == StateRole::kCandidate);
}

TEST_CASE("A read-index answer from a peer that is not the leader is ignored", "[raft][malformed]") {
  // A follower's linearizable read is confirmed by its leader only: a stale
  // index from another peer would let it serve an old value.
  TestCluster c = ElectedCluster();
  REQUIRE(c.raft(2).lead() == 1);
  const uint64_t t = c.raft(2).term();
  Message fake = Msg(MessageType::kReadIndexResp, 3, 2, t);
  fake.index = 1;
  fake.context = "ctx";
  REQUIRE(c.node(2).raw->Step(fake).ok());
  CHECK(c.raft(2).read_states().empty());
  Message real = fake;
  real.from = 1;
  REQUIRE(c.node(2).raw->Step(real).ok());
  REQUIRE(c.raft(2).read_states().size() == 1);
  CHECK(c.raft(2).read_states()[0].index == 1);
}

TEST_CASE("A heartbeat committing past a follower's log stops the follower with Corruption", "[raft][malformed]") {
  // The leader's heartbeat carries min(match, commit): an index past our last
  // entry means our log lost entries we acknowledged (a disk that lost synced
  // writes). The follower must say so rather than go on voting with a log
  // shorter than what it promised; the commit index must not move.
  TestCluster c = ElectedCluster();
  REQUIRE(c.raft(2).lead() == 1);
  const uint64_t t = c.raft(2).term();
  const uint64_t last = c.raft(2).log().LastIndex();
  const uint64_t committed = c.raft(2).log().committed();
  Message hb = Msg(MessageType::kHeartbeat, 1, 2, t);
  hb.commit = last + 5;
  Status s = c.node(2).raw->Step(hb);
  INFO(s.ToString());
  CHECK(s.code() == Code::kCorruption);
  CHECK(s.message().find("lost acknowledged entries") != std::string::npos);
  CHECK(c.raft(2).log().committed() == committed);
  // A heartbeat within the log is fine.
  hb.commit = last;
  CHECK(c.node(2).raw->Step(hb).ok());
  CHECK(c.raft(2).log().committed() == last);
}

}  // namespace
}  // namespace bulwark::raft
