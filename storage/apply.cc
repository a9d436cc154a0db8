// DocumentStore::Apply: runs one WriteCommand under the right locks, with
// request-id deduplication and the applied raft index in the same batch.
#include <mutex>
#include <optional>
#include <shared_mutex>

#include "common/coding.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

// Expired dedup records removed per applied command: enough to keep up with
// any write rate (each command adds at most one), small enough to be cheap.
constexpr int kDedupExpiryPerCommand = 4;
constexpr size_t kMaxOutcomeMessageBytes = 1024;

bool IsDdl(WriteCommand::Kind k) {
  switch (k) {
    case WriteCommand::Kind::kCreateDatabase:
    case WriteCommand::Kind::kDeleteDatabase:
    case WriteCommand::Kind::kCreateContainer:
    case WriteCommand::Kind::kDeleteContainer:
    case WriteCommand::Kind::kRotateDataKey:
    case WriteCommand::Kind::kSetMember:
    case WriteCommand::Kind::kPurgeContainer:
    case WriteCommand::Kind::kSetRegions:
    case WriteCommand::Kind::kDiscardConflict:
    case WriteCommand::Kind::kFencedOut:
    case WriteCommand::Kind::kFirewallAllow:
    case WriteCommand::Kind::kFirewallDeny:
    case WriteCommand::Kind::kSetAccountKey:
    case WriteCommand::Kind::kAccessPut:
    case WriteCommand::Kind::kAccessDelete:
      return true;
    default:
      return false;
  }
}

std::string DedupKey(std::string_view request_id) { return std::string(kDedupMetaPrefix) + std::string(request_id); }

std::string DedupExpiryKey(int64_t proposed_ms, std::string_view request_id) {
  std::string k(kDedupExpiryMetaPrefix);
  PutBigEndian64(k, static_cast<uint64_t>(proposed_ms));
  k += request_id;
  return k;
}

// The remembered outcome: what a retry of the same request is told.
std::string EncodeOutcome(const ApplyOutcome& o) {
  std::string out;
  out.push_back(static_cast<char>(o.status.code()));
  PutLengthPrefixed(out, o.status.message().substr(0, kMaxOutcomeMessageBytes));
  PutLengthPrefixed(out, o.etag);
  PutFixed64(out, static_cast<uint64_t>(o.ts));
  PutFixed32(out, o.key_version);
  PutFixed64(out, o.lsn);
  PutFixed64(out, o.glsn);  // since geo-replication; older records end before it
  return out;
}

Result<ApplyOutcome> DecodeOutcome(std::string_view in) {
  ApplyOutcome o;
  if (in.empty()) return Status::Corruption("dedup record is empty");
  const auto code = static_cast<Code>(in[0]);
  in.remove_prefix(1);
  std::string_view message, etag;
  uint64_t ts = 0, lsn = 0;
  uint32_t version = 0;
  if (!GetLengthPrefixed(in, message, kMaxOutcomeMessageBytes) || !GetLengthPrefixed(in, etag, 256) ||
      !GetFixed64(in, ts) || !GetFixed32(in, version) || !GetFixed64(in, lsn)) {
    return Status::Corruption("dedup record is malformed");
  }
  uint64_t glsn = 0;
  if (!in.empty() && (!GetFixed64(in, glsn) || !in.empty())) return Status::Corruption("dedup record is malformed");
  o.status = Status::FromCode(code, std::string(message));
  o.etag = etag;
  o.ts = static_cast<int64_t>(ts);
  o.key_version = version;
  o.lsn = lsn;
  o.glsn = glsn;
  o.duplicate = true;
  return o;
}

// Deletes a few dedup records older than the window, judged by the command's
// own proposal time so every replica deletes the same ones.
Status ExpireDedup(const DocumentStore::Impl& s, int64_t now_ms, std::vector<Mutation>& m) {
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.meta));
  const std::string prefix(kDedupExpiryMetaPrefix);
  int n = 0;
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix) && n < kDedupExpiryPerCommand; it->Next(), ++n) {
    std::string_view rest = it->key().ToStringView().substr(prefix.size());
    uint64_t ms = 0;
    if (!GetBigEndian64(rest, ms)) return Status::Corruption("malformed dedup expiry record");
    if (static_cast<int64_t>(ms) + kDedupWindowMs > now_ms) break;
    m.push_back({Mutation::Kind::kDelete, s.meta, it->key().ToString(), {}});
    m.push_back({Mutation::Kind::kDelete, s.meta, DedupKey(rest), {}});
  }
  return FromRocks(it->status(), "cannot read dedup records");
}

