#pragma once
// Replica: one member of a regional replica set. It drives the Raft core
// (replication/raft) with a RocksDB-backed log (raft_log_store.h) in the
// node's store, talks to the other members through the Transport, and
// applies committed WriteCommands to the DocumentStore.
//
// One thread (the raft loop) owns the core and the log: it ticks, steps
// messages, and for each Ready persists (fsync; every proposal queued since
// the last Ready shares that one fsync), sends, applies, and advances.
// gRPC threads call Propose/ReadIndex/WaitApplied, which queue work for the
// loop and wait for the outcome.
//
// Entry payloads: u8 format | u64 proposer id | u64 proposal seq | command.
// The proposer matches applied entries to its waiting callers by (id, seq).
//
// Ownership: Start returns the owner; the store is borrowed and must outlive
// it. Thread safety: every public method is thread-safe.
// Errors: Unavailable when there is no leader or leadership changed under a
// proposal (its outcome is then unknown: retry with the same request id,
// which the replicated dedup table makes safe); DeadlineExceeded when the
// caller's deadline passes first; FailedPrecondition ("not the leader") from
// Propose on a follower; ResourceExhausted when the proposal queue is full.
// A local I/O failure while applying stops the loop for good (the node must
// restart and recover): every later call returns Unavailable.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "replication/transport.h"
#include "storage/document_store.h"

namespace bulwark::replication {

// Proposals waiting for the raft loop; beyond it Propose refuses.
constexpr size_t kMaxQueuedProposals = 16384;
// Applying a region-image install without the image: each fetch from a
// member may take this long, and the replica tries its members for this
// long in all before its loop stops.
constexpr std::chrono::seconds kRegionImageFetchTimeout{120};
constexpr std::chrono::minutes kRegionImageFetchLimit{10};

struct ReplicaOptions {
  uint64_t node_id = 1;
  // Every member's peer address (self included). Used to bootstrap a new
  // store's membership, and as the address book of the transport.
  std::map<uint64_t, std::string> members;
  // Raft timing: a follower campaigns after [election, 2*election) ticks of
  // silence; the leader heartbeats every tick.
  std::chrono::milliseconds tick{50};
  int election_ticks = 10;
  // Log compaction: once more than snapshot_entries entries are held, the
  // log is cut back to keep_entries behind the applied index (a follower
  // further behind catches up by snapshot).
  uint64_t snapshot_entries = 20000;
  uint64_t keep_entries = 5000;
  // ... or once the log's column family holds more than this many bytes
  // (RocksDB's estimate, memtables included; checked every few hundred
  // loop turns).
  uint64_t snapshot_bytes = 256ull << 20;
  // The most entries the log keeps for a lagging remote region (see
  // set_log_retention); a region further behind needs a state image.
  uint64_t max_retained_entries = 200000;
  uint64_t rng_seed = 0;  // 0: from the node id and the clock
  // A node joining an existing replica set (after `bulwark node add`): it
  // starts with no membership of its own and learns it from the leader, so
  // it can never bootstrap a second set. Ignored once the store has one.
  bool join = false;
  // fsync the raft log before acknowledging (benchmarks may turn it off:
  // then a write survives a process crash, not a power loss).
  bool sync_log = true;
};

struct ReplicaStatus {
  uint64_t node_id = 0;
  uint64_t term = 0;
  uint64_t leader = 0;
  std::string role;  // "leader", "follower", "candidate", "pre-candidate", "stopped"
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t first_index = 0;
  uint64_t last_index = 0;
  std::vector<uint64_t> voters;
  // Leader only: each member's replication progress (match index).
  std::map<uint64_t, uint64_t> match;
  std::string error;  // why the loop stopped, if it did
  // Counters since start: how well proposals share fsyncs.
  uint64_t log_syncs = 0;          // Persist calls that wrote entries
  uint64_t entries_persisted = 0;  // entries those calls wrote
  uint64_t entries_applied = 0;
  uint64_t messages_sent = 0;
  uint64_t fsyncs = 0;          // raft log writes that were fsync'd
  double fsync_seconds = 0;     // time spent in them
  uint64_t leader_changes = 0;  // times this node saw the leader change (0 -> known counts)
};

// The result of a committed proposal.
struct Committed {
  uint64_t index = 0;  // raft index: the session token's position
  storage::ApplyOutcome outcome;
};

// The encoded WriteCommand inside a normal raft entry's data (after the
// proposer header); false if the data is malformed.
bool EntryCommand(std::string_view data, std::string_view* command);

class Replica final : public TransportHandler {
 public:
  using Clock = std::chrono::system_clock;
  // Handles a request forwarded by a follower (this node should lead).
  using ForwardFn = std::function<v1::ForwardResponse(const v1::ForwardRequest&)>;

