// Construction, elections, term handling, follower and candidate behaviour.
// Leader behaviour is in raft_leader.cc.

#include "replication/raft/raft.h"

#include <algorithm>
#include <cassert>

#include "replication/raft/validate.h"

namespace bulwark::raft {

namespace {
constexpr char kTransferContext[] = "transfer";
}  // namespace

Status ReadsFullError() {
  return Status::ResourceExhausted("raft: read dropped, max_pending_reads requests already waiting");
}
Status ProposalDroppedError() { return Status::Unavailable("raft: proposal dropped"); }
Status UncommittedLimitError() {
  return Status::ResourceExhausted("raft: uncommitted entries exceed max_uncommitted_entries_bytes");
}

Status Config::Validate() const {
  if (id == kNone) return Status::InvalidArgument("raft: id must not be 0");
  if (heartbeat_timeout_ticks <= 0) {
    return Status::InvalidArgument("raft: heartbeat_timeout_ticks must be > 0");
  }
  if (election_timeout_ticks <= heartbeat_timeout_ticks) {
    return Status::InvalidArgument("raft: election_timeout_ticks must be > heartbeat_timeout_ticks");
  }
  if (max_inflight_msgs == 0) return Status::InvalidArgument("raft: max_inflight_msgs must be > 0");
  if (max_inflight_bytes == 0) return Status::InvalidArgument("raft: max_inflight_bytes must be > 0");
  if (max_size_per_msg_bytes == 0) {
    return Status::InvalidArgument("raft: max_size_per_msg_bytes must be > 0");
  }
  if (max_committed_size_per_ready_bytes == 0) {
    return Status::InvalidArgument("raft: max_committed_size_per_ready_bytes must be > 0");
  }
  if (max_uncommitted_entries_bytes == 0) {
    return Status::InvalidArgument("raft: max_uncommitted_entries_bytes must be > 0");
  }
  if (max_pending_reads == 0) return Status::InvalidArgument("raft: max_pending_reads must be > 0");
  if (read_only_option == ReadOnlyOption::kLeaseBased && !check_quorum) {
    // Followers honour the leader's lease only with check-quorum (they then
    // ignore vote requests while they hear from the leader).
    return Status::InvalidArgument("raft: lease-based reads require check_quorum");
  }
  if (lease_timeout_ticks <= 0 || lease_timeout_ticks >= election_timeout_ticks) {
    return Status::InvalidArgument("raft: lease_timeout_ticks must be in (0, election_timeout_ticks)");
  }
  return Status::Ok();
}

Raft::Raft(const Config& config, const Storage* storage)
    : config_(config),
      id_(config.id),
      log_(storage, config.max_committed_size_per_ready_bytes),
      tracker_(config.max_inflight_msgs, config.max_inflight_bytes),
      read_only_(config.max_pending_reads),
      rng_(config.rng_seed ^ (config.id * 0x9E3779B97F4A7C15ULL)) {}

Result<std::unique_ptr<Raft>> Raft::Open(const Config& config, const Storage* storage) {
  BULWARK_RETURN_IF_ERROR(config.Validate());
  if (storage == nullptr) return Status::InvalidArgument("raft: storage must not be null");
  HardState hs;
  ConfState cs;
  BULWARK_RETURN_IF_ERROR(storage->InitialState(&hs, &cs));
  std::unique_ptr<Raft> r(new Raft(config, storage));
  BULWARK_RETURN_IF_ERROR(r->LoadState(hs, cs));
  return r;
}

Status Raft::LoadState(const HardState& hs, const ConfState& cs) {
  tracker_.Reset(cs, log_.LastIndex() + 1);
  is_learner_ = tracker_.IsLearner(id_);
  if (!hs.IsEmpty()) {
    if (hs.commit < log_.committed() || hs.commit > log_.LastIndex()) {
      return Status::Corruption("raft: persisted commit index is out of range [" + std::to_string(log_.committed()) +
                                ", " + std::to_string(log_.LastIndex()) + "]");
    }
    log_.CommitTo(hs.commit);
    restarted_in_term_ = hs.term > 0;
    term_ = hs.term;
    vote_ = hs.vote;
  }
  if (config_.applied > 0) {
    if (config_.applied > log_.committed()) {
      return Status::InvalidArgument("raft: applied index is beyond the commit index");
    }
    log_.AppliedTo(std::max(config_.applied, log_.applied()));
  }
  BecomeFollower(term_, kNone);
  return Status::Ok();
}

// ---- state transitions ----

void Raft::Reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNone;
    leader_tick_seen_ = 0;
  }
  lead_ = kNone;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  tracker_.ResetVotes();
  uint64_t last = log_.LastIndex();
  for (auto& [id, pr] : tracker_.progress()) {
    bool learner = pr.is_learner;
    pr = Progress(last + 1, config_.max_inflight_msgs, config_.max_inflight_bytes, learner);
    if (id == id_) pr.match = last;
  }
  pending_conf_index_ = 0;
  uncommitted_size_ = 0;
  timeout_now_sent_tick_ = 0;
  read_only_.Reset();
  pending_read_index_messages_.clear();
}

