#include "chaos/check/availability.h"

#include <algorithm>

namespace bulwark::chaos::check {

Availability MeasureAvailability(const std::vector<Operation>& ops,
                                 const std::vector<std::pair<int64_t, int64_t>>& faults, int64_t start_ns,
                                 int64_t end_ns) {
  std::vector<int64_t> acks{start_ns};
  // Unavailability needs a write to be refused or waiting: after the last
  // write the workload made (a set workload stops adding once its sets are
  // full) there is nothing to measure.
  int64_t last_write = -1;
  for (const Operation& op : ops) {
    const bool write = op.f == "write" || op.f == "cas" || op.f == "add" || op.f == "append";
    if (!write) continue;
    last_write = std::max(last_write, op.complete_ns == kNeverCompleted ? op.invoke_ns : op.complete_ns);
    if (op.outcome == EventType::kOk && op.complete_ns >= start_ns && op.complete_ns <= end_ns) {
      acks.push_back(op.complete_ns);
    }
  }
  if (last_write >= start_ns) end_ns = std::min(end_ns, last_write);
  acks.push_back(end_ns);
  std::sort(acks.begin(), acks.end());
  Availability a;
  for (size_t i = 1; i < acks.size(); ++i) a.rto_ns = std::max(a.rto_ns, acks[i] - acks[i - 1]);
  for (size_t f = 0; f < faults.size(); ++f) {
    const int64_t from = faults[f].first;
    const int64_t to = f + 1 < faults.size() ? faults[f + 1].first : end_ns;
    int64_t worst = 0;
    for (size_t i = 1; i < acks.size(); ++i) {
      if (acks[i] <= from || acks[i - 1] >= to) continue;
      // Clipped to the window: a gap that begins just before the next fault
      // is that fault's doing, not this one's.
      worst = std::max(worst, std::min(acks[i], to) - std::max(acks[i - 1], from));
    }
    a.per_fault_rto_ns.push_back(worst);
  }
  return a;
}

}  // namespace bulwark::chaos::check
