#include "storage/document_store.h"

#include <chrono>
#include <filesystem>
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
constexpr const char* kRaftLogCf = "raftlog";
constexpr const char* kStagingCf = "staging";

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
  // A fresh MANIFEST on every version change (flush, compaction) rather than
  // an ever-growing log of them. The MANIFEST names every SST's first and
  // last key; a purge must be able to leave no old MANIFEST behind, and a
  // store-key rotation must reach it without a restart. Each roll writes the
  // current file list once (about 100 bytes per SST).
  o.max_manifest_file_size = 1;
  return o;
}

// The re-seal filter and the usage collector on the column families that
// hold sealed values (none for an unsealed, benchmark-mode store).
void AddResealing(rocksdb::ColumnFamilyOptions& cf, SealedColumn column, const DocumentStore::Impl& s) {
  if (!s.options.seal_items) return;
  cf.compaction_filter_factory = NewResealFilterFactory(column, &s.keyring, s.reseal_counters);
  cf.table_properties_collector_factories.push_back(NewDekUsageCollectorFactory(column));
}

rocksdb::ColumnFamilyOptions ItemsCfOptions(const rocksdb::Options& base) {
  rocksdb::ColumnFamilyOptions cf(base);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));  // point reads skip most SSTs
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

json DatabaseJson(const DatabaseInfo& d) {
  json j = {{"id", d.id}, {"_etag", d.etag}, {"_ts", d.ts}};
  if (!d.allowed_regions.empty()) j["allowedRegions"] = d.allowed_regions;
  return j;
}

// "allowedRegions" of a database or container record (absent: not fenced).
bool ParseAllowedRegions(const json& j, std::vector<std::string>* out) {
  auto it = j.find("allowedRegions");
  if (it == j.end()) return true;
  if (!it->is_array()) return false;
  for (const auto& r : *it) {
    if (!r.is_string()) return false;
    out->push_back(r.get<std::string>());
  }
  return true;
}

}  // namespace

Result<DatabaseInfo> ParseDatabase(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("id"))
    return Status::Corruption("database record is malformed");
  DatabaseInfo d{j.value("id", ""), j.value("_etag", ""), j.value("_ts", int64_t{0}), {}};
  if (!ParseAllowedRegions(j, &d.allowed_regions)) return Status::Corruption("database record is malformed");
  return d;
}

