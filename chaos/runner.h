#pragma once
// A chaos run against one region, or an account of several: start a
// LocalCluster (LocalAccount) of real bulwarkd processes (each node on its
// own loopback address), run a workload while a nemesis injects faults,
// heal, let the cluster recover, wait for every replica (of every region) to
// converge, check the recorded history, and report.
//
// Files written to `out_dir`: history.jsonl (the workload's history),
// faults.jsonl (one line per fault: kind, what, start and end ns on the
// history's clock), report.txt (what is printed), timeline.gp and
// timeline.svg (gnuplot), cluster/ (the nodes' data and logs; removed after
// a clean run unless keep_cluster).
//
// Exit codes (RunChaos's result): 0 every verdict valid, 1 a violation,
// 2 no violation but some check undecided, 3 the harness failed (the
// cluster did not start, nft failed, a node did not restart, ...) or the run
// was aborted by a signal.
//
// Ownership: plain options in, an exit code out; everything it starts it
// stops, and the nftables table is removed on every exit but SIGKILL (see
// nftables.h). Thread safety: one run per process at a time.

#include <atomic>
#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "chaos/check/check.h"
#include "chaos/nemesis.h"
#include "common/consistency.h"

namespace bulwark::chaos {

// How long healed replicas get to agree on their applied index.
constexpr std::chrono::seconds kConvergeTimeout{60};
// Reads of each key on each node when comparing their state, 200 ms apart:
// a node that answered its status a moment ago may still drop one call.
constexpr int kConvergeReadAttempts = 3;
// How long the cluster gets to start and elect a leader, and the workload to
// create its container.
constexpr std::chrono::seconds kSetupTimeout{60};

// The control group's grace period and lease in a run with --witness:
// short, so a cutoff fails over within a fault's hold.
constexpr int kChaosGraceMs = 5000;
constexpr int kChaosLeaseMs = 2500;

struct RunOptions {
  int nodes = 4;    // per region
  int regions = 1;  // 2..3: an account on 127.0.R.x (LocalAccount), ip ignored
  // Regions only: a control group (node 1 of each region votes) with a
  // witness on 127.0.9.1, grace kChaosGraceMs: automatic failover, which the
  // cutoff nemesis provokes.
  bool witness = false;
  std::vector<FaultKind> nemesis;
  check::Workload workload = check::Workload::kRegister;
  ConsistencyLevel consistency = ConsistencyLevel::kStrong;
  std::chrono::milliseconds duration{60'000};  // faults are injected for this long
  std::chrono::milliseconds recovery{5'000};   // workload continues after the last heal
  uint64_t seed = 1;
  std::string out_dir;
  std::string ip = "127.0.50.1";  // node i gets 127.0.50.i
  int port = 17000;               // client port; the peer port is port + 1
  int clients = 5;
  int keys = 8;
  std::string bin_dir;  // where bulwarkd lives
  bool keep_cluster = false;
  check::CheckOptions check;
  std::string rerun_command;  // printed on failure
};

// `abort` (set by a signal handler) ends the run early, cleanly.
int RunChaos(const RunOptions& options, const std::atomic<bool>& abort, std::ostream& out);

// Writes `dir`/timeline.gp and renders `dir`/timeline.svg with gnuplot:
// operations by session over time, coloured by outcome, faults shaded.
Status WriteTimeline(const std::string& dir, const std::vector<check::Operation>& ops,
                     const std::vector<FaultRecord>& faults);

}  // namespace bulwark::chaos
