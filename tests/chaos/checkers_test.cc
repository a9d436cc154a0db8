// The checkers must be shown to fail: every known-bad history under
// tests/testdata/chaos is caught by the checker for its guarantee, naming
// the operations involved, and every known-good one passes at every level it
// should. Synthetic histories, linearizable by construction, pass; the same
// history with one read made stale does not.
#include <random>

#include <catch2/catch.hpp>

#include "chaos/check/check.h"
#include "chaos/check/synth.h"

using namespace bulwark;
using namespace bulwark::chaos::check;

namespace {

constexpr ConsistencyLevel kAllLevels[] = {ConsistencyLevel::kStrong, ConsistencyLevel::kBoundedStaleness,
                                           ConsistencyLevel::kSession, ConsistencyLevel::kConsistentPrefix,
                                           ConsistencyLevel::kEventual};

std::vector<Operation> Load(const std::string& name) {
  auto events = ParseHistoryFile(std::string(BULWARK_SOURCE_DIR) + "/tests/testdata/chaos/" + name);
  INFO(events.status().ToString());
  REQUIRE(events.ok());
  auto ops = PairOperations(*events);
  INFO(ops.status().ToString());
  REQUIRE(ops.ok());
  return std::move(ops).value();
}

CheckOptions TestOptions() {
  CheckOptions o;
  o.staleness = {2, 1'000'000'000};  // K=2 writes, T=1 s (the histories' times are far below 1 s)
  return o;
}

std::vector<Verdict> Check(const std::vector<Operation>& ops, Workload w, ConsistencyLevel level) {
  return CheckHistory(ops, w, level, TestOptions());
}

const Verdict& Find(const std::vector<Verdict>& verdicts, const std::string& checker) {
  for (const Verdict& v : verdicts) {
    if (v.checker == checker) return v;
  }
  FAIL("no verdict from " << checker);
  return verdicts.front();
}

std::string Report(const std::vector<Verdict>& verdicts, const std::vector<Operation>& ops) {
  std::string out;
  for (const Verdict& v : verdicts) out += FormatVerdict(v, ops);
  return out;
}

// True if some finding of `v` names every operation in `ids`.
bool Names(const Verdict& v, std::vector<size_t> ids) {
  for (const Finding& f : v.findings) {
    bool all = true;
    for (size_t id : ids) all = all && std::find(f.ops.begin(), f.ops.end(), id) != f.ops.end();
    if (all) return true;
  }
  return false;
}

// The operation invoked on `line` of its file.
size_t OpAt(const std::vector<Operation>& ops, size_t line) {
  for (const Operation& op : ops) {
    if (op.invoke_line == line) return op.id;
  }
  FAIL("no operation is invoked on line " << line);
  return 0;
}

void RequireValidAt(const std::string& file, Workload w, std::initializer_list<ConsistencyLevel> levels) {
  const auto ops = Load(file);
  for (ConsistencyLevel level : levels) {
    const auto verdicts = Check(ops, w, level);
    INFO(file << " at " << ConsistencyName(level) << ":\n" << Report(verdicts, ops));
    CHECK(Worst(verdicts) == Outcome::kValid);
  }
}

}  // namespace

TEST_CASE("Strong: a stale read is not linearizable, and the read and the write it missed are named") {
  const auto ops = Load("register_stale_read.jsonl");
  const auto verdicts = Check(ops, Workload::kRegister, ConsistencyLevel::kStrong);
  const Verdict& lin = Find(verdicts, "linearizable");
  INFO(Report(verdicts, ops));
  REQUIRE(lin.outcome == Outcome::kInvalid);
  // Only key x is at fault; key y is linearizable on its own.
  REQUIRE(lin.findings.size() == 1);
  CHECK(lin.findings[0].what.find("key x") != std::string::npos);
  const size_t stale_read = OpAt(ops, 9);
  const size_t second_write = OpAt(ops, 7);
  CHECK(lin.findings[0].ops.front() == stale_read);
  CHECK(Names(lin, {stale_read, second_write}));
  const std::string text = FormatVerdict(lin, ops);
  CHECK(text.find("read x -> ok 1 [line 9-10]") != std::string::npos);
  // The same reads made at Session are fine: the reader never wrote. (As
  // recorded, at Strong, the last read of x would be taken for the final
  // read, and lost-writes would rightly object.)
  for (ConsistencyLevel level :
       {ConsistencyLevel::kSession, ConsistencyLevel::kConsistentPrefix, ConsistencyLevel::kEventual}) {
    auto weak = ops;
    for (Operation& op : weak) op.consistency = ConsistencyName(level);
    const auto weak_verdicts = Check(weak, Workload::kRegister, level);
    INFO(ConsistencyName(level) << "\n" << Report(weak_verdicts, weak));
    CHECK(Worst(weak_verdicts) == Outcome::kValid);
  }
  CHECK(Find(verdicts, "lost-writes").outcome == Outcome::kInvalid);
}

