#include "replication/replica.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "common/coding.h"
#include "replication/raft/raw_node.h"
#include "replication/raft_log_store.h"

namespace bulwark::replication {
namespace {

constexpr uint8_t kEntryFormat = 1;
// The log's size on disk is asked of RocksDB once per this many loop turns.
constexpr uint32_t kSizeCheckTurns = 256;
constexpr size_t kEntryHeaderBytes = 1 + 8 + 8;
// Leader batching: while a replication round is in flight (entries appended
// but not yet committed), new proposals wait so that the next round carries
// many of them. Every round costs an fsync on each replica and about a dozen
// peer messages, so with 64 writers one entry per round spent most of the
// CPU on messages. The wait ends when the round commits, when this many
// proposals are queued, or after the window, whichever comes first.
constexpr size_t kMaxHeldProposals = 512;
constexpr auto kBatchWindow = std::chrono::microseconds(2000);

std::string EncodeEntry(uint64_t proposer, uint64_t seq, std::string_view command) {
  std::string out;
  out.reserve(kEntryHeaderBytes + command.size());
  out.push_back(static_cast<char>(kEntryFormat));
  PutFixed64(out, proposer);
  PutFixed64(out, seq);
  out.append(command);
  return out;
}

bool DecodeEntryHeader(std::string_view& in, uint64_t& proposer, uint64_t& seq) {
  if (in.size() < kEntryHeaderBytes || static_cast<uint8_t>(in[0]) != kEntryFormat) return false;
  in.remove_prefix(1);
  return GetFixed64(in, proposer) && GetFixed64(in, seq);
}

std::string EncodeConfState(const raft::ConfState& cs) {
  std::string out;
  PutFixed32(out, static_cast<uint32_t>(cs.voters.size()));
  for (uint64_t v : cs.voters) PutFixed64(out, v);
  PutFixed32(out, static_cast<uint32_t>(cs.learners.size()));
  for (uint64_t v : cs.learners) PutFixed64(out, v);
  return out;
}

Result<raft::ConfState> DecodeConfState(std::string_view in) {
  raft::ConfState cs;
  for (auto* list : {&cs.voters, &cs.learners}) {
    uint32_t n = 0;
    if (!GetFixed32(in, n) || n > 1024) return Status::Corruption("stored membership is malformed");
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t id = 0;
      if (!GetFixed64(in, id)) return Status::Corruption("stored membership is malformed");
      list->push_back(id);
    }
  }
  return cs;
}

std::string_view RoleName(raft::StateRole r) {
  switch (r) {
    case raft::StateRole::kLeader:
      return "leader";
    case raft::StateRole::kFollower:
      return "follower";
    case raft::StateRole::kCandidate:
      return "candidate";
    case raft::StateRole::kPreCandidate:
      return "pre-candidate";
  }
  return "unknown";
}

Status Stopped(std::string_view why) {
  return Status::Unavailable("this node's replica is stopped" + (why.empty() ? "" : ": " + std::string(why)));
}

}  // namespace

struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status;            // the loop's verdict (OK once applied)
  Committed result;         // for proposals
  uint64_t read_index = 0;  // for read barriers
  void Finish(Status s) {
    std::lock_guard lock(mu);
    if (done) return;
    status = std::move(s);
    done = true;
    cv.notify_all();
  }
  Status Wait(Replica::Clock::time_point deadline) {
    std::unique_lock lock(mu);
    if (!cv.wait_until(lock, deadline, [&] { return done; })) {
      return Status::DeadlineExceeded("the request's deadline passed while it was being replicated");
    }
    return status;
  }
};

struct Replica::Impl {
  ReplicaOptions options;
  storage::DocumentStore* store = nullptr;
  std::unique_ptr<RaftLogStore> log;
  std::unique_ptr<raft::RawNode> node;
  std::unique_ptr<Transport> transport;

  // Work for the loop. GUARDED_BY(mu)
  std::mutex mu;
  std::condition_variable wake;
  std::deque<raft::Message> inbox;
  struct Proposal {
    std::string data;
    uint64_t seq = 0;
  };
  std::deque<Proposal> proposals;
  std::chrono::steady_clock::time_point oldest_proposal{};            // when proposals became non-empty
  std::deque<std::pair<std::string, std::shared_ptr<Waiter>>> reads;  // ctx -> waiter
  std::vector<uint64_t> unreachable;
  std::vector<std::pair<uint64_t, bool>> snapshot_status;
  std::vector<uint64_t> transfers;
  bool stopping = false;
  uint64_t next_seq = 1;
  // Proposals and reads the loop has handed to the core. GUARDED_BY(mu)
  std::unordered_map<uint64_t, std::shared_ptr<Waiter>> pending;
  std::unordered_map<std::string, std::shared_ptr<Waiter>> pending_reads;
  // Membership changes waiting to apply, by their encoded ConfChange.
  std::deque<std::pair<raft::ConfChange, std::shared_ptr<Waiter>>> conf_changes;  // queued for the loop
  std::vector<std::pair<std::string, std::shared_ptr<Waiter>>> pending_conf;

  // What other threads may read about the loop's state. GUARDED_BY(state_mu)
  mutable std::mutex state_mu;
  std::condition_variable applied_cv;
  uint64_t applied = 0;
  raft::SoftState soft;
  uint64_t term = 0;
  uint64_t commit = 0;
  uint64_t first_index = 0, last_index = 0;  // of the raft log
  std::string fatal;                         // set once the loop stopped on an error
  std::map<uint64_t, uint64_t> match;
  std::vector<uint64_t> voters;
  uint64_t log_syncs = 0, entries_persisted = 0, entries_applied = 0, messages_sent = 0;
  uint64_t fsyncs = 0, leader_changes = 0;  // GUARDED_BY(state_mu)
  double fsync_seconds = 0;                 // GUARDED_BY(state_mu)
  uint32_t turns_since_size_check = 0;      // loop-only

