#pragma once
// Raft: the consensus state machine (Ongaro & Ousterhout, figure 2, plus
// pre-vote, check-quorum, read index, leases, snapshots, learners,
// single-member membership change, leadership transfer).
//
// It does no I/O, reads no clock and owns no thread: time is Tick(), input
// is Step(message); output is the messages in msgs_ and the state of the log,
// collected into a Ready by RawNode (raw_node.h), which is the interface a
// runner uses. Tests may drive Raft directly.
//
// Invariants (asserted in the code):
//   - at most one vote per term (vote_ only set when term_ is unchanged);
//   - a leader never overwrites or deletes entries in its own log;
//   - the leader commits an index by counting only if its entry has the
//     leader's current term (figure 2, "Rules for Servers", leaders, last);
//   - applied <= committed <= last index.
//
// Errors: Step() returns a non-OK Status when a proposal, read or transfer
// is dropped (no leader, transfer in progress, uncommitted bound reached);
// the caller may retry. Malformed configuration is rejected by Validate().
//
// Ownership: does not own Storage (must outlive Raft).
// Thread safety: not thread-safe; the caller serialises every call.

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "replication/raft/log.h"
#include "replication/raft/progress.h"
#include "replication/raft/read_only.h"
#include "replication/raft/storage.h"
#include "replication/raft/types.h"

namespace bulwark::raft {

struct Config {
  uint64_t id = kNone;
  // A follower that hears nothing for a random time in
  // [election_timeout_ticks, 2 * election_timeout_ticks) campaigns.
  int election_timeout_ticks = 10;
  int heartbeat_timeout_ticks = 1;
  // The last applied index at restart (entries up to it are not re-applied).
  uint64_t applied = 0;
  // Bytes of entries in one append message (at least one entry is sent).
  uint64_t max_size_per_msg_bytes = 1 << 20;
  // Bytes of committed entries handed out in one Ready.
  uint64_t max_committed_size_per_ready_bytes = 8 << 20;
  // Payload bytes appended by the leader but not yet applied; proposals
  // beyond it are refused (ResourceExhausted).
  uint64_t max_uncommitted_entries_bytes = 64 << 20;
  // Append messages in flight to one follower (pipelining window).
  size_t max_inflight_msgs = 256;
  // Bytes in flight to one follower; kNoLimit to bound by count only.
  uint64_t max_inflight_bytes = kNoLimit;
  // Read-index requests waiting for a heartbeat quorum at once.
  size_t max_pending_reads = 4096;
  bool check_quorum = false;
  bool pre_vote = false;
  ReadOnlyOption read_only_option = ReadOnlyOption::kSafe;
  // Lease reads: how long (in the leader's ticks) a quorum's heartbeat
  // acknowledgement lets the leader answer reads without a new round. Must
  // be < election_timeout_ticks by the worst clock-rate ratio between
  // nodes: lease_timeout_ticks * max_rate_ratio <= election_timeout_ticks.
  int lease_timeout_ticks = 4;
  bool disable_proposal_forwarding = false;
  uint64_t rng_seed = 1;

  // Test-only: deliberately broken rules, so the checkers can be shown to
  // fail. Never set these outside tests.
  bool testing_commit_old_term_by_counting = false;
  bool testing_skip_vote_log_check = false;

  Status Validate() const;
};

// Returned by Step() when a proposal or request cannot be handled now.
Status ProposalDroppedError();
Status UncommittedLimitError();
Status ReadsFullError();

class Raft {
 public:
  // Validates the config and loads state from storage. Storage must outlive
  // the returned object.
  static Result<std::unique_ptr<Raft>> Open(const Config& config, const Storage* storage);

  Status Step(Message m);
  void Tick();

  // Applied by the runner after applying a committed kConfChange entry.
  ConfState ApplyConfChange(const ConfChange& cc);
  // The runner reports that it applied (or was handed) entries up to index.
  void AdvanceApplied(uint64_t index, uint64_t applied_payload_bytes);

  std::vector<Message> TakeMessages();
  std::vector<ReadState> TakeReadStates();
  const std::vector<Message>& messages() const { return msgs_; }
  const std::vector<ReadState>& read_states() const { return read_states_; }

  uint64_t id() const { return id_; }
  uint64_t term() const { return term_; }
  uint64_t vote() const { return vote_; }
  uint64_t lead() const { return lead_; }
  StateRole state() const { return state_; }
  bool is_learner() const { return is_learner_; }
  uint64_t lead_transferee() const { return lead_transferee_; }
  uint64_t pending_conf_index() const { return pending_conf_index_; }
  uint64_t uncommitted_size() const { return uncommitted_size_; }
  int election_elapsed() const { return election_elapsed_; }
  int randomized_election_timeout() const { return randomized_election_timeout_; }
  RaftLog& log() { return log_; }
  const RaftLog& log() const { return log_; }
  ProgressTracker& tracker() { return tracker_; }
  const ProgressTracker& tracker() const { return tracker_; }
  // With check-quorum: a follower that heard from its leader less than an
  // election timeout ago, and so ignores vote requests (the leader's lease).
  bool FollowerInLease() const {
    return config_.check_quorum && state_ == StateRole::kFollower && lead_ != kNone &&
           election_elapsed_ < config_.election_timeout_ticks;
  }
  SoftState GetSoftState() const { return SoftState{lead_, state_}; }
  HardState GetHardState() const { return HardState{term_, vote_, log_.committed()}; }