TEST_CASE("Strong: overlapping writes, a cas, an info write that lands late, and a failed cas are linearizable") {
  RequireValidAt("register_good.jsonl", Workload::kRegister,
                 {kAllLevels[0], kAllLevels[1], kAllLevels[2], kAllLevels[3], kAllLevels[4]});
}

TEST_CASE("Strong: an info write may take effect after its invoke, never before") {
  const auto ops = Load("register_info_too_early.jsonl");
  const auto verdicts = Check(ops, Workload::kRegister, ConsistencyLevel::kStrong);
  INFO(Report(verdicts, ops));
  CHECK(Find(verdicts, "linearizable").outcome == Outcome::kInvalid);
  CHECK(Names(Find(verdicts, "linearizable"), {OpAt(ops, 3)}));
}

TEST_CASE("Strong: a cas that succeeds against a value already overwritten is caught") {
  const auto ops = Load("register_cas_bad.jsonl");
  const auto verdicts = Check(ops, Workload::kRegister, ConsistencyLevel::kStrong);
  INFO(Report(verdicts, ops));
  REQUIRE(Find(verdicts, "linearizable").outcome == Outcome::kInvalid);
  CHECK(Find(verdicts, "linearizable").findings[0].ops.front() == OpAt(ops, 5));
}

TEST_CASE("Session: a read that misses the session's own write is a read-your-writes violation") {
  const auto ops = Load("register_ryw_violation.jsonl");
  const auto verdicts = Check(ops, Workload::kRegister, ConsistencyLevel::kSession);
  INFO(Report(verdicts, ops));
  const Verdict& ryw = Find(verdicts, "read-your-writes");
  REQUIRE(ryw.outcome == Outcome::kInvalid);
  CHECK(Names(ryw, {OpAt(ops, 5), OpAt(ops, 3)}));  // the read, and session 0's own write
  CHECK(Find(verdicts, "monotonic-reads").outcome == Outcome::kValid);
  RequireValidAt("register_ryw_violation.jsonl", Workload::kRegister,
                 {ConsistencyLevel::kConsistentPrefix, ConsistencyLevel::kEventual});
}

TEST_CASE("Session: reading an older value than the session read before is a monotonic-reads violation") {
  const auto ops = Load("register_monotonic_reads_violation.jsonl");
  const auto verdicts = Check(ops, Workload::kRegister, ConsistencyLevel::kSession);
  INFO(Report(verdicts, ops));
  const Verdict& mr = Find(verdicts, "monotonic-reads");
  REQUIRE(mr.outcome == Outcome::kInvalid);
  CHECK(Names(mr, {OpAt(ops, 7), OpAt(ops, 5)}));
  CHECK(Find(verdicts, "read-your-writes").outcome == Outcome::kValid);
}

TEST_CASE("Session: a session's later write ordered before its earlier one is a monotonic-writes violation") {
  const auto ops = Load("register_monotonic_writes_violation.jsonl");
  const auto verdicts = Check(ops, Workload::kRegister, ConsistencyLevel::kSession);
  INFO(Report(verdicts, ops));
  const Verdict& mw = Find(verdicts, "monotonic-writes");
  REQUIRE(mw.outcome == Outcome::kInvalid);
  CHECK(Names(mw, {0, 1}));
}