  std::mutex forward_mu;
  ForwardFn forward;                      // GUARDED_BY(forward_mu)
  RegionAppendFn region_append;           // GUARDED_BY(forward_mu)
  RegionImageFn region_image;             // GUARDED_BY(forward_mu)
  ControlFn control;                      // GUARDED_BY(forward_mu)
  std::function<uint64_t()> retention;    // GUARDED_BY(forward_mu)
  std::function<uint64_t()> epoch_stamp;  // GUARDED_BY(mu)
  // REQUIRES: mu held. An account command proposed here carries the epoch
  // its region writes at (storage::WriteCommand::geo_epoch), unless its
  // proposer stamped it already (a region taking the writes over at the
  // epoch the control group named).
  void Stamp(storage::WriteCommand& cmd) const {
    if (epoch_stamp && cmd.geo_glsn == 0 && cmd.geo_epoch == 0 && storage::IsAccountCommand(cmd.kind)) {
      cmd.geo_epoch = epoch_stamp();
    }
  }

  std::thread loop;

  void Loop();
  Status HandleReady(raft::Ready& rd);
  Status ApplyEntries(const std::vector<raft::Entry>& entries);
  // A kInstallRegionImage entry: installs the image (fetched from a member
  // if this node has none) as the state at `index`.
  Status ApplyRegionImage(uint64_t index, const storage::WriteCommand& cmd);
  bool Stopping() {
    std::lock_guard lock(mu);
    return stopping;
  }
  Status MaybeCompact();
  // Cuts the raft log through `to` (an applied index), after syncing the store.
  Status CompactLogThrough(uint64_t to, const char* reason);
  void FailAll(const Status& s);
  void PublishState();
  void SetFatal(const Status& s);
  // Points the transport at the current members: the voters and learners,
  // and anyone the address book names (a node being added).
  Status RefreshPeers();
};

Replica::Replica(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Replica::~Replica() { Stop(); }

Result<std::unique_ptr<Replica>> Replica::Start(ReplicaOptions options, storage::DocumentStore* store,
                                                TransportOptions transport_options) {
  if (options.members.count(options.node_id) == 0) {
    return Status::InvalidArgument("node " + std::to_string(options.node_id) + " is not in the member list");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->store = store;
  BULWARK_ASSIGN_OR_RETURN(impl->log, RaftLogStore::Open(store->raw_db(), store->raft_log_cf()));

  // The membership as of the applied index; a new store starts with the
  // configured members (every founding node is given the same list).
  BULWARK_ASSIGN_OR_RETURN(std::string conf_bytes, store->AppliedConfState());
  raft::ConfState cs;
  if (conf_bytes.empty()) {
    if (!options.join && impl->log->LastIndex() == 0 && impl->log->hard_state().IsEmpty()) {
      // Founding a set: the initial membership goes into the log as its
      // first entries, committed, as etcd does. Every founder writes the
      // same ones, and a node added later replays them, so it learns the
      // whole membership rather than only its own addition.
      std::vector<raft::Entry> founders;
      for (const auto& [id, addr] : options.members) {
        founders.push_back({1, founders.size() + 1, raft::EntryType::kConfChange,
                            raft::ConfChange{raft::ConfChangeType::kAddNode, id}.Encode()});
      }
      BULWARK_RETURN_IF_ERROR(
          impl->log->Persist(raft::HardState{1, raft::kNone, founders.size()}, founders, /*sync=*/true));
    }
    if (!options.join) {
      for (const auto& [id, addr] : options.members) cs.voters.push_back(id);
    }
  } else {
    BULWARK_ASSIGN_OR_RETURN(cs, DecodeConfState(conf_bytes));
    if (store->applied_index() > 0 && impl->log->LastIndex() == 0 && impl->log->hard_state().IsEmpty()) {
      // A store restored from a backup (bulwark restore) into a new replica
      // set: its state stands at the applied index, its log is empty. The
      // log restarts after that index as if compacted there (every node of
      // the new set is restored from the same backup, so all agree; term 1,
      // as the new set's history starts there). Without this, new entries
      // would be numbered from 1 and taken for ones already applied.
      const uint64_t at = store->applied_index();
      BULWARK_RETURN_IF_ERROR(impl->log->ApplySnapshot({cs, at, 1}, /*sync=*/false));
      BULWARK_RETURN_IF_ERROR(impl->log->Persist(raft::HardState{1, raft::kNone, at}, {}, /*sync=*/true));
      spdlog::info("event=log_restarted_after_restore index={}", at);
    }
  }
  impl->log->SetConfState(cs);

  raft::Config rc;
  rc.id = options.node_id;
  rc.election_timeout_ticks = options.election_ticks;
  rc.heartbeat_timeout_ticks = 1;
  // Applied entries are never re-applied; the store knows how far it got.
  // It may be ahead of the log's commit after a snapshot install, never of
  // the log itself.
  rc.applied = std::min(store->applied_index(), impl->log->LastIndex());
  rc.applied = std::max(rc.applied, impl->log->FirstIndex() - 1);
  rc.applied = std::min(rc.applied, impl->log->hard_state().commit);
  rc.check_quorum = true;
  rc.pre_vote = true;
  rc.read_only_option = raft::ReadOnlyOption::kSafe;
  rc.max_size_per_msg_bytes = 1 << 20;
  rc.max_inflight_msgs = 256;
  rc.rng_seed = options.rng_seed != 0
                    ? options.rng_seed
                    : options.node_id * 0x9E3779B97F4A7C15ULL ^
                          static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  BULWARK_ASSIGN_OR_RETURN(impl->node, raft::RawNode::Open(rc, impl->log.get()));
  impl->applied = store->applied_index();

  auto replica = std::unique_ptr<Replica>(new Replica(std::move(impl)));
  Impl& s = *replica->impl_;
  transport_options.self_id = options.node_id;
  BULWARK_ASSIGN_OR_RETURN(s.transport, Transport::Start(std::move(transport_options), replica.get()));
  s.PublishState();
  BULWARK_RETURN_IF_ERROR(s.RefreshPeers());
  spdlog::info("event=replica_started node={} voters={} applied={} first={} last={} term={}", options.node_id,
               raft::DescribeConfState(cs), s.applied, s.log->FirstIndex(), s.log->LastIndex(),
               s.log->hard_state().term);
  s.loop = std::thread([&s] { s.Loop(); });
  return replica;
}

void Replica::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping && !impl_->loop.joinable()) return;
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->loop.joinable()) impl_->loop.join();
  if (impl_->transport) impl_->transport->Stop();
  impl_->FailAll(Stopped("shutting down"));
  {
    std::lock_guard lock(impl_->state_mu);
    impl_->soft.role = raft::StateRole::kFollower;
    impl_->soft.lead = raft::kNone;
  }
  impl_->applied_cv.notify_all();
}

