// load-bench: a closed-loop load generator over the client library.
//
// Starts bulwarkd through LocalCluster in a scratch directory under /tmp
// (TLS, fsync on; one node, or a replica set of four on 127.0.2.1-4) and, for
// 1, 16 and 64 concurrent clients, runs point writes (upserts of 1 KiB
// items), then Strong point reads and Session point reads of those items.
// Each client sends its next request when the previous one returns. Clients
// are spread round-robin over the nodes, so on a replica set three in four
// writes reach a follower and are forwarded to the leader, as they would be
// in use; a "leader-only" write run shows what that forwarding costs.
//
// On a replica set it then measures leader-failover write unavailability:
// writers on the surviving nodes write continuously, the leader gets kill -9,
// and the time from the kill to the first acknowledged write sent after it
// is one sample. Each sample also keeps the acknowledged writes per 50 ms
// around the kill (a throughput timeline, plotted by bench/report.py), and
// after the restart every write acknowledged in the last seconds before the
// kill and after it is read back (Strong) to count acknowledged writes lost
// (RPO; inside a region a write is acknowledged once a quorum has it, at
// every consistency level). The killed node is restarted and caught up
// before the next repetition. Figures are printed next to the targets they answer to (not
// asserted), and written as JSON. The scratch directory is removed at exit.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "chaos/local_cluster.h"
#include "client/client.h"

namespace fs = std::filesystem;
using namespace bulwark;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

// Targets from the replica-set issue. Printed beside the figures, never asserted:
// a benchmark on a shared 2-core machine is for people to read.
constexpr double kFailoverMedianTargetMs = 1000;
constexpr double kFailoverMaxTargetMs = 2000;
constexpr double kReplicatedWriteTargetOpsS = 4000;
constexpr int kReplicatedWriteTargetClients = 64;

// Each client writes at most this many distinct items (ids cycle), so a long
// run does not grow the data set without bound.
constexpr uint64_t kItemsPerClientMax = 10'000;
// A failover repetition gives up waiting for the first write after the kill
// after this long and records the wait as a timed-out sample.
constexpr auto kFailoverAckTimeout = std::chrono::seconds(20);
// Writers must get a write through before the kill, or the repetition is void.
constexpr auto kFailoverWarmupTimeout = std::chrono::seconds(15);
// Time for the restarted node to apply everything the leader has committed.
constexpr auto kCatchUpTimeout = std::chrono::seconds(60);
// A writer that got an error pauses this long before the next request, so a
// fast failure (connection refused) does not spin a core the nodes need.
// It bounds how much the pause can add to a failover sample.
constexpr auto kWriterErrorPause = std::chrono::milliseconds(5);
// The failover timeline: acknowledged writes counted per bucket from the
// start of a repetition, for at most kTimelineBucketsMax buckets (60 s); the
// part from kTimelineBeforeKill before the kill to kTimelineAfterRecovery
// after the first write acknowledged by the new leader is kept.
constexpr int64_t kTimelineBucketMs = 50;
constexpr size_t kTimelineBucketsMax = 1200;
constexpr int64_t kTimelineBeforeKillMs = 1000;
constexpr int64_t kTimelineAfterRecoveryMs = 1000;
// Lost-write check: each writer's newest acknowledged writes, at most this
// many, are read back after the restart (the ones a failover could lose are
// the newest).
constexpr size_t kRpoCheckPerWriterMax = 300;

struct Config {
  int nodes = 4;
  std::vector<int> clients = {1, 16, 64};
  int leader_only_clients = 64;
  double seconds = 5;
  size_t value_bytes = 1024;
  std::string dir;  // default: /tmp/bulwark-load-bench-<pid>
  std::string ip = "127.0.2.1";
  int port = 7300;
  int failover_reps = 10;
  int failover_writers_per_node = 2;
  int failover_deadline_ms = 2000;
  std::string json_out;
  std::vector<std::string> node_args;  // extra bulwarkd arguments, e.g. --set audit.enabled=false
  std::string baseline;                // a single-node JSON from this tool, for ratios
};

