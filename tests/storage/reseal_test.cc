// Re-sealing after a container data-key rotation: the background job
// rewrites every old value (items and change log) under the current version
// without changing what reads return, the usage report shows the progress, an
// unfinished re-seal resumes at the next open, and a value that cannot be
// opened is kept as it is and reported, never dropped.
#include <chrono>
#include <map>
#include <thread>

#include <rocksdb/db.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "crypto/item_seal.h"
#include "crypto/secret.h"
#include "storage/document_store.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::storage;
using bulwark::testing::TempDir;
using nlohmann::json;

namespace {

constexpr int kItems = 300;
constexpr auto kResealDeadline = std::chrono::seconds(60);

struct ResealFixture {
  TempDir dir;
  crypto::MasterKey key = crypto::MasterKey::Generate();
  std::unique_ptr<DocumentStore> store;
  std::map<std::string, std::string> stored_json;  // id -> the item as stored

  explicit ResealFixture(bool reseal_in_background = true) { Open(reseal_in_background); }
  void Open(bool reseal_in_background) {
    store.reset();
    StoreOptions options;
    options.path = dir.sub("store");
    options.reseal_in_background = reseal_in_background;
    auto opened = DocumentStore::Open(options, key.Clone());
    INFO(opened.status().ToString());
    REQUIRE(opened.ok());
    store = std::move(opened).value();
  }
  void Populate() {
    REQUIRE(store->CreateDatabase("db").ok());
    REQUIRE(store->CreateContainer("db", "c", "/tenant").ok());
    for (int i = 0; i < kItems; ++i) {
      const std::string id = "i" + std::to_string(i);
      auto r = store->UpsertItem("db", "c", json{{"id", id}, {"tenant", "t" + std::to_string(i % 7)}, {"v", i}}.dump());
      REQUIRE(r.ok());
      stored_json[id] = r->json;
    }
    REQUIRE(store->Compact().ok());  // into SSTs, where the report counts them
  }
  ContainerKeyUsage Usage(const std::string& container = "c") {
    auto report = store->DataKeyUsageReport();
    INFO(report.status().ToString());
    REQUIRE(report.ok());
    for (const auto& u : report->containers) {
      if (u.database == "db" && u.container == container) return u;
    }
    FAIL("container not in the report");
    return {};
  }
  // Polls the report until the container's background re-seal is done.
  ContainerKeyUsage WaitForReseal() {
    const auto deadline = std::chrono::steady_clock::now() + kResealDeadline;
    while (std::chrono::steady_clock::now() < deadline) {
      ContainerKeyUsage u = Usage();
      if (!u.reseal_pending) return u;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("the re-seal did not finish within the deadline");
    return {};
  }
  void CheckEveryItemReadsBack() {
    for (const auto& [id, text] : stored_json) {
      const int i = std::stoi(id.substr(1));
      auto r = store->ReadItem("db", "c", "\"t" + std::to_string(i % 7) + "\"", id);
      INFO(id << ": " << r.status().ToString());
      REQUIRE(r.ok());
      CHECK(r->json == text);
    }
  }
  // DEK version -> values, by scanning the column family (not the report).
  std::map<uint32_t, int> RawVersions(const char* cf_name) {
    std::map<uint32_t, int> out;
    rocksdb::ColumnFamilyHandle* cf = store->column_family_for_testing(cf_name);
    REQUIRE(cf != nullptr);
    std::unique_ptr<rocksdb::Iterator> it(store->raw_db()->NewIterator(rocksdb::ReadOptions(), cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string sealed = it->value().ToString();
      if (std::string(cf_name) == "changelog") {
        auto lsn = ParseLsnKey(it->key().ToStringView());
        REQUIRE(lsn.ok());
        auto record = ChangeRecord::Decode(*lsn, sealed);
        REQUIRE(record.ok());
        if (record->op != ChangeOp::kPutItem) continue;
        sealed = record->sealed_value;
      }
      auto version = crypto::SealedKeyVersion(sealed);
      REQUIRE(version.ok());
      ++out[*version];
    }
    REQUIRE(it->status().ok());
    return out;
  }
};

const DataKeyVersionUsage* Version(const ContainerKeyUsage& u, uint32_t version) {
  for (const auto& v : u.versions) {
    if (v.version == version) return &v;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("DEK rotation re-seals every old item and change-log value in the background", "[storage][reseal][keys]") {
  ResealFixture f;
  f.Populate();
  ContainerKeyUsage before = f.Usage();
  CHECK(before.current_version == 1);
  REQUIRE(Version(before, 1) != nullptr);
  CHECK(Version(before, 1)->items == kItems);
  CHECK(Version(before, 1)->change_log_records == kItems);

  REQUIRE(f.store->RotateDataKey("db", "c").value() == 2);
  ContainerKeyUsage after = f.WaitForReseal();
  CHECK(after.current_version == 2);
  const DataKeyVersionUsage* v1 = Version(after, 1);
  CHECK((v1 == nullptr || (v1->items == 0 && v1->change_log_records == 0)));
  REQUIRE(Version(after, 2) != nullptr);
  CHECK(Version(after, 2)->current);
  CHECK(Version(after, 2)->items == kItems);
  CHECK(Version(after, 2)->change_log_records == kItems);

  // The disk agrees with the report, and reads return what was written.
  CHECK(f.RawVersions("items") == std::map<uint32_t, int>{{2, kItems}});
  CHECK(f.RawVersions("changelog") == std::map<uint32_t, int>{{2, kItems}});
  f.CheckEveryItemReadsBack();
  auto report = f.store->DataKeyUsageReport();
  REQUIRE(report.ok());
  CHECK(report->resealed >= 2 * kItems);
  CHECK(report->reseal_failures == 0);
}

TEST_CASE("Writes and reads go on while a re-seal runs, and nothing is lost", "[storage][reseal][keys]") {
  ResealFixture f;
  f.Populate();
  REQUIRE(f.store->RotateDataKey("db", "c").ok());
  // Overwrite every item while the job may be running.
  for (int i = 0; i < kItems; ++i) {
    const std::string id = "i" + std::to_string(i);
    auto r = f.store->UpsertItem("db", "c",
                                 json{{"id", id}, {"tenant", "t" + std::to_string(i % 7)}, {"v", i + 1000}}.dump());
    REQUIRE(r.ok());
    f.stored_json[id] = r->json;
  }
  f.WaitForReseal();
  f.CheckEveryItemReadsBack();
  REQUIRE(f.store->Compact().ok());
  CHECK(f.RawVersions("items") == std::map<uint32_t, int>{{2, kItems}});
  CHECK(f.RawVersions("changelog") == std::map<uint32_t, int>{{2, 2 * kItems}});
}

TEST_CASE("An unfinished re-seal resumes when the store opens again", "[storage][reseal][keys]") {
  SECTION("the job never ran") {
    ResealFixture f(/*reseal_in_background=*/false);
    f.Populate();
    REQUIRE(f.store->RotateDataKey("db", "c").ok());
    // The state a crash right after the rotation leaves: everything under v1.
    ContainerKeyUsage interrupted = f.Usage();
    CHECK(interrupted.current_version == 2);
    CHECK_FALSE(interrupted.reseal_pending);
    REQUIRE(Version(interrupted, 1) != nullptr);
    CHECK(Version(interrupted, 1)->items == kItems);
    CHECK(f.RawVersions("items") == std::map<uint32_t, int>{{1, kItems}});

    f.Open(/*reseal_in_background=*/true);
    ContainerKeyUsage resumed = f.WaitForReseal();
    const DataKeyVersionUsage* v1 = Version(resumed, 1);
    CHECK((v1 == nullptr || (v1->items == 0 && v1->change_log_records == 0)));
    CHECK(f.RawVersions("items") == std::map<uint32_t, int>{{2, kItems}});
    CHECK(f.RawVersions("changelog") == std::map<uint32_t, int>{{2, kItems}});
    f.CheckEveryItemReadsBack();
  }
  SECTION("the store closed while the job may be running") {
    ResealFixture f;
    f.Populate();
    REQUIRE(f.store->RotateDataKey("db", "c").ok());
    f.Open(/*reseal_in_background=*/true);  // closing stops the job wherever it is
    f.WaitForReseal();
    CHECK(f.RawVersions("items") == std::map<uint32_t, int>{{2, kItems}});
    CHECK(f.RawVersions("changelog") == std::map<uint32_t, int>{{2, kItems}});
    f.CheckEveryItemReadsBack();
  }
}

TEST_CASE("A value that cannot be opened is kept as it is and reported, not dropped", "[storage][reseal][keys]") {
  ResealFixture f;
  f.Populate();
  auto container = f.store->ReadContainer("db", "c");
  REQUIRE(container.ok());
  const std::string rid = crypto::HexDecode(container->rid).value();
  // A value that names DEK version 1 but whose ciphertext is junk.
  std::string bad(1, static_cast<char>(crypto::kSealFormatV1));
  bad += std::string("\x01\x00\x00\x00", 4);
  bad += std::string(crypto::kSealOverheadBytes + 20, 'x');
  const std::string key = ItemKey(rid, "\"t0\"", "bad");
  rocksdb::ColumnFamilyHandle* items = f.store->column_family_for_testing("items");
  REQUIRE(f.store->raw_db()->Put(rocksdb::WriteOptions(), items, key, bad).ok());
  REQUIRE(f.store->Compact().ok());

  REQUIRE(f.store->RotateDataKey("db", "c").ok());
  ContainerKeyUsage after = f.WaitForReseal();
  REQUIRE(Version(after, 1) != nullptr);
  CHECK(Version(after, 1)->items == 1);
  CHECK(Version(after, 1)->change_log_records == 0);
  auto report = f.store->DataKeyUsageReport();
  REQUIRE(report.ok());
  CHECK(report->reseal_failures >= 1);

  std::string stored;
  REQUIRE(f.store->raw_db()->Get(rocksdb::ReadOptions(), items, key, &stored).ok());
  CHECK(stored == bad);
  CHECK(f.store->ReadItem("db", "c", "\"t0\"", "bad").status().code() == Code::kCorruption);
  CHECK(f.RawVersions("items") == std::map<uint32_t, int>{{1, 1}, {2, kItems}});
  f.CheckEveryItemReadsBack();
}
