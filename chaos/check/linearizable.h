#pragma once
// Linearizability of read/write/compare-and-set registers, one register per
// key (P-compositionality: a history is linearizable iff each key's
// sub-history is, so each key is searched on its own).
//
// The search is Wing & Gong's, with Lowe's memoisation: a depth-first walk
// over the key's invoke/complete events that tries to linearize each pending
// operation at its invoke, backtracking when it reaches the completion of an
// operation it has not linearized; a configuration (set of linearized
// operations as a bitmap, register value) already explored is never explored
// again. Operations:
//   - ok: must take effect between invoke and completion;
//   - fail: known not to have happened; left out;
//   - info (or no completion): may take effect at any point after its invoke,
//     or never; a read that did not complete constrains nothing and is left out.
// The register starts absent (JSON null). A read returns the value, null for
// absent. cas [expected, new] succeeds only if the value equals `expected`.
//
// Thread safety: pure functions. Errors: none; a search that would exceed
// its limit returns Outcome::kUnknown saying so, never hangs.

#include <cstddef>
#include <vector>

#include "chaos/check/history.h"
#include "chaos/check/verdict.h"

namespace bulwark::chaos::check {

struct LinearizabilityLimits {
  // Memory for the configurations remembered per key before the search
  // gives up with "unknown: search limit hit". A configuration costs about
  // operations/8 bytes plus the hash set's overhead.
  size_t max_memo_bytes_per_key = size_t{512} << 20;
  // Backtracking steps per key: bounds time when the memo is small but the
  // search is wide.
  size_t max_steps_per_key = 50'000'000;
};

// Checks every key of a register history (f = read, write, cas).
Verdict CheckLinearizable(const std::vector<Operation>& ops, const LinearizabilityLimits& limits = {});

}  // namespace bulwark::chaos::check
