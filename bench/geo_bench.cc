// geo-bench: two regions of four real bulwarkd nodes each (127.0.1.x and
// 127.0.2.x, TLS, fsync on), with a one-way delay on the region stream (the
// WAN stand-in; default 20 ms), once per consistency level as the account
// default. For each level it prints:
//   - write ops/s and p50/p99 latency (closed loop, writers in r1);
//   - read ops/s in the remote region r2 at that level (closed loop);
//   - replication lag p50/p99, in writes and in ms, sampled from the write
//     region leader's view of r2 every 50 ms.
// Strong is the baseline the other levels' write throughput is divided by:
// it pays a cross-region round trip per write, the others do not.
// Progress goes to stderr. Nothing here asserts a time.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "chaos/local_account.h"
#include "client/client.h"
#include "common/consistency.h"

using namespace bulwark;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Config {
  int writers = 16;
  int readers = 8;
  double seconds = 10;
  int delay_ms = 20;
  int value_bytes = 256;
  int keys = 1000;
  std::string json_path;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

struct LevelFigures {
  std::string level;
  double write_ops = 0, write_p50_ms = 0, write_p99_ms = 0;
  uint64_t write_errors = 0;
  double read_ops = 0, read_p50_ms = 0, read_p99_ms = 0;
  uint64_t read_errors = 0;
  double lag_writes_p50 = 0, lag_writes_p99 = 0, lag_ms_p50 = 0, lag_ms_p99 = 0;
};

Result<LevelFigures> RunLevel(const Config& cfg, ConsistencyLevel level, const std::string& bin_dir) {
  const fs::path dir = fs::temp_directory_path() / ("bulwark-geo-bench-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  chaos::AccountOptions o;
  o.dir = dir.string();
  o.bin_dir = bin_dir;
  o.regions = 2;
  o.nodes = 4;
  o.port = 7300;
  o.metrics_port = 0;
  o.consistency = std::string(ConsistencyName(level));
  o.link_delay = std::chrono::milliseconds(cfg.delay_ms);
  BULWARK_ASSIGN_OR_RETURN(auto account, chaos::LocalAccount::Prepare(o));
  struct Cleanup {
    chaos::LocalAccount* a;
    fs::path dir;
    ~Cleanup() {
      (void)a->Stop(std::chrono::seconds(10));
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{account.get(), dir};
  BULWARK_RETURN_IF_ERROR(account->Start());
  BULWARK_ASSIGN_OR_RETURN(auto setup, client::Client::Connect(account->client_options(1)));
  BULWARK_RETURN_IF_ERROR(setup->CreateDatabase("bench").status());
  BULWARK_RETURN_IF_ERROR(setup->CreateContainer("bench", "items", "/pk").status());
  const std::string value(static_cast<size_t>(cfg.value_bytes), 'x');
  auto doc = [&](int k, int v) {
    return json{{"id", "k" + std::to_string(k)}, {"pk", "p" + std::to_string(k % 16)}, {"v", v}, {"pad", value}}.dump();
  };
  // Every key exists before reads start (16 loaders: under Strong each
  // write waits for a cross-region round trip).
  {
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> loaders;
    for (int l = 0; l < 16; ++l) {
      loaders.emplace_back([&] {
        auto c = client::Client::Connect(account->client_options(1));
        if (!c.ok()) {
          failed = true;
          return;
        }
        for (int k = next++; k < cfg.keys; k = next++) {
          if (!(*c)->UpsertItem("bench", "items", doc(k, 0)).ok()) failed = true;
        }
      });
    }
    for (auto& t : loaders) t.join();
    if (failed) return Status::Unavailable("loading the keys failed");
  }

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<double> write_lat, read_lat;
  std::atomic<uint64_t> write_errors{0}, read_errors{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < cfg.writers; ++w) {
    threads.emplace_back([&, w] {
      auto c = client::Client::Connect(account->client_options(1));
      if (!c.ok()) return;
      std::vector<double> mine;
      for (int i = 0; !stop.load(); ++i) {
        const int k = (w * 7919 + i * 31) % cfg.keys;
        const auto t0 = std::chrono::steady_clock::now();
        auto r = (*c)->UpsertItem("bench", "items", doc(k, i));
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (r.ok()) {
          mine.push_back(ms);
        } else {
          ++write_errors;
        }
      }
      std::lock_guard lock(mu);
      write_lat.insert(write_lat.end(), mine.begin(), mine.end());
    });
  }
  for (int rdr = 0; rdr < cfg.readers; ++rdr) {
    threads.emplace_back([&, rdr] {
      auto c = client::Client::Connect(account->client_options(2));
      if (!c.ok()) return;
      std::vector<double> mine;
      for (int i = 0; !stop.load(); ++i) {
        const int k = (rdr * 104729 + i * 17) % cfg.keys;
        const auto t0 = std::chrono::steady_clock::now();
        client::ReadOptions ro;
        ro.consistency = level;
        auto r = (*c)->ReadItem("bench", "items", "\"p" + std::to_string(k % 16) + "\"", "k" + std::to_string(k), ro);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (r.ok()) {
          mine.push_back(ms);
        } else {
          ++read_errors;
        }
      }
      std::lock_guard lock(mu);
      read_lat.insert(read_lat.end(), mine.begin(), mine.end());
    });
  }
  // The lag as the write region's leader sees it.
  std::vector<double> lag_writes, lag_ms;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(cfg.seconds);
  auto last_progress = start;
  while (std::chrono::steady_clock::now() < end) {
    const int lead = account->region(1).Leader();
    if (lead != 0) {
      client::ClientOptions one = account->region(1).node_client_options(lead);
      one.max_retries = 0;
      one.deadline = std::chrono::seconds(1);
      auto c = client::Client::Connect(one);
      if (c.ok()) {
        auto s = (*c)->GetStatus();
        if (s.ok() && !s->regions.empty()) {
          lag_writes.push_back(static_cast<double>(s->regions.front().lag_writes));
          lag_ms.push_back(s->regions.front().lag_seconds * 1000);
        }
      }
    }
    if (std::chrono::steady_clock::now() - last_progress >= std::chrono::seconds(2)) {
      last_progress = std::chrono::steady_clock::now();
      std::lock_guard lock(mu);
      std::cerr << "  " << ConsistencyName(level) << ": "
                << std::chrono::duration_cast<std::chrono::seconds>(last_progress - start).count() << "/" << cfg.seconds
                << " s\n";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop = true;
  for (auto& t : threads) t.join();
  LevelFigures f;
  f.level = std::string(ConsistencyName(level));
  f.write_ops = static_cast<double>(write_lat.size()) / elapsed;
  f.write_p50_ms = Percentile(write_lat, 0.5);
  f.write_p99_ms = Percentile(write_lat, 0.99);
  f.write_errors = write_errors.load();
  f.read_ops = static_cast<double>(read_lat.size()) / elapsed;
  f.read_p50_ms = Percentile(read_lat, 0.5);
  f.read_p99_ms = Percentile(read_lat, 0.99);
  f.read_errors = read_errors.load();
  f.lag_writes_p50 = Percentile(lag_writes, 0.5);
  f.lag_writes_p99 = Percentile(lag_writes, 0.99);
  f.lag_ms_p50 = Percentile(lag_ms, 0.5);
  f.lag_ms_p99 = Percentile(lag_ms, 0.99);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"geo-bench: two regions, each consistency level, with a WAN delay between them"};
  app.add_option("--writers", cfg.writers, "closed-loop writers in r1")->check(CLI::Range(1, 256));
  app.add_option("--readers", cfg.readers, "closed-loop readers in r2")->check(CLI::Range(0, 256));
  app.add_option("--seconds", cfg.seconds, "measured seconds per level")->check(CLI::Range(1.0, 600.0));
  app.add_option("--delay-ms", cfg.delay_ms, "one-way delay between the regions")->check(CLI::Range(0, 1000));
  app.add_option("--json", cfg.json_path, "also write the figures here");
  CLI11_PARSE(app, argc, argv);
  const std::string bin_dir = fs::canonical("/proc/self/exe").parent_path().string();
  std::vector<LevelFigures> rows;
  for (auto level : {ConsistencyLevel::kStrong, ConsistencyLevel::kBoundedStaleness, ConsistencyLevel::kSession,
                     ConsistencyLevel::kConsistentPrefix, ConsistencyLevel::kEventual}) {
    std::cerr << "== " << ConsistencyName(level) << " (2 regions x 4 nodes, " << cfg.delay_ms << " ms one way, "
              << cfg.writers << " writers in r1, " << cfg.readers << " readers in r2)\n";
    auto f = RunLevel(cfg, level, bin_dir);
    if (!f.ok()) {
      std::cerr << "geo-bench: " << ConsistencyName(level) << ": " << f.status().ToString() << "\n";
      return 1;
    }
    rows.push_back(*f);
  }
  const double strong_ops = rows.front().write_ops;
  std::printf("\n%-17s %10s %8s %8s %7s %10s %8s %8s %11s %11s %9s %9s\n", "level", "write/s", "w p50", "w p99",
              "x Strong", "r2 read/s", "r p50", "r p99", "lag p50 (w)", "lag p99 (w)", "lag p50", "lag p99");
  json out = json::array();
  for (const auto& f : rows) {
    std::printf("%-17s %10.0f %6.1fms %6.1fms %7.2f %10.0f %6.1fms %6.1fms %11.0f %11.0f %7.0fms %7.0fms\n",
                f.level.c_str(), f.write_ops, f.write_p50_ms, f.write_p99_ms,
                strong_ops > 0 ? f.write_ops / strong_ops : 0.0, f.read_ops, f.read_p50_ms, f.read_p99_ms,
                f.lag_writes_p50, f.lag_writes_p99, f.lag_ms_p50, f.lag_ms_p99);
    if (f.write_errors + f.read_errors > 0) {
      std::printf("  (%s: %llu write errors, %llu read errors: refused reads are not counted as served)\n",
                  f.level.c_str(), static_cast<unsigned long long>(f.write_errors),
                  static_cast<unsigned long long>(f.read_errors));
    }
    out.push_back({{"level", f.level},
                   {"write_ops", f.write_ops},
                   {"write_p50_ms", f.write_p50_ms},
                   {"write_p99_ms", f.write_p99_ms},
                   {"write_errors", f.write_errors},
                   {"read_ops_r2", f.read_ops},
                   {"read_p50_ms", f.read_p50_ms},
                   {"read_p99_ms", f.read_p99_ms},
                   {"read_errors", f.read_errors},
                   {"lag_writes_p50", f.lag_writes_p50},
                   {"lag_writes_p99", f.lag_writes_p99},
                   {"lag_ms_p50", f.lag_ms_p50},
                   {"lag_ms_p99", f.lag_ms_p99}});
  }
  if (!cfg.json_path.empty()) {
    std::ofstream(cfg.json_path) << json{{"delay_ms_one_way", cfg.delay_ms},
                                         {"writers", cfg.writers},
                                         {"readers", cfg.readers},
                                         {"seconds", cfg.seconds},
                                         {"levels", out}}
                                        .dump(2)
                                 << "\n";
  }
  return 0;
}
