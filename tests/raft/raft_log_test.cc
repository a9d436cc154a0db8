// Unit tests of the log layers: MemoryStorage, Unstable, RaftLog, and the
// leader's flow-control structures (Inflights, Progress).

#include <catch2/catch.hpp>

#include "replication/raft/log.h"
#include "replication/raft/progress.h"
#include "replication/raft/storage.h"

namespace bulwark::raft {
namespace {

Entry E(uint64_t index, uint64_t term, std::string data = "") {
  return Entry{term, index, EntryType::kNormal, std::move(data)};
}

std::vector<uint64_t> Terms(const std::vector<Entry>& ents) {
  std::vector<uint64_t> out;
  for (const Entry& e : ents) out.push_back(e.term);
  return out;
}

TEST_CASE("MemoryStorage appends and truncates conflicts and compacts", "[raft][log]") {
  // Proves the stable-log contract the core relies on: terms and entries by
  // index, conflict truncation on append, compaction errors.
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1), E(2, 1), E(3, 2)}).ok());
  CHECK(s.FirstIndex() == 1);
  CHECK(s.LastIndex() == 3);
  CHECK(*s.Term(3) == 2);
  REQUIRE(s.Append({E(3, 3), E(4, 3)}).ok());  // replaces index 3
  CHECK(*s.Term(3) == 3);
  CHECK(s.LastIndex() == 4);
  REQUIRE(s.CreateSnapshot(2, ConfState{{1, 2, 3}, {}}, "state").ok());
  REQUIRE(s.Compact(2).ok());
  CHECK(s.FirstIndex() == 3);
  CHECK(*s.Term(2) == 1);  // the dummy entry keeps the snapshot's term
  CHECK(IsCompacted(s.Term(1).status()));
  CHECK(IsCompacted(s.Entries(2, 4, kNoLimit).status()));
  CHECK(IsCompacted(s.Compact(1)));
  CHECK(s.CreateSnapshot(2, ConfState{}, "").code() == Code::kFailedPrecondition);
}

TEST_CASE("MemoryStorage size limits always return at least one entry", "[raft][log]") {
  // Proves max-bytes limits never stall replication with a big entry.
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1, std::string(100, 'x')), E(2, 1, "a"), E(3, 1, "b")}).ok());
  CHECK(s.Entries(1, 4, 1)->size() == 1);
  CHECK(s.Entries(1, 4, kNoLimit)->size() == 3);
  uint64_t two = EntrySizeBytes(E(2, 1, "a")) + EntrySizeBytes(E(3, 1, "b"));
  CHECK(s.Entries(2, 4, two)->size() == 2);
  CHECK(s.Entries(2, 4, two - 1)->size() == 1);
}

TEST_CASE("MemoryStorage refuses an older snapshot", "[raft][log]") {
  // Proves a delayed snapshot cannot roll a node's state back.
  MemoryStorage s;
  Snapshot snap;
  snap.metadata.index = 5;
  snap.metadata.term = 2;
  REQUIRE(s.ApplySnapshot(snap).ok());
  CHECK(s.FirstIndex() == 6);
  CHECK(s.LastIndex() == 5);
  snap.metadata.index = 4;
  CHECK(s.ApplySnapshot(snap).code() == Code::kFailedPrecondition);
}

TEST_CASE("Unstable stable-to only drops entries whose term still matches", "[raft][log]") {
  // Proves a persist acknowledgement for an entry that a newer leader has
  // since replaced does not drop the replacement.
  Unstable u;
  u.offset = 5;
  u.entries = {E(5, 1), E(6, 1)};
  u.StableTo(5, 2);  // wrong term: ignored
  CHECK(u.offset == 5);
  u.StableTo(5, 1);
  CHECK(u.offset == 6);
  CHECK(u.entries.size() == 1);
  u.TruncateAndAppend({E(6, 3), E(7, 3)});  // conflict at the first unstable index
  CHECK(Terms(u.entries) == std::vector<uint64_t>{3, 3});
  u.TruncateAndAppend({E(5, 4)});  // before the offset: replaces everything
  CHECK(u.offset == 5);
  CHECK(u.entries.size() == 1);
}

TEST_CASE("RaftLog MaybeAppend follows figure 2 AppendEntries rules 2-5", "[raft][log][figure2]") {
  // Proves: reject when prev entry does not match (rule 2); delete a
  // conflicting suffix (rule 3); append new entries (rule 4); commit =
  // min(leaderCommit, index of last new entry) (rule 5).
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1), E(2, 2), E(3, 3)}).ok());
  RaftLog log(&s, kNoLimit);

  CHECK_FALSE(log.MaybeAppend(3, 2, 3, {E(4, 4)}).has_value());  // rule 2
  CHECK_FALSE(log.MaybeAppend(4, 3, 3, {E(5, 4)}).has_value());  // prev missing

  auto last = log.MaybeAppend(1, 1, 10, {E(2, 4), E(3, 4)});  // rule 3 + 4
  REQUIRE(last.has_value());
  CHECK(*last == 3);
  CHECK(Terms(log.AllEntries()) == std::vector<uint64_t>{1, 4, 4});
  CHECK(log.committed() == 3);  // rule 5: min(10, 3)

  // Entries already present are not truncated by a stale, shorter append.
  REQUIRE(log.MaybeAppend(1, 1, 3, {E(2, 4)}).has_value());
  CHECK(log.LastIndex() == 3);
}

