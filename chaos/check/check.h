#pragma once
// The checks each consistency level implies, run together on one history.
//
//   every level: values-read; lost-writes (set, append; register: the final read)
//   Eventual:         nothing more
//   ConsistentPrefix: consistent-prefix
//   Session:          read-your-writes, monotonic-reads, monotonic-writes, consistent-prefix
//   BoundedStaleness: bounded-staleness(K, T), consistent-prefix
//   Strong:           linearizable (register); stale-read and consistent-prefix (set, append)
//
// For set and append histories the Strong checks are necessary conditions of
// linearizability, not a full search (the issue asks for registers).
// Thread safety: pure. Errors: none; see each verdict.

#include <vector>

#include "chaos/check/guarantees.h"
#include "chaos/check/history.h"
#include "chaos/check/linearizable.h"
#include "chaos/check/verdict.h"
#include "common/consistency.h"

namespace bulwark::chaos::check {

struct CheckOptions {
  LinearizabilityLimits linearizability;
  // Bulwark's account default for BoundedStaleness is set per account; the
  // checker is told the bound the run was configured with.
  StalenessBound staleness{100, 5'000'000'000};
};

std::vector<Verdict> CheckHistory(const std::vector<Operation>& ops, Workload workload, ConsistencyLevel level,
                                  const CheckOptions& options = {});

// kInvalid if any verdict is, else kUnknown if any is, else kValid.
Outcome Worst(const std::vector<Verdict>& verdicts);

}  // namespace bulwark::chaos::check
