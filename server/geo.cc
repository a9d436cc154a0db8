#include "server/geo.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "replication/region_stream.h"
#include "replication/replica.h"
#include "server/config.h"
#include "server/control.h"
#include "server/regions.h"
#include "server/services.h"
#include "server/write_path.h"
#include "storage/document_store.h"

namespace bulwark::server {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kReadPoll{5};
// How often a node looks for a changed regions record (the store's
// settings generation; cheap).
constexpr std::chrono::milliseconds kTopologyPoll{200};
// A write waits at most this long for the write region's lease (a new
// leader's first report, a control leader change) before it is refused.
constexpr std::chrono::milliseconds kLeaseWait{3000};
// A takeover's proposal in the region.
constexpr std::chrono::milliseconds kTakeoverWait{3000};

int64_t UnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

struct Geo::Impl {
  NodeContext* node = nullptr;
  std::string self;
  // Whether this region is the write region, and the account's epoch, as
  // the topology in force says (read on every request and proposal: no
  // lock). Written only by Apply.
  std::atomic<bool> write_region{true};
  std::atomic<uint64_t> epoch{1};
  // Fixed at start: a regions record never empties the regions, so geo is
  // on or off for the node's life (read on every request: no lock).
  bool geo_enabled = false;

  // The topology in force: the configuration, or the regions record once
  // the regions were changed online. GUARDED_BY(cfg_mu)
  mutable std::mutex cfg_mu;
  std::shared_ptr<const GeoConfig> cfg;
  std::string record;                                   // the record cfg came from; empty: the configuration
  bool removed = false;                                 // this region is not in the record
  std::shared_ptr<replication::RegionShipper> shipper;  // write region only

  // A read region's view of the stream, kept by whichever node receives it
  // (its leader). GUARDED_BY(mu)
  mutable std::mutex mu;
  bool heard = false;
  uint64_t head_glsn = 0;
  uint64_t committed_glsn = 0;
  bool listed_in_quorum = false;
  std::chrono::system_clock::time_point lease_until{};
  SteadyClock::time_point fresh_since{};  // when this region last had the whole head it was told of

  std::mutex image_mu;  // one region image at a time
  // Serializes putting a topology in force: the watcher (Refresh) and the
  // control loop (Superseded) both do.
  std::mutex apply_mu;

  // The watcher: applies a changed regions record.
  std::mutex watch_mu;
  std::condition_variable watch_cv;
  bool stopping = false;  // GUARDED_BY(watch_mu)
  std::thread watcher;

  // The control group (control.members; server/control.h): this node's
  // client, and what the group said last. `control` and `lease_required`
  // (automatic failover is on: the write region writes only under a lease)
  // are fixed at start.
  std::unique_ptr<ControlClient> control;
  bool lease_required = false;
  mutable std::mutex control_mu;
  SteadyClock::time_point control_lease_until{};  // GUARDED_BY(control_mu): from the report's sending
  uint64_t lease_epoch = 0;                       // GUARDED_BY(control_mu)
  v1::ControlAnswer last_answer;                  // GUARDED_BY(control_mu)
  SteadyClock::time_point last_answer_at{};
  std::string last_control_error;  // GUARDED_BY(control_mu)
  // The geo-fences as last read (only the control thread reports): a failed
  // read reports these rather than no report (which would end the lease).
  std::vector<storage::GeoFence> last_fences;
  bool control_kick = false;  // GUARDED_BY(watch_mu): report now
  std::condition_variable control_cv;
  std::thread control_thread;

  std::shared_ptr<const GeoConfig> Cfg() const {
    std::lock_guard lock(cfg_mu);
    return cfg;
  }
  std::shared_ptr<replication::RegionShipper> Shipper() const {
    std::lock_guard lock(cfg_mu);
    return shipper;
  }
  // Puts `next` in force: region peers, and (write region) a shipper for
  // its regions; `retiring` are regions just removed, shipped to until they
  // have the change (or for a while). REQUIRES: not cfg_mu.
  // `switch_glsn`: the GLSN of the record (where a write region that lost
  // its place stops streaming, if its store does not say); `at_start`: the
  // node's first Apply.
  Status Apply(std::shared_ptr<const GeoConfig> next, const std::string& record,
               std::vector<replication::RemoteRegion> retiring, uint64_t switch_glsn, bool at_start = false);
  // FailedPrecondition once this region was removed from the account.
  Status RefuseIfRemoved() const;
  // Reads the regions record and applies it if it changed.
  void Refresh();
  void Watch();
  // Why a stream (or image) of `epoch` from `from` to `to` is refused here;
  // empty if it is not.
  std::string RefuseStream(const std::string& from, const std::string& to, uint64_t epoch) const;
  // The peer address of this region's leader, if known.
  std::string LeaderAddress() const;
  // Asks the region leader (or this node, if it leads) for the read state.
  Result<v1::RegionReadState> LeaderState() const;
  v1::RegionReadState LocalState() const;

