#include "storage/document_store.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <nlohmann/json.hpp>

#include "common/coding.h"
#include "crypto/secret.h"
#include "storage/item_rules.h"
#include "storage/rocks_logger.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

using nlohmann::json;

constexpr int kStoreFormat = 1;
constexpr std::string_view kKeyCheckContext = "bulwark.keycheck.v1";
constexpr size_t kKeyCheckBytes = 32;
constexpr size_t kBlockCacheBytes = 64 * 1024 * 1024;
constexpr const char* kMetaCf = "meta";
constexpr const char* kItemsCf = "items";
constexpr const char* kChangeLogCf = "changelog";

std::string ContainerCacheKey(std::string_view db, std::string_view container) {
  std::string k(db);
  k += '/';
  k += container;
  return k;
}

// The key check: a random secret wrapped by the master key, and the key's id.
// `wrap` is the master key's Wrap (the keyring's or a new key's).
template <typename WrapFn>
std::string EncodeKeyCheck(std::string_view master_id, WrapFn&& wrap) {
  const crypto::SecretBytes check = crypto::SecretBytes::Random(kKeyCheckBytes);
  std::string out;
  PutLengthPrefixed(out, master_id);
  out += wrap(check.view(), kKeyCheckContext);
  return out;
}

// Checks the stored key check against the loaded master key.
Status VerifyKeyCheck(std::string_view stored, const crypto::Keyring& keyring) {
  std::string_view id;
  if (!GetLengthPrefixed(stored, id, 64)) return Status::Corruption("the store's master-key check is malformed");
  if (id != keyring.master_key_id()) {
    return Status::FailedPrecondition("wrong master key: this store was created with master key " + std::string(id) +
                                      ", but the key given is " + keyring.master_key_id());
  }
  auto check = keyring.UnwrapSecret(stored, kKeyCheckContext);
  if (!check.ok()) return Status::Corruption("the store's master-key check failed authentication");
  return Status::Ok();
}

rocksdb::Options MakeRocksOptions() {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  o.max_background_jobs = 2;
  o.info_log = NewRocksLogger();  // no plaintext LOG file beside the data
  // A torn record at the WAL's tail (a crash mid-write of an unacknowledged
  // write) is dropped; a damaged record anywhere else refuses the open
  // rather than silently losing the writes after it.
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  return o;
}

rocksdb::ColumnFamilyOptions ItemsCfOptions(const rocksdb::Options& base) {
  rocksdb::ColumnFamilyOptions cf(base);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));  // point reads skip most SSTs
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

json DatabaseJson(const DatabaseInfo& d) { return {{"id", d.id}, {"_etag", d.etag}, {"_ts", d.ts}}; }

Result<DatabaseInfo> ParseDatabase(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("id"))
    return Status::Corruption("database record is malformed");
  return DatabaseInfo{j.value("id", ""), j.value("_etag", ""), j.value("_ts", int64_t{0})};
}

json ContainerJson(const ContainerInfo& c) {
  return {{"id", c.id},
          {"database", c.database},
          {"partitionKey", {{"paths", {c.partition_key_path}}, {"kind", "Hash"}}},
          {"_rid", c.rid},
          {"_etag", c.etag},
          {"_ts", c.ts}};
}

Result<CachedContainer> ParseContainer(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  const Status bad = Status::Corruption("container record is malformed");
  if (j.is_discarded() || !j.is_object()) return bad;
  try {
    CachedContainer c;
    c.info.id = j.at("id").get<std::string>();
    c.info.database = j.at("database").get<std::string>();
    c.info.partition_key_path = j.at("partitionKey").at("paths").at(0).get<std::string>();
    c.info.rid = j.at("_rid").get<std::string>();
    c.info.etag = j.at("_etag").get<std::string>();
    c.info.ts = j.at("_ts").get<int64_t>();
    auto raw = crypto::HexDecode(c.info.rid);
    if (!raw.ok() || raw->size() != kContainerRidBytes) return bad;
    c.rid_raw = std::move(raw).value();
    return c;
  } catch (const std::exception&) {
    return bad;  // exceptions stop here: a malformed record is a typed error
  }
}

}  // namespace

