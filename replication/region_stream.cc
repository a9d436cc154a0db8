#include "replication/region_stream.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "bulwark/v1/peer.pb.h"
#include "replication/raft_log_store.h"
#include "replication/replica.h"
#include "replication/transport.h"
#include "storage/commands.h"
#include "storage/document_store.h"

namespace bulwark::replication {
namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t UnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

struct RegionShipper::Impl {
  RegionStreamOptions options;
  Replica* replica = nullptr;
  storage::DocumentStore* store = nullptr;

  struct Remote {
    RemoteRegion config;
    // GUARDED_BY(mu)
    bool known = false;  // acked_* hold the region's answer since this node led
    uint64_t acked_glsn = 0;
    uint64_t acked_source = 0;
    uint64_t acked_epoch = 0;  // the epoch its acked GLSN was written at
    size_t target = 0;         // index into config.peers, or leader_address if set
    std::string leader_address;
    SteadyClock::time_point last_ack{};
    SteadyClock::time_point last_send{};
    SteadyClock::time_point caught_up{};  // last time acked >= our head at send
    std::chrono::system_clock::time_point lease_granted_until{};
    bool in_set = false;     // configured in the strong quorum set (fixed)
    bool in_quorum = false;  // in the set as run now (dynamic quorum)
    // In the set, but granted no lease (and not listed to it) until it has
    // acknowledged lease_from: every write this node could have seen
    // acknowledged without it (by another leader, or before it rejoined).
    // Strong writes wait for it meanwhile.
    bool leasable = false;
    uint64_t lead_commit = 0;  // this node's commit index when it began to lead
    std::optional<uint64_t> lease_from;
    bool needs_image = false;
    bool retired = false;  // a removed region, done with
    // A removed region: nothing past this GLSN (the change that removed it).
    uint64_t retire_at = 0;
    // While an image is on its way: the log must keep what follows it.
    uint64_t image_from = 0;
    SteadyClock::time_point next_image{};  // no new image attempt before
    uint64_t LagWrites(uint64_t head) const { return head > acked_glsn ? head - acked_glsn : 0; }
    std::string error;
  };
  std::vector<Remote> remotes;
  bool self_in_quorum = false;
  size_t configured_set = 0;  // regions configured in the strong quorum set, this one included

  mutable std::mutex mu;
  std::condition_variable changed;  // an ack arrived, or the quorum set changed
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  SteadyClock::time_point started{};
  // Where options.epoch began in this node's log (read at Start: the change
  // was applied before the stream that follows it starts). nullopt: here
  // from an image, or never raised (epoch 1).
  std::optional<storage::DocumentStore::EpochStart> epoch_start;

