// State images: the replicated state streamed to a lagging replica (a raft
// snapshot), staged on arrival and installed in one go.
//
// An image is a sequence of records, each: u8 tag | length-prefixed key |
// length-prefixed value. Tags: meta, items and change-log records as stored,
// and data keys and account keys unwrapped (the receiver wraps them under its
// own master key, so replicas need not share one). Node-local records (format, key check,
// secrets) are never part of an image.
//
// Install, crash-safe: mark "installing" (durable), delete the replicated
// state, copy the staging in, reload the caches, clear the marks. A crash in
// between finishes the install at the next open (ResumeStateImageInstall).
//
// The staging column family holds two kinds of image, apart:
//   <tag><key>                   the raft snapshot being received (one)
//   0x10 <id> <tag><key>         region images (catch-up across regions),
//                                by id; kept after install so that the
//                                region's other replicas can fetch them
// with "s/ri/<id>" in the meta column family once a region image is complete.
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>

#include <sodium.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/coding.h"
#include "crypto/secret.h"
#include "storage/store_impl.h"

using nlohmann::json;

namespace bulwark::storage {
namespace {

enum class Tag : uint8_t { kMeta = 1, kItem = 2, kChange = 3, kDataKey = 4, kAccountKey = 5 };

constexpr std::string_view kStagedKey = "s/staged";           // a complete image is staged
constexpr std::string_view kInstallingKey = "s/installing";   // an install is under way
constexpr std::string_view kRegionImageMarkPrefix = "s/ri/";  // + id: a complete region image
constexpr std::string_view kRegionInstalledPrefix = "s/rx/";  // + id: u64, the raft index it was installed at
// A region image never installed is dropped after this long (its install
// entry never committed: the receiver failed or lost leadership).
constexpr int64_t kRegionImageMaxAgeMs = 3600 * 1000;
// Staging keys: a raft image's sort below kRegionSlot, region images' above.
constexpr char kRegionSlot = '\x10';
constexpr size_t kRegionImageIdChars = 32;  // 16 hex digits of ms, 16 random
constexpr size_t kMaxImageField = 8 << 20;
constexpr size_t kInstallBatchBytes = 4 << 20;

// The meta prefixes that belong to the replicated state.
// ("p/", pending shreds, is local: it describes this node's files.)
constexpr std::string_view kReplicatedMetaPrefixes[] = {
    kDatabaseMetaPrefix,   kContainerMetaPrefixAll, kDataKeyMetaPrefix,          "a/",
    kDedupMetaPrefix,      kDedupExpiryMetaPrefix,  kDeletedContainerMetaPrefix, kSettingsMetaPrefix,
    kAccountKeyMetaPrefix, kAccessMetaPrefix};

// The containers (rid hex) whose data-key records an iterator over `prefix`
// + "k/" finds.
Result<std::set<std::string>> KeyedContainers(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                              const std::string& prefix) {
  std::set<std::string> out;
  const std::string start = prefix + std::string(kDataKeyMetaPrefix);
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
  for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
    std::string rid;
    uint32_t version = 0;
    if (ParseDataKeyMetaKey(it->key().ToStringView().substr(prefix.size()), rid, version)) out.insert(rid);
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read data-key records"));
  return out;
}

// Calls fn(tag, key, value, the whole record) for each record of an image
// chunk; Corruption for a truncated one.
template <typename Fn>
Status ForEachImageRecord(std::string_view in, Fn&& fn) {
  while (!in.empty()) {
    const std::string_view record_start = in;
    const auto tag = static_cast<Tag>(in[0]);
    in.remove_prefix(1);
    std::string_view k, v;
    if (!GetLengthPrefixed(in, k, kMaxImageField) || !GetLengthPrefixed(in, v, kMaxImageField)) {
      return Status::Corruption("state image chunk is truncated");
    }
    BULWARK_RETURN_IF_ERROR(fn(tag, k, v, record_start.substr(0, record_start.size() - in.size())));
  }
  return Status::Ok();
}

bool IsReplicatedMeta(std::string_view key) {
  for (std::string_view p : kReplicatedMetaPrefixes) {
    if (key.substr(0, p.size()) == p) return true;
  }
  return false;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  end.back() = static_cast<char>(end.back() + 1);  // every prefix ends in '/'
  return end;
}

const std::string kAllKeysEnd(16, '\xff');  // above every item rid and change-log lsn
const std::string kRaftSlotEnd(1, kRegionSlot);

std::string RegionSlotPrefix(std::string_view id) { return std::string(1, kRegionSlot) + std::string(id); }
std::string RegionSlotEnd(std::string_view id) { return RegionSlotPrefix(id) + '\xff'; }
std::string RegionMarkKey(std::string_view id) { return std::string(kRegionImageMarkPrefix) + std::string(id); }
std::string RegionInstalledKey(std::string_view id) { return std::string(kRegionInstalledPrefix) + std::string(id); }

void AppendRecord(std::string& out, Tag tag, std::string_view key, std::string_view value) {
  out.push_back(static_cast<char>(tag));
  PutLengthPrefixed(out, key);
  PutLengthPrefixed(out, value);
}

rocksdb::WriteOptions Synced() {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return wo;
}

Status ClearStaging(DocumentStore::Impl& s) {
  rocksdb::WriteBatch b;
  b.DeleteRange(s.staging, "", kRaftSlotEnd);
  b.Delete(s.meta, std::string(kStagedKey));
  return FromRocks(s.db->Write(Synced(), &b), "cannot clear the image staging area");
}

// What an install copies: the raft image, or region image `region_id`,
// whose region-local records ("a/": the sender's applied index and
// membership) are replaced by `local_applied`/`local_conf`.
struct InstallSource {
  std::string region_id;  // empty: the raft image
  std::string local_applied;
  std::string local_conf;
  // The "installing" mark's value, which is all a resumed install needs.
  std::string EncodeMark() const {
    if (region_id.empty()) return "1";
    std::string v = "R" + region_id;
    PutLengthPrefixed(v, local_applied);
    PutLengthPrefixed(v, local_conf);
    return v;
  }
  static Result<InstallSource> DecodeMark(std::string_view v) {
    InstallSource src;
    if (v == "1") return src;
    std::string_view applied, conf;
    if (v.size() < 1 + kRegionImageIdChars || v[0] != 'R') return Status::Corruption("the install mark is malformed");
    src.region_id = std::string(v.substr(1, kRegionImageIdChars));
    v.remove_prefix(1 + kRegionImageIdChars);
    if (!GetLengthPrefixed(v, applied, 1024) || !GetLengthPrefixed(v, conf, 1 << 20) || !v.empty()) {
      return Status::Corruption("the install mark is malformed");
    }
    src.local_applied = applied;
    src.local_conf = conf;
    return src;
  }
};

// Steps 2 to 4 of an install; REQUIRES the "installing" mark is durable.
Status CopyStagingIn(DocumentStore::Impl& s, const InstallSource& src) {
  {
    rocksdb::WriteBatch b;
    for (std::string_view p : kReplicatedMetaPrefixes) {
      if (!src.region_id.empty() && p == "a/") {
        // A region image keeps the region's conflict feed (it is this
        // region's own; the install may just have added to it).
        b.DeleteRange(s.meta, std::string(p), std::string(kConflictMetaPrefix));
        b.DeleteRange(s.meta, PrefixEnd(kConflictMetaPrefix), PrefixEnd(p));
        continue;
      }
      b.DeleteRange(s.meta, std::string(p), PrefixEnd(p));
    }
    b.DeleteRange(s.items, "", kAllKeysEnd);
    b.DeleteRange(s.changelog, "", kAllKeysEnd);
    BULWARK_RETURN_IF_ERROR(FromRocks(s.db->Write(rocksdb::WriteOptions(), &b), "cannot clear the old state"));
  }
  const bool region = !src.region_id.empty();
  const std::string start = region ? RegionSlotPrefix(src.region_id) : std::string();
  const std::string end = region ? RegionSlotEnd(src.region_id) : kRaftSlotEnd;
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.staging));
  rocksdb::WriteBatch b;
  for (it->Seek(start); it->Valid() && it->key().ToStringView() < end; it->Next()) {
    std::string_view k = it->key().ToStringView().substr(start.size());
    if (k.empty()) return Status::Corruption("staged image record has an empty key");
    const auto tag = static_cast<Tag>(k[0]);
    k.remove_prefix(1);
    rocksdb::ColumnFamilyHandle* cf = tag == Tag::kMeta ? s.meta : tag == Tag::kItem ? s.items : s.changelog;
    if (tag != Tag::kMeta && tag != Tag::kItem && tag != Tag::kChange) {
      return Status::Corruption("staged image record has an unknown tag");
    }
    if (region && tag == Tag::kMeta && k.substr(0, 2) == "a/") continue;  // the sender's region, not ours
    b.Put(cf, rocksdb::Slice(k.data(), k.size()), it->value());
    if (b.GetDataSize() > kInstallBatchBytes) {
      BULWARK_RETURN_IF_ERROR(FromRocks(s.db->Write(rocksdb::WriteOptions(), &b), "cannot install the image"));
      b.Clear();
    }
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the staged image"));
  if (region) {
    // The region image stays staged: the region's other replicas fetch it
    // from here until the log no longer holds its install entry
    // (DropRegionImages).
    b.Put(s.meta, std::string(kAppliedIndexKey), src.local_applied);
    if (!src.local_conf.empty()) b.Put(s.meta, std::string(kAppliedConfKey), src.local_conf);
    BULWARK_ASSIGN_OR_RETURN(AppliedRecord local, DecodeAppliedRecord(src.local_applied));
    std::string installed;
    PutFixed64(installed, local.index);
    PutFixed64(installed, static_cast<uint64_t>(UnixNowMillis()));
    b.Put(s.meta, RegionInstalledKey(src.region_id), installed);
  } else {
    b.DeleteRange(s.staging, "", kRaftSlotEnd);
    b.Delete(s.meta, std::string(kStagedKey));
  }
  b.Delete(s.meta, std::string(kInstallingKey));
  return FromRocks(s.db->Write(Synced(), &b), "cannot install the image");
}

// Stages the records of an image chunk under `slot` ("" for the raft image).
Status StageChunk(DocumentStore::Impl& s, const std::string& slot, std::string_view in) {
  rocksdb::WriteBatch b;
  BULWARK_RETURN_IF_ERROR(
      ForEachImageRecord(in, [&](Tag tag, std::string_view k, std::string_view v, std::string_view) -> Status {
        // Keys arrive unwrapped and are staged as meta records wrapped under
        // this node's master key.
        std::string key = slot;
        key.push_back(static_cast<char>(tag == Tag::kDataKey || tag == Tag::kAccountKey ? Tag::kMeta : tag));
        key.append(k);
        switch (tag) {
          case Tag::kMeta:
            if (!IsReplicatedMeta(k)) return Status::Corruption("state image names a node-local record");
            break;
          case Tag::kItem:
          case Tag::kChange:
            break;
          case Tag::kDataKey: {
            std::string rid;
            uint32_t version = 0;
            uint64_t created = 0;
            if (!ParseDataKeyMetaKey(k, rid, version) || !GetFixed64(v, created)) {
              return Status::Corruption("state image data key is malformed");
            }
            BULWARK_ASSIGN_OR_RETURN(auto wrapped,
                                     s.keyring.WrapDataKey(rid, version, v, static_cast<int64_t>(created)));
            b.Put(s.staging, key, wrapped.EncodeValue());
            return Status::Ok();
          }
          case Tag::kAccountKey: {
            uint64_t version = 0;
            int64_t created = 0;
            std::string_view raw;
            if (k.substr(0, kAccountKeyMetaPrefix.size()) != kAccountKeyMetaPrefix ||
                !DecodeAccountKeyValue(v, version, created, raw)) {
              return Status::Corruption("state image account key is malformed");
            }
            const std::string name(k.substr(kAccountKeyMetaPrefix.size()));
            b.Put(s.staging, key,
                  EncodeAccountKeyValue(version, created, s.keyring.WrapSecret(raw, AccountKeyContext(name))));
            return Status::Ok();
          }
          default:
            return Status::Corruption("state image record has an unknown tag");
        }
        b.Put(s.staging, key, rocksdb::Slice(v.data(), v.size()));
        return Status::Ok();
      }));
  return FromRocks(s.db->Write(rocksdb::WriteOptions(), &b), "cannot stage the image");
}

// Marks the install durable (with the pending shreds it implies: containers
// whose keys this node holds but the staged image, read from `staged_meta`
// (the staging prefix of its meta records), does not; they were purged in
// the meantime and this node's files may still hold their keys) and runs
// it. `shred_index`: the raft index the shreds wait for the log to drop.
// REQUIRES: ddl_mu held exclusively.
int64_t RegionImageIdMs(std::string_view id);  // below: when a region image was made

Status RunInstall(DocumentStore::Impl& s, const InstallSource& src, const std::string& staged_meta,
                  uint64_t shred_index) {
  rocksdb::WriteBatch b;
  b.Put(s.meta, std::string(kInstallingKey), src.EncodeMark());
  // What this region committed that the image's history does not have
  // (it was the write region when another took over) goes to the conflict
  // feed, in the same batch that starts the install.
  if (!src.region_id.empty()) {
    BULWARK_ASSIGN_OR_RETURN(auto keyed, KeyedContainers(s.db.get(), s.staging, staged_meta));
    BULWARK_RETURN_IF_ERROR(
        CaptureConflicts(s, staged_meta, shred_index, RegionImageIdMs(src.region_id), keyed, b).status());
  }
  BULWARK_ASSIGN_OR_RETURN(auto before, KeyedContainers(s.db.get(), s.meta, ""));
  BULWARK_ASSIGN_OR_RETURN(auto after, KeyedContainers(s.db.get(), s.staging, staged_meta));
  for (const std::string& rid : before) {
    if (after.count(rid) > 0) continue;
    std::string index;
    PutFixed64(index, shred_index);
    b.Put(s.meta, std::string(kPendingShredMetaPrefix) + rid, index);
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(s.db->Write(Synced(), &b), "cannot start the install"));
  BULWARK_RETURN_IF_ERROR(CopyStagingIn(s, src));
  BULWARK_RETURN_IF_ERROR(LoadKeysAndContainers(s));
  BULWARK_ASSIGN_OR_RETURN(uint64_t lsn, LastLsn(s));
  s.queue->ResetLastLsn(lsn);
  BULWARK_ASSIGN_OR_RETURN(AppliedRecord applied, LoadAppliedIndex(s));
  PublishApplied(s, applied);
  BULWARK_RETURN_IF_ERROR(LoadWriteEpoch(s));
  BULWARK_RETURN_IF_ERROR(RefreshPendingShreds(s));
  // The image may hold values under versions its sender had not re-sealed yet.
  BULWARK_RETURN_IF_ERROR(ScheduleResealWhereNeeded(s));
  s.settings_generation.fetch_add(1);
  return Status::Ok();
}

bool ValidRegionImageId(std::string_view id) {
  if (id.size() != kRegionImageIdChars) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// A staged data-key meta record (key `k` without its slot, value `v`).
Result<crypto::WrappedDataKey> DecodeStagedDataKey(std::string_view k, std::string_view v) {
  std::string rid;
  uint32_t version = 0;
  if (!ParseDataKeyMetaKey(k, rid, version)) return Status::Corruption("malformed staged data-key record");
  return crypto::WrappedDataKey::DecodeValue(rid, version, v);
}

// A staged account-key meta record, unwrapped under this node's master key.
struct StagedAccountKey {
  std::string name;
  uint64_t version = 0;
  int64_t created = 0;
  crypto::SecretBytes raw;
};
Result<StagedAccountKey> UnwrapStagedAccountKey(const DocumentStore::Impl& s, std::string_view k, std::string_view v) {
  StagedAccountKey out;
  out.name = std::string(k.substr(kAccountKeyMetaPrefix.size()));
  std::string_view wrapped;
  if (!DecodeAccountKeyValue(v, out.version, out.created, wrapped)) {
    return Status::Corruption("staged account key record " + out.name + " is malformed");
  }
  BULWARK_ASSIGN_OR_RETURN(out.raw, s.keyring.UnwrapSecret(wrapped, AccountKeyContext(out.name)));
  return out;
}

// Image chunks from one consistent point of the store (a RocksDB snapshot,
// released on destruction): records gathered into chunks of about
// `max_chunk` bytes (one larger record travels alone). Chunks carry raw
// keys: the buffer is wiped after each.
class ImageWriter {
 public:
  ImageWriter(const DocumentStore::Impl& s, size_t max_chunk, const std::function<Status(std::string_view)>& emit)
      : s_(s), snap_(s.db->GetSnapshot()), max_chunk_(max_chunk), emit_(emit) {
    ro_.snapshot = snap_;
    ro_.fill_cache = false;
  }
  ~ImageWriter() {
    sodium_memzero(chunk_.data(), chunk_.size());
    s_.db->ReleaseSnapshot(snap_);
  }
  ImageWriter(const ImageWriter&) = delete;
  ImageWriter& operator=(const ImageWriter&) = delete;

  const rocksdb::ReadOptions& read_options() const { return ro_; }
  Status Add(Tag tag, std::string_view k, std::string_view v) {
    if (!chunk_.empty() && chunk_.size() + k.size() + v.size() + 9 > max_chunk_) BULWARK_RETURN_IF_ERROR(Flush());
    AppendRecord(chunk_, tag, k, v);
    return Status::Ok();
  }
  Status Flush() {
    if (chunk_.empty()) return Status::Ok();
    Status st = emit_(chunk_);
    sodium_memzero(chunk_.data(), chunk_.size());
    chunk_.clear();
    return st;
  }

 private:
  const DocumentStore::Impl& s_;
  const rocksdb::Snapshot* snap_;
  rocksdb::ReadOptions ro_;
  size_t max_chunk_;
  const std::function<Status(std::string_view)>& emit_;
  std::string chunk_;
};

// What a region outside some geo-fences must not receive (WriteStateImage
// with fenced_for): the fenced-out containers (rid, hex and raw) and
// databases, read at the image's snapshot.
struct FencedOut {
  std::set<std::string> rids, raw_rids, databases;
  bool empty() const { return rids.empty() && databases.empty(); }

  static Result<FencedOut> Read(const DocumentStore::Impl& s, const rocksdb::ReadOptions& ro,
                                const std::string& region) {
    FencedOut out;
    std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(ro, s.meta));
    auto add_rid = [&](const std::string& hex) -> Status {
      BULWARK_ASSIGN_OR_RETURN(std::string raw, crypto::HexDecode(hex));
      out.rids.insert(hex);
      out.raw_rids.insert(std::move(raw));
      return Status::Ok();
    };
    // Live fenced containers: their fence records.
    const std::string fences(kFenceMetaPrefix);
    for (it->Seek(fences); it->Valid() && it->key().starts_with(fences); it->Next()) {
      if (!FenceAllows(it->value().ToStringView(), region)) {
        BULWARK_RETURN_IF_ERROR(add_rid(it->key().ToString().substr(fences.size())));
      }
    }
    // Deleted ones whose keys are kept: the fence is the record's value.
    const std::string deleted(kDeletedContainerMetaPrefix);
    for (it->Seek(deleted); it->Valid() && it->key().starts_with(deleted); it->Next()) {
      if (FenceAllows(it->value().ToStringView(), region)) continue;
      const std::string k = it->key().ToString();
      BULWARK_RETURN_IF_ERROR(add_rid(k.substr(k.rfind('/') + 1)));
    }
    const std::string dbs(kDatabaseMetaPrefix);
    for (it->Seek(dbs); it->Valid() && it->key().starts_with(dbs); it->Next()) {
      BULWARK_ASSIGN_OR_RETURN(DatabaseInfo d, ParseDatabase(it->value().ToStringView()));
      if (!FenceAllows(JoinFence(d.allowed_regions), region)) out.databases.insert(d.id);
    }
    BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the geo-fences"));
    return out;
  }

  // Whether meta record `k` (value `v`) belongs to what is fenced out.
  bool Meta(std::string_view k, std::string_view v) const {
    auto starts = [&](std::string_view p) { return k.substr(0, p.size()) == p; };
    auto rest = [&](std::string_view p) { return std::string(k.substr(p.size())); };
    if (starts(kDatabaseMetaPrefix)) return databases.count(rest(kDatabaseMetaPrefix)) > 0;
    if (starts(kDataKeyMetaPrefix)) {
      std::string rid;
      uint32_t version = 0;
      return ParseDataKeyMetaKey(k, rid, version) && rids.count(rid) > 0;
    }
    if (starts(kDeletedContainerMetaPrefix)) return rids.count(std::string(k.substr(k.rfind('/') + 1))) > 0;
    if (starts(kContainerMetaPrefixAll)) {
      const json j = json::parse(v, nullptr, false);
      return j.is_object() && j.contains("_rid") && j["_rid"].is_string() &&
             rids.count(j["_rid"].get<std::string>()) > 0;
    }
    if (starts(kConflictMetaPrefix)) {
      // A backup's geo copy keeps the feed (a region image never has it):
      // not a fenced container's entries.
      auto rec = ConflictRecord::Decode(v);
      return !rec.ok() || raw_rids.count(rec->change.container_rid) > 0 || databases.count(rec->change.database) > 0;
    }
    if (starts(kAccessMetaPrefix)) {
      // A fenced database's users and their permissions ("ac/u/<db>/...").
      for (const auto& db : databases) {
        if (starts(AccessUserPrefix(db))) return true;
      }
    }
    return false;
  }

  bool Item(std::string_view k) const {
    return k.size() >= kContainerRidBytes && raw_rids.count(std::string(k.substr(0, kContainerRidBytes))) > 0;
  }

  Result<bool> Change(std::string_view k, std::string_view v) const {
    BULWARK_ASSIGN_OR_RETURN(uint64_t lsn, ParseLsnKey(k));
    BULWARK_ASSIGN_OR_RETURN(ChangeRecord rec, ChangeRecord::Decode(lsn, v));
    return raw_rids.count(rec.container_rid) > 0 || databases.count(rec.database) > 0;
  }
};

}  // namespace

