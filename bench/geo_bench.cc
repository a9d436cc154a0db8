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
//
// --failovers N: planned failovers instead (`bulwark failover`), N per level
// (Strong, Session, Eventual), alternating r1 -> r2 -> r1 under the writers'
// load. For each: the write gap (the longest time with no acknowledged write,
// from the failover request until 2 s after the target took over: what a
// client sees, retries included, over all writers' acknowledgements
// together) and the command's own time; then RPO, the
// acknowledged writes (each a new item) missing from either region at the
// end. Median and max over the N.
//
// --cutoffs N: write-region cutoffs instead (automatic failover), N per
// level (Strong, BoundedStaleness, Session, Eventual), on two regions plus a
// control group witness. Each cuts the write region off from the other
// region and the witness with nftables rules (needs root), under the
// writers' load, until the other region takes the writes over; then heals
// and waits for the old one to rejoin. RTO: from the cut to the first write
// acknowledged at the new epoch (the session token names it). RPO: the
// acknowledged writes missing at the end, in both regions: under Session and
// Eventual, what the cut-off region acknowledged in its last lease that never
// reached the other (they await the conflict feed); none under Strong.
// Progress goes to stderr. Nothing here asserts a time.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "chaos/local_account.h"
#include "chaos/nftables.h"
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
  int failovers = 0;
  int cutoffs = 0;
  int grace_ms = 5000;  // --cutoffs: the control group's grace period
  int lease_ms = 2500;
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

