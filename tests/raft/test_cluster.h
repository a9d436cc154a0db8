#pragma once
// TestCluster: a hand-driven cluster of RawNodes for unit and interaction
// tests. Nothing happens unless the test asks: a Ready is handled only by
// ProcessReady, a message moves only by DeliverMsgs, time passes only by
// Tick. Every step can describe what it did, for the interaction scripts.
//
// The runner contract is followed exactly: persist (MemoryStorage), then
// queue messages, then apply (conf changes via ApplyConfChange), then
// Advance.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "replication/raft/raw_node.h"
#include "replication/raft/storage.h"

namespace bulwark::raft::testing {

// The configuration most tests start from: election after 10 ticks,
// heartbeat every tick, a seed of the test's choosing.
inline Config SmallClusterConfig(uint64_t rng_seed) {
  Config c;
  c.election_timeout_ticks = 10;
  c.heartbeat_timeout_ticks = 1;
  c.rng_seed = rng_seed;
  return c;
}

struct TestNode {
  uint64_t id = kNone;
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<RawNode> raw;
  Config config;
  std::vector<Entry> applied;  // applied entries, in order (not those in snapshots)
  uint64_t applied_index = 0;
  std::vector<ReadState> read_states;
  ConfState conf_state;
};

class TestCluster {
 public:
  // `base` supplies every Config field except id.
  explicit TestCluster(const Config& base) : base_(base) {}

  // Adds nodes ids [next, next + count) whose initial membership is
  // `initial` (empty voters: the new nodes themselves). A node added later
  // with an empty ConfState joins by conf change or snapshot.
  void AddNodes(int count, const ConfState& initial = {});
  void AddNodeWithConfig(const Config& config, const ConfState& initial);
  TestNode& node(uint64_t id) { return *nodes_.at(id); }
  Raft& raft(uint64_t id) { return nodes_.at(id)->raw->mutable_raft(); }
  std::vector<uint64_t> ids() const;

  // Handles one Ready of node id; returns its description ("" if none).
  std::string ProcessReady(uint64_t id);
  // Delivers every queued message addressed to id (dropping those cut by a
  // partition); returns their descriptions.
  std::string DeliverMsgs(uint64_t id);
  // Drops queued messages addressed to id; returns how many.
  size_t DropMsgs(uint64_t id);
  // Repeats ProcessReady and DeliverMsgs until nothing is left (bounded).
  std::string Stabilize();
  std::vector<Message>& mailbox() { return mailbox_; }

  void Tick(uint64_t id, int ticks);
  // Ticks until the node's randomized election timeout has passed.
  void TickElection(uint64_t id);
  void TickHeartbeat(uint64_t id);
  // Ticks node id into an election and runs the cluster until it settles.
  void ElectLeader(uint64_t id) {
    TickElection(id);
    Stabilize();
  }
  // Elects node id by hand-delivering one round of votes, and stops before
  // its first (empty) entry is replicated: the leader has committed nothing
  // in its term yet.
  void ElectBeforeFirstCommit(uint64_t id) {
    TickElection(id);
    ProcessReady(id);
    for (uint64_t other : ids()) {
      if (other != id) DeliverMsgs(other);
    }
    for (uint64_t other : ids()) {
      if (other != id) ProcessReady(other);
    }
    DeliverMsgs(id);
  }

  // Messages between different groups are dropped at delivery.
  void Partition(const std::vector<std::set<uint64_t>>& groups);
  void Isolate(uint64_t id);
  void Heal() { group_.clear(); }

  // Snapshots the node's applied state at `index` and compacts its log.
  Status Compact(uint64_t id, uint64_t index);
  // Restarts the node from its storage (volatile state lost).
  void Restart(uint64_t id);

  // "1: StateLeader term=2 commit=5 applied=5 last=5" per node.
  std::string Describe() const;
  std::string RaftLog(uint64_t id) const;

 private:
  bool Connected(uint64_t from, uint64_t to) const;
  void Start(TestNode& n);

  Config base_;
  std::map<uint64_t, std::unique_ptr<TestNode>> nodes_;
  std::vector<Message> mailbox_;
  std::map<uint64_t, int> group_;
};

// A cluster of `n` voters (ids 1..n) in which node 1 has been elected and the
// cluster has settled; fails the test if node 1 is not the leader.
TestCluster ElectedCluster(const Config& base, int n = 3);

}  // namespace bulwark::raft::testing