void Replica::set_forward_handler(ForwardFn fn) {
  std::lock_guard lock(impl_->forward_mu);
  impl_->forward = std::move(fn);
}

// ---- The raft loop -----------------------------------------------------------

void Replica::Impl::Loop() {
  auto next_tick = std::chrono::steady_clock::now() + options.tick;
  while (true) {
    std::deque<raft::Message> msgs;
    std::deque<Proposal> props;
    std::deque<std::pair<std::string, std::shared_ptr<Waiter>>> new_reads;
    std::vector<uint64_t> unreach, transfer;
    std::vector<std::pair<uint64_t, bool>> snaps;
    std::deque<std::pair<raft::ConfChange, std::shared_ptr<Waiter>>> ccs;
    const bool round_in_flight = node->raft().state() == raft::StateRole::kLeader &&
                                 node->raft().log().LastIndex() > node->raft().log().committed();
    {
      std::unique_lock lock(mu);
      auto release_props = [&] {
        return !proposals.empty() && (!round_in_flight || proposals.size() >= kMaxHeldProposals ||
                                      std::chrono::steady_clock::now() >= oldest_proposal + kBatchWindow);
      };
      auto deadline = next_tick;
      if (!proposals.empty()) deadline = std::min(deadline, oldest_proposal + kBatchWindow);
      wake.wait_until(lock, deadline, [&] {
        return stopping || !inbox.empty() || release_props() || !reads.empty() || !unreachable.empty() ||
               !snapshot_status.empty() || !transfers.empty() || !conf_changes.empty();
      });
      if (stopping) return;
      msgs.swap(inbox);
      if (release_props()) props.swap(proposals);
      new_reads.swap(reads);
      unreach.swap(unreachable);
      snaps.swap(snapshot_status);
      transfer.swap(transfers);
      ccs.swap(conf_changes);
    }
    for (auto& m : msgs) {
      const uint64_t from = m.from;
      const auto type = m.type;
      Status st = node->Step(std::move(m));
      if (st.code() == Code::kCorruption && type == raft::MessageType::kHeartbeat) {
        // The core found this node's own log broken (raft.h): stop.
        SetFatal(st);
        return;
      }
      if (!st.ok() && type != raft::MessageType::kProp) {
        spdlog::debug("event=raft_message_dropped from={} type={} error=\"{}\"", from, raft::MessageTypeName(type),
                      st.message());
      }
    }
    for (uint64_t id : unreach) node->ReportUnreachable(id);
    for (auto& [id, failed] : snaps) node->ReportSnapshot(id, failed);
    for (uint64_t id : transfer) (void)node->TransferLeader(id);
    if (!props.empty()) {
      std::vector<std::string> batch;
      batch.reserve(props.size());
      for (auto& p : props) batch.push_back(std::move(p.data));
      Status st = node->ProposeBatch(std::move(batch));
      if (!st.ok()) {
        std::vector<std::shared_ptr<Waiter>> refused;
        {
          std::lock_guard lock(mu);
          for (const auto& p : props) {
            auto it = pending.find(p.seq);
            if (it == pending.end()) continue;
            refused.push_back(std::move(it->second));
            pending.erase(it);
          }
        }
        for (auto& w : refused)
          w->Finish(st.code() == Code::kResourceExhausted ? st : Status::Unavailable(st.message()));
      }
    }
    for (auto& [cc, w] : ccs) {
      if (node->raft().log().committed() < node->raft().pending_conf_index()) {
        w->Finish(Status::FailedPrecondition("another membership change is still being applied; retry"));
        continue;
      }
      {
        std::lock_guard lock(mu);
        pending_conf.emplace_back(cc.Encode(), w);
      }
      Status st = node->ProposeConfChange(cc);
      if (!st.ok()) {
        std::lock_guard lock(mu);
        pending_conf.pop_back();
        w->Finish(Status::Unavailable("membership change refused: " + st.message()));
      }
    }
    for (auto& [ctx, w] : new_reads) {
      {
        std::lock_guard lock(mu);
        pending_reads[ctx] = w;
      }
      Status st = node->ReadIndex(ctx);
      if (!st.ok()) {
        std::lock_guard lock(mu);
        pending_reads.erase(ctx);
        w->Finish(Status::Unavailable("linearizable read refused: " + st.message()));
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_tick) {
      node->Tick();
      next_tick = now + options.tick;
    }
    while (node->HasReady()) {
      raft::Ready rd = node->GetReady();
      Status st = HandleReady(rd);
      if (!st.ok()) {
        SetFatal(st);
        return;
      }
      node->Advance(rd);
    }
    if (Status st = MaybeCompact(); !st.ok()) {
      SetFatal(st);
      return;
    }
    PublishState();
  }
}

void Replica::Impl::SetFatal(const Status& s) {
  spdlog::critical("event=replica_stopped node={} error=\"{}\" note=\"restart the node; it recovers from its log\"",
                   options.node_id, s.ToString());
  {
    std::lock_guard lock(state_mu);
    fatal = s.ToString();
    soft.role = raft::StateRole::kFollower;
    soft.lead = raft::kNone;
  }
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  FailAll(Stopped(s.ToString()));
  applied_cv.notify_all();
}

void Replica::Impl::FailAll(const Status& s) {
  std::unordered_map<uint64_t, std::shared_ptr<Waiter>> props;
  std::unordered_map<std::string, std::shared_ptr<Waiter>> rds;
  {
    std::lock_guard lock(mu);
    props.swap(pending);
    rds.swap(pending_reads);
    for (auto& [ctx, w] : reads) rds[ctx] = w;
    reads.clear();
    for (auto& [cc, w] : pending_conf) rds["conf/" + cc] = w;
    pending_conf.clear();
    for (auto& [cc, w] : conf_changes) rds["confq/" + cc.Encode()] = w;
    conf_changes.clear();
    proposals.clear();
  }
  for (auto& [_, w] : props) w->Finish(s);
  for (auto& [_, w] : rds) w->Finish(s);
}

Status Replica::Impl::HandleReady(raft::Ready& rd) {
  if (rd.soft_state) {
    const bool was_leader = soft.role == raft::StateRole::kLeader;
    {
      std::lock_guard lock(state_mu);
      if (rd.soft_state->lead != soft.lead && rd.soft_state->lead != raft::kNone) ++leader_changes;
      soft = *rd.soft_state;
    }
    if (soft.role == raft::StateRole::kLeader && !was_leader) {
      spdlog::info("event=became_leader node={} term={}", options.node_id, node->raft().term());
    }
    if (was_leader && soft.role != raft::StateRole::kLeader) {
      // Our uncommitted proposals may or may not survive under the next
      // leader: say so, and let the client retry with its request id.
      spdlog::info("event=lost_leadership node={} term={} leader={}", options.node_id, node->raft().term(), soft.lead);
      std::unordered_map<uint64_t, std::shared_ptr<Waiter>> props;
      {
        std::lock_guard lock(mu);
        props.swap(pending);
      }
      for (auto& [_, w] : props) {
        w->Finish(
            Status::Unavailable("leadership changed before the write committed; its outcome is unknown: retry "
                                "with the same request id"));
      }
    }
  }
  // 1. Persist: snapshot, then entries and hard state (one fsync).
  if (!rd.snapshot.IsEmpty()) {
    BULWARK_ASSIGN_OR_RETURN(uint64_t image_applied, store->InstallStateImage());
    BULWARK_RETURN_IF_ERROR(log->ApplySnapshot(rd.snapshot.metadata, /*sync=*/true));
    BULWARK_ASSIGN_OR_RETURN(std::string conf_bytes, store->AppliedConfState());
    raft::ConfState cs = rd.snapshot.metadata.conf_state;
    if (!conf_bytes.empty()) {
      BULWARK_ASSIGN_OR_RETURN(cs, DecodeConfState(conf_bytes));
    }
    log->SetConfState(cs);
    BULWARK_RETURN_IF_ERROR(RefreshPeers());
    spdlog::info("event=snapshot_installed node={} index={} image_applied={}", options.node_id,
                 rd.snapshot.metadata.index, image_applied);
    {
      std::lock_guard lock(state_mu);
      applied = std::max(applied, image_applied);
    }
    applied_cv.notify_all();
  }
  if (rd.hard_state || !rd.entries.empty()) {
    // Only entries, a term and a vote must be durable before messages go
    // out (etcd's MustSync). A commit index alone need not be: after a
    // crash it is learned again from the leader, and entries the store
    // already applied are skipped. Syncing it cost one fsync per
    // acknowledgement round.
    const raft::HardState& before = log->hard_state();
    const bool must_sync =
        !rd.entries.empty() ||
        (rd.hard_state && (rd.hard_state->term != before.term || rd.hard_state->vote != before.vote));
    const auto persist_start = std::chrono::steady_clock::now();
    BULWARK_RETURN_IF_ERROR(log->Persist(rd.hard_state, rd.entries, options.sync_log && must_sync));
    if (options.sync_log && must_sync) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - persist_start).count();
      std::lock_guard lock(state_mu);
      ++fsyncs;
      fsync_seconds += seconds;
    }
  }
  {
    std::lock_guard lock(state_mu);
    if (!rd.entries.empty()) ++log_syncs;
    entries_persisted += rd.entries.size();
    entries_applied += rd.committed_entries.size();
    messages_sent += rd.messages.size();
  }
  // 2. Send.
  if (!rd.messages.empty()) transport->Send(std::move(rd.messages));
  // 3. Apply, then answer reads that waited for this point.
  BULWARK_RETURN_IF_ERROR(ApplyEntries(rd.committed_entries));
  for (const auto& rs : rd.read_states) {
    std::shared_ptr<Waiter> w;
    {
      std::lock_guard lock(mu);
      auto it = pending_reads.find(rs.request_ctx);
      if (it == pending_reads.end()) continue;
      w = it->second;
      pending_reads.erase(it);
    }
    {
      std::lock_guard wl(w->mu);
      w->read_index = rs.index;
    }
    w->Finish(Status::Ok());
  }
  return Status::Ok();
}