int64_t NowUnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string NewEtag() { return "\"" + crypto::HexEncode(crypto::RandomBytes(16)) + "\""; }

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  const std::string msg = std::string(what) + ": " + s.ToString();
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsNotFound()) return Status::NotFound(msg);
  if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
  return Status::IOError(msg);
}

DocumentStore::Impl::~Impl() {
  if (db) {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    (void)db->Close();
  }
}

Result<std::string> DocumentStore::Impl::Get(rocksdb::ColumnFamilyHandle* cf, std::string_view key) const {
  std::string value;
  const rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf, rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return Status::NotFound("not found");
  if (!s.ok()) return FromRocks(s, "read failed");
  return value;
}

Result<std::shared_ptr<const CachedContainer>> DocumentStore::Impl::FindContainer(std::string_view db,
                                                                                  std::string_view container) const {
  auto it = containers.find(ContainerCacheKey(db, container));
  if (it == containers.end()) {
    return Status::NotFound("container 'dbs/" + std::string(db) + "/colls/" + std::string(container) +
                            "' does not exist");
  }
  return it->second;
}

DocumentStore::DocumentStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DocumentStore::~DocumentStore() = default;

namespace {

// First open of a new store: record its format and the master-key check.
Status InitializeStore(DocumentStore::Impl& s) {
  const json format = {{"format", kStoreFormat}, {"sealed", s.options.seal_items}};
  rocksdb::WriteBatch batch;
  batch.Put(s.meta, std::string(kFormatKey), format.dump());
  const std::string check = EncodeKeyCheck(s.keyring.master_key_id(), [&](std::string_view k, std::string_view ctx) {
    return s.keyring.WrapSecret(k, ctx);
  });
  batch.Put(s.meta, std::string(kKeyCheckKey), check);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(s.db->Write(wo, &batch), "cannot initialise the store");
}

Status CheckFormat(const DocumentStore::Impl& s, std::string_view stored) {
  json j = json::parse(stored, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("the store's format record is malformed");
  if (j.value("format", 0) != kStoreFormat) {
    return Status::FailedPrecondition("unsupported store format " + std::to_string(j.value("format", 0)));
  }
  if (j.value("sealed", true) != s.options.seal_items) {
    return Status::FailedPrecondition(s.options.seal_items ? "this store was created unsealed (benchmark mode)"
                                                           : "this store is sealed; it cannot open unsealed");
  }
  return Status::Ok();
}

Status LoadKeysAndContainers(DocumentStore::Impl& s) {
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.meta));
  for (it->Seek(rocksdb::Slice(kDataKeyMetaPrefix.data(), kDataKeyMetaPrefix.size()));
       it->Valid() && it->key().starts_with(rocksdb::Slice(kDataKeyMetaPrefix.data(), kDataKeyMetaPrefix.size()));
       it->Next()) {
    std::string rid;
    uint32_t version = 0;
    if (!ParseDataKeyMetaKey(it->key().ToStringView(), rid, version)) {
      return Status::Corruption("malformed data-key record key");
    }
    BULWARK_ASSIGN_OR_RETURN(auto record,
                             crypto::WrappedDataKey::DecodeValue(rid, version, it->value().ToStringView()));
    BULWARK_RETURN_IF_ERROR(s.keyring.Load(record));
  }
  const std::string cprefix(kContainerMetaPrefixAll);
  for (it->Seek(cprefix); it->Valid() && it->key().starts_with(cprefix); it->Next()) {
    BULWARK_ASSIGN_OR_RETURN(CachedContainer c, ParseContainer(it->value().ToStringView()));
    if (s.keyring.Current(c.info.rid) == nullptr) {
      return Status::Corruption("container '" + c.info.id + "' has no data key");
    }
    const std::string key = ContainerCacheKey(c.info.database, c.info.id);
    s.containers[key] = std::make_shared<const CachedContainer>(std::move(c));
  }
  return FromRocks(it->status(), "cannot read metadata");
}