void Raft::ResetRandomizedElectionTimeout() {
  int et = config_.election_timeout_ticks;
  randomized_election_timeout_ = et + static_cast<int>(rng_.Uniform(static_cast<uint64_t>(et)));
}

void Raft::BecomeFollower(uint64_t term, uint64_t lead) {
  Reset(term);
  lead_ = lead;
  state_ = StateRole::kFollower;
}

void Raft::BecomeCandidate() {
  assert(state_ != StateRole::kLeader && "invalid transition leader -> candidate");
  Reset(term_ + 1);
  vote_ = id_;
  state_ = StateRole::kCandidate;
}

void Raft::BecomePreCandidate() {
  assert(state_ != StateRole::kLeader && "invalid transition leader -> pre-candidate");
  // A pre-candidate does not change its term or vote: a failed pre-vote
  // must leave no trace.
  tracker_.ResetVotes();
  lead_ = kNone;
  state_ = StateRole::kPreCandidate;
}

void Raft::BecomeLeader() {
  assert(state_ != StateRole::kFollower && "invalid transition follower -> leader");
  Reset(term_);
  lead_ = id_;
  state_ = StateRole::kLeader;
  Progress* self = tracker_.Get(id_);
  assert(self != nullptr);
  self->BecomeReplicate();
  // The leader is always active to itself; check-quorum preserves this.
  self->recent_active = true;
  bool ok = AppendEntry({Entry{}});
  assert(ok && "the empty leader entry must always fit");
  (void)ok;
  // Treat any conf change in the log tail as pending: no new change until
  // everything up to here, including the empty entry that commits the
  // leader's term, has been applied. This is the guard against the
  // single-server-change bug (a change must follow a commit in the term).
  pending_conf_index_ = log_.LastIndex();
  // The empty entry has no payload and so never counts as uncommitted.
  uncommitted_size_ = 0;
}

// ---- elections ----

bool Raft::Promotable() const { return tracker_.IsVoter(id_) && !log_.UnstableSnapshot().has_value(); }

bool Raft::HasUnappliedConfChange() const {
  if (log_.committed() <= log_.applied()) return false;
  uint64_t lo = std::max(log_.applied() + 1, log_.FirstIndex());
  Result<std::vector<Entry>> ents = log_.Slice(lo, log_.committed() + 1, kNoLimit);
  assert(ents.ok() && "unexpected error scanning for conf changes");
  for (const Entry& e : *ents) {
    if (e.type == EntryType::kConfChange) return true;
  }
  return false;
}

void Raft::Hup(CampaignType t) {
  if (state_ == StateRole::kLeader) return;
  if (!Promotable()) return;
  // A node that has committed but not applied a membership change does not
  // know its configuration yet, and must not campaign with a stale one.
  if (HasUnappliedConfChange()) return;
  Campaign(t);
}

