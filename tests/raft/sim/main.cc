// raft-sim: runs the deterministic Raft simulation over many seeds.
//
//   raft-sim --seed 12345 --nodes 4          replay one seed (add --verbose)
//   raft-sim --seeds 1000                    seeds 1..1000, sizes 3,4,5 in turn
//   raft-sim --duration-s 3600               as many seeds as fit in an hour
//
// Exit status: 0 if every run passed, 1 on the first violation (after
// printing the one-line replay command), 2 on bad arguments.

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/raft/sim/simulator.h"

namespace {

struct Args {
  uint64_t seed = 0;  // 0: run a batch
  uint64_t first_seed = 1;
  uint64_t seeds = 0;
  int nodes = 0;  // 0: cycle through 3, 4, 5
  int steps = 1500;
  double duration_s = 0;
  bool verbose = false;
  bool broken_commit_old_term = false;
  bool broken_skip_vote_log_check = false;
  bool expect_violation = false;
};

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    auto next = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", name);
        return nullptr;
      }
      return argv[++i];
    };
    const char* v = nullptr;
    if (f == "--seed" && (v = next("--seed"))) {
      a->seed = std::strtoull(v, nullptr, 10);
    } else if (f == "--first-seed" && (v = next("--first-seed"))) {
      a->first_seed = std::strtoull(v, nullptr, 10);
    } else if (f == "--seeds" && (v = next("--seeds"))) {
      a->seeds = std::strtoull(v, nullptr, 10);
    } else if (f == "--nodes" && (v = next("--nodes"))) {
      a->nodes = std::atoi(v);
    } else if (f == "--steps" && (v = next("--steps"))) {
      a->steps = std::atoi(v);
    } else if (f == "--duration-s" && (v = next("--duration-s"))) {
      a->duration_s = std::atof(v);
    } else if (f == "--verbose") {
      a->verbose = true;
    } else if (f == "--broken-commit-old-term") {
      a->broken_commit_old_term = true;
    } else if (f == "--broken-skip-vote-log-check") {
      a->broken_skip_vote_log_check = true;
    } else if (f == "--expect-violation") {
      a->expect_violation = true;
    } else {
      std::fprintf(stderr, "unknown or incomplete flag: %s\n", f.c_str());
      return false;
    }
  }
  if (a->nodes != 0 && (a->nodes < 1 || a->nodes > 9)) {
    std::fprintf(stderr, "--nodes must be in [1, 9]\n");
    return false;
  }
  if (a->seed == 0 && a->seeds == 0 && a->duration_s <= 0) a->seeds = 300;
  return true;
}

// The replay line of the seed in progress, printed if the core asserts (an
// invariant broke inside Raft itself) so that even an abort is replayable.
char g_replay_line[512];

extern "C" void OnAbort(int) {
  const char prefix[] = "\nABORT (assertion in the core); replay: ";
  (void)!write(STDOUT_FILENO, prefix, sizeof(prefix) - 1);
  (void)!write(STDOUT_FILENO, g_replay_line, std::strlen(g_replay_line));
  (void)!write(STDOUT_FILENO, "\n", 1);
  std::signal(SIGABRT, SIG_DFL);
}

bulwark::raft::sim::SimOptions OptionsFor(const Args& a, uint64_t seed, uint64_t n) {
  bulwark::raft::sim::SimOptions o;
  o.seed = seed;
  o.nodes = a.nodes != 0 ? a.nodes : static_cast<int>(3 + n % 3);
  o.steps = a.steps;
  o.verbose = a.verbose;
  o.broken_commit_old_term = a.broken_commit_old_term;
  o.broken_skip_vote_log_check = a.broken_skip_vote_log_check;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) return 2;
  std::signal(SIGABRT, OnAbort);
  using Clock = std::chrono::steady_clock;
  Clock::time_point start = Clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  uint64_t runs = 0;
  uint64_t by_size[10] = {};
  double last_progress_s = 0;
  // Read completion by read mode: [0] safe, [1] lease. A lease cluster that
  // answers far fewer of its reads has reads stuck somewhere.
  uint64_t reads_accepted[2] = {};
  uint64_t reads_completed[2] = {};
  for (uint64_t n = 0;; ++n) {
    if (a.seed != 0 && n > 0) break;
    if (a.seed == 0 && a.seeds != 0 && n >= a.seeds) break;
    if (a.seed == 0 && a.seeds == 0 && elapsed_s() >= a.duration_s) break;
    uint64_t seed = a.seed != 0 ? a.seed : a.first_seed + n;
    bulwark::raft::sim::SimOptions o = OptionsFor(a, seed, n);
    std::snprintf(g_replay_line, sizeof(g_replay_line), "%s",
                  bulwark::raft::sim::ReplayCommand(o).c_str());
    bulwark::raft::sim::SimResult r = bulwark::raft::sim::RunSimulation(o);
    ++runs;
    ++by_size[o.nodes];
    reads_accepted[r.stats.lease_reads ? 1 : 0] += r.stats.reads_accepted;
    reads_completed[r.stats.lease_reads ? 1 : 0] += r.stats.reads_completed;
    if (!r.ok) {
      std::printf("VIOLATION seed=%llu nodes=%d: %s\n", (unsigned long long)seed, o.nodes,
                  r.violation.c_str());
      std::printf("replay: %s\n", bulwark::raft::sim::ReplayCommand(o).c_str());
      std::fflush(stdout);
      return a.expect_violation ? 0 : 1;
    }
    if (a.seed != 0 || a.verbose) {
      const auto& s = r.stats;
      std::printf("seed %llu ok: steps=%llu leaders=%llu max_term=%llu writes_acked=%llu "
                  "reads=%llu/%llu crashes=%llu partitions=%llu snapshots=%llu applied=%llu\n",
                  (unsigned long long)seed, (unsigned long long)s.steps,
                  (unsigned long long)s.leaders_elected, (unsigned long long)s.max_term,
                  (unsigned long long)s.writes_acked, (unsigned long long)s.reads_completed,
                  (unsigned long long)s.reads_accepted,
                  (unsigned long long)s.crashes, (unsigned long long)s.partitions,
                  (unsigned long long)s.snapshots_sent, (unsigned long long)s.final_applied_index);
    }
    if (elapsed_s() - last_progress_s >= 10) {
      last_progress_s = elapsed_s();
      std::printf("progress: %llu seeds in %.0f s (3 nodes: %llu, 4: %llu, 5: %llu)\n",
                  (unsigned long long)runs, last_progress_s, (unsigned long long)by_size[3],
                  (unsigned long long)by_size[4], (unsigned long long)by_size[5]);
      std::fflush(stdout);
    }
  }
  std::printf("done: %llu seeds passed in %.1f s (3 nodes: %llu, 4: %llu, 5: %llu)\n",
              (unsigned long long)runs, elapsed_s(), (unsigned long long)by_size[3],
              (unsigned long long)by_size[4], (unsigned long long)by_size[5]);
  for (int lease = 0; lease < 2; ++lease) {
    double ratio = reads_accepted[lease] == 0
                       ? 0.0
                       : static_cast<double>(reads_completed[lease]) / static_cast<double>(reads_accepted[lease]);
    std::printf("reads (%s): %llu accepted, %llu completed (%.1f%%)\n", lease ? "lease" : "safe",
                (unsigned long long)reads_accepted[lease], (unsigned long long)reads_completed[lease],
                100.0 * ratio);
  }
  if (a.expect_violation) {
    std::printf("expected a violation but found none\n");
    return 1;
  }
  return 0;
}
