#include "replication/raft/types.h"

#include <charconv>

namespace bulwark::raft {

std::string_view MessageTypeName(MessageType t) {
  switch (t) {
    case MessageType::kHup: return "MsgHup";
    case MessageType::kBeat: return "MsgBeat";
    case MessageType::kProp: return "MsgProp";
    case MessageType::kApp: return "MsgApp";
    case MessageType::kAppResp: return "MsgAppResp";
    case MessageType::kVote: return "MsgVote";
    case MessageType::kVoteResp: return "MsgVoteResp";
    case MessageType::kSnap: return "MsgSnap";
    case MessageType::kHeartbeat: return "MsgHeartbeat";
    case MessageType::kHeartbeatResp: return "MsgHeartbeatResp";
    case MessageType::kUnreachable: return "MsgUnreachable";
    case MessageType::kSnapStatus: return "MsgSnapStatus";
    case MessageType::kCheckQuorum: return "MsgCheckQuorum";
    case MessageType::kTransferLeader: return "MsgTransferLeader";
    case MessageType::kTimeoutNow: return "MsgTimeoutNow";
    case MessageType::kReadIndex: return "MsgReadIndex";
    case MessageType::kReadIndexResp: return "MsgReadIndexResp";
    case MessageType::kPreVote: return "MsgPreVote";
    case MessageType::kPreVoteResp: return "MsgPreVoteResp";
  }
  return "MsgUnknown";
}

bool IsLocalMessage(MessageType t) {
  return t == MessageType::kHup || t == MessageType::kBeat || t == MessageType::kUnreachable ||
         t == MessageType::kSnapStatus || t == MessageType::kCheckQuorum;
}

bool IsForwardedRequest(MessageType t) {
  return t == MessageType::kProp || t == MessageType::kReadIndex ||
         t == MessageType::kTransferLeader;
}

bool IsResponseMessage(MessageType t) {
  return t == MessageType::kAppResp || t == MessageType::kVoteResp ||
         t == MessageType::kHeartbeatResp || t == MessageType::kUnreachable ||
         t == MessageType::kPreVoteResp;
}

MessageType VoteResponseType(MessageType t) {
  return t == MessageType::kPreVote ? MessageType::kPreVoteResp : MessageType::kVoteResp;
}

std::string_view StateRoleName(StateRole r) {
  switch (r) {
    case StateRole::kFollower: return "StateFollower";
    case StateRole::kCandidate: return "StateCandidate";
    case StateRole::kLeader: return "StateLeader";
    case StateRole::kPreCandidate: return "StatePreCandidate";
  }
  return "StateUnknown";
}

std::string ConfChange::Encode() const {
  std::string out;
  switch (type) {
    case ConfChangeType::kAddNode: out = "add"; break;
    case ConfChangeType::kRemoveNode: out = "remove"; break;
    case ConfChangeType::kAddLearnerNode: out = "learner"; break;
  }
  out += ':';
  out += std::to_string(node_id);
  return out;
}

std::optional<ConfChange> ConfChange::Decode(std::string_view data) {
  size_t colon = data.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view kind = data.substr(0, colon);
  std::string_view id = data.substr(colon + 1);
  ConfChange cc;
  if (kind == "add") {
    cc.type = ConfChangeType::kAddNode;
  } else if (kind == "remove") {
    cc.type = ConfChangeType::kRemoveNode;
  } else if (kind == "learner") {
    cc.type = ConfChangeType::kAddLearnerNode;
  } else {
    return std::nullopt;
  }
  auto [ptr, ec] = std::from_chars(id.data(), id.data() + id.size(), cc.node_id);
  if (ec != std::errc() || ptr != id.data() + id.size() || cc.node_id == kNone) return std::nullopt;
  return cc;
}

std::string DescribeEntry(const Entry& e) {
  std::string out = std::to_string(e.term) + "/" + std::to_string(e.index);
  out += e.type == EntryType::kConfChange ? " EntryConfChange" : " EntryNormal";
  out += " \"" + e.data + "\"";
  return out;
}

std::string DescribeHardState(const HardState& hs) {
  return "Term:" + std::to_string(hs.term) + " Vote:" + std::to_string(hs.vote) +
         " Commit:" + std::to_string(hs.commit);
}

static std::string JoinIds(const std::vector<uint64_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ' ';
    out += std::to_string(ids[i]);
  }
  return out;
}

std::string DescribeConfState(const ConfState& cs) {
  std::string out = "Voters:[" + JoinIds(cs.voters) + "]";
  if (!cs.learners.empty()) out += " Learners:[" + JoinIds(cs.learners) + "]";
  return out;
}

std::string DescribeMessage(const Message& m) {
  std::string out = std::to_string(m.from) + "->" + std::to_string(m.to) + " " +
                    std::string(MessageTypeName(m.type)) + " Term:" + std::to_string(m.term) +
                    " Log:" + std::to_string(m.log_term) + "/" + std::to_string(m.index);
  if (m.reject) out += " Rejected (Hint: " + std::to_string(m.reject_hint) + ")";
  if (m.commit != 0) out += " Commit:" + std::to_string(m.commit);
  if (!m.entries.empty()) {
    out += " Entries:[";
    for (size_t i = 0; i < m.entries.size(); ++i) {
      if (i > 0) out += ", ";
      out += DescribeEntry(m.entries[i]);
    }
    out += "]";
  }
  if (!m.context.empty()) out += " Context:\"" + m.context + "\"";
  if (m.snapshot.has_value()) {
    const SnapshotMetadata& md = m.snapshot->metadata;
    out += " Snapshot: Index:" + std::to_string(md.index) + " Term:" + std::to_string(md.term) +
           " ConfState: " + DescribeConfState(md.conf_state);
  }
  return out;
}

}  // namespace bulwark::raft