TEST_CASE("Session: monotonic reads compare a read with every earlier read, not only the last one") {
  // Between the reads of 5 and of 3 the session read 7, a write of unknown
  // outcome concurrent with both: 3 is older than 5 (GLSN 30 < 50) all the same.
  const auto ops = Load("register_monotonic_reads_nonadjacent.jsonl");
  const auto verdicts = Check(ops, Workload::kRegister, ConsistencyLevel::kSession);
  INFO(Report(verdicts, ops));
  const Verdict& mr = Find(verdicts, "monotonic-reads");
  REQUIRE(mr.outcome == Outcome::kInvalid);
  REQUIRE(mr.findings.size() == 1);
  CHECK(Names(mr, {OpAt(ops, 10), OpAt(ops, 6), OpAt(ops, 4), OpAt(ops, 1)}));  // the reads of 3 and 5, their writes
}

TEST_CASE("Session: a write of unknown outcome that a read showed is ordered from that read on") {
  // Another session read 7 before this session wrote 9: 7 is older than 9,
  // so this session reading 7 after its write misses its own write.
  const auto ops = Load("register_ryw_info_write.jsonl");
  const auto verdicts = Check(ops, Workload::kRegister, ConsistencyLevel::kSession);
  INFO(Report(verdicts, ops));
  const Verdict& ryw = Find(verdicts, "read-your-writes");
  REQUIRE(ryw.outcome == Outcome::kInvalid);
  CHECK(Names(ryw, {OpAt(ops, 6), OpAt(ops, 4), OpAt(ops, 1)}));  // the read, the own write, the info write
}

TEST_CASE("Session: another session's write may be missed under Session but not under Strong") {
  RequireValidAt("register_session_good.jsonl", Workload::kRegister,
                 {ConsistencyLevel::kSession, ConsistencyLevel::kConsistentPrefix, ConsistencyLevel::kEventual});
  const auto ops = Load("register_session_good.jsonl");
  CHECK(Find(Check(ops, Workload::kRegister, ConsistencyLevel::kStrong), "linearizable").outcome == Outcome::kInvalid);
}

TEST_CASE("BoundedStaleness: a read more than K writes behind is caught, one within K passes") {
  const auto bad = Load("register_bounded_violation.jsonl");
  const auto verdicts = Check(bad, Workload::kRegister, ConsistencyLevel::kBoundedStaleness);
  INFO(Report(verdicts, bad));
  const Verdict& bs = Find(verdicts, "bounded-staleness");
  REQUIRE(bs.outcome == Outcome::kInvalid);
  CHECK(bs.findings[0].what.find("misses 4 acknowledged writes") != std::string::npos);
  RequireValidAt("register_bounded_good.jsonl", Workload::kRegister, {ConsistencyLevel::kBoundedStaleness});
  // Within K, but behind: not linearizable.
  CHECK(Find(Check(Load("register_bounded_good.jsonl"), Workload::kRegister, ConsistencyLevel::kStrong), "linearizable")
            .outcome == Outcome::kInvalid);
}

TEST_CASE("BoundedStaleness: a read behind by more than T is caught even within K") {
  const auto ops = Load("register_bounded_good.jsonl");  // misses 2 writes, the oldest 550 ns before the read
  CheckOptions o;
  o.staleness = {10, 100};  // T = 100 ns
  const auto verdicts = CheckHistory(ops, Workload::kRegister, ConsistencyLevel::kBoundedStaleness, o);
  INFO(Report(verdicts, ops));
  CHECK(Find(verdicts, "bounded-staleness").outcome == Outcome::kInvalid);
}

// `file`, a set history, loses exactly one write at every level: the
// finding names the operation invoked on `line` first.
void RequireOneLostSetWrite(const std::string& file, size_t line, const std::string& summary) {
  const auto ops = Load(file);
  for (ConsistencyLevel level : kAllLevels) {
    const auto verdicts = Check(ops, Workload::kSet, level);
    INFO(file << " at " << ConsistencyName(level) << "\n" << Report(verdicts, ops));
    const Verdict& lost = Find(verdicts, "lost-writes");
    REQUIRE(lost.outcome == Outcome::kInvalid);
    REQUIRE(lost.findings.size() == 1);  // the RPO: one write
    CHECK(lost.findings[0].ops.front() == OpAt(ops, line));
    CHECK(lost.summary == summary);
  }
}