Status Replica::Impl::ApplyEntries(const std::vector<raft::Entry>& entries) {
  if (entries.empty()) return Status::Ok();
  const uint64_t already = store->applied_index();
  for (const raft::Entry& e : entries) {
    if (e.index <= already) continue;  // applied before a restart, or inside an installed snapshot
    if (e.type == raft::EntryType::kConfChange) {
      auto cc = raft::ConfChange::Decode(e.data);
      if (!cc) return Status::Corruption("committed conf change at index " + std::to_string(e.index) + " is malformed");
      raft::ConfState cs = node->ApplyConfChange(*cc);
      BULWARK_RETURN_IF_ERROR(store->RecordApplied(e.index, EncodeConfState(cs)));
      log->SetConfState(cs);
      spdlog::info("event=membership_changed node={} index={} voters={}", options.node_id, e.index,
                   raft::DescribeConfState(cs));
      BULWARK_RETURN_IF_ERROR(RefreshPeers());
      std::shared_ptr<Waiter> w;
      {
        std::lock_guard lock(mu);
        for (auto it = pending_conf.begin(); it != pending_conf.end(); ++it) {
          if (it->first == e.data) {
            w = it->second;
            pending_conf.erase(it);
            break;
          }
        }
      }
      // The caller reads the new voters from status() when it wakes:
      // publish them first.
      PublishState();
      if (w) w->Finish(Status::Ok());
      continue;
    }
    if (e.data.empty()) continue;  // a new leader's empty entry
    std::string_view payload = e.data;
    uint64_t proposer = 0, seq = 0;
    if (!DecodeEntryHeader(payload, proposer, seq)) {
      return Status::Corruption("committed entry at index " + std::to_string(e.index) + " is malformed");
    }
    auto cmd = storage::WriteCommand::Decode(payload);
    if (!cmd.ok()) return Status(cmd.status()).WithContext("committed entry " + std::to_string(e.index));
    const bool member_change = cmd->kind == storage::WriteCommand::Kind::kSetMember;
    storage::ApplyOutcome outcome;
    if (cmd->kind == storage::WriteCommand::Kind::kInstallRegionImage) {
      BULWARK_RETURN_IF_ERROR(ApplyRegionImage(e.index, *cmd));
    } else {
      BULWARK_ASSIGN_OR_RETURN(outcome, store->Apply(e.index, std::move(cmd).value()));
    }
    if (member_change) BULWARK_RETURN_IF_ERROR(RefreshPeers());
    if (proposer == options.node_id) {
      std::shared_ptr<Waiter> w;
      {
        std::lock_guard lock(mu);
        auto it = pending.find(seq);
        if (it != pending.end()) {
          w = it->second;
          pending.erase(it);
        }
      }
      if (w) {
        {
          std::lock_guard wl(w->mu);
          w->result.index = e.index;
          w->result.outcome = std::move(outcome);
        }
        w->Finish(Status::Ok());
      }
    }
  }
  {
    std::lock_guard lock(state_mu);
    applied = std::max(applied, entries.back().index);
  }
  applied_cv.notify_all();
  return Status::Ok();
}

