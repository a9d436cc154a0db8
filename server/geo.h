#pragma once
// Geo: a node's part in geo-replication (docs/geo-replication.md).
//
// In the write region, the node that leads runs the RegionShipper
// (replication/region_stream.h) that streams account commands to every other
// region. In a read region, the node that leads receives that stream
// (OnRegionAppend) and commits it through its own replica set; it also keeps
// what the stream tells it (the write region's head and the strongly
// committed GLSN, its lease in the strong quorum set) for reads.
//
// The consistency levels across regions:
// - Strong: a write is acknowledged once every region of the strong quorum
//   set has committed it (AfterWrite). A read passes the region's ReadIndex
//   barrier, then, after reading, waits until everything this node had
//   applied is committed in the whole quorum set (FinishRead), so it never
//   returns what a failover could lose. Read regions serve Strong reads only
//   while they hold a lease in the set.
// - BoundedStaleness(K, T): a read region serves reads while it is within K
//   writes and T seconds of the write region, else the read waits, then is
//   refused (Unavailable) so the client reads elsewhere; the write region
//   throttles writes while a connected region is at the bound.
// - Session: the token is a GLSN; a node serves the read once it has applied
//   it, else (after kSessionWait) the write region passes a barrier and a
//   read region refuses (Unavailable) so the client reads in the write region.
// - ConsistentPrefix, Eventual: local reads (applying in GLSN order keeps
//   every local state a prefix).
//
// The write region and the epoch come from the topology in force, and move
// with a planned failover (a regions change naming another write region at
// the next epoch): the old write region streams up to that change and stops;
// every account command proposed here carries this region's epoch (or
// storage::kNotWriterEpoch), so the store refuses whatever an old write
// region proposed after the change (docs/geo-replication.md, "Planned
// failover").
//
// Without geo.regions every call allows everything and does nothing.
// Ownership: owned by main; borrows the NodeContext. Thread safety: every
// method may be called from any thread.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "bulwark/v1/admin.pb.h"
#include "bulwark/v1/peer.pb.h"
#include "common/consistency.h"
#include "common/status.h"
#include "replication/transport.h"

namespace bulwark::server {

struct NodeContext;
struct GeoConfig;
using GeoDeadline = std::chrono::system_clock::time_point;

class Geo {
 public:
  // Starts the stream when geo is configured. Errors: InvalidArgument.
  static Result<std::unique_ptr<Geo>> Start(NodeContext* node);
  ~Geo();

  bool enabled() const;
  bool is_write_region() const;
  uint64_t epoch() const;

  // Before an account write (on the leader): FailedPrecondition in a read
  // region; a BoundedStaleness account throttles here.
  Status BeforeWrite(GeoDeadline deadline);
  // After it committed here at `glsn`: a Strong account waits for the quorum set.
  Status AfterWrite(uint64_t glsn, GeoDeadline deadline);
  // Reads: before and after reading the store.
  Status PrepareRead(ConsistencyLevel level, uint64_t session_glsn, GeoDeadline deadline);
  Status FinishRead(ConsistencyLevel level, GeoDeadline deadline);

  // At a region's leader: the state a Strong/Bounded read elsewhere in the
  // region needs (asked through Forward "RegionState").
  v1::RegionReadState LocalState() const;
  // The receiving side of the stream.
  v1::RegionAppendResponse OnRegionAppend(const v1::RegionAppendRequest& request);
  // A state image from the write region (this region was behind its log):
  // staged, then installed through the replica set (kInstallRegionImage);
  // answers with the position after it.
  v1::RegionAppendResponse OnRegionImage(const v1::RegionImageHeader& header,
                                         const replication::TransportHandler::ChunkReader& next);

  // The topology in force (the configuration, or the regions record once
  // regions were changed online). Never null.
  std::shared_ptr<const GeoConfig> Topology() const;
  // On the write region: the regions record a change makes, and the version
  // of the record it replaces (for storage kSetRegions). FailedPrecondition
  // in a read region or without geo; the change's own errors
  // (server/regions.h).
  // A change that would break a geo-fence (CheckFences) is refused with
  // FailedPrecondition.
  Result<std::pair<std::string, std::string>> PrepareRegionChange(const v1::ChangeRegionsRequest& change) const;
  // A new geo-fence `fence` (storage/fence.h) for `resource` against the
  // topology in force: InvalidArgument for a name that is not a region of
  // the account, FailedPrecondition if the account has no regions or the
  // fence would be broken from the start (CheckFences). Ok for no fence.
  Status CheckNewFence(const std::string& resource, std::string_view fence) const;

  void FillStatus(v1::StatusResponse* out) const;
  // The write region's leader: (region, lag in writes, lag in seconds) of
  // every other region; empty elsewhere. For /metrics.
  struct Lag {
    std::string region;
    uint64_t writes = 0;
    double seconds = 0;
  };
  std::vector<Lag> RegionLags() const;
  void FillTopology(v1::TopologyResponse* out) const;
  // The raft index the log must be kept from for the regions (0: none).
  uint64_t RetainFrom() const;
  void Stop();

  struct Impl;

 private:
  explicit Geo(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The topology clients fetch (GetTopology), as `geo` has it.
struct NodeConfig;
void FillTopologyOf(const NodeConfig& config, const GeoConfig& geo, uint64_t epoch, v1::TopologyResponse* out);

// A planned failover is refused to a region more than this many writes
// behind: no region takes writes until it has them all.
constexpr uint64_t kMaxFailoverLagWrites = 10'000;

// The forwarded method a node uses to ask its region leader for LocalState.
constexpr const char* kRegionStateMethod = "RegionState";

}  // namespace bulwark::server