Result<uint64_t> LastLsn(const DocumentStore::Impl& s) {
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.changelog));
  it->SeekToLast();
  if (!it->Valid()) {
    BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the change log"));
    return uint64_t{0};
  }
  return ParseLsnKey(it->key().ToStringView());
}

}  // namespace

Result<std::unique_ptr<DocumentStore>> DocumentStore::Open(const StoreOptions& options, crypto::MasterKey master_key) {
  BULWARK_RETURN_IF_ERROR(crypto::InitSodium());
  if (options.path.empty()) return Status::InvalidArgument("the store needs a data directory");
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);  // RocksDB makes only the last component
  if (ec) return Status::IOError("cannot create " + options.path + ": " + ec.message());
  auto impl = std::make_unique<Impl>(options, std::move(master_key));

  rocksdb::Options rocks = MakeRocksOptions();
  if (options.encrypt_files) {
    BULWARK_ASSIGN_OR_RETURN(impl->store_env, OpenStoreEnv(options.path, impl->keyring, /*create=*/true));
    rocks.env = impl->store_env.env.get();
  } else if (std::filesystem::exists(std::filesystem::path(options.path) / kStoreKeyFileName)) {
    return Status::FailedPrecondition("this store uses page encryption; it cannot open without it");
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(rocks)},
      {kMetaCf, rocksdb::ColumnFamilyOptions(rocks)},
      {kItemsCf, ItemsCfOptions(rocks)},
      {kChangeLogCf, rocksdb::ColumnFamilyOptions(rocks)},
  };
  rocksdb::DB* raw = nullptr;
  BULWARK_RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::Open(rocks, options.path, cfs, &impl->handles, &raw), "cannot open " + options.path));
  impl->db.reset(raw);
  impl->meta = impl->handles[1];
  impl->items = impl->handles[2];
  impl->changelog = impl->handles[3];

  auto format = impl->Get(impl->meta, kFormatKey);
  if (format.ok()) {
    BULWARK_RETURN_IF_ERROR(CheckFormat(*impl, *format));
    BULWARK_ASSIGN_OR_RETURN(std::string check, impl->Get(impl->meta, kKeyCheckKey));
    BULWARK_RETURN_IF_ERROR(VerifyKeyCheck(check, impl->keyring));
  } else if (format.status().code() == Code::kNotFound) {
    BULWARK_RETURN_IF_ERROR(InitializeStore(*impl));
  } else {
    return format.status();
  }
  BULWARK_RETURN_IF_ERROR(LoadKeysAndContainers(*impl));
  BULWARK_ASSIGN_OR_RETURN(uint64_t last_lsn, LastLsn(*impl));
  impl->queue = std::make_unique<CommitQueue>(impl->db.get(), impl->changelog, options.sync_writes, last_lsn);
  return std::unique_ptr<DocumentStore>(new DocumentStore(std::move(impl)));
}

// ---- Databases -------------------------------------------------------------

Result<DatabaseInfo> DocumentStore::CreateDatabase(std::string_view db) {
  BULWARK_RETURN_IF_ERROR(ValidateId(db, "database id"));
  std::unique_lock lock(impl_->ddl_mu);
  const std::string key = DatabaseMetaKey(db);
  auto existing = impl_->Get(impl_->meta, key);
  if (existing.ok()) return Status::AlreadyExists("database '" + std::string(db) + "' already exists");
  if (existing.status().code() != Code::kNotFound) return existing.status();
  DatabaseInfo info{std::string(db), NewEtag(), NowUnixSeconds()};
  ChangeRecord change;
  change.op = ChangeOp::kCreateDatabase;
  change.database = db;
  change.etag = info.etag;
  change.ts = info.ts;
  std::vector<Mutation> m{{Mutation::Kind::kPut, impl_->meta, key, DatabaseJson(info).dump()}};
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), &change).status());
  return info;
}

