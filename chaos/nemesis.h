#pragma once
// The nemesis of a chaos run: injects one fault at a time into a
// LocalCluster, holds it, heals it, and records what it did and when.
//
//   kill       SIGKILL a node (the leader half the time), restart it at heal
//   stop       SIGSTOP a node (the leader half the time), SIGCONT at heal
//   partition  nftables rules between node addresses (NftPartition): one
//              node isolated, two halves, a majorities ring, a bridge, or
//              one node that cannot hear the others (one-way)
//   clock      move one node's wall clock by up to +-90 s through
//              libfaketime (the nodes run under chaos' bulwarkd wrapper,
//              which preloads it with a per-node offset file that is re-read
//              every second); monotonic clocks are left alone (one region only)
//   transfer   hand a region's leadership to another node (TransferLeader)
//   rotate     key rotations under the load: the workload container's data
//              key (NemesisOptions::rotate_data_key), one node's store key,
//              and one node's master key (online; the node restarts with
//              the new key from then on)
//   failover   several regions: a planned failover of the write region to
//              another region (NemesisOptions::failover), under the load; it
//              is not undone at heal
//   power      kill -9 a node and drop what its stores had not synced, as a
//              power cut would (chaos/disk_faults.h), restart it at heal
//   disk       fsync errors, write errors or a full disk on one node
//              (injected under its RocksDB); at heal the fault is lifted and
//              a node that stopped on it is restarted
//   corrupt    kill -9 a node, flip a bit in one of its store's files or cut
//              its newest WAL's tail, restart it; if its store refuses to
//              open, replace its disk (remove, wipe, rejoin, add)
//   wan        several regions through WAN proxies: latency and jitter,
//              loss, a throttled link, a one-way blackhole or a cut, on the
//              links into one region (NemesisOptions::wan)
//   cutoff     several regions and a control group: nftables rules cut the
//              write region (NemesisOptions::write_region) off from every
//              other region and the witness, held at least cutoff_hold (past
//              the grace period: another region takes the writes over), then
//              healed (the old region rejoins as a read region)
//
// With several regions, each node fault picks a region at random, then a
// node in it.
//
// Every choice comes from the seeded generator, so a run's schedule of
// faults replays (the cluster's reaction depends on timing and does not).
//
// Ownership: borrows the cluster and the partition table, which must outlive
// it. Thread safety: Run on one thread; faults() once Run has returned.

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "chaos/local_cluster.h"
#include "chaos/nftables.h"

namespace bulwark::chaos {

enum class FaultKind {
  kKill,
  kStop,
  kPartition,
  kClock,
  kFailover,
  kTransfer,
  kRotate,
  kCutoff,
  kPower,
  kDisk,
  kCorrupt,
  kWan,
};

const char* FaultKindName(FaultKind kind);
std::optional<FaultKind> ParseFaultKind(const std::string& name);

// The largest clock offset the nemesis applies. Signed writes are refused
// beyond 4 minutes of skew (security::kMaxWriteClockSkew); this stays inside
// it so the fault tests the database, not the request signing.
constexpr int kMaxClockOffsetSeconds = 90;

struct FaultRecord {
  FaultKind kind = FaultKind::kKill;
  std::string what;  // "kill node 2 (leader)", "partition ring", ...
  int64_t start_ns = 0;
  int64_t end_ns = 0;  // when it was healed
  std::string error;   // the fault or its heal went wrong (a node did not restart, ...)
};

struct NemesisOptions {
  std::vector<FaultKind> kinds;
  uint64_t seed = 1;
  // Quiet time between faults and how long each is held, drawn uniformly.
  std::chrono::milliseconds quiet_min{2000}, quiet_max{4000};
  std::chrono::milliseconds hold_min{3000}, hold_max{8000};
  // Where the per-node clock offset files live (clock/node-N); empty
  // disables the clock fault.
  std::string clock_dir;
  // The failover fault: moves the write region, returns what it did.
  std::function<Result<std::string>()> failover;
  // The rotate fault's data-key part: rotates the workload container's key.
  std::function<Result<std::string>()> rotate_data_key;
  // The cutoff fault: the write region's number (1-based), the addresses
  // of each region ("127.0.R.0/24") and of the witness, and how long a cut
  // lasts at least.
  std::function<Result<int>()> write_region;
  std::vector<std::string> region_nets;
  std::string witness_ip;
  std::chrono::milliseconds cutoff_hold{0};
  // The wan fault: applies a fault drawn from the seed to the links into
  // region `region` (1-based) and returns what it did; called with
  // region 0 to heal every link.
  std::function<Result<std::string>(int region, uint64_t draw)> wan;
};

// A region the nemesis may fault: its cluster and name ("" for one region).
struct NemesisTarget {
  LocalCluster* cluster = nullptr;
  std::string region;
};

class Nemesis {
 public:
  Nemesis(LocalCluster* cluster, NftPartition* partition, NemesisOptions options, std::function<int64_t()> now_ns);
  Nemesis(std::vector<NemesisTarget> targets, NftPartition* partition, NemesisOptions options,
          std::function<int64_t()> now_ns);

