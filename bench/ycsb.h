#pragma once
// YCSB's core workloads (Cooper et al., SoCC 2010) over a KvTarget: the
// request mixes and key choosers of the reference implementation, one field
// of `value_bytes` per record instead of ten of 100 bytes.
//
//   A  50% read, 50% update              zipfian
//   B  95% read,  5% update              zipfian
//   C 100% read                          zipfian
//   D  95% read,  5% insert              latest (recent records are hot)
//   F  50% read, 50% read-modify-write   zipfian
//
// Zipfian is YCSB's scrambled zipfian (constant 0.99): popular items are
// spread over the key space by a hash. Header-only.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

namespace bulwark::bench {

// YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record
// synthetic databases"): item i in [0, n) with probability ~ 1 / (i+1)^theta.
// The zeta sum is computed once, O(n). Next() is const and thread-safe given
// a per-thread engine.
class Zipfian {
 public:
  Zipfian(uint64_t n, double theta = 0.99) : n_(n), theta_(theta) {
    for (uint64_t i = 1; i <= n; ++i) zeta_n_ += 1.0 / std::pow(static_cast<double>(i), theta);
    const double zeta2 = 1.0 + 1.0 / std::pow(2.0, theta);
    alpha_ = 1.0 / (1.0 - theta);
    eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - theta)) / (1.0 - zeta2 / zeta_n_);
  }
  uint64_t Next(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    const double uz = u * zeta_n_;
    if (uz < 1.0) return 0;
    if (uz < 1.0 + std::pow(0.5, theta_)) return 1;
    const auto v = static_cast<uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return std::min(v, n_ - 1);
  }

 private:
  uint64_t n_;
  double theta_;
  double zeta_n_ = 0, alpha_ = 0, eta_ = 0;
};

// FNV-1a of the 8 bytes of `x`, as YCSB scrambles zipfian item numbers.
inline uint64_t Fnv64(uint64_t x) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (int i = 0; i < 8; ++i) {
    h ^= (x >> (8 * i)) & 0xFF;
    h *= 0x100000001B3ULL;
  }
  return h;
}

enum class YcsbOp { kRead, kUpdate, kInsert, kReadModifyWrite };

struct YcsbWorkload {
  char name;
  double read, update, insert, read_modify_write;  // proportions, summing to 1
  bool latest;                                     // key chooser: latest instead of zipfian
};

constexpr YcsbWorkload kYcsbWorkloads[] = {
    {'A', 0.50, 0.50, 0, 0, false}, {'B', 0.95, 0.05, 0, 0, false}, {'C', 1.0, 0, 0, 0, false},
    {'D', 0.95, 0, 0.05, 0, true},  {'F', 0.50, 0, 0, 0.50, false},
};

// The key of record `i`: 16 bytes, like the 16-byte keys of the write runs.
inline std::string YcsbKey(uint64_t i) {
  std::string digits = std::to_string(i);
  return "user" + std::string(12 - std::min<size_t>(12, digits.size()), '0') + digits;
}

// Chooses operations and keys for one workload; shared by all clients. The
// record count grows with inserts (workload D).
class YcsbChooser {
 public:
  // `clients_max`: at most this many inserts are in flight at once.
  YcsbChooser(const YcsbWorkload& w, uint64_t records, uint64_t clients_max)
      : w_(w), zipf_(records), records_(records), base_(records), in_flight_max_(clients_max) {}

  YcsbOp NextOp(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    if (u < w_.read) return YcsbOp::kRead;
    if (u < w_.read + w_.update) return YcsbOp::kUpdate;
    if (u < w_.read + w_.update + w_.insert) return YcsbOp::kInsert;
    return YcsbOp::kReadModifyWrite;
  }
  // An existing record to read or update.
  uint64_t NextKey(std::mt19937_64& rng) const {
    // Records claimed by inserts that may still be in flight are skipped:
    // at most `in_flight_max_` of them, all at the top of the range.
    const uint64_t claimed = records_.load();
    const uint64_t count = std::max(base_, claimed > in_flight_max_ ? claimed - in_flight_max_ : 0);
    if (w_.latest) {
      // Latest: zipfian distance back from the newest record.
      const uint64_t back = zipf_.Next(rng);
      return back < count ? count - 1 - back : 0;
    }
    return Fnv64(zipf_.Next(rng)) % count;
  }
  // A new record number for an insert.
  uint64_t ClaimInsert() { return records_++; }

 private:
  YcsbWorkload w_;
  Zipfian zipf_;
  std::atomic<uint64_t> records_;  // loaded + claimed by inserts
  uint64_t base_;                  // loaded before the run: always readable
  uint64_t in_flight_max_;
};

}  // namespace bulwark::bench