Result<DatabaseInfo> DocumentStore::ReadDatabase(std::string_view db) const {
  auto value = impl_->Get(impl_->meta, DatabaseMetaKey(db));
  if (value.status().code() == Code::kNotFound) {
    return Status::NotFound("database '" + std::string(db) + "' does not exist");
  }
  if (!value.ok()) return value.status();
  return ParseDatabase(*value);
}

Result<std::vector<DatabaseInfo>> DocumentStore::ListDatabases() const {
  std::vector<DatabaseInfo> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
  const std::string prefix(kDatabaseMetaPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    BULWARK_ASSIGN_OR_RETURN(DatabaseInfo d, ParseDatabase(it->value().ToStringView()));
    out.push_back(std::move(d));
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot list databases"));
  return out;
}

namespace {
// Mutations that remove one container and everything in it. Its data keys
// stay (they are needed to read its change-log records) until it is purged.
void AppendContainerRemoval(const DocumentStore::Impl& s, const CachedContainer& c, std::vector<Mutation>& m) {
  m.push_back({Mutation::Kind::kDeleteRange, s.items, c.rid_raw, c.rid_raw + "\xff"});
  m.push_back({Mutation::Kind::kDelete, s.meta, ContainerMetaKey(c.info.database, c.info.id), {}});
}
}  // namespace

Status DocumentStore::DeleteDatabase(std::string_view db) {
  std::unique_lock lock(impl_->ddl_mu);
  auto existing = impl_->Get(impl_->meta, DatabaseMetaKey(db));
  if (existing.status().code() == Code::kNotFound) {
    return Status::NotFound("database '" + std::string(db) + "' does not exist");
  }
  BULWARK_RETURN_IF_ERROR(existing.status());
  std::vector<Mutation> m;
  std::vector<std::string> dropped;
  const std::string prefix = ContainerCacheKey(db, "");
  for (const auto& [key, c] : impl_->containers) {
    if (key.compare(0, prefix.size(), prefix) == 0) {
      AppendContainerRemoval(*impl_, *c, m);
      dropped.push_back(key);
    }
  }
  m.push_back({Mutation::Kind::kDelete, impl_->meta, DatabaseMetaKey(db), {}});
  ChangeRecord change;
  change.op = ChangeOp::kDeleteDatabase;
  change.database = db;
  change.ts = NowUnixSeconds();
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), &change).status());
  for (const auto& key : dropped) impl_->containers.erase(key);
  return Status::Ok();
}

// ---- Containers ------------------------------------------------------------

Result<ContainerInfo> DocumentStore::CreateContainer(std::string_view db, std::string_view container,
                                                     std::string_view partition_key_path) {
  BULWARK_RETURN_IF_ERROR(ValidateId(container, "container id"));
  BULWARK_RETURN_IF_ERROR(ValidatePartitionKeyPath(partition_key_path));
  std::unique_lock lock(impl_->ddl_mu);
  auto dbrec = impl_->Get(impl_->meta, DatabaseMetaKey(db));
  if (dbrec.status().code() == Code::kNotFound) {
    return Status::NotFound("database '" + std::string(db) + "' does not exist");
  }
  BULWARK_RETURN_IF_ERROR(dbrec.status());
  if (impl_->containers.count(ContainerCacheKey(db, container)) != 0) {
    return Status::AlreadyExists("container '" + std::string(container) + "' already exists");
  }
  CachedContainer c;
  do {  // a fresh rid, never one that has keys (a deleted container's)
    c.rid_raw = crypto::RandomBytes(kContainerRidBytes);
    c.info.rid = crypto::HexEncode(c.rid_raw);
  } while (!impl_->keyring.Versions(c.info.rid).empty());
  c.info.database = db;
  c.info.id = container;
  c.info.partition_key_path = partition_key_path;
  c.info.etag = NewEtag();
  c.info.ts = NowUnixSeconds();
  BULWARK_ASSIGN_OR_RETURN(auto dek, impl_->keyring.CreateDataKey(c.info.rid, c.info.ts));
  std::vector<Mutation> m{
      {Mutation::Kind::kPut, impl_->meta, ContainerMetaKey(db, container), ContainerJson(c.info).dump()},
      {Mutation::Kind::kPut, impl_->meta, DataKeyMetaKey(c.info.rid, dek.version), dek.EncodeValue()},
  };
  ChangeRecord change;
  change.op = ChangeOp::kCreateContainer;
  change.database = db;
  change.container = container;
  change.container_rid = c.rid_raw;
  change.partition_key = partition_key_path;
  change.etag = c.info.etag;
  change.ts = c.info.ts;
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), &change).status());
  ContainerInfo info = c.info;
  impl_->containers[ContainerCacheKey(db, container)] = std::make_shared<const CachedContainer>(std::move(c));
  return info;
}

