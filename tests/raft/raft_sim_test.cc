// The simulation's checkers, shown to fail on bad histories, and the
// simulator itself: deterministic, clean on a correct core, and able to
// find a deliberately broken rule.

#include <catch2/catch.hpp>

#include "tests/raft/sim/checker.h"
#include "tests/raft/sim/simulator.h"

namespace bulwark::raft::sim {
namespace {

Entry E(uint64_t index, uint64_t term, std::string data) {
  return Entry{term, index, EntryType::kNormal, std::move(data)};
}

TEST_CASE("Checker: two leaders in one term violate election safety", "[raft][sim][checker]") {
  // Proves the election-safety check fails when it should.
  Checker c;
  c.CheckElectionSafety(1, 5);
  c.CheckElectionSafety(1, 5);
  c.CheckElectionSafety(2, 6);
  CHECK(c.ok());
  c.CheckElectionSafety(3, 5);
  CHECK_FALSE(c.ok());
  CHECK(c.violation().find("election safety") != std::string::npos);
}

TEST_CASE("Checker: one index-term pair with two payloads violates log matching", "[raft][sim][checker]") {
  // Proves the inductive log-matching check catches a divergent entry and a
  // divergent history behind an equal entry.
  MemoryStorage a;
  REQUIRE(a.Append({E(1, 1, "x"), E(2, 2, "y")}).ok());
  MemoryStorage b;
  REQUIRE(b.Append({E(1, 1, "x"), E(2, 2, "z")}).ok());
  Checker c;
  c.CheckPersistedEntries(1, a, {E(1, 1, "x"), E(2, 2, "y")});
  c.CheckPersistedEntries(2, b, {E(1, 1, "x")});
  CHECK(c.ok());
  c.CheckPersistedEntries(2, b, {E(2, 2, "z")});
  CHECK_FALSE(c.ok());

  MemoryStorage d;
  REQUIRE(d.Append({E(1, 3, "w"), E(2, 2, "y")}).ok());
  Checker c2;
  c2.CheckPersistedEntries(1, a, {E(1, 1, "x"), E(2, 2, "y")});
  c2.CheckPersistedEntries(3, d, {E(2, 2, "y")});  // same entry, different past
  CHECK_FALSE(c2.ok());
}

TEST_CASE("Checker: different applied entries violate state-machine safety", "[raft][sim][checker]") {
  // Proves the applied-history check, including snapshot installs.
  Checker c;
  uint64_t h1 = NextStateHash(0, E(1, 1, "a"));
  c.CheckApplied(1, E(1, 1, "a"), h1);
  c.CheckApplied(2, E(1, 1, "a"), h1);
  c.CheckSnapshot(3, 1, h1);
  CHECK(c.ok());
  c.CheckApplied(3, E(1, 1, "b"), NextStateHash(0, E(1, 1, "b")));
  CHECK_FALSE(c.ok());
  Checker c2;
  c2.CheckApplied(1, E(1, 1, "a"), h1);
  c2.CheckSnapshot(2, 1, h1 + 1);
  CHECK_FALSE(c2.ok());
}

TEST_CASE("Checker: a leader missing a committed entry violates leader completeness", "[raft][sim][checker]") {
  // Proves the leader-completeness check, for facts recorded before and
  // after the leader was elected.
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1, "a"), E(2, 3, "b")}).ok());
  RaftLog log(&s, kNoLimit);
  Checker c;
  c.RecordCommit(2, 3, 3);
  c.CheckNewLeader(1, 3, log);  // committed in term 3, leader of term 3: not required
  c.CheckNewLeader(1, 4, log);  // has it
  CHECK(c.ok());
  c.RecordCommit(2, 2, 2);  // a different entry committed at index 2: impossible
  CHECK_FALSE(c.ok());

  Checker c2;
  c2.RecordCommit(3, 2, 2);
  c2.CheckNewLeader(1, 4, log);  // lacks index 3
  CHECK_FALSE(c2.ok());

  Checker c3;
  c3.RecordCommit(3, 2, 2);
  c3.CheckNewCommitsAgainstLeaders({{4, &log}});
  CHECK_FALSE(c3.ok());
}

