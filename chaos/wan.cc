#include "chaos/wan.h"

#include <random>

#include "chaos/local_account.h"

namespace bulwark::chaos {

Result<std::unique_ptr<WanLinks>> WanLinks::Start(int regions, int nodes, int port, uint64_t seed) {
  std::unique_ptr<WanLinks> links(new WanLinks());
  for (int r = 1; r <= regions; ++r) {
    links->regions_.emplace_back();
    for (int i = 1; i <= nodes; ++i) {
      const std::string ip = "127.0." + std::to_string(r) + "." + std::to_string(i);
      FaultProxy::Options o;
      o.listen_host = ip;
      o.listen_port = port + kWanProxyPortOffset;
      o.target_host = ip;
      o.target_port = port + 1;
      o.seed = seed * 1000 + static_cast<uint64_t>(r * 10 + i);
      o.bind_to_client_ip = true;
      BULWARK_ASSIGN_OR_RETURN(auto proxy, FaultProxy::Start(o));
      links->regions_.back().push_back(std::move(proxy));
    }
  }
  return links;
}

Result<std::string> WanLinks::Fault(int region, uint64_t draw) {
  if (region < 1 || region > static_cast<int>(regions_.size())) {
    return Status::InvalidArgument("no region " + std::to_string(region));
  }
  std::mt19937_64 rng(draw);
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const std::string into = "wan into r" + std::to_string(region) + ": ";
  auto& proxies = regions_[region - 1];
  LinkFaults f;
  std::string what;
  switch (uniform(0, 5)) {
    case 0:
      f.delay = std::chrono::milliseconds(uniform(50, 250));
      f.jitter = std::chrono::milliseconds(uniform(0, 50));
      what = "latency " + std::to_string(f.delay.count() / 1000) + " ms + jitter up to " +
             std::to_string(f.jitter.count() / 1000) + " ms each way";
      break;
    case 1:
      f.delay = std::chrono::milliseconds(20);
      f.loss_probability = static_cast<double>(uniform(5, 30)) / 100;
      what = "loss " + std::to_string(static_cast<int>(f.loss_probability * 100)) + "% of chunks (+200 ms each)";
      break;
    case 2:
      f.bandwidth_bytes_per_s = static_cast<uint64_t>(uniform(16, 256)) << 10;
      what = "throttled to " + std::to_string(f.bandwidth_bytes_per_s >> 10) + " KiB/s each way";
      break;
    case 3:
      f.stall_probability = 0.05;
      f.stall = std::chrono::milliseconds(uniform(1000, 3000));
      what = "stalls of " + std::to_string(f.stall.count() / 1000) + " ms on 5% of chunks";
      break;
    case 4: {
      const bool inbound = uniform(0, 1) == 0;
      LinkFaults hole;
      hole.blackhole = true;
      for (auto& p : proxies)
        p->SetFaults(inbound ? FaultProxy::Direction::kToTarget : FaultProxy::Direction::kToClient, hole);
      return into + (inbound ? "one-way blackhole (requests in are held)" : "one-way blackhole (answers out are held)");
    }
    default:
      for (auto& p : proxies) p->Cut();
      return into + "cut (connections closed, new ones refused)";
  }
  for (auto& p : proxies) p->SetFaults(f);
  return into + what;
}

void WanLinks::Heal() {
  for (auto& region : regions_) {
    for (auto& p : region) {
      p->SetFaults(LinkFaults{});
      p->Restore();
    }
  }
}

std::string WanLinks::Summary() const {
  uint64_t connections = 0, refused = 0, bytes = 0;
  for (const auto& region : regions_) {
    for (const auto& p : region) {
      const FaultProxy::Stats s = p->stats();
      connections += s.connections;
      refused += s.refused;
      bytes += s.bytes[0] + s.bytes[1];
    }
  }
  return std::to_string(connections) + " connections (" + std::to_string(refused) + " refused), " +
         std::to_string(bytes >> 10) + " KiB forwarded";
}

}  // namespace bulwark::chaos