Result<bool> DocumentStore::HoldsFencedOutOf(const std::string& region) const {
  const rocksdb::Snapshot* snap = impl_->db->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  auto fenced = FencedOut::Read(*impl_, ro, region);
  impl_->db->ReleaseSnapshot(snap);
  if (!fenced.ok()) return fenced.status();
  return !fenced->empty();
}

Result<uint64_t> DocumentStore::WriteStateImage(size_t max_chunk, const std::function<Status(std::string_view)>& emit,
                                                bool region_image, const std::string* fenced_for) const {
  const Impl& s = *impl_;
  // One RocksDB snapshot: every Apply is one batch, so any point is a
  // consistent state with its own applied index.
  ImageWriter out(s, max_chunk, emit);
  const rocksdb::ReadOptions& ro = out.read_options();
  uint64_t applied = 0;
  auto add = [&](Tag tag, std::string_view k, std::string_view v) { return out.Add(tag, k, v); };
  FencedOut fenced;
  if (fenced_for != nullptr) {
    BULWARK_ASSIGN_OR_RETURN(fenced, FencedOut::Read(s, ro, *fenced_for));
  }

  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(ro, s.meta));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view k = it->key().ToStringView();
    if (!IsReplicatedMeta(k)) continue;
    // A region's conflict feed is its own: it never travels to another region.
    if (region_image && k.substr(0, kConflictMetaPrefix.size()) == kConflictMetaPrefix) continue;
    if (!fenced.empty() && fenced.Meta(k, it->value().ToStringView())) continue;
    if (k == kAppliedIndexKey) {
      std::string_view v = it->value().ToStringView();
      if (!GetFixed64(v, applied)) return Status::Corruption("the applied-index record is malformed");
    }
    if (k.substr(0, kDataKeyMetaPrefix.size()) == kDataKeyMetaPrefix) {
      std::string rid;
      uint32_t version = 0;
      if (!ParseDataKeyMetaKey(k, rid, version)) return Status::Corruption("malformed data-key record key");
      auto dek = s.keyring.Find(rid, version);
      if (dek == nullptr)
        return Status::Internal("data key " + rid + " v" + std::to_string(version) + " is not loaded");
      std::string value;
      PutFixed64(value, static_cast<uint64_t>(dek->created_unix_s));
      value.append(dek->key.view());
      BULWARK_RETURN_IF_ERROR(add(Tag::kDataKey, k, value));
      sodium_memzero(value.data(), value.size());
      continue;
    }
    if (k.substr(0, kAccountKeyMetaPrefix.size()) == kAccountKeyMetaPrefix) {
      uint64_t version = 0;
      int64_t created = 0;
      std::string_view wrapped;
      const std::string name(k.substr(kAccountKeyMetaPrefix.size()));
      if (!DecodeAccountKeyValue(it->value().ToStringView(), version, created, wrapped)) {
        return Status::Corruption("account key record " + name + " is malformed");
      }
      BULWARK_ASSIGN_OR_RETURN(auto key, s.keyring.UnwrapSecret(wrapped, AccountKeyContext(name)));
      std::string value = EncodeAccountKeyValue(version, created, key.view());
      BULWARK_RETURN_IF_ERROR(add(Tag::kAccountKey, k, value));
      sodium_memzero(value.data(), value.size());
      continue;
    }
    BULWARK_RETURN_IF_ERROR(add(Tag::kMeta, k, it->value().ToStringView()));
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read metadata"));
  for (auto [tag, cf] : {std::pair{Tag::kItem, s.items}, std::pair{Tag::kChange, s.changelog}}) {
    it.reset(s.db->NewIterator(ro, cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string_view k = it->key().ToStringView();
      if (!fenced.empty()) {
        if (tag == Tag::kItem && fenced.Item(k)) continue;
        if (tag == Tag::kChange) {
          BULWARK_ASSIGN_OR_RETURN(bool out_of_fence, fenced.Change(k, it->value().ToStringView()));
          if (out_of_fence) continue;
        }
      }
      BULWARK_RETURN_IF_ERROR(add(tag, k, it->value().ToStringView()));
    }
    BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the state"));
  }
  BULWARK_RETURN_IF_ERROR(out.Flush());
  return applied;
}

