// DocumentStore against real RocksDB on disk: round trips of every operation,
// each kind of bad input (and that it changes nothing), restart durability,
// tampering, sealing bound to place, master-key and DEK rotation, and the
// ordering of the change log under concurrent writers.
#include <set>
#include <thread>

#include <rocksdb/db.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "storage/document_store.h"
#include "storage/item_rules.h"
#include "storage/store_keys.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::storage;
using bulwark::testing::TempDir;
using nlohmann::json;

namespace {

std::unique_ptr<DocumentStore> OpenStore(const std::string& path, const crypto::MasterKey& key, bool sealed = true,
                                         bool reseal_in_background = true) {
  StoreOptions options;
  options.path = path;
  options.seal_items = sealed;
  options.reseal_in_background = reseal_in_background;
  auto store = DocumentStore::Open(options, key.Clone());
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(store).value();
}

// A store with database "db" and container "c" partitioned by /tenant.
struct Fixture {
  TempDir dir;
  crypto::MasterKey key = crypto::MasterKey::Generate();
  std::unique_ptr<DocumentStore> store;
  bool reseal_in_background = true;
  explicit Fixture(bool reseal = true) : reseal_in_background(reseal) {
    store = OpenStore(path(), key, /*sealed=*/true, reseal_in_background);
    REQUIRE(store->CreateDatabase("db").ok());
    REQUIRE(store->CreateContainer("db", "c", "/tenant").ok());
  }
  std::string path() const { return dir.sub("store"); }
  void Reopen() {
    store.reset();
    store = OpenStore(path(), key, /*sealed=*/true, reseal_in_background);
  }
  size_t CountItems(const std::string& container = "c") {
    ListOptions options;
    options.max_items = kMaxPageItems;
    auto page = store->ListItems("db", container, options);
    REQUIRE(page.ok());
    return page->items.size();
  }
};

std::string Doc(const std::string& id, const std::string& tenant, int v = 0) {
  return json{{"id", id}, {"tenant", tenant}, {"v", v}}.dump();
}

// Opens the store's RocksDB directly, bypassing DocumentStore, to play the
// attacker with write access to the disk (and, here, the page layer's keys).
struct RawDb {
  StoreEnv env;  // declared first: it must outlive db
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  RawDb(const std::string& path, const crypto::MasterKey& key) {
    auto opened = OpenStoreEnvForTools(path, key);
    REQUIRE(opened.ok());
    env = std::move(opened).value();
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const char* name : {"default", "meta", "items", "changelog", "raftlog", "staging"}) {
      cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    rocksdb::Options options;
    options.env = env.env.get();
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(options, path, cfs, &handles, &raw).ok());
    db.reset(raw);
  }
  ~RawDb() {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  }
  rocksdb::ColumnFamilyHandle* items() { return handles[2]; }
  std::vector<std::pair<std::string, std::string>> Items() {
    std::vector<std::pair<std::string, std::string>> out;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), items()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) out.emplace_back(it->key().ToString(), it->value().ToString());
    return out;
  }
};

}  // namespace

TEST_CASE("Open creates missing parent directories and refuses an empty path", "[storage][store]") {
  TempDir dir;
  auto store = OpenStore(dir.sub("a/b/c"), crypto::MasterKey::Generate());
  CHECK(store->ListDatabases()->empty());
  StoreOptions options;
  CHECK(DocumentStore::Open(options, crypto::MasterKey::Generate()).status().code() == Code::kInvalidArgument);
  options.path = "/proc/bulwark-cannot-live-here";
  CHECK_FALSE(DocumentStore::Open(options, crypto::MasterKey::Generate()).ok());
}

TEST_CASE("Databases: create, read, list, delete", "[storage][store]") {
  TempDir dir;
  auto store = OpenStore(dir.sub("s"), crypto::MasterKey::Generate());
  auto created = store->CreateDatabase("alpha");
  REQUIRE(created.ok());
  CHECK(created->etag.size() > 2);
  REQUIRE(store->CreateDatabase("beta").ok());
  CHECK(store->CreateDatabase("alpha").status().code() == Code::kAlreadyExists);
  CHECK(store->CreateDatabase("bad/name").status().code() == Code::kInvalidArgument);
  CHECK(store->ReadDatabase("alpha")->etag == created->etag);
  CHECK(store->ListDatabases()->size() == 2);
  REQUIRE(store->DeleteDatabase("alpha").ok());
  CHECK(store->ReadDatabase("alpha").status().code() == Code::kNotFound);
  CHECK(store->DeleteDatabase("alpha").code() == Code::kNotFound);
  CHECK(store->ListDatabases()->size() == 1);
}