namespace {

json ContainerJson(const ContainerInfo& c) {
  json j = {{"id", c.id},
            {"database", c.database},
            {"partitionKey", {{"paths", {c.partition_key_path}}, {"kind", "Hash"}}},
            {"_rid", c.rid},
            {"_etag", c.etag},
            {"_ts", c.ts}};
  if (!c.allowed_regions.empty()) j["allowedRegions"] = c.allowed_regions;
  return j;
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
    if (!ParseAllowedRegions(j, &c.info.allowed_regions)) return bad;
    c.fence = JoinFence(c.info.allowed_regions);
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

std::string ContainerCacheKey(std::string_view db, std::string_view container) {
  std::string k(db);
  k += '/';
  k += container;
  return k;
}

// A command for a container names the rid it was prepared against: if the
// container was since deleted (and maybe re-created), it no longer applies.
Result<std::shared_ptr<const CachedContainer>> CommandContainer(const DocumentStore::Impl& s, const WriteCommand& cmd) {
  BULWARK_ASSIGN_OR_RETURN(auto c, s.FindContainer(cmd.database, cmd.container));
  if (c->rid_raw != cmd.rid) {
    return Status::NotFound("container '" + cmd.container + "' was deleted and re-created");
  }
  return c;
}

DocumentStore::Impl::~Impl() {
  if (reseal) reseal->Stop();  // first: its job compacts through db
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

}  // namespace

Status LoadKeysAndContainers(DocumentStore::Impl& s) {
  s.keyring.Clear();
  s.containers.clear();
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
  } else {
    BULWARK_ASSIGN_OR_RETURN(impl->store_env.base, MaybeFaultEnv(options.path));
    if (impl->store_env.base) rocks.env = impl->store_env.base.get();
  }
  rocksdb::ColumnFamilyOptions items_cf = ItemsCfOptions(rocks);
  AddResealing(items_cf, SealedColumn::kItems, *impl);
  rocksdb::ColumnFamilyOptions changelog_cf(rocks);
  AddResealing(changelog_cf, SealedColumn::kChangeLog, *impl);
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(rocks)},
      {kMetaCf, rocksdb::ColumnFamilyOptions(rocks)},
      {kItemsCf, items_cf},
      {kChangeLogCf, changelog_cf},
      {kRaftLogCf, rocksdb::ColumnFamilyOptions(rocks)},
      {kStagingCf, rocksdb::ColumnFamilyOptions(rocks)},
  };
  rocksdb::DB* raw = nullptr;
  BULWARK_RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::Open(rocks, options.path, cfs, &impl->handles, &raw), "cannot open " + options.path));
  impl->db.reset(raw);
  impl->meta = impl->handles[1];
  impl->items = impl->handles[2];
  impl->changelog = impl->handles[3];
  impl->raftlog = impl->handles[4];
  impl->staging = impl->handles[5];

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
  BULWARK_RETURN_IF_ERROR(ResumeStateImageInstall(*impl));
  BULWARK_RETURN_IF_ERROR(LoadKeysAndContainers(*impl));
  BULWARK_ASSIGN_OR_RETURN(uint64_t last_lsn, LastLsn(*impl));
  BULWARK_ASSIGN_OR_RETURN(AppliedRecord applied, LoadAppliedIndex(*impl));
  PublishApplied(*impl, applied);
  BULWARK_RETURN_IF_ERROR(LoadWriteEpoch(*impl));
  impl->queue = std::make_unique<CommitQueue>(impl->db.get(), impl->changelog, options.sync_writes, last_lsn);
  BULWARK_RETURN_IF_ERROR(RefreshPendingShreds(*impl));
  if (options.seal_items && options.reseal_in_background) {
    Impl* s = impl.get();  // the worker is stopped before Impl goes
    impl->reseal = std::make_unique<ResealWorker>(
        [s](const std::string& rid, std::atomic<bool>& canceled) { return ResealContainer(*s, rid, canceled); });
    // A rotation that the last run did not finish resumes now.
    BULWARK_RETURN_IF_ERROR(ScheduleResealWhereNeeded(*impl));
  }
  return std::unique_ptr<DocumentStore>(new DocumentStore(std::move(impl)));
}

// ---- Databases -------------------------------------------------------------
// The direct methods are Prepare + Apply, so one code path serves a single
// store and a replica set.

Result<WriteCommand> DocumentStore::PrepareCreateDatabase(std::string_view db, std::string_view fence) const {
  BULWARK_RETURN_IF_ERROR(ValidateId(db, "database id"));
  WriteCommand c;
  c.kind = WriteCommand::Kind::kCreateDatabase;
  c.database = db;
  c.fence = JoinFence(SplitFence(fence));
  // A create that fails at apply is still applied by regions outside a
  // fence as a placeholder, which cannot fail: refuse here what a fence
  // makes differ between regions (the write path serializes these).
  auto existing = impl_->Get(impl_->meta, DatabaseMetaKey(db));
  if (existing.ok()) {
    BULWARK_ASSIGN_OR_RETURN(DatabaseInfo d, ParseDatabase(*existing));
    if (!c.fence.empty() || !d.allowed_regions.empty()) {
      return Status::AlreadyExists("database '" + std::string(db) + "' already exists");
    }
  } else if (existing.status().code() != Code::kNotFound) {
    return existing.status();
  }
  c.etag = NewEtag();
  c.ts = NowUnixSeconds();
  return c;
}

