#pragma once
// The account's control group (docs/control-group.md).
//
// A small Raft group, built on the Raft core, whose voters are one node per
// region plus, for an account of two regions, a witness (bulwarkd
// --witness) in a third fault domain. Its replicated state is the account's
// regions record (server/regions.h): the regions and their failover
// priorities, the write region, the epoch, the strong quorum set, the last
// failover. It lives in its own store, <data_dir>/control.
//
// Every region's leader reports to the group's leader about twice a second
// (ControlClient::Report, peer rpc Control). The leader:
// - adopts the write region's regions record when it changed in the data
//   path (a region added, a priority changed, a planned failover);
// - grants the write region a lease (control.lease_ms): the write region
//   takes writes only while it holds one (Geo::BeforeWrite), and
//   acknowledges them only while it still does (Geo::AfterWrite);
// - when the write region has not reported for the grace period
//   (control.grace_ms, longer than the lease by kControlLeaseMarginMs),
//   promotes the highest-priority healthy region that keeps the account's
//   consistency promise (ChoosePromotion): the record names it the write
//   region at the next epoch. That region's leader then proposes the record
//   in its own region (a takeover, stamped with the new epoch) and streams
//   from there.
//
// Why the old write region stops before the new one starts: the leader
// grants a lease only after a ReadIndex barrier, so every lease began
// (counted from when its report was sent) before the leader it came from
// lost its place, and before the report it answered was heard. The leader
// promotes only once max(last report heard from the write region, the
// moment it began to lead) lies a grace period behind it, under the same
// lock as its grants: every lease the old write region holds has ended by
// then.
//
// Automatic failover needs voters in at least three fault domains with no
// domain holding a majority (AutomaticFailoverOff says why not); without it
// no lease is required and nothing is promoted, and a planned failover
// (bulwark failover) still works.
//
// Ownership: ControlMember owns its store, replica and transport;
// ControlClient borrows the data transport. Thread safety: every method may
// be called from any thread.

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bulwark/v1/admin.pb.h"
#include "bulwark/v1/peer.pb.h"
#include "common/consistency.h"
#include "common/status.h"
#include "crypto/master_key.h"
#include "replication/transport.h"
#include "server/config.h"

namespace bulwark::server {

// Region leaders report this often; a writer without a lease reports at once.
constexpr std::chrono::milliseconds kControlReportInterval{500};
// A region that reported within this long is healthy (may be promoted).
constexpr std::chrono::milliseconds kControlHealthyWithin{3000};
// Each report waits at most this long for one voter's answer.
constexpr std::chrono::milliseconds kControlCallTimeout{1500};

// Empty if automatic failover may run with these voters; else why not (for
// `bulwark status`).
std::string AutomaticFailoverOff(const std::vector<ControlVoter>& voters);

// What the control group's leader knows of one region.
struct RegionHealth {
  std::chrono::steady_clock::time_point heard{};  // its leader's last report
  v1::ControlReport report;                       // that report
};

// The region to promote when `geo.write_region` went silent, or why none
// can be: the first region in priority order that reported within
// kControlHealthyWithin of `now`, at the record's epoch (its store applied
// the record in force), and keeps the promise of `level`: under Strong, a
// member of the strong quorum set as the write region last reported it
// (`writer_strong_set`; empty: the record's set) that also reported itself
// listed in it; under BoundedStaleness, within geo.bounded_max_writes of the
// write region at its last report (its own measure); otherwise any. Never
// a region outside a geo-fence: one that reports a fence leaving it out, or
// (`writer_fence`, when the write region last reported fences) one not in
// the regions inside every fence.
struct PromotionChoice {
  std::string region;  // empty: none
  std::string why_none;
};
PromotionChoice ChoosePromotion(const GeoConfig& geo, ConsistencyLevel level,
                                const std::map<std::string, RegionHealth>& health,
                                const std::vector<std::string>& writer_strong_set,
                                std::chrono::steady_clock::time_point now,
                                const std::vector<std::string>* writer_fence = nullptr);

// A voter of the control group (control.id != 0).
class ControlMember {
 public:
  // Opens <data_dir>/control and starts the member's replica on its control
  // address. `account_peers`: every node address of the account (the
  // reports' senders). Errors: the store's or the replica's.
  static Result<std::unique_ptr<ControlMember>> Start(const NodeConfig& config, crypto::MasterKey master,
                                                      replication::PeerTls tls);
  ~ControlMember();
  void FillStatus(v1::ControlStatus* out) const;
  // A master-key rotation of the node (AdminService::RotateMasterKey): the
  // member's store re-wraps its keys under `next` too, so the node's next
  // start, with the new key, opens it. Errors: the store's.
  Status RotateMasterKey(crypto::MasterKey next);
  void Stop();

  struct Impl;

 private:
  explicit ControlMember(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The reporting side, for a region's leader: sends a report to the group's
// leader (the last one that answered first, then each voter in turn).
class ControlClient {
 public:
  ControlClient(const NodeConfig& config, replication::Transport* transport);
  // The first answer without an error; Unavailable (with each voter's
  // error) if no voter gave one.
  Result<v1::ControlAnswer> Report(v1::ControlReport report);
  bool automatic() const { return automatic_off_.empty(); }
  const std::string& automatic_off() const { return automatic_off_; }

 private:
  replication::Transport* transport_;
  std::vector<ControlVoter> voters_;
  std::string automatic_off_;
  std::mutex mu_;
  std::string last_leader_;  // GUARDED_BY(mu_)
};

}  // namespace bulwark::server