void Raft::Campaign(CampaignType t) {
  uint64_t term;
  MessageType vote_type;
  if (t == CampaignType::kPreElection) {
    BecomePreCandidate();
    vote_type = MessageType::kPreVote;
    term = term_ + 1;  // the term we would campaign in; ours is unchanged
  } else {
    BecomeCandidate();
    vote_type = MessageType::kVote;
    term = term_;
  }
  if (Poll(id_, true) == VoteResult::kWon) {
    // Single-voter cluster: we won at once.
    if (t == CampaignType::kPreElection) {
      Campaign(CampaignType::kElection);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (uint64_t id : tracker_.voters()) {
    if (id == id_) continue;
    Message m;
    m.type = vote_type;
    m.to = id;
    m.term = term;
    m.index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    if (t == CampaignType::kTransfer) {
      m.context = kTransferContext;
      m.commit = timeout_now_tick_;  // lets voters judge its freshness
    }
    Send(std::move(m));
  }
}

VoteResult Raft::Poll(uint64_t id, bool granted) {
  tracker_.RecordVote(id, granted);
  size_t granted_count = 0;
  size_t rejected_count = 0;
  return tracker_.TallyVotes(&granted_count, &rejected_count);
}

void Raft::Tick() {
  ++ticks_;
  if (state_ == StateRole::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (Promotable() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    Message m;
    m.type = MessageType::kHup;
    m.from = id_;
    (void)Step(std::move(m));
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_timeout_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      Message m;
      m.type = MessageType::kCheckQuorum;
      m.from = id_;
      (void)Step(std::move(m));
    }
    // A transfer that did not finish within an election timeout is abandoned
    // (and retried if this leader has been removed).
    if (state_ == StateRole::kLeader && lead_transferee_ != kNone) AbortLeaderTransfer();
    HandOverIfRemoved();
  }
  if (state_ != StateRole::kLeader) return;
  if (heartbeat_elapsed_ >= config_.heartbeat_timeout_ticks) {
    heartbeat_elapsed_ = 0;
    Message m;
    m.type = MessageType::kBeat;
    m.from = id_;
    (void)Step(std::move(m));
  }
}

bool Raft::InLease() const {
  if (!config_.check_quorum || election_elapsed_ >= config_.election_timeout_ticks) return false;
  if (lead_ != kNone) return true;
  // After a restart we do not know whether we acknowledged a leader's
  // heartbeat just before crashing; with lease reads on, honour a lease we
  // may have granted for one election timeout.
  return config_.read_only_option == ReadOnlyOption::kLeaseBased && restarted_in_term_ &&
         ticks_ < static_cast<uint64_t>(config_.election_timeout_ticks);
}

// A forced (transfer) vote request skips our lease. With lease reads on,
// allow that only while the transfer may still be under way by the old
// leader's clock: the request carries the tick (+1) at which the leader sent
// TimeoutNow, and a heartbeat from an election timeout later proves the
// leader has abandoned that transfer and may count our ack for its lease
// again (see LeaseValid). Right after a restart we do not know which
// heartbeats we acknowledged, so no forced vote skips the lease then.
bool Raft::ForcedVoteAllowed(const Message& m) const {
  if (config_.read_only_option != ReadOnlyOption::kLeaseBased) return true;
  if (m.term != term_ + 1 || m.commit == 0) return false;
  if (restarted_in_term_ && ticks_ < static_cast<uint64_t>(config_.election_timeout_ticks)) return false;
  return m.commit + static_cast<uint64_t>(config_.election_timeout_ticks) > leader_tick_seen_;
}

// Term comparison common to every state (figure 2, "All Servers": if a
// message carries a higher term, adopt it and become follower).
Status Raft::StepByTerm(const Message& m, bool* handled) {
  *handled = false;
  if (m.term > term_) {
    if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
      bool force = m.context == kTransferContext && ForcedVoteAllowed(m);
      // Within the lease we have heard from a live leader: ignore the
      // disruptive candidate (thesis 4.2.3), unless the leader asked for it.
      if (!force && InLease()) {
        *handled = true;
        return Status::Ok();
      }
    }
    if (m.type == MessageType::kPreVote) {
      // Never change our term for a pre-vote.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // A granted pre-vote carries the future term; we bump it only on
      // winning the pre-election.
    } else if (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat || m.type == MessageType::kSnap) {
      BecomeFollower(m.term, m.from);
    } else {
      int elapsed = election_elapsed_;
      bool was_leader = state_ == StateRole::kLeader;
      BecomeFollower(m.term, kNone);
      // Figure 2: only hearing from the leader or granting a vote restarts
      // the election timer, not a higher term alone. Otherwise a candidate
      // with a stale log and a fast clock keeps resetting everyone else's
      // timer and nobody electable ever campaigns (found by the simulator).
      if (!was_leader && m.type == MessageType::kVote) election_elapsed_ = elapsed;
    }
  } else if (m.term < term_) {
    *handled = true;
    if ((config_.check_quorum || config_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kApp)) {
      // A stale leader (e.g. after a partition heals) learns our term so it
      // steps down; otherwise, with pre-vote, we could never be elected.
      Message resp;
      resp.type = MessageType::kAppResp;
      resp.to = m.from;
      Send(std::move(resp));
    } else if (m.type == MessageType::kPreVote) {
      Message resp;
      resp.type = MessageType::kPreVoteResp;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      Send(std::move(resp));
    }
    return Status::Ok();
  }
  return Status::Ok();
}

Status Raft::Step(Message m) {
  // A term on a forwarded request means nothing; it must not make us adopt
  // a term or step down.
  if (IsForwardedRequest(m.type)) m.term = 0;
  if (m.term != 0) {
    bool handled = false;
    BULWARK_RETURN_IF_ERROR(StepByTerm(m, &handled));
    if (handled) return Status::Ok();
  }
  switch (m.type) {
    case MessageType::kHup:
      Hup(config_.pre_vote ? CampaignType::kPreElection : CampaignType::kElection);
      return Status::Ok();
    case MessageType::kVote:
    case MessageType::kPreVote:
      HandleVoteRequest(m);
      return Status::Ok();
    default:
      break;
  }
  switch (state_) {
    case StateRole::kLeader:
      return StepLeader(m);
    case StateRole::kCandidate:
    case StateRole::kPreCandidate:
      return StepCandidate(m);
    case StateRole::kFollower:
      return StepFollower(m);
  }
  return Status::Ok();
}

// Figure 2, RequestVote receiver: grant if we have not voted for someone
// else this term and the candidate's log is at least as up to date.
void Raft::HandleVoteRequest(const Message& m) {
  bool can_vote =
      vote_ == m.from || (vote_ == kNone && lead_ == kNone) || (m.type == MessageType::kPreVote && m.term > term_);
  bool up_to_date = config_.testing_skip_vote_log_check || log_.IsUpToDate(m.index, m.log_term);
  Message resp;
  resp.type = VoteResponseType(m.type);
  resp.to = m.from;
  if (can_vote && up_to_date) {
    // Answer in the candidate's term: a pre-vote response in our older term
    // would be ignored by the pre-candidate.
    resp.term = m.term;
    Send(std::move(resp));
    if (m.type == MessageType::kVote) {
      assert((vote_ == kNone || vote_ == m.from) && "second vote in one term");
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    resp.term = term_;
    resp.reject = true;
    Send(std::move(resp));
  }
}

// ---- follower and candidate ----

Status Raft::StepFollower(Message& m) {
  switch (m.type) {
    case MessageType::kProp:
      if (lead_ == kNone || config_.disable_proposal_forwarding) return ProposalDroppedError();
      m.to = lead_;
      Send(std::move(m));
      return Status::Ok();
    case MessageType::kApp:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleAppendEntries(m);
      return Status::Ok();
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      return HandleHeartbeat(m);
    case MessageType::kSnap:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleSnapshot(m);
      return Status::Ok();
    case MessageType::kTransferLeader:
      if (lead_ == kNone) return ProposalDroppedError();
      // Forwarded as is: `from` names the transferee, not the sender.
      m.to = lead_;
      m.term = 0;
      msgs_.push_back(std::move(m));
      return Status::Ok();
    case MessageType::kReadIndex:
      if (lead_ == kNone) return ProposalDroppedError();
      m.to = lead_;
      Send(std::move(m));
      return Status::Ok();
    case MessageType::kTimeoutNow:
      // Only our leader may force an election (it skips everyone's lease).
      if (lead_ == kNone || m.from != lead_) return Status::Ok();
      // The leader asked us to take over: campaign now, skipping pre-vote.
      timeout_now_tick_ = m.index;
      Hup(CampaignType::kTransfer);
      return Status::Ok();
    case MessageType::kReadIndexResp:
      // Only our leader confirms reads: an index from any other peer could
      // be stale and would serve a non-linearizable read.
      if (lead_ == kNone || m.from != lead_) return Status::Ok();
      read_states_.push_back(ReadState{m.index, m.context});
      return Status::Ok();
    default:
      return Status::Ok();
  }
}

Status Raft::StepCandidate(Message& m) {
  MessageType my_resp = state_ == StateRole::kPreCandidate ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  switch (m.type) {
    case MessageType::kProp:
    case MessageType::kReadIndex:
    case MessageType::kTransferLeader:
      return ProposalDroppedError();
    case MessageType::kApp:
      BecomeFollower(m.term, m.from);  // a leader of our term exists
      HandleAppendEntries(m);
      return Status::Ok();
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      return HandleHeartbeat(m);
    case MessageType::kSnap:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      return Status::Ok();
    default:
      break;
  }
  if (m.type != my_resp) return Status::Ok();
  // A granted pre-vote is for the term we would campaign in; any other
  // term is not an answer to our pre-election.
  if (m.type == MessageType::kPreVoteResp && !m.reject && m.term != term_ + 1) {
    return Status::Ok();
  }
  switch (Poll(m.from, !m.reject)) {
    case VoteResult::kWon:
      if (state_ == StateRole::kPreCandidate) {
        Campaign(CampaignType::kElection);
      } else {
        BecomeLeader();
        BcastAppend();
      }
      break;
    case VoteResult::kLost:
      // Pre-candidate: stay in our term. Candidate: m.term == term_.
      BecomeFollower(term_, kNone);
      break;
    case VoteResult::kPending:
      break;
  }
  return Status::Ok();
}

// Figure 2, AppendEntries receiver.
void Raft::HandleAppendEntries(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  if (m.index < log_.committed()) {
    // Everything up to our commit index matches the leader already.
    resp.index = log_.committed();
    Send(std::move(resp));
    return;
  }
  if (!EntriesFollow(m)) return;  // malformed; RawNode rejects these
  if (std::optional<uint64_t> last = log_.MaybeAppend(m.index, m.log_term, m.commit, m.entries)) {
    resp.index = *last;
    Send(std::move(resp));
    return;
  }
  // Reject, with a hint that lets the leader skip a whole term of entries.
  uint64_t hint_index = std::min(m.index, log_.LastIndex());
  auto [idx, term] = log_.FindConflictByTerm(hint_index, m.log_term);
  resp.index = m.index;
  resp.reject = true;
  resp.reject_hint = idx;
  resp.log_term = term;
  Send(std::move(resp));
}

Status Raft::HandleHeartbeat(const Message& m) {
  // The leader sends min(match, commit), and its match for us grows only
  // with our acknowledgements: a commit index past our last entry means our
  // log lost entries we acknowledged as durable (a disk that lost synced
  // writes, or damage recovery dropped). Going on would let us vote and
  // count as a copy of entries we no longer hold, so the node stops instead,
  // as etcd does; its disk must be replaced (docs/replication.md).
  if (m.commit > log_.LastIndex()) {
    return Status::Corruption("raft: the leader (node " + std::to_string(m.from) + ", term " + std::to_string(m.term) +
                              ") holds index " + std::to_string(m.commit) +
                              " as acknowledged by this node, but its log ends at " + std::to_string(log_.LastIndex()) +
                              ": this node's log lost acknowledged entries (its disk lost synced writes)");
  }
  leader_tick_seen_ = std::max(leader_tick_seen_, m.index);
  log_.CommitTo(m.commit);
  Message resp;
  resp.type = MessageType::kHeartbeatResp;
  resp.to = m.from;
  resp.context = m.context;
  resp.index = m.index;  // echo the leader's send tick, for its lease
  Send(std::move(resp));
  return Status::Ok();
}

void Raft::HandleSnapshot(const Message& m) {
  // RawNode validates snapshots from the network; defend anyway.
  if (!m.snapshot.has_value() || !ConfStateValid(m.snapshot->metadata.conf_state)) return;
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  resp.index = Restore(*m.snapshot) ? log_.LastIndex() : log_.committed();
  Send(std::move(resp));
}

bool Raft::Restore(const Snapshot& s) {
  if (s.metadata.index <= log_.committed()) return false;
  if (state_ != StateRole::kFollower) {
    // Only a leader of our term sends snapshots, and receiving one made us
    // a follower; anything else is a bug elsewhere. Defend anyway.
    BecomeFollower(term_ + 1, kNone);
    return false;
  }
  if (log_.MatchTerm(s.metadata.index, s.metadata.term)) {
    // We have the entries already: fast-forward the commit index.
    log_.CommitTo(s.metadata.index);
    return false;
  }
  // The snapshot may predate our own addition to the membership (it was
  // taken before the change committed); we then install it as a non-member
  // and become one when the change, which follows it in the log, applies.
  // Until then we are not promotable, so this cannot affect elections.
  log_.Restore(s);
  tracker_.Reset(s.metadata.conf_state, log_.LastIndex() + 1);
  if (Progress* self = tracker_.Get(id_)) {
    self->match = log_.LastIndex();
    self->next = self->match + 1;
  }
  is_learner_ = tracker_.IsLearner(id_);
  return true;
}

std::vector<Message> Raft::TakeMessages() {
  std::vector<Message> out;
  out.swap(msgs_);
  return out;
}

std::vector<ReadState> Raft::TakeReadStates() {
  std::vector<ReadState> out;
  out.swap(read_states_);
  return out;
}

}  // namespace bulwark::raft
