// Leader behaviour: replication, flow control, commit, read index, transfer,
// and membership changes.

#include <algorithm>
#include <cassert>

#include "replication/raft/raft.h"

namespace bulwark::raft {

void Raft::Send(Message m) {
  m.from = id_;
  if (m.type == MessageType::kVote || m.type == MessageType::kVoteResp ||
      m.type == MessageType::kPreVote || m.type == MessageType::kPreVoteResp) {
    // Vote messages carry the term they are about, set by the caller.
    assert(m.term != 0 && "vote message without a term");
  } else {
    assert(m.term == 0 && "term set on a non-vote message");
    // Forwarded proposals and reads are local requests travelling to the
    // leader; they carry no term so that they never disturb elections.
    if (m.type != MessageType::kProp && m.type != MessageType::kReadIndex &&
        m.type != MessageType::kTransferLeader) {
      m.term = term_;
    }
  }
  msgs_.push_back(std::move(m));
}

// Sends entries (or a snapshot when they are compacted) to one follower,
// unless flow control pauses it. Returns true if a message was sent.
bool Raft::MaybeSendAppend(uint64_t to, bool send_if_empty) {
  Progress* pr = tracker_.Get(to);
  if (pr == nullptr || pr->IsPaused()) return false;
  Message m;
  m.to = to;
  Result<uint64_t> prev_term = log_.Term(pr->next - 1);
  Result<std::vector<Entry>> ents = log_.Entries(pr->next, config_.max_size_per_msg_bytes);
  if (prev_term.ok() && ents.ok()) {
    if (ents->empty() && !send_if_empty) return false;
    m.type = MessageType::kApp;
    m.index = pr->next - 1;
    m.log_term = *prev_term;
    m.entries = std::move(ents).value();
    m.commit = log_.committed();
    if (!m.entries.empty()) {
      uint64_t bytes = 0;
      for (const Entry& e : m.entries) bytes += EntrySizeBytes(e);
      pr->SentEntries(m.entries.back().index, bytes);
    } else {
      pr->SentEntries(0, 0);
    }
  } else {
    // The follower needs entries we compacted: send the snapshot instead.
    if (!pr->recent_active) return false;
    Result<Snapshot> snap = log_.GetSnapshot();
    if (!snap.ok()) return false;  // temporarily unavailable; retry later
    assert(!snap->IsEmpty() && "compacted log without a snapshot");
    m.type = MessageType::kSnap;
    pr->BecomeSnapshot(snap->metadata.index);
    m.snapshot = std::move(snap).value();
  }
  Send(std::move(m));
  return true;
}

void Raft::BcastAppend() {
  for (auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendAppend(id);
  }
}

void Raft::BcastHeartbeat() {
  std::string ctx = read_only_.LastPendingRequestCtx();
  for (auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendHeartbeat(id, ctx);
  }
}

void Raft::SendHeartbeat(uint64_t to, const std::string& ctx) {
  // The follower may not have the leader's whole log, so it must not be
  // told to commit past what it is known to hold.
  Progress* pr = tracker_.Get(to);
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  m.commit = std::min(pr->match, log_.committed());
  m.context = ctx;
  // The send tick, echoed in the response: a lease runs from when the
  // heartbeat left, never from when its answer arrived.
  if (config_.read_only_option == ReadOnlyOption::kLeaseBased) m.index = ticks_ + 1;
  Send(std::move(m));
}

void Raft::SendTimeoutNow(uint64_t to) {
  timeout_now_sent_tick_ = ticks_ + 1;
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  // The send tick, which the transferee's vote requests carry (lease mode).
  if (config_.read_only_option == ReadOnlyOption::kLeaseBased) m.index = ticks_ + 1;
  Send(std::move(m));
}

bool Raft::IncreaseUncommittedSize(const std::vector<Entry>& ents) {
  uint64_t s = PayloadSizeBytes(ents);
  // Always admit one proposal when nothing is outstanding, however large,
  // so that a single big entry cannot wedge the group.
  if (uncommitted_size_ > 0 && s > 0 &&
      uncommitted_size_ + s > config_.max_uncommitted_entries_bytes) {
    return false;
  }
  uncommitted_size_ += s;
  return true;
}

bool Raft::AppendEntry(std::vector<Entry> ents) {
  uint64_t li = log_.LastIndex();
  for (size_t i = 0; i < ents.size(); ++i) {
    ents[i].term = term_;
    ents[i].index = li + 1 + i;
  }
  if (!IncreaseUncommittedSize(ents)) return false;
  li = log_.Append(ents);
  // The leader's own copy counts towards the quorum. The runner persists it
  // before sending the appends, so no follower can acknowledge first.
  tracker_.Get(id_)->MaybeUpdate(li);
  MaybeCommit();
  return true;
}

// Figure 2, leaders: commit N if a majority has matchIndex >= N and
// log[N].term == currentTerm. Older entries commit only indirectly.
bool Raft::MaybeCommit() {
  uint64_t mci = tracker_.Committed();
  if (config_.testing_commit_old_term_by_counting) {
    uint64_t n = std::min(mci, log_.LastIndex());
    if (n > log_.committed()) {
      log_.CommitTo(n);
      return true;
    }
    return false;
  }
  return log_.MaybeCommit(mci, term_);
}

bool Raft::CommittedEntryInCurrentTerm() const {
  return log_.ZeroTermOnOutOfBounds(log_.committed()) == term_;
}

Status Raft::StepLeader(Message& m) {
  switch (m.type) {
    case MessageType::kBeat:
      BcastHeartbeat();
      return Status::Ok();
    case MessageType::kCheckQuorum:
      if (!tracker_.QuorumActive()) BecomeFollower(term_, kNone);
      // Start a fresh window; we are always active to ourselves.
      for (auto& [id, pr] : tracker_.progress()) pr.recent_active = id == id_;
      return Status::Ok();
    case MessageType::kProp:
      return HandlePropose(m);
    case MessageType::kReadIndex:
      return HandleReadIndex(m);
    default:
      break;
  }
  Progress* pr = tracker_.Get(m.from);
  if (pr == nullptr) return Status::Ok();  // not a member (any more)
  switch (m.type) {
    case MessageType::kAppResp:
      pr->recent_active = true;
      HandleAppendResponse(m, pr);
      break;
    case MessageType::kHeartbeatResp:
      pr->recent_active = true;
      HandleHeartbeatResponse(m, pr);
      break;
    case MessageType::kSnapStatus:
      if (pr->state != ProgressState::kSnapshot) break;
      if (m.reject) pr->pending_snapshot = 0;
      // Wait for the next heartbeat response before probing again.
      pr->BecomeProbe();
      pr->msg_app_flow_paused = true;
      break;
    case MessageType::kUnreachable:
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      break;
    case MessageType::kTransferLeader:
      HandleTransferLeader(m, pr);
      break;
    default:
      break;
  }
  return Status::Ok();
}

Status Raft::HandlePropose(Message& m) {
  // RawNode validates proposals from the network; defend anyway.
  if (m.entries.empty()) return Status::InvalidArgument("raft: proposal without entries");
  if (tracker_.Get(id_) == nullptr) return ProposalDroppedError();  // removed
  if (lead_transferee_ != kNone) return ProposalDroppedError();   // handing over
  for (Entry& e : m.entries) {
    if (e.type != EntryType::kConfChange) continue;
    std::optional<ConfChange> cc = ConfChange::Decode(e.data);
    bool refuse = !cc.has_value() || pending_conf_index_ > log_.applied();
    if (cc && cc->type != ConfChangeType::kAddNode && cc->node_id == id_) {
      // The leader does not remove or demote itself: transfer leadership
      // first (see HandOverIfRemoved for why).
      refuse = true;
    }
    if (cc && cc->type == ConfChangeType::kRemoveNode && tracker_.IsVoter(cc->node_id) &&
        tracker_.voters().size() == 1) {
      refuse = true;  // removing the last voter would leave nobody to commit
    }
    if (cc && cc->type == ConfChangeType::kAddLearnerNode && tracker_.IsVoter(cc->node_id)) {
      refuse = true;  // demotion is not supported
    }
    if (refuse) {
      // Keep the index (callers may wait on it) but make it a no-op.
      e = Entry{};
    } else {
      pending_conf_index_ = log_.LastIndex() + 1 + static_cast<uint64_t>(&e - m.entries.data());
    }
  }
  if (!AppendEntry(std::move(m.entries))) return UncommittedLimitError();
  BcastAppend();
  return Status::Ok();
}

Status Raft::HandleReadIndex(const Message& m) {
  // RawNode validates reads from the network; defend anyway.
  if (m.context.empty()) return Status::InvalidArgument("raft: read index without a context");
  if (tracker_.voters().size() == 1 && tracker_.IsVoter(id_)) {
    SendReadIndexResponse(m, log_.committed());
    return Status::Ok();
  }
  // Until an entry of its term commits, a new leader does not know the
  // commit index (thesis 6.4): postpone the read.
  if (!CommittedEntryInCurrentTerm()) {
    if (pending_read_index_messages_.size() >= config_.max_pending_reads) return ReadsFullError();
    pending_read_index_messages_.push_back(m);
    return Status::Ok();
  }
  if (config_.read_only_option == ReadOnlyOption::kLeaseBased && LeaseValid()) {
    SendReadIndexResponse(m, log_.committed());
    return Status::Ok();
  }
  // No valid lease (or safe mode): confirm leadership with a heartbeat round.
  if (read_only_.Full()) return ReadsFullError();  // the client retries
  read_only_.AddRequest(log_.committed(), m);
  read_only_.RecvAck(id_, m.context);
  for (auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendHeartbeat(id, m.context);
  }
  return Status::Ok();
}

void Raft::SendReadIndexResponse(const Message& req, uint64_t read_index) {
  if (req.from == kNone || req.from == id_) {
    read_states_.push_back(ReadState{read_index, req.context});
    return;
  }
  Message resp;
  resp.type = MessageType::kReadIndexResp;
  resp.to = req.from;
  resp.index = read_index;
  resp.context = req.context;
  Send(std::move(resp));
}

void Raft::ReleasePendingReadIndexMessages() {
  if (pending_read_index_messages_.empty() || !CommittedEntryInCurrentTerm()) return;
  std::vector<Message> pending;
  pending.swap(pending_read_index_messages_);
  // Cannot be refused: these were counted against the same bound.
  for (const Message& m : pending) (void)HandleReadIndex(m);
}

void Raft::HandleAppendResponse(const Message& m, Progress* pr) {
  if (m.reject) {
    uint64_t next_probe = m.reject_hint;
    if (m.log_term > 0) {
      // Skip every entry of the follower's conflicting term at once.
      next_probe = log_.FindConflictByTerm(m.reject_hint, m.log_term).first;
    }
    if (pr->MaybeDecrTo(m.index, next_probe)) {
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      SendAppend(m.from);
    }
    return;
  }
  // An acknowledgement past our last index is from no log we sent: ignore it
  // rather than let match run beyond the log.
  if (m.index > log_.LastIndex()) return;
  bool was_paused = pr->IsPaused();
  if (!pr->MaybeUpdate(m.index)) return;
  switch (pr->state) {
    case ProgressState::kProbe:
      pr->BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      if (pr->match + 1 >= log_.FirstIndex()) {
        pr->BecomeProbe();
        pr->BecomeReplicate();
      }
      break;
    case ProgressState::kReplicate:
      pr->inflights.FreeLE(m.index);
      break;
  }
  if (MaybeCommit()) {
    ReleasePendingReadIndexMessages();
    BcastAppend();
  } else if (was_paused) {
    SendAppend(m.from);
  }
  // Pipelining: keep sending while the window allows. Bounded because every
  // send either advances next or fills the window.
  while (MaybeSendAppend(m.from, false)) {
  }
  if (m.from == lead_transferee_ && pr->match == log_.LastIndex()) SendTimeoutNow(m.from);
}

// The lease holds while a quorum of voters acknowledged heartbeats sent
// less than lease_timeout_ticks ago: none of them votes for anyone else
// until an election timeout after receiving it, so no other leader exists.
bool Raft::LeaseValid() const {
  if (lead_transferee_ != kNone) return false;
  std::vector<uint64_t> acks;  // send tick + 1 of the newest acknowledged heartbeat
  for (uint64_t id : tracker_.voters()) {
    acks.push_back(id == id_ ? ticks_ + 1 : tracker_.progress().at(id).lease_ack_tick);
  }
  if (acks.empty()) return false;
  std::sort(acks.begin(), acks.end(), std::greater<>());
  uint64_t quorum_ack = acks[tracker_.QuorumSize() - 1];
  if (quorum_ack == 0) return false;
  if (timeout_now_sent_tick_ != 0 &&
      quorum_ack < timeout_now_sent_tick_ + static_cast<uint64_t>(config_.election_timeout_ticks)) {
    return false;  // a forced election may still win votes
  }
  return quorum_ack - 1 + static_cast<uint64_t>(config_.lease_timeout_ticks) > ticks_;
}

void Raft::HandleHeartbeatResponse(const Message& m, Progress* pr) {
  pr->msg_app_flow_paused = false;
  if (config_.read_only_option == ReadOnlyOption::kLeaseBased) {
    pr->lease_ack_tick = std::max(pr->lease_ack_tick, m.index);
  }
  // Appends may have been lost with a full window; free one slot per
  // heartbeat round so that replication resumes (and a gap triggers a
  // rejection, which falls back to probing).
  if (pr->state == ProgressState::kReplicate && pr->inflights.Full()) pr->inflights.FreeFirstOne();
  if (pr->match < log_.LastIndex()) SendAppend(m.from);
  // Acks count for pending read-index rounds in every mode: with leases on,
  // a read falls back to this round whenever the lease is not valid.
  if (m.context.empty()) return;
  const std::set<uint64_t>* acks = read_only_.RecvAck(m.from, m.context);
  if (acks == nullptr || !QuorumAcked(*acks)) return;
  for (const ReadIndexStatus& rs : read_only_.Advance(m.context)) {
    SendReadIndexResponse(rs.req, rs.index);
  }
}

bool Raft::QuorumAcked(const std::set<uint64_t>& acks) const {
  size_t voter_acks = 0;
  for (uint64_t id : acks) {
    if (tracker_.IsVoter(id)) ++voter_acks;
  }
  return voter_acks >= tracker_.QuorumSize();
}

// After a membership change the acks already recorded may make a quorum
// of the new voters (e.g. the others were removed and no ack will ever
// come): answer the newest read so confirmed, and every read before it.
// Bounded by max_pending_reads.
void Raft::AnswerReadsConfirmedByQuorum() {
  const std::deque<std::string>& pending = read_only_.PendingContexts();
  for (auto it = pending.rbegin(); it != pending.rend(); ++it) {
    const std::set<uint64_t>* acks = read_only_.Acks(*it);
    if (acks == nullptr || !QuorumAcked(*acks)) continue;
    std::string ctx = *it;  // Advance invalidates the iterator
    for (const ReadIndexStatus& rs : read_only_.Advance(ctx)) {
      SendReadIndexResponse(rs.req, rs.index);
    }
    return;
  }
}

void Raft::HandleTransferLeader(const Message& m, Progress* pr) {
  if (pr->is_learner) return;  // a learner cannot lead
  uint64_t transferee = m.from;
  if (lead_transferee_ != kNone) {
    if (lead_transferee_ == transferee) return;  // already in progress
    AbortLeaderTransfer();
  }
  if (transferee == id_) return;
  // The transfer must finish within an election timeout (see TickHeartbeat).
  election_elapsed_ = 0;
  lead_transferee_ = transferee;
  if (pr->match == log_.LastIndex()) {
    SendTimeoutNow(transferee);
  } else {
    SendAppend(transferee);
  }
}

ConfState Raft::ApplyConfChange(const ConfChange& cc) {
  uint64_t next = log_.LastIndex() + 1;
  switch (cc.type) {
    case ConfChangeType::kAddNode:
      tracker_.AddNode(cc.node_id, false, next);
      break;
    case ConfChangeType::kAddLearnerNode:
      if (!tracker_.IsVoter(cc.node_id)) tracker_.AddNode(cc.node_id, true, next);
      break;
    case ConfChangeType::kRemoveNode:
      tracker_.RemoveNode(cc.node_id);
      break;
  }
  is_learner_ = tracker_.IsLearner(id_);
  if (state_ != StateRole::kLeader) return tracker_.GetConfState();
  if (lead_transferee_ != kNone && !tracker_.IsVoter(lead_transferee_)) AbortLeaderTransfer();
  if (!tracker_.IsVoter(id_)) {
    // The leader applied its own removal (proposed under an earlier leader;
    // a leader never proposes it itself). Stepping down at once could strand
    // the others: until they learn the removal committed they still count
    // us, and we would no longer campaign. So keep leading, without counting
    // ourselves, and hand over to the most up-to-date remaining voter.
    HandOverIfRemoved();
  }
  // A smaller quorum may commit more now, or confirm reads; new members
  // need the log.
  if (MaybeCommit()) ReleasePendingReadIndexMessages();
  AnswerReadsConfirmedByQuorum();
  BcastAppend();
  return tracker_.GetConfState();
}

void Raft::HandOverIfRemoved() {
  if (state_ != StateRole::kLeader || tracker_.IsVoter(id_) || lead_transferee_ != kNone) return;
  uint64_t best = kNone;
  uint64_t best_match = 0;
  for (uint64_t id : tracker_.voters()) {
    const Progress& pr = tracker_.progress().at(id);
    if (best == kNone || pr.match > best_match) {
      best = id;
      best_match = pr.match;
    }
  }
  if (best == kNone) return;
  Message m;
  m.type = MessageType::kTransferLeader;
  m.from = best;
  HandleTransferLeader(m, tracker_.Get(best));
}

void Raft::AdvanceApplied(uint64_t index, uint64_t applied_payload_bytes) {
  if (index > log_.applied()) log_.AppliedTo(index);
  uncommitted_size_ = applied_payload_bytes > uncommitted_size_
                          ? 0
                          : uncommitted_size_ - applied_payload_bytes;
}

}  // namespace bulwark::raft
