#include "server/metrics.h"

#include <sstream>

namespace bulwark::server {

void Metrics::Record(const std::string& operation, const std::string& code, double seconds,
                     const std::string& consistency) {
  std::lock_guard lock(mu_);
  ++requests_[{operation, code, consistency}];
  Histogram& h = latency_[operation];
  for (size_t i = 0; i < kBucketsS.size(); ++i) {
    if (seconds <= kBucketsS[i]) ++h.buckets[i];
  }
  ++h.count;
  h.sum_s += seconds;
}

void Metrics::Increment(const std::string& family, const std::string& help, const std::string& labels, uint64_t n) {
  std::lock_guard lock(mu_);
  Counter& c = counters_[family];
  if (c.help.empty()) c.help = help;
  c.values[labels] += n;
}

void Metrics::AddGauge(const std::string& name, const std::string& help, std::function<double()> read) {
  std::lock_guard lock(mu_);
  gauges_[name] = Gauge{help, std::move(read), {}};
}

void Metrics::AddLabeledGauge(const std::string& name, const std::string& help, std::function<Samples()> read) {
  std::lock_guard lock(mu_);
  gauges_[name] = Gauge{help, {}, std::move(read)};
}

std::string Metrics::Render() const {
  std::lock_guard lock(mu_);
  std::ostringstream out;
  out << "# HELP bulwark_requests_total Requests served, by operation, result code and consistency level.\n"
      << "# TYPE bulwark_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [operation, code, consistency] = key;
    out << "bulwark_requests_total{operation=\"" << operation << "\",code=\"" << code << "\"";
    if (!consistency.empty()) out << ",consistency=\"" << consistency << "\"";
    out << "} " << n << "\n";
  }
  for (const auto& [family, c] : counters_) {
    out << "# HELP " << family << " " << c.help << "\n# TYPE " << family << " counter\n";
    for (const auto& [labels, n] : c.values) out << family << "{" << labels << "} " << n << "\n";
  }
  out << "# HELP bulwark_request_duration_seconds Request latency, by operation.\n"
      << "# TYPE bulwark_request_duration_seconds histogram\n";
  for (const auto& [op, h] : latency_) {
    for (size_t i = 0; i < kBucketsS.size(); ++i) {
      out << "bulwark_request_duration_seconds_bucket{operation=\"" << op << "\",le=\"" << kBucketsS[i] << "\"} "
          << h.buckets[i] << "\n";
    }
    out << "bulwark_request_duration_seconds_bucket{operation=\"" << op << "\",le=\"+Inf\"} " << h.count << "\n"
        << "bulwark_request_duration_seconds_sum{operation=\"" << op << "\"} " << h.sum_s << "\n"
        << "bulwark_request_duration_seconds_count{operation=\"" << op << "\"} " << h.count << "\n";
  }
  for (const auto& [name, g] : gauges_) {
    out << "# HELP " << name << " " << g.help << "\n# TYPE " << name << " gauge\n";
    if (g.read_labeled) {
      for (const auto& [labels, v] : g.read_labeled()) out << name << "{" << labels << "} " << v << "\n";
    } else {
      out << name << " " << g.read() << "\n";
    }
  }
  return out.str();
}

}  // namespace bulwark::server
