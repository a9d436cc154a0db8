// bulwark-chaos: chaos runs against a local cluster and the history checkers.
//
//   bulwark-chaos check --history FILE --workload register --consistency strong
//   bulwark-chaos run --nodes 4 --nemesis kill,stop,partition,clock --workload register
//                     --consistency strong --duration 60s --seed 7 --out DIR
//   bulwark-chaos synth --ops 10000 --out FILE   (a linearizable history, for timing the checker)
//   bulwark-chaos proxy --listen H:P --target H:P [--delay 40ms --jitter 10ms --loss 0.01 ...]
//   bulwark-chaos cleanup [--out DIR]            (removes the nftables table a killed run left, stops its nodes)
//
// Exit codes: 0 valid; 1 a violation; 2 undecided (a search limit was hit);
// 3 the harness failed; 64 bad arguments or an unreadable history.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "chaos/check/check.h"
#include "chaos/check/synth.h"
#include "chaos/fault_proxy.h"
#include "chaos/local_cluster.h"
#include "chaos/nftables.h"
#include "chaos/runner.h"

using namespace bulwark;
using namespace bulwark::chaos;

namespace {

constexpr int kExitUsage = 64;

std::atomic<bool> g_abort{false};

void OnSignal(int) { g_abort = true; }

// "90s", "2m", "1500ms", "1h"; a bare number is seconds.
std::optional<std::chrono::milliseconds> ParseDuration(const std::string& text) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    return std::nullopt;
  }
  const std::string unit = text.substr(pos);
  double ms = 0;
  if (unit == "ms") {
    ms = value;
  } else if (unit.empty() || unit == "s") {
    ms = value * 1000;
  } else if (unit == "m") {
    ms = value * 60'000;
  } else if (unit == "h") {
    ms = value * 3'600'000;
  } else {
    return std::nullopt;
  }
  if (ms < 0) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

std::string SelfDir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

