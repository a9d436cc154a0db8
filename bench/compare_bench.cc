// compare-bench: Bulwark against etcd, side by side in one run on one machine.
//
// Starts a 4-node Bulwark replica set (LocalCluster: TLS, signed requests,
// fsync on, sealed items on encrypted files) and a 3-member etcd 3.4 cluster
// (TLS, fsync on, its defaults otherwise) on loopback, both at once, and
// drives both with the same generator (bench/load_driver.h) through
// KvTarget, alternating between the systems at every step so that a noisy
// neighbour on this shared machine hurts both alike:
//   1. writes: key 8 B / value 256 B and key 16 B / value 1 KiB, closed loop
//      at each client count (1 and 64..256), uniform keys;
//   2. reads of loaded records: Bulwark Strong, Session and Eventual; etcd
//      linearizable and serializable;
//   3. YCSB A, B, C, D, F (bench/ycsb.h) on 1 KiB records, zipfian 0.99, at a
//      fixed offered load (open loop) and at saturation (closed loop).
// Each row has ops/s, p50/p99/p99.9 latency, the servers' summed RSS (VmRSS
// and its peak VmHWM from /proc) and server CPU per operation; YCSB rows
// carry their log-bucketed latency histogram. For writes it prints the
// issue's target (Bulwark >= 2x etcd's ops/s at the same client count, p99
// no worse) as met or missed; it asserts nothing.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bench/kv_target.h"
#include "bench/load_driver.h"
#include "bench/ycsb.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace bulwark;
using namespace bulwark::bench;

namespace {

// The write target: Bulwark's replicated durable writes at least
// this many times etcd's at the same client count, with p99 no worse.
constexpr double kWriteRatioTarget = 2.0;

struct Config {
  double seconds = 5;
  std::vector<int> write_clients = {1, 64, 256};
  std::vector<int> read_clients = {1, 64};
  uint64_t write_keys_max = 100'000;  // key space of the write runs
  uint64_t records = 10'000;          // loaded for the reads and YCSB
  size_t record_bytes = 1024;
  double ycsb_seconds = 5;
  // Fixed offered load, the same for both systems: below either system's
  // saturation on this 2-core machine for every workload, so the latencies
  // show service time and queueing, not overload.
  double ycsb_rate_ops_s = 300;
  int ycsb_open_clients = 32;  // senders of the fixed load
  int ycsb_clients = 64;       // closed-loop clients at saturation
  std::vector<std::string> systems = {"etcd", "bulwark"};
  bool writes_only = false;
  std::string dir;
  std::string etcd_binary = "etcd";
  std::string json_out;
};

std::string Payload(size_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < bytes) s.push_back(static_cast<char>('a' + rng() % 26));
  return s;
}

// A key of exactly `bytes` bytes for number `i`.
std::string FixedKey(size_t bytes, uint64_t i) {
  std::string digits = std::to_string(i);
  std::string key = "k" + std::string(bytes > digits.size() + 1 ? bytes - digits.size() - 1 : 0, '0') + digits;
  return key;
}

struct System {
  std::unique_ptr<KvTarget> target;
  int connected = 0;
};

// Runs `load` on `system` and returns its row: the figures, the servers'
// memory after the run and their CPU per acknowledged operation.
Json Measure(System& system, const std::function<LoadResult()>& load, bool histogram) {
  const std::vector<pid_t> pids = system.target->server_pids();
  const ServerUsage before = ReadServerUsage(pids);
  const LoadResult r = load();
  const ServerUsage after = ReadServerUsage(pids);
  Json row = {{"system", system.target->name()},
              {"ops_s", r.ops_s},
              {"ok", r.ok},
              {"errors", r.errors},
              {"p50_ms", r.p50_ms()},
              {"p99_ms", r.p99_ms()},
              {"p999_ms", r.p999_ms()},
              {"rss_mib", after.rss_mib},
              {"peak_rss_mib", after.peak_rss_mib},
              {"server_cpu_us_per_op", r.ok > 0 ? (after.cpu_s - before.cpu_s) * 1e6 / static_cast<double>(r.ok) : 0}};
  if (histogram) row["latency_histogram"] = r.latency.ToJson();
  return row;
}

void PrintRow(const std::string& what, const Json& row) {
  std::printf("%-30s %-8s %9.0f %8.2f %8.2f %8.2f %7.0f %7.0f %6llu\n", what.c_str(),
              row["system"].get<std::string>().c_str(), row["ops_s"].get<double>(), row["p50_ms"].get<double>(),
              row["p99_ms"].get<double>(), row["p999_ms"].get<double>(), row["rss_mib"].get<double>(),
              row["server_cpu_us_per_op"].get<double>(),
              static_cast<unsigned long long>(row["errors"].get<uint64_t>()));
  std::fflush(stdout);
}

