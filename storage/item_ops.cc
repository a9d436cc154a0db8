// Item operations of DocumentStore: create, upsert, replace, read, delete, list.
#include <nlohmann/json.hpp>

#include "common/coding.h"
#include "crypto/item_seal.h"
#include "storage/item_rules.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

using nlohmann::json;

// The partition key and id back out of an item key (rid | u32 len | pk | id).
bool SplitItemKey(std::string_view key, std::string_view& partition_key, std::string_view& id) {
  std::string_view rid;
  return ParseItemKey(key, rid, partition_key, id);
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

Result<WriteCommand> DocumentStore::PrepareItemWrite(WriteCommand::Kind kind, std::string_view db,
                                                     std::string_view container, std::string_view text,
                                                     std::string_view replace_id, std::string_view if_match,
                                                     std::string* stored_json) const {
  if (kind != WriteCommand::Kind::kCreateItem && kind != WriteCommand::Kind::kUpsertItem &&
      kind != WriteCommand::Kind::kReplaceItem) {
    return Status::InvalidArgument("not an item write");
  }
  if (kind == WriteCommand::Kind::kReplaceItem) BULWARK_RETURN_IF_ERROR(ValidateId(replace_id, "item id"));
  json doc;
  BULWARK_RETURN_IF_ERROR(ParseItemJson(text, doc));
  std::shared_lock ddl(impl_->ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto c, impl_->FindContainer(db, container));
  BULWARK_ASSIGN_OR_RETURN(ItemIdentity who, ExtractIdentity(doc, c->info.partition_key_path));
  if (kind == WriteCommand::Kind::kReplaceItem && who.id != replace_id) {
    return Status::InvalidArgument("the item's id '" + who.id + "' differs from the id being replaced");
  }
  WriteCommand cmd;
  cmd.kind = kind;
  cmd.database = db;
  cmd.container = container;
  cmd.rid = c->rid_raw;
  cmd.fence = c->fence;
  cmd.etag = NewEtag();
  cmd.ts = NowUnixSeconds();
  cmd.if_match = if_match;
  doc["_etag"] = cmd.etag;
  doc["_ts"] = cmd.ts;
  std::string body = doc.dump();
  if (body.size() > kMaxItemBytes) {
    return Status::TooLarge("item is " + std::to_string(body.size()) + " bytes with system properties; the limit is " +
                            std::to_string(kMaxItemBytes));
  }
  BULWARK_ASSIGN_OR_RETURN(cmd.sealed,
                           impl_->SealRecord(*c, who.partition_key, who.id, EncodeItemRecord(cmd.etag, cmd.ts, body)));
  cmd.partition_key = std::move(who.partition_key);
  cmd.item_id = std::move(who.id);
  if (stored_json != nullptr) *stored_json = std::move(body);
  return cmd;
}

Result<WriteCommand> DocumentStore::PrepareDeleteItem(std::string_view db, std::string_view container,
                                                      std::string_view partition_key, std::string_view id,
                                                      std::string_view if_match) const {
  BULWARK_RETURN_IF_ERROR(ValidateId(id, "item id"));
  BULWARK_ASSIGN_OR_RETURN(std::string pk, CanonicalPartitionKey(partition_key));
  std::shared_lock ddl(impl_->ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto c, impl_->FindContainer(db, container));
  WriteCommand cmd;
  cmd.kind = WriteCommand::Kind::kDeleteItem;
  cmd.database = db;
  cmd.container = container;
  cmd.rid = c->rid_raw;
  cmd.fence = c->fence;
  cmd.partition_key = std::move(pk);
  cmd.item_id = id;
  cmd.if_match = if_match;
  cmd.ts = NowUnixSeconds();
  return cmd;
}

Result<CommandEffect> ItemCommandEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  auto found = CommandContainer(s, cmd);
  if (!found.ok()) {
    e.outcome.status = found.status();
    return e;
  }
  const CachedContainer& c = **found;
  std::string key = ItemKey(c.rid_raw, cmd.partition_key, cmd.item_id);
  auto existing = s.Get(s.items, key);
  if (!existing.ok() && existing.status().code() != Code::kNotFound) return existing.status();
  const bool is_delete = cmd.kind == WriteCommand::Kind::kDeleteItem;
  if (cmd.kind == WriteCommand::Kind::kCreateItem && existing.ok()) {
    e.outcome.status = Status::AlreadyExists("item '" + ItemPath(c, cmd.item_id) + "' already exists");
    return e;
  }
  if (cmd.kind == WriteCommand::Kind::kReplaceItem || is_delete) {
    if (!existing.ok()) {
      e.outcome.status = Status::NotFound("item '" + ItemPath(c, cmd.item_id) + "' does not exist");
      return e;
    }
    Status match = CheckIfMatch(s, c, cmd.partition_key, cmd.item_id, *existing, cmd.if_match);
    if (match.code() == Code::kCorruption) return match;  // local damage, not an outcome
    if (!match.ok()) {
      e.outcome.status = match;
      return e;
    }
  }
  e.change.emplace();
  ChangeRecord& change = *e.change;
  change.op = is_delete ? ChangeOp::kDeleteItem : ChangeOp::kPutItem;
  change.database = cmd.database;
  change.container = cmd.container;
  change.container_rid = c.rid_raw;
  change.partition_key = cmd.partition_key;
  change.item_id = cmd.item_id;
  change.ts = cmd.ts;
  e.outcome.ts = cmd.ts;
  if (is_delete) {
    e.mutations.push_back({Mutation::Kind::kDelete, s.items, std::move(key), {}});
  } else {
    change.etag = cmd.etag;
    change.sealed_value = cmd.sealed;
    e.outcome.etag = cmd.etag;
    e.mutations.push_back({Mutation::Kind::kPut, s.items, std::move(key), cmd.sealed});
  }
  return e;
}

namespace {

Result<ItemResult> WriteItem(DocumentStore& store, WriteCommand::Kind kind, std::string_view db,
                             std::string_view container, std::string_view text, std::string_view replace_id,
                             std::string_view if_match) {
  ItemResult result;
  BULWARK_ASSIGN_OR_RETURN(WriteCommand cmd,
                           store.PrepareItemWrite(kind, db, container, text, replace_id, if_match, &result.json));
  result.etag = cmd.etag;
  result.ts = cmd.ts;
  BULWARK_ASSIGN_OR_RETURN(ApplyOutcome out, store.Apply(0, std::move(cmd)));
  BULWARK_RETURN_IF_ERROR(out.status);
  result.lsn = out.lsn;
  return result;
}

}  // namespace

Result<ItemResult> DocumentStore::CreateItem(std::string_view db, std::string_view container, std::string_view json) {
  return WriteItem(*this, WriteCommand::Kind::kCreateItem, db, container, json, {}, {});
}

Result<ItemResult> DocumentStore::UpsertItem(std::string_view db, std::string_view container, std::string_view json) {
  return WriteItem(*this, WriteCommand::Kind::kUpsertItem, db, container, json, {}, {});
}

Result<ItemResult> DocumentStore::ReplaceItem(std::string_view db, std::string_view container, std::string_view id,
                                              std::string_view json, std::string_view if_match) {
  return WriteItem(*this, WriteCommand::Kind::kReplaceItem, db, container, json, id, if_match);
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
  BULWARK_ASSIGN_OR_RETURN(WriteCommand cmd, PrepareDeleteItem(db, container, partition_key, id, if_match));
  BULWARK_ASSIGN_OR_RETURN(ApplyOutcome out, Apply(0, std::move(cmd)));
  return out.status;
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
