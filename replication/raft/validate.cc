#include "replication/raft/validate.h"

#include <set>
#include <string>

namespace bulwark::raft {

namespace {

Status Invalid(const Message& m, const std::string& what) {
  return Status::InvalidArgument("raft: " + std::string(MessageTypeName(m.type)) + " from " +
                                 std::to_string(m.from) + ": " + what);
}

}  // namespace

bool ConfStateValid(const ConfState& cs) {
  if (cs.voters.empty()) return false;
  std::set<uint64_t> seen;
  for (uint64_t id : cs.voters) {
    if (id == kNone || !seen.insert(id).second) return false;
  }
  for (uint64_t id : cs.learners) {
    if (id == kNone || !seen.insert(id).second) return false;
  }
  return true;
}

bool EntriesFollow(const Message& m) {
  if (m.entries.size() > UINT64_MAX - m.index) return false;  // indexes would wrap
  uint64_t prev_term = m.log_term;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    if (e.index != m.index + 1 + i) return false;
    if (e.term == 0 || e.term < prev_term) return false;
    if (m.term != 0 && e.term > m.term) return false;
    prev_term = e.term;
  }
  return true;
}

Status ValidateMessage(const Message& m, uint64_t self) {
  if (IsLocalMessage(m.type)) return Invalid(m, "local-only message type");
  if (m.to != self) return Invalid(m, "addressed to " + std::to_string(m.to) + ", not to us");
  if (m.from == kNone) return Invalid(m, "sender id is 0");
  // A forwarded transfer names the transferee in `from`; naming the leader
  // itself is a no-op the core ignores, so it is not malformed.
  if (m.from == self && m.type != MessageType::kTransferLeader) return Invalid(m, "sent by ourselves");
  if (IsForwardedRequest(m.type)) {
    if (m.term != 0) return Invalid(m, "forwarded request carries a term");
  } else if (m.term == 0) {
    return Invalid(m, "term is 0");
  }
  switch (m.type) {
    case MessageType::kProp:
      if (m.entries.empty()) return Invalid(m, "proposal without entries");
      break;
    case MessageType::kReadIndex:
      if (m.context.empty()) return Invalid(m, "read index without a context");
      break;
    case MessageType::kApp:
      if (m.log_term > m.term) return Invalid(m, "previous entry's term is above the message term");
      if (!EntriesFollow(m)) {
        return Invalid(m, "entries are not numbered from index + 1 with non-decreasing terms in [log_term, term]");
      }
      break;
    case MessageType::kSnap: {
      if (!m.snapshot.has_value()) return Invalid(m, "no snapshot");
      const SnapshotMetadata& md = m.snapshot->metadata;
      if (md.index == 0 || md.term == 0) return Invalid(m, "snapshot index or term is 0");
      if (md.term > m.term) return Invalid(m, "snapshot term is above the message term");
      if (!ConfStateValid(md.conf_state)) {
        return Invalid(m, "snapshot membership has no voter, a zero id, or an id listed twice");
      }
      break;
    }
    default:
      break;
  }
  return Status::Ok();
}

}  // namespace bulwark::raft