// ---- 1. Writes ----

Json RunWrites(const Config& cfg, std::vector<System>& systems, Json& targets) {
  Json rows = Json::array();
  for (auto [key_bytes, value_bytes] : {std::pair<size_t, size_t>{8, 256}, std::pair<size_t, size_t>{16, 1024}}) {
    const std::string value = Payload(value_bytes, 1);
    for (int clients : cfg.write_clients) {
      std::map<std::string, Json> by_system;
      for (System& s : systems) {
        std::fprintf(stderr, "  write %zuB/%zuB, %d clients, %s for %.1f s...\n", key_bytes, value_bytes, clients,
                     s.target->name().c_str(), cfg.seconds);
        std::vector<std::mt19937_64> rngs;
        for (int t = 0; t < clients; ++t) rngs.emplace_back(1000 + t);
        Json row = Measure(
            s,
            [&] {
              return RunClosedLoop(clients, cfg.seconds, [&](int t, uint64_t) {
                const uint64_t k = rngs[t]() % cfg.write_keys_max;
                return s.target->Put(t, FixedKey(key_bytes, k), value);
              });
            },
            /*histogram=*/true);
        row.update({{"phase", "write"}, {"key_bytes", key_bytes}, {"value_bytes", value_bytes}, {"clients", clients}});
        PrintRow("write " + std::to_string(key_bytes) + "B/" + std::to_string(value_bytes) +
                     "B c=" + std::to_string(clients),
                 row);
        by_system[s.target->name()] = row;
        rows.push_back(row);
      }
      if (by_system.count("bulwark") && by_system.count("etcd")) {
        const Json& b = by_system["bulwark"];
        const Json& e = by_system["etcd"];
        const double ratio = e["ops_s"].get<double>() > 0 ? b["ops_s"].get<double>() / e["ops_s"].get<double>() : 0;
        const bool p99_ok = b["p99_ms"].get<double>() <= e["p99_ms"].get<double>();
        targets.push_back({{"name", "replicated durable writes " + std::to_string(key_bytes) + "B/" +
                                        std::to_string(value_bytes) + "B, " + std::to_string(clients) + " clients"},
                           {"figure", b["ops_s"]},
                           {"baseline", e["ops_s"]},
                           {"ratio", ratio},
                           {"bulwark_p99_ms", b["p99_ms"]},
                           {"etcd_p99_ms", e["p99_ms"]},
                           {"target", ">= 2x etcd ops/s, p99 no worse"},
                           {"met", ratio >= kWriteRatioTarget && p99_ok}});
      }
    }
  }
  return rows;
}

// ---- Loading records (for the reads and YCSB) ----

Status Load(const Config& cfg, System& s, const std::string& value) {
  std::fprintf(stderr, "  loading %llu records of %zu B into %s...\n", static_cast<unsigned long long>(cfg.records),
               cfg.record_bytes, s.target->name().c_str());
  std::atomic<uint64_t> next{0}, failed{0};
  std::vector<std::thread> threads;
  const int clients = std::min(s.connected, cfg.ycsb_clients);
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t k = next++; k < cfg.records; k = next++) {
        if (!s.target->Put(t, YcsbKey(k), value)) ++failed;
      }
    });
  }
  for (auto& th : threads) th.join();
  if (failed > 0) return Status::Unavailable(std::to_string(failed.load()) + " loads failed");
  return Status::Ok();
}

// ---- 2. Reads ----

Json RunReads(const Config& cfg, std::vector<System>& systems) {
  Json rows = Json::array();
  struct Level {
    const char* bulwark;
    const char* etcd;  // null: etcd has no such level, the run is skipped
    ReadLevel level;
  };
  const Level levels[] = {{"strong", "linearizable", ReadLevel::kStrong},
                          {"session", "serializable", ReadLevel::kSession},
                          {"eventual", nullptr, ReadLevel::kEventual}};
  for (int clients : cfg.read_clients) {
    for (const Level& l : levels) {
      for (System& s : systems) {
        const bool is_etcd = s.target->name() == "etcd";
        if (is_etcd && l.etcd == nullptr) continue;  // etcd's serializable read already ran
        const std::string level = is_etcd ? l.etcd : l.bulwark;
        std::fprintf(stderr, "  read %s, %d clients, %s for %.1f s...\n", level.c_str(), clients,
                     s.target->name().c_str(), cfg.seconds);
        std::vector<std::mt19937_64> rngs;
        for (int t = 0; t < clients; ++t) rngs.emplace_back(2000 + t);
        Json row = Measure(
            s,
            [&] {
              return RunClosedLoop(clients, cfg.seconds, [&](int t, uint64_t) {
                return s.target->Get(t, YcsbKey(rngs[t]() % cfg.records), l.level);
              });
            },
            /*histogram=*/true);
        row.update({{"phase", "read"}, {"level", level}, {"clients", clients}, {"value_bytes", cfg.record_bytes}});
        PrintRow("read " + level + " c=" + std::to_string(clients), row);
        rows.push_back(row);
      }
    }
  }
  return rows;
}