Result<WriteCommand> DocumentStore::PrepareDeleteDatabase(std::string_view db) const {
  WriteCommand c;
  c.kind = WriteCommand::Kind::kDeleteDatabase;
  c.database = db;
  c.ts = NowUnixSeconds();
  auto value = impl_->Get(impl_->meta, DatabaseMetaKey(db));
  if (value.ok()) {
    BULWARK_ASSIGN_OR_RETURN(DatabaseInfo d, ParseDatabase(*value));
    c.fence = JoinFence(d.allowed_regions);
  } else if (value.status().code() != Code::kNotFound) {
    return value.status();
  }
  // The fenced containers it drops: regions outside their fences drop
  // their fence records (storage/fence.h).
  std::shared_lock lock(impl_->ddl_mu);
  std::string rids;
  const std::string prefix = ContainerCacheKey(db, "");
  for (auto it = impl_->containers.lower_bound(prefix);
       it != impl_->containers.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    if (!it->second->fence.empty()) rids += (rids.empty() ? "" : ",") + it->second->info.rid;
  }
  if (!rids.empty()) c.setting = "drop:" + rids;
  return c;
}

Result<DatabaseInfo> DocumentStore::CreateDatabase(std::string_view db) {
  BULWARK_ASSIGN_OR_RETURN(WriteCommand cmd, PrepareCreateDatabase(db));
  BULWARK_ASSIGN_OR_RETURN(ApplyOutcome out, Apply(0, std::move(cmd)));
  BULWARK_RETURN_IF_ERROR(out.status);
  return DatabaseInfo{std::string(db), out.etag, out.ts, {}};
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

Result<std::vector<GeoFence>> DocumentStore::Fences() const {
  const Impl& s = *impl_;
  std::map<std::string, std::string> names;  // rid hex -> its resource name, where this store has the container
  {
    std::shared_lock lock(s.ddl_mu);
    for (const auto& [_, c] : s.containers) {
      if (!c->fence.empty()) names[c->info.rid] = "dbs/" + c->info.database + "/colls/" + c->info.id;
    }
  }
  std::vector<GeoFence> out;
  std::unique_ptr<rocksdb::Iterator> it(s.db->NewIterator(rocksdb::ReadOptions(), s.meta));
  const std::string fences(kFenceMetaPrefix);
  for (it->Seek(fences); it->Valid() && it->key().starts_with(fences); it->Next()) {
    const std::string rid = it->key().ToString().substr(fences.size());
    auto n = names.find(rid);
    out.push_back({n != names.end() ? n->second : "a fenced container (rid " + rid + ")", it->value().ToString()});
  }
  const std::string dbs(kDatabaseMetaPrefix);
  for (it->Seek(dbs); it->Valid() && it->key().starts_with(dbs); it->Next()) {
    BULWARK_ASSIGN_OR_RETURN(DatabaseInfo d, ParseDatabase(it->value().ToStringView()));
    if (!d.allowed_regions.empty()) out.push_back({"dbs/" + d.id, JoinFence(d.allowed_regions)});
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read the geo-fences"));
  return out;
}

void AppendContainerRemoval(const DocumentStore::Impl& s, const CachedContainer& c, bool keep_keys,
                            std::vector<Mutation>& m) {
  m.push_back({Mutation::Kind::kDeleteRange, s.items, c.rid_raw, c.rid_raw + "\xff"});
  m.push_back({Mutation::Kind::kDelete, s.meta, ContainerMetaKey(c.info.database, c.info.id), {}});
  if (!c.fence.empty()) m.push_back({Mutation::Kind::kDelete, s.meta, FenceMetaKey(c.info.rid), {}});
  if (keep_keys) {
    // The fence stays with the deleted container: a region image leaves its
    // keys out of the regions outside it.
    m.push_back({Mutation::Kind::kPut, s.meta, DeletedContainerKey(c.info.database, c.info.id, c.info.rid), c.fence});
  }
}

void AppendFenceRecordDrops(const DocumentStore::Impl& s, std::string_view setting, std::vector<Mutation>& m) {
  for (const auto& rid : FenceRecordRids(setting, "drop")) {
    m.push_back({Mutation::Kind::kDelete, s.meta, FenceMetaKey(rid), {}});
  }
}

namespace {

Result<CommandEffect> DeleteDatabaseEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  auto existing = s.Get(s.meta, DatabaseMetaKey(cmd.database));
  if (existing.status().code() == Code::kNotFound) {
    e.outcome.status = Status::NotFound("database '" + cmd.database + "' does not exist");
    return e;
  }
  BULWARK_RETURN_IF_ERROR(existing.status());
  const std::string prefix = ContainerCacheKey(cmd.database, "");
  for (const auto& [key, c] : s.containers) {
    if (key.compare(0, prefix.size(), prefix) == 0) {
      AppendContainerRemoval(s, *c, /*keep_keys=*/true, e.mutations);
      e.dropped_containers.push_back(key);
    }
  }
  AppendFenceRecordDrops(s, cmd.setting, e.mutations);
  e.mutations.push_back({Mutation::Kind::kDelete, s.meta, DatabaseMetaKey(cmd.database), {}});
  // Its users and their permissions go with it (and so do their tokens).
  std::string users = AccessUserPrefix(cmd.database);
  std::string users_end = users;
  users_end.back() = static_cast<char>('/' + 1);
  e.mutations.push_back({Mutation::Kind::kDeleteRange, s.meta, std::move(users), std::move(users_end)});
  e.settings_changed = true;
  e.change.emplace();
  e.change->op = ChangeOp::kDeleteDatabase;
  e.change->database = cmd.database;
  e.change->ts = cmd.ts;
  return e;
}

Result<CommandEffect> CreateDatabaseEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  const std::string key = DatabaseMetaKey(cmd.database);
  auto existing = s.Get(s.meta, key);
  if (existing.ok()) {
    e.outcome.status = Status::AlreadyExists("database '" + cmd.database + "' already exists");
    return e;
  }
  if (existing.status().code() != Code::kNotFound) return existing.status();
  DatabaseInfo info{cmd.database, cmd.etag, cmd.ts, SplitFence(cmd.fence)};
  e.outcome.etag = info.etag;
  e.outcome.ts = info.ts;
  e.mutations.push_back({Mutation::Kind::kPut, s.meta, key, DatabaseJson(info).dump()});
  e.change.emplace();
  e.change->op = ChangeOp::kCreateDatabase;
  e.change->database = cmd.database;
  e.change->etag = info.etag;
  e.change->ts = info.ts;
  return e;
}

Result<CommandEffect> CreateContainerEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  auto dbrec = s.Get(s.meta, DatabaseMetaKey(cmd.database));
  if (dbrec.status().code() == Code::kNotFound) {
    e.outcome.status = Status::NotFound("database '" + cmd.database + "' does not exist");
    return e;
  }
  BULWARK_RETURN_IF_ERROR(dbrec.status());
  BULWARK_ASSIGN_OR_RETURN(DatabaseInfo db, ParseDatabase(*dbrec));
  if (!FenceWithin(cmd.fence, JoinFence(db.allowed_regions))) {
    // The database was re-created with a fence after this was prepared.
    e.outcome.status = Status::FailedPrecondition("database '" + cmd.database + "' is geo-fenced to " +
                                                  JoinFence(db.allowed_regions) + " since this was prepared");
    return e;
  }
  if (s.containers.count(ContainerCacheKey(cmd.database, cmd.container)) != 0) {
    e.outcome.status = Status::AlreadyExists("container '" + cmd.container + "' already exists");
    return e;
  }
  if (cmd.rid.size() != kContainerRidBytes) return Status::Corruption("create-container command has a bad rid");
  auto c = std::make_shared<CachedContainer>();
  c->rid_raw = cmd.rid;
  c->info.rid = crypto::HexEncode(cmd.rid);
  if (!s.keyring.Versions(c->info.rid).empty()) {
    // 64 random bits collided with a deleted container's rid: refuse, the
    // client retries and the next proposal draws another.
    e.outcome.status = Status::Unavailable("internal id collision; retry the request");
    return e;
  }
  c->info.database = cmd.database;
  c->info.id = cmd.container;
  c->info.partition_key_path = cmd.partition_key_path;
  c->info.etag = cmd.etag;
  c->info.ts = cmd.ts;
  c->info.allowed_regions = SplitFence(cmd.fence);
  c->fence = JoinFence(c->info.allowed_regions);
  BULWARK_ASSIGN_OR_RETURN(auto dek, s.keyring.AddDataKey(c->info.rid, 1, cmd.data_key, cmd.ts));
  e.mutations.push_back(
      {Mutation::Kind::kPut, s.meta, ContainerMetaKey(cmd.database, cmd.container), ContainerJson(c->info).dump()});
  if (!c->fence.empty()) e.mutations.push_back({Mutation::Kind::kPut, s.meta, FenceMetaKey(c->info.rid), c->fence});
  e.mutations.push_back({Mutation::Kind::kPut, s.meta, DataKeyMetaKey(c->info.rid, dek.version), dek.EncodeValue()});
  e.change.emplace();
  e.change->op = ChangeOp::kCreateContainer;
  e.change->database = cmd.database;
  e.change->container = cmd.container;
  e.change->container_rid = cmd.rid;
  e.change->partition_key = cmd.partition_key_path;
  e.change->etag = cmd.etag;
  e.change->ts = cmd.ts;
  e.outcome.etag = cmd.etag;
  e.outcome.ts = cmd.ts;
  e.outcome.container = c->info;
  e.added_container = std::move(c);
  return e;
}