  // The region leader's reports to the control group, and what follows
  // from the answers: the lease, and a takeover when the group promoted
  // this region.
  void ControlLoop();
  void ReportToControl();
  void TakeOver(const v1::ControlAnswer& answer);
  void Superseded(const v1::ControlAnswer& answer);
  bool HoldsLease() const;
  // Until this region holds the lease for its epoch: FailedPrecondition
  // ("does not take writes") once kLeaseWait or the deadline passed.
  Status WaitLease(GeoDeadline deadline);
};

Geo::Geo(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Geo::~Geo() { Stop(); }

Status Geo::Impl::Apply(std::shared_ptr<const GeoConfig> next, const std::string& rec,
                        std::vector<replication::RemoteRegion> retiring, uint64_t switch_glsn, bool at_start) {
  const GeoConfig& g = *next;
  const bool was_writer = write_region.load();
  const bool writer = g.write_region == self;
  std::vector<std::string> remote_peers;
  replication::RegionStreamOptions options;
  options.self_region = self;
  options.epoch = g.epoch;
  options.strong_regions = g.strong_regions;
  options.heartbeat = std::chrono::milliseconds(g.heartbeat_ms);
  options.lease = std::chrono::milliseconds(g.lease_ms);
  options.removal_after = std::chrono::milliseconds(g.removal_ms);
  bool listed = false;
  for (const RegionConfig& r : g.regions) {
    if (r.name == self) {
      listed = true;
      continue;
    }
    remote_peers.insert(remote_peers.end(), r.peers.begin(), r.peers.end());
    options.remotes.push_back({r.name, r.peers, std::chrono::milliseconds(r.link_delay_ms)});
  }
  for (auto& r : retiring) {
    remote_peers.insert(remote_peers.end(), r.peers.begin(), r.peers.end());
    options.remotes.push_back(std::move(r));
  }
  node->replica->transport()->SetRegionPeers(remote_peers);
  std::shared_ptr<replication::RegionShipper> started;
  auto previous = Shipper();
  // This region was the write region until the last failover: it drains
  // when it loses the place (was_writer), and again at every start (it may
  // have stopped before the others had the change; a region that has it
  // answers at once and is done).
  const bool moved_from_here = !writer && g.last_failover.from == self && g.last_failover.epoch == g.epoch &&
                               g.epoch > 1 && (was_writer || at_start);
  if (moved_from_here) {
    // The write region moved away at the change that began g.epoch: keep
    // streaming the old epoch up to that change, and nothing after (the
    // store refuses later writes here), so the new write region, and every
    // other, has everything this one wrote. That is the drain that makes a
    // planned failover lose nothing. The new write region is drained to
    // until it has it, however long; the others for retire_within.
    uint64_t until = switch_glsn;
    if (auto start = node->store->EpochStartOf(g.epoch); start.ok() && start->has_value()) until = (*start)->glsn;
    for (auto& r : options.remotes) {
      if (r.retire_at_glsn == 0) r.retire_at_glsn = until;
      r.retire_only_once_acked = r.name == g.write_region;
    }
    if (until == 0) options.remotes.clear();  // no change to drain to
    options.epoch = g.epoch - 1;
    options.strong_regions.clear();
    options.restart = true;
  } else if (!writer) {
    options.remotes.clear();
  }
  if (writer && !was_writer && g.last_failover.epoch == g.epoch && g.last_failover.to == self &&
      g.last_failover.reason.rfind("automatic", 0) == 0) {
    // Taken over from a region the control group found silent: its lease
    // has ended, so the stream need not wait for it (Strong writes resume
    // without it; it rejoins the set once caught up).
    options.outside_set = g.last_failover.from;
  }
  if (previous && writer && was_writer) {
    // The quorum set as it runs now (and the leases granted), not as
    // configured: a region dropped from it, or new, joins only once it has
    // caught up. Only from a stream of the same write region: a region that
    // takes the writes over starts with every region of the set in it
    // (its drained or read-region stream held none), so no Strong write is
    // acknowledged without a region that still serves Strong reads.
    options.carried = previous->QuorumStates();
    options.restart = true;
  }
  if (previous) {
    for (auto& still : previous->Retiring()) {
      // The new write region must have had the change once the epoch moved
      // on past the one after it: drain it no longer than the others.
      if (still.retire_only_once_acked && g.epoch > still.stream_epoch + 1) still.retire_only_once_acked = false;
      const bool listed = std::any_of(options.remotes.begin(), options.remotes.end(),
                                      [&](const auto& r) { return r.name == still.name; });
      if (!listed) options.remotes.push_back(std::move(still));
    }
  }
  if (writer || !options.remotes.empty()) {  // a read region: only to drain or retire
    BULWARK_ASSIGN_OR_RETURN(auto fresh,
                             replication::RegionShipper::Start(std::move(options), node->replica, node->store));
    started = std::move(fresh);
  }
  std::shared_ptr<replication::RegionShipper> old;
  {
    std::lock_guard lock(cfg_mu);
    cfg = std::move(next);
    record = rec;
    removed = !listed;
    write_region.store(writer);
    epoch.store(g.epoch);
    old = std::move(shipper);
    shipper = std::move(started);
  }
  // Writes waiting on the old stream for the quorum set answer Unavailable
  // (outcome unknown: the client retries with its request id).
  if (old) old->Stop();
  return Status::Ok();
}

void Geo::Impl::Refresh() {
  std::lock_guard apply_lock(apply_mu);
  auto rec = node->store->Regions();
  if (!rec.ok()) {
    spdlog::error("event=geo_topology_unreadable error=\"{}\"", rec.status().ToString());
    return;
  }
  if (!rec->has_value()) return;
  const std::string& text = (*rec)->json;
  std::shared_ptr<const GeoConfig> current;
  {
    std::lock_guard lock(cfg_mu);
    if (record == text) return;
    current = cfg;
  }
  auto next = DecodeRegions(text, node->config->geo);
  if (next.ok() && next->epoch < current->epoch) {
    // The control group moved the write region past this record (this
    // region was cut off when it happened): the newer topology stays in
    // force until the new write region's stream brings its record.
    spdlog::info("event=geo_topology_behind record_epoch={} in_force={}", next->epoch, current->epoch);
    std::lock_guard lock(cfg_mu);
    record = text;
    return;
  }
  if (!next.ok()) {
    // The write region validated it; a record this node cannot take is a
    // bug or a newer format: keep the topology in force, loudly.
    spdlog::error("event=geo_topology_refused error=\"{}\"", next.status().ToString());
    std::lock_guard lock(cfg_mu);
    record = text;
    return;
  }
  // A removed region still gets the stream up to the change that removed
  // it, and nothing after, so it knows.
  std::vector<replication::RemoteRegion> retiring;
  const uint64_t glsn = (*rec)->glsn > 0 ? (*rec)->glsn : node->store->geo_position().glsn;
  for (const RegionConfig& r : current->regions) {
    const bool kept =
        std::any_of(next->regions.begin(), next->regions.end(), [&](const auto& n) { return n.name == r.name; });
    if (kept || r.name == self) continue;
    replication::RemoteRegion gone{r.name, r.peers, std::chrono::milliseconds(r.link_delay_ms)};
    auto at = (*rec)->removed.find(r.name);
    gone.retire_at_glsn = at != (*rec)->removed.end() ? at->second : glsn;
    retiring.push_back(std::move(gone));
  }
  auto shared = std::make_shared<const GeoConfig>(std::move(next).value());
  std::string names;
  for (const auto& r : shared->regions) names += (names.empty() ? "" : ",") + r.name;
  std::string strong;
  for (const auto& r : shared->strong_regions) strong += (strong.empty() ? "" : ",") + r;
  Status st = Apply(shared, text, std::move(retiring), glsn);
  if (!st.ok()) {
    spdlog::error("event=geo_topology_change_failed error=\"{}\"", st.ToString());
    return;
  }
  spdlog::warn(
      "event=geo_topology_changed regions={} strong={} glsn={} removed_here={}", names, strong, glsn,
      !std::any_of(shared->regions.begin(), shared->regions.end(), [&](const auto& r) { return r.name == self; }));
  if (shared->write_region != current->write_region) {
    const auto& f = shared->last_failover;
    spdlog::warn("event=write_region_changed from={} to={} epoch={} glsn={} reason=\"{}\" here={}",
                 current->write_region, shared->write_region, shared->epoch, glsn, f.reason,
                 shared->write_region == self    ? "takes writes"
                 : current->write_region == self ? "stops writes"
                                                 : "-");
  }
}

void Geo::Impl::Watch() {
  // A regions record changes only with the settings generation (a
  // kSetRegions, or an installed image): read it only then.
  uint64_t seen = 0;  // the first turn reads it (a change since Start)
  std::unique_lock lock(watch_mu);
  while (!stopping) {
    watch_cv.wait_for(lock, kTopologyPoll);
    const uint64_t gen = node->store->settings_generation();
    if (gen == seen || stopping) continue;
    seen = gen;
    lock.unlock();
    Refresh();
    lock.lock();
  }
}

bool Geo::Impl::HoldsLease() const {
  std::lock_guard lock(control_mu);
  return lease_epoch == epoch.load() && SteadyClock::now() < control_lease_until;
}

Status Geo::Impl::WaitLease(GeoDeadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::system_clock::now());
  const auto give_up = SteadyClock::now() + std::max(std::chrono::milliseconds(0), std::min(left, kLeaseWait));
  SteadyClock::time_point kicked{};
  for (;;) {
    if (HoldsLease()) return Status::Ok();
    const auto now = SteadyClock::now();
    if (now >= give_up) break;
    if (now - kicked >= std::chrono::milliseconds(200)) {
      // Ask for a report now (not more often than this: many waiting
      // writes must not make the loop report back to back).
      kicked = now;
      {
        std::lock_guard lock(watch_mu);
        control_kick = true;
      }
      control_cv.notify_all();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string why;
  {
    std::lock_guard lock(control_mu);
    why = last_control_error.empty() ? "" : " (" + last_control_error + ")";
  }
  return Status::FailedPrecondition("region " + self + " does not take writes now: it holds no lease from the " +
                                    "control group at epoch " + std::to_string(epoch.load()) + why +
                                    "; if it stays cut off from the group, another region takes the writes over");
}

void Geo::Impl::ReportToControl() {
  if (!node->replica->is_leader()) return;
  v1::ControlReport report;
  report.set_region(self);  // node_address: stamped by the voter it reaches
  const bool writer = write_region.load();
  // The epoch the store applied (a region told of a newer one by the group
  // has not applied its record yet: it must not look current).
  report.set_epoch(node->store->write_epoch());
  report.set_writer(writer);
  report.set_applied_glsn(node->store->geo_position().glsn);
  if (auto read = node->store->Fences(); read.ok()) {
    last_fences = std::move(read).value();
  } else {
    spdlog::warn("event=geo_fences_unreadable error=\"{}\"", read.status().ToString());
  }
  for (const auto& f : last_fences) {
    if (!storage::FenceAllows(f.regions, self)) report.set_fenced_out(true);
  }
  if (writer) {
    std::string rec;
    std::shared_ptr<const GeoConfig> g;
    {
      std::lock_guard lock(cfg_mu);
      rec = record;
      g = cfg;
    }
    report.set_regions_record(rec.empty() ? EncodeRegions(*g) : rec);
    if (!last_fences.empty()) {
      report.set_fenced(true);
      for (std::string& r : FenceWriters(*g, last_fences)) report.add_fence_writers(std::move(r));
    }
    if (auto shipper = Shipper()) {
      for (const std::string& q : shipper->quorum()) report.add_strong_set(q);
    }
  } else {
    const v1::RegionReadState state = LocalState();
    std::lock_guard lock(mu);
    report.set_strong_member(listed_in_quorum);
    report.set_lag_writes(state.lag_writes());
    report.set_lag_ms(state.lag_ms());
  }
  const auto sent = SteadyClock::now();
  auto answer = control->Report(report);
  {
    std::lock_guard lock(control_mu);
    if (!answer.ok()) {
      last_control_error = answer.status().ToString();
      return;
    }
    last_control_error.clear();
    last_answer = *answer;
    last_answer_at = SteadyClock::now();
    if (answer->lease_ms() > 0) {
      control_lease_until = sent + std::chrono::milliseconds(answer->lease_ms());
      lease_epoch = answer->epoch();
    }
  }
  if (!writer && answer->write_region() == self && answer->epoch() == report.epoch() + 1 && answer->lease_ms() > 0) {
    TakeOver(*answer);
  } else if (answer->epoch() > report.epoch() && answer->write_region() != self) {
    Superseded(*answer);
  }
}

void Geo::Impl::Superseded(const v1::ControlAnswer& answer) {
  // The control group moved the write region while this region could not
  // hear of it (cut off, or down): put that topology in force now, so this
  // region stops writing (its proposals carry kNotWriterEpoch) and takes
  // the new write region's stream, which brings the record itself (and,
  // for what this region wrote that the others never had, a state image).
  std::lock_guard apply_lock(apply_mu);
  auto next = DecodeRegions(answer.regions_record(), node->config->geo);
  if (!next.ok()) {
    spdlog::error("event=geo_topology_refused source=control error=\"{}\"", next.status().ToString());
    return;
  }
  std::string in_force;
  {
    std::lock_guard lock(cfg_mu);
    in_force = record;
    if (cfg->epoch >= next->epoch) return;
  }
  const bool was_writer = write_region.load();
  Status st = Apply(std::make_shared<const GeoConfig>(std::move(next).value()), in_force, {}, 0);
  spdlog::warn("event=write_region_changed source=control to={} epoch={} here={} ok={}", answer.write_region(),
               answer.epoch(), was_writer ? "stops writes" : "-", st.ok());
}

void Geo::Impl::TakeOver(const v1::ControlAnswer& answer) {
  // The control group named this region the write region at the next
  // epoch: propose its record here, stamped with that epoch (the store
  // takes it as the epoch's first command), and the watcher puts it in
  // force; the stream to the other regions starts from there.
  auto next = DecodeRegions(answer.regions_record(), node->config->geo);
  if (!next.ok() || next->write_region != self || next->epoch != answer.epoch()) {
    spdlog::error("event=write_region_takeover_refused epoch={} reason=\"{}\"", answer.epoch(),
                  next.ok() ? "the record names another write region or epoch" : next.status().ToString());
    return;
  }
  auto current = node->store->Regions();
  if (!current.ok()) return;
  const std::string version = current->has_value() ? storage::DocumentStore::RegionsVersion((*current)->json)
                                                   : std::string(storage::kNoRegionsVersion);
  auto cmd = node->store->PrepareSetRegions(answer.regions_record(), version);
  if (!cmd.ok()) return;
  cmd->geo_epoch = answer.epoch();
  auto done = node->replica->Propose(std::move(cmd).value(), std::chrono::system_clock::now() + kTakeoverWait);
  const Status st = done.ok() ? done->outcome.status : done.status();
  spdlog::warn("event=write_region_takeover region={} epoch={} glsn={} ok={} error=\"{}\" reason=\"{}\"", self,
               answer.epoch(), done.ok() ? done->outcome.glsn : 0, st.ok(), st.ok() ? "" : st.ToString(),
               next->last_failover.reason);
}

void Geo::Impl::ControlLoop() {
  std::unique_lock lock(watch_mu);
  while (!stopping) {
    control_cv.wait_for(lock, kControlReportInterval, [&] { return stopping || control_kick; });
    if (stopping) break;
    control_kick = false;
    lock.unlock();
    ReportToControl();
    lock.lock();
  }
}

Result<std::unique_ptr<Geo>> Geo::Start(NodeContext* node) {
  auto impl = std::make_unique<Impl>();
  impl->node = node;
  impl->self = node->config->region;
  auto configured = std::make_shared<const GeoConfig>(node->config->geo);
  impl->cfg = configured;
  if (configured->enabled()) {
    impl->geo_enabled = true;
    impl->write_region = configured->write_region == impl->self;
    // A record from an earlier change wins over the configuration: read it
    // before anything is shipped.
    std::shared_ptr<const GeoConfig> initial = configured;
    std::string initial_record;
    BULWARK_ASSIGN_OR_RETURN(auto rec, node->store->Regions());
    if (rec.has_value()) {
      auto decoded = DecodeRegions(rec->json, node->config->geo);
      if (decoded.ok()) {
        initial = std::make_shared<const GeoConfig>(std::move(decoded).value());
        initial_record = rec->json;
      } else {
        spdlog::error("event=geo_topology_refused error=\"{}\"", decoded.status().ToString());
      }
    }
    BULWARK_RETURN_IF_ERROR(impl->Apply(initial, initial_record, {}, 0, /*at_start=*/true));
    Impl* stamp = impl.get();
    // Every account command proposed here carries the epoch this region
    // writes at, or one no epoch has: the store refuses it if the write
    // region moved before it in the log (the fence).
    node->replica->set_epoch_stamp(
        [stamp] { return stamp->write_region.load() ? stamp->epoch.load() : storage::kNotWriterEpoch; });
    Impl* raw = impl.get();
    impl->watcher = std::thread([raw] { raw->Watch(); });
    if (node->config->control.configured()) {
      impl->control = std::make_unique<ControlClient>(*node->config, node->replica->transport());
      impl->lease_required = impl->control->automatic();
      impl->control_thread = std::thread([raw] { raw->ControlLoop(); });
    }
    const auto g = impl->Cfg();
    spdlog::info("event=geo_started region={} write_region={} regions={} strong={} from_record={}", impl->self,
                 g->write_region, g->regions.size(), g->strong_regions.size(), g.get() != configured.get());
  }
  return std::unique_ptr<Geo>(new Geo(std::move(impl)));
}

void Geo::Stop() {
  {
    std::lock_guard lock(impl_->watch_mu);
    impl_->stopping = true;
  }
  impl_->watch_cv.notify_all();
  impl_->control_cv.notify_all();
  if (impl_->watcher.joinable()) impl_->watcher.join();
  if (impl_->control_thread.joinable()) impl_->control_thread.join();
  if (auto s = impl_->Shipper()) s->Stop();
}

bool Geo::enabled() const { return impl_->geo_enabled; }
bool Geo::is_write_region() const { return impl_->write_region; }
uint64_t Geo::epoch() const { return impl_->epoch.load(); }

uint64_t Geo::RetainFrom() const {
  auto shipper = impl_->Shipper();
  return shipper ? shipper->RetainFrom() : 0;
}

std::shared_ptr<const GeoConfig> Geo::Topology() const { return impl_->Cfg(); }

Result<std::pair<std::string, std::string>> Geo::PrepareRegionChange(const v1::ChangeRegionsRequest& change) const {
  if (!enabled()) return Status::FailedPrecondition("geo-replication is not configured (geo.regions)");
  if (!impl_->write_region) {
    return Status::FailedPrecondition("region " + impl_->self + " does not take writes: the write region is " +
                                      impl_->Cfg()->write_region + " (refresh the topology)");
  }
  BULWARK_ASSIGN_OR_RETURN(auto current, impl_->node->store->Regions());
  // Change what the store holds (or the configuration, before any change),
  // and name it, so that a concurrent change makes this one fail.
  GeoConfig base = *impl_->Cfg();
  std::string version(storage::kNoRegionsVersion);
  if (current.has_value()) {
    BULWARK_ASSIGN_OR_RETURN(base, DecodeRegions(current->json, impl_->node->config->geo));
    version = storage::DocumentStore::RegionsVersion(current->json);
  }
  BULWARK_ASSIGN_OR_RETURN(GeoConfig next, ChangeRegions(base, change));
  BULWARK_ASSIGN_OR_RETURN(auto fences, impl_->node->store->Fences());
  BULWARK_RETURN_IF_ERROR(CheckFences(next, fences));
  if (change.change_case() == v1::ChangeRegionsRequest::kFailoverTo) {
    // The old write region stops at the change; the new one starts once it
    // has applied it. A target that is not taking the stream now would
    // leave the account without a write region until it is back.
    auto shipper = impl_->Shipper();
    bool ready = false;
    std::string why = "no stream reaches it from here";
    for (const auto& lag : shipper ? shipper->Lags() : std::vector<replication::RegionLag>{}) {
      if (lag.name != change.failover_to()) continue;
      ready = lag.connected && !lag.needs_image && lag.error.empty() && lag.lag_writes <= kMaxFailoverLagWrites;
      why = !lag.connected       ? "it has not answered the stream lately"
            : lag.needs_image    ? "it is being rebuilt from a state image"
            : !lag.error.empty() ? lag.error
                                 : "it is " + std::to_string(lag.lag_writes) + " writes behind (at most " +
                                       std::to_string(kMaxFailoverLagWrites) + "; retry once it has caught up)";
    }
    if (!ready && base.write_region != change.failover_to()) {
      const bool known = std::any_of(base.regions.begin(), base.regions.end(),
                                     [&](const auto& r) { return r.name == change.failover_to(); });
      if (known) {
        return Status::FailedPrecondition("cannot fail over to " + change.failover_to() + ": " + why +
                                          " (writes would stop until it is back)");
      }
    }
  }
  return std::make_pair(EncodeRegions(next, &base), version);
}

Status Geo::CheckNewFence(const std::string& resource, std::string_view fence) const {
  if (fence.empty()) return Status::Ok();
  if (!enabled()) {
    return Status::FailedPrecondition(
        "geo-fencing needs an account of several regions (geo.regions); this one has "
        "a single region");
  }
  const auto cfg = impl_->Cfg();
  for (const std::string& name : storage::SplitFence(fence)) {
    if (std::none_of(cfg->regions.begin(), cfg->regions.end(), [&](const auto& r) { return r.name == name; })) {
      return Status::InvalidArgument("region " + name + " is not in the account (bulwark region list names them)");
    }
  }
  return CheckFences(*cfg, {{resource, std::string(fence)}});
}

Status Geo::Impl::RefuseIfRemoved() const {
  std::lock_guard lock(cfg_mu);
  if (!removed) return Status::Ok();
  return Status::FailedPrecondition("region " + self +
                                    " was removed from the account: it serves nothing (use another region)");
}

Status Geo::BeforeWrite(GeoDeadline deadline) {
  if (!enabled()) return Status::Ok();
  BULWARK_RETURN_IF_ERROR(impl_->RefuseIfRemoved());
  if (!impl_->write_region) {
    return Status::FailedPrecondition("region " + impl_->self + " does not take writes: the write region is " +
                                      impl_->Cfg()->write_region + " (refresh the topology)");
  }
  if (impl_->lease_required) BULWARK_RETURN_IF_ERROR(impl_->WaitLease(deadline));
  auto shipper = impl_->Shipper();
  if (impl_->node->config->default_consistency == ConsistencyLevel::kBoundedStaleness && shipper) {
    return shipper->ThrottleForBound(impl_->Cfg()->bounded_max_writes,
                                     std::chrono::seconds(impl_->Cfg()->bounded_max_lag_s), deadline);
  }
  return Status::Ok();
}

Status Geo::AfterWrite(uint64_t glsn, GeoDeadline deadline) {
  // A write is acknowledged only under the lease: once it ended, another
  // region may be taking writes (the write stays here; if it never reached
  // the others it goes to the conflict feed).
  auto lease_check = [&] {
    if (!impl_->lease_required || impl_->HoldsLease()) return Status::Ok();
    return Status::Unavailable("region " + impl_->self +
                               " lost its lease from the control group before acknowledging the write (GLSN " +
                               std::to_string(glsn) + "): its outcome is unknown");
  };
  if (!enabled()) return Status::Ok();
  auto shipper = impl_->Shipper();
  if (!shipper || impl_->node->config->default_consistency != ConsistencyLevel::kStrong) return lease_check();
  BULWARK_RETURN_IF_ERROR(shipper->WaitQuorum(glsn, deadline));
  return lease_check();
}

v1::RegionReadState Geo::Impl::LocalState() const {
  v1::RegionReadState s;
  s.set_write_region(write_region);
  const uint64_t applied = node->store->geo_position().glsn;
  if (write_region) {
    s.set_heard(true);
    s.set_head_glsn(applied);
    auto s_shipper = Shipper();
    s.set_committed_glsn(s_shipper ? s_shipper->committed_glsn() : applied);
    s.set_in_quorum(!lease_required || HoldsLease());
    return s;
  }
  std::lock_guard lock(mu);
  s.set_heard(heard);
  s.set_head_glsn(head_glsn);
  s.set_committed_glsn(committed_glsn);
  const auto margin = replication::kLeaseClockMargin;
  s.set_in_quorum(listed_in_quorum && std::chrono::system_clock::now() + margin < lease_until);
  s.set_lag_writes(head_glsn > applied ? head_glsn - applied : 0);
  s.set_lag_ms(heard ? std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - fresh_since).count()
                     : UINT64_MAX);
  return s;
}

v1::RegionReadState Geo::LocalState() const { return impl_->LocalState(); }

Result<v1::RegionReadState> Geo::Impl::LeaderState() const {
  replication::Replica& replica = *node->replica;
  if (replica.is_leader()) return LocalState();
  v1::ForwardRequest fr;
  fr.set_method(kRegionStateMethod);
  fr.set_deadline_unix_ms(UnixMs(std::chrono::system_clock::now() + kLeaderWait));
  BULWARK_ASSIGN_OR_RETURN(v1::ForwardResponse resp, replica.ForwardToLeader(fr));
  if (resp.code() != 0) return Status::Unavailable("the region leader: " + resp.message());
  v1::RegionReadState s;
  if (!s.ParseFromString(resp.response())) return Status::Internal("the region leader's read state does not parse");
  return s;
}

Status Geo::PrepareRead(ConsistencyLevel level, uint64_t session_glsn, GeoDeadline deadline) {
  BULWARK_RETURN_IF_ERROR(impl_->RefuseIfRemoved());
  replication::Replica& replica = *impl_->node->replica;
  const GeoDeadline barrier_deadline = std::min(deadline, std::chrono::system_clock::now() + kLeaderWait);
  const bool remote = enabled() && !impl_->write_region;
  switch (level) {
    case ConsistencyLevel::kStrong: {
      if (remote) {
        BULWARK_ASSIGN_OR_RETURN(v1::RegionReadState s, impl_->LeaderState());
        if (!s.in_quorum()) {
          return Status::Unavailable("region " + impl_->self +
                                     " is not in the strong quorum set now: read Strong from the write region " +
                                     impl_->Cfg()->write_region);
        }
      }
      return replica.ReadBarrier(barrier_deadline);
    }
    case ConsistencyLevel::kBoundedStaleness: {
      BULWARK_RETURN_IF_ERROR(replica.ReadBarrier(barrier_deadline));
      if (!remote) return Status::Ok();
      const auto wait_until = std::min(deadline, std::chrono::system_clock::now() + kSessionWait);
      const auto& strong = impl_->Cfg()->strong_regions;
      const bool held_to_quorum = impl_->node->config->default_consistency == ConsistencyLevel::kStrong &&
                                  std::find(strong.begin(), strong.end(), impl_->self) != strong.end();
      for (;;) {
        BULWARK_ASSIGN_OR_RETURN(v1::RegionReadState s, impl_->LeaderState());
        // A region dropped from the strong quorum set serves no Bounded reads
        // either until it is back: its lag is whatever it was when cut off.
        if (held_to_quorum && !s.in_quorum()) {
          return Status::Unavailable("region " + impl_->self +
                                     " is not in the strong quorum set now: read from the write region " +
                                     impl_->Cfg()->write_region);
        }
        const bool within = s.heard() && s.lag_writes() <= impl_->Cfg()->bounded_max_writes &&
                            s.lag_ms() <= uint64_t{impl_->Cfg()->bounded_max_lag_s} * 1000;
        if (within) return replica.ReadBarrier(barrier_deadline);  // this node has what the leader had
        if (std::chrono::system_clock::now() >= wait_until) {
          return Status::Unavailable("region " + impl_->self + " is " + std::to_string(s.lag_writes()) +
                                     " writes behind the write region, beyond the BoundedStaleness bound: read "
                                     "from the write region " +
                                     impl_->Cfg()->write_region);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    case ConsistencyLevel::kSession: {
      if (session_glsn == 0) return Status::Ok();
      Status s = replica.WaitGlsn(session_glsn, std::min(deadline, std::chrono::system_clock::now() + kSessionWait));
      if (s.code() != Code::kDeadlineExceeded) return s;
      if (remote) {
        // The write region has it: the client reads there.
        return Status::Unavailable("region " + impl_->self + " has not yet applied the session's writes (GLSN " +
                                   std::to_string(session_glsn) + "): read from the write region " +
                                   impl_->Cfg()->write_region);
      }
      // This node lags: the leader's commit index covers the session's write.
      return replica.ReadBarrier(barrier_deadline);
    }
    default:
      return Status::Ok();
  }
}

Status Geo::FinishRead(ConsistencyLevel level, GeoDeadline deadline) {
  if (level != ConsistencyLevel::kStrong || !enabled()) return Status::Ok();
  // What was read was applied here at or before this GLSN: wait until the
  // whole quorum set has it, so the read never shows a write a failover
  // could lose (nor one a read in another region cannot yet see).
  const uint64_t glsn = impl_->node->store->geo_position().glsn;
  for (;;) {
    BULWARK_ASSIGN_OR_RETURN(v1::RegionReadState s, impl_->LeaderState());
    if (impl_->write_region && !s.in_quorum()) {
      // The write region without its lease: another may be writing.
      return Status::Unavailable("region " + impl_->self + " holds no lease from the control group: read elsewhere");
    }
    if (s.committed_glsn() >= glsn) return Status::Ok();
    if (!impl_->write_region && !s.in_quorum()) {
      return Status::Unavailable("region " + impl_->self + " left the strong quorum set during the read");
    }
    if (std::chrono::system_clock::now() >= deadline) {
      return Status::DeadlineExceeded("the read waited for the strong quorum set to commit GLSN " +
                                      std::to_string(glsn) + " past its deadline");
    }
    std::this_thread::sleep_for(kReadPoll);
  }
}

std::string Geo::Impl::RefuseStream(const std::string& from, const std::string& to, uint64_t stream_epoch) const {
  const auto c = Cfg();
  if (!c->enabled() || write_region) return "region " + self + " takes writes itself; it receives no stream";
  // A newer epoch's write region, which this region has not heard of yet
  // (it is behind the change that named it): taken, so that it learns this
  // region's position and brings it on (the old write region may be gone).
  const bool newer = stream_epoch > node->store->write_epoch() &&
                     std::any_of(c->regions.begin(), c->regions.end(), [&](const auto& r) { return r.name == from; });
  if ((from != c->write_region && !newer) || to != self) {
    return "stream from " + from + " to " + to + " refused: this is " + self + " and the write region is " +
           c->write_region;
  }
  return {};
}

std::string Geo::Impl::LeaderAddress() const {
  const uint64_t lead = node->replica->leader();
  if (lead == 0) return {};
  auto book = node->store->MemberAddresses();
  if (book.ok() && book->count(lead)) return book->at(lead);
  auto members = ParseMembers(node->config->replica);
  if (members.ok() && members->count(lead)) return members->at(lead);
  return {};
}

v1::RegionAppendResponse Geo::OnRegionImage(const v1::RegionImageHeader& header,
                                            const replication::TransportHandler::ChunkReader& next) {
  v1::RegionAppendResponse out;
  Impl& g = *impl_;
  replication::Replica& replica = *g.node->replica;
  if (std::string refused = g.RefuseStream(header.from_region(), header.to_region(), header.epoch());
      !refused.empty()) {
    out.set_error(refused);
    return out;
  }
  if (!replica.is_leader()) {
    out.set_leader(false);
    out.set_leader_address(g.LeaderAddress());
    return out;
  }
  out.set_leader(true);
  auto answer = [&](const std::string& error) {
    const storage::GeoPosition pos = g.node->store->geo_position();
    out.set_applied_glsn(pos.glsn);
    out.set_source_index(pos.source_index);
    out.set_epoch(pos.epoch);
    out.set_account_epoch(g.node->store->write_epoch());
    out.set_error(error);
    return out;
  };
  std::unique_lock one(g.image_mu, std::try_to_lock);
  if (!one.owns_lock()) return answer("a region image is already being installed here");
  if (header.epoch() < g.node->store->write_epoch()) {
    return answer("region image from epoch " + std::to_string(header.epoch()) + " refused: the account is at epoch " +
                  std::to_string(g.node->store->write_epoch()));
  }
  const auto deadline =
      header.deadline_unix_ms() > 0
          ? std::chrono::system_clock::time_point(std::chrono::milliseconds(header.deadline_unix_ms()))
          : std::chrono::system_clock::now() + kLeaderWait;
  const std::string id = storage::DocumentStore::NewRegionImageId();
  spdlog::info("event=region_image_receiving id={} from_region={} head_glsn={}", id, header.from_region(),
               header.head_glsn());
  Status st = g.node->store->BeginRegionImage(id);
  std::string chunk;
  uint64_t bytes = 0;
  while (st.ok()) {
    Result<bool> more = next(&chunk);
    if (!more.ok()) st = more.status();
    if (!st.ok() || !*more) break;
    bytes += chunk.size();
    st = g.node->store->AddRegionImageChunk(id, chunk);
    sodium_memzero(chunk.data(), chunk.size());  // it carried raw keys
  }
  Result<storage::GeoPosition> pos = st.ok() ? g.node->store->FinishRegionImage(id) : Result<storage::GeoPosition>(st);
  if (!pos.ok()) {
    spdlog::warn("event=region_image_refused id={} bytes={} error=\"{}\"", id, bytes, pos.status().ToString());
    (void)g.node->store->DropRegionImage(id);
    return answer("region image refused: " + pos.status().ToString());
  }
  if (g.node->store->HasRegionImagePosition(*pos)) {  // caught up meanwhile
    (void)g.node->store->DropRegionImage(id);
    return answer({});
  }
  // Every replica of the region installs it at the same raft index.
  storage::WriteCommand install;
  install.kind = storage::WriteCommand::Kind::kInstallRegionImage;
  install.setting = id;
  install.member_id = replica.status().node_id;
  install.geo_glsn = pos->glsn;
  install.geo_epoch = pos->epoch;
  install.geo_source_index = pos->source_index;
  install.proposed_unix_ms = UnixMs(std::chrono::system_clock::now());
  auto done = replica.Propose(std::move(install), deadline);
  if (!done.ok()) {
    // It may still commit (then it is installed); if not, the image is
    // dropped an hour on (DocumentStore::DropRegionImages).
    spdlog::warn("event=region_image_install_failed id={} error=\"{}\"", id, done.status().ToString());
    return answer("region image " + id + " was not installed: " + done.status().ToString());
  }
  {
    std::lock_guard lock(g.mu);
    g.heard = true;
    g.head_glsn = std::max(g.head_glsn, header.head_glsn());
    if (g.node->store->geo_position().glsn >= g.head_glsn) g.fresh_since = SteadyClock::now();
  }
  spdlog::info("event=region_image_accepted id={} bytes={} glsn={} index={}", id, bytes, pos->glsn, done->index);
  return answer({});
}

v1::RegionAppendResponse Geo::OnRegionAppend(const v1::RegionAppendRequest& req) {
  v1::RegionAppendResponse out;
  Impl& g = *impl_;
  replication::Replica& replica = *g.node->replica;
  const uint64_t account_epoch = g.node->store->write_epoch();
  const bool stale = g.Cfg()->enabled() && req.to_region() == g.self && req.epoch() < account_epoch;
  if (std::string refused = g.RefuseStream(req.from_region(), req.to_region(), req.epoch());
      !refused.empty() && !stale) {
    out.set_error(refused);
    return out;
  }
  if (!replica.is_leader()) {
    out.set_leader(false);
    out.set_leader_address(g.LeaderAddress());
    return out;
  }
  if (stale) {
    // An old write region's stream, past the change that moved the writes
    // (this region has applied it, or it would not know the newer epoch).
    // The position tells a draining old write region that this one has
    // everything it wrote; the epoch tells it that its stream ended.
    const storage::GeoPosition pos = g.node->store->geo_position();
    out.set_leader(true);
    out.set_applied_glsn(pos.glsn);
    out.set_source_index(pos.source_index);
    out.set_epoch(pos.epoch);
    out.set_account_epoch(account_epoch);
    out.set_error("stream of epoch " + std::to_string(req.epoch()) + " refused: the account is at epoch " +
                  std::to_string(account_epoch));
    return out;
  }
  out.set_leader(true);
  const auto received = SteadyClock::now();
  const auto deadline = req.deadline_unix_ms() > 0
                            ? std::chrono::system_clock::time_point(std::chrono::milliseconds(req.deadline_unix_ms()))
                            : std::chrono::system_clock::now() + kLeaderWait;
  std::string error;
  if (req.entries_size() > 0) {
    std::vector<storage::WriteCommand> cmds;
    cmds.reserve(req.entries_size());
    for (const v1::RegionEntry& e : req.entries()) {
      auto cmd = storage::WriteCommand::Decode(e.command());
      if (!cmd.ok() || cmd->geo_glsn != e.glsn() || cmd->geo_source_index != e.source_index()) {
        error = "entry at GLSN " + std::to_string(e.glsn()) + " is malformed";
        break;
      }
      if (cmd->kind != storage::WriteCommand::Kind::kFencedOut && !storage::FenceAllows(cmd->fence, g.self)) {
        // A sender that should have sent the placeholder (storage/fence.h):
        // keep the position, never the data.
        spdlog::warn("event=fenced_entry_refused glsn={} fence={} from_region={}", e.glsn(), cmd->fence,
                     req.from_region());
        storage::WriteCommand placeholder = storage::FencedOutPlaceholder(*cmd);
        cmd->WipeKey();
        cmds.push_back(std::move(placeholder));
        continue;
      }
      cmds.push_back(std::move(cmd).value());
    }
    if (!cmds.empty()) {
      auto done = replica.ProposeBatch(std::move(cmds), deadline);
      if (!done.ok()) {
        error = done.status().ToString();
      } else {
        for (const auto& c : *done) {
          if (c.outcome.status.code() == Code::kFailedPrecondition &&
              c.outcome.status.message().find("region stream gap") != std::string::npos) {
            error = c.outcome.status.message();
            break;
          }
        }
      }
    }
  }
  const storage::GeoPosition pos = g.node->store->geo_position();
  {
    std::lock_guard lock(g.mu);
    const bool first = !g.heard;
    g.heard = true;
    g.head_glsn = std::max(g.head_glsn, req.head_glsn());
    g.committed_glsn = std::max(g.committed_glsn, req.committed_glsn());
    g.listed_in_quorum =
        std::find(req.strong_regions().begin(), req.strong_regions().end(), g.self) != req.strong_regions().end();
    // A lease only from a message that arrived within its deadline.
    if (std::chrono::system_clock::now() < deadline && req.lease_until_unix_ms() > 0) {
      g.lease_until = std::chrono::system_clock::time_point(std::chrono::milliseconds(req.lease_until_unix_ms()));
    } else if (req.lease_until_unix_ms() == 0) {
      g.lease_until = {};
    }
    if (pos.glsn >= req.head_glsn()) g.fresh_since = received;
    if (first && pos.glsn < req.head_glsn()) g.fresh_since = received - std::chrono::hours(24);
  }
  out.set_applied_glsn(pos.glsn);
  out.set_source_index(pos.source_index);
  out.set_epoch(pos.epoch);
  out.set_account_epoch(g.node->store->write_epoch());
  out.set_error(error);
  return out;
}

void Geo::FillStatus(v1::StatusResponse* out) const {
  if (!enabled()) return;
  const storage::GeoPosition pos = impl_->node->store->geo_position();
  const auto cfg = impl_->Cfg();
  out->set_write_region(cfg->write_region);
  out->set_glsn(pos.glsn);
  out->set_epoch(cfg->epoch);
  if (cfg->last_failover.epoch > 0) {
    v1::FailoverRecord* f = out->mutable_last_failover();
    f->set_from_region(cfg->last_failover.from);
    f->set_to_region(cfg->last_failover.to);
    f->set_at_unix_ms(cfg->last_failover.at_unix_ms);
    f->set_reason(cfg->last_failover.reason);
    f->set_epoch(cfg->last_failover.epoch);
  }
  if (impl_->control) {
    v1::ControlStatus* c = out->mutable_control();
    c->set_configured(true);
    c->set_automatic(impl_->control->automatic());
    c->set_automatic_off(impl_->control->automatic_off());
    std::lock_guard lock(impl_->control_mu);
    const auto now = SteadyClock::now();
    c->set_grace_ms(impl_->last_answer.grace_ms());
    c->set_last_answer_from(impl_->last_answer.leader_address());
    c->set_last_answer_ms_ago(
        impl_->last_answer_at == SteadyClock::time_point{}
            ? -1
            : std::chrono::duration_cast<std::chrono::milliseconds>(now - impl_->last_answer_at).count());
    c->set_lease_left_ms(
        impl_->lease_epoch == impl_->epoch.load() && now < impl_->control_lease_until
            ? std::chrono::duration_cast<std::chrono::milliseconds>(impl_->control_lease_until - now).count()
            : -1);
    c->set_write_region(impl_->last_answer.write_region());
    c->set_epoch(impl_->last_answer.epoch());
  }
  auto shipper = impl_->Shipper();
  if (!shipper || !impl_->node->replica->is_leader()) return;
  for (const std::string& q : shipper->quorum()) out->add_strong_quorum(q);
  for (const auto& lag : shipper->Lags()) {
    v1::RegionStatus* r = out->add_regions();
    r->set_name(lag.name);
    for (const auto& rc : impl_->Cfg()->regions) {
      if (rc.name == lag.name) r->set_priority(static_cast<uint32_t>(rc.priority));
    }
    r->set_connected(lag.connected);
    r->set_in_quorum(lag.in_quorum);
    r->set_acked_glsn(lag.acked_glsn);
    r->set_lag_writes(lag.lag_writes);
    r->set_lag_seconds(lag.lag_seconds);
    r->set_needs_image(lag.needs_image);
    r->set_error(lag.error);
  }
}

std::vector<Geo::Lag> Geo::RegionLags() const {
  std::vector<Lag> out;
  auto shipper = impl_->Shipper();
  if (!shipper || !impl_->node->replica->is_leader()) return out;
  for (const auto& lag : shipper->Lags()) out.push_back({lag.name, lag.lag_writes, lag.lag_seconds});
  return out;
}

void FillTopologyOf(const NodeConfig& c, const GeoConfig& g, uint64_t epoch, v1::TopologyResponse* out) {
  out->set_self_region(c.region);
  out->set_default_consistency(static_cast<v1::ConsistencyLevel>(c.default_consistency));
  out->set_epoch(epoch);
  if (!g.enabled()) {
    out->set_write_region(c.region);
    v1::RegionEndpoints* r = out->add_regions();
    r->set_name(c.region);
    r->add_endpoints(c.listen_address);
    return;
  }
  out->set_write_region(g.write_region);
  for (const RegionConfig& rc : g.regions) {
    v1::RegionEndpoints* r = out->add_regions();
    r->set_name(rc.name);
    r->set_priority(static_cast<uint32_t>(rc.priority));
    for (const auto& e : rc.endpoints) r->add_endpoints(e);
  }
}

void Geo::FillTopology(v1::TopologyResponse* out) const {
  const auto cfg = impl_->Cfg();
  FillTopologyOf(*impl_->node->config, *cfg, cfg->epoch, out);
}

}  // namespace bulwark::server