// ---- 3. YCSB ----

// One YCSB request of client `t`: reads are Strong (etcd: linearizable), the
// comparable guarantee on both systems.
bool YcsbRequest(KvTarget& target, YcsbChooser& chooser, std::mt19937_64& rng, int t, const std::string& value) {
  switch (chooser.NextOp(rng)) {
    case YcsbOp::kRead:
      return target.Get(t, YcsbKey(chooser.NextKey(rng)), ReadLevel::kStrong);
    case YcsbOp::kUpdate:
      return target.Put(t, YcsbKey(chooser.NextKey(rng)), value);
    case YcsbOp::kInsert:
      return target.Put(t, YcsbKey(chooser.ClaimInsert()), value);
    case YcsbOp::kReadModifyWrite: {
      const std::string key = YcsbKey(chooser.NextKey(rng));
      return target.Get(t, key, ReadLevel::kStrong) && target.Put(t, key, value);
    }
  }
  return false;
}

Json RunYcsb(const Config& cfg, std::vector<System>& systems, const std::string& value) {
  Json rows = Json::array();
  for (const YcsbWorkload& w : kYcsbWorkloads) {
    for (const bool saturation : {false, true}) {
      const int clients = saturation ? cfg.ycsb_clients : cfg.ycsb_open_clients;
      for (System& s : systems) {
        std::fprintf(stderr, "  YCSB %c %s, %s for %.1f s...\n", w.name,
                     saturation ? "at saturation" : "at the fixed load", s.target->name().c_str(), cfg.ycsb_seconds);
        YcsbChooser chooser(w, cfg.records, static_cast<uint64_t>(clients));
        std::vector<std::mt19937_64> rngs;
        for (int t = 0; t < clients; ++t) rngs.emplace_back(3000 + t);
        auto op = [&](int t, uint64_t) { return YcsbRequest(*s.target, chooser, rngs[t], t, value); };
        Json row = Measure(
            s,
            [&] {
              return saturation ? RunClosedLoop(clients, cfg.ycsb_seconds, op)
                                : RunOpenLoop(clients, cfg.ycsb_rate_ops_s, cfg.ycsb_seconds, op);
            },
            /*histogram=*/true);
        row.update({{"phase", "ycsb"},
                    {"workload", std::string(1, w.name)},
                    {"load", saturation ? "saturation" : "fixed"},
                    {"offered_ops_s", saturation ? 0.0 : cfg.ycsb_rate_ops_s},
                    {"clients", clients}});
        PrintRow(std::string("ycsb ") + w.name + (saturation ? " saturated c=" : " fixed c=") + std::to_string(clients),
                 row);
        rows.push_back(row);
      }
    }
  }
  return rows;
}

void AddOptions(CLI::App& app, Config& cfg) {
  app.add_option("--seconds", cfg.seconds, "seconds per write and read run");
  app.add_option("--write-clients", cfg.write_clients, "client counts of the write runs");
  app.add_option("--read-clients", cfg.read_clients, "client counts of the read runs");
  app.add_option("--write-keys", cfg.write_keys_max, "key space of the write runs");
  app.add_option("--records", cfg.records, "records loaded for the reads and YCSB");
  app.add_option("--ycsb-seconds", cfg.ycsb_seconds, "seconds per YCSB run");
  app.add_option("--ycsb-rate", cfg.ycsb_rate_ops_s, "fixed offered load of the YCSB runs (ops/s, both systems)");
  app.add_option("--ycsb-open-clients", cfg.ycsb_open_clients, "senders of the fixed load");
  app.add_option("--ycsb-clients", cfg.ycsb_clients, "closed-loop clients of the saturation runs");
  app.add_option("--systems", cfg.systems,
                 "systems to run: etcd, bulwark, bulwark-plain (bulwarkd --benchmark-unencrypted)");
  app.add_flag("--writes-only", cfg.writes_only, "run the write phase only (no reads, no YCSB)");
  app.add_option("--dir", cfg.dir, "scratch directory, removed at exit");
  app.add_option("--etcd", cfg.etcd_binary, "etcd binary");
  app.add_option("--json", cfg.json_out, "write figures to this file");
}

