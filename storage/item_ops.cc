// Item operations of DocumentStore: create, upsert, replace, read, delete, list.
#include <nlohmann/json.hpp>

#include "common/coding.h"
#include "crypto/item_seal.h"
#include "storage/item_rules.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

using nlohmann::json;

enum class WriteMode { kCreate, kUpsert, kReplace };

// The partition key and id back out of an item key (rid | u32 len | pk | id).
bool SplitItemKey(std::string_view key, std::string_view& partition_key, std::string_view& id) {
  if (key.size() < kContainerRidBytes) return false;
  key.remove_prefix(kContainerRidBytes);
  uint32_t len = 0;
  if (!GetBigEndian32(key, len) || len > key.size()) return false;
  partition_key = key.substr(0, len);
  id = key.substr(len);
  return true;
}

Status CheckIfMatch(const DocumentStore::Impl& s, const CachedContainer& c, std::string_view pk, std::string_view id,
                    std::string_view stored, std::string_view if_match) {
  if (if_match.empty()) return Status::Ok();
  BULWARK_ASSIGN_OR_RETURN(ItemRecord current, s.OpenRecord(c, pk, id, stored));
  if (current.etag != if_match) return Status::PreconditionFailed("the item's etag does not match If-Match");
  return Status::Ok();
}

std::string ItemPath(const CachedContainer& c, std::string_view id) {
  return "dbs/" + c.info.database + "/colls/" + c.info.id + "/docs/" + std::string(id);
}

}  // namespace

Result<std::string> DocumentStore::Impl::SealRecord(const CachedContainer& c, std::string_view partition_key,
                                                    std::string_view id, std::string_view record) const {
  if (!options.seal_items) return std::string(record);
  auto dek = keyring.Current(c.info.rid);
  if (dek == nullptr) return Status::Internal("container " + c.info.rid + " has no data key");
  return crypto::SealItem(*dek, {c.rid_raw, partition_key, id}, record);
}

Result<ItemRecord> DocumentStore::Impl::OpenRecord(const CachedContainer& c, std::string_view partition_key,
                                                   std::string_view id, std::string_view stored) const {
  if (!options.seal_items) return DecodeItemRecord(stored);
  BULWARK_ASSIGN_OR_RETURN(uint32_t version, crypto::SealedKeyVersion(stored));
  auto dek = keyring.Find(c.info.rid, version);
  if (dek == nullptr) {
    return Status::Corruption("item '" + std::string(id) + "' names data key version " + std::to_string(version) +
                              ", which this store does not have");
  }
  auto plain = crypto::OpenItem(*dek, {c.rid_raw, partition_key, id}, stored);
  if (!plain.ok()) return Status(plain.status()).WithContext("item '" + std::string(id) + "'");
  return DecodeItemRecord(std::move(plain).value());
}

namespace {

Result<ItemResult> WriteItem(DocumentStore::Impl& s, WriteMode mode, std::string_view db, std::string_view container,
                             std::string_view text, std::string_view replace_id, std::string_view if_match) {
  json doc;
  BULWARK_RETURN_IF_ERROR(ParseItemJson(text, doc));
  std::shared_lock ddl(s.ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto c, s.FindContainer(db, container));
  BULWARK_ASSIGN_OR_RETURN(ItemIdentity who, ExtractIdentity(doc, c->info.partition_key_path));
  if (mode == WriteMode::kReplace && who.id != replace_id) {
    return Status::InvalidArgument("the item's id '" + who.id + "' differs from the id being replaced");
  }

  ItemResult result;
  result.etag = NewEtag();
  result.ts = NowUnixSeconds();
  doc["_etag"] = result.etag;
  doc["_ts"] = result.ts;
  result.json = doc.dump();
  if (result.json.size() > kMaxItemBytes) {
    return Status::TooLarge("item is " + std::to_string(result.json.size()) +
                            " bytes with system properties; the limit is " + std::to_string(kMaxItemBytes));
  }
  BULWARK_ASSIGN_OR_RETURN(std::string sealed, s.SealRecord(*c, who.partition_key, who.id,
                                                            EncodeItemRecord(result.etag, result.ts, result.json)));
  std::string key = ItemKey(c->rid_raw, who.partition_key, who.id);

  std::lock_guard item_lock(s.ItemLock(key));
  auto existing = s.Get(s.items, key);
  if (!existing.ok() && existing.status().code() != Code::kNotFound) return existing.status();
  if (mode == WriteMode::kCreate && existing.ok()) {
    return Status::AlreadyExists("item '" + ItemPath(*c, who.id) + "' already exists");
  }
  if (mode == WriteMode::kReplace) {
    if (!existing.ok()) return Status::NotFound("item '" + ItemPath(*c, who.id) + "' does not exist");
    BULWARK_RETURN_IF_ERROR(CheckIfMatch(s, *c, who.partition_key, who.id, *existing, if_match));
  }

  ChangeRecord change;
  change.op = ChangeOp::kPutItem;
  change.database = db;
  change.container = container;
  change.container_rid = c->rid_raw;
  change.partition_key = who.partition_key;
  change.item_id = who.id;
  change.etag = result.etag;
  change.ts = result.ts;
  change.sealed_value = sealed;
  std::vector<Mutation> m{{Mutation::Kind::kPut, s.items, std::move(key), std::move(sealed)}};
  BULWARK_ASSIGN_OR_RETURN(result.lsn, s.queue->Commit(std::move(m), &change));
  return result;
}

}  // namespace