struct Figures {
  double ops_s = 0;  // acknowledged operations per second
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;
  size_t ok = 0, errors = 0;
};

struct Row {
  std::string op;         // write, read-strong, read-session
  std::string placement;  // spread (round-robin over nodes) or leader
  int clients = 0;
  Figures f;
};

using ClientPool = std::vector<std::unique_ptr<client::Client>>;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

std::string Payload(size_t bytes) {
  std::string s;
  std::mt19937 rng(1);
  while (s.size() < bytes) s.push_back(static_cast<char>('a' + rng() % 26));
  return s;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

// Item `k` of client `t`: ~value_bytes of JSON, partition key per client.
std::string ItemId(int t, uint64_t k) { return "c" + std::to_string(t) + "-" + std::to_string(k); }
std::string PartitionKeyJson(int t) { return "\"p" + std::to_string(t) + "\""; }
std::string ItemJson(int t, uint64_t k, const std::string& payload) {
  return "{\"id\":\"" + ItemId(t, k) + "\",\"pk\":\"p" + std::to_string(t) + "\",\"v\":\"" + payload + "\"}";
}

// `n` clients, client t on node `node_of(t)`. Each makes one call first so
// that the TLS handshake is not timed as part of the first request.
template <typename NodeOf>
Result<ClientPool> ConnectPool(const chaos::LocalCluster& cluster, int n, NodeOf node_of) {
  ClientPool pool;
  for (int t = 0; t < n; ++t) {
    auto c = client::Client::Connect(cluster.node_client_options(node_of(t)));
    if (!c.ok()) return c.status();
    if (auto s = (*c)->GetStatus(); !s.ok()) return s.status();
    pool.push_back(std::move(c).value());
  }
  return pool;
}

// Runs `op(client, t, i)` in a closed loop on every client of `pool` for
// `seconds`; `op` returns whether the call succeeded. Latency percentiles are
// over successful calls; failures are counted apart.
template <typename Op>
Figures ClosedLoop(const ClientPool& pool, double seconds, Op op) {
  const size_t n = pool.size();
  std::vector<std::vector<double>> latencies(n);
  std::vector<size_t> errors(n, 0);
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      for (uint64_t i = 0; !stop; ++i) {
        const auto start = Clock::now();
        if (op(*pool[t], static_cast<int>(t), i)) {
          latencies[t].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
        } else {
          ++errors[t];
        }
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
  f.ok = all.size();
  for (size_t e : errors) f.errors += e;
  f.ops_s = static_cast<double>(f.ok) / elapsed;
  f.p50_ms = Percentile(all, 0.50);
  f.p99_ms = Percentile(all, 0.99);
  f.p999_ms = Percentile(all, 0.999);
  return f;
}

void PrintRow(const Row& r) {
  std::printf("%-13s %-9s %-8d %10.0f %9.2f %9.2f %9.2f %7zu\n", r.op.c_str(), r.placement.c_str(), r.clients,
              r.f.ops_s, r.f.p50_ms, r.f.p99_ms, r.f.p999_ms, r.f.errors);
  std::fflush(stdout);
}

// Writes, then Strong reads and Session reads of the written items, all on
// the same clients: a Session read carries the token of the client's own
// newest write (the Client tracks it), so it must see that client's items.
std::vector<Row> RunPhases(const ClientPool& pool, const std::string& placement, bool reads, double seconds,
                           const std::string& payload) {
  const int n = static_cast<int>(pool.size());
  std::vector<uint64_t> written(static_cast<size_t>(n), 0);
  std::vector<Row> rows;
  std::fprintf(stderr, "  writes (%s) with %d clients for %.1f s...\n", placement.c_str(), n, seconds);
  // Request ids are unique per write: the run tag keeps a later phase's
  // writes from being deduplicated against an earlier phase's.
  const std::string tag = placement + std::to_string(n);
  rows.push_back({"write", placement, n, ClosedLoop(pool, seconds, [&](client::Client& c, int t, uint64_t i) {
                    const uint64_t k = i % kItemsPerClientMax;
                    const std::string request_id = tag + "-" + std::to_string(t) + "-" + std::to_string(i);
                    if (!c.UpsertItem("bench", "items", ItemJson(t, k, payload), request_id).ok()) return false;
                    written[static_cast<size_t>(t)] = std::max(written[static_cast<size_t>(t)], k + 1);
                    return true;
                  })});
  PrintRow(rows.back());
  if (!reads) return rows;
  for (const auto& [name, level] :
       {std::pair{"read-strong", ConsistencyLevel::kStrong}, std::pair{"read-session", ConsistencyLevel::kSession}}) {
    std::fprintf(stderr, "  %s (%s) with %d clients for %.1f s...\n", name, placement.c_str(), n, seconds);
    client::ReadOptions options;
    options.consistency = level;
    rows.push_back({name, placement, n, ClosedLoop(pool, seconds, [&](client::Client& c, int t, uint64_t i) {
                      const uint64_t count = written[static_cast<size_t>(t)];
                      if (count == 0) return false;  // this client never got a write through
                      const uint64_t k = (i * 7919) % count;
                      return c.ReadItem("bench", "items", PartitionKeyJson(t), ItemId(t, k), options).ok();
                    })});
    PrintRow(rows.back());
  }
  return rows;
}

// ---- Leader failover ----

// Shared between the failover writers and the thread that kills the leader.
struct FailoverProbe {
  std::atomic<int64_t> start_ns{0};      // the repetition's start: bucket 0 of the timeline
  std::atomic<int64_t> dead_ns{0};       // when the old leader was reaped; 0 before the kill
  std::atomic<int64_t> first_ack_ns{0};  // earliest ack of a write sent after dead_ns; 0 if none yet
  std::atomic<uint64_t> acks_before_kill{0};
  std::atomic<bool> stop{false};
  std::vector<std::atomic<uint32_t>> acks = std::vector<std::atomic<uint32_t>>(kTimelineBucketsMax);
};

// The item owner of failover writer `writer` in repetition `rep`: its own
// partition, apart from the load phases' clients and from other repetitions,
// so an item read back after a failover can only be this repetition's write.
int FailoverOwner(int rep, int writer) { return 10'000 + rep * 100 + writer; }

// Writes until told to stop; returns the item numbers it got acknowledged.
std::vector<uint64_t> FailoverWriter(client::Client& c, int writer, int rep, const std::string& payload,
                                     FailoverProbe& probe) {
  const int t = FailoverOwner(rep, writer);
  std::vector<uint64_t> acked_items;
  for (uint64_t i = 0; !probe.stop; ++i) {
    const std::string request_id =
        "failover" + std::to_string(rep) + "-" + std::to_string(writer) + "-" + std::to_string(i);
    const int64_t sent = NowNs();
    const bool ok = c.UpsertItem("bench", "items", ItemJson(t, i % kItemsPerClientMax, payload), request_id).ok();
    const int64_t acked = NowNs();
    if (!ok) {
      std::this_thread::sleep_for(kWriterErrorPause);
      continue;
    }
    acked_items.push_back(i % kItemsPerClientMax);
    const int64_t bucket = (acked - probe.start_ns.load()) / (kTimelineBucketMs * 1'000'000);
    if (bucket >= 0 && static_cast<size_t>(bucket) < kTimelineBucketsMax) ++probe.acks[static_cast<size_t>(bucket)];
    const int64_t dead = probe.dead_ns.load();
    if (dead == 0) {
      ++probe.acks_before_kill;
      continue;
    }
    // Only a write sent once the old leader was gone proves the new leader
    // commits; an ack for an earlier write may have been committed by the old one.
    if (sent < dead) continue;
    int64_t seen = probe.first_ack_ns.load();
    while ((seen == 0 || acked < seen) && !probe.first_ack_ns.compare_exchange_weak(seen, acked)) {
    }
  }
  return acked_items;
}

// Restarts node `i` and waits until it has applied everything the leader had
// committed when it came back. No writes run meanwhile, so the target holds still.
Status RestartAndCatchUp(chaos::LocalCluster& cluster, int i) {
  if (auto s = cluster.StartNode(i); !s.ok()) return s;
  auto leader = cluster.WaitForLeader();
  if (!leader.ok()) return leader.status();
  auto on_leader = client::Client::Connect(cluster.node_client_options(*leader));
  auto on_node = client::Client::Connect(cluster.node_client_options(i));
  if (!on_leader.ok()) return on_leader.status();
  if (!on_node.ok()) return on_node.status();
  auto leader_status = (*on_leader)->GetStatus();
  if (!leader_status.ok()) return leader_status.status();
  const auto deadline = Clock::now() + kCatchUpTimeout;
  while (Clock::now() < deadline) {
    auto node_status = (*on_node)->GetStatus();
    if (node_status.ok() && node_status->applied_index >= leader_status->commit_index) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::DeadlineExceeded("node " + std::to_string(i) + " did not catch up with commit index " +
                                  std::to_string(leader_status->commit_index));
}

struct FailoverSample {
  double unavailable_ms = 0;
  bool timed_out = false;
  int killed = 0;
  // (ms from the kill, acknowledged writes per second) per timeline bucket.
  std::vector<std::pair<double, double>> timeline;
  size_t writes_checked = 0;  // acknowledged writes read back after the restart
  size_t writes_lost = 0;     // of those, not found: acknowledged, then lost
};

// The timeline around the kill, from the probe's buckets.
// Buckets that end after `stop_ns` (when the writers were told to stop) are
// left out: they would show the stop, not the system.
std::vector<std::pair<double, double>> Timeline(const FailoverProbe& probe, int64_t kill_ns, double unavailable_ms,
                                                int64_t stop_ns) {
  std::vector<std::pair<double, double>> points;
  const int64_t bucket_ns = kTimelineBucketMs * 1'000'000;
  const int64_t from_ns = kill_ns - kTimelineBeforeKillMs * 1'000'000;
  const int64_t to_ns = std::min(
      kill_ns + static_cast<int64_t>(unavailable_ms * 1e6) + kTimelineAfterRecoveryMs * 1'000'000, stop_ns - bucket_ns);
  for (size_t b = 0; b < kTimelineBucketsMax; ++b) {
    const int64_t at = probe.start_ns + static_cast<int64_t>(b) * bucket_ns;
    if (at < from_ns || at > to_ns) continue;
    const double ms_from_kill = static_cast<double>(at - kill_ns) / 1e6;
    points.emplace_back(ms_from_kill, probe.acks[b].load() * 1000.0 / static_cast<double>(kTimelineBucketMs));
  }
  return points;
}

// Reads back each writer's newest acknowledged writes (Strong) through the
// writers' own clients, in parallel; counts those not found.
void CheckLostWrites(const ClientPool& pool, int rep, const std::vector<std::vector<uint64_t>>& acked,
                     FailoverSample& sample) {
  std::vector<size_t> checked(pool.size(), 0), lost(pool.size(), 0);
  std::vector<std::thread> readers;
  for (size_t w = 0; w < pool.size(); ++w) {
    readers.emplace_back([&, w] {
      const int t = FailoverOwner(rep, static_cast<int>(w));
      const auto& items = acked[w];
      const size_t first = items.size() > kRpoCheckPerWriterMax ? items.size() - kRpoCheckPerWriterMax : 0;
      client::ReadOptions strong;
      strong.consistency = ConsistencyLevel::kStrong;
      for (size_t i = first; i < items.size(); ++i) {
        auto item = pool[w]->ReadItem("bench", "items", PartitionKeyJson(t), ItemId(t, items[i]), strong);
        ++checked[w];
        // Only NotFound proves a loss; another error (a timeout) proves nothing.
        if (!item.ok() && item.status().code() == Code::kNotFound) ++lost[w];
      }
    });
  }
  for (auto& th : readers) th.join();
  for (size_t w = 0; w < pool.size(); ++w) {
    sample.writes_checked += checked[w];
    sample.writes_lost += lost[w];
  }
}

// One repetition: writers on every node but the leader, kill -9 the leader,
// time to the first acknowledged write sent after it, restart and catch up.
Result<FailoverSample> FailoverOnce(chaos::LocalCluster& cluster, const Config& cfg, int rep,
                                    const std::string& payload) {
  auto leader = cluster.WaitForLeader();
  if (!leader.ok()) return leader.status();
  FailoverSample sample;
  sample.killed = *leader;
  ClientPool pool;
  for (int node = 1; node <= cluster.size(); ++node) {
    if (node == *leader) continue;
    client::ClientOptions options = cluster.node_client_options(node);
    options.deadline = std::chrono::milliseconds(cfg.failover_deadline_ms);
    for (int w = 0; w < cfg.failover_writers_per_node; ++w) {
      auto c = client::Client::Connect(options);
      if (!c.ok()) return c.status();
      pool.push_back(std::move(c).value());
    }
  }
  FailoverProbe probe;
  probe.start_ns = NowNs();
  std::vector<std::vector<uint64_t>> acked(pool.size());
  std::vector<std::thread> writers;
  for (size_t w = 0; w < pool.size(); ++w) {
    writers.emplace_back([&, w] { acked[w] = FailoverWriter(*pool[w], static_cast<int>(w), rep, payload, probe); });
  }
  auto join = [&] {
    probe.stop = true;
    for (auto& th : writers) th.join();
  };
  // Every writer should be through its handshake and writing before the kill.
  const auto warm_deadline = Clock::now() + kFailoverWarmupTimeout;
  while (probe.acks_before_kill < 2 * pool.size() && Clock::now() < warm_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (probe.acks_before_kill == 0) {
    join();
    return Status::Unavailable("no write was acknowledged before the kill");
  }
  // A stretch of steady writing before the fault, for the timeline.
  std::this_thread::sleep_for(std::chrono::milliseconds(kTimelineBeforeKillMs));
  const int64_t kill_ns = NowNs();
  cluster.KillNode(*leader);  // SIGKILL, then reaps the process
  probe.dead_ns = NowNs();
  const auto ack_deadline = Clock::now() + kFailoverAckTimeout;
  while (probe.first_ack_ns == 0 && Clock::now() < ack_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // The writers go on after the new leader's first ack, so the timeline
  // shows how throughput recovers, not only when it restarts.
  if (probe.first_ack_ns != 0) std::this_thread::sleep_for(std::chrono::milliseconds(kTimelineAfterRecoveryMs));
  const int64_t stop_ns = NowNs();
  join();
  const int64_t first_ack = probe.first_ack_ns;
  sample.timed_out = first_ack == 0;
  sample.unavailable_ms = sample.timed_out ? std::chrono::duration<double, std::milli>(kFailoverAckTimeout).count()
                                           : static_cast<double>(first_ack - kill_ns) / 1e6;
  sample.timeline = Timeline(probe, kill_ns, sample.unavailable_ms, stop_ns);
  if (auto s = RestartAndCatchUp(cluster, *leader); !s.ok()) return s;
  CheckLostWrites(pool, rep, acked, sample);
  return sample;
}

Result<std::vector<FailoverSample>> MeasureFailover(chaos::LocalCluster& cluster, const Config& cfg,
                                                    const std::string& payload) {
  std::vector<FailoverSample> samples;
  for (int rep = 0; rep < cfg.failover_reps; ++rep) {
    std::fprintf(stderr, "  failover %d/%d...", rep + 1, cfg.failover_reps);
    auto s = FailoverOnce(cluster, cfg, rep, payload);
    if (!s.ok()) {
      std::fprintf(stderr, " failed\n");
      return s.status();
    }
    std::fprintf(stderr, " killed node %d, first write after %.0f ms%s, %zu/%zu acknowledged writes lost\n", s->killed,
                 s->unavailable_ms, s->timed_out ? " (timed out)" : "", s->writes_lost, s->writes_checked);
    samples.push_back(*s);
  }
  return samples;
}

// ---- Reporting ----

Json TargetJson(const std::string& name, const std::string& target, double value, bool met) {
  return {{"name", name}, {"target", target}, {"value", value}, {"met", met}};
}

void PrintTargets(const Json& targets) {
  if (targets.empty()) return;
  std::printf("\ntargets (printed, not asserted):\n");
  for (const Json& t : targets) {
    std::printf("  %-46s %-9s measured %7.0f  %s\n", t["name"].get<std::string>().c_str(),
                t["target"].get<std::string>().c_str(), t["value"].get<double>(),
                t["met"].get<bool>() ? "met" : "NOT met");
  }
}

Json ReportFailover(const std::vector<FailoverSample>& samples, Json& targets) {
  std::vector<double> ms;
  size_t timed_out = 0, checked = 0, lost = 0;
  Json each = Json::array();
  for (const auto& s : samples) {
    ms.push_back(s.unavailable_ms);
    timed_out += s.timed_out ? 1 : 0;
    checked += s.writes_checked;
    lost += s.writes_lost;
    Json timeline = Json::array();
    for (const auto& [t_ms, ops_s] : s.timeline) timeline.push_back({t_ms, ops_s});
    each.push_back({{"killed_node", s.killed},
                    {"unavailable_ms", s.unavailable_ms},
                    {"timed_out", s.timed_out},
                    {"writes_checked", s.writes_checked},
                    {"writes_lost", s.writes_lost},
                    {"timeline_ms_ops_s", timeline}});
  }
  std::sort(ms.begin(), ms.end());
  // The median of an even count is the mean of the middle two.
  const size_t n = ms.size();
  const double median = n == 0 ? 0 : (n % 2 == 1 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2);
  const double max = n == 0 ? 0 : ms.back();
  std::printf("\nleader failover (kill -9 to first acknowledged write), %zu repetitions:\n  samples ms:", n);
  for (const auto& s : samples) std::printf(" %.0f%s", s.unavailable_ms, s.timed_out ? "(timeout)" : "");
  std::printf("\n  median %.0f ms, max %.0f ms, timed out %zu\n", median, max, timed_out);
  std::printf("  acknowledged writes lost (RPO): %zu of %zu read back\n", lost, checked);
  if (n > 0) {
    targets.push_back(TargetJson("failover median (ms)", "<= 1000", median, median <= kFailoverMedianTargetMs));
    targets.push_back(TargetJson("failover max (ms)", "<= 2000", max, max <= kFailoverMaxTargetMs));
  }
  return {{"samples", each},        {"median_ms", median},       {"max_ms", max},
          {"timed_out", timed_out}, {"writes_checked", checked}, {"writes_lost", lost}};
}

// Replicated/single write ops/s at each client count, from a single-node JSON.
Json ReportRatios(const std::vector<Row>& rows, const std::string& baseline_path) {
  std::ifstream in(baseline_path);
  Json baseline = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (baseline.is_discarded() || !baseline.contains("results")) {
    std::printf("\n(no usable baseline in %s: no replicated/single ratios)\n", baseline_path.c_str());
    return Json::array();
  }
  Json ratios = Json::array();
  std::printf("\nreplicated / single node, write ops/s (clients spread over the nodes):\n");
  for (const Row& r : rows) {
    if (r.op != "write" || r.placement != "spread") continue;
    for (const Json& b : baseline["results"]) {
      if (b.value("op", "") != "write" || b.value("clients", 0) != r.clients) continue;
      const double single = b.value("ops_s", 0.0);
      const double ratio = single > 0 ? r.f.ops_s / single : 0;
      std::printf("  %2d clients: %8.0f / %8.0f = %.2f\n", r.clients, r.f.ops_s, single, ratio);
      ratios.push_back(
          {{"clients", r.clients}, {"replicated_ops_s", r.f.ops_s}, {"single_ops_s", single}, {"ratio", ratio}});
    }
  }
  return ratios;
}

Json RowJson(const Row& r) {
  return {{"op", r.op},           {"placement", r.placement}, {"clients", r.clients},   {"ops_s", r.f.ops_s},
          {"p50_ms", r.f.p50_ms}, {"p99_ms", r.f.p99_ms},     {"p999_ms", r.f.p999_ms}, {"ok", r.f.ok},
          {"errors", r.f.errors}};
}

// Removes the scratch directory when it goes out of scope, after the cluster
// (declared later, destroyed first) has killed its nodes.
struct ScratchDir {
  std::string path;
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

Result<std::unique_ptr<chaos::LocalCluster>> StartCluster(const Config& cfg) {
  chaos::ClusterOptions options;
  options.dir = cfg.dir;
  options.bin_dir = fs::read_symlink("/proc/self/exe").parent_path().string();
  options.ip = cfg.ip;
  options.port = cfg.port;
  // Each node on its own address: one metrics port serves them all, so the
  // raft counters (entries per fsync) can be read during a run.
  options.metrics_port = cfg.port + 80;
  options.nodes = cfg.nodes;
  // Strong as the account default: a request may only relax the default, and
  // the benchmark asks for both Strong and Session reads.
  options.extra_args = {"--default-consistency", "Strong"};
  options.extra_args.insert(options.extra_args.end(), cfg.node_args.begin(), cfg.node_args.end());
  auto cluster = chaos::LocalCluster::Prepare(options);
  if (!cluster.ok()) return cluster.status();
  if (auto s = (*cluster)->Start(); !s.ok()) return s;
  auto admin = client::Client::Connect((*cluster)->client_options());
  if (!admin.ok()) return admin.status();
  if (auto db = (*admin)->CreateDatabase("bench"); !db.ok()) return db.status();
  if (auto c = (*admin)->CreateContainer("bench", "items", "/pk"); !c.ok()) return c.status();
  return cluster;
}

// The load phases at each client count, spread over the nodes, and on a
// replica set the leader-only write run.
Result<std::vector<Row>> RunLoad(chaos::LocalCluster& cluster, const Config& cfg, const std::string& payload) {
  std::vector<Row> rows;
  for (int n : cfg.clients) {
    auto pool = ConnectPool(cluster, n, [&](int t) { return 1 + t % cluster.size(); });
    if (!pool.ok()) return pool.status();
    for (Row& r : RunPhases(*pool, "spread", /*reads=*/true, cfg.seconds, payload)) rows.push_back(std::move(r));
  }
  if (cfg.nodes > 1 && cfg.leader_only_clients > 0) {
    auto leader = cluster.WaitForLeader();
    if (!leader.ok()) return leader.status();
    auto pool = ConnectPool(cluster, cfg.leader_only_clients, [&](int) { return *leader; });
    if (!pool.ok()) return pool.status();
    for (Row& r : RunPhases(*pool, "leader", /*reads=*/false, cfg.seconds, payload)) rows.push_back(std::move(r));
  }
  return rows;
}

void AddOptions(CLI::App& app, Config& cfg) {
  app.add_option("--nodes", cfg.nodes, "1 (single node) or a replica set (default 4)")->check(CLI::Range(1, 9));
  app.add_option("--clients", cfg.clients, "concurrent client counts");
  app.add_option("--leader-only-clients", cfg.leader_only_clients, "clients for the leader-only write run (0: skip)");
  app.add_option("--seconds", cfg.seconds, "seconds per phase");
  app.add_option("--value-bytes", cfg.value_bytes, "item size");
  app.add_option("--dir", cfg.dir, "scratch directory, wiped first and removed at exit");
  app.add_option("--ip", cfg.ip, "loopback address of node 1; node i gets the i-th address from it");
  app.add_option("--port", cfg.port, "client port (peer port is port + 1)");
  app.add_option("--failover-reps", cfg.failover_reps, "leader kill -9 repetitions (0: skip)");
  app.add_option("--failover-writers-per-node", cfg.failover_writers_per_node, "writers on each surviving node");
  app.add_option("--failover-deadline-ms", cfg.failover_deadline_ms, "per-request deadline of failover writers");
  app.add_option("--baseline", cfg.baseline, "single-node JSON from this tool: print replicated/single ratios");
  app.add_option("--json", cfg.json_out, "write figures to this file");
  app.add_option("--node-arg", cfg.node_args,
                 "an extra bulwarkd argument (repeat), e.g. --node-arg=--set "
                 "--node-arg=audit.enabled=false");
}

// The throughput target: durable writes on the replica set at 64
// clients spread over the nodes (forwarding included).
void AddThroughputTarget(const std::vector<Row>& rows, Json& targets) {
  for (const Row& r : rows) {
    if (r.op == "write" && r.placement == "spread" && r.clients == kReplicatedWriteTargetClients) {
      targets.push_back(TargetJson("replicated durable writes, 64 clients (ops/s)", ">= 4000", r.f.ops_s,
                                   r.f.ops_s >= kReplicatedWriteTargetOpsS));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"Bulwark load benchmark: closed-loop point writes and reads, and leader failover"};
  AddOptions(app, cfg);
  CLI11_PARSE(app, argc, argv);
  if (cfg.dir.empty()) cfg.dir = "/tmp/bulwark-load-bench-" + std::to_string(::getpid());

  fs::remove_all(cfg.dir);
  ScratchDir scratch{cfg.dir};
  auto cluster = StartCluster(cfg);
  if (!cluster.ok()) {
    std::cerr << "cannot start " << cfg.nodes << " node(s) in " << cfg.dir << ": " << cluster.status().ToString()
              << "\n";
    return 1;
  }
  const std::string payload = Payload(cfg.value_bytes > 80 ? cfg.value_bytes - 80 : 1);
  std::printf("%d node(s), %zu-byte items, fsync on, TLS, %.1f s per phase\n", cfg.nodes, cfg.value_bytes, cfg.seconds);
  std::printf("%-13s %-9s %-8s %10s %9s %9s %9s %7s\n", "op", "placement", "clients", "ops/s", "p50 ms", "p99 ms",
              "p99.9 ms", "errors");
  std::fflush(stdout);  // before the progress lines on stderr
  auto rows = RunLoad(**cluster, cfg, payload);
  if (!rows.ok()) {
    std::cerr << "load run failed: " << rows.status().ToString() << "\n";
    return 1;
  }
  Json out = {{"benchmark", "load"},    {"nodes", cfg.nodes}, {"value_bytes", cfg.value_bytes},
              {"seconds", cfg.seconds}, {"fsync", true},      {"results", Json::array()}};
  for (const Row& r : *rows) out["results"].push_back(RowJson(r));
  Json targets = Json::array();
  int exit_code = 0;
  if (cfg.nodes > 1 && cfg.failover_reps > 0) {
    auto samples = MeasureFailover(**cluster, cfg, payload);
    if (!samples.ok()) {
      std::cerr << "failover run failed: " << samples.status().ToString() << "\n";
      exit_code = 1;
    } else {
      out["failover"] = ReportFailover(*samples, targets);
      out["failover"]["deadline_ms"] = cfg.failover_deadline_ms;
    }
  }
  if (cfg.nodes > 1) {
    AddThroughputTarget(*rows, targets);
    if (!cfg.baseline.empty()) out["ratio_replicated_to_single"] = ReportRatios(*rows, cfg.baseline);
  }
  PrintTargets(targets);
  out["targets"] = targets;
  (void)(*cluster)->Stop();
  if (!cfg.json_out.empty()) {
    std::ofstream(cfg.json_out) << out.dump(2) << "\n";
    std::cout << "wrote " << cfg.json_out << "\n";
  }
  return exit_code;
}