TEST_CASE("Set: an acknowledged add missing from the final read is lost, at every level") {
  RequireOneLostSetWrite("set_lost_write.jsonl", 3, "1 of 3 acknowledged writes lost");
}

TEST_CASE("Set: an add of unknown outcome that a read showed must not vanish, at every level") {
  RequireOneLostSetWrite("set_lost_info_add.jsonl", 1, "1 of 2 acknowledged writes lost");
}

TEST_CASE("Register: a final read older than an acknowledged write is a lost write, at every level") {
  const auto ops = Load("register_lost_write.jsonl");
  for (ConsistencyLevel level : kAllLevels) {
    const auto verdicts = Check(ops, Workload::kRegister, level);
    INFO(ConsistencyName(level) << "\n" << Report(verdicts, ops));
    const Verdict& lost = Find(verdicts, "lost-writes");
    REQUIRE(lost.outcome == Outcome::kInvalid);
    REQUIRE(lost.findings.size() == 1);
    CHECK(Names(lost, {OpAt(ops, 7), OpAt(ops, 3)}));  // the final read of 3, the lost write of 5
  }
  // Without the final read, a register history says so instead of passing as checked.
  std::vector<Operation> without(ops.begin(), ops.begin() + OpAt(ops, 7));
  const Verdict lost = CheckLostWrites(without, Workload::kRegister);
  CHECK(lost.outcome == Outcome::kValid);
  CHECK(lost.summary.rfind("not checked", 0) == 0);
}

TEST_CASE("A read of a value written only after it returned is caught at every level") {
  const auto ops = Load("register_read_from_future.jsonl");
  for (ConsistencyLevel level : kAllLevels) {
    const auto verdicts = Check(ops, Workload::kRegister, level);
    INFO(ConsistencyName(level) << "\n" << Report(verdicts, ops));
    const Verdict& values = Find(verdicts, "values-read");
    REQUIRE(values.outcome == Outcome::kInvalid);
    CHECK(Names(values, {OpAt(ops, 1), OpAt(ops, 3)}));
  }
}

TEST_CASE("ConsistentPrefix: a read showing a write without one ordered before it is not a prefix") {
  const auto ops = Load("set_non_prefix.jsonl");
  const auto verdicts = Check(ops, Workload::kSet, ConsistencyLevel::kConsistentPrefix);
  INFO(Report(verdicts, ops));
  const Verdict& prefix = Find(verdicts, "consistent-prefix");
  REQUIRE(prefix.outcome == Outcome::kInvalid);
  CHECK(Names(prefix, {OpAt(ops, 7), OpAt(ops, 5), OpAt(ops, 3)}));  // the read, add 3 it shows, add 2 it misses
  CHECK(Find(verdicts, "lost-writes").outcome == Outcome::kValid);   // the final read has all three
  RequireValidAt("set_non_prefix.jsonl", Workload::kSet, {ConsistencyLevel::kEventual});
}

TEST_CASE("ConsistentPrefix: a list read in the wrong order is caught, prefixes pass") {
  const auto ops = Load("append_out_of_order.jsonl");
  const auto verdicts = Check(ops, Workload::kAppend, ConsistencyLevel::kConsistentPrefix);
  INFO(Report(verdicts, ops));
  CHECK(Find(verdicts, "consistent-prefix").outcome == Outcome::kInvalid);
  RequireValidAt("append_good.jsonl", Workload::kAppend,
                 {kAllLevels[0], kAllLevels[1], kAllLevels[2], kAllLevels[3], kAllLevels[4]});
}

TEST_CASE("Set: concurrent reads and an info add that never happened pass at every level") {
  RequireValidAt("set_good.jsonl", Workload::kSet,
                 {kAllLevels[0], kAllLevels[1], kAllLevels[2], kAllLevels[3], kAllLevels[4]});
}