  static Result<std::unique_ptr<Replica>> Start(ReplicaOptions options, storage::DocumentStore* store,
                                                TransportOptions transport);
  ~Replica() override;

  void set_forward_handler(ForwardFn fn);
  // Handles the region stream's batches (geo-replication, server side).
  using RegionAppendFn = std::function<v1::RegionAppendResponse(const v1::RegionAppendRequest&)>;
  void set_region_append_handler(RegionAppendFn fn);
  // Handles a region image sent by the write region (server side).
  using RegionImageFn = std::function<v1::RegionAppendResponse(const v1::RegionImageHeader&, const ChunkReader&)>;
  void set_region_image_handler(RegionImageFn fn);
  // Handles reports to the account's control group (server side; only on
  // a control group member's replica).
  using ControlFn = std::function<v1::ControlAnswer(const v1::ControlReport&)>;
  void set_control_handler(ControlFn fn);
  // Log retention for the region stream: size-driven compaction keeps every
  // entry from the index `fn` returns (0: no wish), unless the log then
  // holds more than ReplicaOptions::max_retained_entries. Called on the loop.
  void set_log_retention(std::function<uint64_t()> fn);
  // Geo-replication's fence: every account command proposed here (not one
  // shipped from another region, nor one its proposer stamped) is stamped
  // with the epoch `fn` returns (storage::WriteCommand::geo_epoch). Called under the proposal lock: it
  // must be cheap and must not call back into the replica.
  void set_epoch_stamp(std::function<uint64_t()> fn);

  // Leader only: appends the command and waits until it is applied here.
  Result<Committed> Propose(storage::WriteCommand cmd, Clock::time_point deadline);
  // Leader only: appends the commands in order (as consecutive proposals, so
  // they share fsyncs) and waits until each is applied here. Returns the
  // outcome of each, in order; an error if any did not commit (the ones
  // before it may have: their effects are not undone).
  Result<std::vector<Committed>> ProposeBatch(std::vector<storage::WriteCommand> cmds, Clock::time_point deadline);
  // A linearizable read barrier: returns once this node has applied every
  // write committed before the call (ReadIndex through the leader).
  Status ReadBarrier(Clock::time_point deadline);
  // Waits until this node has applied `index`; DeadlineExceeded if not by then.
  Status WaitApplied(uint64_t index, Clock::time_point deadline);
  // Sends a request to the leader. Unavailable if no leader is known.
  Result<v1::ForwardResponse> ForwardToLeader(const v1::ForwardRequest& request);
  // Leader only: changes the membership by one node and waits until the
  // change is applied here. FailedPrecondition on a follower, or while
  // another change is still pending.
  Status ChangeMembership(const raft::ConfChange& cc, Clock::time_point deadline);
  // Asks the leader to hand over to `transferee`.
  Status TransferLeadership(uint64_t transferee);

  // The node's peer transport (region streams use it too). Owned by the
  // replica; valid until Stop().
  Transport* transport();
  // Waits until this node has applied GLSN `glsn` (DocumentStore::geo_position).
  Status WaitGlsn(uint64_t glsn, Clock::time_point deadline);
  bool is_leader() const;
  uint64_t leader() const;
  uint64_t term() const;  // the current raft term (cheap: no status copy)
  uint64_t applied_index() const;
  ReplicaStatus status() const;
  // Stops the loop and the transport. Waiting callers get Unavailable.
  void Stop();

  // TransportHandler (called from transport threads).
  void OnMessage(raft::Message m) override;
  void OnUnreachable(uint64_t peer) override;
  void OnSnapshotStatus(uint64_t peer, bool failed) override;
  Status WriteSnapshot(uint64_t peer, const std::function<Status(std::string_view)>& emit) override;
  Status BeginSnapshot(uint64_t from) override;
  Status SnapshotChunk(uint64_t from, std::string_view chunk) override;
  Status EndSnapshot(uint64_t from, bool complete) override;
  v1::ForwardResponse OnForward(uint64_t from, const v1::ForwardRequest& request) override;
  v1::RegionAppendResponse OnRegionAppend(const v1::RegionAppendRequest& request) override;
  v1::RegionAppendResponse OnRegionImage(const v1::RegionImageHeader& header, const ChunkReader& next) override;
  Status ServeRegionImage(const std::string& id, const std::function<Status(std::string_view)>& emit) override;
  v1::ControlAnswer OnControl(const v1::ControlReport& report) override;

  struct Impl;

 private:
  explicit Replica(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::replication