TEST_CASE("Containers: create, read, list, delete, and their items go with them", "[storage][store]") {
  Fixture f;
  CHECK(f.store->CreateContainer("db", "c", "/tenant").status().code() == Code::kAlreadyExists);
  CHECK(f.store->CreateContainer("nodb", "c", "/tenant").status().code() == Code::kNotFound);
  CHECK(f.store->CreateContainer("db", "c2", "tenant").status().code() == Code::kInvalidArgument);
  REQUIRE(f.store->CreateContainer("db", "c2", "/a/b").ok());
  auto info = f.store->ReadContainer("db", "c2");
  REQUIRE(info.ok());
  CHECK(info->partition_key_path == "/a/b");
  CHECK(f.store->ListContainers("db")->size() == 2);
  CHECK(f.store->ListContainers("nodb").status().code() == Code::kNotFound);

  REQUIRE(f.store->CreateItem("db", "c", Doc("i1", "t")).ok());
  const std::string old_rid = f.store->ReadContainer("db", "c")->rid;
  REQUIRE(f.store->DeleteContainer("db", "c").ok());
  CHECK(f.store->ReadItem("db", "c", "\"t\"", "i1").status().code() == Code::kNotFound);
  REQUIRE(f.store->CreateContainer("db", "c", "/tenant").ok());
  CHECK(f.store->ReadContainer("db", "c")->rid != old_rid);  // a new container, not the old one revived
  CHECK(f.CountItems() == 0);

  REQUIRE(f.store->DeleteDatabase("db").ok());
  CHECK(f.store->ReadContainer("db", "c2").status().code() == Code::kNotFound);
  f.Reopen();
  CHECK(f.store->ReadContainer("db", "c").status().code() == Code::kNotFound);
}