Result<ContainerInfo> DocumentStore::ReadContainer(std::string_view db, std::string_view container) const {
  std::shared_lock lock(impl_->ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto c, impl_->FindContainer(db, container));
  return c->info;
}

Result<std::vector<ContainerInfo>> DocumentStore::ListContainers(std::string_view db) const {
  BULWARK_RETURN_IF_ERROR(ReadDatabase(db).status());
  std::shared_lock lock(impl_->ddl_mu);
  std::vector<ContainerInfo> out;
  const std::string prefix = ContainerCacheKey(db, "");
  for (auto it = impl_->containers.lower_bound(prefix);
       it != impl_->containers.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    out.push_back(it->second->info);
  }
  return out;
}

Status DocumentStore::DeleteContainer(std::string_view db, std::string_view container) {
  std::unique_lock lock(impl_->ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto c, impl_->FindContainer(db, container));
  std::vector<Mutation> m;
  AppendContainerRemoval(*impl_, *c, m);
  ChangeRecord change;
  change.op = ChangeOp::kDeleteContainer;
  change.database = db;
  change.container = container;
  change.container_rid = c->rid_raw;
  change.ts = NowUnixSeconds();
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), &change).status());
  impl_->containers.erase(ContainerCacheKey(db, container));
  return Status::Ok();
}

// ---- Keys ------------------------------------------------------------------

Result<uint32_t> DocumentStore::RotateDataKey(std::string_view db, std::string_view container) {
  // Exclusive: no item may be sealed under the new version before it is durable.
  std::unique_lock lock(impl_->ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto c, impl_->FindContainer(db, container));
  BULWARK_ASSIGN_OR_RETURN(auto dek, impl_->keyring.RotateDataKey(c->info.rid, NowUnixSeconds()));
  std::vector<Mutation> m{
      {Mutation::Kind::kPut, impl_->meta, DataKeyMetaKey(c->info.rid, dek.version), dek.EncodeValue()}};
  ChangeRecord change;
  change.op = ChangeOp::kRotateDataKey;
  change.database = db;
  change.container = container;
  change.container_rid = c->rid_raw;
  change.ts = dek.created_unix_s;
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), &change).status());
  return dek.version;
}

std::vector<uint32_t> DocumentStore::DataKeyVersions(std::string_view db, std::string_view container) const {
  std::shared_lock lock(impl_->ddl_mu);
  auto c = impl_->FindContainer(db, container);
  if (!c.ok()) return {};
  return impl_->keyring.Versions((*c)->info.rid);
}

namespace {

std::string SecretContext(std::string_view name) { return "bulwark.secret.v1|" + std::string(name); }

std::string EncodeSecret(int64_t created, std::string wrapped) {
  std::string out;
  PutFixed64(out, static_cast<uint64_t>(created));
  out += wrapped;
  return out;
}

// Every stored secret re-wrapped under `next`, as mutations. Runs under the
// exclusive DDL lock, as part of a master-key rotation.
Status RewrapSecrets(const DocumentStore::Impl& s, const crypto::MasterKey& next, std::vector<Mutation>& m) {
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.meta));
  const std::string prefix(kSecretMetaPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const std::string name = it->key().ToString().substr(prefix.size());
    std::string_view value = it->value().ToStringView();
    uint64_t created = 0;
    if (!GetFixed64(value, created)) return Status::Corruption("secret '" + name + "' is malformed");
    BULWARK_ASSIGN_OR_RETURN(auto secret, s.keyring.UnwrapSecret(value, SecretContext(name)));
    m.push_back({Mutation::Kind::kPut, s.meta, it->key().ToString(),
                 EncodeSecret(static_cast<int64_t>(created), next.Wrap(secret.view(), SecretContext(name)))});
  }
  return FromRocks(it->status(), "cannot read secrets");
}

}  // namespace

