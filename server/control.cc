#include "server/control.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "replication/replica.h"
#include "server/regions.h"
#include "storage/document_store.h"

namespace bulwark::server {
namespace {

using Steady = std::chrono::steady_clock;
using SystemClock = std::chrono::system_clock;
// The forwarded method a voter uses to pass a report to its leader.
constexpr const char* kControlMethod = "Control";
// The leader looks at the write region's silence this often.
constexpr std::chrono::milliseconds kMonitorInterval{200};
// The ReadIndex barrier before a grant, and a record proposal.
constexpr std::chrono::milliseconds kBarrierWait{1000};
constexpr std::chrono::milliseconds kProposeWait{3000};
// A promotion that cannot happen is logged at most this often.
constexpr std::chrono::seconds kBlockedLogEvery{10};

int64_t UnixMs(SystemClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string HostOf(const std::string& address) { return address.substr(0, address.rfind(':')); }

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Whether the report's sender (its authenticated host) is a node of the
// region it names.
bool FromRegion(const GeoConfig& geo, const v1::ControlReport& report) {
  for (const RegionConfig& r : geo.regions) {
    if (r.name != report.region()) continue;
    for (const auto& peer : r.peers) {
      if (HostOf(peer) == report.node_address()) return true;
    }
  }
  return false;
}

}  // namespace

std::string AutomaticFailoverOff(const std::vector<ControlVoter>& voters) {
  if (voters.empty()) return "no control group is configured (control.members)";
  std::map<std::string, size_t> per_domain;
  for (const auto& v : voters) ++per_domain[v.domain];
  std::string names;
  for (const auto& [domain, n] : per_domain) names += (names.empty() ? "" : ", ") + domain;
  if (per_domain.size() < 3) {
    return "the control group's voters are in " + std::to_string(per_domain.size()) + " fault domain" +
           (per_domain.size() == 1 ? "" : "s") + " (" + names +
           "): automatic failover needs at least 3, so that losing one leaves a majority to decide (add a witness: "
           "bulwarkd --witness, or a third region)";
  }
  for (const auto& [domain, n] : per_domain) {
    if (2 * n > voters.size()) {
      return "fault domain " + domain + " holds " + std::to_string(n) + " of the " + std::to_string(voters.size()) +
             " voters: losing it would stop the control group";
    }
  }
  return "";
}

PromotionChoice ChoosePromotion(const GeoConfig& geo, ConsistencyLevel level,
                                const std::map<std::string, RegionHealth>& health,
                                const std::vector<std::string>& writer_strong_set, Steady::time_point now,
                                const std::vector<std::string>* writer_fence) {
  PromotionChoice choice;
  const std::vector<std::string>& strong = writer_strong_set.empty() ? geo.strong_regions : writer_strong_set;
  std::string why;
  auto skip = [&](const std::string& name, const std::string& reason) {
    why += (why.empty() ? "" : "; ") + name + ": " + reason;
  };
  for (const RegionConfig& r : geo.regions) {
    if (r.name == geo.write_region) continue;
    auto it = health.find(r.name);
    if (it == health.end() || now - it->second.heard > kControlHealthyWithin) {
      skip(r.name, "not heard from lately");
      continue;
    }
    const v1::ControlReport& report = it->second.report;
    if (report.fenced_out() || (writer_fence != nullptr && !Contains(*writer_fence, r.name))) {
      // Its writes would leave a database or container its geo-fence keeps
      // elsewhere (docs/geo-fencing.md).
      skip(r.name, "outside a geo-fence");
      continue;
    }
    if (report.epoch() != geo.epoch) {
      // It has not applied the record in force (it was cut off when the
      // write region last moved): it lacks that region's writes.
      skip(r.name, "at epoch " + std::to_string(report.epoch()) + ", the account is at " + std::to_string(geo.epoch));
      continue;
    }
    if (level == ConsistencyLevel::kStrong && (!Contains(strong, r.name) || !report.strong_member())) {
      skip(r.name, "not in the strong quorum set (it may lack acknowledged writes)");
      continue;
    }
    if (level == ConsistencyLevel::kBoundedStaleness && report.lag_writes() > geo.bounded_max_writes) {
      skip(r.name, std::to_string(report.lag_writes()) + " writes behind (the bound is " +
                       std::to_string(geo.bounded_max_writes) + ")");
      continue;
    }
    choice.region = r.name;
    return choice;
  }
  choice.why_none = why.empty() ? "the account has no other region" : why;
  return choice;
}

// ---------------------------------------------------------------------------
// ControlMember.

struct ControlMember::Impl {
  // Copied at start: the member outlives nothing it borrows.
  GeoConfig geo;
  ControlConfig control;
  ConsistencyLevel level = ConsistencyLevel::kSession;
  std::string self_address;
  std::string automatic_off;