Result<CommandEffect> DeleteContainerEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  auto c = CommandContainer(s, cmd);
  if (!c.ok()) {
    e.outcome.status = c.status();
    return e;
  }
  AppendContainerRemoval(s, **c, /*keep_keys=*/true, e.mutations);
  e.dropped_containers.push_back(ContainerCacheKey(cmd.database, cmd.container));
  e.change.emplace();
  e.change->op = ChangeOp::kDeleteContainer;
  e.change->database = cmd.database;
  e.change->container = cmd.container;
  e.change->container_rid = cmd.rid;
  e.change->ts = cmd.ts;
  return e;
}

Result<CommandEffect> RotateDataKeyEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  auto c = CommandContainer(s, cmd);
  if (!c.ok()) {
    e.outcome.status = c.status();
    return e;
  }
  const auto versions = s.keyring.Versions((*c)->info.rid);
  const uint32_t next = versions.empty() ? 1 : versions.back() + 1;
  BULWARK_ASSIGN_OR_RETURN(auto dek, s.keyring.AddDataKey((*c)->info.rid, next, cmd.data_key, cmd.ts));
  e.mutations.push_back({Mutation::Kind::kPut, s.meta, DataKeyMetaKey((*c)->info.rid, dek.version), dek.EncodeValue()});
  e.change.emplace();
  e.change->op = ChangeOp::kRotateDataKey;
  e.change->database = cmd.database;
  e.change->container = cmd.container;
  e.change->container_rid = cmd.rid;
  e.change->ts = cmd.ts;
  e.outcome.key_version = dek.version;
  e.outcome.ts = cmd.ts;
  return e;
}

}  // namespace