Result<ItemResult> DocumentStore::CreateItem(std::string_view db, std::string_view container, std::string_view json) {
  return WriteItem(*impl_, WriteMode::kCreate, db, container, json, {}, {});
}

Result<ItemResult> DocumentStore::UpsertItem(std::string_view db, std::string_view container, std::string_view json) {
  return WriteItem(*impl_, WriteMode::kUpsert, db, container, json, {}, {});
}

Result<ItemResult> DocumentStore::ReplaceItem(std::string_view db, std::string_view container, std::string_view id,
                                              std::string_view json, std::string_view if_match) {
  BULWARK_RETURN_IF_ERROR(ValidateId(id, "item id"));
  return WriteItem(*impl_, WriteMode::kReplace, db, container, json, id, if_match);
}

Result<ItemResult> DocumentStore::ReadItem(std::string_view db, std::string_view container,
                                           std::string_view partition_key, std::string_view id) const {
  BULWARK_RETURN_IF_ERROR(ValidateId(id, "item id"));
  BULWARK_ASSIGN_OR_RETURN(std::string pk, CanonicalPartitionKey(partition_key));
  std::shared_lock ddl(impl_->ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto c, impl_->FindContainer(db, container));
  auto stored = impl_->Get(impl_->items, ItemKey(c->rid_raw, pk, id));
  if (stored.status().code() == Code::kNotFound) {
    return Status::NotFound("item '" + ItemPath(*c, id) + "' does not exist");
  }
  BULWARK_RETURN_IF_ERROR(stored.status());
  BULWARK_ASSIGN_OR_RETURN(ItemRecord record, impl_->OpenRecord(*c, pk, id, *stored));
  return ItemResult{std::move(record.body), std::move(record.etag), record.ts, 0};
}

Status DocumentStore::DeleteItem(std::string_view db, std::string_view container, std::string_view partition_key,
                                 std::string_view id, std::string_view if_match) {
  BULWARK_RETURN_IF_ERROR(ValidateId(id, "item id"));
  BULWARK_ASSIGN_OR_RETURN(std::string pk, CanonicalPartitionKey(partition_key));
  std::shared_lock ddl(impl_->ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto c, impl_->FindContainer(db, container));
  std::string key = ItemKey(c->rid_raw, pk, id);
  std::lock_guard item_lock(impl_->ItemLock(key));
  auto stored = impl_->Get(impl_->items, key);
  if (stored.status().code() == Code::kNotFound) {
    return Status::NotFound("item '" + ItemPath(*c, id) + "' does not exist");
  }
  BULWARK_RETURN_IF_ERROR(stored.status());
  BULWARK_RETURN_IF_ERROR(CheckIfMatch(*impl_, *c, pk, id, *stored, if_match));
  ChangeRecord change;
  change.op = ChangeOp::kDeleteItem;
  change.database = db;
  change.container = container;
  change.container_rid = c->rid_raw;
  change.partition_key = pk;
  change.item_id = id;
  change.ts = NowUnixSeconds();
  std::vector<Mutation> m{{Mutation::Kind::kDelete, impl_->items, std::move(key), {}}};
  return impl_->queue->Commit(std::move(m), &change).status();
}

Result<ItemPage> DocumentStore::ListItems(std::string_view db, std::string_view container,
                                          const ListOptions& options) const {
  if (options.max_items == 0 || options.max_items > kMaxPageItems) {
    return Status::InvalidArgument("max_items must be between 1 and " + std::to_string(kMaxPageItems));
  }
  std::shared_lock ddl(impl_->ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto c, impl_->FindContainer(db, container));
  std::string prefix = c->rid_raw;
  if (options.partition_key) {
    BULWARK_ASSIGN_OR_RETURN(std::string pk, CanonicalPartitionKey(*options.partition_key));
    prefix = ItemPartitionPrefix(c->rid_raw, pk);
  }
  std::string resume;
  if (!options.continuation.empty()) {
    BULWARK_ASSIGN_OR_RETURN(resume, DecodeContinuation(options.continuation));
    if (resume.compare(0, prefix.size(), prefix) != 0) {
      return Status::InvalidArgument("continuation token does not belong to this listing");
    }
  }

  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->items));
  if (resume.empty()) {
    it->Seek(prefix);
  } else {
    it->Seek(resume);
    if (it->Valid() && it->key().ToStringView() == resume) it->Next();
  }
  ItemPage page;
  size_t bytes = 0;
  std::string last_key;
  for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (page.items.size() >= options.max_items || bytes >= kMaxPageBytes) {
      page.continuation = EncodeContinuation(last_key);
      break;
    }
    std::string_view pk, id;
    if (!SplitItemKey(it->key().ToStringView(), pk, id)) return Status::Corruption("malformed item key");
    BULWARK_ASSIGN_OR_RETURN(ItemRecord record, impl_->OpenRecord(*c, pk, id, it->value().ToStringView()));
    bytes += record.body.size();
    page.items.push_back(std::move(record.body));
    last_key = it->key().ToString();
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot list items"));
  return page;
}

}  // namespace bulwark::storage
