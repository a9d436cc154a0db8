// The conflict feed (docs/control-group.md): capture at a region image
// install, listing, reading and discarding.
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/coding.h"
#include "crypto/item_seal.h"
#include "crypto/secret.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

constexpr size_t kConflictIdBytes = 16;  // u64 BE install index, u64 BE lsn

std::string ConflictKey(const ChangeRecord& c, uint64_t index) {
  std::string k = ConflictPrefix(c.database, c.container);
  PutBigEndian64(k, index);
  PutBigEndian64(k, c.lsn);
  return k;
}

Result<std::string> ConflictIdBytes(std::string_view id) {
  auto raw = crypto::HexDecode(id);
  if (!raw.ok() || raw->size() != kConflictIdBytes) {
    return Status::InvalidArgument("a conflict id is " + std::to_string(2 * kConflictIdBytes) + " hex digits");
  }
  return std::move(raw).value();
}

DocumentStore::Conflict ToConflict(std::string_view key_suffix, const ConflictRecord& r) {
  DocumentStore::Conflict c;
  c.id = crypto::HexEncode(key_suffix);
  c.database = r.change.database;
  c.container = r.change.container;
  c.partition_key = r.change.partition_key;
  c.item_id = r.change.item_id;
  c.etag = r.change.etag;
  c.deleted = r.change.op == ChangeOp::kDeleteItem;
  c.ts = r.change.ts;
  c.glsn = r.change.glsn;
  c.epoch = r.epoch;
  c.captured_unix_ms = r.captured_unix_ms;
  return c;
}

}  // namespace

Result<size_t> CaptureConflicts(DocumentStore::Impl& s, const std::string& staged_meta, uint64_t index,
                                int64_t captured_ms, const std::set<std::string>& keyed, rocksdb::WriteBatch& batch) {
  GeoPosition pos;
  {
    std::lock_guard g(s.geo_mu);
    pos = s.geo;
  }
  const uint64_t epoch = s.write_epoch.load();
  // Where the next epoch began in the image's history: this store shares
  // everything before it; what it has from there on, the account does not.
  std::string key = staged_meta + std::string(kAccountEpochStartPrefix);
  PutBigEndian64(key, epoch + 1);
  auto start = s.Get(s.staging, key);
  if (start.status().code() == Code::kNotFound) {
    // An image of this store's own epoch (a read region behind): nothing to
    // compare. One of a later epoch that does not say where the next began
    // cannot be compared either: say so loudly.
    auto applied = s.Get(s.staging, staged_meta + std::string(kAppliedIndexKey));
    auto image = applied.ok() ? DecodeAppliedRecord(*applied) : Result<AppliedRecord>(applied.status());
    if (image.ok() && image->geo.epoch > epoch) {
      spdlog::error(
          "event=conflict_capture_impossible epoch={} image_epoch={} glsn={} reason=\"the image does not say where "
          "epoch {} began: writes this region made past it, if any, are replaced without a trace\"",
          epoch, image->geo.epoch, pos.glsn, epoch + 1);
    }
    return size_t{0};
  }
  BULWARK_RETURN_IF_ERROR(start.status());
  std::string_view in = *start;
  uint64_t diverged_from = 0;
  if (!GetFixed64(in, diverged_from)) return Status::Corruption("the image's epoch start record is malformed");
  if (pos.glsn < diverged_from || diverged_from == 0) return size_t{0};
  size_t n = 0, other = 0, purged = 0;
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.changelog));
  for (it->SeekToLast(); it->Valid(); it->Prev()) {
    std::string_view k = it->key().ToStringView();
    uint64_t lsn = 0;
    if (k.size() != 8 || !GetBigEndian64(k, lsn)) return Status::Corruption("a change-log key is malformed");
    BULWARK_ASSIGN_OR_RETURN(ChangeRecord change, ChangeRecord::Decode(lsn, it->value().ToStringView()));
    // Changes are in apply order and GLSNs only grow; one without a GLSN
    // predates geo-replication here, and so does everything before it.
    if (change.glsn < diverged_from) break;
    if (change.op != ChangeOp::kPutItem && change.op != ChangeOp::kDeleteItem) {
      // Databases and containers made or dropped there: the image decides
      // them; their items' changes are kept.
      ++other;
      continue;
    }
    if (keyed.count(crypto::HexEncode(change.container_rid)) == 0) {
      ++purged;  // the account purged its container meanwhile: nothing of it is kept
      continue;
    }
    ConflictRecord r;
    r.epoch = epoch;
    r.captured_unix_ms = captured_ms;
    r.change = std::move(change);
    batch.Put(s.meta, ConflictKey(r.change, index), r.Encode());
    ++n;
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the change log"));
  spdlog::warn(
      "event=conflicts_captured items={} other_changes={} of_purged_containers={} from_glsn={} to_glsn={} epoch={} "
      "note=\"this region committed them as write region after another took over; bulwark conflicts list shows "
      "them\"",
      n, other, purged, diverged_from, pos.glsn, epoch);
  return n;
}

