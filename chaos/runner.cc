#include "chaos/runner.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "chaos/check/availability.h"
#include "chaos/check/history.h"
#include "chaos/disk_faults.h"
#include "chaos/local_account.h"
#include "chaos/local_cluster.h"
#include "chaos/nftables.h"
#include "chaos/wan.h"
#include "chaos/workload.h"
#include "client/client.h"

namespace bulwark::chaos {
namespace {

namespace fs = std::filesystem;
using check::Operation;
using check::Outcome;
using check::Verdict;

constexpr const char* kFaketimeLibrary = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
// Status calls during the convergence wait must not hang on a node that is
// slow to answer.
constexpr std::chrono::milliseconds kStatusDeadline{2000};

std::string Seconds(int64_t ns) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  s << static_cast<double>(ns) / 1e9 << " s";
  return s.str();
}

bool Uses(const RunOptions& o, FaultKind k) {
  return std::find(o.nemesis.begin(), o.nemesis.end(), k) != o.nemesis.end();
}

// bulwarkd under libfaketime with a per-node offset file (nemesis.h).
Status WriteClockWrapper(const std::string& dir, const std::string& real_bin_dir, const std::string& clock_dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir + ": " + ec.message());
  const std::string path = dir + "/bulwarkd";
  std::ofstream out(path, std::ios::trunc);
  out << "#!/bin/sh\n"
         "# Written by bulwark-chaos: runs bulwarkd under libfaketime, the wall clock\n"
         "# offset read from this node's file (re-read every second).\n"
         "node=\"\"; prev=\"\"\n"
         "for a in \"$@\"; do [ \"$prev\" = \"--node-id\" ] && node=\"$a\"; prev=\"$a\"; done\n"
         "export LD_PRELOAD="
      << kFaketimeLibrary
      << "\n"
         "export FAKETIME_TIMESTAMP_FILE=\""
      << clock_dir
      << "/$node\"\n"
         "export FAKETIME_CACHE_DURATION=1\n"
         "export FAKETIME_DONT_FAKE_MONOTONIC=1\n"
         "exec \""
      << real_bin_dir << "/bulwarkd\" \"$@\"\n";
  out.close();
  if (!out) return Status::IOError("cannot write " + path);
  ::chmod(path.c_str(), 0755);
  return Status::Ok();
}