Status DocumentStore::SplitImageDataKeys(std::string_view in, std::string* rest, std::string* keys,
                                         const std::set<std::string>* drop_rids, size_t* dropped,
                                         std::set<std::string>* key_rids) {
  return ForEachImageRecord(in, [&](Tag tag, std::string_view k, std::string_view, std::string_view record) {
    if (tag != Tag::kDataKey) {
      rest->append(record);
      return Status::Ok();
    }
    std::string rid;
    uint32_t version = 0;
    if (!ParseDataKeyMetaKey(k, rid, version)) return Status::Corruption("state image data key is malformed");
    if (drop_rids != nullptr && drop_rids->count(rid) > 0) {
      if (dropped != nullptr) ++*dropped;
      return Status::Ok();
    }
    if (key_rids != nullptr) key_rids->insert(rid);
    keys->append(record);
    return Status::Ok();
  });
}

Status DocumentStore::DropUnkeyedContainers(std::string_view in, const std::set<std::string>& keyed, std::string* out,
                                            uint64_t* dropped) {
  return ForEachImageRecord(in, [&](Tag tag, std::string_view k, std::string_view v, std::string_view record) {
    std::string rid_hex;  // the container the record belongs to, if any
    if (tag == Tag::kMeta && k.substr(0, kContainerMetaPrefixAll.size()) == kContainerMetaPrefixAll) {
      const nlohmann::json j = nlohmann::json::parse(v, nullptr, false);
      if (!j.is_object() || !j.contains("_rid") || !j["_rid"].is_string()) {
        return Status::Corruption("state image container record is malformed");
      }
      rid_hex = j["_rid"].get<std::string>();
    } else if (tag == Tag::kItem) {
      if (k.size() < kContainerRidBytes) return Status::Corruption("state image item key is malformed");
      rid_hex = crypto::HexEncode(k.substr(0, kContainerRidBytes));
    } else if (tag == Tag::kChange) {
      BULWARK_ASSIGN_OR_RETURN(uint64_t lsn, ParseLsnKey(k));
      BULWARK_ASSIGN_OR_RETURN(ChangeRecord change, ChangeRecord::Decode(lsn, v));
      if (!change.container_rid.empty()) rid_hex = crypto::HexEncode(change.container_rid);
    }
    if (!rid_hex.empty() && keyed.count(rid_hex) == 0) {
      ++*dropped;
    } else {
      out->append(record);
    }
    return Status::Ok();
  });
}

