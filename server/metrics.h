#pragma once
// Request metrics in the Prometheus text format: requests by operation and
// code, latency histograms by operation, and gauges set by the node.
// Thread safety: all methods may be called concurrently.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace bulwark::server {

class Metrics {
 public:
  // Upper bounds of the latency buckets, in seconds.
  static constexpr std::array<double, 12> kBucketsS = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                       0.01,   0.025,   0.05,   0.1,   0.5,    2.5};

  void Record(const std::string& operation, const std::string& code, double seconds);
  // A gauge read when /metrics is served (e.g. storage sizes).
  void AddGauge(const std::string& name, const std::string& help, std::function<double()> read);
  std::string Render() const;

 private:
  struct Histogram {
    std::array<uint64_t, kBucketsS.size()> buckets{};
    uint64_t count = 0;
    double sum_s = 0;
  };
  struct Gauge {
    std::string help;
    std::function<double()> read;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;  // GUARDED_BY(mu_)
  std::map<std::string, Histogram> latency_;                          // GUARDED_BY(mu_)
  std::map<std::string, Gauge> gauges_;                               // GUARDED_BY(mu_)
};

}  // namespace bulwark::server