Status Replica::Impl::ApplyRegionImage(uint64_t index, const storage::WriteCommand& cmd) {
  const std::string& id = cmd.setting;
  // Every replica decides alike: they all hold the same state here.
  if (store->HasRegionImagePosition({cmd.geo_glsn, cmd.geo_epoch, cmd.geo_source_index})) {
    spdlog::info("event=region_image_skipped node={} index={} id={} glsn={} image_glsn={}", options.node_id, index, id,
                 store->geo_position().glsn, cmd.geo_glsn);
    return store->RecordApplied(index, {});
  }
  if (!store->RegionImagePosition(id).ok()) {
    // Fetch it from a member that has it: the one that staged it first. This
    // holds up the loop, as installing a raft snapshot does; a replica that
    // cannot get it at all stops (it catches up by raft snapshot once
    // restarted, if the log has moved past this entry by then).
    raft::HardState hs;
    raft::ConfState cs;
    BULWARK_RETURN_IF_ERROR(log->InitialState(&hs, &cs));
    std::vector<uint64_t> sources{cmd.member_id};
    for (const auto* list : {&cs.voters, &cs.learners}) {
      for (uint64_t m : *list) {
        if (m != cmd.member_id && m != options.node_id) sources.push_back(m);
      }
    }
    const auto give_up = std::chrono::steady_clock::now() + kRegionImageFetchLimit;
    auto backoff = std::chrono::milliseconds(100);
    Status last = Status::Unavailable("no member to fetch it from");
    for (size_t attempt = 0;; ++attempt) {
      if (Stopping()) return Status::Unavailable("stopped while fetching region image " + id);
      if (std::chrono::steady_clock::now() >= give_up) {
        return Status(last).WithContext("cannot fetch region image " + id + " for raft entry " + std::to_string(index));
      }
      const uint64_t from = sources[attempt % sources.size()];
      if (from == options.node_id) {
        std::this_thread::sleep_for(backoff);  // it staged the image and lost it: wait for give_up
        continue;
      }
      BULWARK_RETURN_IF_ERROR(store->BeginRegionImage(id));
      last = transport->FetchRegionImage(
          from, id, [&](std::string_view chunk) { return store->AddRegionImageChunk(id, chunk); },
          kRegionImageFetchTimeout);
      if (last.ok()) {
        auto pos = store->FinishRegionImage(id);
        last = pos.status();
        if (last.ok()) {
          spdlog::info("event=region_image_fetched node={} from={} id={}", options.node_id, from, id);
          break;
        }
      }
      spdlog::warn("event=region_image_fetch_failed node={} from={} id={} error=\"{}\"", options.node_id, from, id,
                   last.ToString());
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  }
  BULWARK_ASSIGN_OR_RETURN(storage::GeoPosition staged, store->RegionImagePosition(id));
  if (staged.glsn != cmd.geo_glsn || staged.epoch != cmd.geo_epoch || staged.source_index != cmd.geo_source_index) {
    return Status::Corruption("region image " + id + " is at GLSN " + std::to_string(staged.glsn) +
                              ", but raft entry " + std::to_string(index) + " names GLSN " +
                              std::to_string(cmd.geo_glsn));
  }
  BULWARK_ASSIGN_OR_RETURN(storage::GeoPosition pos, store->InstallRegionImage(id, index));
  spdlog::info("event=region_image_installed node={} index={} id={} glsn={} source_index={}", options.node_id, index,
               id, pos.glsn, pos.source_index);
  return Status::Ok();
}

Status Replica::Impl::MaybeCompact() {
  // A purge: the log still holds the purged container's commands (its data
  // keys among them). Cut through the applied index now, keeping nothing
  // for slow followers (they catch up by snapshot); the node's shred job
  // waits for this before it rewrites the files.
  const int64_t shred = store->max_pending_shred_index();
  if (shred > 0 && static_cast<uint64_t>(shred) >= log->FirstIndex()) {
    const uint64_t to = std::min(store->applied_index(), log->LastIndex());
    if (to >= static_cast<uint64_t>(shred)) return CompactLogThrough(to, "purge");
  }
  bool over = log->EntryCount() > options.snapshot_entries;
  if (!over && ++turns_since_size_check >= kSizeCheckTurns) {
    turns_since_size_check = 0;
    over = store->RaftLogBytes() > options.snapshot_bytes;
    // Installed region images age out between compactions too.
    if (log->FirstIndex() > 1) BULWARK_RETURN_IF_ERROR(store->DropRegionImages(log->FirstIndex() - 1));
  }
  if (!over) return Status::Ok();
  const uint64_t applied_now = store->applied_index();
  if (applied_now <= options.keep_entries) return Status::Ok();
  uint64_t to = std::min(applied_now - options.keep_entries, log->LastIndex());
  std::function<uint64_t()> keep_from;
  {
    std::lock_guard lock(forward_mu);
    keep_from = retention;
  }
  // A remote region still needs entries from keep_from on: keep them, up to
  // max_retained_entries (beyond that it needs a state image).
  if (const uint64_t wish = keep_from ? keep_from() : 0; wish > 0 && wish <= to) {
    const uint64_t floor = applied_now > options.max_retained_entries ? applied_now - options.max_retained_entries : 0;
    to = std::max(wish - 1, floor);
  }
  if (to <= log->FirstIndex()) return Status::Ok();
  return CompactLogThrough(to, "size");
}

Status Replica::Impl::CompactLogThrough(uint64_t to, const char* reason) {
  // The entries cut must be in the store durably first: a power loss would
  // otherwise leave a store behind a log that no longer has them.
  BULWARK_RETURN_IF_ERROR(store->SyncWal());
  raft::ConfState cs;
  raft::HardState hs;
  BULWARK_RETURN_IF_ERROR(log->InitialState(&hs, &cs));
  BULWARK_RETURN_IF_ERROR(log->Compact(to, cs));
  spdlog::info("event=log_compacted node={} reason={} first_index={} last_index={}", options.node_id, reason,
               log->FirstIndex(), log->LastIndex());
  // Region images whose install entries are gone are no longer fetched.
  return store->DropRegionImages(to);
}

Status Replica::Impl::RefreshPeers() {
  BULWARK_ASSIGN_OR_RETURN(auto book, store->MemberAddresses());
  raft::HardState hs;
  raft::ConfState cs;
  BULWARK_RETURN_IF_ERROR(log->InitialState(&hs, &cs));
  std::map<uint64_t, std::string> peers;
  auto address = [&](uint64_t id) -> std::string {
    auto it = book.find(id);
    if (it != book.end()) return it->second;
    auto cfg = options.members.find(id);
    return cfg == options.members.end() ? std::string() : cfg->second;
  };
  for (const auto* list : {&cs.voters, &cs.learners}) {
    for (uint64_t id : *list) {
      if (id != options.node_id && !address(id).empty()) peers[id] = address(id);
    }
  }
  for (const auto& [id, addr] : book) {
    if (id != options.node_id) peers[id] = addr;
  }
  // A joining node knows only its configuration until the leader tells it more.
  if (cs.voters.empty() && cs.learners.empty()) {
    for (const auto& [id, addr] : options.members) {
      if (id != options.node_id) peers.emplace(id, addr);
    }
  }
  transport->SetPeers(std::move(peers));
  return Status::Ok();
}

void Replica::Impl::PublishState() {
  const raft::Raft& r = node->raft();
  std::lock_guard lock(state_mu);
  term = r.term();
  commit = r.log().committed();
  first_index = log->FirstIndex();
  last_index = log->LastIndex();
  match.clear();
  voters.clear();
  for (const auto& [id, pr] : r.tracker().progress()) {
    match[id] = pr.match;
    voters.push_back(id);
  }
}

// ---- Public calls --------------------------------------------------------------

Result<Committed> Replica::Propose(storage::WriteCommand cmd, Clock::time_point deadline) {
  auto w = std::make_shared<Waiter>();
  {
    std::lock_guard state(impl_->state_mu);
    if (!impl_->fatal.empty()) return Stopped(impl_->fatal);
    if (impl_->soft.role != raft::StateRole::kLeader) {
      return Status::FailedPrecondition("this node is not the leader");
    }
  }
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return Stopped("shutting down");
    if (impl_->proposals.size() >= kMaxQueuedProposals) {
      return Status::ResourceExhausted("too many writes are waiting to be replicated; retry later");
    }
    const uint64_t seq = impl_->next_seq++;
    if (impl_->proposals.empty()) impl_->oldest_proposal = std::chrono::steady_clock::now();
    impl_->Stamp(cmd);
    impl_->proposals.push_back({EncodeEntry(impl_->options.node_id, seq, cmd.Encode()), seq});
    impl_->pending[seq] = w;
  }
  cmd.WipeKey();
  impl_->wake.notify_one();
  Status s = w->Wait(deadline);
  if (s.code() == Code::kDeadlineExceeded) {
    return Status::DeadlineExceeded(
        "the write did not commit before its deadline; its outcome is unknown: retry "
        "with the same request id");
  }
  BULWARK_RETURN_IF_ERROR(s);
  std::lock_guard wl(w->mu);
  return std::move(w->result);
}