namespace {
Result<CommandEffect> SetMemberEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  if (cmd.member_id == 0) {
    e.outcome.status = Status::InvalidArgument("a member id must be >= 1");
    return e;
  }
  std::string key(kMemberMetaPrefix);
  PutBigEndian64(key, cmd.member_id);
  if (cmd.member_address.empty()) {
    e.mutations.push_back({Mutation::Kind::kDelete, s.meta, std::move(key), {}});
  } else {
    e.mutations.push_back({Mutation::Kind::kPut, s.meta, std::move(key), cmd.member_address});
  }
  return e;
}
}  // namespace

// A region outside a fence applies the placeholder: only the fence records.
Result<CommandEffect> FencedOutEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  for (const auto& rid : FenceRecordRids(cmd.setting, "create")) {
    e.mutations.push_back({Mutation::Kind::kPut, s.meta, FenceMetaKey(rid), cmd.fence});
  }
  AppendFenceRecordDrops(s, cmd.setting, e.mutations);
  return e;
}

Result<CommandEffect> DdlCommandEffect(DocumentStore::Impl& s, const WriteCommand& cmd, uint64_t index) {
  switch (cmd.kind) {
    case WriteCommand::Kind::kFencedOut:
      return FencedOutEffect(s, cmd);
    case WriteCommand::Kind::kSetMember:
      return SetMemberEffect(s, cmd);
    case WriteCommand::Kind::kCreateDatabase:
      return CreateDatabaseEffect(s, cmd);
    case WriteCommand::Kind::kDeleteDatabase:
      return DeleteDatabaseEffect(s, cmd);
    case WriteCommand::Kind::kCreateContainer:
      return CreateContainerEffect(s, cmd);
    case WriteCommand::Kind::kDeleteContainer:
      return DeleteContainerEffect(s, cmd);
    case WriteCommand::Kind::kRotateDataKey:
      return RotateDataKeyEffect(s, cmd);
    case WriteCommand::Kind::kPurgeContainer:
      return PurgeContainerEffect(s, cmd, index);
    case WriteCommand::Kind::kSetRegions:
      return Status::Internal("a regions change is applied with its GLSN (Apply)");
    case WriteCommand::Kind::kFirewallAllow:
    case WriteCommand::Kind::kFirewallDeny:
      return FirewallEffect(s, cmd);
    case WriteCommand::Kind::kSetAccountKey:
      return SetAccountKeyEffect(s, cmd, index);
    case WriteCommand::Kind::kAccessPut:
    case WriteCommand::Kind::kAccessDelete:
      return AccessEffect(s, cmd);
    case WriteCommand::Kind::kDiscardConflict:
      return DiscardConflictEffect(s, cmd);
    default:
      return Status::Internal("not a database or container command");
  }
}