Status DocumentStore::BeginStateImage() { return ClearStaging(*impl_); }

Status DocumentStore::AddStateImageChunk(std::string_view in) {
  std::shared_lock lock(impl_->ddl_mu);  // not across a master-key rotation
  return StageChunk(*impl_, "", in);
}

Status DocumentStore::FinishStateImage() {
  rocksdb::WriteBatch b;
  b.Put(impl_->meta, std::string(kStagedKey), "1");
  return FromRocks(impl_->db->Write(Synced(), &b), "cannot stage the image");
}

Status DocumentStore::AbortStateImage() { return ClearStaging(*impl_); }

Result<uint64_t> DocumentStore::InstallStateImage() {
  Impl& s = *impl_;
  std::unique_lock lock(s.ddl_mu);
  auto staged = s.Get(s.meta, kStagedKey);
  if (staged.status().code() == Code::kNotFound) {
    return Status::FailedPrecondition("no complete state image is staged");
  }
  BULWARK_RETURN_IF_ERROR(staged.status());
  // The shred waits for the raft log to drop everything up to the image's
  // index (the runner does that right after this install): the entries it
  // held from before may carry the purged keys.
  const std::string staged_meta(1, static_cast<char>(Tag::kMeta));
  uint64_t image_index = 0;
  auto staged_applied = s.Get(s.staging, staged_meta + std::string(kAppliedIndexKey));
  if (staged_applied.ok()) {
    std::string_view v = *staged_applied;
    if (!GetFixed64(v, image_index)) return Status::Corruption("staged image has a malformed applied index");
  } else if (staged_applied.status().code() != Code::kNotFound) {
    return staged_applied.status();
  }
  BULWARK_RETURN_IF_ERROR(RunInstall(s, InstallSource{}, staged_meta, image_index));
  return s.applied_index.load();
}