Result<std::vector<Committed>> Replica::ProposeBatch(std::vector<storage::WriteCommand> cmds,
                                                     Clock::time_point deadline) {
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    std::lock_guard state(impl_->state_mu);
    if (!impl_->fatal.empty()) return Stopped(impl_->fatal);
    if (impl_->soft.role != raft::StateRole::kLeader) return Status::FailedPrecondition("this node is not the leader");
  }
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return Stopped("shutting down");
    if (impl_->proposals.size() + cmds.size() > kMaxQueuedProposals) {
      return Status::ResourceExhausted("too many writes are waiting to be replicated; retry later");
    }
    if (impl_->proposals.empty() && !cmds.empty()) impl_->oldest_proposal = std::chrono::steady_clock::now();
    for (storage::WriteCommand& cmd : cmds) {
      const uint64_t seq = impl_->next_seq++;
      impl_->Stamp(cmd);
      impl_->proposals.push_back({EncodeEntry(impl_->options.node_id, seq, cmd.Encode()), seq});
      auto w = std::make_shared<Waiter>();
      impl_->pending[seq] = w;
      waiters.push_back(std::move(w));
      cmd.WipeKey();
    }
  }
  impl_->wake.notify_one();
  std::vector<Committed> out;
  for (auto& w : waiters) {
    Status s = w->Wait(deadline);
    if (s.code() == Code::kDeadlineExceeded) {
      return Status::DeadlineExceeded("the batch did not commit before its deadline; its outcome is unknown");
    }
    BULWARK_RETURN_IF_ERROR(s);
    std::lock_guard wl(w->mu);
    out.push_back(std::move(w->result));
  }
  return out;
}