Status DocumentStore::DeleteDatabase(std::string_view db) {
  BULWARK_ASSIGN_OR_RETURN(WriteCommand cmd, PrepareDeleteDatabase(db));
  BULWARK_ASSIGN_OR_RETURN(ApplyOutcome out, Apply(0, std::move(cmd)));
  return out.status;
}

// ---- Containers ------------------------------------------------------------

Result<WriteCommand> DocumentStore::PrepareCreateContainer(std::string_view db, std::string_view container,
                                                           std::string_view partition_key_path,
                                                           std::string_view fence) const {
  BULWARK_RETURN_IF_ERROR(ValidateId(container, "container id"));
  BULWARK_RETURN_IF_ERROR(ValidatePartitionKeyPath(partition_key_path));
  std::string own = JoinFence(SplitFence(fence));
  std::string db_fence;
  bool db_exists = false;
  if (auto value = impl_->Get(impl_->meta, DatabaseMetaKey(db)); value.ok()) {
    BULWARK_ASSIGN_OR_RETURN(DatabaseInfo d, ParseDatabase(*value));
    db_fence = JoinFence(d.allowed_regions);
    db_exists = true;
  } else if (value.status().code() != Code::kNotFound) {
    return value.status();
  }
  if (!own.empty() && !db_exists) return Status::NotFound("database '" + std::string(db) + "' does not exist");
  {
    // As for a database: what a fence would make fail differently at apply.
    std::shared_lock lock(impl_->ddl_mu);
    auto found = impl_->FindContainer(db, container);
    if (found.ok() && (!own.empty() || !db_fence.empty() || !(*found)->fence.empty())) {
      return Status::AlreadyExists("container '" + std::string(container) + "' already exists");
    }
  }
  if (!own.empty() && !FenceWithin(own, db_fence)) {
    return Status::InvalidArgument("container " + std::string(container) + "'s allowed regions (" + own +
                                   ") must be within its database's geo-fence (" + db_fence + ")");
  }
  WriteCommand c;
  c.fence = own.empty() ? db_fence : own;
  c.kind = WriteCommand::Kind::kCreateContainer;
  c.database = db;
  c.container = container;
  c.partition_key_path = partition_key_path;
  c.rid = crypto::RandomBytes(kContainerRidBytes);
  c.data_key = crypto::RandomBytes(crypto::kDataKeyBytes);
  c.etag = NewEtag();
  c.ts = NowUnixSeconds();
  return c;
}

