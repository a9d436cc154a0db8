#include "chaos/partition_plan.h"

#include <algorithm>

namespace bulwark::chaos {
namespace {

std::string Name(const std::vector<int>& group) {
  std::string s = "{";
  for (int x : group) s += (s.size() > 1 ? "," : "") + std::to_string(x);
  return s + "}";
}

void CutBothWays(const std::vector<int>& a, const std::vector<int>& b, PartitionPlan* plan) {
  for (int x : a) {
    for (int y : b) {
      plan->block.push_back({x, y});
      plan->block.push_back({y, x});
    }
  }
}

}  // namespace

PartitionPlan PlanPartition(PartitionShape shape, const std::vector<int>& order, int target) {
  PartitionPlan plan;
  const int n = static_cast<int>(order.size());
  std::vector<int> others;
  for (int x : order) {
    if (x != target) others.push_back(x);
  }
  switch (shape) {
    case PartitionShape::kIsolate:
      CutBothWays({target}, others, &plan);
      plan.what = "node " + std::to_string(target) + " isolated";
      break;
    case PartitionShape::kHalves: {
      std::vector<int> a(order.begin(), order.begin() + n / 2), b(order.begin() + n / 2, order.end());
      CutBothWays(a, b, &plan);
      plan.what = "halves " + Name(a) + " " + Name(b);
      break;
    }
    case PartitionShape::kRing:
      for (int i = 0; i < n; ++i) {
        for (int j = i + 1; j < n; ++j) {
          if (std::min(j - i, n - (j - i)) > 1) CutBothWays({order[i]}, {order[j]}, &plan);
        }
      }
      plan.what = "majorities ring " + Name(order);
      break;
    case PartitionShape::kBridge: {
      const int side = (n - 1) / 2;
      std::vector<int> a(order.begin() + 1, order.begin() + 1 + side), b(order.begin() + 1 + side, order.end());
      CutBothWays(a, b, &plan);
      plan.what = "bridge " + std::to_string(order.empty() ? 0 : order[0]) + " between " + Name(a) + " and " + Name(b);
      break;
    }
    case PartitionShape::kOneWay:
      for (int x : others) plan.block.push_back({x, target});
      plan.what = "node " + std::to_string(target) + " hears no one (one-way)";
      break;
  }
  return plan;
}

bool CanSend(const PartitionPlan& plan, int from, int to) {
  return std::find(plan.block.begin(), plan.block.end(), std::pair<int, int>{from, to}) == plan.block.end();
}

}  // namespace bulwark::chaos