// ---- Region images ---------------------------------------------------------

std::string DocumentStore::NewRegionImageId() {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  std::string time;
  PutBigEndian64(time, static_cast<uint64_t>(ms));
  return crypto::HexEncode(time) + crypto::HexEncode(crypto::RandomBytes(8));
}

Status DocumentStore::BeginRegionImage(std::string_view id) {
  if (!ValidRegionImageId(id)) return Status::InvalidArgument("malformed region image id");
  Impl& s = *impl_;
  rocksdb::WriteBatch b;
  b.DeleteRange(s.staging, RegionSlotPrefix(id), RegionSlotEnd(id));
  b.Delete(s.meta, RegionMarkKey(id));
  return FromRocks(s.db->Write(rocksdb::WriteOptions(), &b), "cannot stage the region image");
}

Status DocumentStore::AddRegionImageChunk(std::string_view id, std::string_view chunk) {
  if (!ValidRegionImageId(id)) return Status::InvalidArgument("malformed region image id");
  std::shared_lock lock(impl_->ddl_mu);  // not across a master-key rotation
  return StageChunk(*impl_, RegionSlotPrefix(id), chunk);
}

Result<GeoPosition> DocumentStore::FinishRegionImage(std::string_view id) {
  if (!ValidRegionImageId(id)) return Status::InvalidArgument("malformed region image id");
  Impl& s = *impl_;
  auto applied = s.Get(s.staging, RegionSlotPrefix(id) + static_cast<char>(Tag::kMeta) + std::string(kAppliedIndexKey));
  if (applied.status().code() == Code::kNotFound) {
    return Status::Corruption("the region image holds no applied-index record");
  }
  BULWARK_RETURN_IF_ERROR(applied.status());
  BULWARK_ASSIGN_OR_RETURN(AppliedRecord r, DecodeAppliedRecord(*applied));
  // Everything up to the image's applied index is in it, so the stream
  // resumes after that index (the last account command may be older).
  const GeoPosition pos{r.geo.glsn, r.geo.epoch, r.index};
  rocksdb::WriteBatch b;
  b.Put(s.meta, RegionMarkKey(id), EncodeAppliedRecord({r.index, pos}));
  BULWARK_RETURN_IF_ERROR(FromRocks(s.db->Write(Synced(), &b), "cannot stage the region image"));
  return pos;
}

