#pragma once
// Automatic response to attacks, per node (docs/security.md, "Response to
// attacks"):
//
//   - AuthGuard blocks a source address after repeated failed
//     authentication: `failures_to_block` failures within `failure_window`
//     block it for `block_base`, doubling with each block that follows, up
//     to `block_max`; a source quiet for `block_max` starts over. It also
//     watches the node's overall failure rate and says when it crosses the
//     alert threshold (at most once a minute).
//   - RateLimiter gives each principal a token bucket; a request beyond it
//     is told how long to wait.
//   - Alerts keeps the node's recent alerts for `bulwark alerts`.
//
// Each is in memory and per node: a block or a limit applies at the node
// that saw the traffic (clients spread over nodes meet each node's limit).
// Time is passed in, so the rules are testable without sleeping.
//
// Thread safety: every method may be called concurrently. Memory is bounded:
// kMaxTrackedSources, kMaxTrackedPrincipals, kMaxAlerts.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace bulwark::server {

using SteadyTime = std::chrono::steady_clock::time_point;

constexpr size_t kMaxTrackedSources = 100'000;
constexpr size_t kMaxTrackedPrincipals = 100'000;
constexpr size_t kMaxAlerts = 1000;

struct DefenseOptions {
  uint32_t failures_to_block = 10;  // 0: never block
  std::chrono::milliseconds failure_window{60'000};
  std::chrono::milliseconds block_base{30'000};
  std::chrono::milliseconds block_max{3'600'000};
  uint32_t alert_failures_per_minute = 100;  // 0: no alert
  double principal_requests_per_second = 0;  // 0: unlimited
  double principal_burst = 0;                // bucket size; 0: one second's worth
};

struct BlockEvent {
  std::string source;
  std::chrono::milliseconds duration{0};
  uint32_t repeat = 0;  // 1 for a first block, 2 for the next, ...
};

class AuthGuard {
 public:
  explicit AuthGuard(const DefenseOptions& options) : options_(options) {}
  // How much longer `source` stays blocked; nullopt if it is not blocked.
  std::optional<std::chrono::milliseconds> Blocked(const std::string& source, SteadyTime now);
  // Counts one failed authentication from `source`; returns the block it
  // started, if it started one.
  std::optional<BlockEvent> RecordFailure(const std::string& source, SteadyTime now);
  // Failures in the last minute, node-wide.
  uint64_t FailuresLastMinute(SteadyTime now);
  // True once when the last minute's failures reach the alert threshold
  // (then not again for a minute).
  bool ShouldAlert(SteadyTime now);
  uint64_t blocks() const;  // blocks started since start
  size_t blocked_now(SteadyTime now);

 private:
  struct Source {
    std::deque<SteadyTime> failures;  // within failure_window
    SteadyTime blocked_until{};
    SteadyTime last_seen{};
    uint32_t blocks = 0;  // blocks so far (the next one lasts base * 2^blocks)
  };
  void Forget(SteadyTime now);  // REQUIRES: mu_ held
  DefenseOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Source> sources_;  // GUARDED_BY(mu_)
  std::deque<SteadyTime> recent_failures_;           // GUARDED_BY(mu_): the last minute, node-wide
  SteadyTime last_alert_{};                          // GUARDED_BY(mu_)
  bool alerted_ = false;                             // GUARDED_BY(mu_)
  uint64_t blocks_ = 0;                              // GUARDED_BY(mu_)
};

class RateLimiter {
 public:
  explicit RateLimiter(const DefenseOptions& options) : options_(options) {}
  // Takes one request's token for `principal`. Nullopt if it may go now;
  // otherwise how long until a token is available.
  std::optional<std::chrono::milliseconds> Take(const std::string& principal, SteadyTime now);
  uint64_t limited() const;  // requests refused since start

 private:
  struct Bucket {
    double tokens = 0;
    SteadyTime last{};
  };
  DefenseOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // GUARDED_BY(mu_)
  uint64_t limited_ = 0;                             // GUARDED_BY(mu_)
};

struct Alert {
  int64_t time_unix_ms = 0;
  std::string kind;  // "auth_failure_rate", "address_blocked", "audit_dropped", "lockdown"
  std::string message;
};

class Alerts {
 public:
  void Raise(std::string kind, std::string message);
  std::vector<Alert> Recent() const;  // oldest first
  std::map<std::string, uint64_t> Counts() const;

 private:
  mutable std::mutex mu_;
  std::deque<Alert> alerts_;                // GUARDED_BY(mu_)
  std::map<std::string, uint64_t> counts_;  // GUARDED_BY(mu_)
};

}  // namespace bulwark::server
