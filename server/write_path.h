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
// Reads: see server/geo.h for each consistency level, within a region and
// across regions.
//
// Ownership: borrows the NodeContext. Thread safety: all methods may be
// called concurrently (gRPC threads).

#include <chrono>
#include <mutex>
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
  // Makes this node ready to serve a read at `options`' level (server/geo.h
  // has the rules per level), and, once read, lets a Strong read wait until
  // what it saw is committed in the whole strong quorum set.
  Status PrepareRead(const v1::ReadOptions& options, Deadline deadline);
  Status FinishRead(const v1::ReadOptions& options, Deadline deadline);
  // The session token of a read served now (this node's applied GLSN).
  std::string ReadSessionToken() const;

 private:
  // On the leader: the geo checks around LocalWrite (a read region refuses,
  // Bounded throttles, Strong waits for the other regions).
  Status LeaderWrite(std::string_view method, const google::protobuf::Message& request,
                     google::protobuf::Message* response, Deadline deadline, std::string_view replay_id);
  Status LocalWrite(std::string_view method, const google::protobuf::Message& request,
                    google::protobuf::Message* response, Deadline deadline, std::string_view replay_id);
  // AddNode: the address book entry, then the voter. RemoveNode: the voter,
  // then the entry. Each step is one raft entry; one change at a time.
  Status ChangeMembership(std::string_view method, const google::protobuf::Message& request,
                          google::protobuf::Message* response, Deadline deadline);
  Result<ConsistencyLevel> Level(const v1::ReadOptions& options) const;
  NodeContext* node_;
  // Database and container creates, deletes and purges run one at a time on
  // this node (prepare to commit), so what Prepare checked still holds when
  // the command applies: a region outside a geo-fence applies placeholders
  // and cannot check it again (docs/geo-fencing.md).
  std::mutex ddl_mu_;
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

// "0:<epoch>#<glsn>": partition 0, the write region's epoch, and the
// write's GLSN (its position in the account's replication stream).
std::string SessionToken(uint64_t epoch, uint64_t glsn);
// The GLSN in a session token; InvalidArgument if malformed.
Result<uint64_t> ParseSessionToken(std::string_view token);
// Every write but the replica set's own membership changes belongs to the
// account (and so to the write region).
bool IsAccountWrite(std::string_view method);

}  // namespace bulwark::server
