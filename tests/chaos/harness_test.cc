// The pure parts of a chaos run: the partition shapes the nemesis makes
// (who can still reach a majority under each), and the RTO measured from a
// history.
#include <catch2/catch.hpp>

#include "chaos/check/availability.h"
#include "chaos/partition_plan.h"

using namespace bulwark::chaos;

namespace {

// How many nodes `node` can exchange messages with both ways, itself included.
int Reach(const PartitionPlan& plan, int node, int n) {
  int reach = 0;
  for (int other = 1; other <= n; ++other) {
    reach += other == node || (CanSend(plan, node, other) && CanSend(plan, other, node));
  }
  return reach;
}

check::Operation Write(size_t id, int64_t invoke_s, int64_t complete_s, check::EventType outcome) {
  check::Operation op;
  op.id = id;
  op.f = "write";
  op.invoke_ns = invoke_s * 1'000'000'000;
  op.complete_ns = complete_s * 1'000'000'000;
  op.outcome = outcome;
  return op;
}

}  // namespace

TEST_CASE("Partition shapes cut what they say, for four and five nodes") {
  for (const std::vector<int>& order : {std::vector<int>{3, 1, 4, 2}, std::vector<int>{2, 5, 1, 4, 3}}) {
    const int n = static_cast<int>(order.size());
    INFO(n << " nodes");

    const PartitionPlan isolate = PlanPartition(PartitionShape::kIsolate, order, 2);
    CHECK(Reach(isolate, 2, n) == 1);
    for (int x = 1; x <= n; ++x) {
      if (x != 2) CHECK(Reach(isolate, x, n) == n - 1);
    }

    // Halves: with four nodes neither side has a majority.
    const PartitionPlan halves = PlanPartition(PartitionShape::kHalves, order, 0);
    CHECK(Reach(halves, order[0], n) == n / 2);
    CHECK(Reach(halves, order[n - 1], n) == n - n / 2);
    CHECK_FALSE(CanSend(halves, order[0], order[n - 1]));

    // Ring: every node still reaches three (a majority of 4 or 5), but not the same three.
    const PartitionPlan ring = PlanPartition(PartitionShape::kRing, order, 0);
    for (int x = 1; x <= n; ++x) CHECK(Reach(ring, x, n) == 3);
    CHECK_FALSE(CanSend(ring, order[0], order[2]));
    CHECK(CanSend(ring, order[0], order[n - 1]));

    // Bridge: order[0] reaches everyone; the sides do not reach each other.
    const PartitionPlan bridge = PlanPartition(PartitionShape::kBridge, order, 0);
    CHECK(Reach(bridge, order[0], n) == n);
    CHECK_FALSE(CanSend(bridge, order[1], order[n - 1]));
    CHECK_FALSE(CanSend(bridge, order[n - 1], order[1]));

    // One way: node 2 is heard but hears no one.
    const PartitionPlan one_way = PlanPartition(PartitionShape::kOneWay, order, 2);
    for (int x = 1; x <= n; ++x) {
      if (x == 2) continue;
      CHECK(CanSend(one_way, 2, x));
      CHECK_FALSE(CanSend(one_way, x, 2));
    }
    CHECK(one_way.block.size() == static_cast<size_t>(n - 1));
  }
}

TEST_CASE("RTO is the longest gap between acknowledged writes, overall and per fault") {
  using check::EventType;
  // Acks at 1, 2, 7, 8 and 12 s; faults at [3, 5] and [9, 10]; the run is [0, 13].
  std::vector<check::Operation> ops = {
      Write(0, 0, 1, EventType::kOk),   Write(1, 1, 2, EventType::kOk),
      Write(2, 2, 7, EventType::kOk),   Write(3, 7, 8, EventType::kOk),
      Write(4, 8, 12, EventType::kOk),  Write(5, 3, 4, EventType::kFail),  // failures and unknowns acknowledge nothing
      Write(6, 4, 5, EventType::kInfo),
  };
  const auto a = check::MeasureAvailability(ops, {{3'000'000'000, 5'000'000'000}, {9'000'000'000, 10'000'000'000}}, 0,
                                            13'000'000'000);
  CHECK(a.rto_ns == 5'000'000'000);  // 2 s -> 7 s
  REQUIRE(a.per_fault_rto_ns.size() == 2);
  CHECK(a.per_fault_rto_ns[0] == 4'000'000'000);  // from the fault's start (3 s) to the ack at 7 s
  CHECK(a.per_fault_rto_ns[1] == 3'000'000'000);  // 9 s -> 12 s

  // A gap that begins just before the second fault belongs to it: the same
  // acks with faults at 2.5 s and 6 s.
  const auto b = check::MeasureAvailability(ops, {{2'500'000'000, 3'000'000'000}, {6'000'000'000, 6'500'000'000}}, 0,
                                            13'000'000'000);
  REQUIRE(b.per_fault_rto_ns.size() == 2);
  CHECK(b.per_fault_rto_ns[0] == 3'500'000'000);  // 2.5 s to 6 s, where the next fault begins
  CHECK(b.per_fault_rto_ns[1] == 4'000'000'000);  // 8 s -> 12 s beats 6 s -> 7 s

  // Writes that stop (full sets) are not unavailability: the run goes on to
  // 20 s with reads only, the last write completed at 5 s.
  std::vector<check::Operation> stopped = {Write(0, 0, 1, EventType::kOk), Write(1, 1, 2, EventType::kOk),
                                           Write(2, 4, 5, EventType::kOk)};
  const auto c = check::MeasureAvailability(stopped, {{10'000'000'000, 11'000'000'000}}, 0, 20'000'000'000);
  CHECK(c.rto_ns == 3'000'000'000);  // 2 s -> 5 s, not 5 s -> 20 s
  REQUIRE(c.per_fault_rto_ns.size() == 1);
  CHECK(c.per_fault_rto_ns[0] == 0);
}