  // Injects faults until `until` or `abort` is set, healing each one before
  // the next. Returns after healing the last.
  void Run(std::chrono::steady_clock::time_point until, const std::atomic<bool>& abort);
  // Heals whatever is still broken: continues stopped nodes, restarts
  // killed ones, removes partition rules, resets clocks. Idempotent.
  Status HealAll();
  // After the last heal: replaces the disk of every node that still carries
  // damage no read has found yet, so the convergence check compares sound
  // replicas (a latent bad block would answer Corruption, not data).
  Status ReplaceDamagedDisks();
  const std::vector<FaultRecord>& faults() const { return faults_; }

  // Writes a node's clock offset file ("+30" seconds); the wrapper's
  // libfaketime re-reads it within a second.
  static Status WriteClockOffset(const std::string& clock_dir, int node, int seconds);

 private:
  FaultRecord Inject(FaultKind kind);
  Status Heal(const FaultRecord& fault);
  int PickNode(bool prefer_leader, std::string* why);
  // Lifts disk faults and restarts those nodes; restarts damaged nodes,
  // replacing the disk of any whose store refuses to open or whose replica
  // stopped on the damage (now or since).
  Status HealDisks();
  static bool NodeStopped(LocalCluster* c, int x, std::string* why);
  Status Replace(LocalCluster* c, int x);
  std::vector<std::pair<std::string, std::string>> PartitionRules(std::string* what);
  template <typename Rep, typename Period>
  void Sleep(std::chrono::duration<Rep, Period> d, const std::atomic<bool>& abort);

  std::vector<NemesisTarget> targets_;
  LocalCluster* cluster_;  // the region the fault being injected is in
  NftPartition* partition_;
  NemesisOptions options_;
  std::function<int64_t()> now_ns_;
  std::mt19937_64 rng_;
  std::vector<FaultRecord> faults_;
  std::vector<FaultKind> deck_;                              // kinds still to come this round
  std::vector<std::pair<LocalCluster*, int>> stopped_;       // nodes SIGSTOPped and not yet continued
  std::vector<std::pair<LocalCluster*, int>> killed_;        // nodes killed and not yet restarted
  std::vector<int> skewed_;                                  // nodes whose clock is off
  std::vector<std::pair<LocalCluster*, int>> disk_faulted_;  // nodes with an injected disk fault
  std::vector<std::pair<LocalCluster*, int>> damaged_;       // nodes killed with a damaged store
  std::vector<std::pair<LocalCluster*, int>> latent_;        // damaged, disk not replaced since
  bool wan_faulted_ = false;
  std::string heal_note_;  // what the last heal found, for the fault's record
};

}  // namespace bulwark::chaos
