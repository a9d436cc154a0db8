// Backups (storage/backup.h): a backup taken while writes go on restores to
// exactly one consistent point; restoring needs the master key and refuses
// another; a changed, cut or reordered backup is refused by verify and by
// restore (which then leaves nothing behind); no plaintext reaches a backup.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "crypto/secret.h"
#include "storage/backup.h"
#include "storage/document_store.h"
#include "tests/storage/open_store.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::storage;
using bulwark::testing::OpenTestStore;
using bulwark::testing::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kCanary = "CANARY-plaintext-7f3a91";

std::string Doc(int i) {
  char id[16];
  std::snprintf(id, sizeof(id), "i%05d", i);
  return json{{"id", id}, {"tenant", "t"}, {"v", i}, {"note", kCanary}}.dump();
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::set<int> Values(DocumentStore& s) {
  std::set<int> out;
  ListOptions lo;
  lo.max_items = kMaxPageItems;
  for (;;) {
    auto page = s.ListItems("db", "c", lo);
    REQUIRE(page.ok());
    for (const auto& item : page->items) out.insert(json::parse(item).at("v").get<int>());
    if (page->continuation.empty()) break;
    lo.continuation = page->continuation;
  }
  return out;
}

// Database "db" with container "c" partitioned by /tenant.
void Seed(DocumentStore& s) {
  REQUIRE(s.CreateDatabase("db").ok());
  REQUIRE(s.CreateContainer("db", "c", "/tenant").ok());
}

}  // namespace

TEST_CASE("Backup: taken while writes go on, it restores one consistent point, and nothing after it", "[backup]") {
  TempDir dir;
  auto key = crypto::MasterKey::Generate();
  auto store = OpenTestStore(dir.sub("live"), key);
  Seed(*store);
  for (int i = 0; i < 200; ++i) REQUIRE(store->CreateItem("db", "c", Doc(i)).ok());
  // Writes go on, in order, while the backup runs.
  std::atomic<bool> stop{false};
  std::atomic<int> written{200};
  std::thread writer([&] {
    for (int i = 200; !stop.load() && i < 100000; ++i) {
      if (!store->CreateItem("db", "c", Doc(i)).ok()) break;
      written = i + 1;
    }
  });
  uint64_t progress_calls = 0;
  auto backup = WriteBackup(*store, key, dir.sub("backups"), [&](uint64_t) { ++progress_calls; });
  stop = true;
  writer.join();
  INFO(backup.status().ToString());
  REQUIRE(backup.ok());
  CHECK(progress_calls > 0);
  // Later changes, including the container's deletion, are not in it.
  REQUIRE(store->DeleteContainer("db", "c").ok());

  auto listed = ListBackups(dir.sub("backups"));
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK(listed->front().id == backup->id);
  REQUIRE(VerifyBackup(dir.sub("backups"), backup->id, key).ok());

  auto restored_info = RestoreBackup(dir.sub("backups"), backup->id, key, dir.sub("restored"));
  INFO(restored_info.status().ToString());
  REQUIRE(restored_info.ok());
  auto restored = OpenTestStore(dir.sub("restored"), key);
  const std::set<int> values = Values(*restored);
  // A prefix of the write order: 0..n-1 with nothing missing, n >= 200.
  REQUIRE(values.size() >= 200);
  CHECK(*values.rbegin() == static_cast<int>(values.size()) - 1);
  CHECK(static_cast<int>(values.size()) <= written.load());
  auto item = restored->ReadItem("db", "c", "\"t\"", "i00007");
  REQUIRE(item.ok());
  CHECK(json::parse(item->json).at("v") == 7);

  // Only ciphertext: no canary, id or name in any backup file.
  for (const auto& f : fs::recursive_directory_iterator(dir.sub("backups"))) {
    if (!f.is_regular_file()) continue;
    const std::string bytes = ReadAll(f.path());
    CHECK(bytes.find(kCanary) == std::string::npos);
    CHECK(bytes.find("i00007") == std::string::npos);
  }
}

