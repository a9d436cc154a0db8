#pragma once
// The shapes of network partition the nemesis makes, as plain data: which
// node may not send to which. Pure (no I/O), so the shapes are unit-tested;
// nemesis.cc turns a plan into nftables rules between node addresses.
// Thread safety: pure functions.

#include <string>
#include <utility>
#include <vector>

namespace bulwark::chaos {

enum class PartitionShape {
  kIsolate,  // `target` cut off from everyone, both ways
  kHalves,   // the first half of `order` against the rest (4 nodes: no majority anywhere)
  kRing,     // `order` in a ring, each node hearing only its two neighbours (a different majority each)
  kBridge,   // order[0] hears both sides; the two sides hear only it
  kOneWay,   // `target` hears no one, but everyone hears it
};

constexpr int kPartitionShapes = 5;

struct PartitionPlan {
  std::string what;                        // for the report: "majorities ring {1,2,4,3}"
  std::vector<std::pair<int, int>> block;  // (from, to), 1-based nodes, one direction each
};

// `order`: the nodes 1..n in some (seeded) order; `target`: the node kIsolate
// and kOneWay act on.
PartitionPlan PlanPartition(PartitionShape shape, const std::vector<int>& order, int target);

// True if `from` may send to `to` under `plan`.
bool CanSend(const PartitionPlan& plan, int from, int to);

}  // namespace bulwark::chaos
