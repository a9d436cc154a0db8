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
#include <mutex>
#include <set>
#include <shared_mutex>

#include <sodium.h>
#include <nlohmann/json.hpp>

#include "common/coding.h"
#include "crypto/secret.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

enum class Tag : uint8_t { kMeta = 1, kItem = 2, kChange = 3, kDataKey = 4, kAccountKey = 5 };

constexpr std::string_view kStagedKey = "s/staged";          // a complete image is staged
constexpr std::string_view kInstallingKey = "s/installing";  // an install is under way
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
  b.DeleteRange(s.staging, "", kAllKeysEnd);
  b.Delete(s.meta, std::string(kStagedKey));
  return FromRocks(s.db->Write(Synced(), &b), "cannot clear the image staging area");
}

// Steps 2 to 4 of an install; REQUIRES the "installing" mark is durable.
Status CopyStagingIn(DocumentStore::Impl& s) {
  {
    rocksdb::WriteBatch b;
    for (std::string_view p : kReplicatedMetaPrefixes) b.DeleteRange(s.meta, std::string(p), PrefixEnd(p));
    b.DeleteRange(s.items, "", kAllKeysEnd);
    b.DeleteRange(s.changelog, "", kAllKeysEnd);
    BULWARK_RETURN_IF_ERROR(FromRocks(s.db->Write(rocksdb::WriteOptions(), &b), "cannot clear the old state"));
  }
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.staging));
  rocksdb::WriteBatch b;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view k = it->key().ToStringView();
    if (k.empty()) return Status::Corruption("staged image record has an empty key");
    const auto tag = static_cast<Tag>(k[0]);
    k.remove_prefix(1);
    rocksdb::ColumnFamilyHandle* cf = tag == Tag::kMeta ? s.meta : tag == Tag::kItem ? s.items : s.changelog;
    if (tag != Tag::kMeta && tag != Tag::kItem && tag != Tag::kChange) {
      return Status::Corruption("staged image record has an unknown tag");
    }
    b.Put(cf, rocksdb::Slice(k.data(), k.size()), it->value());
    if (b.GetDataSize() > kInstallBatchBytes) {
      BULWARK_RETURN_IF_ERROR(FromRocks(s.db->Write(rocksdb::WriteOptions(), &b), "cannot install the image"));
      b.Clear();
    }
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the staged image"));
  b.DeleteRange(s.staging, "", kAllKeysEnd);
  b.Delete(s.meta, std::string(kStagedKey));
  b.Delete(s.meta, std::string(kInstallingKey));
  return FromRocks(s.db->Write(Synced(), &b), "cannot install the image");
}

}  // namespace

Result<uint64_t> DocumentStore::WriteStateImage(size_t max_chunk,
                                                const std::function<Status(std::string_view)>& emit) const {
  const Impl& s = *impl_;
  // One RocksDB snapshot: every Apply is one batch, so any point is a
  // consistent state with its own applied index.
  const rocksdb::Snapshot* snap = s.db->GetSnapshot();
  struct Release {
    const Impl& s;
    const rocksdb::Snapshot* snap;
    ~Release() { s.db->ReleaseSnapshot(snap); }
  } release{s, snap};
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  ro.fill_cache = false;

  uint64_t applied = 0;
  std::string chunk;
  auto flush = [&](bool force) -> Status {
    if (chunk.empty() || (!force && chunk.size() < max_chunk)) return Status::Ok();
    Status st = emit(chunk);
    chunk.clear();
    return st;
  };
  auto add = [&](Tag tag, std::string_view k, std::string_view v) -> Status {
    if (!chunk.empty() && chunk.size() + k.size() + v.size() + 9 > max_chunk) BULWARK_RETURN_IF_ERROR(flush(true));
    AppendRecord(chunk, tag, k, v);
    return Status::Ok();
  };

  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(ro, s.meta));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view k = it->key().ToStringView();
    if (!IsReplicatedMeta(k)) continue;
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
      BULWARK_RETURN_IF_ERROR(add(tag, it->key().ToStringView(), it->value().ToStringView()));
    }
    BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the state"));
  }
  BULWARK_RETURN_IF_ERROR(flush(true));
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
  Impl& s = *impl_;
  rocksdb::WriteBatch b;
  BULWARK_RETURN_IF_ERROR(
      ForEachImageRecord(in, [&](Tag tag, std::string_view k, std::string_view v, std::string_view) -> Status {
        // Keys arrive unwrapped and are staged as meta records wrapped under
        // this node's master key.
        std::string key(1, static_cast<char>(tag == Tag::kDataKey || tag == Tag::kAccountKey ? Tag::kMeta : tag));
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
  {
    rocksdb::WriteBatch b;
    b.Put(s.meta, std::string(kInstallingKey), "1");
    // Containers whose keys this node holds but the image does not were
    // purged in the meantime: this node's files may still hold their keys.
    BULWARK_ASSIGN_OR_RETURN(auto before, KeyedContainers(s.db.get(), s.meta, ""));
    BULWARK_ASSIGN_OR_RETURN(auto after,
                             KeyedContainers(s.db.get(), s.staging, std::string(1, static_cast<char>(Tag::kMeta))));
    // The shred waits for the raft log to drop everything up to the image's
    // index (the runner does that right after this install): the entries
    // it held from before may carry those keys.
    uint64_t image_index = 0;
    auto staged_applied =
        s.Get(s.staging, std::string(1, static_cast<char>(Tag::kMeta)) + std::string(kAppliedIndexKey));
    if (staged_applied.ok()) {
      std::string_view v = *staged_applied;
      if (!GetFixed64(v, image_index)) return Status::Corruption("staged image has a malformed applied index");
    } else if (staged_applied.status().code() != Code::kNotFound) {
      return staged_applied.status();
    }
    for (const std::string& rid : before) {
      if (after.count(rid) > 0) continue;
      std::string index;
      PutFixed64(index, image_index);
      b.Put(s.meta, std::string(kPendingShredMetaPrefix) + rid, index);
    }
    BULWARK_RETURN_IF_ERROR(FromRocks(s.db->Write(Synced(), &b), "cannot start the install"));
  }
  BULWARK_RETURN_IF_ERROR(CopyStagingIn(s));
  BULWARK_RETURN_IF_ERROR(LoadKeysAndContainers(s));
  BULWARK_ASSIGN_OR_RETURN(uint64_t lsn, LastLsn(s));
  s.queue->ResetLastLsn(lsn);
  BULWARK_ASSIGN_OR_RETURN(AppliedRecord applied, LoadAppliedIndex(s));
  PublishApplied(s, applied);
  BULWARK_RETURN_IF_ERROR(RefreshPendingShreds(s));
  // The image may hold values under versions its sender had not re-sealed yet.
  BULWARK_RETURN_IF_ERROR(ScheduleResealWhereNeeded(s));
  s.settings_generation.fetch_add(1);
  return applied.index;
}

Status ResumeStateImageInstall(DocumentStore::Impl& s) {
  auto installing = s.Get(s.meta, kInstallingKey);
  if (installing.status().code() == Code::kNotFound) return Status::Ok();
  BULWARK_RETURN_IF_ERROR(installing.status());
  return CopyStagingIn(s);
}

}  // namespace bulwark::storage