namespace {
// A command against an existing container, bound to its current rid.
Result<WriteCommand> ContainerCommand(const DocumentStore::Impl& s, WriteCommand::Kind kind, std::string_view db,
                                      std::string_view container) {
  std::shared_lock lock(s.ddl_mu);
  BULWARK_ASSIGN_OR_RETURN(auto found, s.FindContainer(db, container));
  WriteCommand c;
  c.kind = kind;
  c.database = db;
  c.container = container;
  c.rid = found->rid_raw;
  c.fence = found->fence;
  c.ts = NowUnixSeconds();
  return c;
}
}  // namespace

Result<WriteCommand> DocumentStore::PrepareDeleteContainer(std::string_view db, std::string_view container) const {
  return ContainerCommand(*impl_, WriteCommand::Kind::kDeleteContainer, db, container);
}

Result<WriteCommand> DocumentStore::PrepareRotateDataKey(std::string_view db, std::string_view container) const {
  BULWARK_ASSIGN_OR_RETURN(WriteCommand c, ContainerCommand(*impl_, WriteCommand::Kind::kRotateDataKey, db, container));
  c.data_key = crypto::RandomBytes(crypto::kDataKeyBytes);
  return c;
}

Result<ContainerInfo> DocumentStore::CreateContainer(std::string_view db, std::string_view container,
                                                     std::string_view partition_key_path) {
  BULWARK_ASSIGN_OR_RETURN(WriteCommand cmd, PrepareCreateContainer(db, container, partition_key_path));
  BULWARK_ASSIGN_OR_RETURN(ApplyOutcome out, Apply(0, std::move(cmd)));
  BULWARK_RETURN_IF_ERROR(out.status);
  return out.container;
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
  BULWARK_ASSIGN_OR_RETURN(WriteCommand cmd, PrepareDeleteContainer(db, container));
  BULWARK_ASSIGN_OR_RETURN(ApplyOutcome out, Apply(0, std::move(cmd)));
  return out.status;
}

// ---- Keys ------------------------------------------------------------------

Result<uint32_t> DocumentStore::RotateDataKey(std::string_view db, std::string_view container) {
  BULWARK_ASSIGN_OR_RETURN(WriteCommand cmd, PrepareRotateDataKey(db, container));
  BULWARK_ASSIGN_OR_RETURN(ApplyOutcome out, Apply(0, std::move(cmd)));
  BULWARK_RETURN_IF_ERROR(out.status);
  return out.key_version;
}

