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
#include <tuple>
#include <utility>
#include <vector>

namespace bulwark::server {

class Metrics {
 public:
  // Upper bounds of the latency buckets, in seconds.
  static constexpr std::array<double, 12> kBucketsS = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                       0.01,   0.025,   0.05,   0.1,   0.5,    2.5};

  // One request: counted by operation, code and (reads) consistency level
  // ("" for writes and admin calls), its latency by operation.
  void Record(const std::string& operation, const std::string& code, double seconds,
              const std::string& consistency = {});
  // Adds `n` to counter `family` for one label set, e.g. ("bulwark_auth_failures_total",
  // "reason=\"bad_signature\""). The help text is taken from the first call.
  void Increment(const std::string& family, const std::string& help, const std::string& labels, uint64_t n = 1);
  // A gauge read when /metrics is served (e.g. storage sizes).
  void AddGauge(const std::string& name, const std::string& help, std::function<double()> read);
  // A gauge with one sample per label set (e.g. key ages by key name).
  using Samples = std::vector<std::pair<std::string, double>>;  // labels ("name=\"primary\""), value
  void AddLabeledGauge(const std::string& name, const std::string& help, std::function<Samples()> read);
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
    std::function<Samples()> read_labeled;  // set instead of `read` for a labeled gauge
  };
  mutable std::mutex mu_;
  struct Counter {
    std::string help;
    std::map<std::string, uint64_t> values;  // by label set
  };
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> requests_;  // GUARDED_BY(mu_)
  std::map<std::string, Counter> counters_;                                         // GUARDED_BY(mu_)
  std::map<std::string, Histogram> latency_;                                        // GUARDED_BY(mu_)
  std::map<std::string, Gauge> gauges_;                                             // GUARDED_BY(mu_)
};

}  // namespace bulwark::server