TEST_CASE("Items: create, read, upsert, replace, delete round trips", "[storage][store]") {
  Fixture f;
  auto created = f.store->CreateItem("db", "c", Doc("i1", "acme", 1));
  REQUIRE(created.ok());
  CHECK(created->lsn > 0);
  json body = json::parse(created->json);
  CHECK(body["_etag"] == created->etag);
  CHECK(body["_ts"].get<int64_t>() == created->ts);
  CHECK(created->ts > 1'600'000'000);

  auto read = f.store->ReadItem("db", "c", "\"acme\"", "i1");
  REQUIRE(read.ok());
  CHECK(read->json == created->json);
  CHECK(read->etag == created->etag);

  auto upserted = f.store->UpsertItem("db", "c", Doc("i1", "acme", 2));
  REQUIRE(upserted.ok());
  CHECK(upserted->etag != created->etag);
  CHECK(upserted->lsn > created->lsn);
  CHECK(json::parse(f.store->ReadItem("db", "c", "\"acme\"", "i1")->json)["v"] == 2);

  auto replaced = f.store->ReplaceItem("db", "c", "i1", Doc("i1", "acme", 3), upserted->etag);
  REQUIRE(replaced.ok());
  CHECK(json::parse(f.store->ReadItem("db", "c", "\"acme\"", "i1")->json)["v"] == 3);
  REQUIRE(f.store->ReplaceItem("db", "c", "i1", Doc("i1", "acme", 4)).ok());  // no If-Match: unconditional

  // Same id in another partition is another item.
  REQUIRE(f.store->CreateItem("db", "c", Doc("i1", "other", 9)).ok());
  CHECK(json::parse(f.store->ReadItem("db", "c", "\"other\"", "i1")->json)["v"] == 9);

  const std::string etag = f.store->ReadItem("db", "c", "\"acme\"", "i1")->etag;
  REQUIRE(f.store->DeleteItem("db", "c", "\"acme\"", "i1", etag).ok());
  CHECK(f.store->ReadItem("db", "c", "\"acme\"", "i1").status().code() == Code::kNotFound);
  CHECK(f.store->ReadItem("db", "c", "\"other\"", "i1").ok());
  REQUIRE(f.store->DeleteItem("db", "c", "\"other\"", "i1").ok());
  CHECK(f.CountItems() == 0);
}

TEST_CASE("Items: conflicts, missing items and failed If-Match change nothing", "[storage][store]") {
  Fixture f;
  auto first = f.store->CreateItem("db", "c", Doc("i1", "t", 1));
  REQUIRE(first.ok());
  CHECK(f.store->CreateItem("db", "c", Doc("i1", "t", 2)).status().code() == Code::kAlreadyExists);
  CHECK(f.store->ReplaceItem("db", "c", "nope", Doc("nope", "t")).status().code() == Code::kNotFound);
  CHECK(f.store->ReplaceItem("db", "c", "i1", Doc("i2", "t")).status().code() == Code::kInvalidArgument);
  CHECK(f.store->ReplaceItem("db", "c", "i1", Doc("i1", "t", 3), "\"stale\"").status().code() ==
        Code::kPreconditionFailed);
  CHECK(f.store->DeleteItem("db", "c", "\"t\"", "i1", "\"stale\"").code() == Code::kPreconditionFailed);
  CHECK(f.store->DeleteItem("db", "c", "\"t\"", "nope").code() == Code::kNotFound);
  auto now = f.store->ReadItem("db", "c", "\"t\"", "i1");
  REQUIRE(now.ok());
  CHECK(now->json == first->json);
}

TEST_CASE("Items: each bad input gets a typed error and loses nothing", "[storage][store][bad-input]") {
  Fixture f;
  REQUIRE(f.store->CreateItem("db", "c", Doc("keep", "t", 1)).ok());
  const uint64_t lsn_before = f.store->last_lsn();
  CHECK(f.store->CreateItem("db", "c", "{not json").status().code() == Code::kInvalidArgument);
  CHECK(f.store->UpsertItem("db", "c", R"({"tenant":"t"})").status().code() == Code::kInvalidArgument);
  CHECK(f.store->UpsertItem("db", "c", R"({"id":"a#b","tenant":"t"})").status().code() == Code::kInvalidArgument);
  CHECK(f.store->UpsertItem("db", "c", R"({"id":"x"})").status().code() == Code::kInvalidArgument);
  const std::string big = json{{"id", "big"}, {"tenant", "t"}, {"v", std::string(kMaxItemBytes, 'x')}}.dump();
  CHECK(f.store->UpsertItem("db", "c", big).status().code() == Code::kTooLarge);
  // Just under the limit as sent, over it once _etag and _ts are added.
  std::string edge = json{{"id", "edge"}, {"tenant", "t"}, {"v", ""}}.dump();
  edge = json{{"id", "edge"}, {"tenant", "t"}, {"v", std::string(kMaxItemBytes - edge.size(), 'x')}}.dump();
  REQUIRE(edge.size() == kMaxItemBytes);
  CHECK(f.store->UpsertItem("db", "c", edge).status().code() == Code::kTooLarge);
  CHECK(f.store->UpsertItem("db", "missing", Doc("x", "t")).status().code() == Code::kNotFound);
  CHECK(f.store->UpsertItem("nodb", "c", Doc("x", "t")).status().code() == Code::kNotFound);
  CHECK(f.store->ReadItem("db", "c", "not-json", "keep").status().code() == Code::kInvalidArgument);
  CHECK(f.store->ReadItem("db", "c", "\"t\"", "").status().code() == Code::kInvalidArgument);
  CHECK(f.store->last_lsn() == lsn_before);  // nothing was written
  CHECK(f.CountItems() == 1);
  CHECK(json::parse(f.store->ReadItem("db", "c", "\"t\"", "keep")->json)["v"] == 1);
}

TEST_CASE("Lists paginate with continuation tokens, per container and per partition", "[storage][store]") {
  Fixture f;
  REQUIRE(f.store->CreateContainer("db", "other", "/tenant").ok());
  for (int i = 0; i < 25; ++i)
    REQUIRE(f.store->CreateItem("db", "c", Doc("i" + std::to_string(i), i % 2 ? "odd" : "even")).ok());
  REQUIRE(f.store->CreateItem("db", "other", Doc("x", "odd")).ok());

  std::set<std::string> seen;
  ListOptions options;
  options.max_items = 7;
  int pages = 0;
  do {
    auto page = f.store->ListItems("db", "c", options);
    REQUIRE(page.ok());
    REQUIRE(page->items.size() <= 7);
    for (const auto& item : page->items) seen.insert(json::parse(item)["id"].get<std::string>());
    options.continuation = page->continuation;
    ++pages;
  } while (!options.continuation.empty() && pages < 100);
  CHECK(seen.size() == 25);
  CHECK(pages == 4);

  ListOptions odd;
  odd.partition_key = "\"odd\"";
  odd.max_items = 5;
  size_t odd_count = 0;
  std::string token;
  do {
    odd.continuation = token;
    auto page = f.store->ListItems("db", "c", odd);
    REQUIRE(page.ok());
    for (const auto& item : page->items) CHECK(json::parse(item)["tenant"] == "odd");
    odd_count += page->items.size();
    token = page->continuation;
  } while (!token.empty());
  CHECK(odd_count == 12);

  // A token is only good for the listing that issued it.
  ListOptions first;
  first.max_items = 1;
  const std::string from_c = f.store->ListItems("db", "c", first)->continuation;
  REQUIRE_FALSE(from_c.empty());
  ListOptions elsewhere;
  elsewhere.continuation = from_c;
  CHECK(f.store->ListItems("db", "other", elsewhere).status().code() == Code::kInvalidArgument);
  elsewhere.continuation = "%%%garbage";
  CHECK(f.store->ListItems("db", "c", elsewhere).status().code() == Code::kInvalidArgument);
  ListOptions zero;
  zero.max_items = 0;
  CHECK(f.store->ListItems("db", "c", zero).status().code() == Code::kInvalidArgument);
}

TEST_CASE("Restart durability: write, close, reopen, read", "[storage][store][durability]") {
  Fixture f;
  for (int i = 0; i < 50; ++i) REQUIRE(f.store->UpsertItem("db", "c", Doc("i" + std::to_string(i), "t", i)).ok());
  REQUIRE(f.store->DeleteItem("db", "c", "\"t\"", "i7").ok());
  const uint64_t lsn = f.store->last_lsn();
  f.Reopen();
  CHECK(f.store->last_lsn() == lsn);
  CHECK(f.CountItems() == 49);
  CHECK(json::parse(f.store->ReadItem("db", "c", "\"t\"", "i42")->json)["v"] == 42);
  CHECK(f.store->ReadItem("db", "c", "\"t\"", "i7").status().code() == Code::kNotFound);
  auto next = f.store->UpsertItem("db", "c", Doc("new", "t"));
  REQUIRE(next.ok());
  CHECK(next->lsn == lsn + 1);  // the change log continues where it stopped
}

TEST_CASE("A wrong master key is refused at open and changes nothing", "[storage][store][keys]") {
  Fixture f;
  REQUIRE(f.store->UpsertItem("db", "c", Doc("i1", "t", 1)).ok());
  f.store.reset();
  StoreOptions options;
  options.path = f.path();
  auto wrong = DocumentStore::Open(options, crypto::MasterKey::Generate());
  REQUIRE(wrong.status().code() == Code::kFailedPrecondition);
  CHECK(wrong.status().message().find("master key") != std::string::npos);
  f.Reopen();
  CHECK(json::parse(f.store->ReadItem("db", "c", "\"t\"", "i1")->json)["v"] == 1);
}

TEST_CASE("Tamper: a flipped byte of a stored value fails the read", "[storage][store][tamper]") {
  Fixture f;
  REQUIRE(f.store->UpsertItem("db", "c", Doc("i1", "t", 1)).ok());
  f.store.reset();
  {
    RawDb raw(f.path(), f.key);
    auto items = raw.Items();
    REQUIRE(items.size() == 1);
    CHECK(items[0].second.find("\"tenant\"") == std::string::npos);  // sealed, not plaintext
    std::string value = items[0].second;
    value[value.size() - 20] ^= 0x01;
    REQUIRE(raw.db->Put(rocksdb::WriteOptions(), raw.items(), items[0].first, value).ok());
  }
  f.Reopen();
  CHECK(f.store->ReadItem("db", "c", "\"t\"", "i1").status().code() == Code::kCorruption);
  CHECK(f.store->ListItems("db", "c", ListOptions{}).status().code() == Code::kCorruption);
}

TEST_CASE("Sealing is bound to place: a value copied under another id does not open", "[storage][store][tamper]") {
  Fixture f;
  REQUIRE(f.store->UpsertItem("db", "c", Doc("a", "t", 1)).ok());
  REQUIRE(f.store->UpsertItem("db", "c", Doc("b", "t", 2)).ok());
  f.store.reset();
  {
    RawDb raw(f.path(), f.key);
    auto items = raw.Items();
    REQUIRE(items.size() == 2);
    // Overwrite b's value with a's sealed bytes: a valid ciphertext, wrong place.
    REQUIRE(raw.db->Put(rocksdb::WriteOptions(), raw.items(), items[1].first, items[0].second).ok());
  }
  f.Reopen();
  CHECK(f.store->ReadItem("db", "c", "\"t\"", "a").ok());
  CHECK(f.store->ReadItem("db", "c", "\"t\"", "b").status().code() == Code::kCorruption);
}

TEST_CASE("Master-key rotation: afterwards only the new key opens the store", "[storage][store][keys]") {
  Fixture f;
  REQUIRE(f.store->UpsertItem("db", "c", Doc("i1", "t", 1)).ok());
  REQUIRE(f.store->RotateDataKey("db", "c").ok());
  REQUIRE(f.store->UpsertItem("db", "c", Doc("i2", "t", 2)).ok());
  const crypto::MasterKey next = crypto::MasterKey::Generate();
  REQUIRE(f.store->RotateMasterKey(next.Clone()).ok());
  CHECK(f.store->master_key_id() == next.id());
  REQUIRE(f.store->UpsertItem("db", "c", Doc("i3", "t", 3)).ok());  // online: still serving
  f.store.reset();

  StoreOptions options;
  options.path = f.path();
  CHECK(DocumentStore::Open(options, f.key.Clone()).status().code() == Code::kFailedPrecondition);
  auto store = DocumentStore::Open(options, next.Clone());
  REQUIRE(store.ok());
  for (int i = 1; i <= 3; ++i) {
    auto r = (*store)->ReadItem("db", "c", "\"t\"", "i" + std::to_string(i));
    REQUIRE(r.ok());
    CHECK(json::parse(r->json)["v"] == i);
  }
}

TEST_CASE("Stored secrets: created once, survive restart and master-key rotation", "[storage][store][keys]") {
  Fixture f;
  auto first = f.store->LoadOrCreateSecret("account-key/primary", 64);
  REQUIRE(first.ok());
  CHECK(first->value.size() == 64);
  auto again = f.store->LoadOrCreateSecret("account-key/primary", 64);
  REQUIRE(again.ok());
  CHECK(again->value.Equals(first->value));
  CHECK_FALSE(f.store->LoadOrCreateSecret("account-key/secondary", 64)->value.Equals(first->value));
  CHECK(f.store->LoadOrCreateSecret("", 64).status().code() == Code::kInvalidArgument);
  const crypto::MasterKey next = crypto::MasterKey::Generate();
  REQUIRE(f.store->RotateMasterKey(next.Clone()).ok());
  f.store.reset();
  f.key = next.Clone();
  f.Reopen();
  auto after = f.store->LoadOrCreateSecret("account-key/primary", 64);
  REQUIRE(after.ok());
  CHECK(after->value.Equals(first->value));
  CHECK(after->created_unix_s == first->created_unix_s);
}

TEST_CASE("DEK rotation: new writes use the new version, old items stay readable", "[storage][store][keys]") {
  // No background re-seal: this test sees both versions on disk at once
  // (tests/storage/reseal_test.cc covers the re-seal).
  Fixture f(/*reseal=*/false);
  REQUIRE(f.store->UpsertItem("db", "c", Doc("old", "t", 1)).ok());
  auto v = f.store->RotateDataKey("db", "c");
  REQUIRE(v.ok());
  CHECK(*v == 2);
  REQUIRE(f.store->UpsertItem("db", "c", Doc("new", "t", 2)).ok());
  CHECK(f.store->DataKeyVersions("db", "c") == std::vector<uint32_t>{1, 2});
  CHECK(f.store->RotateDataKey("db", "missing").status().code() == Code::kNotFound);
  f.store.reset();
  {
    RawDb raw(f.path(), f.key);
    std::set<int> versions;  // byte 1 of a sealed value is the low byte of its DEK version
    for (const auto& [k, value] : raw.Items()) versions.insert(static_cast<uint8_t>(value[1]));
    CHECK(versions == std::set<int>{1, 2});
  }
  f.Reopen();
  CHECK(json::parse(f.store->ReadItem("db", "c", "\"t\"", "old")->json)["v"] == 1);
  CHECK(json::parse(f.store->ReadItem("db", "c", "\"t\"", "new")->json)["v"] == 2);
}

TEST_CASE("An unsealed (benchmark) store never opens as sealed, nor the reverse", "[storage][store]") {
  TempDir dir;
  const crypto::MasterKey key = crypto::MasterKey::Generate();
  { auto s = OpenStore(dir.sub("plain"), key, /*sealed=*/false); }
  { auto s = OpenStore(dir.sub("sealed"), key, /*sealed=*/true); }
  StoreOptions options;
  options.path = dir.sub("plain");
  CHECK(DocumentStore::Open(options, key.Clone()).status().code() == Code::kFailedPrecondition);
  options.path = dir.sub("sealed");
  options.seal_items = false;
  CHECK(DocumentStore::Open(options, key.Clone()).status().code() == Code::kFailedPrecondition);
}

TEST_CASE("Change log: dense, ordered LSNs under concurrent writers", "[storage][store][changelog]") {
  Fixture f;
  const uint64_t start = f.store->last_lsn();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100;
  std::vector<std::vector<uint64_t>> lsns(kThreads);
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = f.store->UpsertItem("db", "c", Doc("t" + std::to_string(t) + "-" + std::to_string(i % 10), "t", i));
        if (r.ok()) lsns[t].push_back(r->lsn);
      }
    });
  }
  for (auto& th : pool) th.join();
  std::set<uint64_t> all;
  for (const auto& v : lsns) {
    CHECK(v.size() == kPerThread);
    CHECK(std::is_sorted(v.begin(), v.end()));  // one writer's LSNs follow its program order
    all.insert(v.begin(), v.end());
  }
  CHECK(all.size() == kThreads * kPerThread);
  CHECK(*all.begin() == start + 1);
  CHECK(*all.rbegin() == start + kThreads * kPerThread);

  auto log = f.store->ReadChangeLog(start + 1, kThreads * kPerThread + 10);
  REQUIRE(log.ok());
  REQUIRE(log->size() == kThreads * kPerThread);
  for (size_t i = 0; i < log->size(); ++i) {
    CHECK((*log)[i].lsn == start + 1 + i);
    CHECK((*log)[i].op == ChangeOp::kPutItem);
    CHECK_FALSE((*log)[i].sealed_value.empty());
  }
  // The last write to each item, per the log, is what the item holds now.
  std::map<std::string, std::string> last_etag;
  for (const auto& r : *log) last_etag[r.item_id] = r.etag;
  for (const auto& [id, etag] : last_etag) CHECK(f.store->ReadItem("db", "c", "\"t\"", id)->etag == etag);
}

TEST_CASE("Change log records every kind of write, in order", "[storage][store][changelog]") {
  Fixture f;
  REQUIRE(f.store->CreateItem("db", "c", Doc("i1", "t")).ok());
  REQUIRE(f.store->DeleteItem("db", "c", "\"t\"", "i1").ok());
  REQUIRE(f.store->RotateDataKey("db", "c").ok());
  REQUIRE(f.store->DeleteContainer("db", "c").ok());
  auto log = f.store->ReadChangeLog(1, 100);
  REQUIRE(log.ok());
  std::vector<ChangeOp> ops;
  for (const auto& r : *log) ops.push_back(r.op);
  CHECK(ops == std::vector<ChangeOp>{ChangeOp::kCreateDatabase, ChangeOp::kCreateContainer, ChangeOp::kPutItem,
                                     ChangeOp::kDeleteItem, ChangeOp::kRotateDataKey, ChangeOp::kDeleteContainer});
  CHECK((*log)[2].item_id == "i1");
  CHECK((*log)[2].partition_key == "\"t\"");
}