void Replica::set_region_append_handler(RegionAppendFn fn) {
  std::lock_guard lock(impl_->forward_mu);
  impl_->region_append = std::move(fn);
}

void Replica::set_region_image_handler(RegionImageFn fn) {
  std::lock_guard lock(impl_->forward_mu);
  impl_->region_image = std::move(fn);
}

void Replica::set_control_handler(ControlFn fn) {
  std::lock_guard lock(impl_->forward_mu);
  impl_->control = std::move(fn);
}

v1::ControlAnswer Replica::OnControl(const v1::ControlReport& report) {
  ControlFn fn;
  {
    std::lock_guard lock(impl_->forward_mu);
    fn = impl_->control;
  }
  if (!fn) return TransportHandler::OnControl(report);
  return fn(report);
}

void Replica::set_epoch_stamp(std::function<uint64_t()> fn) {
  std::lock_guard lock(impl_->mu);
  impl_->epoch_stamp = std::move(fn);
}

void Replica::set_log_retention(std::function<uint64_t()> fn) {
  std::lock_guard lock(impl_->forward_mu);
  impl_->retention = std::move(fn);
}

v1::RegionAppendResponse Replica::OnRegionAppend(const v1::RegionAppendRequest& request) {
  RegionAppendFn fn;
  {
    std::lock_guard lock(impl_->forward_mu);
    fn = impl_->region_append;
  }
  if (!fn) return TransportHandler::OnRegionAppend(request);
  return fn(request);
}

Status Replica::ReadBarrier(Clock::time_point deadline) {
  auto w = std::make_shared<Waiter>();
  {
    std::lock_guard state(impl_->state_mu);
    if (!impl_->fatal.empty()) return Stopped(impl_->fatal);
  }
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return Stopped("shutting down");
    if (impl_->reads.size() + impl_->pending_reads.size() >= kMaxQueuedProposals) {
      return Status::ResourceExhausted("too many linearizable reads are waiting; retry later");
    }
    std::string ctx(16, '\0');
    const uint64_t seq = impl_->next_seq++;
    std::memcpy(ctx.data(), &impl_->options.node_id, 8);
    std::memcpy(ctx.data() + 8, &seq, 8);
    impl_->reads.emplace_back(std::move(ctx), w);
  }
  impl_->wake.notify_one();
  Status s = w->Wait(deadline);
  if (s.code() == Code::kDeadlineExceeded) {
    return Status::Unavailable("no leader confirmed the read in time (is a quorum of the region reachable?)");
  }
  BULWARK_RETURN_IF_ERROR(s);
  uint64_t index = 0;
  {
    std::lock_guard wl(w->mu);
    index = w->read_index;
  }
  return WaitApplied(index, deadline);
}

Status Replica::WaitApplied(uint64_t index, Clock::time_point deadline) {
  std::unique_lock lock(impl_->state_mu);
  const bool ok =
      impl_->applied_cv.wait_until(lock, deadline, [&] { return impl_->applied >= index || !impl_->fatal.empty(); });
  if (!impl_->fatal.empty()) return Stopped(impl_->fatal);
  if (!ok) {
    return Status::DeadlineExceeded("this node has applied up to " + std::to_string(impl_->applied) + ", not yet " +
                                    std::to_string(index));
  }
  return Status::Ok();
}

bool EntryCommand(std::string_view data, std::string_view* command) {
  uint64_t proposer = 0, seq = 0;
  if (!DecodeEntryHeader(data, proposer, seq)) return false;
  *command = data;
  return true;
}

Status Replica::WaitGlsn(uint64_t glsn, Clock::time_point deadline) {
  std::unique_lock lock(impl_->state_mu);
  const bool ok = impl_->applied_cv.wait_until(
      lock, deadline, [&] { return impl_->store->geo_position().glsn >= glsn || !impl_->fatal.empty(); });
  if (!impl_->fatal.empty()) return Stopped(impl_->fatal);
  if (!ok) {
    return Status::DeadlineExceeded("this node has applied up to GLSN " +
                                    std::to_string(impl_->store->geo_position().glsn) + ", not yet " +
                                    std::to_string(glsn));
  }
  return Status::Ok();
}