// What an account command does to the GLSN position; `refusal` is set when
// a shipped command must not apply (a gap), `skip` when it already did.
struct GeoStep {
  GeoPosition next;
  bool skip = false;
  std::optional<Status> refusal;
};

GeoStep StepGeo(const GeoPosition& pos, uint64_t index, const WriteCommand& cmd, uint64_t write_epoch) {
  GeoStep step;
  step.next = pos;
  if (index == 0 || !IsAccountCommand(cmd.kind)) return step;
  // A takeover: the control group named this region the write region at
  // the next epoch (the old one went silent), and the region's leader
  // proposes the new regions record itself, stamped with that epoch. It is
  // the first command of the epoch here; a stale one (the epoch moved on)
  // is refused below like any other.
  const bool takeover = cmd.kind == WriteCommand::Kind::kSetRegions && cmd.geo_glsn == 0 &&
                        write_epoch != kNotWriterEpoch && cmd.geo_epoch == write_epoch + 1 &&
                        DocumentStore::RegionsWriterOf(cmd.setting).epoch == cmd.geo_epoch;
  if (takeover) {
    step.next = {pos.glsn + 1, cmd.geo_epoch, index};
  } else if (cmd.geo_glsn == 0 && cmd.geo_epoch != 0 && cmd.geo_epoch != write_epoch) {
    // Proposed by a leader that believed its region wrote at another epoch:
    // the write region moved (at a regions change before it in the log).
    // It takes no GLSN, so the old write region's stream ends at the change.
    // The client library retries on "does not take writes".
    step.refusal = Status::FailedPrecondition(
        "this region does not take writes at epoch " + std::to_string(write_epoch) +
        (cmd.geo_epoch == kNotWriterEpoch ? std::string()
                                          : " (its epoch " + std::to_string(cmd.geo_epoch) + " ended)") +
        ": the write region moved; refresh the topology");
  } else if (cmd.geo_glsn == 0) {
    step.next = {pos.glsn + 1, cmd.geo_epoch != 0 ? cmd.geo_epoch : pos.epoch, index};
  } else if (cmd.geo_glsn <= pos.glsn) {
    step.skip = true;
  } else if (cmd.geo_glsn != pos.glsn + 1) {
    step.refusal = Status::FailedPrecondition("region stream gap: this region is at GLSN " + std::to_string(pos.glsn) +
                                              ", the command is GLSN " + std::to_string(cmd.geo_glsn));
  } else {
    step.next = {cmd.geo_glsn, cmd.geo_epoch, cmd.geo_source_index};
  }
  return step;
}

}  // namespace

std::string EncodeAppliedRecord(const AppliedRecord& r) {
  std::string v;
  PutFixed64(v, r.index);
  PutFixed64(v, r.geo.glsn);
  PutFixed64(v, r.geo.epoch);
  PutFixed64(v, r.geo.source_index);
  return v;
}

Result<AppliedRecord> DecodeAppliedRecord(std::string_view in) {
  AppliedRecord r;
  if (!GetFixed64(in, r.index)) return Status::Corruption("the applied-index record is malformed");
  if (in.empty()) return r;
  if (!GetFixed64(in, r.geo.glsn) || !GetFixed64(in, r.geo.epoch) || !GetFixed64(in, r.geo.source_index) ||
      !in.empty()) {
    return Status::Corruption("the applied-index record is malformed");
  }
  return r;
}