TEST_CASE("Backup: the wrong master key, a changed byte, a cut file or a bad manifest are refused", "[backup]") {
  TempDir dir;
  auto key = crypto::MasterKey::Generate();
  auto store = OpenTestStore(dir.sub("live"), key);
  Seed(*store);
  for (int i = 0; i < 50; ++i) REQUIRE(store->CreateItem("db", "c", Doc(i)).ok());
  auto backup = WriteBackup(*store, key, dir.sub("backups"));
  REQUIRE(backup.ok());
  const fs::path bdir = fs::path(dir.sub("backups")) / backup->id;

  auto other = crypto::MasterKey::Generate();
  CHECK(VerifyBackup(dir.sub("backups"), backup->id, other).status().code() == Code::kFailedPrecondition);
  auto wrong = RestoreBackup(dir.sub("backups"), backup->id, other, dir.sub("t1"));
  CHECK(wrong.status().code() == Code::kFailedPrecondition);
  CHECK(wrong.status().message().find("master key") != std::string::npos);
  CHECK(!fs::exists(dir.sub("t1")));

  const std::string original = ReadAll(bdir / "data");
  auto write = [&](const std::string& bytes) { std::ofstream(bdir / "data", std::ios::binary) << bytes; };
  auto refused_everywhere = [&](const std::string& what) {
    INFO(what);
    auto v = VerifyBackup(dir.sub("backups"), backup->id, key);
    CHECK(v.status().code() == Code::kCorruption);
    auto r = RestoreBackup(dir.sub("backups"), backup->id, key, dir.sub("t2"));
    CHECK(r.status().code() == Code::kCorruption);
    CHECK(!fs::exists(dir.sub("t2")));  // nothing half-restored
  };
  // A flipped byte in the header, in the first message, and near the end.
  for (size_t at : {size_t{3}, size_t{40}, original.size() / 2, original.size() - 5}) {
    std::string bad = original;
    bad[at] ^= 0x20;
    write(bad);
    refused_everywhere("byte " + std::to_string(at) + " flipped");
  }
  // Cut: without the end marker, or mid-message.
  write(original.substr(0, original.size() - 30));
  refused_everywhere("cut before the end");
  write(original.substr(0, original.size() / 2));
  refused_everywhere("cut in half");
  write(original + "x");
  refused_everywhere("a trailing byte");
  write(original);
  REQUIRE(VerifyBackup(dir.sub("backups"), backup->id, key).ok());

  // A manifest that lies about the size, or does not parse.
  const std::string manifest = ReadAll(bdir / "MANIFEST");
  json j = json::parse(manifest);
  j["bytes"] = j["bytes"].get<uint64_t>() + 1;
  std::ofstream(bdir / "MANIFEST") << j.dump();
  refused_everywhere("manifest size off by one");
  std::ofstream(bdir / "MANIFEST") << "{not json";
  CHECK(VerifyBackup(dir.sub("backups"), backup->id, key).status().code() == Code::kCorruption);
  std::ofstream(bdir / "MANIFEST") << manifest;
  REQUIRE(VerifyBackup(dir.sub("backups"), backup->id, key).ok());

  // Bad ids and targets.
  CHECK(VerifyBackup(dir.sub("backups"), "../live", key).status().code() == Code::kInvalidArgument);
  CHECK(VerifyBackup(dir.sub("backups"), "b-1-deadbeef", key).status().code() == Code::kNotFound);
  CHECK(RestoreBackup(dir.sub("backups"), backup->id, key, dir.sub("live")).status().code() ==
        Code::kInvalidArgument);  // never over an existing directory
}

TEST_CASE("Backup: retention keeps the newest, and a partial backup is never listed", "[backup]") {
  TempDir dir;
  auto key = crypto::MasterKey::Generate();
  auto store = OpenTestStore(dir.sub("live"), key);
  REQUIRE(store->CreateDatabase("db").ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    auto b = WriteBackup(*store, key, dir.sub("backups"));
    REQUIRE(b.ok());
    ids.push_back(b->id);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // distinct millisecond ids
  }
  fs::create_directories(fs::path(dir.sub("backups")) / "b-9999999999999-00000000.partial");
  auto removed = PruneBackups(dir.sub("backups"), 2);
  REQUIRE(removed.ok());
  CHECK(*removed == 2);
  auto listed = ListBackups(dir.sub("backups"));
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 2);
  CHECK(listed->at(0).id == ids[2]);
  CHECK(listed->at(1).id == ids[3]);
}

TEST_CASE("Backup: after a master-key rotation the backups restore with the new key alone", "[backup]") {
  TempDir dir;
  auto old_key = crypto::MasterKey::Generate();
  auto new_key = crypto::MasterKey::Generate();
  auto store = OpenTestStore(dir.sub("live"), old_key);
  Seed(*store);
  REQUIRE(store->CreateItem("db", "c", Doc(1)).ok());
  auto backup = WriteBackup(*store, old_key, dir.sub("backups"));
  REQUIRE(backup.ok());
  auto rewrapped = RewrapBackups(dir.sub("backups"), old_key, new_key);
  INFO(rewrapped.status().ToString());
  REQUIRE(rewrapped.ok());
  CHECK(*rewrapped == 1);
  CHECK(VerifyBackup(dir.sub("backups"), backup->id, old_key).status().code() == Code::kFailedPrecondition);
  REQUIRE(VerifyBackup(dir.sub("backups"), backup->id, new_key).ok());
  REQUIRE(RestoreBackup(dir.sub("backups"), backup->id, new_key, dir.sub("restored")).ok());
  auto restored = OpenTestStore(dir.sub("restored"), new_key);
  CHECK(restored->ReadItem("db", "c", "\"t\"", "i00001").ok());
  // Again: nothing left to re-wrap; a third key is neither old nor new.
  CHECK(*RewrapBackups(dir.sub("backups"), old_key, new_key) == 0);
  CHECK(
      RewrapBackups(dir.sub("backups"), crypto::MasterKey::Generate(), crypto::MasterKey::Generate()).status().code() ==
      Code::kFailedPrecondition);
}

