#include "replication/raft/raw_node.h"

#include <cassert>

#include "replication/raft/validate.h"

namespace bulwark::raft {

RawNode::RawNode(std::unique_ptr<Raft> raft) : raft_(std::move(raft)) {
  prev_soft_state_ = raft_->GetSoftState();
  prev_hard_state_ = raft_->GetHardState();
}

Result<std::unique_ptr<RawNode>> RawNode::Open(const Config& config, const Storage* storage) {
  Result<std::unique_ptr<Raft>> r = Raft::Open(config, storage);
  if (!r.ok()) return r.status();
  return std::unique_ptr<RawNode>(new RawNode(std::move(r).value()));
}

Status RawNode::Campaign() {
  // Campaigning under a live leader's lease would disrupt it for nothing:
  // the other followers ignore our votes. Leadership transfer (TimeoutNow)
  // is the way to move leadership on purpose.
  if (raft_->FollowerInLease()) {
    return Status::FailedPrecondition(
        "raft: campaign refused: following a live leader; use TransferLeader");
  }
  Message m;
  m.type = MessageType::kHup;
  m.from = raft_->id();
  return raft_->Step(std::move(m));
}

Status RawNode::Propose(std::string data) {
  Message m;
  m.type = MessageType::kProp;
  m.from = raft_->id();
  m.entries.push_back(Entry{0, 0, EntryType::kNormal, std::move(data)});
  return raft_->Step(std::move(m));
}

Status RawNode::ProposeBatch(std::vector<std::string> data) {
  Message m;
  m.type = MessageType::kProp;
  m.from = raft_->id();
  m.entries.reserve(data.size());
  for (auto& d : data) m.entries.push_back(Entry{0, 0, EntryType::kNormal, std::move(d)});
  return raft_->Step(std::move(m));
}

Status RawNode::ProposeConfChange(const ConfChange& cc) {
  if (cc.node_id == kNone) return Status::InvalidArgument("raft: conf change without a node id");
  Message m;
  m.type = MessageType::kProp;
  m.from = raft_->id();
  m.entries.push_back(Entry{0, 0, EntryType::kConfChange, cc.Encode()});
  return raft_->Step(std::move(m));
}

Status RawNode::Step(Message m) {
  BULWARK_RETURN_IF_ERROR(ValidateMessage(m, raft_->id()));
  if (IsResponseMessage(m.type) && raft_->tracker().progress().count(m.from) == 0) {
    return Status::InvalidArgument("raft: response from an unknown peer");
  }
  return raft_->Step(std::move(m));
}

Status RawNode::ReadIndex(std::string ctx) {
  if (ctx.empty()) return Status::InvalidArgument("raft: read index needs a context");
  Message m;
  m.type = MessageType::kReadIndex;
  m.from = raft_->id();
  m.context = std::move(ctx);
  return raft_->Step(std::move(m));
}

Status RawNode::TransferLeader(uint64_t transferee) {
  Message m;
  m.type = MessageType::kTransferLeader;
  m.from = transferee;
  return raft_->Step(std::move(m));
}

void RawNode::ReportUnreachable(uint64_t id) {
  Message m;
  m.type = MessageType::kUnreachable;
  m.from = id;
  (void)raft_->Step(std::move(m));
}

void RawNode::ReportSnapshot(uint64_t id, bool failed) {
  Message m;
  m.type = MessageType::kSnapStatus;
  m.from = id;
  m.reject = failed;
  (void)raft_->Step(std::move(m));
}

bool RawNode::HasReady() const {
  const Raft& r = *raft_;
  if (r.GetSoftState() != prev_soft_state_) return true;
  HardState hs = r.GetHardState();
  if (!hs.IsEmpty() && hs != prev_hard_state_) return true;
  if (r.log().UnstableSnapshot().has_value()) return true;
  if (!r.log().UnstableEntries().empty()) return true;
  if (!r.messages().empty() || !r.read_states().empty()) return true;
  return r.log().HasNextEntries();
}

Ready RawNode::GetReady() {
  assert(!ready_outstanding_ && "GetReady called before Advance");
  ready_outstanding_ = true;
  Ready rd;
  SoftState ss = raft_->GetSoftState();
  if (ss != prev_soft_state_) rd.soft_state = ss;
  HardState hs = raft_->GetHardState();
  if (hs != prev_hard_state_) rd.hard_state = hs;
  rd.entries = raft_->log().UnstableEntries();
  if (raft_->log().UnstableSnapshot()) rd.snapshot = *raft_->log().UnstableSnapshot();
  rd.committed_entries = raft_->log().NextEntries();
  rd.messages = raft_->TakeMessages();
  rd.read_states = raft_->TakeReadStates();
  return rd;
}

void RawNode::Advance(const Ready& rd) {
  assert(ready_outstanding_ && "Advance without GetReady");
  ready_outstanding_ = false;
  if (rd.soft_state) prev_soft_state_ = *rd.soft_state;
  if (rd.hard_state) prev_hard_state_ = *rd.hard_state;
  RaftLog& log = raft_->log();
  if (!rd.snapshot.IsEmpty()) {
    log.StableSnapTo(rd.snapshot.metadata.index);
    // The runner installed the snapshot: its state is the applied state.
    raft_->AdvanceApplied(rd.snapshot.metadata.index, 0);
  }
  if (!rd.entries.empty()) log.StableTo(rd.entries.back().index, rd.entries.back().term);
  if (!rd.committed_entries.empty()) {
    raft_->AdvanceApplied(rd.committed_entries.back().index, PayloadSizeBytes(rd.committed_entries));
  }
}

}  // namespace bulwark::raft
