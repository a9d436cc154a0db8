#pragma once
// Checkers for the guarantees weaker than linearizability, and for lost
// writes, over register, set and append histories (see history.h for the
// functions of each workload).
//
// The write order. Bulwark orders every write of a partition by its GLSN.
// A write comes before another if both carry one (`glsn` on their ok
// completion) and its GLSN is lower, or if it completed before the other was
// invoked (both went through the one write region, which is linearizable,
// so a GLSN order against real time is itself a bug).
// Writes neither rule orders are concurrent: no checker accuses a read of
// being stale with respect to a write it cannot prove came first. A write
// whose outcome was unknown (info) but that an ok read showed had taken
// effect by the time that read completed: from then on it is ordered, and
// must not be lost, like an acknowledged write (WriteIndex::EffectiveComplete).
//
// Values: register checks and set/append elements map a read value back to
// the write that wrote it, so workloads write unique values; a history that
// writes a value twice (per key) gets Outcome::kUnknown from the checks that
// need the mapping.
//
// Thread safety: pure functions. Errors: none; bad histories produce findings.

#include <cstdint>
#include <vector>

#include "chaos/check/history.h"
#include "chaos/check/verdict.h"

namespace bulwark::chaos::check {

// Every read returns a value some write wrote (or absent, for a register
// never written) and that write was invoked before the read returned; a
// value whose write failed must never be read.
Verdict CheckValuesRead(const std::vector<Operation>& ops, Workload workload);

// Per session (the `session` field, else the process): read-your-writes
// (a read sees the session's own earlier writes, or later ones), monotonic
// reads (never older than what the session read before) and monotonic writes
// (the session's writes take effect in the order it made them; decided by
// GLSN where present, otherwise it shows as a monotonic-reads violation of
// the session that observes the writes out of order). Three verdicts.
std::vector<Verdict> CheckSession(const std::vector<Operation>& ops, Workload workload);

struct StalenessBound {
  uint64_t max_versions = 0;  // K: writes a read may miss (per key)
  int64_t max_lag_ns = 0;     // T: how long ago the oldest missed write may have completed
};

// BoundedStaleness(K, T): a read may miss at most K writes to its key that
// completed before it was invoked, and none that completed more than T before.
// With {0, 0} this is the stale-read check that Strong implies.
Verdict CheckBoundedStaleness(const std::vector<Operation>& ops, Workload workload, StalenessBound bound);

// ConsistentPrefix: a read reflects a prefix of the write order: it never
// shows a write while missing an acknowledged write ordered before it, and
// (append) all reads of a key list their elements in one order. For a single
// register every written value is a prefix, so only CheckValuesRead applies.
Verdict CheckConsistentPrefix(const std::vector<Operation>& ops, Workload workload);

// Set and append: every acknowledged add (append) that completed before the
// last successful read of its key (the final read, after healing) is in
// that read. Register: the last Strong read of each key (the harness's final
// read) misses no acknowledged write that had taken effect before it began,
// i.e. the register did not go back to an older value. A write whose outcome
// was unknown but that some read showed counts as acknowledged from that
// read's completion on. Each lost write is one finding, so the count is the
// RPO (a register: one finding per key that went back, naming the writes
// its final value misses).
Verdict CheckLostWrites(const std::vector<Operation>& ops, Workload workload);

}  // namespace bulwark::chaos::check