Status DocumentStore::RotateMasterKey(crypto::MasterKey new_master) {
  std::unique_lock lock(impl_->ddl_mu);
  const auto records = impl_->keyring.RewrapAll(new_master, NowUnixSeconds());
  std::vector<Mutation> m;
  for (const auto& r : records) {
    m.push_back({Mutation::Kind::kPut, impl_->meta, DataKeyMetaKey(r.container_rid, r.version), r.EncodeValue()});
  }
  BULWARK_RETURN_IF_ERROR(RewrapSecrets(*impl_, new_master, m));
  m.push_back({Mutation::Kind::kPut, impl_->meta, std::string(kKeyCheckKey),
               EncodeKeyCheck(new_master.id(),
                              [&](std::string_view k, std::string_view ctx) { return new_master.Wrap(k, ctx); })});
  // Store keys first gain a wrap under the new master key; then one atomic
  // batch moves every RocksDB-held key; then the old wraps go. A crash at any
  // step leaves a store that opens with the key its key check names.
  BULWARK_ASSIGN_OR_RETURN(auto key_file, ReadStoreKeyFile(impl_->options.path));
  if (key_file) {
    for (auto& r : key_file->keys) {
      BULWARK_ASSIGN_OR_RETURN(auto key, impl_->keyring.UnwrapSecret(r.wraps.at(impl_->keyring.master_key_id()),
                                                                     StoreKeyContext(r.version)));
      r.wraps[new_master.id()] = new_master.Wrap(key.view(), StoreKeyContext(r.version));
    }
    BULWARK_RETURN_IF_ERROR(WriteStoreKeyFile(impl_->options.path, *key_file));
  }
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), nullptr).status());
  if (key_file) {
    for (auto& r : key_file->keys) std::erase_if(r.wraps, [&](const auto& w) { return w.first != new_master.id(); });
    BULWARK_RETURN_IF_ERROR(WriteStoreKeyFile(impl_->options.path, *key_file));
  }
  impl_->keyring.CommitMasterKey(std::move(new_master));
  return Status::Ok();
}

std::string DocumentStore::master_key_id() const { return impl_->keyring.master_key_id(); }


Result<StoredSecret> DocumentStore::LoadOrCreateSecret(std::string_view name, size_t size) {
  if (name.empty() || name.size() > 128) return Status::InvalidArgument("a secret needs a name of 1..128 bytes");
  std::unique_lock lock(impl_->ddl_mu);
  const std::string key = std::string(kSecretMetaPrefix) + std::string(name);
  auto stored = impl_->Get(impl_->meta, key);
  if (stored.ok()) {
    std::string_view value = *stored;
    uint64_t created = 0;
    if (!GetFixed64(value, created)) return Status::Corruption("secret '" + std::string(name) + "' is malformed");
    BULWARK_ASSIGN_OR_RETURN(auto secret, impl_->keyring.UnwrapSecret(value, SecretContext(name)));
    return StoredSecret{std::move(secret), static_cast<int64_t>(created)};
  }
  if (stored.status().code() != Code::kNotFound) return stored.status();
  StoredSecret fresh{crypto::SecretBytes::Random(size), NowUnixSeconds()};
  std::vector<Mutation> m{{Mutation::Kind::kPut, impl_->meta, key,
                           EncodeSecret(fresh.created_unix_s,
                                        impl_->keyring.WrapSecret(fresh.value.view(), SecretContext(name)))}};
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), nullptr).status());
  return fresh;
}

