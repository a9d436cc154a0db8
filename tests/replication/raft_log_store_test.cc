// Unit tests of RaftLogStore, the Raft core's Storage on a RocksDB column
// family: durability across reopen, conflict truncation, size limits, reads
// across the tail cache's edge, compaction, snapshot install, corrupt
// records, and a seeded differential run against MemoryStorage.

#include "replication/raft_log_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "common/coding.h"
#include "replication/raft/storage.h"
#include "tests/test_util.h"

namespace bulwark::replication {
namespace {

using raft::ConfState;
using raft::Entry;
using raft::EntryType;
using raft::HardState;
using raft::kNoLimit;

Entry E(uint64_t index, uint64_t term, std::string data = "") {
  return Entry{term, index, EntryType::kNormal, std::move(data)};
}

std::vector<Entry> Range(uint64_t lo, uint64_t hi, uint64_t term, size_t data_bytes = 8) {
  std::vector<Entry> out;
  for (uint64_t i = lo; i < hi; ++i) {
    std::string data(data_bytes, static_cast<char>('a' + i % 26));
    if (data_bytes >= 8) data.replace(0, 8, std::to_string(10000000 + i % 90000000));
    out.push_back(E(i, term, std::move(data)));
  }
  return out;
}

std::string EntryKey(uint64_t index) {
  std::string key = "e/";
  PutBigEndian64(key, index);
  return key;
}

// A real RocksDB in a temporary directory with a "raft" column family, and
// the store opened on it. Reopen() closes the database itself, so what the
// store reads back is what reached the files.
class TestLog {
 public:
  TestLog() {
    OpenDb();
    OpenStore();
  }
  ~TestLog() { CloseDb(); }

  void Reopen() {
    store_.reset();
    CloseDb();
    OpenDb();
    OpenStore();
  }
  // Closes and reopens the database only; the store is left unopened so a
  // test can look at what Open() returns.
  Status ReopenExpectingFailure() {
    store_.reset();
    CloseDb();
    OpenDb();
    auto r = RaftLogStore::Open(db_, raft_cf());
    REQUIRE_FALSE(r.ok());
    return r.status();
  }

  RaftLogStore& store() { return *store_; }
  rocksdb::DB* db() { return db_; }
  rocksdb::ColumnFamilyHandle* raft_cf() { return handles_[1]; }
  void RawPut(const std::string& key, const std::string& value) {
    REQUIRE(db_->Put(rocksdb::WriteOptions(), raft_cf(), key, value).ok());
  }
  void RawDelete(const std::string& key) { REQUIRE(db_->Delete(rocksdb::WriteOptions(), raft_cf(), key).ok()); }

 private:
  void OpenDb() {
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
        {"raft", rocksdb::ColumnFamilyOptions()},
    };
    rocksdb::Status s = rocksdb::DB::Open(options, dir_.sub("db"), cfs, &handles_, &db_);
    REQUIRE(s.ok());
  }
  void OpenStore() {
    auto r = RaftLogStore::Open(db_, raft_cf());
    REQUIRE(r.ok());
    store_ = std::move(r).value();
  }
  void CloseDb() {
    if (!db_) return;
    for (auto* h : handles_) (void)db_->DestroyColumnFamilyHandle(h);
    handles_.clear();
    (void)db_->Close();
    delete db_;  // rocksdb::DB::Open hands back a raw owning pointer
    db_ = nullptr;
  }