  // State transitions; public for tests, which also use them to set up.
  void BecomeFollower(uint64_t term, uint64_t lead);
  void BecomeCandidate();
  void BecomePreCandidate();
  void BecomeLeader();

 private:
  enum class CampaignType : uint8_t { kPreElection, kElection, kTransfer };

  Raft(const Config& config, const Storage* storage);
  Status LoadState(const HardState& hs, const ConfState& cs);

  // Elections (raft.cc).
  void Reset(uint64_t term);
  void ResetRandomizedElectionTimeout();
  bool Promotable() const;
  bool HasUnappliedConfChange() const;
  void Hup(CampaignType t);
  void Campaign(CampaignType t);
  VoteResult Poll(uint64_t id, bool granted);
  Status StepByTerm(const Message& m, bool* handled);
  void HandleVoteRequest(const Message& m);
  void TickElection();
  void TickHeartbeat();

  // Follower and candidate (raft.cc).
  Status StepFollower(Message& m);
  Status StepCandidate(Message& m);
  void HandleAppendEntries(const Message& m);
  // Corruption when the leader's commit index for us is past our last
  // entry: our log lost entries we acknowledged (see the definition).
  Status HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  bool Restore(const Snapshot& s);

  // Leader (raft_leader.cc).
  Status StepLeader(Message& m);
  Status HandlePropose(Message& m);
  Status HandleReadIndex(const Message& m);
  void HandleAppendResponse(const Message& m, Progress* pr);
  void HandleHeartbeatResponse(const Message& m, Progress* pr);
  void HandleTransferLeader(const Message& m, Progress* pr);
  void Send(Message m);
  bool MaybeSendAppend(uint64_t to, bool send_if_empty);
  void SendAppend(uint64_t to) { MaybeSendAppend(to, true); }
  void BcastAppend();
  void BcastHeartbeat();
  void SendHeartbeat(uint64_t to, const std::string& ctx);
  void SendTimeoutNow(uint64_t to);
  bool AppendEntry(std::vector<Entry> ents);
  bool MaybeCommit();
  bool CommittedEntryInCurrentTerm() const;
  void SendReadIndexResponse(const Message& req, uint64_t read_index);
  void ReleasePendingReadIndexMessages();
  bool QuorumAcked(const std::set<uint64_t>& acks) const;
  void AnswerReadsConfirmedByQuorum();
  bool IncreaseUncommittedSize(const std::vector<Entry>& ents);
  void AbortLeaderTransfer() { lead_transferee_ = kNone; }
  bool InLease() const;
  bool ForcedVoteAllowed(const Message& m) const;
  bool LeaseValid() const;
  void HandOverIfRemoved();

  Config config_;
  uint64_t id_;
  uint64_t term_ = 0;
  uint64_t vote_ = kNone;
  RaftLog log_;
  ProgressTracker tracker_;
  StateRole state_ = StateRole::kFollower;
  bool is_learner_ = false;
  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  uint64_t lead_ = kNone;
  // Set while a leadership transfer is in progress; proposals are refused.
  uint64_t lead_transferee_ = kNone;
  // The index of the last conf change the leader may have appended; a new
  // one is refused until it is applied (one change at a time).
  uint64_t pending_conf_index_ = 0;
  uint64_t uncommitted_size_ = 0;
  ReadOnly read_only_;
  // Read-index requests that arrived before the leader committed an entry
  // of its term; bounded by max_pending_reads.
  std::vector<Message> pending_read_index_messages_;
  int election_elapsed_ = 0;
  // Ticks since this object was created: the leader's clock for leases.
  uint64_t ticks_ = 0;
  // Restarted with a term: we may have acknowledged a leader's lease just
  // before crashing (see InLease).
  bool restarted_in_term_ = false;
  // Leader: ticks_ + 1 when it last sent TimeoutNow in its term (0: never).
  // The forced election that follows skips follower leases, so lease reads
  // count only acks of heartbeats sent an election timeout later, after
  // which voters refuse to skip their lease for that transfer (see
  // ForcedVoteAllowed). Until then reads fall back to a heartbeat round.
  uint64_t timeout_now_sent_tick_ = 0;
  // Follower, lease mode: the newest leader send tick (+1) carried by a
  // heartbeat in this term, and the one carried by the TimeoutNow that
  // started our own forced campaign.
  uint64_t leader_tick_seen_ = 0;
  uint64_t timeout_now_tick_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  Rng rng_;
};

}  // namespace bulwark::raft
