// load-bench: a closed-loop load generator over the client library.
//
// Starts a bulwarkd node (TLS, fsync on) through LocalCluster in a scratch
// directory, then for 1, 16 and 64 concurrent clients runs point writes
// (upserts of 1 KiB items) and point reads of those items, each client
// sending its next request when the previous one returns. Prints ops/s and
// p50/p99/p99.9 latency as a table, and writes JSON.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "chaos/local_cluster.h"
#include "client/client.h"

namespace fs = std::filesystem;
using namespace bulwark;
using Clock = std::chrono::steady_clock;

namespace {

struct Config {
  std::vector<int> clients = {1, 16, 64};
  double seconds = 5;
  size_t value_bytes = 1024;
  std::string dir = "/tmp/bulwark-load-bench";
  std::string ip = "127.0.1.200";
  int port = 7300;
  std::string json_out;
};

struct Figures {
  double ops_s = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;
  size_t errors = 0;
};

std::string Payload(size_t bytes) {
  std::string s;
  std::mt19937 rng(1);
  while (s.size() < bytes) s.push_back(static_cast<char>('a' + rng() % 26));
  return s;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

// Runs `op(client, thread, i)` in a closed loop on `n` clients for `seconds`.
template <typename Op>
Figures ClosedLoop(const client::ClientOptions& options, int n, double seconds, Op op) {
  std::vector<std::vector<double>> latencies(n);
  std::atomic<size_t> errors{0};
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      auto c = client::Client::Connect(options);
      if (!c.ok()) {
        ++errors;
        return;
      }
      while (!go) std::this_thread::yield();
      for (uint64_t i = 0; !stop; ++i) {
        const auto start = Clock::now();
        if (!op(**c, t, i)) ++errors;
        latencies[t].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
    });
  }
  const auto begin = Clock::now();
  go = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  Figures f;
  f.ops_s = static_cast<double>(all.size()) / elapsed;
  f.p50_ms = Percentile(all, 0.50);
  f.p99_ms = Percentile(all, 0.99);
  f.p999_ms = Percentile(all, 0.999);
  f.errors = errors;
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"Bulwark load benchmark: closed-loop point writes and reads over the client library"};
  app.add_option("--clients", cfg.clients, "concurrent client counts");
  app.add_option("--seconds", cfg.seconds, "seconds per phase");
  app.add_option("--value-bytes", cfg.value_bytes, "item size");
  app.add_option("--dir", cfg.dir, "scratch directory (the node's data)");
  app.add_option("--ip", cfg.ip, "loopback address for the node");
  app.add_option("--port", cfg.port, "port for the node");
  app.add_option("--json", cfg.json_out, "write figures to this file");
  CLI11_PARSE(app, argc, argv);

  fs::remove_all(cfg.dir);
  chaos::ClusterOptions options;
  options.dir = cfg.dir;
  options.bin_dir = fs::read_symlink("/proc/self/exe").parent_path().string();
  options.ip = cfg.ip;
  options.port = cfg.port;
  options.metrics_port = 0;
  auto cluster = chaos::LocalCluster::Prepare(options);
  if (!cluster.ok() || !(*cluster)->Start().ok()) {
    std::cerr << "cannot start a node in " << cfg.dir << "; see " << cfg.dir << "/node-1/bulwarkd.log\n";
    return 1;
  }
  const auto client_options = (*cluster)->client_options();
  auto admin = client::Client::Connect(client_options);
  (void)(*admin)->CreateDatabase("bench");
  (void)(*admin)->CreateContainer("bench", "items", "/pk");

  const std::string payload = Payload(cfg.value_bytes > 80 ? cfg.value_bytes - 80 : 1);
  auto doc = [&](int t, uint64_t i) {
    return "{\"id\":\"c" + std::to_string(t) + "-" + std::to_string(i % 10000) + "\",\"pk\":\"p" +
           std::to_string(t) + "\",\"v\":\"" + payload + "\"}";
  };
  std::ostringstream json;
  json << "{\n  \"benchmark\": \"load\",\n  \"value_bytes\": " << cfg.value_bytes << ",\n  \"results\": [";
  bool first = true;
  std::printf("%-6s %-8s %10s %9s %9s %9s %7s\n", "op", "clients", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "errors");
  for (int n : cfg.clients) {
    std::vector<uint64_t> written(static_cast<size_t>(n), 0);
    std::fprintf(stderr, "  writes with %d clients for %.0f s...\n", n, cfg.seconds);
    Figures w = ClosedLoop(client_options, n, cfg.seconds, [&](client::Client& c, int t, uint64_t i) {
      written[static_cast<size_t>(t)] = std::max(written[static_cast<size_t>(t)], std::min<uint64_t>(i + 1, 10000));
      return c.UpsertItem("bench", "items", doc(t, i)).ok();
    });
    std::fprintf(stderr, "  reads with %d clients for %.0f s...\n", n, cfg.seconds);
    Figures r = ClosedLoop(client_options, n, cfg.seconds, [&](client::Client& c, int t, uint64_t i) {
      const uint64_t count = std::max<uint64_t>(written[static_cast<size_t>(t)], 1);
      const std::string id = "c" + std::to_string(t) + "-" + std::to_string((i * 7919) % count);
      return c.ReadItem("bench", "items", "\"p" + std::to_string(t) + "\"", id).ok();
    });
    for (const auto& [name, f] : {std::pair<const char*, Figures>{"write", w}, {"read", r}}) {
      std::printf("%-6s %-8d %10.0f %9.2f %9.2f %9.2f %7zu\n", name, n, f.ops_s, f.p50_ms, f.p99_ms, f.p999_ms,
                  f.errors);
      json << (first ? "\n" : ",\n") << "    {\"op\": \"" << name << "\", \"clients\": " << n
           << ", \"ops_s\": " << f.ops_s << ", \"p50_ms\": " << f.p50_ms << ", \"p99_ms\": " << f.p99_ms
           << ", \"p999_ms\": " << f.p999_ms << ", \"errors\": " << f.errors << "}";
      first = false;
    }
  }
  json << "\n  ]\n}\n";
  (void)(*cluster)->Stop();
  if (!cfg.json_out.empty()) {
    std::ofstream(cfg.json_out) << json.str();
    std::cout << "wrote " << cfg.json_out << "\n";
  }
  return 0;
}
