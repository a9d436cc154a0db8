#pragma once
// Deterministic simulation of a Raft cluster.
//
// One seed fixes everything: the cluster's configuration, every node's
// clock rate, every network fault, every crash and every client request.
// The simulator drives RawNodes the way a real runner does (persist, send,
// apply, advance), injects faults between those steps, and checks the Raft
// safety properties after every step:
//   - election safety: at most one leader per term;
//   - log matching: an (index, term) pair names one entry and one previous
//     term in every log that holds it;
//   - leader completeness: a leader of term T holds every entry known to be
//     committed in a term below T;
//   - state-machine safety: every node applies the same entry at an index
//     (checked through a hash chain over the applied state, so snapshots are
//     covered too).
// Election safety is also checked as messages leave a node: a kApp,
// kHeartbeat or kSnap proves its sender led its term, even a leader deposed
// within the same step.
// At the end it heals the cluster, waits for it to converge, and checks that
// every acknowledged proposal is applied on every node, that every ReadIndex
// read was linearizable, and that every read a leader accepted is answered
// if that node is still up and leading in the same term (a read accepted by
// a follower may be lost with its forwarded request, so it is only counted).
//
// Thread safety: a Simulator is single-threaded; distinct simulators may run
// on distinct threads.

#include <cstdint>
#include <string>

namespace bulwark::raft::sim {

struct SimOptions {
  uint64_t seed = 1;
  int nodes = 3;
  int steps = 1500;  // fault-injection phase; convergence follows
  // Deliberately broken rules, to prove the checkers can fail.
  bool broken_commit_old_term = false;
  bool broken_skip_vote_log_check = false;
  bool verbose = false;  // print each fault and role change to stderr
};

struct SimStats {
  uint64_t steps = 0;
  uint64_t leaders_elected = 0;
  uint64_t max_term = 0;
  uint64_t writes_acked = 0;
  uint64_t reads_accepted = 0;  // ReadIndex returned OK
  uint64_t reads_completed = 0;
  bool lease_reads = false;     // this seed's cluster used lease-based reads
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t snapshots_sent = 0;
  uint64_t messages_delivered = 0;
  uint64_t final_applied_index = 0;
};

struct SimResult {
  bool ok = true;
  std::string violation;  // first violation found, if any
  SimStats stats;
};

SimResult RunSimulation(const SimOptions& options);

// The one-line command that replays `options` exactly.
std::string ReplayCommand(const SimOptions& options);

}  // namespace bulwark::raft::sim