Result<GeoPosition> DocumentStore::RegionImagePosition(std::string_view id) const {
  if (!ValidRegionImageId(id)) return Status::InvalidArgument("malformed region image id");
  BULWARK_ASSIGN_OR_RETURN(std::string mark, impl_->Get(impl_->meta, RegionMarkKey(id)));
  BULWARK_ASSIGN_OR_RETURN(AppliedRecord r, DecodeAppliedRecord(mark));
  return r.geo;
}

Status DocumentStore::WriteRegionImage(std::string_view id, size_t max_chunk,
                                       const std::function<Status(std::string_view)>& emit) const {
  if (!ValidRegionImageId(id)) return Status::InvalidArgument("malformed region image id");
  const Impl& s = *impl_;
  ImageWriter out(s, max_chunk, emit);
  const rocksdb::ReadOptions& ro = out.read_options();
  std::string mark;
  rocksdb::Status found = s.db->Get(ro, s.meta, RegionMarkKey(id), &mark);
  if (found.IsNotFound()) return Status::NotFound("this node holds no complete region image " + std::string(id));
  BULWARK_RETURN_IF_ERROR(FromRocks(found, "cannot read the region image mark"));
  auto add = [&](Tag tag, std::string_view k, std::string_view v) { return out.Add(tag, k, v); };
  const std::string prefix = RegionSlotPrefix(id), end = RegionSlotEnd(id);
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(ro, s.staging));
  for (it->Seek(prefix); it->Valid() && it->key().ToStringView() < end; it->Next()) {
    std::string_view k = it->key().ToStringView().substr(prefix.size());
    if (k.empty()) return Status::Corruption("staged region image record has an empty key");
    const auto tag = static_cast<Tag>(k[0]);
    k.remove_prefix(1);
    const std::string_view v = it->value().ToStringView();
    // Staged keys are wrapped under this node's master key: they travel raw,
    // as in any image, and the receiver wraps them under its own.
    if (tag == Tag::kMeta && k.substr(0, kDataKeyMetaPrefix.size()) == kDataKeyMetaPrefix) {
      BULWARK_ASSIGN_OR_RETURN(auto wrapped, DecodeStagedDataKey(k, v));
      BULWARK_ASSIGN_OR_RETURN(auto raw, s.keyring.UnwrapDataKey(wrapped));
      std::string value;
      PutFixed64(value, static_cast<uint64_t>(wrapped.created_unix_s));
      value.append(raw.view());
      Status st = add(Tag::kDataKey, k, value);
      sodium_memzero(value.data(), value.size());
      BULWARK_RETURN_IF_ERROR(st);
      continue;
    }
    if (tag == Tag::kMeta && k.substr(0, kAccountKeyMetaPrefix.size()) == kAccountKeyMetaPrefix) {
      BULWARK_ASSIGN_OR_RETURN(StagedAccountKey key, UnwrapStagedAccountKey(s, k, v));
      std::string value = EncodeAccountKeyValue(key.version, key.created, key.raw.view());
      Status st = add(Tag::kAccountKey, k, value);
      sodium_memzero(value.data(), value.size());
      BULWARK_RETURN_IF_ERROR(st);
      continue;
    }
    if (tag != Tag::kMeta && tag != Tag::kItem && tag != Tag::kChange) {
      return Status::Corruption("staged region image record has an unknown tag");
    }
    BULWARK_RETURN_IF_ERROR(add(tag, k, v));
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the staged region image"));
  return out.Flush();
}

