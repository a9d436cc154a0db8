#include "server/defense.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "common/clock.h"

namespace bulwark::server {
namespace {

constexpr auto kMinute = std::chrono::minutes(1);

void DropOlderThan(std::deque<SteadyTime>& times, SteadyTime cutoff) {
  while (!times.empty() && times.front() <= cutoff) times.pop_front();
}

}  // namespace

std::optional<std::chrono::milliseconds> AuthGuard::Blocked(const std::string& source, SteadyTime now) {
  std::lock_guard lock(mu_);
  auto it = sources_.find(source);
  if (it == sources_.end() || it->second.blocked_until <= now) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(it->second.blocked_until - now);
}

void AuthGuard::Forget(SteadyTime now) {
  // Sources quiet for block_max (and not blocked) start over; if the table
  // is still full, the longest-quiet ones go first.
  for (auto it = sources_.begin(); it != sources_.end();) {
    const bool quiet = it->second.blocked_until <= now && it->second.last_seen + options_.block_max <= now;
    it = quiet ? sources_.erase(it) : std::next(it);
  }
  while (sources_.size() >= kMaxTrackedSources) {
    auto oldest = std::min_element(sources_.begin(), sources_.end(), [](const auto& a, const auto& b) {
      return a.second.last_seen < b.second.last_seen;
    });
    sources_.erase(oldest);
  }
}

std::optional<BlockEvent> AuthGuard::RecordFailure(const std::string& source, SteadyTime now) {
  std::lock_guard lock(mu_);
  recent_failures_.push_back(now);
  DropOlderThan(recent_failures_, now - kMinute);
  if (options_.failures_to_block == 0) return std::nullopt;
  if (sources_.size() >= kMaxTrackedSources && sources_.count(source) == 0) Forget(now);
  Source& s = sources_[source];
  if (s.last_seen != SteadyTime{} && s.blocked_until <= now && s.last_seen + options_.block_max <= now) {
    s = Source{};  // quiet long enough: start over
  }
  s.last_seen = now;
  if (s.blocked_until > now) return std::nullopt;  // already blocked (a request that got past the check)
  s.failures.push_back(now);
  DropOlderThan(s.failures, now - options_.failure_window);
  if (s.failures.size() < options_.failures_to_block) return std::nullopt;
  auto duration = options_.block_base;
  for (uint32_t i = 0; i < s.blocks && duration < options_.block_max; ++i) duration *= 2;
  duration = std::min(duration, options_.block_max);
  ++s.blocks;
  s.blocked_until = now + duration;
  s.failures.clear();
  ++blocks_;
  return BlockEvent{source, duration, s.blocks};
}

uint64_t AuthGuard::FailuresLastMinute(SteadyTime now) {
  std::lock_guard lock(mu_);
  DropOlderThan(recent_failures_, now - kMinute);
  return recent_failures_.size();
}

bool AuthGuard::ShouldAlert(SteadyTime now) {
  std::lock_guard lock(mu_);
  DropOlderThan(recent_failures_, now - kMinute);
  if (options_.alert_failures_per_minute == 0 || recent_failures_.size() < options_.alert_failures_per_minute) {
    return false;
  }
  if (alerted_ && last_alert_ + kMinute > now) return false;
  alerted_ = true;
  last_alert_ = now;
  return true;
}

uint64_t AuthGuard::blocks() const {
  std::lock_guard lock(mu_);
  return blocks_;
}

size_t AuthGuard::blocked_now(SteadyTime now) {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(
      std::count_if(sources_.begin(), sources_.end(), [now](const auto& s) { return s.second.blocked_until > now; }));
}

std::optional<std::chrono::milliseconds> RateLimiter::Take(const std::string& principal, SteadyTime now) {
  if (options_.principal_requests_per_second <= 0) return std::nullopt;
  const double rate = options_.principal_requests_per_second;
  const double burst = options_.principal_burst > 0 ? options_.principal_burst : rate;
  std::lock_guard lock(mu_);
  auto it = buckets_.find(principal);
  if (it == buckets_.end()) {
    if (buckets_.size() >= kMaxTrackedPrincipals) {
      // Full buckets carry no state worth keeping: drop them first.
      for (auto b = buckets_.begin(); b != buckets_.end();) {
        const double refilled = b->second.tokens + std::chrono::duration<double>(now - b->second.last).count() * rate;
        b = refilled >= burst ? buckets_.erase(b) : std::next(b);
      }
      if (buckets_.size() >= kMaxTrackedPrincipals) buckets_.erase(buckets_.begin());
    }
    it = buckets_.emplace(principal, Bucket{burst, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = std::min(burst, b.tokens + std::chrono::duration<double>(now - b.last).count() * rate);
  b.last = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return std::nullopt;
  }
  ++limited_;
  const double wait_s = (1 - b.tokens) / rate;
  return std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000) + 1);
}

uint64_t RateLimiter::limited() const {
  std::lock_guard lock(mu_);
  return limited_;
}

void Alerts::Raise(std::string kind, std::string message) {
  spdlog::error("event=alert kind={} message=\"{}\"", kind, message);
  const int64_t now_ms = UnixNowMillis();
  std::lock_guard lock(mu_);
  ++counts_[kind];
  alerts_.push_back({now_ms, std::move(kind), std::move(message)});
  if (alerts_.size() > kMaxAlerts) alerts_.pop_front();
}

std::vector<Alert> Alerts::Recent() const {
  std::lock_guard lock(mu_);
  return {alerts_.begin(), alerts_.end()};
}

std::map<std::string, uint64_t> Alerts::Counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

}  // namespace bulwark::server