TEST_CASE("RaftLog IsUpToDate compares last term and then length", "[raft][log][figure2]") {
  // Proves the RequestVote up-to-date rule (section 5.4.1).
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1), E(2, 2), E(3, 2)}).ok());
  RaftLog log(&s, kNoLimit);
  CHECK(log.IsUpToDate(1, 3));      // higher last term wins, even if shorter
  CHECK(log.IsUpToDate(3, 2));      // same term, same length
  CHECK(log.IsUpToDate(4, 2));      // same term, longer
  CHECK_FALSE(log.IsUpToDate(2, 2));  // same term, shorter
  CHECK_FALSE(log.IsUpToDate(9, 1));  // lower term, however long
}

TEST_CASE("RaftLog MaybeCommit only commits entries of the given term", "[raft][log][figure2]") {
  // Proves the leader-side rule: commit by counting only at currentTerm.
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1), E(2, 2)}).ok());
  RaftLog log(&s, kNoLimit);
  CHECK_FALSE(log.MaybeCommit(1, 2));  // entry 1 has term 1
  CHECK(log.committed() == 0);
  CHECK(log.MaybeCommit(2, 2));
  CHECK(log.committed() == 2);
}

TEST_CASE("RaftLog hands out committed entries within the size limit", "[raft][log]") {
  // Proves NextEntries respects max_committed_size_per_ready_bytes and
  // resumes after AppliedTo.
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1, "aaaa"), E(2, 1, "bbbb"), E(3, 1, "cccc")}).ok());
  RaftLog log(&s, EntrySizeBytes(E(1, 1, "aaaa")) + 1);
  log.CommitTo(3);
  REQUIRE(log.NextEntries().size() == 1);
  log.AppliedTo(1);
  CHECK(log.NextEntries().front().index == 2);
  log.AppliedTo(3);
  CHECK_FALSE(log.HasNextEntries());
}

TEST_CASE("RaftLog FindConflictByTerm skips a whole term", "[raft][log]") {
  // Proves the rejection hint lets the leader skip all entries of a
  // conflicting term at once instead of one per round trip.
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1), E(2, 1), E(3, 3), E(4, 3), E(5, 3)}).ok());
  RaftLog log(&s, kNoLimit);
  CHECK(log.FindConflictByTerm(5, 2) == std::make_pair(uint64_t{2}, uint64_t{1}));
  CHECK(log.FindConflictByTerm(5, 3) == std::make_pair(uint64_t{5}, uint64_t{3}));
}

TEST_CASE("RaftLog restore from snapshot resets the log", "[raft][log][snapshot]") {
  // Proves a restored snapshot becomes the new log start and commit point.
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1)}).ok());
  RaftLog log(&s, kNoLimit);
  Snapshot snap;
  snap.metadata.index = 10;
  snap.metadata.term = 4;
  log.Restore(snap);
  CHECK(log.committed() == 10);
  CHECK(log.FirstIndex() == 11);
  CHECK(log.LastIndex() == 10);
  CHECK(log.LastTerm() == 4);
  CHECK(IsCompacted(log.Term(5).status()));
}

TEST_CASE("Inflights bound the pipelining window by count and bytes", "[raft][flow]") {
  // Proves max_inflight_msgs and max_inflight_bytes both close the window.
  Inflights by_count(2, kNoLimit);
  by_count.Add(5, 10);
  CHECK_FALSE(by_count.Full());
  by_count.Add(7, 10);
  CHECK(by_count.Full());
  by_count.FreeLE(5);
  CHECK_FALSE(by_count.Full());
  CHECK(by_count.Count() == 1);

  Inflights by_bytes(100, 50);
  by_bytes.Add(1, 30);
  CHECK_FALSE(by_bytes.Full());
  by_bytes.Add(2, 30);
  CHECK(by_bytes.Full());
  by_bytes.FreeFirstOne();
  CHECK_FALSE(by_bytes.Full());
}

TEST_CASE("Progress probe and replicate states", "[raft][flow]") {
  // Proves probe sends one append per heartbeat (paused after a send),
  // replicate pipelines optimistically, and rejections fall back to match+1.
  Progress pr(6, 3, kNoLimit, false);
  pr.SentEntries(8, 10);
  CHECK(pr.IsPaused());  // probe: one in flight
  CHECK(pr.MaybeUpdate(8));
  pr.BecomeReplicate();
  CHECK(pr.next == 9);
  pr.SentEntries(10, 10);
  pr.SentEntries(12, 10);
  pr.SentEntries(14, 10);
  CHECK(pr.next == 15);
  CHECK(pr.IsPaused());  // window of 3 is full
  CHECK_FALSE(pr.MaybeDecrTo(7, 7));  // stale rejection (<= match)
  CHECK(pr.MaybeDecrTo(12, 9));
  CHECK(pr.next == 9);
  pr.BecomeProbe();
  CHECK(pr.next == 9);
  CHECK(pr.MaybeDecrTo(8, 5));  // probe rejection of next-1 moves by the hint
  CHECK(pr.next == 9);          // never below match + 1
}

TEST_CASE("ProgressTracker computes the quorum commit index", "[raft][figure2]") {
  // Proves commit = the highest index a majority of voters has matched;
  // learners do not count.
  ProgressTracker t(8, kNoLimit);
  t.Reset(ConfState{{1, 2, 3, 4, 5}, {6}}, 1);
  uint64_t matches[] = {9, 7, 5, 3, 1};
  for (uint64_t id = 1; id <= 5; ++id) t.Get(id)->match = matches[id - 1];
  t.Get(6)->match = 100;
  CHECK(t.Committed() == 5);
  t.Reset(ConfState{{1, 2, 3, 4}, {}}, 1);
  t.Get(1)->match = 9;
  t.Get(2)->match = 7;
  t.Get(3)->match = 5;
  CHECK(t.Committed() == 5);  // 3 of 4
}

}  // namespace
}  // namespace bulwark::raft