int Check(const std::string& path, const std::string& workload_name, const std::string& level_name,
          const check::CheckOptions& options) {
  auto workload = check::ParseWorkload(workload_name);
  auto level = ParseConsistency(level_name);
  if (!workload || !level) {
    std::cerr << "bulwark-chaos check: unknown --workload or --consistency\n";
    return kExitUsage;
  }
  auto events = check::ParseHistoryFile(path);
  if (!events.ok()) {
    std::cerr << "bulwark-chaos check: " << events.status().ToString() << "\n";
    return kExitUsage;
  }
  auto ops = check::PairOperations(*events);
  if (!ops.ok()) {
    std::cerr << "bulwark-chaos check: " << path << ": " << ops.status().ToString() << "\n";
    return kExitUsage;
  }
  const auto start = std::chrono::steady_clock::now();
  const auto verdicts = check::CheckHistory(*ops, *workload, *level, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << path << ": " << ops->size() << " operations, " << check::WorkloadName(*workload) << " at "
            << ConsistencyName(*level) << ", checked in " << seconds << " s\n";
  for (const auto& v : verdicts) std::cout << check::FormatVerdict(v, *ops);
  const check::Outcome worst = check::Worst(verdicts);
  std::cout << "result: " << check::OutcomeName(worst) << "\n";
  return worst == check::Outcome::kValid ? 0 : worst == check::Outcome::kInvalid ? 1 : 2;
}

// "127.0.0.1:80" -> {"127.0.0.1", 80}.
std::optional<std::pair<std::string, int>> HostPort(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  try {
    return std::pair<std::string, int>{text.substr(0, colon), std::stoi(text.substr(colon + 1))};
  } catch (...) {
    return std::nullopt;
  }
}

int RunProxy(const std::string& listen, const std::string& target, const std::string& delay, const std::string& jitter,
             double loss, double stall_probability, const std::string& stall, uint64_t bandwidth, uint64_t seed) {
  auto l = HostPort(listen);
  auto t = HostPort(target);
  auto d = ParseDuration(delay);
  auto j = ParseDuration(jitter);
  auto st = ParseDuration(stall);
  if (!l || !t || !d || !j || !st || loss < 0 || loss > 1 || stall_probability < 0 || stall_probability > 1) {
    std::cerr << "bulwark-chaos proxy: --listen/--target are host:port, durations like 40ms, probabilities 0..1\n";
    return kExitUsage;
  }
  FaultProxy::Options o;
  o.listen_host = l->first;
  o.listen_port = l->second;
  o.target_host = t->first;
  o.target_port = t->second;
  o.seed = seed;
  auto proxy = FaultProxy::Start(o);
  if (!proxy.ok()) {
    std::cerr << "bulwark-chaos proxy: " << proxy.status().ToString() << "\n";
    return 3;
  }
  LinkFaults faults;
  faults.delay = std::chrono::duration_cast<std::chrono::microseconds>(*d);
  faults.jitter = std::chrono::duration_cast<std::chrono::microseconds>(*j);
  faults.loss_probability = loss;
  faults.stall_probability = stall_probability;
  faults.stall = std::chrono::duration_cast<std::chrono::microseconds>(*st);
  faults.bandwidth_bytes_per_s = bandwidth;
  (*proxy)->SetFaults(faults);
  std::cout << "proxy " << (*proxy)->listen_address() << " -> " << target << " (Ctrl-C stops it)\n" << std::flush;
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  // Bounded by the signal: one stats line every 10 s.
  for (int tick = 1; !g_abort; ++tick) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (tick % 100 != 0) continue;
    const auto s = (*proxy)->stats();
    std::cout << "connections " << s.connections << " (open " << s.open << ", refused " << s.refused << "), bytes "
              << s.bytes[0] << " -> / <- " << s.bytes[1] << ", chunks lost " << s.chunks_lost[0] + s.chunks_lost[1]
              << ", stalls " << s.stalls[0] + s.stalls[1] << "\n"
              << std::flush;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bulwark-chaos: fault injection against a local Bulwark cluster, and history checkers"};
  app.require_subcommand(1);

  check::CheckOptions check_options;
  uint64_t staleness_k = check_options.staleness.max_versions;
  std::string staleness_t = "5s";
  size_t memo_mb = check_options.linearizability.max_memo_bytes_per_key >> 20;
  auto add_check_flags = [&](CLI::App* sub) {
    sub->add_option("--staleness-k", staleness_k, "BoundedStaleness: writes a read may miss (K)");
    sub->add_option("--staleness-t", staleness_t, "BoundedStaleness: how far behind a read may be (T), e.g. 5s");
    sub->add_option("--max-memo-mb", memo_mb, "linearizability search memory per key before 'unknown'");
  };
  auto finish_check_flags = [&]() -> bool {
    auto t = ParseDuration(staleness_t);
    if (!t) return false;
    check_options.staleness = {staleness_k, static_cast<int64_t>(t->count()) * 1'000'000};
    check_options.linearizability.max_memo_bytes_per_key = memo_mb << 20;
    return true;
  };

  std::string history, workload = "register", consistency = "strong";
  auto* check_cmd = app.add_subcommand("check", "check a saved history; exit 1 on a violation");
  check_cmd->add_option("--history", history, "history file (JSON lines)")->required();
  check_cmd->add_option("--workload", workload, "register, set or append");
  check_cmd->add_option("--consistency", consistency, "Strong, BoundedStaleness, Session, ConsistentPrefix, Eventual");
  add_check_flags(check_cmd);

  RunOptions run;
  std::string nemesis = "kill,stop,partition", duration = "60s", recovery = "5s";
  auto* run_cmd = app.add_subcommand("run", "a chaos run against real bulwarkd processes: one region or an account");
  run_cmd->add_option("--nodes", run.nodes, "nodes per region (4: writes commit on 3)")->check(CLI::Range(1, 9));
  run_cmd->add_option("--regions", run.regions, "regions (2 or 3: region R on 127.0.R.x; --ip is then unused)")
      ->check(CLI::Range(1, 3));
  run_cmd->add_flag("--witness", run.witness,
                    "regions: a control group with a witness on 127.0.9.1 (automatic failover; needed by cutoff)");
  run_cmd->add_option(
      "--nemesis", nemesis,
      "comma-separated: kill,stop,partition,clock (one region),transfer,rotate,power,disk,corrupt,failover,wan,cutoff "
      "(the last three with regions; cutoff with --witness) (or none)");
  run_cmd->add_option("--workload", workload, "register, set or append");
  run_cmd->add_option("--consistency", consistency, "the level the workload reads at");
  run_cmd->add_option("--duration", duration, "how long faults are injected, e.g. 60s, 2m");
  run_cmd->add_option("--recovery", recovery, "how long the workload runs after the last heal");
  run_cmd->add_option("--seed", run.seed, "seed for the workload's and the nemesis' choices");
  run_cmd->add_option("--out", run.out_dir, "directory for history.jsonl, faults.jsonl, report.txt, timeline.svg")
      ->required();
  run_cmd->add_option("--ip", run.ip, "the first node's loopback address");
  run_cmd->add_option("--port", run.port, "client port on every node (peer port: +1)");
  run_cmd->add_option("--clients", run.clients, "workload client threads (sessions)");
  run_cmd->add_option("--keys", run.keys, "registers, sets or lists");
  run_cmd->add_option("--bin-dir", run.bin_dir, "where bulwarkd is (default: beside bulwark-chaos)");
  run_cmd->add_flag("--keep-cluster", run.keep_cluster, "keep the nodes' data and logs after a clean run");
  add_check_flags(run_cmd);

  check::SynthOptions synth;
  std::string synth_out;
  auto* synth_cmd = app.add_subcommand("synth", "write a synthetic linearizable register history");
  synth_cmd->add_option("--ops", synth.operations, "operations");
  synth_cmd->add_option("--keys", synth.keys, "registers");
  synth_cmd->add_option("--processes", synth.processes, "concurrent clients");
  synth_cmd->add_option("--spread", synth.spread,
                        "overlap: operations last up to this many steps around 10-step instants");
  synth_cmd->add_option("--seed", synth.seed, "seed");
  synth_cmd->add_option("--out", synth_out, "file")->required();

  std::string proxy_listen, proxy_target, proxy_delay = "0ms", proxy_jitter = "0ms", proxy_stall = "0ms";
  double proxy_loss = 0, proxy_stall_probability = 0;
  uint64_t proxy_bandwidth = 0;
  auto* proxy_cmd = app.add_subcommand("proxy", "run the fault-injecting TCP proxy until Ctrl-C (both directions)");
  proxy_cmd->add_option("--listen", proxy_listen, "host:port to listen on (IPv4)")->required();
  proxy_cmd->add_option("--target", proxy_target, "host:port to forward to (IPv4)")->required();
  proxy_cmd->add_option("--delay", proxy_delay, "added latency per direction, e.g. 40ms");
  proxy_cmd->add_option("--jitter", proxy_jitter, "uniform extra latency, e.g. 10ms");
  proxy_cmd->add_option("--loss", proxy_loss, "probability a chunk pays a 200 ms retransmission penalty");
  proxy_cmd->add_option("--stall-probability", proxy_stall_probability, "probability a chunk stalls its direction");
  proxy_cmd->add_option("--stall", proxy_stall, "how long a stall lasts, e.g. 2s");
  proxy_cmd->add_option("--bandwidth", proxy_bandwidth, "bytes per second per direction (0: unlimited)");
  proxy_cmd->add_option("--seed", synth.seed, "seed for jitter, loss and stalls");

  std::string cleanup_out;
  auto* cleanup_cmd = app.add_subcommand(
      "cleanup", "remove the nftables table `bulwark_chaos` a killed run left behind, and stop its nodes");
  cleanup_cmd->add_option("--out", cleanup_out, "the killed run's --out directory: stop the nodes it left running");

  CLI11_PARSE(app, argc, argv);

  if (!finish_check_flags()) {
    std::cerr << "bulwark-chaos: --staleness-t must be a duration like 5s or 500ms\n";
    return kExitUsage;
  }
  if (check_cmd->parsed()) return Check(history, workload, consistency, check_options);

  if (synth_cmd->parsed()) {
    auto events = check::SynthesizeRegisterHistory(synth);
    std::ofstream out(synth_out, std::ios::trunc);
    for (const auto& e : events) out << check::FormatEvent(e) << "\n";
    if (!out) {
      std::cerr << "bulwark-chaos synth: cannot write " << synth_out << "\n";
      return 3;
    }
    std::cout << synth_out << ": " << synth.operations << " operations\n";
    return 0;
  }

  if (proxy_cmd->parsed())
    return RunProxy(proxy_listen, proxy_target, proxy_delay, proxy_jitter, proxy_loss, proxy_stall_probability,
                    proxy_stall, proxy_bandwidth, synth.seed);

  if (cleanup_cmd->parsed()) {
    Status s = NftPartition::RemoveTable();
    std::cout << (s.ok() ? "removed table inet bulwark_chaos (if it existed)\n" : s.ToString() + "\n");
    if (!cleanup_out.empty()) {
      for (const auto& r : LocalCluster::StopFromPidFiles(cleanup_out + "/cluster")) {
        std::cout << "node-" << r.node << " (pid " << r.pid << "): "
                  << (r.outcome == LocalCluster::NodeStopReport::Outcome::kStopped  ? "stopped"
                      : r.outcome == LocalCluster::NodeStopReport::Outcome::kKilled ? "killed"
                                                                                    : "was not running")
                  << "\n";
      }
    }
    return s.ok() ? 0 : 3;
  }

  // run
  auto w = check::ParseWorkload(workload);
  auto level = ParseConsistency(consistency);
  auto d = ParseDuration(duration);
  auto rec = ParseDuration(recovery);
  if (!w || !level || !d || !rec) {
    std::cerr
        << "bulwark-chaos run: --workload must be register, set or append; --consistency a level; durations like 60s\n";
    return kExitUsage;
  }
  run.workload = *w;
  run.consistency = *level;
  run.duration = *d;
  run.recovery = *rec;
  run.check = check_options;
  if (nemesis != "none" && !nemesis.empty()) {
    std::stringstream s(nemesis);
    std::string name;
    while (std::getline(s, name, ',')) {
      auto kind = ParseFaultKind(name);
      if (!kind) {
        std::cerr
            << "bulwark-chaos run: unknown nemesis '" << name
            << "' (kill, stop, partition, clock, transfer, rotate, power, disk, corrupt, failover, wan, cutoff)\n";
        return kExitUsage;
      }
      run.nemesis.push_back(*kind);
    }
  }
  if (run.bin_dir.empty()) run.bin_dir = SelfDir();
  {
    std::ostringstream cmd;
    cmd << argv[0] << " run --regions " << run.regions << (run.witness ? " --witness" : "") << " --nodes " << run.nodes
        << " --nemesis " << (nemesis.empty() ? "none" : nemesis) << " --workload " << workload << " --consistency "
        << consistency << " --duration " << duration << " --recovery " << recovery << " --seed " << run.seed << " --ip "
        << run.ip << " --port " << run.port << " --clients " << run.clients << " --keys " << run.keys << " --out "
        << run.out_dir << "-rerun";
    run.rerun_command = cmd.str();
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  return RunChaos(run, g_abort, std::cout);
}
