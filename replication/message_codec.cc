#include "replication/message_codec.h"

#include <array>
#include <string>
#include <utility>

namespace bulwark::replication {
namespace {

// One row per raft::MessageType, in declaration order, so that a new type
// fails the static_assert below until it is given a wire value.
constexpr std::array<std::pair<raft::MessageType, v1::RaftMessageType>, 19> kMessageTypes = {{
    {raft::MessageType::kHup, v1::RAFT_MSG_HUP},
    {raft::MessageType::kBeat, v1::RAFT_MSG_BEAT},
    {raft::MessageType::kProp, v1::RAFT_MSG_PROP},
    {raft::MessageType::kApp, v1::RAFT_MSG_APP},
    {raft::MessageType::kAppResp, v1::RAFT_MSG_APP_RESP},
    {raft::MessageType::kVote, v1::RAFT_MSG_VOTE},
    {raft::MessageType::kVoteResp, v1::RAFT_MSG_VOTE_RESP},
    {raft::MessageType::kSnap, v1::RAFT_MSG_SNAP},
    {raft::MessageType::kHeartbeat, v1::RAFT_MSG_HEARTBEAT},
    {raft::MessageType::kHeartbeatResp, v1::RAFT_MSG_HEARTBEAT_RESP},
    {raft::MessageType::kUnreachable, v1::RAFT_MSG_UNREACHABLE},
    {raft::MessageType::kSnapStatus, v1::RAFT_MSG_SNAP_STATUS},
    {raft::MessageType::kCheckQuorum, v1::RAFT_MSG_CHECK_QUORUM},
    {raft::MessageType::kTransferLeader, v1::RAFT_MSG_TRANSFER_LEADER},
    {raft::MessageType::kTimeoutNow, v1::RAFT_MSG_TIMEOUT_NOW},
    {raft::MessageType::kReadIndex, v1::RAFT_MSG_READ_INDEX},
    {raft::MessageType::kReadIndexResp, v1::RAFT_MSG_READ_INDEX_RESP},
    {raft::MessageType::kPreVote, v1::RAFT_MSG_PRE_VOTE},
    {raft::MessageType::kPreVoteResp, v1::RAFT_MSG_PRE_VOTE_RESP},
}};
static_assert(kMessageTypes.back().first == raft::MessageType::kPreVoteResp,
              "kMessageTypes must list every raft::MessageType");

constexpr bool TableIsInOrder() {
  for (size_t i = 0; i < kMessageTypes.size(); ++i) {
    if (static_cast<size_t>(kMessageTypes[i].first) != i) return false;
  }
  return true;
}
static_assert(TableIsInOrder(), "kMessageTypes rows must follow raft::MessageType's order");

v1::RaftMessageType ToWire(raft::MessageType t) { return kMessageTypes[static_cast<size_t>(t)].second; }

Result<raft::MessageType> FromWire(int wire) {
  for (const auto& [type, wire_type] : kMessageTypes) {
    if (wire_type == wire) return type;
  }
  return Status::InvalidArgument("unknown raft message type " + std::to_string(wire));
}

Result<raft::EntryType> EntryTypeFromWire(int wire) {
  switch (wire) {
    case v1::RAFT_ENTRY_NORMAL:
      return raft::EntryType::kNormal;
    case v1::RAFT_ENTRY_CONF_CHANGE:
      return raft::EntryType::kConfChange;
    default:
      return Status::InvalidArgument("unknown raft entry type " + std::to_string(wire));
  }
}

v1::RaftEntryType EntryTypeToWire(raft::EntryType t) {
  return t == raft::EntryType::kConfChange ? v1::RAFT_ENTRY_CONF_CHANGE : v1::RAFT_ENTRY_NORMAL;
}

void EncodeSnapshot(const raft::Snapshot& snapshot, v1::RaftSnapshot* out) {
  out->set_data(snapshot.data);
  v1::RaftSnapshotMetadata* md = out->mutable_metadata();
  md->set_index(snapshot.metadata.index);
  md->set_term(snapshot.metadata.term);
  for (uint64_t id : snapshot.metadata.conf_state.voters) md->mutable_conf_state()->add_voters(id);
  for (uint64_t id : snapshot.metadata.conf_state.learners) md->mutable_conf_state()->add_learners(id);
}

raft::Snapshot DecodeSnapshot(const v1::RaftSnapshot& wire) {
  raft::Snapshot snapshot;
  snapshot.data = wire.data();
  snapshot.metadata.index = wire.metadata().index();
  snapshot.metadata.term = wire.metadata().term();
  const v1::RaftConfState& cs = wire.metadata().conf_state();
  snapshot.metadata.conf_state.voters.assign(cs.voters().begin(), cs.voters().end());
  snapshot.metadata.conf_state.learners.assign(cs.learners().begin(), cs.learners().end());
  return snapshot;
}

}  // namespace

void EncodeMessage(const raft::Message& m, v1::RaftMessage* out) {
  out->Clear();
  out->set_type(ToWire(m.type));
  out->set_to(m.to);
  out->set_from(m.from);
  out->set_term(m.term);
  out->set_log_term(m.log_term);
  out->set_index(m.index);
  out->mutable_entries()->Reserve(static_cast<int>(m.entries.size()));
  for (const raft::Entry& e : m.entries) {
    v1::RaftEntry* we = out->add_entries();
    we->set_term(e.term);
    we->set_index(e.index);
    we->set_type(EntryTypeToWire(e.type));
    we->set_data(e.data);
  }
  out->set_commit(m.commit);
  if (m.snapshot.has_value()) EncodeSnapshot(*m.snapshot, out->mutable_snapshot());
  out->set_reject(m.reject);
  out->set_reject_hint(m.reject_hint);
  out->set_context(m.context);
}

Result<raft::Message> DecodeMessage(const v1::RaftMessage& wire) {
  raft::Message m;
  BULWARK_ASSIGN_OR_RETURN(m.type, FromWire(wire.type()));
  m.to = wire.to();
  m.from = wire.from();
  m.term = wire.term();
  m.log_term = wire.log_term();
  m.index = wire.index();
  m.entries.reserve(static_cast<size_t>(wire.entries_size()));
  for (const v1::RaftEntry& we : wire.entries()) {
    raft::Entry e;
    e.term = we.term();
    e.index = we.index();
    BULWARK_ASSIGN_OR_RETURN(e.type, EntryTypeFromWire(we.type()));
    e.data = we.data();
    m.entries.push_back(std::move(e));
  }
  m.commit = wire.commit();
  if (wire.has_snapshot()) m.snapshot = DecodeSnapshot(wire.snapshot());
  m.reject = wire.reject();
  m.reject_hint = wire.reject_hint();
  m.context = wire.context();
  return m;
}

size_t ApproximateWireBytes(const raft::Message& m) {
  // 11 bytes is a varint tag plus a 64-bit varint, the worst case per field.
  constexpr size_t kFieldBytes = 11;
  constexpr size_t kEntryHeaderBytes = 4 * kFieldBytes;
  size_t n = 12 * kFieldBytes + m.context.size();
  for (const raft::Entry& e : m.entries) n += kEntryHeaderBytes + e.data.size();
  if (m.snapshot.has_value()) {
    n +=
        4 * kFieldBytes + m.snapshot->data.size() +
        kFieldBytes * (m.snapshot->metadata.conf_state.voters.size() + m.snapshot->metadata.conf_state.learners.size());
  }
  return n;
}

}  // namespace bulwark::replication
