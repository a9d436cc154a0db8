#pragma once
// WanLinks: the WAN between the regions of a chaos account, made of
// FaultProxy instances (this kernel has no netem). Node i of region R gets
// a proxy on its own address 127.0.R.i at port + kWanProxyPortOffset that
// forwards to its peer port, connecting from the caller's own address; the
// account (AccountOptions::wan_proxies) names these proxies as every
// region's peers, so the region-to-region traffic (the write region's
// stream, region images) crosses them, while the Raft traffic inside a
// region and the control group's stay direct.
//
// A fault is applied to the links into one region (every proxy in front of
// its nodes): latency with jitter, loss, a throttled link, stalls, a one-way
// blackhole, or a cut that closes every connection and refuses new ones.
//
// Ownership: owns the proxies; destroying it closes them.
// Thread safety: Fault and Heal from one thread at a time.

#include <memory>
#include <string>
#include <vector>

#include "chaos/fault_proxy.h"
#include "common/status.h"

namespace bulwark::chaos {

class WanLinks {
 public:
  // Starts a proxy for each of `nodes` nodes of each of `regions` regions
  // (127.0.R.i, client port `port`). IOError if one cannot listen.
  static Result<std::unique_ptr<WanLinks>> Start(int regions, int nodes, int port, uint64_t seed);

  // Applies a fault chosen by `draw` to the links into `region` (1-based);
  // returns what it did. InvalidArgument for an unknown region.
  Result<std::string> Fault(int region, uint64_t draw);
  // Lifts every fault on every link.
  void Heal();

  // Connections and bytes through every proxy, in words (for the report).
  std::string Summary() const;

 private:
  WanLinks() = default;
  std::vector<std::vector<std::unique_ptr<FaultProxy>>> regions_;  // [region-1][node-1]
};

}  // namespace bulwark::chaos