Result<ApplyOutcome> DocumentStore::Apply(uint64_t index, WriteCommand cmd) {
  Impl& s = *impl_;
  if (cmd.kind == WriteCommand::Kind::kInstallRegionImage) {
    // Its effect is an image that only the replica set that staged it has
    // (an archive replay, for one, cannot reproduce it).
    return Status::FailedPrecondition("raft entry " + std::to_string(index) +
                                      " installs a region image, which only the replica can apply");
  }
  std::unique_lock<std::shared_mutex> exclusive;
  std::shared_lock<std::shared_mutex> shared;
  std::unique_lock<std::mutex> item_lock;
  if (IsDdl(cmd.kind)) {
    exclusive = std::unique_lock(s.ddl_mu);
  } else {
    shared = std::shared_lock(s.ddl_mu);
    item_lock = std::unique_lock(s.ItemLock(ItemKey(cmd.rid, cmd.partition_key, cmd.item_id)));
  }

  GeoPosition pos;
  {
    std::lock_guard g(s.geo_mu);
    pos = s.geo;
  }
  const GeoStep step = StepGeo(pos, index, cmd, s.write_epoch.load());
  // An outcome decided before the command's effect: only the applied index
  // (and the GLSN it takes) is recorded.
  auto record_only = [&](ApplyOutcome o, const GeoPosition& at) -> Result<ApplyOutcome> {
    cmd.WipeKey();
    if (index > 0) {
      std::vector<Mutation> m{
          {Mutation::Kind::kPut, s.meta, std::string(kAppliedIndexKey), EncodeAppliedRecord({index, at})}};
      BULWARK_RETURN_IF_ERROR(s.queue->Commit(std::move(m), nullptr).status());
      PublishApplied(s, {index, at});
      // A retried request keeps the GLSN of its first application, so its
      // session token names the write itself; else the position now.
      if (o.glsn == 0) o.glsn = at.glsn;
    }
    return o;
  };
  if (step.refusal) {
    ApplyOutcome o;
    o.status = *step.refusal;
    return record_only(std::move(o), pos);
  }
  if (step.skip) {
    ApplyOutcome o;
    o.duplicate = true;
    return record_only(std::move(o), pos);
  }
  if (cmd.request_id.size() > kMaxRequestIdBytes) {
    ApplyOutcome o;
    o.status =
        Status::InvalidArgument("a request id may have at most " + std::to_string(kMaxRequestIdBytes) + " bytes");
    return record_only(std::move(o), step.next);
  }
  if (!cmd.request_id.empty()) {
    auto prior = s.Get(s.meta, DedupKey(cmd.request_id));
    if (prior.ok()) {
      BULWARK_ASSIGN_OR_RETURN(ApplyOutcome o, DecodeOutcome(*prior));
      return record_only(std::move(o), step.next);
    }
    if (prior.status().code() != Code::kNotFound) return prior.status();
  }

  auto effect = cmd.kind == WriteCommand::Kind::kSetRegions ? SetRegionsEffect(s, cmd, step.next.glsn, index)
                : IsDdl(cmd.kind)                           ? DdlCommandEffect(s, cmd, index)
                                                            : ItemCommandEffect(s, cmd);
  cmd.WipeKey();
  BULWARK_RETURN_IF_ERROR(effect.status());
  CommandEffect& e = *effect;
  ChangeRecord* change = e.outcome.status.ok() && e.change ? &*e.change : nullptr;
  if (index > 0) e.outcome.glsn = step.next.glsn;  // recorded with the outcome below
  if (change != nullptr && index > 0) change->glsn = step.next.glsn;
  if (!cmd.request_id.empty()) {
    // The LSN is not known before the commit; a retry is told 0 for it.
    e.mutations.push_back({Mutation::Kind::kPut, s.meta, DedupKey(cmd.request_id), EncodeOutcome(e.outcome)});
    e.mutations.push_back({Mutation::Kind::kPut, s.meta, DedupExpiryKey(cmd.proposed_unix_ms, cmd.request_id), {}});
    BULWARK_RETURN_IF_ERROR(ExpireDedup(s, cmd.proposed_unix_ms, e.mutations));
  }
  if (index > 0) {
    e.mutations.push_back(
        {Mutation::Kind::kPut, s.meta, std::string(kAppliedIndexKey), EncodeAppliedRecord({index, step.next})});
  }
  if (!e.mutations.empty() || change != nullptr) {
    BULWARK_ASSIGN_OR_RETURN(uint64_t lsn, s.queue->Commit(std::move(e.mutations), change));
    if (change != nullptr) e.outcome.lsn = lsn;
  }
  if (index > 0) PublishApplied(s, {index, step.next});
  if (e.outcome.status.ok()) {
    for (const auto& key : e.dropped_containers) s.containers.erase(key);
    for (const auto& rid : e.purged_rids) s.keyring.Forget(rid);
    if (e.write_epoch > 0) s.write_epoch.store(e.write_epoch);
    if (e.settings_changed) s.settings_generation.fetch_add(1);
    if (!e.purged_rids.empty()) {
      int64_t cur = s.max_pending_shred_index.load();
      const auto idx = static_cast<int64_t>(index);
      while (cur < idx && !s.max_pending_shred_index.compare_exchange_weak(cur, idx)) {
      }
    }
    if (e.added_container) {
      s.containers[ContainerCacheKey(e.added_container->info.database, e.added_container->info.id)] = e.added_container;
    }
    // Every replica applies the rotation, so every replica re-seals its copy.
    if (cmd.kind == WriteCommand::Kind::kRotateDataKey && !e.outcome.duplicate && s.reseal) s.reseal->Schedule(cmd.rid);
  }
  return std::move(e.outcome);
}

