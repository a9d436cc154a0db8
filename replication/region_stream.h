#pragma once
// RegionShipper: the write region's side of geo-replication. On the node
// that leads the write region's replica set, one thread per remote region
// reads committed account commands from this node's own raft log, numbers
// them with their GLSNs, and ships them in order (RegionAppend over the peer
// link, mutual TLS) to that region's leader, which commits them through its
// own replica set (server/geo.h). Sealed items travel as they are.
//
// Positions: the receiver answers every batch with its (GLSN, source index)
// position, and the shipper resumes from there, so a leader change on either
// side loses and repeats nothing (a repeated GLSN is skipped on apply, a gap
// refused). Stream order is kept because a batch is contiguous and only one
// is in flight per region. The log keeps what a remote region still needs
// (Replica::set_log_retention), up to ReplicaOptions::max_retained_entries.
// A region further behind (or behind a purge, which cuts the log) gets a
// state image of this node's store instead (needs_image while it does): its
// leader stages it and installs it through its own replica set, and the
// stream resumes after the image's raft index (docs/geo-replication.md).
//
// Strong quorum: committed_glsn() is the lowest GLSN acknowledged by every
// region of the strong quorum set (this region counts with its head). With
// three or more regions, a region that has not answered for
// RegionStreamOptions::removal_after is dropped from the set (never more than
// a minority) and added back once it has caught up. Each message grants the
// receiver a lease (a wall-clock time until which it may count itself in the
// set); a silent region gets no new lease for the last `lease` before its
// removal, and removal waits until the last lease granted has ended, so a
// dropped region has stopped serving Strong reads before writes go on
// without it. (Leases assume the regions' clocks agree to well within
// `lease`; the receiver subtracts kLeaseClockMargin.)
//
// Ownership: Start returns the owner; the replica and store are borrowed and
// must outlive it. Thread safety: every public method is thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace bulwark::storage {
class DocumentStore;
}

namespace bulwark::replication {

class Replica;

// What a lease holder subtracts from its lease for clock differences.
constexpr std::chrono::milliseconds kLeaseClockMargin{250};
// A batch holds at most this many commands / bytes of them.
constexpr size_t kMaxRegionBatchEntries = 512;
constexpr size_t kMaxRegionBatchBytes = 4 << 20;

struct RemoteRegion {
  std::string name;
  std::vector<std::string> peers;  // its nodes' peer addresses ("ip:port")
  // A test hook standing in for WAN latency (this kernel has no netem): the
  // shipper waits this long before each message and again before it uses
  // the answer, i.e. one way each.
  std::chrono::milliseconds link_delay{0};
  // A region just removed from the account: shipped to until it has
  // acknowledged this GLSN (the change that removed it), or for
  // RegionStreamOptions::retire_within, whichever comes first; never in
  // the strong quorum set, never throttling writes. 0: a member region
  // (which the stream retires itself if it ships the change removing it).
  uint64_t retire_at_glsn = 0;
  // A write region that lost its place drains to the region that took it
  // until that region has the change (never retired by retire_within):
  // without it, no region takes writes.
  bool retire_only_once_acked = false;
  // The epoch its messages carry (0: the stream's). A drain carried into a
  // later stream keeps the epoch it drains.
  uint64_t stream_epoch = 0;
};

// A region's place in the strong quorum set, carried from one shipper to
// the next when the topology changes.
struct QuorumState {
  bool in_quorum = false;
  std::chrono::system_clock::time_point lease_granted_until{};
  bool leasable = false;  // caught up since this node began to lead: may be leased
};

struct RegionStreamOptions {
  std::string self_region;
  std::vector<RemoteRegion> remotes;
  // The strong quorum set (region names, this region included); empty: none
  // (no write waits for a remote region).
  std::vector<std::string> strong_regions;
  uint64_t epoch = 1;
  std::chrono::milliseconds heartbeat{100};         // a message at least this often per region
  std::chrono::milliseconds request_timeout{2000};  // per message
  std::chrono::milliseconds lease{2000};            // see the class comment
  // Dropped from the quorum set after this long without an answer; must
  // exceed request_timeout + lease (checked by Start).
  std::chrono::milliseconds removal_after{5000};
  // A state image for a region behind the log: the whole transfer and its
  // install there must finish within image_timeout; after a failure the
  // next attempt waits image_retry.
  std::chrono::milliseconds image_timeout{600000};
  std::chrono::milliseconds image_retry{5000};
  // A region removed by a regions change (kSetRegions) it ships gets that
  // change and nothing after it, then this long to acknowledge it.
  std::chrono::milliseconds retire_within{30000};
  // A new write region (epoch raised by a failover) streams to a region
  // still behind the change that began its epoch only once the old write
  // region has had this long (from Start) to bring it there; then an image.
  std::chrono::milliseconds drain_wait{30000};
  // A shipper replacing another on the same node (a topology change):
  // regions start in the quorum set as `carried` says, and regions not in it
  // start outside it (added back once caught up), as long as this node still
  // leads in the term it led in at Start. A first start, or a node that
  // begins to lead, puts every configured region of the set in it, and
  // grants a region no lease (nor lists it as in the set) until it has
  // acknowledged what this node had committed when it began to lead: Strong
  // writes wait for it meanwhile, and its Strong reads wait for its lease.
  bool restart = false;
  std::map<std::string, QuorumState> carried;
  // A region that took the writes over from `outside_set` (the control
  // group found it silent; its lease had ended, so it serves no Strong
  // read): that region starts outside the quorum set, and joins once caught
  // up, while this node leads in the term it led in at Start. A later term
  // starts from the configured set as ever.
  std::string outside_set;
};

struct RegionLag {
  std::string name;
  bool connected = false;  // answered within removal_after
  bool in_quorum = false;  // in the strong quorum set as run now
  uint64_t acked_glsn = 0;
  uint64_t lag_writes = 0;
  double lag_seconds = 0;  // since it last had everything this region had
  bool needs_image = false;
  std::string leader;  // the peer address answering as its leader
  std::string error;   // the last failure, if the last message failed
};

class RegionShipper {
 public:
  // InvalidArgument for inconsistent options.
  static Result<std::unique_ptr<RegionShipper>> Start(RegionStreamOptions options, Replica* replica,
                                                      storage::DocumentStore* store);
  ~RegionShipper();
  RegionShipper(const RegionShipper&) = delete;
  RegionShipper& operator=(const RegionShipper&) = delete;

  // Strong: waits until every region of the quorum set has committed
  // `glsn`. DeadlineExceeded if not by then (the write is committed here;
  // its global outcome is unknown).
  Status WaitQuorum(uint64_t glsn, std::chrono::system_clock::time_point deadline);
  // BoundedStaleness: waits while a connected region is `max_writes` or more
  // writes, or `max_lag` or more, behind (the write is throttled rather than
  // the promise broken). ResourceExhausted naming the region if the
  // deadline comes first.
  Status ThrottleForBound(uint64_t max_writes, std::chrono::milliseconds max_lag,
                          std::chrono::system_clock::time_point deadline);
  // The lowest GLSN every region of the quorum set acknowledged.
  uint64_t committed_glsn() const;
  std::vector<std::string> quorum() const;
  std::vector<RegionLag> Lags() const;
  // The raft index from which the log must be kept for the regions (0: none).
  uint64_t RetainFrom() const;
  // For the next shipper (RegionStreamOptions::carried, remotes).
  std::map<std::string, QuorumState> QuorumStates() const;
  std::vector<RemoteRegion> Retiring() const;  // removed regions not yet retired
  void Stop();

  struct Impl;

 private:
  explicit RegionShipper(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::replication