  void Run(size_t r);
  // One message to region r: a batch (possibly empty), or a state image if
  // the region is behind what the log holds. False on failure.
  bool SendOnce(size_t r, SteadyClock::time_point now);
  Result<v1::RegionAppendResponse> SendImage(size_t r, const std::string& address, uint64_t head_glsn);
  // Adds the account commands of `entries` that took a GLSN here to the
  // batch, numbered from from_glsn + 1, up to last_glsn (0: no limit).
  // Corruption for an entry that does not decode. Stops after a regions
  // change that removes `region` or moves the write region away from this
  // one (its GLSN in *ends_at), so a removed region never gets a write from
  // after it, and an old write region's stream ends at the failover.
  // *removed: the change removed `region` (else it moved the write region).
  Status AddEntries(const std::vector<raft::Entry>& entries, uint64_t from_glsn, uint64_t epoch, uint64_t last_glsn,
                    const std::string& region, v1::RegionAppendRequest* req, uint64_t* ends_at, bool* removed) const;
  // Where region r's next batch starts in this node's log, for a region whose
  // position was written at an older epoch (by another write region: its
  // source index is not ours). Sets *image if only an image can bring it on;
  // false (with the reason in *wait) while the old write region may still
  // be streaming the rest of its epoch to it.
  bool MapOlderEpoch(uint64_t glsn, uint64_t glsn_epoch, uint64_t* source, bool* image, std::string* wait) const;
  void UpdateQuorum(SteadyClock::time_point now);  // REQUIRES: mu held
  uint64_t CommittedLocked() const;                // REQUIRES: mu held
  // REQUIRES: mu held. How far the region holds this stream's history: its
  // acknowledged GLSN, but a position written at an older epoch counts only
  // up to where this epoch began. Past that it is another write region's
  // history (a cut-off old write region's unshipped writes, which the
  // conflict feed takes when an image replaces them), whatever the number.
  uint64_t HeldGlsn(const Remote& r) const;
  std::vector<std::string> QuorumLocked() const;  // REQUIRES: mu held
  std::vector<std::string> ListedLocked() const;  // the set as told to the regions; REQUIRES: mu held
  // A node beginning to lead (term `term`): drop whatever this node's stream
  // decided about region r while another node led. REQUIRES: mu held.
  void ResetForLeadership(Remote& remote) const;
  uint64_t start_term = 0;     // the term this node led in at Start, if it carried state (else 0)
  uint64_t takeover_term = 0;  // options.outside_set: the term this node led in at Start
};

RegionShipper::RegionShipper(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RegionShipper::~RegionShipper() { Stop(); }

Result<std::unique_ptr<RegionShipper>> RegionShipper::Start(RegionStreamOptions options, Replica* replica,
                                                            storage::DocumentStore* store) {
  if (options.removal_after <= options.request_timeout + options.lease) {
    return Status::InvalidArgument("geo: the quorum removal delay must exceed the request timeout plus the lease");
  }
  for (const RemoteRegion& r : options.remotes) {
    if (r.peers.empty()) return Status::InvalidArgument("geo: region " + r.name + " lists no peer addresses");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->started = SteadyClock::now();
  if (auto start = store->EpochStartOf(impl->options.epoch); start.ok()) impl->epoch_start = *start;

  impl->replica = replica;
  impl->store = store;
  const auto& strong = impl->options.strong_regions;
  auto in_set = [&](const std::string& name) { return std::find(strong.begin(), strong.end(), name) != strong.end(); };
  impl->self_in_quorum = in_set(impl->options.self_region);
  // The region taken over from starts outside the set only on the node that
  // leads now (and while it leads in this term). A node that leads later
  // starts from the set as configured: the region may hold a lease that
  // node's predecessor granted once it had caught up again, and until this
  // node's stream notices its leadership (ResetForLeadership) a Strong write
  // it commits must wait for that region. (Found by the cutoff chaos smoke:
  // r1 served a stale Strong read after r2's leader was killed.)
  if (!impl->options.outside_set.empty() && replica->is_leader()) impl->takeover_term = replica->term();
  impl->configured_set = impl->self_in_quorum ? 1 : 0;
  const auto now = SteadyClock::now();
  for (const RemoteRegion& r : impl->options.remotes) {
    Impl::Remote remote;
    remote.config = r;
    remote.in_set = r.retire_at_glsn == 0 && in_set(r.name);
    remote.retire_at = r.retire_at_glsn;
    remote.in_quorum = remote.in_set && !(r.name == impl->options.outside_set && impl->takeover_term != 0);
    if (impl->options.restart) {
      auto carried = impl->options.carried.find(r.name);
      remote.in_quorum = remote.in_set && carried != impl->options.carried.end() && carried->second.in_quorum;
      if (carried != impl->options.carried.end()) {
        remote.lease_granted_until = carried->second.lease_granted_until;
        remote.leasable = remote.in_quorum && carried->second.leasable;
      }
    }
    impl->configured_set += remote.in_set ? 1 : 0;
    remote.last_ack = now;  // a grace period from start before removal
    remote.caught_up = now;
    impl->remotes.push_back(std::move(remote));
  }
  // State carried from this node's previous stream holds only while this
  // node still leads in the same term.
  if (impl->options.restart && replica->is_leader()) impl->start_term = replica->term();
  Impl* raw = impl.get();
  for (size_t i = 0; i < raw->remotes.size(); ++i) raw->threads.emplace_back([raw, i] { raw->Run(i); });
  return std::unique_ptr<RegionShipper>(new RegionShipper(std::move(impl)));
}

void RegionShipper::Stop() {
  if (impl_->stop.exchange(true)) return;
  impl_->changed.notify_all();
  for (auto& t : impl_->threads) t.join();
}

void RegionShipper::Impl::ResetForLeadership(Remote& remote) const {
  // Whatever this node's stream decided about the quorum set while another
  // node led is stale, and that node may have acknowledged Strong writes
  // without the region (it was dropped) or granted it a lease. Start from the
  // set as configured (a silent region is dropped again after
  // removal_after), and lease nothing until the region has everything this
  // node's log had committed when it began to lead.
  remote.in_quorum = remote.in_set && !(remote.config.name == options.outside_set && takeover_term != 0 &&
                                        replica->term() == takeover_term);
  remote.leasable = false;
  remote.lease_from.reset();
  remote.lead_commit = replica->status().commit_index;
  remote.last_ack = SteadyClock::now();
  remote.caught_up = remote.last_ack;
}

void RegionShipper::Impl::Run(size_t r) {
  SteadyClock::time_point last_message{};
  bool was_leader = false;
  uint64_t lead_term = 0;
  std::optional<SteadyClock::time_point> retire_by;
  while (!stop.load()) {
    {
      std::lock_guard lock(mu);
      Remote& remote = remotes[r];
      if (remote.retire_at > 0 && !retire_by && !remote.config.retire_only_once_acked) {
        retire_by = SteadyClock::now() + options.retire_within;
      }
      const bool has_it = remote.retire_at > 0 && remote.known && remote.acked_glsn >= remote.retire_at;
      if (has_it || (retire_by && SteadyClock::now() >= *retire_by)) {
        remote.retired = true;
        spdlog::info("event=region_retired region={} acked_glsn={} had_the_change={}", remote.config.name,
                     remote.acked_glsn, has_it);
        return;
      }
    }
    if (!replica->is_leader()) {
      if (was_leader) {
        std::lock_guard lock(mu);
        remotes[r].known = false;  // another node ships now; learn the position afresh next time
      }
      was_leader = false;
      std::this_thread::sleep_for(options.heartbeat);
      continue;
    }
    const uint64_t term = replica->term();
    if (!was_leader || term != lead_term) {
      const bool carried = lead_term == 0 && term == start_term && start_term != 0;
      if (!carried) {
        std::lock_guard lock(mu);
        ResetForLeadership(remotes[r]);
      }
      lead_term = term;
    }
    was_leader = true;
    const auto now = SteadyClock::now();
    bool behind = false;
    {
      std::lock_guard lock(mu);
      const Remote& remote = remotes[r];
      // A draining or retiring region is behind until it has its last GLSN.
      const uint64_t head = store->geo_position().glsn;
      const uint64_t until = remote.retire_at > 0 ? std::min(remote.retire_at, head) : head;
      behind = remote.known && remote.acked_glsn < until && !remote.needs_image;
    }
    if (behind || now - last_message >= options.heartbeat) {
      const bool ok = SendOnce(r, now);
      last_message = now;
      if (!ok) std::this_thread::sleep_for(options.heartbeat);
      continue;
    }
    // Nothing to send: wake on the next applied entry, or at the next heartbeat.
    (void)replica->WaitApplied(store->applied_index() + 1, std::chrono::system_clock::now() + options.heartbeat);
  }
}

bool RegionShipper::Impl::SendOnce(size_t r, SteadyClock::time_point now) {
  v1::RegionAppendRequest req;
  std::string address;
  uint64_t from_glsn = 0, from_source = 0;
  uint64_t from_epoch = 0;
  bool known = false;
  std::chrono::milliseconds delay{0};
  {
    std::lock_guard lock(mu);
    Remote& remote = remotes[r];
    address = !remote.leader_address.empty() ? remote.leader_address
                                             : remote.config.peers[remote.target % remote.config.peers.size()];
    known = remote.known;
    from_glsn = remote.acked_glsn;
    from_source = remote.acked_source;
    from_epoch = remote.acked_epoch;
    delay = remote.config.link_delay;
    req.set_committed_glsn(CommittedLocked());
    for (const std::string& q : ListedLocked()) req.add_strong_regions(q);
    remote.last_send = now;
    // A region silent for long is no longer granted a lease, so that every
    // lease it holds has ended by the time it is dropped from the set.
    if (remote.in_quorum && remote.leasable && now - remote.last_ack < options.removal_after - options.lease) {
      remote.lease_granted_until = std::chrono::system_clock::now() + options.lease;
      req.set_lease_until_unix_ms(UnixMs(remote.lease_granted_until));
    }
  }
  req.set_from_region(options.self_region);
  req.set_to_region(remotes[r].config.name);
  req.set_epoch(remotes[r].config.stream_epoch != 0 ? remotes[r].config.stream_epoch : options.epoch);
  // Read the applied index before the head: every entry up to it is applied,
  // so its GLSN is at most the head read after.
  const uint64_t applied = store->applied_index();
  const storage::GeoPosition head = store->geo_position();
  req.set_head_glsn(head.glsn);
  {
    // Once this node has applied what it had committed when it began to
    // lead, its head covers every write acknowledged before: the region is
    // leased again once it has that.
    std::lock_guard lock(mu);
    Remote& remote = remotes[r];
    if (!remote.leasable && !remote.lease_from && applied >= remote.lead_commit) remote.lease_from = head.glsn;
  }
  // A removed region gets nothing past the change that removed it.
  uint64_t retire_at = 0;
  {
    std::lock_guard lock(mu);
    retire_at = remotes[r].retire_at;
  }
  if (retire_at > 0 && head.glsn > retire_at) req.set_head_glsn(retire_at);
  uint64_t removed_at = 0;
  bool removed = false;
  bool image = false;
  // Waiting for the old write region to bring the region to this epoch:
  // only a heartbeat, to learn its position.
  std::string hold;
  if (known && from_epoch < options.epoch) (void)MapOlderEpoch(from_glsn, from_epoch, &from_source, &image, &hold);
  if (known && !image && hold.empty() && from_glsn < req.head_glsn()) {
    auto entries =
        ReadStoredEntries(store->raw_db(), store->raft_log_cf(), from_source + 1, applied + 1, kMaxRegionBatchBytes);
    if (entries.status().code() == Code::kNotFound) {
      image = true;  // the log no longer holds the region's position
    } else if (!entries.ok()) {
      std::lock_guard lock(mu);
      remotes[r].error = entries.status().ToString();
      spdlog::warn("event=region_stream_stalled region={} glsn={} error=\"{}\"", remotes[r].config.name, from_glsn,
                   remotes[r].error);
      return false;
    } else if (Status built = AddEntries(*entries, from_glsn, head.epoch, retire_at, remotes[r].config.name, &req,
                                         &removed_at, &removed);
               !built.ok()) {
      std::lock_guard lock(mu);
      remotes[r].error = built.ToString();
      spdlog::error("event=region_stream_stalled region={} error=\"{}\"", remotes[r].config.name, remotes[r].error);
      return false;
    }
  }
  if (removed_at > 0) {
    std::lock_guard lock(mu);
    Remote& remote = remotes[r];
    if (remote.retire_at == 0 || removed_at < remote.retire_at) remote.retire_at = removed_at;
    if (removed) {
      remote.in_set = false;
      remote.in_quorum = false;
    }
    // A write-region move keeps the region in the quorum set until it has
    // the change: a Strong write just before it still waits for it.
    spdlog::info("event=region_stream_ends region={} glsn={}", remote.config.name, removed_at);
  }
  if (image && retire_at > 0) {
    // An image would carry what came after its removal.
    std::lock_guard lock(mu);
    remotes[r].error = "a removed region behind the log gets no image";
    return false;
  }
  if (image) {
    std::lock_guard lock(mu);
    Remote& remote = remotes[r];
    remote.needs_image = true;
    if (now < remote.next_image) return false;
    remote.next_image = now + options.image_retry;
    if (epoch_start && from_epoch < options.epoch &&
        (from_glsn > epoch_start->glsn || (epoch_start->takeover && from_glsn == epoch_start->glsn))) {
      spdlog::warn(
          "event=region_diverged region={} glsn={} epoch_began={} epoch={} note=\"it holds writes of epoch {} this "
          "region never had: they go to its conflict feed when the image installs\"",
          remote.config.name, from_glsn, epoch_start->glsn, options.epoch, from_epoch);
    }
    remote.image_from = applied + 1;
  }
  const auto deadline = std::chrono::system_clock::now() + options.request_timeout + 2 * delay;
  req.set_deadline_unix_ms(UnixMs(deadline));
  if (delay.count() > 0) std::this_thread::sleep_for(delay);
  auto resp = image ? SendImage(r, address, head.glsn) : replica->transport()->RegionAppend(address, req);
  if (delay.count() > 0) std::this_thread::sleep_for(delay);
  const auto answered = SteadyClock::now();
  std::lock_guard lock(mu);
  Remote& remote = remotes[r];
  remote.image_from = 0;
  if (!resp.ok()) {
    remote.error = resp.status().ToString();
    remote.leader_address.clear();
    ++remote.target;
    remote.known = false;
    UpdateQuorum(answered);
    return false;
  }
  if (!resp->leader()) {
    // The answer names the leader by its Raft peer address; dial it at the
    // address this region was configured with for that host instead, so a
    // proxy, tunnel or other address in front of the region's nodes stays
    // on the path (the chaos WAN proxies are one).
    remote.leader_address = resp->leader_address();
    if (!remote.leader_address.empty()) {
      const std::string host = HostOf(remote.leader_address);
      for (const std::string& p : remote.config.peers) {
        if (HostOf(p) == host) remote.leader_address = p;
      }
    }
    if (remote.leader_address.empty()) ++remote.target;
    remote.known = false;
    remote.error = "region " + remote.config.name + " has no leader at " + address;
    if (image) remote.next_image = {};  // try its leader at once
    return false;
  }
  if (resp->account_epoch() > options.epoch) {
    remote.error = "region " + remote.config.name + " is at epoch " + std::to_string(resp->account_epoch()) +
                   ": this stream's epoch " + std::to_string(options.epoch) + " ended";
  } else if (!resp->error().empty()) {
    remote.error = resp->error();
  } else {
    remote.error.clear();
  }
  remote.leader_address = address;
  if (!remote.known || resp->applied_glsn() != remote.acked_glsn) remote.needs_image = false;
  remote.known = true;
  remote.acked_glsn = resp->applied_glsn();
  remote.acked_source = resp->source_index();
  remote.acked_epoch = resp->epoch();
  if (remote.in_quorum && !remote.leasable && remote.lease_from && HeldGlsn(remote) >= *remote.lease_from) {
    remote.leasable = true;
  }
  remote.last_ack = answered;
  if (HeldGlsn(remote) >= head.glsn) remote.caught_up = answered;
  if (!hold.empty()) remote.error = hold;
  UpdateQuorum(answered);
  changed.notify_all();
  return remote.error.empty();
}

bool RegionShipper::Impl::MapOlderEpoch(uint64_t glsn, uint64_t glsn_epoch, uint64_t* source, bool* image,
                                        std::string* wait) const {
  if (!epoch_start) {  // the state came from an image since: nothing to map to
    *image = true;
    return true;
  }
  const uint64_t began = epoch_start->glsn;
  // Only a region of the epoch just before this one can share this
  // region's history up to where it began: after two moves of the write
  // region, a region at the same GLSN may hold another history.
  if (glsn_epoch + 1 != options.epoch) {
    *image = true;
    return true;
  }
  if (glsn == began && !epoch_start->takeover) {
    *source = epoch_start->index;  // the change that began the epoch, here
    return true;
  }
  if (epoch_start->takeover && glsn + 1 == began) {
    // Everything this region had when it took over, and nothing else: the
    // stream starts at the takeover (the entries before it in this log are
    // of the old epoch, which the stream skips).
    *source = epoch_start->index - 1;
    return true;
  }
  // No old write region brings a region on after a takeover.
  if (glsn < began && !epoch_start->takeover && SteadyClock::now() - started < options.drain_wait) {
    *wait = "waiting for the old write region to stream it the rest of epoch " + std::to_string(options.epoch - 1) +
            " (it is at GLSN " + std::to_string(glsn) + ", epoch " + std::to_string(options.epoch) + " began at GLSN " +
            std::to_string(began) + ")";
    return false;
  }
  // Behind, and the old write region did not bring it on; or ahead: it
  // holds writes of an older epoch that this region never had (logged when
  // the image goes).
  *image = true;
  return true;
}

Status RegionShipper::Impl::AddEntries(const std::vector<raft::Entry>& entries, uint64_t from_glsn, uint64_t epoch,
                                       uint64_t last_glsn, const std::string& region, v1::RegionAppendRequest* req,
                                       uint64_t* ends_at, bool* removed) const {
  uint64_t glsn = from_glsn;
  for (const auto& e : entries) {
    if (last_glsn > 0 && glsn >= last_glsn) break;
    if (e.type != raft::EntryType::kNormal || e.data.empty()) continue;
    std::string_view bytes;
    if (!EntryCommand(e.data, &bytes))
      return Status::Corruption("raft entry " + std::to_string(e.index) + " is malformed");
    auto cmd = storage::WriteCommand::Decode(bytes);
    if (!cmd.ok()) return cmd.status();
    if (!storage::IsAccountCommand(cmd->kind)) continue;
    // What took no GLSN here: a repeat of a command shipped from an earlier
    // write region, and a write the store refused as fenced (stamped with
    // an epoch this region did not write at). Apply decides the same way.
    if (cmd->geo_glsn != 0) continue;
    if (cmd->geo_epoch != 0 && cmd->geo_epoch != options.epoch) continue;
    ++glsn;
    cmd->geo_glsn = glsn;
    if (cmd->geo_epoch == 0) cmd->geo_epoch = epoch;
    cmd->geo_source_index = e.index;
    v1::RegionEntry* out = req->add_entries();
    out->set_glsn(glsn);
    out->set_source_index(e.index);
    // Geo-fencing: a region outside the command's fence gets its position
    // and fence only (storage/fence.h).
    out->set_command(storage::FenceAllows(cmd->fence, region) ? cmd->Encode()
                                                              : storage::FencedOutPlaceholder(*cmd).Encode());
    cmd->WipeKey();
    if (cmd->kind == storage::WriteCommand::Kind::kSetRegions) {
      // Decided here, not when this node puts the change in force (up to a
      // poll later): a region it removes gets it, and nothing after it.
      auto names = storage::DocumentStore::RegionNames(cmd->setting);
      const auto writer = storage::DocumentStore::RegionsWriterOf(cmd->setting);
      *removed = names.ok() && names->count(region) == 0;
      if (*removed || (!writer.write.empty() && writer.write != options.self_region)) {
        *ends_at = glsn;
        break;
      }
    }
    if (static_cast<size_t>(req->entries_size()) >= kMaxRegionBatchEntries) break;
  }
  return Status::Ok();
}

Result<v1::RegionAppendResponse> RegionShipper::Impl::SendImage(size_t r, const std::string& address,
                                                                uint64_t head_glsn) {
  const std::string& region = remotes[r].config.name;  // fixed after Start
  v1::RegionImageHeader header;
  header.set_from_region(options.self_region);
  header.set_to_region(region);
  header.set_epoch(options.epoch);
  header.set_head_glsn(head_glsn);
  header.set_deadline_unix_ms(UnixMs(std::chrono::system_clock::now() + options.image_timeout));
  spdlog::info("event=region_image_sending region={} to={} head_glsn={}", region, address, head_glsn);
  const auto start = SteadyClock::now();
  uint64_t bytes = 0, image_index = 0;
  auto resp = replica->transport()->SendRegionImage(address, header, [&](const Transport::ChunkSink& sink) {
    auto written = store->WriteStateImage(
        TransportLimits{}.max_snapshot_chunk_bytes,
        [&](std::string_view chunk) {
          bytes += chunk.size();
          return stop.load() ? Status::Unavailable("shutting down") : sink(chunk);
        },
        /*region_image=*/true, /*fenced_for=*/&region);
    if (written.ok()) image_index = *written;
    return written.status();
  });
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  if (!resp.ok()) {
    spdlog::warn("event=region_image_failed region={} to={} bytes={} seconds={:.1f} error=\"{}\"", region, address,
                 bytes, seconds, resp.status().ToString());
  } else {
    spdlog::info("event=region_image_sent region={} to={} index={} bytes={} seconds={:.1f} glsn={} error=\"{}\"",
                 region, address, image_index, bytes, seconds, resp->applied_glsn(), resp->error());
  }
  return resp;
}

// A region outside the strong quorum set is let back in once it is this
// close to the head (see UpdateQuorum).
constexpr uint64_t kReadmitLagWrites = 200;

void RegionShipper::Impl::UpdateQuorum(SteadyClock::time_point now) {
  const size_t configured = configured_set;
  size_t members = self_in_quorum ? 1 : 0;
  for (const Remote& r : remotes) members += r.in_quorum ? 1 : 0;
  const uint64_t head = store->geo_position().glsn;
  for (Remote& r : remotes) {
    if (!r.in_set) continue;
    if (r.in_quorum && now - r.last_ack > options.removal_after &&
        std::chrono::system_clock::now() > r.lease_granted_until) {
      // Dynamic quorum: only with three or more regions, and never below a
      // majority of the configured set.
      if (configured >= 3 && (members - 1) * 2 > configured) {
        r.in_quorum = false;
        --members;
        spdlog::warn("event=region_quorum_removed region={} silent_ms={}", r.config.name,
                     std::chrono::duration_cast<std::chrono::milliseconds>(now - r.last_ack).count());
        changed.notify_all();
      }
    } else if (!r.in_quorum && r.known && now - r.last_ack < options.heartbeat * 5 &&
               HeldGlsn(r) + kReadmitLagWrites >= head) {
      // Close enough: under a steady load a region that catches up is
      // always a few writes behind the head, and would never be let back
      // in if it had to be at it. From now on every Strong write waits for
      // it; it is leased again (serves Strong reads) only once it has the
      // head as of now, which covers every write acknowledged without it.
      r.in_quorum = true;
      r.leasable = false;
      r.lease_from = head;
      ++members;
      spdlog::info("event=region_quorum_added region={} glsn={}", r.config.name, r.acked_glsn);
      changed.notify_all();
    }
  }
}

uint64_t RegionShipper::Impl::CommittedLocked() const {
  uint64_t committed = store->geo_position().glsn;
  for (const Remote& r : remotes) {
    if (!r.in_quorum) continue;
    committed = std::min(committed, HeldGlsn(r));
  }
  return committed;
}

uint64_t RegionShipper::Impl::HeldGlsn(const Remote& r) const {
  if (!r.known) return 0;
  const uint64_t stream_epoch = r.config.stream_epoch != 0 ? r.config.stream_epoch : options.epoch;
  // The same epoch, a later one (it moved on past this stream), a drain of
  // an older epoch, or an epoch that never changed: one history.
  if (r.acked_epoch >= stream_epoch || stream_epoch != options.epoch || !epoch_start) return r.acked_glsn;
  if (r.acked_epoch + 1 < stream_epoch) return 0;  // two moves behind: no shared history known
  // Found by the chaos sweep (cutoff, append, Strong): an old write region
  // back from a cutoff reported its own epoch's GLSN, past this region's
  // head, and was let back into the strong set, leased, and served a Strong
  // read without the writes acknowledged since the takeover.
  const uint64_t shared = epoch_start->takeover ? epoch_start->glsn - 1 : epoch_start->glsn;
  return std::min(r.acked_glsn, shared);
}

std::vector<std::string> RegionShipper::Impl::ListedLocked() const {
  std::vector<std::string> out;
  if (self_in_quorum) out.push_back(options.self_region);
  for (const Remote& r : remotes) {
    if (r.in_quorum && r.leasable) out.push_back(r.config.name);
  }
  return out;
}

std::vector<std::string> RegionShipper::Impl::QuorumLocked() const {
  std::vector<std::string> out;
  if (self_in_quorum) out.push_back(options.self_region);
  for (const Remote& r : remotes) {
    if (r.in_quorum) out.push_back(r.config.name);
  }
  return out;
}

Status RegionShipper::WaitQuorum(uint64_t glsn, std::chrono::system_clock::time_point deadline) {
  std::unique_lock lock(impl_->mu);
  // The removal of a silent region is decided on acks and on this clock:
  // wake regularly so a dead region's removal is noticed here too.
  while (impl_->CommittedLocked() < glsn) {
    if (impl_->stop.load()) {
      return Status::Unavailable(
          "the region stream stopped (a topology change or shutdown); the write committed in this region, its "
          "outcome across regions is unknown: retry with the same request id");
    }
    if (std::chrono::system_clock::now() >= deadline) {
      return Status::DeadlineExceeded(
          "the write committed in this region, but not yet in every region of the strong "
          "quorum set; its outcome is unknown: retry with the same request id");
    }
    impl_->changed.wait_for(lock, impl_->options.heartbeat);
    impl_->UpdateQuorum(SteadyClock::now());
  }
  return Status::Ok();
}

Status RegionShipper::ThrottleForBound(uint64_t max_writes, std::chrono::milliseconds max_lag,
                                       std::chrono::system_clock::time_point deadline) {
  std::unique_lock lock(impl_->mu);
  for (;;) {
    const auto now = SteadyClock::now();
    const uint64_t head = impl_->store->geo_position().glsn;
    std::string over;
    for (const auto& r : impl_->remotes) {
      if (now - r.last_ack > impl_->options.removal_after) continue;  // disconnected: not held to the bound
      if (r.retire_at > 0) continue;                                  // removed from the account
      const uint64_t lag = r.LagWrites(head);
      if (lag >= max_writes || (lag > 0 && now - r.caught_up >= max_lag)) {
        over = r.config.name + " is " + std::to_string(lag) + " writes behind";
        break;
      }
    }
    if (over.empty()) return Status::Ok();
    if (impl_->stop.load()) return Status::Unavailable("shutting down");
    if (std::chrono::system_clock::now() >= deadline) {
      return Status::ResourceExhausted("write throttled: region " + over +
                                       ", at the BoundedStaleness bound; retry later");
    }
    impl_->changed.wait_for(lock, std::chrono::milliseconds(10));
  }
}

uint64_t RegionShipper::committed_glsn() const {
  std::lock_guard lock(impl_->mu);
  return impl_->CommittedLocked();
}

std::vector<std::string> RegionShipper::quorum() const {
  std::lock_guard lock(impl_->mu);
  return impl_->QuorumLocked();
}

std::vector<RegionLag> RegionShipper::Lags() const {
  std::lock_guard lock(impl_->mu);
  const auto now = SteadyClock::now();
  const uint64_t head = impl_->store->geo_position().glsn;
  std::vector<RegionLag> out;
  for (const auto& r : impl_->remotes) {
    if (r.retired) continue;
    RegionLag l;
    l.name = r.config.name;
    l.connected = r.known && now - r.last_ack <= impl_->options.removal_after;
    l.in_quorum = r.in_quorum;
    l.acked_glsn = r.acked_glsn;
    l.lag_writes = r.LagWrites(head);
    l.lag_seconds = l.lag_writes == 0 ? 0 : std::chrono::duration<double>(now - r.caught_up).count();
    l.needs_image = r.needs_image;
    l.leader = r.leader_address;
    l.error = r.error;
    out.push_back(std::move(l));
  }
  return out;
}

std::map<std::string, QuorumState> RegionShipper::QuorumStates() const {
  std::lock_guard lock(impl_->mu);
  std::map<std::string, QuorumState> out;
  for (const auto& r : impl_->remotes) out[r.config.name] = {r.in_quorum, r.lease_granted_until, r.leasable};
  return out;
}

std::vector<RemoteRegion> RegionShipper::Retiring() const {
  std::lock_guard lock(impl_->mu);
  std::vector<RemoteRegion> out;
  for (const auto& r : impl_->remotes) {
    if (r.retire_at == 0 || r.retired) continue;
    RemoteRegion copy = r.config;
    copy.retire_at_glsn = r.retire_at;
    if (copy.stream_epoch == 0) copy.stream_epoch = impl_->options.epoch;
    out.push_back(std::move(copy));
  }
  return out;
}

uint64_t RegionShipper::RetainFrom() const {
  std::lock_guard lock(impl_->mu);
  uint64_t from = 0;
  for (const auto& r : impl_->remotes) {
    if (r.retired) continue;
    if (r.image_from > 0) {
      from = from == 0 ? r.image_from : std::min(from, r.image_from);
      continue;
    }
    if (r.acked_source == 0 && !r.known) continue;
    uint64_t source = r.acked_source;
    if (r.acked_epoch < impl_->options.epoch) {
      // Written by an older write region: its source index is not ours.
      if (!impl_->epoch_start || r.acked_epoch + 1 != impl_->options.epoch) continue;
      const auto& start = *impl_->epoch_start;
      if (!start.takeover && r.acked_glsn == start.glsn) {
        source = start.index;
      } else if (start.takeover && r.acked_glsn + 1 == start.glsn) {
        source = start.index - 1;  // streamed from the takeover itself
      } else {
        continue;
      }
    }
    from = from == 0 ? source + 1 : std::min(from, source + 1);
  }
  return from;
}

}  // namespace bulwark::replication