Result<CommandEffect> DiscardConflictEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  BULWARK_ASSIGN_OR_RETURN(std::string raw, ConflictIdBytes(cmd.setting));
  const std::string key = ConflictPrefix(cmd.database, cmd.container) + raw;
  auto v = s.Get(s.meta, key);
  if (v.status().code() == Code::kNotFound) {
    e.outcome.status = Status::NotFound("conflict " + cmd.setting + " of " + cmd.database + "/" + cmd.container +
                                        " does not exist (replayed or discarded already?)");
    return e;
  }
  BULWARK_RETURN_IF_ERROR(v.status());
  e.mutations.push_back({Mutation::Kind::kDelete, s.meta, key, {}});
  return e;
}

Result<std::vector<DocumentStore::Conflict>> DocumentStore::ListConflicts(std::string_view db,
                                                                          std::string_view container,
                                                                          size_t max) const {
  std::string prefix(kConflictMetaPrefix);
  if (!container.empty()) {
    prefix = ConflictPrefix(db, container);
  } else if (!db.empty()) {
    prefix.append(db);
    prefix.push_back('\0');  // every container of db
  }
  std::vector<Conflict> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix) && out.size() < max; it->Next()) {
    const std::string_view k = it->key().ToStringView();
    if (k.size() < kConflictIdBytes) return Status::Corruption("a conflict key is malformed");
    BULWARK_ASSIGN_OR_RETURN(ConflictRecord r, ConflictRecord::Decode(it->value().ToStringView()));
    out.push_back(ToConflict(k.substr(k.size() - kConflictIdBytes), r));
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the conflict feed"));
  return out;
}

Result<std::pair<DocumentStore::Conflict, std::string>> DocumentStore::GetConflict(std::string_view db,
                                                                                   std::string_view container,
                                                                                   std::string_view id) const {
  BULWARK_ASSIGN_OR_RETURN(std::string raw, ConflictIdBytes(id));
  auto v = impl_->Get(impl_->meta, ConflictPrefix(db, container) + raw);
  if (v.status().code() == Code::kNotFound) {
    return Status::NotFound("conflict " + std::string(id) + " of " + std::string(db) + "/" + std::string(container) +
                            " does not exist");
  }
  BULWARK_RETURN_IF_ERROR(v.status());
  BULWARK_ASSIGN_OR_RETURN(ConflictRecord r, ConflictRecord::Decode(*v));
  Conflict c = ToConflict(raw, r);
  if (r.change.op == ChangeOp::kDeleteItem) return std::make_pair(std::move(c), std::string());
  const ChangeRecord& ch = r.change;
  if (!impl_->options.seal_items) {
    BULWARK_ASSIGN_OR_RETURN(ItemRecord item, DecodeItemRecord(ch.sealed_value));
    return std::make_pair(std::move(c), std::move(item.body));
  }
  BULWARK_ASSIGN_OR_RETURN(uint32_t version, crypto::SealedKeyVersion(ch.sealed_value));
  auto dek = impl_->keyring.Find(crypto::HexEncode(ch.container_rid), version);
  if (dek == nullptr) {
    return Status::Corruption("conflict " + std::string(id) + " is sealed under data key version " +
                              std::to_string(version) + " of its container, which this region no longer holds");
  }
  BULWARK_ASSIGN_OR_RETURN(std::string plain,
                           crypto::OpenItem(*dek, {ch.container_rid, ch.partition_key, ch.item_id}, ch.sealed_value));
  BULWARK_ASSIGN_OR_RETURN(ItemRecord item, DecodeItemRecord(std::move(plain)));
  return std::make_pair(std::move(c), std::move(item.body));
}

Result<WriteCommand> DocumentStore::PrepareDiscardConflict(std::string_view db, std::string_view container,
                                                           std::string_view id) const {
  BULWARK_RETURN_IF_ERROR(ConflictIdBytes(id).status());
  WriteCommand cmd;
  cmd.kind = WriteCommand::Kind::kDiscardConflict;
  cmd.database = db;
  cmd.container = container;
  cmd.setting = id;
  return cmd;
}

}  // namespace bulwark::storage