Result<std::map<uint64_t, std::string>> DocumentStore::MemberAddresses() const {
  std::map<uint64_t, std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
  const std::string prefix(kMemberMetaPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view k = it->key().ToStringView().substr(prefix.size());
    uint64_t id = 0;
    if (!GetBigEndian64(k, id) || !k.empty()) return Status::Corruption("malformed member record");
    out[id] = it->value().ToString();
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the member table"));
  return out;
}

uint64_t DocumentStore::applied_index() const { return impl_->applied_index.load(std::memory_order_acquire); }

GeoPosition DocumentStore::geo_position() const {
  std::lock_guard g(impl_->geo_mu);
  return impl_->geo;
}

Status DocumentStore::RecordApplied(uint64_t index, std::string_view conf_state) {
  std::vector<Mutation> m{
      {Mutation::Kind::kPut, impl_->meta, std::string(kAppliedIndexKey), EncodeAppliedRecord({index, geo_position()})}};
  if (!conf_state.empty()) {
    m.push_back({Mutation::Kind::kPut, impl_->meta, std::string(kAppliedConfKey), std::string(conf_state)});
  }
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), nullptr).status());
  impl_->applied_index.store(index, std::memory_order_release);  // the GLSN position is unchanged
  return Status::Ok();
}

Result<std::string> DocumentStore::AppliedConfState() const {
  auto v = impl_->Get(impl_->meta, kAppliedConfKey);
  if (v.status().code() == Code::kNotFound) return std::string();
  return v;
}

Status DocumentStore::SyncWal() { return FromRocks(impl_->db->SyncWAL(), "cannot sync the WAL"); }

rocksdb::DB* DocumentStore::raw_db() const { return impl_->db.get(); }

uint64_t DocumentStore::RaftLogBytes() const {
  uint64_t sst = 0, mem = 0;
  impl_->db->GetIntProperty(impl_->raftlog, "rocksdb.live-sst-files-size", &sst);
  impl_->db->GetIntProperty(impl_->raftlog, "rocksdb.cur-size-all-mem-tables", &mem);
  return sst + mem;
}
rocksdb::ColumnFamilyHandle* DocumentStore::raft_log_cf() const { return impl_->raftlog; }

void PublishApplied(DocumentStore::Impl& s, const AppliedRecord& r) {
  {
    std::lock_guard g(s.geo_mu);
    s.geo = r.geo;
  }
  s.applied_index.store(r.index, std::memory_order_release);
}

Result<AppliedRecord> LoadAppliedIndex(const DocumentStore::Impl& s) {
  auto v = s.Get(s.meta, kAppliedIndexKey);
  if (v.status().code() == Code::kNotFound) return AppliedRecord{};
  BULWARK_RETURN_IF_ERROR(v.status());
  return DecodeAppliedRecord(*v);
}

}  // namespace bulwark::storage