Result<GeoPosition> DocumentStore::InstallRegionImage(std::string_view id, uint64_t index) {
  if (!ValidRegionImageId(id)) return Status::InvalidArgument("malformed region image id");
  Impl& s = *impl_;
  std::unique_lock lock(s.ddl_mu);
  auto mark = s.Get(s.meta, RegionMarkKey(id));
  if (mark.status().code() == Code::kNotFound) {
    return Status::FailedPrecondition("region image " + std::string(id) + " is not staged here");
  }
  BULWARK_RETURN_IF_ERROR(mark.status());
  BULWARK_ASSIGN_OR_RETURN(AppliedRecord image, DecodeAppliedRecord(*mark));
  InstallSource src;
  src.region_id = std::string(id);
  src.local_applied = EncodeAppliedRecord({index, image.geo});
  auto conf = s.Get(s.meta, kAppliedConfKey);
  if (conf.ok()) {
    src.local_conf = std::move(conf).value();
  } else if (conf.status().code() != Code::kNotFound) {
    return conf.status();
  }
  BULWARK_RETURN_IF_ERROR(
      RunInstall(s, src, RegionSlotPrefix(id) + static_cast<char>(Tag::kMeta), /*shred_index=*/index));
  return image.geo;
}

namespace {
struct StagedImage {
  uint64_t installed = 0;    // the raft index it was installed at (0: not installed)
  int64_t installed_ms = 0;  // when (this node's clock)
};

// The region images staged here, by id.
Result<std::map<std::string, StagedImage>> StagedRegionImages(const DocumentStore::Impl& s) {
  std::map<std::string, StagedImage> out;
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.staging));
  for (it->Seek(std::string(1, kRegionSlot)); it->Valid(); it->Seek(RegionSlotEnd(out.rbegin()->first))) {
    const std::string_view k = it->key().ToStringView();
    if (k.empty() || k[0] != kRegionSlot || k.size() < 1 + kRegionImageIdChars) break;
    out[std::string(k.substr(1, kRegionImageIdChars))] = {};
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the staged images"));
  for (auto& [id, image] : out) {
    auto v = s.Get(s.meta, RegionInstalledKey(id));
    if (v.ok()) {
      std::string_view in = *v;
      uint64_t ms = 0;
      if (!GetFixed64(in, image.installed) || !GetFixed64(in, ms)) {
        return Status::Corruption("malformed region image install record");
      }
      image.installed_ms = static_cast<int64_t>(ms);
    } else if (v.status().code() != Code::kNotFound) {
      return v.status();
    }
  }
  return out;
}