  std::unique_ptr<storage::DocumentStore> store;
  std::unique_ptr<replication::Replica> replica;

  // Serializes grants and promotions (see the header: a promotion must see
  // every report a grant answered).
  mutable std::mutex mu;
  std::map<std::string, RegionHealth> health;  // GUARDED_BY(mu)
  std::vector<std::string> writer_strong_set;  // GUARDED_BY(mu): as the write region last reported it
  // GUARDED_BY(mu): the regions inside every geo-fence, as the write region
  // last reported them; nullopt: it reported no fence.
  std::optional<std::vector<std::string>> writer_fence;
  bool leading = false;                 // GUARDED_BY(mu)
  uint64_t leader_term = 0;             // GUARDED_BY(mu)
  Steady::time_point leader_since{};    // GUARDED_BY(mu)
  Steady::time_point blocked_logged{};  // GUARDED_BY(mu)

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;  // GUARDED_BY(stop_mu)
  std::thread monitor;

  struct Record {
    std::string json;  // empty: none yet
    std::string version;
  };
  Result<Record> ReadRecord() const {
    BULWARK_ASSIGN_OR_RETURN(auto rec, store->Regions());
    Record r;
    r.version = std::string(storage::kNoRegionsVersion);
    if (rec.has_value()) {
      r.json = rec->json;
      r.version = storage::DocumentStore::RegionsVersion(rec->json);
    }
    return r;
  }
  Status ProposeRecord(const std::string& json, const std::string& base_version) {
    BULWARK_ASSIGN_OR_RETURN(storage::WriteCommand cmd, store->PrepareSetRegions(json, base_version));
    BULWARK_ASSIGN_OR_RETURN(replication::Committed done,
                             replica->Propose(std::move(cmd), SystemClock::now() + kProposeWait));
    return done.outcome.status;
  }
  // REQUIRES: mu. Follows this voter's leadership: a new term of leading
  // starts with no health known (nothing is promoted on another leader's
  // view).
  void TrackLeadershipLocked() {
    const bool now_leader = replica->is_leader();
    const uint64_t term = replica->term();
    if (now_leader && (!leading || term != leader_term)) {
      leading = true;
      leader_term = term;
      leader_since = Steady::now();
      health.clear();
      writer_strong_set.clear();
      spdlog::info("event=control_leader term={} address={}", term, self_address);
    } else if (!now_leader) {
      leading = false;
    }
  }
  v1::ControlAnswer Handle(const v1::ControlReport& report);
  v1::ControlAnswer OnReport(const v1::ControlReport& report);
  v1::ForwardResponse OnForward(const v1::ForwardRequest& request);
  void Monitor();
  void MaybePromote();
};

v1::ControlAnswer ControlMember::Impl::Handle(const v1::ControlReport& report) {
  v1::ControlAnswer a;
  a.set_leader_address(self_address);
  a.set_automatic(automatic_off.empty());
  a.set_automatic_off(automatic_off);
  a.set_grace_ms(control.grace_ms);
  // Leadership and everything committed before now: a grant after it was
  // made by a leader that was still one when the report was sent.
  if (Status s = replica->ReadBarrier(SystemClock::now() + kBarrierWait); !s.ok()) {
    a.set_error("the control group has no leader here: " + s.ToString());
    return a;
  }
  std::lock_guard lock(mu);
  TrackLeadershipLocked();
  if (!leading) {
    a.set_error("this voter no longer leads the control group");
    return a;
  }
  // A record change this leader proposed and has not applied (a promotion
  // whose proposal timed out) may still commit: nothing is granted until
  // the record read below is the last one in the log.
  const replication::ReplicaStatus rs = replica->status();
  const bool settled = rs.applied_index >= rs.last_index;
  auto rec = ReadRecord();
  if (!rec.ok()) {
    a.set_error("the control group's record: " + rec.status().ToString());
    return a;
  }
  // The record in force, decoded once per read (empty: none yet, or one
  // that does not decode, which nothing adopts onto and no report matches).
  auto decode_ours = [&]() -> std::optional<GeoConfig> {
    if (rec->json.empty()) return std::nullopt;
    auto g = DecodeRegions(rec->json, geo);
    return g.ok() ? std::optional<GeoConfig>(std::move(g).value()) : std::nullopt;
  };
  std::optional<GeoConfig> ours = decode_ours();
  // The write region's record, when it changed in the data path (regions
  // added or removed, priorities, a planned failover): the control group
  // follows it, so that a promotion starts from the topology in force.
  if (report.writer() && !report.regions_record().empty() &&
      report.regions_record().size() <= storage::kMaxRegionsBytes) {
    auto theirs = DecodeRegions(report.regions_record(), geo);
    bool adopt = theirs.ok() && theirs->write_region == report.region();
    if (adopt && rec->json.empty()) {
      adopt = FromRegion(*theirs, report);  // the first record: from the region it names
    } else if (adopt) {
      // Only the write region in force changes the record, from one of its
      // nodes: its own changes at its epoch, or a planned failover it made
      // (the next epoch, the failover from it).
      const bool planned = ours && theirs->epoch == ours->epoch + 1 &&
                           theirs->last_failover.from == ours->write_region &&
                           theirs->last_failover.epoch == theirs->epoch;
      const bool changed = ours && theirs->epoch == ours->epoch && ours->write_region == report.region() &&
                           rec->json != report.regions_record();
      adopt = ours && FromRegion(*ours, report) && (planned || changed);
    }
    if (adopt) {
      Status s = ProposeRecord(report.regions_record(), rec->version);
      spdlog::info("event=control_record_adopted region={} epoch={} ok={} error=\"{}\"", report.region(), theirs->epoch,
                   s.ok(), s.ok() ? "" : s.ToString());
      if (s.ok()) {
        rec = ReadRecord();
        if (!rec.ok()) {
          a.set_error("the control group's record: " + rec.status().ToString());
          return a;
        }
        ours = decode_ours();
      }
    }
  }
  if (rec->json.empty()) return a;  // nothing known yet: no lease (the write region adopts first)
  // Reports count only from a node of the region they name (by its
  // authenticated address), so no node can keep another region alive, or
  // claim its place.
  if (!ours || !FromRegion(*ours, report)) {
    a.set_error("a report for region " + report.region() + " from " + report.node_address() +
                ", which is not one of its nodes");
    return a;
  }
  health[report.region()] = {Steady::now(), report};
  a.set_regions_record(rec->json);
  a.set_write_region(ours->write_region);
  a.set_epoch(ours->epoch);
  if (ours->write_region == report.region()) {
    // The write region at the record's epoch, or the region promoted to it
    // that has yet to take over (it proposes the record at that epoch).
    const bool current = report.writer() && report.epoch() == ours->epoch;
    const bool taking_over = report.epoch() + 1 == ours->epoch;
    if ((current || taking_over) && settled) a.set_lease_ms(control.lease_ms);
    if (current) {
      writer_strong_set.assign(report.strong_set().begin(), report.strong_set().end());
      writer_fence.reset();
      if (report.fenced()) writer_fence.emplace(report.fence_writers().begin(), report.fence_writers().end());
    }
  }
  return a;
}

void ControlMember::Impl::MaybePromote() {
  if (!automatic_off.empty() || !replica->is_leader()) return;
  if (!replica->ReadBarrier(SystemClock::now() + kBarrierWait).ok()) return;
  std::lock_guard lock(mu);
  TrackLeadershipLocked();
  if (!leading) return;
  auto rec = ReadRecord();
  if (!rec.ok() || rec->json.empty()) return;
  auto g = DecodeRegions(rec->json, geo);
  if (!g.ok()) return;
  const auto now = Steady::now();
  Steady::time_point last = leader_since;
  if (auto it = health.find(g->write_region); it != health.end()) last = std::max(last, it->second.heard);
  const auto silent = now - last;
  if (silent < std::chrono::milliseconds(control.grace_ms)) return;
  const double silent_s = std::chrono::duration<double>(silent).count();
  PromotionChoice choice =
      ChoosePromotion(*g, level, health, writer_strong_set, now, writer_fence ? &*writer_fence : nullptr);
  if (choice.region.empty()) {
    if (now - blocked_logged >= kBlockedLogEvery) {
      blocked_logged = now;
      spdlog::warn("event=automatic_failover_blocked write_region={} silent_s={:.1f} reason=\"{}\"", g->write_region,
                   silent_s, choice.why_none);
    }
    return;
  }
  v1::ChangeRegionsRequest change;
  change.set_failover_to(choice.region);
  auto next = ChangeRegions(*g, change);
  if (!next.ok()) {
    spdlog::error("event=automatic_failover_failed to={} error=\"{}\"", choice.region, next.status().ToString());
    return;
  }
  char why[160];
  std::snprintf(why, sizeof(why), " did not report to the control group for %.1f s (grace %.1f s)", silent_s,
                control.grace_ms / 1000.0);
  next->last_failover.reason = "automatic: " + g->write_region + why;
  Status s = ProposeRecord(EncodeRegions(*next, &*g), rec->version);
  if (s.ok()) {
    // The new write region's stream starts without the old one (region
    // stream's outside_set): the set a later promotion must respect.
    writer_strong_set.clear();
    for (const auto& r : g->strong_regions) {
      if (r != g->write_region) writer_strong_set.push_back(r);
    }
  }
  spdlog::warn("event=automatic_failover from={} to={} epoch={} silent_s={:.1f} ok={} error=\"{}\"", g->write_region,
               choice.region, next->epoch, silent_s, s.ok(), s.ok() ? "" : s.ToString());
}

void ControlMember::Impl::Monitor() {
  std::unique_lock lock(stop_mu);
  while (!stopping) {
    stop_cv.wait_for(lock, kMonitorInterval);
    if (stopping) break;
    lock.unlock();
    MaybePromote();
    lock.lock();
  }
}

v1::ControlAnswer ControlMember::Impl::OnReport(const v1::ControlReport& report) {
  if (replica->is_leader()) return Handle(report);
  v1::ControlAnswer a;
  v1::ForwardRequest fr;
  fr.set_method(kControlMethod);
  fr.set_request(report.SerializeAsString());
  fr.set_deadline_unix_ms(report.deadline_unix_ms());
  auto r = replica->ForwardToLeader(fr);
  if (!r.ok()) {
    a.set_error("control voter " + self_address + " reaches no leader: " + r.status().ToString());
  } else if (r->code() != 0) {
    a.set_error(r->message());
  } else if (!a.ParseFromString(r->response())) {
    a.Clear();
    a.set_error("the control group leader's answer does not parse");
  }
  return a;
}

v1::ForwardResponse ControlMember::Impl::OnForward(const v1::ForwardRequest& request) {
  v1::ForwardResponse out;
  v1::ControlReport report;
  if (request.method() != kControlMethod || !report.ParseFromString(request.request())) {
    out.set_code(grpc::StatusCode::INVALID_ARGUMENT);
    out.set_message("a control group voter takes only control reports");
    return out;
  }
  if (!replica->is_leader()) {
    out.set_code(grpc::StatusCode::UNAVAILABLE);
    out.set_message("control voter " + self_address + " does not lead");
    return out;
  }
  out.set_response(Handle(report).SerializeAsString());
  return out;
}

ControlMember::ControlMember(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ControlMember::~ControlMember() { Stop(); }

Result<std::unique_ptr<ControlMember>> ControlMember::Start(const NodeConfig& config, crypto::MasterKey master,
                                                            replication::PeerTls tls) {
  BULWARK_ASSIGN_OR_RETURN(auto voters, ParseControlMembers(config.control));
  auto impl = std::make_unique<Impl>();
  impl->geo = config.geo;
  impl->control = config.control;
  impl->level = config.default_consistency;
  impl->automatic_off = AutomaticFailoverOff(voters);
  std::map<uint64_t, std::string> members;
  for (const auto& v : voters) {
    members[v.id] = v.address;
    if (v.id == config.control.id) impl->self_address = v.address;
  }
  if (impl->self_address.empty()) return Status::InvalidArgument("control.id is not one of control.members");

  storage::StoreOptions store_options;
  store_options.path = (std::filesystem::path(config.data_dir) / "control").string();
  store_options.sync_writes = false;  // the raft log is fsync'd; applying replays from it
  BULWARK_ASSIGN_OR_RETURN(impl->store, storage::DocumentStore::Open(store_options, std::move(master)));

  replication::ReplicaOptions ro;
  ro.node_id = config.control.id;
  ro.members = members;
  ro.tick = std::chrono::milliseconds(config.replica.tick_ms);
  ro.election_ticks = static_cast<int>(config.replica.election_ticks);
  ro.snapshot_entries = 2000;  // a few records: a short log
  ro.keep_entries = 500;
  ro.sync_log = true;
  replication::TransportOptions to;
  to.listen_address = impl->self_address;
  to.source_ip = HostOf(impl->self_address);
  to.tls = std::move(tls);
  to.peer_allowlist = config.replica.peer_allowlist;
  BULWARK_ASSIGN_OR_RETURN(impl->replica, replication::Replica::Start(ro, impl->store.get(), std::move(to)));
  // Reports come from any node of the account.
  std::vector<std::string> senders;
  for (const RegionConfig& r : config.geo.regions) senders.insert(senders.end(), r.peers.begin(), r.peers.end());
  for (const auto& v : voters) senders.push_back(v.address);
  impl->replica->transport()->SetRegionPeers(senders);
  Impl* raw = impl.get();
  impl->replica->set_control_handler([raw](const v1::ControlReport& r) { return raw->OnReport(r); });
  impl->replica->set_forward_handler([raw](const v1::ForwardRequest& r) { return raw->OnForward(r); });
  impl->monitor = std::thread([raw] { raw->Monitor(); });
  spdlog::info("event=control_member_started id={} address={} voters={} automatic={} reason=\"{}\"", config.control.id,
               impl->self_address, voters.size(), impl->automatic_off.empty(), impl->automatic_off);
  return std::unique_ptr<ControlMember>(new ControlMember(std::move(impl)));
}

Status ControlMember::RotateMasterKey(crypto::MasterKey next) { return impl_->store->RotateMasterKey(std::move(next)); }

void ControlMember::FillStatus(v1::ControlStatus* out) const {
  const replication::ReplicaStatus s = impl_->replica->status();
  out->set_member_id(s.node_id);
  out->set_member_role(s.role);
  out->set_member_leader(s.leader);
}

void ControlMember::Stop() {
  {
    std::lock_guard lock(impl_->stop_mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  if (impl_->monitor.joinable()) impl_->monitor.join();
  impl_->replica->Stop();
  impl_->replica.reset();
  impl_->store.reset();
}

// ---------------------------------------------------------------------------
// ControlClient.

ControlClient::ControlClient(const NodeConfig& config, replication::Transport* transport) : transport_(transport) {
  auto voters = ParseControlMembers(config.control);
  if (voters.ok()) voters_ = std::move(voters).value();  // ValidateConfig checked it
  automatic_off_ = AutomaticFailoverOff(voters_);
}

Result<v1::ControlAnswer> ControlClient::Report(v1::ControlReport report) {
  std::vector<std::string> order;
  {
    std::lock_guard lock(mu_);
    if (!last_leader_.empty()) order.push_back(last_leader_);
  }
  for (const auto& v : voters_) {
    if (!Contains(order, v.address)) order.push_back(v.address);
  }
  std::string errors;
  for (const std::string& address : order) {
    report.set_deadline_unix_ms(UnixMs(SystemClock::now() + kControlCallTimeout));
    auto a = transport_->Control(address, report);
    const std::string error = !a.ok() ? a.status().ToString() : a->error();
    if (error.empty()) {
      std::lock_guard lock(mu_);
      last_leader_ = address;
      return a;
    }
    errors += (errors.empty() ? "" : "; ") + address + ": " + error;
  }
  return Status::Unavailable("no control group voter answered (" + errors + ")");
}

}  // namespace bulwark::server