TEST_CASE("Backup: a purge drops one container's keys from the key catalog, the rest still restores", "[backup]") {
  TempDir dir;
  auto key = crypto::MasterKey::Generate();
  auto store = OpenTestStore(dir.sub("live"), key);
  Seed(*store);
  auto doomed = store->CreateContainer("db", "doomed", "/tenant");
  REQUIRE(doomed.ok());
  for (int i = 0; i < 20; ++i) {
    REQUIRE(store->CreateItem("db", "c", Doc(i)).ok());
    REQUIRE(store->CreateItem("db", "doomed", Doc(i)).ok());
  }
  REQUIRE(store->RotateDataKey("db", "doomed").ok());  // two key versions to drop
  const std::string location = dir.sub("backups");
  auto b = WriteBackup(*store, key, location);
  REQUIRE(b.ok());
  CHECK(fs::exists(fs::path(location) / b->id / "KEYS"));

  const std::string rid_hex = doomed->rid;  // ContainerInfo::rid as the API gives it: hex
  INFO(rid_hex);
  auto dropped = DropKeysFromBackups(location, key, {rid_hex});
  INFO(dropped.status().ToString());
  REQUIRE(dropped.ok());
  CHECK(*dropped == 2);
  auto again = DropKeysFromBackups(location, key, {rid_hex});
  REQUIRE(again.ok());
  CHECK(*again == 0);
  REQUIRE(VerifyBackup(location, b->id, key).ok());
  REQUIRE(RestoreBackup(location, b->id, key, dir.sub("restored")).ok());
  auto restored = OpenTestStore(dir.sub("restored"), key);
  CHECK(Values(*restored) == [] {
    std::set<int> v;
    for (int i = 0; i < 20; ++i) v.insert(i);
    return v;
  }());
  // Without its keys the container is left out of the restore altogether.
  CHECK_FALSE(restored->ReadItem("db", "doomed", "\"t\"", "i00003").ok());
  CHECK(restored->ReadContainer("db", "doomed").status().code() == Code::kNotFound);

  // The catalog is authenticated and required: swapped, cut or missing, the
  // backup is refused.
  const fs::path keys = fs::path(location) / b->id / "KEYS";
  std::string bytes = ReadAll(keys);
  bytes[bytes.size() - 1] ^= 1;
  std::ofstream(keys, std::ios::binary | std::ios::trunc) << bytes;
  CHECK(VerifyBackup(location, b->id, key).status().code() == Code::kCorruption);
  fs::remove(keys);
  CHECK(VerifyBackup(location, b->id, key).status().code() == Code::kCorruption);
  CHECK(RestoreBackup(location, b->id, key, dir.sub("restored2")).status().code() == Code::kCorruption);
  CHECK_FALSE(fs::exists(dir.sub("restored2")));
}

TEST_CASE("Backup: an item larger than a chunk (up to the 2 MiB item limit) is backed up and restored", "[backup]") {
  TempDir dir;
  auto key = crypto::MasterKey::Generate();
  auto store = OpenTestStore(dir.sub("live"), key);
  Seed(*store);
  // Near kMaxItemBytes: its image record (and its change-log record) is far
  // over the 1 MiB chunk the image aims for.
  const std::string big = json{{"id", "big"}, {"tenant", "t"}, {"v", 1}, {"pad", std::string(2'000'000, 'b')}}.dump();
  auto put = store->CreateItem("db", "c", big);
  INFO(put.status().ToString());
  REQUIRE(put.ok());
  const std::string location = dir.sub("backups");
  auto b = WriteBackup(*store, key, location);
  INFO(b.status().ToString());
  REQUIRE(b.ok());
  REQUIRE(VerifyBackup(location, b->id, key).ok());
  REQUIRE(RestoreBackup(location, b->id, key, dir.sub("restored")).ok());
  auto restored = OpenTestStore(dir.sub("restored"), key);
  auto item = restored->ReadItem("db", "c", "\"t\"", "big");
  REQUIRE(item.ok());
  CHECK(json::parse(item->json).at("pad").get<std::string>().size() == 2'000'000);
}

TEST_CASE("Backup: a re-wrap goes on past a backup it cannot re-wrap, and says so", "[backup]") {
  TempDir dir;
  auto key = crypto::MasterKey::Generate();
  auto stranger = crypto::MasterKey::Generate();
  auto store = OpenTestStore(dir.sub("live"), key);
  Seed(*store);
  REQUIRE(store->CreateItem("db", "c", Doc(1)).ok());
  const std::string location = dir.sub("backups");
  auto foreign = WriteBackup(*store, stranger, location);  // under a key neither old nor new
  REQUIRE(foreign.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  auto ours = WriteBackup(*store, key, location);
  REQUIRE(ours.ok());
  auto next = crypto::MasterKey::Generate();
  auto r = RewrapBackups(location, key, next);
  INFO(r.status().ToString());
  CHECK(r.status().code() == Code::kFailedPrecondition);
  CHECK(r.status().message().find("re-wrapped 1 backups; 1 could not be") != std::string::npos);
  // Ours was re-wrapped all the same: it restores with the new key alone.
  CHECK(RestoreBackup(location, ours->id, next, dir.sub("restored")).ok());
}