Result<uint32_t> DocumentStore::RotateStoreKey() {
  if (!impl_->options.encrypt_files) return Status::FailedPrecondition("this store has no page encryption");
  std::unique_lock lock(impl_->ddl_mu);  // one key-file writer at a time
  BULWARK_ASSIGN_OR_RETURN(auto key_file, ReadStoreKeyFile(impl_->options.path));
  if (!key_file || key_file->keys.empty()) return Status::Corruption("the store-key file is missing");
  uint32_t next = 0;
  for (const auto& r : key_file->keys) next = std::max(next, r.version + 1);
  crypto::SecretBytes key = crypto::SecretBytes::Random(crypto::kStoreKeyBytes);
  StoreKeyRecord record;
  record.version = next;
  record.created_unix_s = NowUnixSeconds();
  record.wraps[impl_->keyring.master_key_id()] = impl_->keyring.WrapSecret(key.view(), StoreKeyContext(next));
  key_file->keys.push_back(std::move(record));
  key_file->current = next;
  // Durable before any file is written under it: a crash then reopens with it.
  BULWARK_RETURN_IF_ERROR(WriteStoreKeyFile(impl_->options.path, *key_file));
  impl_->store_env.provider->AddStoreKey(next, std::move(key), /*make_current=*/true);
  return next;
}

Result<std::vector<StoreKeyUsage>> DocumentStore::StoreKeyUsageReport() const {
  if (!impl_->options.encrypt_files) return Status::FailedPrecondition("this store has no page encryption");
  std::map<uint32_t, StoreKeyUsage> usage;
  const uint32_t current = impl_->store_env.provider->current_version();
  usage[current].version = current;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(impl_->options.path, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name.rfind(kStoreKeyFileName, 0) == 0) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string prefix(16, '\0');
    in.read(prefix.data(), static_cast<std::streamsize>(prefix.size()));
    if (in.gcount() < 16) continue;  // a file being created: no prefix yet
    auto version = crypto::PageEncryptionProvider::PrefixKeyVersion(prefix);
    if (!version.ok()) return Status(version.status()).WithContext(name);
    StoreKeyUsage& u = usage[*version];
    u.version = *version;
    ++u.files;
    u.bytes += entry.file_size(ec);
  }
  if (ec) return Status::IOError("cannot list " + impl_->options.path + ": " + ec.message());
  std::vector<StoreKeyUsage> out;
  for (auto& [v, u] : usage) {
    u.current = v == current;
    out.push_back(u);
  }
  return out;
}

Status DocumentStore::Compact() {
  rocksdb::FlushOptions flush;
  flush.wait = true;
  BULWARK_RETURN_IF_ERROR(FromRocks(impl_->db->Flush(flush, impl_->handles), "flush failed"));
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (auto* cf : impl_->handles) {
    BULWARK_RETURN_IF_ERROR(FromRocks(impl_->db->CompactRange(compact, cf, nullptr, nullptr), "compaction failed"));
  }
  return Status::Ok();
}

uint64_t DocumentStore::ApproximateDiskBytes() const {
  uint64_t total = 0;
  for (auto* cf : impl_->handles) {
    uint64_t bytes = 0;
    if (impl_->db->GetIntProperty(cf, "rocksdb.live-sst-files-size", &bytes)) total += bytes;
  }
  return total;
}

// ---- Change log ------------------------------------------------------------

Result<std::vector<ChangeRecord>> DocumentStore::ReadChangeLog(uint64_t from_lsn, size_t max_records) const {
  max_records = std::min(max_records, kMaxChangeLogRead);
  std::vector<ChangeRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->changelog));
  for (it->Seek(LsnKey(from_lsn)); it->Valid() && out.size() < max_records; it->Next()) {
    BULWARK_ASSIGN_OR_RETURN(uint64_t lsn, ParseLsnKey(it->key().ToStringView()));
    BULWARK_ASSIGN_OR_RETURN(ChangeRecord r, ChangeRecord::Decode(lsn, it->value().ToStringView()));
    out.push_back(std::move(r));
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the change log"));
  return out;
}

uint64_t DocumentStore::last_lsn() const { return impl_->queue->last_lsn(); }

}  // namespace bulwark::storage