Transport* Replica::transport() { return impl_->transport.get(); }

Result<v1::ForwardResponse> Replica::ForwardToLeader(const v1::ForwardRequest& request) {
  const uint64_t lead = leader();
  if (lead == raft::kNone) {
    return Status::Unavailable(
        "the region has no leader right now (an election is running, or a quorum is "
        "unreachable); retry");
  }
  if (lead == impl_->options.node_id) return Status::Internal("forwarding to self");
  v1::ForwardRequest copy = request;
  copy.set_from_node(impl_->options.node_id);
  return impl_->transport->Forward(lead, copy);
}

Status Replica::ChangeMembership(const raft::ConfChange& cc, Clock::time_point deadline) {
  if (!is_leader()) return Status::FailedPrecondition("this node is not the leader");
  auto w = std::make_shared<Waiter>();
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return Stopped("shutting down");
    impl_->conf_changes.emplace_back(cc, w);
  }
  impl_->wake.notify_one();
  Status s = w->Wait(deadline);
  if (s.code() == Code::kDeadlineExceeded) {
    return Status::DeadlineExceeded("the membership change did not apply before the deadline; check `bulwark status`");
  }
  return s;
}

Status Replica::TransferLeadership(uint64_t transferee) {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return Stopped("shutting down");
    impl_->transfers.push_back(transferee);
  }
  impl_->wake.notify_one();
  return Status::Ok();
}

bool Replica::is_leader() const {
  std::lock_guard lock(impl_->state_mu);
  return impl_->fatal.empty() && impl_->soft.role == raft::StateRole::kLeader;
}

uint64_t Replica::term() const {
  std::lock_guard lock(impl_->state_mu);
  return impl_->term;
}

uint64_t Replica::leader() const {
  std::lock_guard lock(impl_->state_mu);
  return impl_->fatal.empty() ? impl_->soft.lead : raft::kNone;
}

uint64_t Replica::applied_index() const {
  std::lock_guard lock(impl_->state_mu);
  return impl_->applied;
}

ReplicaStatus Replica::status() const {
  ReplicaStatus out;
  out.node_id = impl_->options.node_id;
  std::lock_guard lock(impl_->state_mu);
  out.term = impl_->term;
  out.leader = impl_->soft.lead;
  out.role = impl_->fatal.empty() ? std::string(RoleName(impl_->soft.role)) : "stopped";
  out.commit_index = impl_->commit;
  out.applied_index = impl_->applied;
  out.first_index = impl_->first_index;
  out.last_index = impl_->last_index;
  out.voters = impl_->voters;
  if (impl_->soft.role == raft::StateRole::kLeader) out.match = impl_->match;
  out.error = impl_->fatal;
  out.log_syncs = impl_->log_syncs;
  out.entries_persisted = impl_->entries_persisted;
  out.entries_applied = impl_->entries_applied;
  out.messages_sent = impl_->messages_sent;
  out.fsyncs = impl_->fsyncs;
  out.fsync_seconds = impl_->fsync_seconds;
  out.leader_changes = impl_->leader_changes;
  return out;
}

// ---- Transport callbacks ---------------------------------------------------------

void Replica::OnMessage(raft::Message m) {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    // Bounded: a flood from a peer is dropped (Raft retransmits).
    if (impl_->inbox.size() >= kMaxQueuedProposals) return;
    impl_->inbox.push_back(std::move(m));
  }
  impl_->wake.notify_one();
}

void Replica::OnUnreachable(uint64_t peer) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->unreachable.push_back(peer);
  }
  impl_->wake.notify_one();
}

void Replica::OnSnapshotStatus(uint64_t peer, bool failed) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->snapshot_status.emplace_back(peer, failed);
  }
  impl_->wake.notify_one();
  spdlog::info("event=snapshot_sent node={} to={} failed={}", impl_->options.node_id, peer, failed);
}

Status Replica::WriteSnapshot(uint64_t peer, const std::function<Status(std::string_view)>& emit) {
  spdlog::info("event=snapshot_sending node={} to={}", impl_->options.node_id, peer);
  return impl_->store->WriteStateImage(TransportLimits{}.max_snapshot_chunk_bytes, emit).status();
}

Status Replica::BeginSnapshot(uint64_t from) {
  spdlog::info("event=snapshot_receiving node={} from={}", impl_->options.node_id, from);
  return impl_->store->BeginStateImage();
}

Status Replica::SnapshotChunk(uint64_t, std::string_view chunk) { return impl_->store->AddStateImageChunk(chunk); }

Status Replica::EndSnapshot(uint64_t, bool complete) {
  return complete ? impl_->store->FinishStateImage() : impl_->store->AbortStateImage();
}

v1::RegionAppendResponse Replica::OnRegionImage(const v1::RegionImageHeader& header, const ChunkReader& next) {
  RegionImageFn fn;
  {
    std::lock_guard lock(impl_->forward_mu);
    fn = impl_->region_image;
  }
  if (!fn) return TransportHandler::OnRegionImage(header, next);
  return fn(header, next);
}

Status Replica::ServeRegionImage(const std::string& id, const std::function<Status(std::string_view)>& emit) {
  spdlog::info("event=region_image_serving node={} id={}", impl_->options.node_id, id);
  return impl_->store->WriteRegionImage(id, TransportLimits{}.max_snapshot_chunk_bytes, emit);
}

v1::ForwardResponse Replica::OnForward(uint64_t, const v1::ForwardRequest& request) {
  ForwardFn fn;
  {
    std::lock_guard lock(impl_->forward_mu);
    fn = impl_->forward;
  }
  if (!fn) {
    v1::ForwardResponse r;
    r.set_code(14);  // UNAVAILABLE
    r.set_message("this node is not ready to serve forwarded requests");
    return r;
  }
  return fn(request);
}

}  // namespace bulwark::replication