TEST_CASE("A read of a value no one wrote is caught at every level") {
  auto ops = Load("register_good.jsonl");
  ops[OpAt(ops, 11)].output = 99;  // p5's read of 3 now returns 99
  for (ConsistencyLevel level : kAllLevels) {
    const auto verdicts = Check(ops, Workload::kRegister, level);
    INFO(ConsistencyName(level) << "\n" << Report(verdicts, ops));
    CHECK(Find(verdicts, "values-read").outcome == Outcome::kInvalid);
  }
}

TEST_CASE("Synthetic linearizable histories pass, the same with one read made stale does not") {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SynthOptions o;
    o.seed = seed;
    o.operations = 400;
    o.keys = 3;
    o.processes = 6;
    o.info_per_mille = 50;
    auto ops = PairOperations(SynthesizeRegisterHistory(o));
    REQUIRE(ops.ok());
    INFO("seed " << seed);
    const Verdict good = CheckLinearizable(*ops);
    INFO(FormatVerdict(good, *ops));
    REQUIRE(good.outcome == Outcome::kValid);

    // Make one read return a value overwritten before the read began: find
    // writes a, b on the read's key with a done before b began and b done
    // before the read began.
    bool corrupted = false;
    for (Operation& read : *ops) {
      if (corrupted || read.f != "read" || read.outcome != EventType::kOk) continue;
      for (const Operation& a : *ops) {
        if (corrupted || a.f != "write" || a.key != read.key || a.outcome != EventType::kOk) continue;
        for (const Operation& b : *ops) {
          if (b.f != "write" || b.key != read.key || b.outcome != EventType::kOk) continue;
          if (a.complete_ns < b.invoke_ns && b.complete_ns < read.invoke_ns && read.output != a.input) {
            read.output = a.input;
            corrupted = true;
            break;
          }
        }
      }
    }
    REQUIRE(corrupted);
    CHECK(CheckLinearizable(*ops).outcome == Outcome::kInvalid);
  }
}

TEST_CASE("The search gives up with 'unknown: search limit hit' rather than run without bound") {
  SynthOptions o;
  o.operations = 2000;
  o.keys = 1;
  o.processes = 10;
  o.spread = 200;  // many overlapping operations: a wide search
  auto ops = PairOperations(SynthesizeRegisterHistory(o));
  REQUIRE(ops.ok());
  LinearizabilityLimits tiny;
  tiny.max_memo_bytes_per_key = 4096;
  const Verdict v = CheckLinearizable(*ops, tiny);
  INFO(FormatVerdict(v, *ops));
  CHECK(v.outcome == Outcome::kUnknown);
  CHECK(v.summary.find("unknown: search limit hit") != std::string::npos);
  LinearizabilityLimits few_steps;
  few_steps.max_steps_per_key = 100;
  CHECK(CheckLinearizable(*ops, few_steps).outcome == Outcome::kUnknown);
}

TEST_CASE("A stale read in a long single-key history with many info writes is found, not left undecided") {
  // 3000 operations on one register from 10 clients, 5% of them info: the
  // search must not explode on the pending info writes (those whose value
  // no one read are left out) and must still find the one stale read.
  SynthOptions o;
  o.seed = 99;
  o.operations = 3000;
  o.keys = 1;
  o.processes = 10;
  o.spread = 60;
  o.info_per_mille = 50;
  auto ops = PairOperations(SynthesizeRegisterHistory(o));
  REQUIRE(ops.ok());
  REQUIRE(CheckLinearizable(*ops).outcome == Outcome::kValid);
  // The first ok read after the middle now returns the very first write's value.
  const Operation* first_write = nullptr;
  for (const Operation& op : *ops) {
    if (!first_write && op.f == "write" && op.outcome == EventType::kOk) first_write = &op;
  }
  REQUIRE(first_write != nullptr);
  for (size_t i = ops->size() / 2; i < ops->size(); ++i) {
    Operation& op = (*ops)[i];
    if (op.f == "read" && op.outcome == EventType::kOk && op.output != first_write->input) {
      op.output = first_write->input;
      break;
    }
  }
  const Verdict v = CheckLinearizable(*ops);
  INFO(v.summary);
  CHECK(v.outcome == Outcome::kInvalid);
}
