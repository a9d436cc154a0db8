#pragma once
// RawNode: the interface a runner uses to drive one Raft replica.
//
// Loop, in the manner of etcd's raft:
//   feed Tick(), Step(), Propose(), ReadIndex(), ... as events arrive;
//   while HasReady(): rd = GetReady();
//     1. persist rd.hard_state and rd.entries, install rd.snapshot;
//     2. send rd.messages (never before step 1 is durable);
//     3. apply rd.committed_entries (calling ApplyConfChange for conf
//        changes) and serve rd.read_states once applied past their index;
//     4. Advance(rd).
//
// Errors: Propose/ProposeConfChange/ReadIndex/TransferLeader return
// Unavailable when dropped (no leader known, transfer in progress),
// ResourceExhausted when the uncommitted bound or max_pending_reads is
// reached. Step is the network entry: it returns InvalidArgument for any
// malformed message (ValidateMessage in validate.h: a local-only type, wrong
// addressee, bad sender, term, entries or snapshot) and for an unknown
// peer's response, and never aborts on peer input.
//
// Ownership: does not own Storage (must outlive the RawNode).
// Thread safety: not thread-safe; the caller serialises every call.

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "replication/raft/raft.h"
#include "replication/raft/types.h"

namespace bulwark::raft {

class RawNode {
 public:
  static Result<std::unique_ptr<RawNode>> Open(const Config& config, const Storage* storage);

  void Tick() { raft_->Tick(); }
  // Starts an election now (the runner's "campaign" command). With
  // check-quorum, returns FailedPrecondition while this node follows a
  // leader it heard from within the election timeout (use TransferLeader).
  Status Campaign();
  Status Propose(std::string data);
  // Proposes several entries as one message, so a leader sends them to each
  // follower in one append rather than one append per entry. All or none are
  // accepted.
  Status ProposeBatch(std::vector<std::string> data);
  Status ProposeConfChange(const ConfChange& cc);
  // Feeds a message received from a peer.
  Status Step(Message m);
  // Requests a linearizable read; the answer arrives as a ReadState with
  // the same ctx (which must be non-empty and unique among pending reads).
  Status ReadIndex(std::string ctx);
  // Asks the leader to hand leadership to `transferee`.
  Status TransferLeader(uint64_t transferee);
  ConfState ApplyConfChange(const ConfChange& cc) { return raft_->ApplyConfChange(cc); }
  void ReportUnreachable(uint64_t id);
  void ReportSnapshot(uint64_t id, bool failed);

  bool HasReady() const;
  // REQUIRES: the previous Ready was passed to Advance().
  Ready GetReady();
  void Advance(const Ready& rd);

  const Raft& raft() const { return *raft_; }
  Raft& mutable_raft() { return *raft_; }

 private:
  explicit RawNode(std::unique_ptr<Raft> raft);

  std::unique_ptr<Raft> raft_;
  SoftState prev_soft_state_;
  HardState prev_hard_state_;
  bool ready_outstanding_ = false;
};

}  // namespace bulwark::raft