  testing::TempDir dir_;
  rocksdb::DB* db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<RaftLogStore> store_;
};

std::vector<Entry> MustEntries(const raft::Storage& s, uint64_t lo, uint64_t hi, uint64_t max = kNoLimit) {
  auto r = s.Entries(lo, hi, max);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

uint64_t MustTerm(const raft::Storage& s, uint64_t i) {
  auto r = s.Term(i);
  INFO("term of " << i << ": " << r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}

TEST_CASE("RaftLogStore: an empty store reports the initial log", "[raftlog]") {
  // Proves a fresh node starts from the same log view as MemoryStorage.
  TestLog log;
  RaftLogStore& s = log.store();
  CHECK(s.FirstIndex() == 1);
  CHECK(s.LastIndex() == 0);
  CHECK(MustTerm(s, 0) == 0);
  CHECK(s.EntryCount() == 0);
  CHECK(raft::IsCompacted(s.Entries(1, 1, kNoLimit).status()));
  HardState hs;
  ConfState cs;
  REQUIRE(s.InitialState(&hs, &cs).ok());
  CHECK(hs.IsEmpty());
  CHECK(cs == ConfState{});
  auto snap = s.GetSnapshot();
  REQUIRE(snap.ok());
  CHECK(snap->IsEmpty());
  log.Reopen();
  CHECK(log.store().LastIndex() == 0);
}

TEST_CASE("RaftLogStore: persisted entries and hard state survive reopen", "[raftlog]") {
  // Proves Persist writes what Open reads back: votes and entries a node
  // acknowledged are not forgotten across a restart.
  TestLog log;
  const HardState hs{3, 2, 4};
  std::vector<Entry> ents = Range(1, 6, 3);
  ents[2].type = EntryType::kConfChange;
  ents[3].data = "";  // an empty entry, as a new leader appends
  REQUIRE(log.store().Persist(hs, ents, true).ok());
  CHECK(log.store().hard_state() == hs);
  CHECK(MustEntries(log.store(), 1, 6) == ents);

  log.Reopen();
  RaftLogStore& s = log.store();
  HardState got_hs;
  ConfState got_cs;
  REQUIRE(s.InitialState(&got_hs, &got_cs).ok());
  CHECK(got_hs == hs);
  CHECK(s.FirstIndex() == 1);
  CHECK(s.LastIndex() == 5);
  CHECK(MustEntries(s, 1, 6) == ents);
  CHECK(MustEntries(s, 2, 4) == std::vector<Entry>(ents.begin() + 1, ents.begin() + 3));
  CHECK(MustTerm(s, 5) == 3);

  // A hard state alone (a vote) is stored without touching the entries.
  REQUIRE(s.Persist(HardState{4, 1, 5}, {}, true).ok());
  log.Reopen();
  CHECK(log.store().hard_state() == HardState{4, 1, 5});
  CHECK(log.store().LastIndex() == 5);
}

TEST_CASE("RaftLogStore: a conflicting append truncates the old suffix", "[raftlog]") {
  // Proves a follower's log after a leader change holds the new leader's
  // entries and none of the overwritten suffix, in memory and on disk.
  TestLog log;
  REQUIRE(log.store().Persist(std::nullopt, Range(1, 11, 1), false).ok());
  REQUIRE(log.store().Persist(std::nullopt, Range(6, 8, 2), false).ok());
  auto check = [](RaftLogStore& s) {
    CHECK(s.LastIndex() == 7);
    CHECK(MustTerm(s, 5) == 1);
    CHECK(MustTerm(s, 6) == 2);
    CHECK(MustTerm(s, 7) == 2);
    std::vector<Entry> want = Range(1, 6, 1);
    for (Entry& e : Range(6, 8, 2)) want.push_back(e);
    CHECK(MustEntries(s, 1, 8) == want);
  };
  check(log.store());
  log.Reopen();
  check(log.store());
  // Appending after the truncation continues from the new last index.
  REQUIRE(log.store().Persist(std::nullopt, Range(8, 9, 2), true).ok());
  log.Reopen();
  CHECK(log.store().LastIndex() == 8);
  CHECK(MustTerm(log.store(), 8) == 2);
}

TEST_CASE("RaftLogStore: appends that leave a gap or reach below the log are refused", "[raftlog]") {
  // Proves a runner bug cannot leave a hole in the stored log.
  TestLog log;
  RaftLogStore& s = log.store();
  CHECK(s.Persist(std::nullopt, Range(2, 4, 1), false).code() == Code::kInvalidArgument);
  REQUIRE(s.Persist(std::nullopt, Range(1, 6, 1), false).ok());
  CHECK(s.Persist(std::nullopt, Range(7, 8, 1), false).code() == Code::kInvalidArgument);
  CHECK(s.Persist(std::nullopt, {E(6, 1), E(8, 1)}, false).code() == Code::kInvalidArgument);
  REQUIRE(s.Compact(3, ConfState{{1}, {}}).ok());
  CHECK(s.Persist(std::nullopt, Range(3, 5, 2), false).code() == Code::kInvalidArgument);
  // A refused append changes nothing, the hard state included.
  CHECK(s.Persist(HardState{9, 9, 9}, Range(9, 10, 1), false).code() == Code::kInvalidArgument);
  CHECK(s.hard_state().IsEmpty());
  CHECK(s.LastIndex() == 5);
  CHECK(MustEntries(s, 4, 6) == Range(4, 6, 1));
}

TEST_CASE("RaftLogStore: a size limit still returns at least one entry", "[raftlog]") {
  // Proves the byte limit never stalls replication on a big entry, whether
  // the entries come from the cache or from RocksDB.
  TestLog log;
  std::vector<Entry> ents = {E(1, 1, std::string(100, 'x')), E(2, 1, "a"), E(3, 1, "b")};
  REQUIRE(log.store().Persist(std::nullopt, ents, false).ok());
  const uint64_t two = raft::EntrySizeBytes(ents[1]) + raft::EntrySizeBytes(ents[2]);
  for (int pass = 0; pass < 2; ++pass) {
    RaftLogStore& s = log.store();
    CHECK(MustEntries(s, 1, 4, 1).size() == 1);
    CHECK(MustEntries(s, 1, 4, 0).size() == 1);
    CHECK(MustEntries(s, 1, 4, kNoLimit).size() == 3);
    CHECK(MustEntries(s, 2, 4, two).size() == 2);
    CHECK(MustEntries(s, 2, 4, two - 1).size() == 1);
    CHECK(MustEntries(s, 4, 4).empty());
    log.Reopen();  // the second pass reads from disk
  }
  // After the reopen 1..3 are only on disk and 4 is only in the cache. A
  // limit reached on disk must end the read, even though the cached entry
  // after it is small enough to fit on its own.
  const Entry empty = E(4, 1, "");  // smaller than entry 2
  REQUIRE(log.store().Persist(std::nullopt, {empty}, false).ok());
  const uint64_t first_and_empty = raft::EntrySizeBytes(ents[0]) + raft::EntrySizeBytes(empty);
  CHECK(MustEntries(log.store(), 1, 5, first_and_empty) == std::vector<Entry>{ents[0]});
  CHECK(MustEntries(log.store(), 2, 5, two + raft::EntrySizeBytes(empty)) ==
        std::vector<Entry>{ents[1], ents[2], empty});
}

TEST_CASE("RaftLogStore: reads spanning the cache and the disk", "[raftlog]") {
  // Proves reads are right on both sides of the tail cache's edge: with
  // more than kRaftLogCacheBytes written the oldest entries are served from
  // RocksDB, and one read may take some from each.
  TestLog log;
  constexpr size_t kEntryBytes = 512 << 10;
  constexpr uint64_t kCount = (kRaftLogCacheBytes / kEntryBytes) + 16;
  std::vector<Entry> all;
  for (uint64_t lo = 1; lo <= kCount; lo += 8) {
    std::vector<Entry> batch = Range(lo, lo + 8, 1 + lo / 8, kEntryBytes);
    REQUIRE(log.store().Persist(std::nullopt, batch, false).ok());
    all.insert(all.end(), batch.begin(), batch.end());
  }
  const uint64_t last = all.size();
  auto slice = [&](uint64_t lo, uint64_t hi) {
    return std::vector<Entry>(all.begin() + static_cast<ptrdiff_t>(lo - 1), all.begin() + static_cast<ptrdiff_t>(hi - 1));
  };
  auto check_all = [&](RaftLogStore& s) {
    REQUIRE(s.LastIndex() == last);
    CHECK(MustEntries(s, 1, last + 1) == all);
    for (uint64_t i = 1; i <= last; ++i) CHECK(MustTerm(s, i) == all[i - 1].term);
    // Windows around every index, so some straddle the cache's first index.
    for (uint64_t lo = 1; lo <= last; lo += 3) {
      const uint64_t hi = std::min(last + 1, lo + 5);
      CHECK(MustEntries(s, lo, hi) == slice(lo, hi));
      // A limit of three entries' bytes, stopping wherever the edge falls.
      const uint64_t three = 3 * raft::EntrySizeBytes(all[0]);
      CHECK(MustEntries(s, lo, hi, three) == slice(lo, std::min(hi, lo + 3)));
    }
  };
  check_all(log.store());

  // After a reopen the cache is empty; new appends refill it from the tail,
  // and a conflict reaching below the cache must still truncate the disk.
  log.Reopen();
  check_all(log.store());
  std::vector<Entry> more = Range(last + 1, last + 4, 50, kEntryBytes);
  REQUIRE(log.store().Persist(std::nullopt, more, false).ok());
  all.insert(all.end(), more.begin(), more.end());
  REQUIRE(log.store().Persist(std::nullopt, Range(3, 5, 60, kEntryBytes), false).ok());
  all.resize(2);
  for (Entry& e : Range(3, 5, 60, kEntryBytes)) all.push_back(e);
  CHECK(log.store().LastIndex() == 4);
  CHECK(MustEntries(log.store(), 1, 5) == all);
  log.Reopen();
  CHECK(log.store().LastIndex() == 4);
  CHECK(MustEntries(log.store(), 1, 5) == all);
}

TEST_CASE("RaftLogStore: compaction", "[raftlog]") {
  // Proves compacted entries report the compacted error the core expects,
  // the compaction point keeps its term, and both survive a restart.
  TestLog log;
  std::vector<Entry> ents = Range(1, 4, 1);
  for (Entry& e : Range(4, 11, 2)) ents.push_back(e);
  REQUIRE(log.store().Persist(HardState{2, 1, 8}, ents, false).ok());
  const ConfState cs{{1, 2, 3}, {4}};
  REQUIRE(log.store().Compact(4, cs).ok());
  auto check = [&](RaftLogStore& s) {
    CHECK(s.FirstIndex() == 5);
    CHECK(s.LastIndex() == 10);
    CHECK(s.EntryCount() == 6);
    CHECK(raft::IsCompacted(s.Entries(4, 6, kNoLimit).status()));
    CHECK(raft::IsCompacted(s.Entries(1, 6, kNoLimit).status()));
    CHECK(raft::IsCompacted(s.Term(3).status()));
    CHECK(MustTerm(s, 4) == 2);  // the snapshot's term
    CHECK(MustEntries(s, 5, 11) == std::vector<Entry>(ents.begin() + 4, ents.end()));
    auto snap = s.GetSnapshot();
    REQUIRE(snap.ok());
    CHECK(snap->metadata.index == 4);
    CHECK(snap->metadata.term == 2);
    CHECK(snap->metadata.conf_state == cs);
    CHECK(snap->data.empty());
  };
  check(log.store());
  log.Reopen();
  check(log.store());
  HardState hs;
  ConfState got_cs;
  REQUIRE(log.store().InitialState(&hs, &got_cs).ok());
  CHECK(got_cs == cs);
  CHECK(hs == HardState{2, 1, 8});

  // Bounds: below the snapshot point or beyond the last index.
  CHECK(log.store().Compact(3, cs).code() == Code::kInvalidArgument);
  CHECK(log.store().Compact(11, cs).code() == Code::kInvalidArgument);
  // Compacting everything leaves an empty log after the point.
  REQUIRE(log.store().Compact(10, ConfState{{1}, {}}).ok());
  CHECK(log.store().FirstIndex() == 11);
  CHECK(log.store().LastIndex() == 10);
  CHECK(MustTerm(log.store(), 10) == 2);
  CHECK(raft::IsCompacted(log.store().Entries(11, 11, kNoLimit).status()));
  log.Reopen();
  CHECK(log.store().FirstIndex() == 11);
  CHECK(log.store().LastIndex() == 10);
  REQUIRE(log.store().Persist(std::nullopt, Range(11, 13, 3), false).ok());
  CHECK(MustEntries(log.store(), 11, 13) == Range(11, 13, 3));
}

TEST_CASE("RaftLogStore: installing a snapshot drops every entry", "[raftlog]") {
  // Proves a snapshot from the leader restarts the log after its index,
  // raises the commit index to it, and refuses to go backwards.
  TestLog log;
  REQUIRE(log.store().Persist(HardState{3, 1, 2}, Range(1, 8, 3), false).ok());
  raft::SnapshotMetadata meta;
  meta.index = 5;  // inside the current log: the suffix 6..7 goes too
  meta.term = 4;
  meta.conf_state = ConfState{{1, 2}, {}};
  REQUIRE(log.store().ApplySnapshot(meta, true).ok());
  auto check = [&](RaftLogStore& s) {
    CHECK(s.FirstIndex() == 6);
    CHECK(s.LastIndex() == 5);
    CHECK(s.EntryCount() == 0);
    CHECK(MustTerm(s, 5) == 4);
    CHECK(raft::IsCompacted(s.Term(4).status()));
    CHECK(raft::IsCompacted(s.Entries(6, 6, kNoLimit).status()));
    CHECK(s.hard_state() == HardState{3, 1, 5});
    CHECK(s.snapshot_metadata() == meta);
  };
  check(log.store());
  log.Reopen();
  check(log.store());
  CHECK(log.store().ApplySnapshot(meta, true).code() == Code::kFailedPrecondition);
  meta.index = 4;
  CHECK(log.store().ApplySnapshot(meta, true).code() == Code::kFailedPrecondition);

  // A snapshot beyond the log, then appends continue after it.
  meta.index = 100;
  meta.term = 7;
  REQUIRE(log.store().ApplySnapshot(meta, false).ok());
  REQUIRE(log.store().Persist(std::nullopt, Range(101, 103, 7), false).ok());
  log.Reopen();
  CHECK(log.store().FirstIndex() == 101);
  CHECK(log.store().LastIndex() == 102);
  CHECK(MustEntries(log.store(), 101, 103) == Range(101, 103, 7));
  CHECK(log.store().hard_state().commit == 100);
}

TEST_CASE("RaftLogStore: corrupt records are reported, not crashed on", "[raftlog]") {
  // Proves bad bytes on disk surface as Corruption from Open, Entries or
  // Term rather than an abort or a wrong answer.
  TestLog log;
  REQUIRE(log.store().Persist(HardState{1, 1, 1}, Range(1, 6, 1), true).ok());

  SECTION("a short hard state") {
    log.RawPut("m/hard", "garbage");
    CHECK(log.ReopenExpectingFailure().code() == Code::kCorruption);
  }
  SECTION("a snapshot record with a huge voter count") {
    std::string snap;
    PutFixed64(snap, 0);
    PutFixed64(snap, 0);
    PutFixed32(snap, 0xffffffff);
    log.RawPut("m/snap", snap);
    CHECK(log.ReopenExpectingFailure().code() == Code::kCorruption);
  }
  SECTION("a snapshot record with trailing bytes") {
    std::string snap;
    PutFixed64(snap, 0);
    PutFixed64(snap, 0);
    PutFixed32(snap, 0);
    PutFixed32(snap, 0);
    snap += "x";
    log.RawPut("m/snap", snap);
    CHECK(log.ReopenExpectingFailure().code() == Code::kCorruption);
  }
  SECTION("a malformed entry key") {
    log.RawPut("e/short", "x");
    CHECK(log.ReopenExpectingFailure().code() == Code::kCorruption);
  }
  SECTION("entries that do not follow the snapshot point") {
    log.RawDelete(EntryKey(1));
    CHECK(log.ReopenExpectingFailure().code() == Code::kCorruption);
  }
  SECTION("a truncated entry value") {
    log.RawPut(EntryKey(3), "abc");
    log.Reopen();
    CHECK(log.store().Entries(1, 6, kNoLimit).status().code() == Code::kCorruption);
    CHECK(log.store().Term(3).status().code() == Code::kCorruption);
    CHECK(MustTerm(log.store(), 2) == 1);
  }
  SECTION("an entry of unknown type") {
    std::string value;
    PutFixed64(value, 1);
    value.push_back(static_cast<char>(7));
    log.RawPut(EntryKey(4), value);
    log.Reopen();
    CHECK(log.store().Entries(2, 6, kNoLimit).status().code() == Code::kCorruption);
  }
  SECTION("an entry missing in the middle") {
    log.RawDelete(EntryKey(3));
    log.Reopen();
    CHECK(log.store().Entries(1, 6, kNoLimit).status().code() == Code::kCorruption);
    CHECK(log.store().Entries(2, 4, kNoLimit).status().code() == Code::kCorruption);
    // A limit that ends the read before the end must not hide the hole.
    const uint64_t three = 3 * raft::EntrySizeBytes(Range(1, 2, 1)[0]);
    CHECK(log.store().Entries(1, 6, three).status().code() == Code::kCorruption);
    CHECK(log.store().Term(3).status().code() == Code::kCorruption);
  }
}

TEST_CASE("RaftLogStore: differential against MemoryStorage", "[raftlog]") {
  // Proves, over a seeded random run of appends (with conflicts),
  // compactions, snapshot installs and restarts, that the store answers
  // every read exactly as the reference MemoryStorage does.
  constexpr uint64_t kSeed = 0xb01a4c;
  constexpr int kSteps = 400;
  raft::Rng rng(kSeed);
  TestLog log;
  raft::MemoryStorage mem;
  uint64_t term = 1;

  for (int step = 0; step < kSteps; ++step) {
    INFO("seed " << kSeed << " step " << step);
    RaftLogStore& s = log.store();
    const uint64_t op = rng.Uniform(100);
    if (op < 60) {
      // An append starting anywhere from the first index to right after the
      // last, with a term that never goes backwards.
      const uint64_t first = s.FirstIndex() + rng.Uniform(s.LastIndex() + 2 - s.FirstIndex());
      if (rng.Uniform(3) == 0) ++term;
      std::vector<Entry> ents = Range(first, first + 1 + rng.Uniform(6), term, rng.Uniform(40));
      std::optional<HardState> hs;
      if (rng.Uniform(2) == 0) hs = HardState{term, rng.Uniform(4), rng.Uniform(first)};
      REQUIRE(s.Persist(hs, ents, rng.Uniform(10) == 0).ok());
      REQUIRE(mem.Append(ents).ok());
      if (hs) mem.SetHardState(*hs);
    } else if (op < 80) {
      if (s.LastIndex() > s.snapshot_metadata().index) {
        const uint64_t index = s.FirstIndex() + rng.Uniform(s.LastIndex() + 1 - s.FirstIndex());
        const ConfState cs{{1, 2, rng.Uniform(5) + 3}, {}};
        REQUIRE(s.Compact(index, cs).ok());
        REQUIRE(mem.CreateSnapshot(index, cs, "").ok());
        REQUIRE(mem.Compact(index).ok());
      }
    } else if (op < 85) {
      raft::Snapshot snap;
      snap.metadata.index = s.snapshot_metadata().index + 1 + rng.Uniform(s.LastIndex() + 4 - s.snapshot_metadata().index);
      snap.metadata.term = ++term;
      snap.metadata.conf_state = ConfState{{1}, {2}};
      REQUIRE(s.ApplySnapshot(snap.metadata, rng.Uniform(2) == 0).ok());
      REQUIRE(mem.ApplySnapshot(snap).ok());
      HardState hs = mem.hard_state();
      hs.commit = std::max(hs.commit, snap.metadata.index);
      mem.SetHardState(hs);
    } else {
      log.Reopen();
    }

    RaftLogStore& r = log.store();
    REQUIRE(r.FirstIndex() == mem.FirstIndex());
    REQUIRE(r.LastIndex() == mem.LastIndex());
    CHECK(r.hard_state() == mem.hard_state());
    CHECK(r.snapshot_metadata() == mem.GetSnapshot()->metadata);
    for (uint64_t i = r.FirstIndex() - 1; i <= r.LastIndex(); ++i) REQUIRE(MustTerm(r, i) == MustTerm(mem, i));
    if (r.FirstIndex() > 1) {
      CHECK(raft::IsCompacted(r.Term(r.FirstIndex() - 2).status()));
      CHECK(raft::IsCompacted(r.Entries(r.FirstIndex() - 1, r.FirstIndex(), kNoLimit).status()));
    }
    if (r.LastIndex() >= r.FirstIndex()) {
      for (int k = 0; k < 4; ++k) {
        const uint64_t lo = r.FirstIndex() + rng.Uniform(r.LastIndex() + 1 - r.FirstIndex());
        const uint64_t hi = lo + rng.Uniform(r.LastIndex() + 2 - lo);
        const uint64_t max = rng.Uniform(3) == 0 ? kNoLimit : rng.Uniform(200);
        REQUIRE(MustEntries(r, lo, hi, max) == MustEntries(mem, lo, hi, max));
      }
    } else {
      CHECK(raft::IsCompacted(r.Entries(r.FirstIndex(), r.FirstIndex(), kNoLimit).status()));
    }
  }
}

}  // namespace
}  // namespace bulwark::replication
