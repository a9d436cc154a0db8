#pragma once
// Synthetic register histories that are linearizable by construction: each
// operation takes effect at a chosen instant between its invoke and its
// completion, against an atomic register per key. For the checkers' tests
// (a valid history must pass; one corrupted read must not) and for timing
// the checker on large histories (`bulwark-chaos synth`).
// Thread safety: pure. Deterministic for a seed.

#include <cstdint>
#include <vector>

#include "chaos/check/history.h"

namespace bulwark::chaos::check {

struct SynthOptions {
  uint64_t seed = 1;
  size_t operations = 1000;
  int processes = 5;  // concurrent clients
  int keys = 10;
  // Per mille of operations that end as info (their process then retires);
  // half of those took effect.
  int info_per_mille = 20;
  // An operation lasts up to this many time steps on each side of the
  // instant it takes effect; instants are 10 steps apart, so a larger value
  // makes more operations overlap (a harder search).
  int64_t spread = 30;
};

std::vector<Event> SynthesizeRegisterHistory(const SynthOptions& options);

}  // namespace bulwark::chaos::check