int64_t RegionImageIdMs(std::string_view id) {
  auto raw = crypto::HexDecode(id.substr(0, 16));
  if (!raw.ok() || raw->size() != 8) return 0;
  std::string_view in = *raw;
  uint64_t ms = 0;
  GetBigEndian64(in, ms);
  return static_cast<int64_t>(ms);
}
}  // namespace

Status DocumentStore::DropRegionImage(std::string_view id) {
  if (!ValidRegionImageId(id)) return Status::InvalidArgument("malformed region image id");
  Impl& s = *impl_;
  rocksdb::WriteBatch b;
  b.DeleteRange(s.staging, RegionSlotPrefix(id), RegionSlotEnd(id));
  b.Delete(s.meta, RegionMarkKey(id));
  b.Delete(s.meta, RegionInstalledKey(id));
  return FromRocks(s.db->Write(rocksdb::WriteOptions(), &b), "cannot drop the region image");
}

Status DocumentStore::DropRegionImages(uint64_t compacted_through, std::chrono::milliseconds keep) {
  BULWARK_ASSIGN_OR_RETURN(auto images, StagedRegionImages(*impl_));
  const int64_t now_ms = UnixNowMillis();
  for (const auto& [id, image] : images) {
    const bool done =
        image.installed > 0 && image.installed <= compacted_through && now_ms - image.installed_ms >= keep.count();
    const bool abandoned = image.installed == 0 && now_ms - RegionImageIdMs(id) > kRegionImageMaxAgeMs;
    if (done || abandoned) BULWARK_RETURN_IF_ERROR(DropRegionImage(id));
  }
  return Status::Ok();
}

Status StagingHoldsPurgedKeys(const DocumentStore::Impl& s, uint64_t purge_index) {
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.staging));
  it->Seek("");
  if (it->Valid() && it->key().ToStringView() < kRaftSlotEnd) {
    return Status::Unavailable("a state image is staged; the shred resumes once it is installed");
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the staging area"));
  // A region image installed after the purge was taken after it (it is
  // installed only past this region's position); any other may hold the
  // purged keys until the log drops its install entry.
  BULWARK_ASSIGN_OR_RETURN(auto images, StagedRegionImages(s));
  for (const auto& [id, image] : images) {
    if (image.installed <= purge_index) {
      return Status::Unavailable("region image " + id + " may hold purged keys; the shred resumes once it is dropped");
    }
  }
  return Status::Ok();
}

Status RewrapStagedKeys(const DocumentStore::Impl& s, const crypto::MasterKey& next, std::vector<Mutation>& m) {
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.staging));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view k = it->key().ToStringView();
    if (!k.empty() && k[0] == kRegionSlot) k.remove_prefix(std::min(k.size(), 1 + kRegionImageIdChars));
    if (k.empty() || static_cast<Tag>(k[0]) != Tag::kMeta) continue;
    k.remove_prefix(1);
    const std::string_view v = it->value().ToStringView();
    if (k.substr(0, kDataKeyMetaPrefix.size()) == kDataKeyMetaPrefix) {
      BULWARK_ASSIGN_OR_RETURN(auto wrapped, DecodeStagedDataKey(k, v));
      BULWARK_ASSIGN_OR_RETURN(auto next_wrapped, s.keyring.RewrapDataKey(wrapped, next));
      m.push_back({Mutation::Kind::kPut, s.staging, it->key().ToString(), next_wrapped.EncodeValue()});
    } else if (k.substr(0, kAccountKeyMetaPrefix.size()) == kAccountKeyMetaPrefix) {
      BULWARK_ASSIGN_OR_RETURN(StagedAccountKey key, UnwrapStagedAccountKey(s, k, v));
      m.push_back(
          {Mutation::Kind::kPut, s.staging, it->key().ToString(),
           EncodeAccountKeyValue(key.version, key.created, next.Wrap(key.raw.view(), AccountKeyContext(key.name)))});
    }
  }
  return FromRocks(it->status(), "cannot read the staged images");
}

Status ResumeStateImageInstall(DocumentStore::Impl& s) {
  auto installing = s.Get(s.meta, kInstallingKey);
  if (installing.status().code() == Code::kNotFound) return Status::Ok();
  BULWARK_RETURN_IF_ERROR(installing.status());
  BULWARK_ASSIGN_OR_RETURN(InstallSource src, InstallSource::DecodeMark(*installing));
  return CopyStagingIn(s, src);
}

}  // namespace bulwark::storage