// Waits until every node has applied what the leader committed, then reads
// every key (register) or set (set) on each node locally and compares.
// Every node of every region: within a region, all nodes at the leader's
// commit index; across regions, all at the same GLSN.
Verdict CheckConvergence(const std::vector<NemesisTarget>& regions, const WorkloadOptions& w,
                         const std::atomic<bool>& abort) {
  Verdict v;
  v.checker = "convergence";
  if (abort) {
    v.outcome = Outcome::kUnknown;
    v.summary = "not checked: the run was aborted";
    return v;
  }
  struct Node {
    std::string name;
    size_t region = 0;
    std::unique_ptr<client::Client> client;
  };
  std::vector<Node> clients;
  for (size_t r = 0; r < regions.size(); ++r) {
    const LocalCluster& cluster = *regions[r].cluster;
    for (int i = 1; i <= cluster.size(); ++i) {
      const std::string name = (regions[r].region.empty() ? "" : regions[r].region + " ") + "node " + std::to_string(i);
      client::ClientOptions o = cluster.node_client_options(i);
      o.deadline = kStatusDeadline;
      o.max_retries = 0;
      auto c = client::Client::Connect(o);
      if (!c.ok()) {
        v.Add({"cannot connect to " + name + ": " + c.status().ToString(), {}});
        return v;
      }
      clients.push_back({name, r, std::move(c).value()});
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + kConvergeTimeout;
  std::string last;
  uint64_t applied = 0;
  bool agreed = false;
  while (!agreed && !abort && std::chrono::steady_clock::now() < deadline) {
    std::vector<uint64_t> commit(regions.size(), 0);
    std::vector<std::pair<uint64_t, uint64_t>> at;  // applied index, GLSN
    last.clear();
    for (const Node& n : clients) {
      auto s = n.client->GetStatus();
      if (!s.ok()) {
        last += " " + n.name + ": " + s.status().ToString();
        break;
      }
      at.push_back({s->applied_index, s->glsn});
      if (s->role == "leader") commit[n.region] = s->commit_index;
      last += " " + n.name + " applied " + std::to_string(s->applied_index) + " GLSN " + std::to_string(s->glsn);
    }
    agreed = at.size() == clients.size();
    for (size_t i = 0; agreed && i < clients.size(); ++i) {
      agreed =
          commit[clients[i].region] != 0 && at[i].first == commit[clients[i].region] && at[i].second == at[0].second;
    }
    applied = commit[0];
    if (!agreed) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (abort) {
    v.outcome = Outcome::kUnknown;
    v.summary = "not finished: the run was aborted";
    return v;
  }
  if (!agreed) {
    v.Add({"replicas did not converge within " + std::to_string(kConvergeTimeout.count()) + " s:" + last, {}});
    return v;
  }
  // One key of one node's own state, read locally (Eventual): the register
  // or list value with its etag, "absent", or the sorted set.
  auto read_state = [&](client::Client* client, const std::string& key) -> Result<std::string> {
    if (w.workload != check::Workload::kSet) {
      client::ReadOptions ro;
      ro.consistency = ConsistencyLevel::kEventual;
      auto r = client->ReadItem(w.database, w.container, "\"t\"", key, ro);
      if (r.status().code() == Code::kNotFound) return std::string("absent");
      if (!r.ok()) return r.status();
      // Only the value: _ts and _etag are the same bytes everywhere, but a
      // store may print fields in any order.
      auto j = nlohmann::json::parse(r->json, nullptr, false);
      if (!j.is_discarded() && j.contains("v")) return j["v"].dump() + " etag " + r->etag;
      return r->json;
    }
    client::ListOptions lo;
    lo.partition_key_json = nlohmann::json(key).dump();
    lo.max_items = kMaxSetElements;
    lo.consistency = ConsistencyLevel::kEventual;
    auto page = client->ListItems(w.database, w.container, lo);
    if (!page.ok()) return page.status();
    std::vector<int64_t> values;
    for (const auto& item : page->items) {
      auto j = nlohmann::json::parse(item, nullptr, false);
      if (!j.is_discarded() && j.contains("v") && j["v"].is_number_integer()) values.push_back(j["v"].get<int64_t>());
    }
    std::sort(values.begin(), values.end());
    return nlohmann::json(values).dump();
  };
  std::vector<std::map<std::string, std::string>> state(clients.size());  // unreadable keys left out
  for (size_t i = 0; i < clients.size(); ++i) {
    for (int k = 0; k < w.keys; ++k) {
      const std::string key = WorkloadKey(w.workload, k);
      Result<std::string> got = Status::Internal("not read");
      for (int attempt = 0; attempt < kConvergeReadAttempts; ++attempt) {
        if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        got = read_state(clients[i].client.get(), key);
        if (got.ok()) break;
      }
      if (!got.ok()) {
        // Not compared: the same error everywhere (the container gone, say)
        // would otherwise pass as agreement.
        v.Add({clients[i].name + " cannot read " + key + ": " + got.status().ToString().substr(0, 200), {}});
        continue;
      }
      state[i][key] = *got;
    }
  }
  for (size_t i = 1; i < state.size(); ++i) {
    for (const auto& [key, value] : state[0]) {
      auto mine = state[i].find(key);
      if (mine != state[i].end() && mine->second != value) {
        v.Add({clients[i].name + " differs from " + clients[0].name + " on " + key + ": " +
                   mine->second.substr(0, 200) + " vs " + value.substr(0, 200),
               {}});
      }
    }
  }
  if (v.outcome == Outcome::kValid) {
    v.summary = std::to_string(clients.size()) + " replicas identical" +
                (regions.size() > 1 ? " across " + std::to_string(regions.size()) + " regions"
                                    : " at applied index " + std::to_string(applied));
  } else {
    v.summary = "replicas differ after healing";
  }
  return v;
}

void WriteFaults(const std::string& path, const std::vector<FaultRecord>& faults) {
  std::ofstream out(path, std::ios::trunc);
  for (const FaultRecord& f : faults) {
    nlohmann::ordered_json j;
    j["kind"] = FaultKindName(f.kind);
    j["what"] = f.what;
    j["start"] = f.start_ns;
    j["end"] = f.end_ns;
    if (!f.error.empty()) j["error"] = f.error;
    out << j.dump() << "\n";
  }
}

std::string OperationCounts(const std::vector<Operation>& ops) {
  std::map<std::string, std::map<std::string, int>> counts;
  int total[4] = {0, 0, 0, 0};
  for (const Operation& op : ops) {
    counts[op.f][check::EventTypeName(op.outcome)]++;
    total[static_cast<int>(op.outcome)]++;
  }
  std::string out = std::to_string(ops.size()) + " (ok " + std::to_string(total[1]) + ", fail " +
                    std::to_string(total[2]) + ", info " + std::to_string(total[3]) + ")";
  for (const auto& [f, by] : counts) {
    out += "\n    " + f + ":";
    for (const auto& [type, n] : by) out += " " + type + " " + std::to_string(n);
  }
  return out;
}

}  // namespace

Status WriteTimeline(const std::string& dir, const std::vector<Operation>& ops,
                     const std::vector<FaultRecord>& faults) {
  // Top: operations completed per bucket by outcome, so a dip in green is
  // unavailability. Bottom: each operation as a point at its completion (an
  // info at its invoke), by session.
  constexpr double kBucketSeconds = 0.25;
  std::map<int64_t, std::array<int, 4>> buckets;
  std::ofstream points(dir + "/timeline-ops.dat", std::ios::trunc);
  for (const Operation& op : ops) {
    const int64_t at = op.complete_ns == check::kNeverCompleted ? op.invoke_ns : op.complete_ns;
    const int outcome = static_cast<int>(op.outcome);
    buckets[static_cast<int64_t>(at / 1e9 / kBucketSeconds)][outcome]++;
    points << at / 1e9 << " " << op.session << " " << outcome << "\n";
  }
  points.close();
  std::ofstream rate(dir + "/timeline-rate.dat", std::ios::trunc);
  // Every bucket from the first to the last, empty ones as zero: a gap in
  // completions is the point of the plot.
  const int64_t first = buckets.empty() ? 0 : buckets.begin()->first;
  const int64_t last = buckets.empty() ? -1 : buckets.rbegin()->first;
  for (int64_t b = first; b <= last; ++b) {
    const std::array<int, 4> n = buckets.count(b) ? buckets[b] : std::array<int, 4>{};
    rate << b * kBucketSeconds << " " << n[1] / kBucketSeconds << " " << n[2] / kBucketSeconds << " "
         << n[3] / kBucketSeconds << "\n";
  }
  rate.close();
  std::ofstream gp(dir + "/timeline.gp", std::ios::trunc);
  gp << "# Rendered by bulwark-chaos; rerun with: gnuplot timeline.gp\n"
        "set terminal svg size 1400,800 dynamic background rgb 'white'\n"
        "set output 'timeline.svg'\n"
        "set multiplot layout 2,1 title 'bulwark-chaos: operations (green ok, red fail, orange info); faults shaded'\n"
        "set xlabel 'seconds'\nset key top left\n";
  int n = 1;
  for (const FaultRecord& f : faults) {
    const char* colour = f.kind == FaultKind::kKill        ? "#ff9999"
                         : f.kind == FaultKind::kStop      ? "#99ccff"
                         : f.kind == FaultKind::kPartition ? "#ffcc66"
                         : f.kind == FaultKind::kFailover  ? "#99ee99"
                         : f.kind == FaultKind::kTransfer  ? "#dddddd"
                         : f.kind == FaultKind::kRotate    ? "#ffee88"
                         : f.kind == FaultKind::kPower     ? "#ff6666"
                         : f.kind == FaultKind::kDisk      ? "#cc6600"
                         : f.kind == FaultKind::kCorrupt   ? "#996633"
                         : f.kind == FaultKind::kWan       ? "#66cccc"
                                                           : "#cc99ff";
    gp << "set object " << n << " rect from " << f.start_ns / 1e9 << ", graph 0 to " << f.end_ns / 1e9
       << ", graph 1 fc rgb '" << colour << "' fs transparent solid 0.35 noborder behind\n";
    gp << "set label " << n << " '" << FaultKindName(f.kind) << "' at " << f.start_ns / 1e9
       << ", graph 0.97 font ',8'\n";
    ++n;
  }
  gp << "set ylabel 'operations per second'\n"
        "plot 'timeline-rate.dat' using 1:2 with steps lc rgb '#2ca02c' title 'ok', \\\n"
        "     '' using 1:3 with steps lc rgb '#d62728' title 'fail', \\\n"
        "     '' using 1:4 with steps lc rgb '#ff7f0e' title 'info'\n"
        "set ylabel 'session'\nset key off\nset yrange [-1:*]\n"
        "plot 'timeline-ops.dat' using 1:($3==1?$2:1/0) with dots lc rgb '#2ca02c', \\\n"
        "     '' using 1:($3==2?$2:1/0) with points pt 7 ps 0.3 lc rgb '#d62728', \\\n"
        "     '' using 1:($3==3?$2:1/0) with points pt 7 ps 0.6 lc rgb '#ff7f0e'\n"
        "unset multiplot\n";
  gp.close();
  const std::string command = "cd '" + dir + "' && gnuplot timeline.gp 2>gnuplot.log";
  if (std::system(command.c_str()) != 0) {
    return Status::Unavailable("gnuplot failed or is not installed (see " + dir + "/gnuplot.log)");
  }
  return Status::Ok();
}

namespace {

// What a run leaves to check and report.
struct RunRecord {
  std::string out_dir;
  std::string cluster_dir;
  std::vector<FaultRecord> faults;
  Verdict convergence;
  Status healed;
  Status final_reads;
  int64_t start_ns = 0;  // the workload began
  int64_t end_ns = 0;    // the workload stopped
};

// The partition table and the libfaketime wrapper, for the faults that need them.
Status PrepareFaults(const RunOptions& o, const std::string& out_dir, std::unique_ptr<NftPartition>* nft,
                     std::string* bin_dir) {
  *bin_dir = o.bin_dir;
  if (Uses(o, FaultKind::kPartition) || Uses(o, FaultKind::kCutoff)) {
    BULWARK_ASSIGN_OR_RETURN(*nft, NftPartition::Open());
  }
  if (Uses(o, FaultKind::kCutoff) && (o.regions < 2 || !o.witness)) {
    return Status::InvalidArgument("the cutoff nemesis needs --regions 2 or more and --witness (a control group)");
  }
  if (Uses(o, FaultKind::kFailover) && o.regions < 2) {
    return Status::InvalidArgument("the failover nemesis needs --regions 2 or more");
  }
  if (Uses(o, FaultKind::kWan) && o.regions < 2) {
    return Status::InvalidArgument("the wan nemesis needs --regions 2 or more");
  }
  // The nodes inherit the environment: their stores take the disk-fault hook.
  if (Uses(o, FaultKind::kPower) || Uses(o, FaultKind::kDisk)) EnableFsFaultHook();
  if (!Uses(o, FaultKind::kClock)) return Status::Ok();
  if (o.regions > 1) {
    return Status::InvalidArgument("the clock nemesis runs against one region only (its offsets are per node id)");
  }
  if (!fs::exists(kFaketimeLibrary)) {
    return Status::FailedPrecondition(std::string("the clock nemesis needs ") + kFaketimeLibrary +
                                      " (apt-get install faketime)");
  }
  const std::string clock_dir = out_dir + "/clock";
  std::error_code ec;
  fs::create_directories(clock_dir, ec);
  for (int i = 1; i <= o.nodes; ++i) BULWARK_RETURN_IF_ERROR(Nemesis::WriteClockOffset(clock_dir, i, 0));
  BULWARK_RETURN_IF_ERROR(WriteClockWrapper(out_dir + "/bin", o.bin_dir, clock_dir));
  *bin_dir = out_dir + "/bin";
  return Status::Ok();
}

Result<std::unique_ptr<LocalCluster>> StartCluster(const RunOptions& o, const std::string& cluster_dir,
                                                   const std::string& bin_dir) {
  ClusterOptions co;
  co.dir = cluster_dir;
  co.bin_dir = bin_dir;
  co.ip = o.ip;
  co.port = o.port;
  co.metrics_port = 0;
  co.nodes = o.nodes;
  // Strong as the account default, so the workload may ask for any level.
  co.extra_args = {"--default-consistency", "Strong"};
  // Nodes a crashed run in the same directory left running would hold the
  // ports; stop them (only processes that are bulwarkd on these data
  // directories, see StopFromPidFiles), then start from empty stores.
  if (fs::exists(co.dir)) (void)LocalCluster::StopFromPidFiles(co.dir, std::chrono::seconds(5));
  std::error_code ec;
  fs::remove_all(co.dir, ec);
  BULWARK_ASSIGN_OR_RETURN(auto cluster, LocalCluster::Prepare(co));
  Status s = cluster->Start();
  if (!s.ok()) return s.WithContext("the cluster did not start");
  return cluster;
}

Result<std::unique_ptr<LocalAccount>> StartAccount(const RunOptions& o, const std::string& dir,
                                                   const std::string& bin_dir) {
  AccountOptions ao;
  ao.dir = dir;
  ao.bin_dir = bin_dir;
  ao.regions = o.regions;
  ao.nodes = o.nodes;
  ao.port = o.port;
  ao.metrics_port = 0;
  ao.consistency = "Strong";  // so the workload may ask for any level
  ao.witness = o.witness;
  ao.control_grace_ms = kChaosGraceMs;
  ao.control_lease_ms = kChaosLeaseMs;
  ao.wan_proxies = Uses(o, FaultKind::kWan);
  for (int r = 1; r <= o.regions; ++r) {
    const std::string region_dir = dir + "/" + LocalAccount::RegionName(r);
    if (fs::exists(region_dir)) (void)LocalCluster::StopFromPidFiles(region_dir, std::chrono::seconds(5));
  }
  if (fs::exists(dir + "/witness")) (void)LocalCluster::StopFromPidFiles(dir + "/witness", std::chrono::seconds(5));
  std::error_code ec;
  fs::remove_all(dir, ec);
  BULWARK_ASSIGN_OR_RETURN(auto account, LocalAccount::Prepare(ao));
  Status s = account->Start();
  if (!s.ok()) return s.WithContext("the account did not start");
  return account;
}

// The failover fault: the write region moves to the next region in turn.
std::function<Result<std::string>()> FailoverFault(const LocalAccount& account) {
  client::ClientOptions o = account.client_options(1);
  o.max_retries = 10;
  const int regions = account.regions();
  return [o, regions]() -> Result<std::string> {
    BULWARK_ASSIGN_OR_RETURN(auto admin, client::Client::Connect(o));
    BULWARK_ASSIGN_OR_RETURN(client::Topology t, admin->GetTopology());
    int from = 0;
    for (int r = 1; r <= regions; ++r) {
      if (t.write_region == LocalAccount::RegionName(r)) from = r;
    }
    if (from == 0) return Status::Internal("the write region " + t.write_region + " is not one of the run's");
    const std::string to = LocalAccount::RegionName(from % regions + 1);
    // A target still catching up after the last fault is refused for now.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      auto moved = admin->Failover(to, std::chrono::seconds(30));
      if (moved.ok())
        return "failover " + t.write_region + " -> " + to + " (epoch " + std::to_string(moved->epoch) + ")";
      const bool not_ready = moved.status().code() == Code::kFailedPrecondition &&
                             moved.status().message().find("cannot fail over") != std::string::npos;
      if (!not_ready || std::chrono::steady_clock::now() >= until) return moved.status();
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  };
}

// The report: operations, faults with their RTO, verdicts, RTO, RPO, files,
// result. Sets *code to the exit code.
std::string Report(const RunOptions& o, const RunRecord& run, const std::vector<Operation>& ops,
                   const std::vector<Verdict>& verdicts, double check_s, bool aborted, int* code) {
  std::vector<std::pair<int64_t, int64_t>> windows;
  for (const FaultRecord& f : run.faults) windows.push_back({f.start_ns, f.end_ns});
  const check::Availability avail = check::MeasureAvailability(ops, windows, run.start_ns, run.end_ns);
  std::ostringstream r;
  r << "bulwark-chaos run: " << (o.regions > 1 ? std::to_string(o.regions) + " regions x " : std::string()) << o.nodes
    << " nodes, workload " << check::WorkloadName(o.workload) << ", consistency " << ConsistencyName(o.consistency)
    << ", seed " << o.seed << "\n";
  r << "operations: " << OperationCounts(ops) << "\n";
  r << "faults: " << run.faults.size() << "\n";
  bool harness_failed = !run.healed.ok() || !run.final_reads.ok() || aborted;
  for (size_t i = 0; i < run.faults.size(); ++i) {
    const FaultRecord& f = run.faults[i];
    r << "  " << Seconds(f.start_ns) << " - " << Seconds(f.end_ns) << "  " << f.what << "  (write RTO "
      << Seconds(avail.per_fault_rto_ns[i]) << ")" << (f.error.empty() ? "" : "  ERROR: " + f.error) << "\n";
    harness_failed = harness_failed || !f.error.empty();
  }
  if (!run.healed.ok()) r << "heal: " << run.healed.ToString() << "\n";
  if (!run.final_reads.ok()) r << "final reads: " << run.final_reads.ToString() << "\n";
  r << "verdicts (checked in " << check_s << " s):\n";
  for (const Verdict& v : verdicts) r << "  " << check::FormatVerdict(v, ops);
  r << "RTO (longest write unavailability): " << Seconds(avail.rto_ns) << "\n";
  size_t lost = 0;
  for (const Verdict& v : verdicts) {
    if (v.checker == "lost-writes") lost = v.findings.size() + v.findings_dropped;
  }
  // A register's overwrites hide its losses but one: its final value going
  // back, one finding per key.
  r << "RPO (acknowledged writes lost): " << lost
    << (o.workload == check::Workload::kRegister ? " (registers: keys whose final value went back)" : "") << "\n";
  if (Status s = WriteTimeline(run.out_dir, ops, run.faults); !s.ok()) {
    r << "timeline: " << s.ToString() << "\n";
  } else {
    r << "timeline: " << run.out_dir << "/timeline.svg\n";
  }
  r << "history: " << run.out_dir << "/history.jsonl\n";
  const Outcome worst = check::Worst(verdicts);
  *code = worst == Outcome::kInvalid ? 1 : harness_failed ? 3 : worst == Outcome::kUnknown ? 2 : 0;
  r << "result: "
    << (*code == 0   ? "VALID"
        : *code == 1 ? "INVALID"
        : *code == 2 ? "UNKNOWN (a check hit its limit)"
                     : (aborted ? "ABORTED" : "HARNESS ERROR (see above)"))
    << "\n";
  if (*code != 0 && !o.rerun_command.empty()) r << "rerun: " << o.rerun_command << "\n";
  return r.str();
}

}  // namespace

int RunChaos(const RunOptions& o, const std::atomic<bool>& abort, std::ostream& out) {
  const auto origin = std::chrono::steady_clock::now();
  auto now_ns = [origin] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - origin).count();
  };
  auto harness_error = [&](const std::string& what) {
    out << "bulwark-chaos: " << what << "\n";
    if (!o.rerun_command.empty()) out << "rerun: " << o.rerun_command << "\n";
    return 3;
  };
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return harness_error("cannot create " + o.out_dir + ": " + ec.message());
  RunRecord run;
  run.out_dir = fs::absolute(o.out_dir).string();
  run.cluster_dir = run.out_dir + "/cluster";

  // Declared first so it is destroyed last: the table goes on every exit.
  std::unique_ptr<NftPartition> nft;
  std::string bin_dir;
  if (Status s = PrepareFaults(o, run.out_dir, &nft, &bin_dir); !s.ok()) return harness_error(s.ToString());
  std::unique_ptr<LocalCluster> cluster;
  std::unique_ptr<WanLinks> wan;  // declared before the account: it outlives the nodes using it
  std::unique_ptr<LocalAccount> account;
  std::vector<NemesisTarget> regions;
  if (o.regions > 1) {
    out << "starting " << o.regions << " regions x " << o.nodes << " nodes on 127.0.R.x, port " << o.port << "\n"
        << std::flush;
    if (Uses(o, FaultKind::kWan)) {
      auto links = WanLinks::Start(o.regions, o.nodes, o.port, o.seed);
      if (!links.ok()) return harness_error("WAN proxies: " + links.status().ToString());
      wan = std::move(links).value();
    }
    auto started = StartAccount(o, run.cluster_dir, bin_dir);
    if (!started.ok()) return harness_error(started.status().ToString());
    account = std::move(started).value();
    for (int r = 1; r <= account->regions(); ++r) regions.push_back({&account->region(r), LocalAccount::RegionName(r)});
  } else {
    out << "starting " << o.nodes << " nodes from " << o.ip << ", port " << o.port << "\n" << std::flush;
    auto started = StartCluster(o, run.cluster_dir, bin_dir);
    if (!started.ok()) return harness_error(started.status().ToString());
    cluster = std::move(started).value();
    regions.push_back({cluster.get(), ""});
  }

  const std::string history_path = run.out_dir + "/history.jsonl";
  auto writer = check::HistoryWriter::Open(history_path);
  if (!writer.ok()) return harness_error(writer.status().ToString());
  WorkloadOptions wo;
  wo.workload = o.workload;
  wo.consistency = o.consistency;
  wo.clients = o.clients;
  wo.keys = o.keys;
  wo.seed = o.seed;
  std::vector<RegionClients> region_clients;
  if (account) {
    for (int r = 1; r <= account->regions(); ++r) {
      region_clients.push_back({LocalAccount::RegionName(r), account->client_options(r)});
    }
  } else {
    region_clients.push_back({wo.region, cluster->failover_client_options()});
  }
  WorkloadRunner workload(wo, std::move(region_clients), writer->get(), now_ns);
  if (Status s = workload.Setup(kSetupTimeout); !s.ok()) return harness_error("workload setup: " + s.ToString());

  NemesisOptions no;
  no.kinds = o.nemesis;
  no.seed = o.seed;
  no.clock_dir = run.out_dir + "/clock";
  if (account) no.failover = FailoverFault(*account);
  if (account && o.witness) {
    client::ClientOptions to = account->client_options(1);
    for (int r = 2; r <= account->regions(); ++r) {
      for (int i = 1; i <= account->region(r).size(); ++i) to.endpoints.push_back(account->region(r).node_endpoint(i));
    }
    to.max_retries = 3;
    const int count = account->regions();
    no.write_region = [to, count]() -> Result<int> {
      BULWARK_ASSIGN_OR_RETURN(auto c, client::Client::Connect(to));
      BULWARK_ASSIGN_OR_RETURN(client::Topology t, c->GetTopology());
      for (int r = 1; r <= count; ++r) {
        if (t.write_region == LocalAccount::RegionName(r)) return r;
      }
      return Status::Internal("the write region " + t.write_region + " is not one of the run's");
    };
    for (int r = 1; r <= count; ++r) no.region_nets.push_back("127.0." + std::to_string(r) + ".0/24");
    no.witness_ip = kWitnessIp;
    // Past the grace period, the takeover and the clients' topology refresh.
    no.cutoff_hold = std::chrono::milliseconds(kChaosGraceMs + 6000);
  }
  {
    client::ClientOptions ko = account ? account->client_options(1) : cluster->failover_client_options();
    ko.max_retries = 10;
    const std::string db = wo.database, container = wo.container;
    no.rotate_data_key = [ko, db, container]() -> Result<std::string> {
      BULWARK_ASSIGN_OR_RETURN(auto c, client::Client::Connect(ko));
      BULWARK_ASSIGN_OR_RETURN(uint32_t v, c->RotateDataKey(db, container));
      return "data key of " + db + "/" + container + " -> v" + std::to_string(v);
    };
  }
  if (wan) {
    WanLinks* links = wan.get();
    no.wan = [links](int region, uint64_t draw) -> Result<std::string> {
      if (region == 0) {
        links->Heal();
        return std::string("healed");
      }
      return links->Fault(region, draw);
    };
  }
  Nemesis nemesis(regions, nft.get(), no, now_ns);
  run.start_ns = now_ns();
  workload.Start();
  out << "running " << check::WorkloadName(o.workload) << " at " << ConsistencyName(o.consistency) << " for "
      << o.duration.count() / 1000 << " s with faults, then " << o.recovery.count() / 1000 << " s healed\n"
      << std::flush;
  nemesis.Run(std::chrono::steady_clock::now() + o.duration, abort);
  run.healed = nemesis.HealAll();
  if (Status s = nemesis.ReplaceDamagedDisks(); !s.ok() && run.healed.ok()) run.healed = s;
  const auto recovery_end = std::chrono::steady_clock::now() + o.recovery;
  while (!abort && std::chrono::steady_clock::now() < recovery_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  run.end_ns = now_ns();
  workload.Stop();
  run.final_reads = abort ? Status::Unavailable("aborted") : workload.FinalReads(kSetupTimeout);
  out << "checking convergence\n" << std::flush;
  run.convergence = CheckConvergence(regions, wo, abort);
  if (account) {
    (void)account->Stop();
  } else {
    (void)cluster->Stop();
  }
  run.faults = nemesis.faults();
  if (wan) out << "WAN proxies: " << wan->Summary() << "\n";
  WriteFaults(run.out_dir + "/faults.jsonl", run.faults);
  nft.reset();  // removes the table now rather than at exit

  // Check what was written to disk: the same file `bulwark-chaos check` reads.
  auto events = check::ParseHistoryFile(history_path);
  if (!events.ok()) return harness_error("the history does not parse: " + events.status().ToString());
  auto ops = check::PairOperations(*events);
  if (!ops.ok()) return harness_error("the history does not pair: " + ops.status().ToString());
  const auto check_start = std::chrono::steady_clock::now();
  std::vector<Verdict> verdicts = check::CheckHistory(*ops, o.workload, o.consistency, o.check);
  const double check_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - check_start).count();
  verdicts.push_back(run.convergence);
  int code = 0;
  const std::string report = Report(o, run, *ops, verdicts, check_s, abort, &code);
  out << report << std::flush;
  std::ofstream(run.out_dir + "/report.txt", std::ios::trunc) << report;
  if (code == 0 && !o.keep_cluster) fs::remove_all(run.cluster_dir, ec);
  return code;
}

}  // namespace bulwark::chaos
