#pragma once
// The load generator the comparison benchmark drives every system with, so
// Bulwark and etcd see the same request stream:
//   LatencyHistogram  log-bucketed (HDR-style) latency histogram
//   RunClosedLoop     N clients, each sends its next request when the last returns
//   RunOpenLoop       a fixed offered rate, latency measured from each request's
//                     intended send time (no coordinated omission)
// Header-only; every function is thread-safe in the way its comment says.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace bulwark::bench {

using Clock = std::chrono::steady_clock;

// Latencies in microseconds, in buckets that grow by 2^(1/8) (about 9%), from
// 1 us to about 2^31 us (36 min), like an HDR histogram with two significant
// figures. Percentiles are the bucket's upper bound, so they overstate by at
// most one bucket. Not thread-safe: one per thread, merged afterwards.
class LatencyHistogram {
 public:
  static constexpr int kSubBuckets = 8;  // per power of two
  static constexpr int kBuckets = 31 * kSubBuckets;

  void Record(double us) {
    ++counts_[Index(us)];
    ++total_;
    max_us_ = std::max(max_us_, us);
  }
  void Merge(const LatencyHistogram& other) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_us_ = std::max(max_us_, other.max_us_);
  }
  uint64_t count() const { return total_; }
  double max_us() const { return max_us_; }
  // The smallest bucket bound that `p` (0..1) of the samples are at or below.
  double PercentileUs(double p) const {
    if (total_ == 0) return 0;
    const auto rank = static_cast<uint64_t>(std::ceil(p * static_cast<double>(total_)));
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= std::max<uint64_t>(rank, 1)) return std::min(UpperUs(i), max_us_);
    }
    return max_us_;
  }
  // Non-empty buckets as [upper bound in us, count] pairs.
  nlohmann::json ToJson() const {
    nlohmann::json buckets = nlohmann::json::array();
    for (int i = 0; i < kBuckets; ++i) {
      if (counts_[i] > 0) buckets.push_back({std::round(UpperUs(i) * 10) / 10, counts_[i]});
    }
    return {{"unit", "us"},
            {"buckets_per_octave", kSubBuckets},
            {"count", total_},
            {"max_us", max_us_},
            {"buckets", buckets}};
  }

 private:
  static int Index(double us) {
    if (us <= 1) return 0;
    const int i = static_cast<int>(std::ceil(std::log2(us) * kSubBuckets));
    return std::clamp(i, 0, kBuckets - 1);
  }
  static double UpperUs(int i) { return std::exp2(static_cast<double>(i) / kSubBuckets); }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  double max_us_ = 0;
};

struct LoadResult {
  double seconds = 0;
  uint64_t ok = 0, errors = 0;
  double ops_s = 0;  // acknowledged operations per second
  LatencyHistogram latency;

  double p50_ms() const { return latency.PercentileUs(0.50) / 1000; }
  double p99_ms() const { return latency.PercentileUs(0.99) / 1000; }
  double p999_ms() const { return latency.PercentileUs(0.999) / 1000; }
};

// One request of client `client` (0-based), its `i`-th; returns success.
// Called concurrently for different clients, never for the same one.
using Operation = std::function<bool(int client, uint64_t i)>;

namespace detail {
inline LoadResult Collect(std::vector<LatencyHistogram>& histograms, const std::vector<uint64_t>& errors,
                          double seconds) {
  LoadResult r;
  r.seconds = seconds;
  for (auto& h : histograms) r.latency.Merge(h);
  for (uint64_t e : errors) r.errors += e;
  r.ok = r.latency.count();
  r.ops_s = static_cast<double>(r.ok) / seconds;
  return r;
}
}  // namespace detail

// `clients` threads call `op` back to back for `seconds`. Latency counts
// successful calls; failures are counted apart.
inline LoadResult RunClosedLoop(int clients, double seconds, const Operation& op) {
  std::vector<LatencyHistogram> histograms(static_cast<size_t>(clients));
  std::vector<uint64_t> errors(static_cast<size_t>(clients), 0);
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      for (uint64_t i = 0; !stop; ++i) {
        const auto start = Clock::now();
        if (op(t, i)) {
          histograms[t].Record(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
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
  return detail::Collect(histograms, errors, std::chrono::duration<double>(Clock::now() - begin).count());
}

// `rate_ops_s` requests per second in total, spread evenly over `clients`
// threads (each sends on its own fixed schedule). A request's latency runs
// from the moment the schedule meant to send it, so a server that falls
// behind shows the queueing it causes: a client that falls behind its
// schedule sends its late requests back to back until it has caught up. Only
// requests scheduled within `seconds` are sent; the run ends when the last
// returns, and ops/s is over that whole time.
inline LoadResult RunOpenLoop(int clients, double rate_ops_s, double seconds, const Operation& op) {
  std::vector<LatencyHistogram> histograms(static_cast<size_t>(clients));
  std::vector<uint64_t> errors(static_cast<size_t>(clients), 0);
  const auto begin = Clock::now() + std::chrono::milliseconds(20);
  const auto end = begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(static_cast<double>(clients) / rate_ops_s));
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      // Clients are staggered over one interval, so the offered load is smooth.
      auto next = begin + interval * t / clients;
      for (uint64_t i = 0; next < end; ++i, next += interval) {
        std::this_thread::sleep_until(next);
        if (op(t, i)) {
          histograms[t].Record(std::chrono::duration<double, std::micro>(Clock::now() - next).count());
        } else {
          ++errors[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  return detail::Collect(histograms, errors, std::chrono::duration<double>(Clock::now() - begin).count());
}

}  // namespace bulwark::bench