// Removes the scratch directory when it goes out of scope, after the
// systems (declared later, destroyed first) have stopped their servers.
struct ScratchDir {
  std::string path;
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"Bulwark against etcd: replicated writes, reads and YCSB on loopback"};
  AddOptions(app, cfg);
  CLI11_PARSE(app, argc, argv);
  if (cfg.dir.empty()) cfg.dir = "/tmp/bulwark-compare-bench-" + std::to_string(::getpid());
  fs::remove_all(cfg.dir);
  ScratchDir scratch{cfg.dir};

  std::vector<System> systems;
  for (const std::string& name : cfg.systems) {
    std::fprintf(stderr, "starting %s...\n", name.c_str());
    Result<std::unique_ptr<KvTarget>> target = Status::InvalidArgument("unknown system '" + name + "'");
    if (name == "etcd") {
      EtcdTargetOptions options;
      options.dir = cfg.dir + "/etcd";
      options.binary = cfg.etcd_binary;
      target = StartEtcd(options);
    } else if (name == "bulwark" || name == "bulwark-plain") {
      BulwarkTargetOptions options;
      options.dir = cfg.dir + "/" + name;
      options.bin_dir = fs::read_symlink("/proc/self/exe").parent_path().string();
      if (name == "bulwark-plain") {
        // The encryption-cost baseline: the same stack with items unsealed
        // on unencrypted files, on addresses of its own.
        options.unencrypted = true;
        options.ip = "127.0.15.1";
        options.port = 7650;
      }
      target = StartBulwark(options);
    }
    if (!target.ok()) {
      std::cerr << "cannot start " << name << ": " << target.status().ToString() << "\n";
      return 1;
    }
    systems.push_back({std::move(target).value(), 0});
  }
  // Every client the runs will use, connected once: a run uses clients
  // 0..n-1, which are spread over the servers round robin.
  int clients_max = std::max(cfg.ycsb_clients, cfg.ycsb_open_clients);
  for (int n : cfg.write_clients) clients_max = std::max(clients_max, n);
  for (int n : cfg.read_clients) clients_max = std::max(clients_max, n);
  for (System& s : systems) {
    std::fprintf(stderr, "connecting %d clients to %s...\n", clients_max, s.target->name().c_str());
    if (Status st = s.target->Connect(clients_max); !st.ok()) {
      std::cerr << "cannot connect to " << s.target->name() << ": " << st.ToString() << "\n";
      return 1;
    }
    s.connected = clients_max;
  }

  Json out = {{"benchmark", "compare"}, {"seconds", cfg.seconds},           {"ycsb_seconds", cfg.ycsb_seconds},
              {"records", cfg.records}, {"record_bytes", cfg.record_bytes}, {"zipfian_constant", 0.99}};
  for (System& s : systems) out["systems"][s.target->name()] = s.target->description();
  std::printf("%-30s %-8s %9s %8s %8s %8s %7s %7s %6s\n", "run", "system", "ops/s", "p50 ms", "p99 ms", "p99.9 ms",
              "RSS MiB", "cpu us", "errors");
  std::fflush(stdout);
  Json targets = Json::array();
  out["writes"] = RunWrites(cfg, systems, targets);
  if (cfg.writes_only) {
    systems.clear();
    if (!cfg.json_out.empty()) {
      std::ofstream(cfg.json_out) << out.dump(1) << "\n";
      std::cout << "wrote " << cfg.json_out << "\n";
    }
    return 0;
  }
  const std::string record = Payload(cfg.record_bytes, 2);
  for (System& s : systems) {
    if (Status st = Load(cfg, s, record); !st.ok()) {
      std::cerr << "loading " << s.target->name() << " failed: " << st.ToString() << "\n";
      return 1;
    }
  }
  out["reads"] = RunReads(cfg, systems);
  out["ycsb"] = RunYcsb(cfg, systems, record);
  out["targets"] = targets;
  if (!targets.empty()) {
    std::printf("\ntargets (printed, not asserted):\n");
    for (const Json& t : targets) {
      std::printf("  %-52s %8.0f vs %8.0f ops/s = %5.2fx, p99 %.1f vs %.1f ms: %s\n",
                  t["name"].get<std::string>().c_str(), t["figure"].get<double>(), t["baseline"].get<double>(),
                  t["ratio"].get<double>(), t["bulwark_p99_ms"].get<double>(), t["etcd_p99_ms"].get<double>(),
                  t["met"].get<bool>() ? "met" : "missed");
    }
  }
  systems.clear();  // stops the servers before the scratch directory goes
  if (!cfg.json_out.empty()) {
    std::ofstream(cfg.json_out) << out.dump(1) << "\n";
    std::cout << "wrote " << cfg.json_out << "\n";
  }
  return 0;
}