TEST_CASE("Checker: a read that misses an acknowledged write is not linearizable", "[raft][sim][checker]") {
  // Proves the read check: a read starting after a write's ack must have a
  // read index at or past the write; a read after another read must not
  // go back in time.
  Checker c;
  uint64_t h = 0;
  for (uint64_t i = 1; i <= 3; ++i) {
    Entry e = E(i, 1, "w" + std::to_string(i - 1));
    h = NextStateHash(h, e);
    c.CheckApplied(1, e, h);
  }
  size_t w = c.StartWrite(1);
  c.AckWrite(w, 1);
  size_t good = c.StartRead(2);
  c.ReadIndexKnown(good, 1);
  c.ServeRead(good, 3, h);
  c.CheckReadsLinearizable();
  CHECK(c.ok());
  size_t stale = c.StartRead(3);  // starts after `good` saw index 3
  c.ReadIndexKnown(stale, 2);
  uint64_t h2 = NextStateHash(NextStateHash(0, E(1, 1, "w0")), E(2, 1, "w1"));
  c.ServeRead(stale, 2, h2);
  CHECK(c.ok());
  c.CheckReadsLinearizable();
  CHECK_FALSE(c.ok());
  CHECK(c.violation().find("linearizability") != std::string::npos);
}

TEST_CASE("Checker: an acknowledged write must be applied on every node", "[raft][sim][checker]") {
  // Proves the final durability check.
  Checker c;
  Entry e = E(1, 1, "w0");
  c.CheckApplied(1, e, NextStateHash(0, e));
  size_t w = c.StartWrite(1);
  c.AckWrite(w, 1);
  c.CheckFinal({1, 1, 1});
  CHECK(c.ok());
  Checker c2;
  c2.CheckApplied(1, e, NextStateHash(0, e));
  size_t w2 = c2.StartWrite(1);
  c2.AckWrite(w2, 1);
  c2.CheckFinal({1, 0, 1});
  CHECK_FALSE(c2.ok());
}

TEST_CASE("Simulation: a correct core passes a batch of seeds on 3 to 5 nodes", "[raft][sim]") {
  // Proves the simulator runs clean (and does real work) on the real rules.
  uint64_t acked = 0;
  uint64_t reads = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.nodes = 3 + static_cast<int>(seed % 3);
    SimResult r = RunSimulation(o);
    INFO(ReplayCommand(o) << ": " << r.violation);
    REQUIRE(r.ok);
    acked += r.stats.writes_acked;
    reads += r.stats.reads_completed;
  }
  CHECK(acked > 1000);
  CHECK(reads > 500);
}

TEST_CASE("Simulation: a seed replays exactly", "[raft][sim]") {
  // Proves determinism: everything derives from the seed.
  SimOptions o;
  o.seed = 424242;
  o.nodes = 5;
  SimResult a = RunSimulation(o);
  SimResult b = RunSimulation(o);
  CHECK(a.stats.steps == b.stats.steps);
  CHECK(a.stats.writes_acked == b.stats.writes_acked);
  CHECK(a.stats.messages_delivered == b.stats.messages_delivered);
  CHECK(a.stats.final_applied_index == b.stats.final_applied_index);
  CHECK(ReplayCommand(o) == "build/bin/raft-sim --seed 424242 --nodes 5 --steps 1500 --verbose");
}

TEST_CASE("Simulation: skipping the vote's log check is found", "[raft][sim][broken]") {
  // Proves the checkers catch a broken election rule: with votes granted
  // regardless of log freshness, some seed must elect a leader that lacks
  // committed entries.
  bool found = false;
  for (uint64_t seed = 1; seed <= 200 && !found; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.nodes = 3 + static_cast<int>(seed % 3);
    o.broken_skip_vote_log_check = true;
    found = !RunSimulation(o).ok;
  }
  CHECK(found);
}

}  // namespace
}  // namespace bulwark::raft::sim