uint32_t DocumentStore::DataKeyVersionCount() const {
  std::shared_lock lock(impl_->ddl_mu);
  uint32_t n = 0;
  for (const auto& [_, c] : impl_->containers) n += static_cast<uint32_t>(impl_->keyring.Versions(c->info.rid).size());
  return n;
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
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read secrets"));
  // The account keys (replicated, but each node wraps its own copy).
  const std::string key_prefix(kAccountKeyMetaPrefix);
  for (it->Seek(key_prefix); it->Valid() && it->key().starts_with(key_prefix); it->Next()) {
    const std::string name = it->key().ToString().substr(key_prefix.size());
    uint64_t version = 0;
    int64_t created = 0;
    std::string_view wrapped;
    if (!DecodeAccountKeyValue(it->value().ToStringView(), version, created, wrapped)) {
      return Status::Corruption("account key record " + name + " is malformed");
    }
    BULWARK_ASSIGN_OR_RETURN(auto secret, s.keyring.UnwrapSecret(wrapped, AccountKeyContext(name)));
    m.push_back({Mutation::Kind::kPut, s.meta, it->key().ToString(),
                 EncodeAccountKeyValue(version, created, next.Wrap(secret.view(), AccountKeyContext(name)))});
  }
  return FromRocks(it->status(), "cannot read account keys");
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
  BULWARK_RETURN_IF_ERROR(RewrapStagedKeys(*impl_, new_master, m));
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
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), nullptr, /*force_sync=*/true).status());
  if (key_file) {
    for (auto& r : key_file->keys) std::erase_if(r.wraps, [&](const auto& w) { return w.first != new_master.id(); });
    BULWARK_RETURN_IF_ERROR(WriteStoreKeyFile(impl_->options.path, *key_file));
  }
  impl_->keyring.CommitMasterKey(std::move(new_master));
  return Status::Ok();
}

std::string DocumentStore::master_key_id() const { return impl_->keyring.master_key_id(); }

Status DocumentStore::PutLocalValue(std::string_view name, std::string_view value) {
  std::vector<Mutation> m{{Mutation::Kind::kPut, impl_->meta, "l/" + std::string(name), std::string(value)}};
  return impl_->queue->Commit(std::move(m), nullptr, /*force_sync=*/true).status();
}

Result<std::string> DocumentStore::GetLocalValue(std::string_view name) const {
  return impl_->Get(impl_->meta, "l/" + std::string(name));
}

Result<StoredSecret> DocumentStore::LoadOrCreateSecret(std::string_view name, size_t size, std::string_view initial) {
  if (name.empty() || name.size() > 128) return Status::InvalidArgument("a secret needs a name of 1..128 bytes");
  if (!initial.empty() && initial.size() != size)
    return Status::InvalidArgument("the initial secret has the wrong size");
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
  StoredSecret fresh{initial.empty() ? crypto::SecretBytes::Random(size) : crypto::SecretBytes::CopyFrom(initial),
                     NowUnixSeconds()};
  std::vector<Mutation> m{
      {Mutation::Kind::kPut, impl_->meta, key,
       EncodeSecret(fresh.created_unix_s, impl_->keyring.WrapSecret(fresh.value.view(), SecretContext(name)))}};
  BULWARK_RETURN_IF_ERROR(impl_->queue->Commit(std::move(m), nullptr, /*force_sync=*/true).status());
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

uint32_t DocumentStore::current_store_key_version() const {
  return impl_->options.encrypt_files ? impl_->store_env.provider->current_version() : 0;
}

Result<std::vector<StoreKeyUsage>> DocumentStore::StoreKeyUsageReport() const {
  if (!impl_->options.encrypt_files) return Status::FailedPrecondition("this store has no page encryption");
  std::map<uint32_t, StoreKeyUsage> usage;
  const uint32_t current = impl_->store_env.provider->current_version();
  usage[current].version = current;
  BULWARK_ASSIGN_OR_RETURN(std::vector<StoreFileKey> files, ReadStoreFileKeys(impl_->options.path));
  for (const StoreFileKey& f : files) {
    StoreKeyUsage& u = usage[f.version];
    u.version = f.version;
    ++u.files;
    u.bytes += f.bytes;
  }
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