// Two regions of four nodes at `level` with cfg's WAN delay, database
// "bench" and container "items" created; stopped and removed when dropped.
struct BenchAccount {
  std::unique_ptr<chaos::LocalAccount> account;
  fs::path dir;
  ~BenchAccount() {
    if (account) (void)account->Stop(std::chrono::seconds(10));
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

Result<std::unique_ptr<BenchAccount>> StartAccount(const Config& cfg, ConsistencyLevel level,
                                                   const std::string& bin_dir, bool witness = false) {
  auto bench = std::make_unique<BenchAccount>();
  bench->dir = fs::temp_directory_path() / ("bulwark-geo-bench-" + std::to_string(::getpid()));
  fs::remove_all(bench->dir);
  chaos::AccountOptions o;
  o.dir = bench->dir.string();
  o.bin_dir = bin_dir;
  o.regions = 2;
  o.nodes = 4;
  o.port = 7300;
  o.metrics_port = 0;
  o.consistency = std::string(ConsistencyName(level));
  o.link_delay = std::chrono::milliseconds(cfg.delay_ms);
  o.witness = witness;
  o.control_grace_ms = cfg.grace_ms;
  o.control_lease_ms = cfg.lease_ms;
  BULWARK_ASSIGN_OR_RETURN(bench->account, chaos::LocalAccount::Prepare(o));
  BULWARK_RETURN_IF_ERROR(bench->account->Start());
  BULWARK_ASSIGN_OR_RETURN(auto setup, client::Client::Connect(bench->account->client_options(1)));
  BULWARK_RETURN_IF_ERROR(setup->CreateDatabase("bench").status());
  BULWARK_RETURN_IF_ERROR(setup->CreateContainer("bench", "items", "/pk").status());
  return bench;
}

Result<LevelFigures> RunLevel(const Config& cfg, ConsistencyLevel level, const std::string& bin_dir) {
  BULWARK_ASSIGN_OR_RETURN(auto bench, StartAccount(cfg, level, bin_dir));
  chaos::LocalAccount* account = bench->account.get();
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

struct FailoverFigures {
  std::string level;
  std::vector<double> gap_ms, command_ms;
  uint64_t acked = 0, lost = 0, write_errors = 0;
};

// Writer `w` of a failover benchmark: upserts new items (each once, under
// its own request id, so a retry across the failover applies once) with
// `options` until `stop`, handing each outcome to `done` (called under no
// lock).
void WriteNewItems(const client::ClientOptions& options, const std::string& pad, int w, const std::atomic<bool>& stop,
                   const std::function<void(const std::string& id, const Result<client::Item>&)>& done) {
  auto c = client::Client::Connect(options);
  if (!c.ok()) return;
  for (int i = 0; !stop.load(); ++i) {
    const std::string id = "w" + std::to_string(w) + "-" + std::to_string(i);
    const std::string doc = json{{"id", id}, {"pk", "p" + std::to_string(w)}, {"v", i}, {"pad", pad}}.dump();
    done(id, (*c)->UpsertItem("bench", "items", doc, "req-" + id));
  }
}

// Once the regions agree (their furthest nodes at one GLSN, within 60 s):
// the acknowledged writes either region lacks (each counted once).
Result<uint64_t> LostWrites(chaos::LocalAccount* account, const std::vector<std::string>& acked_ids) {
  using Clock = std::chrono::steady_clock;
  // The node of each region furthest along, once the regions agree.
  auto furthest = [&](int r) -> std::pair<int, uint64_t> {
    std::pair<int, uint64_t> best{1, 0};
    for (int i = 1; i <= account->region(r).size(); ++i) {
      client::ClientOptions one = account->region(r).node_client_options(i);
      one.max_retries = 0;
      auto c = client::Client::Connect(one);
      if (!c.ok()) continue;
      auto s = (*c)->GetStatus();
      if (s.ok() && s->glsn > best.second) best = {i, s->glsn};
    }
    return best;
  };
  const auto converge_by = Clock::now() + std::chrono::seconds(60);
  while (furthest(1).second != furthest(2).second && Clock::now() < converge_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (furthest(1).second != furthest(2).second) return Status::DeadlineExceeded("the regions did not converge in 60 s");
  // An acknowledged write is lost if either region lacks it (counted once).
  std::set<std::string> missing;
  for (int r = 1; r <= 2; ++r) {
    client::ClientOptions one = account->region(r).node_client_options(furthest(r).first);
    BULWARK_ASSIGN_OR_RETURN(auto c, client::Client::Connect(one));
    std::set<std::string> present;
    client::ListOptions lo;
    lo.consistency = ConsistencyLevel::kEventual;
    lo.max_items = 1000;
    for (;;) {
      BULWARK_ASSIGN_OR_RETURN(auto page, c->ListItems("bench", "items", lo));
      for (const auto& item : page.items) present.insert(json::parse(item).at("id").get<std::string>());
      if (page.continuation.empty()) break;
      lo.continuation = page.continuation;
    }
    for (const auto& id : acked_ids) {
      if (present.count(id) == 0) missing.insert(id);
    }
  }
  return missing.size();
}

Result<FailoverFigures> RunFailovers(const Config& cfg, ConsistencyLevel level, const std::string& bin_dir) {
  BULWARK_ASSIGN_OR_RETURN(auto bench, StartAccount(cfg, level, bin_dir));
  chaos::LocalAccount* account = bench->account.get();
  BULWARK_ASSIGN_OR_RETURN(auto admin, client::Client::Connect(account->client_options(1)));
  const std::string pad(static_cast<size_t>(cfg.value_bytes), 'x');
  using Clock = std::chrono::steady_clock;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<Clock::time_point> acks;
  std::vector<std::string> acked_ids;
  std::atomic<uint64_t> errors{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < cfg.writers; ++w) {
    writers.emplace_back([&, w] {
      // The default client: it retries through a failover's short window.
      WriteNewItems(account->client_options(1), pad, w, stop,
                    [&](const std::string& id, const Result<client::Item>& r) {
                      std::lock_guard lock(mu);
                      if (r.ok()) {
                        acks.push_back(Clock::now());
                        acked_ids.push_back(id);
                      } else {
                        ++errors;
                      }
                    });
    });
  }
  FailoverFigures f;
  f.level = std::string(ConsistencyName(level));
  std::vector<std::pair<Clock::time_point, Clock::time_point>> windows;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  for (int n = 0; n < cfg.failovers; ++n) {
    const std::string to = n % 2 == 0 ? "r2" : "r1";
    const auto t0 = Clock::now();
    auto moved = admin->Failover(to, std::chrono::seconds(30));
    const auto t1 = Clock::now();
    if (!moved.ok()) {
      stop = true;
      for (auto& t : writers) t.join();
      return moved.status().WithContext("failover " + std::to_string(n + 1) + " to " + to);
    }
    f.command_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    windows.push_back({t0, t1 + std::chrono::seconds(2)});
    std::this_thread::sleep_for(std::chrono::seconds(2));
    std::cerr << "  " << f.level << ": failover " << n + 1 << "/" << cfg.failovers << " to " << to << " in "
              << static_cast<int>(f.command_ms.back()) << " ms\n";
  }
  stop = true;
  for (auto& t : writers) t.join();
  std::sort(acks.begin(), acks.end());
  for (const auto& [from, until] : windows) {
    Clock::time_point last = from;
    double gap = 0;
    for (auto it = std::lower_bound(acks.begin(), acks.end(), from); it != acks.end() && *it <= until; ++it) {
      gap = std::max(gap, std::chrono::duration<double, std::milli>(*it - last).count());
      last = *it;
    }
    gap = std::max(gap, std::chrono::duration<double, std::milli>(until - last).count());
    f.gap_ms.push_back(gap);
  }
  // RPO: every acknowledged item, in both regions, once they agree.
  f.acked = acked_ids.size();
  f.write_errors = errors.load();
  BULWARK_ASSIGN_OR_RETURN(f.lost, LostWrites(account, acked_ids));
  return f;
}

struct CutoffFigures {
  std::string level;
  std::vector<double> rto_ms;
  uint64_t acked = 0, lost = 0, write_errors = 0;
};

// The epoch a session token ("0:E#G") names; 0 if it names none.
uint64_t TokenEpoch(const std::string& token) {
  const auto colon = token.find(':'), hash = token.find('#');
  if (colon == std::string::npos || hash == std::string::npos || hash < colon) return 0;
  try {
    return std::stoull(token.substr(colon + 1, hash - colon - 1));
  } catch (const std::exception&) {
    return 0;
  }
}

Result<CutoffFigures> RunCutoffs(const Config& cfg, ConsistencyLevel level, const std::string& bin_dir) {
  BULWARK_ASSIGN_OR_RETURN(auto bench, StartAccount(cfg, level, bin_dir, /*witness=*/true));
  chaos::LocalAccount* account = bench->account.get();
  BULWARK_ASSIGN_OR_RETURN(auto cut, chaos::NftPartition::Open());
  const std::string pad(static_cast<size_t>(cfg.value_bytes), 'x');
  using Clock = std::chrono::steady_clock;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::pair<Clock::time_point, uint64_t>> acks;  // (when, epoch)
  std::vector<std::string> acked_ids;
  std::atomic<uint64_t> errors{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < cfg.writers; ++w) {
    writers.emplace_back([&, w] {
      client::ClientOptions o = account->client_options(1);
      // Both regions' nodes: the client finds the newest topology among them.
      for (int n = 1; n <= account->region(2).size(); ++n) o.endpoints.push_back(account->region(2).node_endpoint(n));
      o.deadline = std::chrono::seconds(5);
      WriteNewItems(o, pad, w, stop, [&](const std::string& id, const Result<client::Item>& r) {
        std::lock_guard lock(mu);
        if (r.ok()) {
          acks.push_back({Clock::now(), TokenEpoch(r->session_token)});
          acked_ids.push_back(id);
        } else {
          ++errors;
        }
      });
    });
  }
  auto stop_writers = [&] {
    stop = true;
    for (auto& t : writers) t.join();
  };
  // Node i of region r's status (one node, no retries).
  auto status_of = [&](int r, int i) -> Result<client::NodeStatus> {
    client::ClientOptions one = account->region(r).node_client_options(i);
    one.max_retries = 0;
    one.deadline = std::chrono::seconds(2);
    BULWARK_ASSIGN_OR_RETURN(auto c, client::Client::Connect(one));
    return c->GetStatus();
  };
  // Every running node of region r at `epoch` with write region `write`.
  auto region_at = [&](int r, const std::string& write, uint64_t epoch) {
    for (int i = 1; i <= account->region(r).size(); ++i) {
      auto s = status_of(r, i);
      if (!s.ok() || s->epoch != epoch || s->write_region != write) return false;
    }
    return true;
  };
  CutoffFigures f;
  f.level = std::string(ConsistencyName(level));
  std::this_thread::sleep_for(std::chrono::seconds(3));
  int writer = 1;
  uint64_t epoch = 1;
  for (int n = 0; n < cfg.cutoffs; ++n) {
    const int other = 3 - writer;
    const std::string w_net = "127.0." + std::to_string(writer) + ".0/24";
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const std::string& b : {"127.0." + std::to_string(other) + ".0/24", std::string(chaos::kWitnessIp)}) {
      pairs.push_back({w_net, b});
      pairs.push_back({b, w_net});
    }
    const auto cut_at = Clock::now();
    if (Status s = cut->Block(pairs); !s.ok()) {
      stop_writers();
      return s;
    }
    // The first write acknowledged at the next epoch.
    std::optional<double> rto;
    const auto give_up = cut_at + std::chrono::milliseconds(cfg.grace_ms) + std::chrono::seconds(60);
    while (!rto && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::lock_guard lock(mu);
      for (const auto& [at, e] : acks) {
        if (e > epoch && at > cut_at) {
          const double ms = std::chrono::duration<double, std::milli>(at - cut_at).count();
          rto = rto ? std::min(*rto, ms) : ms;
        }
      }
    }
    (void)cut->Heal();
    if (!rto) {
      stop_writers();
      return Status::DeadlineExceeded("cutoff " + std::to_string(n + 1) + ": no write acknowledged at epoch " +
                                      std::to_string(epoch + 1) + " within the grace period + 60 s");
    }
    f.rto_ms.push_back(*rto);
    std::cerr << "  " << f.level << ": cutoff " << n + 1 << "/" << cfg.cutoffs << " of r" << writer
              << ": writes resumed in r" << other << " after " << static_cast<int>(*rto) << " ms\n";
    ++epoch;
    const std::string new_writer = "r" + std::to_string(other);
    // The old region rejoins as a read region before the next cut.
    const auto rejoin_by = Clock::now() + std::chrono::seconds(90);
    while (!region_at(writer, new_writer, epoch) && Clock::now() < rejoin_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (!region_at(writer, new_writer, epoch)) {
      stop_writers();
      return Status::DeadlineExceeded("r" + std::to_string(writer) + " did not rejoin at epoch " +
                                      std::to_string(epoch) + " within 90 s of the heal");
    }
    // ... and is back in the strong quorum set (the new write region's
    // stream started without it): until then it may lack writes acknowledged
    // under Strong, and cannot be promoted.
    auto in_set = [&] {
      for (int i = 1; i <= account->region(other).size(); ++i) {
        auto s = status_of(other, i);
        if (s.ok() && s->role == "leader") {
          return std::find(s->strong_quorum.begin(), s->strong_quorum.end(), "r" + std::to_string(writer)) !=
                 s->strong_quorum.end();
        }
      }
      return false;
    };
    const auto back_by = Clock::now() + std::chrono::seconds(60);
    while (!in_set() && Clock::now() < back_by) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!in_set()) {
      stop_writers();
      return Status::DeadlineExceeded("r" + std::to_string(writer) + " did not rejoin the strong quorum set in 60 s");
    }
    writer = other;
    std::this_thread::sleep_for(std::chrono::seconds(3));
  }
  stop_writers();
  f.acked = acked_ids.size();
  f.write_errors = errors.load();
  BULWARK_ASSIGN_OR_RETURN(f.lost, LostWrites(account, acked_ids));
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
  app.add_option("--failovers", cfg.failovers, "planned failovers per level instead (Strong, Session, Eventual)")
      ->check(CLI::Range(0, 100));
  app.add_option("--cutoffs", cfg.cutoffs,
                 "write-region cutoffs per level instead (automatic failover; nftables, needs root)")
      ->check(CLI::Range(0, 100));
  app.add_option("--grace-ms", cfg.grace_ms, "--cutoffs: the control group's grace period")
      ->check(CLI::Range(3000, 600000));
  app.add_option("--lease-ms", cfg.lease_ms, "--cutoffs: the write region's lease (grace - 2000 at most)")
      ->check(CLI::Range(500, 600000));
  CLI11_PARSE(app, argc, argv);
  const std::string bin_dir = fs::canonical("/proc/self/exe").parent_path().string();
  if (cfg.cutoffs > 0) {
    std::vector<CutoffFigures> rows;
    for (auto level : {ConsistencyLevel::kStrong, ConsistencyLevel::kBoundedStaleness, ConsistencyLevel::kSession,
                       ConsistencyLevel::kEventual}) {
      std::cerr << "== write-region cutoff at " << ConsistencyName(level) << " (2 regions x 4 nodes + witness, "
                << cfg.delay_ms << " ms one way, grace " << cfg.grace_ms << " ms, lease " << cfg.lease_ms << " ms, "
                << cfg.writers << " writers)\n";
      auto f = RunCutoffs(cfg, level, bin_dir);
      if (!f.ok()) {
        std::cerr << "geo-bench: " << ConsistencyName(level) << ": " << f.status().ToString() << "\n";
        return 1;
      }
      rows.push_back(*f);
    }
    std::printf("\n%-17s %8s %11s %11s %11s %9s %11s %12s\n", "level", "cutoffs", "RTO p50", "RTO max", "target",
                "acked", "RPO (lost)", "write errors");
    json out = json::array();
    const double target = cfg.grace_ms + 5000.0;
    for (const auto& f : rows) {
      const double rto_max = f.rto_ms.empty() ? 0 : *std::max_element(f.rto_ms.begin(), f.rto_ms.end());
      std::printf("%-17s %8zu %9.0fms %9.0fms %9.0fms %9llu %11llu %12llu\n", f.level.c_str(), f.rto_ms.size(),
                  Percentile(f.rto_ms, 0.5), rto_max, target, static_cast<unsigned long long>(f.acked),
                  static_cast<unsigned long long>(f.lost), static_cast<unsigned long long>(f.write_errors));
      out.push_back({{"level", f.level},
                     {"cutoffs", f.rto_ms.size()},
                     {"rto_ms", f.rto_ms},
                     {"rto_p50_ms", Percentile(f.rto_ms, 0.5)},
                     {"rto_max_ms", rto_max},
                     {"rto_target_ms", target},
                     {"acked_writes", f.acked},
                     {"acked_writes_lost", f.lost},
                     {"write_errors", f.write_errors}});
    }
    if (!cfg.json_path.empty()) {
      std::ofstream(cfg.json_path) << json{{"delay_ms_one_way", cfg.delay_ms}, {"writers", cfg.writers},
                                           {"kind", "write-region cutoff"},    {"grace_ms", cfg.grace_ms},
                                           {"lease_ms", cfg.lease_ms},         {"levels", out}}
                                          .dump(2)
                                   << "\n";
    }
    return 0;
  }
  if (cfg.failovers > 0) {
    std::vector<FailoverFigures> rows;
    for (auto level : {ConsistencyLevel::kStrong, ConsistencyLevel::kSession, ConsistencyLevel::kEventual}) {
      std::cerr << "== planned failover at " << ConsistencyName(level) << " (2 regions x 4 nodes, " << cfg.delay_ms
                << " ms one way, " << cfg.writers << " writers)\n";
      auto f = RunFailovers(cfg, level, bin_dir);
      if (!f.ok()) {
        std::cerr << "geo-bench: " << ConsistencyName(level) << ": " << f.status().ToString() << "\n";
        return 1;
      }
      rows.push_back(*f);
    }
    std::printf("\n%-17s %9s %13s %13s %15s %15s %9s %13s %12s\n", "level", "failovers", "gap p50", "gap max",
                "command p50", "command max", "acked", "RPO (lost)", "write errors");
    json out = json::array();
    for (const auto& f : rows) {
      const double gap_max = f.gap_ms.empty() ? 0 : *std::max_element(f.gap_ms.begin(), f.gap_ms.end());
      const double cmd_max = f.command_ms.empty() ? 0 : *std::max_element(f.command_ms.begin(), f.command_ms.end());
      std::printf("%-17s %9zu %11.0fms %11.0fms %13.0fms %13.0fms %9llu %13llu %12llu\n", f.level.c_str(),
                  f.gap_ms.size(), Percentile(f.gap_ms, 0.5), gap_max, Percentile(f.command_ms, 0.5), cmd_max,
                  static_cast<unsigned long long>(f.acked), static_cast<unsigned long long>(f.lost),
                  static_cast<unsigned long long>(f.write_errors));
      out.push_back({{"level", f.level},
                     {"failovers", f.gap_ms.size()},
                     {"write_gap_ms", f.gap_ms},
                     {"command_ms", f.command_ms},
                     {"write_gap_p50_ms", Percentile(f.gap_ms, 0.5)},
                     {"write_gap_max_ms", gap_max},
                     {"acked_writes", f.acked},
                     {"acked_writes_lost", f.lost},
                     {"write_errors", f.write_errors}});
    }
    if (!cfg.json_path.empty()) {
      std::ofstream(cfg.json_path) << json{{"delay_ms_one_way", cfg.delay_ms},
                                           {"writers", cfg.writers},
                                           {"kind", "planned failover"},
                                           {"levels", out}}
                                          .dump(2)
                                   << "\n";
    }
    return 0;
  }
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
