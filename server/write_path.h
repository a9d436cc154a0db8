#pragma once
// WritePath: how a node runs a client's write and a consistency-level read
// in a replica set.
//
// Writes run on the leader: if this node leads, it prepares the command
// (validation, etag, sealing), proposes it and waits until it is applied
// here; otherwise it forwards the request, as received, to the leader over
// the peer link, which runs it the same way. While the region has no leader
// (an election), a write waits for one, up to kLeaderWait and its deadline.
//
// Reads: Strong reads pass a ReadIndex barrier (linearizable); Session reads
// wait until this node has applied the session token's index, and fall back
// to the barrier after kSessionWait; the other levels read locally.
//
// Ownership: borrows the NodeContext. Thread safety: all methods may be
// called concurrently (gRPC threads).

#include <chrono>
#include <string_view>

#include <google/protobuf/message.h>

#include "bulwark/v1/peer.pb.h"
#include "common/consistency.h"
#include "common/status.h"

namespace bulwark::v1 {
class ReadOptions;
}
namespace bulwark::replication {
class Replica;
struct Committed;
}  // namespace bulwark::replication
namespace bulwark::storage {
struct WriteCommand;
}

namespace bulwark::server {

struct NodeContext;

// How long a write waits for an election to produce a leader.
constexpr std::chrono::milliseconds kLeaderWait{3000};
// How long a Session read waits for this node to catch up before it asks
// the leader instead.
constexpr std::chrono::milliseconds kSessionWait{1000};

using Deadline = std::chrono::system_clock::time_point;

class WritePath {
 public:
  explicit WritePath(NodeContext* node) : node_(node) {}

  // Runs a write (`method` is the DocumentService or AdminService method
  // name, `request` its request message) and fills `response`. A non-empty
  // `signature_id` (Principal::replay_id of a signed request) makes the
  // replica set apply this exact request at most once: a replay of it is
  // refused with AlreadyExists (item writes with their own request id keep
  // that id's semantics: the first outcome is returned).
  Status Write(std::string_view method, const google::protobuf::Message& request, google::protobuf::Message* response,
               Deadline deadline, std::string_view signature_id = {});
  // The leader's side of a forwarded write.
  v1::ForwardResponse HandleForward(const v1::ForwardRequest& request);
  // Makes this node ready to serve a read at `options`' level.
  Status PrepareRead(const v1::ReadOptions& options, Deadline deadline);

 private:
  Status LocalWrite(std::string_view method, const google::protobuf::Message& request,
                    google::protobuf::Message* response, Deadline deadline, std::string_view replay_id);
  // AddNode: the address book entry, then the voter. RemoveNode: the voter,
  // then the entry. Each step is one raft entry; one change at a time.
  Status ChangeMembership(std::string_view method, const google::protobuf::Message& request,
                          google::protobuf::Message* response, Deadline deadline);
  Result<ConsistencyLevel> Level(const v1::ReadOptions& options) const;
  NodeContext* node_;
};

// Proposes `cmd` (if it is not an error) with `request_id`, waits until it is
// applied here, and returns where it landed. The command's own outcome
// (e.g. AlreadyExists) comes back as the error. FailedPrecondition
// "this node is not the leader" if leadership moved.
Result<replication::Committed> CommitCommand(replication::Replica& replica, Result<storage::WriteCommand> cmd,
                                             std::string_view request_id, Deadline deadline);

// CommitCommand under `replay_id` (if any): AlreadyExists if that id was
// applied before, so a replayed request is refused rather than repeated.
Result<replication::Committed> CommitOnce(replication::Replica& replica, Result<storage::WriteCommand> cmd,
                                          std::string_view replay_id, Deadline deadline);

// "0:1#<raft index>": partition 0, epoch 1, the write's position in the
// region's log. Regions and epochs come with geo-replication.
std::string SessionToken(uint64_t index);
// The index in a session token; InvalidArgument if malformed.
Result<uint64_t> ParseSessionToken(std::string_view token);

}  // namespace bulwark::server
