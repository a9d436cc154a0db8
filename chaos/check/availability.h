#pragma once
// Failover figures from a history: RTO, the longest write unavailability,
// overall and per fault. Pure; thread-safe as values are.

#include <cstdint>
#include <utility>
#include <vector>

#include "chaos/check/history.h"

namespace bulwark::chaos::check {

struct Availability {
  // The longest gap between successive acknowledged writes (write, cas,
  // add, append) in [start_ns, end_ns], counting the edges as
  // acknowledgements; the end is cut to the last write the history has (a
  // set workload stops adding once its sets are full).
  int64_t rto_ns = 0;
  // Per fault window: the longest such gap within [the fault's start, the
  // next fault's start (or end_ns)), each gap clipped to the window.
  std::vector<int64_t> per_fault_rto_ns;
};

// `faults`: [start, end] of each fault on the history's clock, in order.
Availability MeasureAvailability(const std::vector<Operation>& ops,
                                 const std::vector<std::pair<int64_t, int64_t>>& faults, int64_t start_ns,
                                 int64_t end_ns);

}  // namespace bulwark::chaos::check
