// Backups on a real bulwarkd: on by default (the node takes one shortly
// after it starts leading, and a second copy goes to backup.geo_dir); taken
// on request while the node serves; verified over the API; restored offline
// by `bulwark restore` into a new store that holds exactly the backed-up
// state; a corrupted backup is refused by verify and by restore.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "storage/document_store.h"
#include "tests/server/run_command.h"
#include "tests/server/test_node.h"

using namespace bulwark;
using bulwark::testing::RunCommand;
using bulwark::testing::TestNode;
namespace fs = std::filesystem;
using nlohmann::json;

TEST_CASE(
    "Backups: periodic by default with a geo copy, on request, verified, restored offline, a corrupted one "
    "is refused, a purge takes its keys out of every backup",
    "[server][integration][backup]") {
  bulwark::testing::TempDir geo;
  TestNode node(false, {"--set", "backup.geo_dir=" + geo.sub("copies"), "--set", "backup.retention=5"});
  node.Seed();
  for (int i = 0; i < 20; ++i) {
    REQUIRE(node.client->UpsertItem("db", "c", json{{"id", "i" + std::to_string(i)}, {"tenant", "t"}, {"v", i}}.dump())
                .ok());
  }
  // The periodic backup: none exists yet, so the leader takes one within seconds.
  std::vector<client::BackupRecord> listed;
  for (int tries = 0; tries < 100 && listed.size() < 2; ++tries) {
    auto l = node.client->ListBackups();
    REQUIRE(l.ok());
    listed = *l;
    if (listed.size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].location == "primary");
  CHECK(listed[1].location == "geo");
  CHECK(listed[0].id == listed[1].id);

  auto taken = node.client->BackupNow();
  INFO(taken.status().ToString());
  REQUIRE(taken.ok());
  // After the backup: a later write and the container's deletion.
  REQUIRE(node.client->UpsertItem("db", "c", json{{"id", "late"}, {"tenant", "t"}, {"v", 99}}.dump()).ok());
  REQUIRE(node.client->DeleteContainer("db", "c").ok());
  auto verified = node.client->VerifyBackup(taken->id);
  INFO(verified.status().ToString());
  REQUIRE(verified.ok());

  const fs::path cluster_dir = node.cluster->options().dir;
  const std::string backups = (cluster_dir / "node-1" / "data" / "backups").string();
  const std::string master = "file:" + (cluster_dir / "master.key").string();
  const std::string cli = std::string(BULWARK_BIN_DIR) + "/bulwark ";
  const std::string target = node.dir.sub("restored");
  auto restore_and_open = [&](const std::string& location, const std::string& id, const std::string& target) {
    auto r = RunCommand(cli + "restore --from " + location + " --id " + id + " --target " + target +
                        " --master-key-uri " + master);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    storage::StoreOptions o;
    o.path = target;
    auto key = crypto::LoadMasterKey(master);
    REQUIRE(key.ok());
    auto store = storage::DocumentStore::Open(o, std::move(key).value());
    REQUIRE(store.ok());
    return std::move(store).value();
  };
  {
    auto store = restore_and_open(backups, taken->id, target);
    auto item = store->ReadItem("db", "c", "\"t\"", "i7");
    REQUIRE(item.ok());
    CHECK(json::parse(item->json).at("v") == 7);
    CHECK(store->ReadItem("db", "c", "\"t\"", "late").status().code() == Code::kNotFound);
  }

  // One flipped byte: verify and restore both refuse it; restore leaves nothing.
  const fs::path data = fs::path(backups) / taken->id / "data";
  std::string bytes;
  {
    std::ifstream in(data, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    bytes = s.str();
  }
  bytes[bytes.size() / 2] ^= 1;
  std::ofstream(data, std::ios::binary) << bytes;
  auto bad = node.client->VerifyBackup(taken->id);
  CHECK(bad.status().code() == Code::kCorruption);
  auto refused = RunCommand(cli + "restore --from " + backups + " --id " + taken->id + " --target " +
                            node.dir.sub("restored2") + " --master-key-uri " + master);
  CHECK(refused.exit_code != 0);
  CHECK(refused.output.find("authentication") != std::string::npos);
  CHECK(!fs::exists(node.dir.sub("restored2")));

  // Crypto-shredding reaches the backups: the purged container's keys leave
  // every backup's key catalog (both locations) before the node's shred is
  // done; the backups stay, and restore everything else.
  REQUIRE(node.client->CreateContainer("db", "kept", "/tenant").ok());
  REQUIRE(node.client->UpsertItem("db", "kept", json{{"id", "k1"}, {"tenant", "t"}, {"v", 5}}.dump()).ok());
  auto before_purge = node.client->BackupNow();
  REQUIRE(before_purge.ok());
  REQUIRE(node.client->PurgeContainer("db", "c").ok());
  bool forgotten = false;
  for (int tries = 0; tries < 150 && !forgotten; ++tries) {
    forgotten = node.Log().find("event=backups_forgot_purged") != std::string::npos;
    if (!forgotten) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  REQUIRE(forgotten);
  auto after = node.client->ListBackups();
  REQUIRE(after.ok());
  CHECK(std::any_of(after->begin(), after->end(), [&](const client::BackupRecord& b) { return b.id == listed[0].id; }));
  for (const std::string& location : {backups, geo.sub("copies")}) {
    const std::string target = node.dir.sub("after-purge-" + std::to_string(location.size()));
    auto store = restore_and_open(location, before_purge->id, target);
    auto kept = store->ReadItem("db", "kept", "\"t\"", "k1");
    INFO(kept.status().ToString());
    CHECK(kept.ok());
  }
  {
    // The first backup still names container c and holds its sealed items,
    // but nothing can open them any more.
    auto store = restore_and_open(backups, listed[0].id, node.dir.sub("first-after-purge"));
    auto shredded = store->ReadItem("db", "c", "\"t\"", "i7");
    INFO(shredded.status().ToString());
    CHECK_FALSE(shredded.ok());
  }
}

namespace {
// A time strictly between the writes before and after it.
int64_t Mark() {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const int64_t t = UnixNowMillis();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return t;
}
std::set<int> ValuesIn(storage::DocumentStore& s) {
  std::set<int> out;
  storage::ListOptions lo;
  lo.max_items = storage::kMaxPageItems;
  auto page = s.ListItems("db", "c", lo);
  REQUIRE(page.ok());
  REQUIRE(page->continuation.empty());
  for (const auto& item : page->items) out.insert(json::parse(item).at("v").get<int>());
  return out;
}
std::set<int> Upto(int n) {
  std::set<int> out;
  for (int i = 0; i < n; ++i) out.insert(i);
  return out;
}
}  // namespace

TEST_CASE(
    "Continuous backup: restore to a point between two backups, bring back a deleted container and item, "
    "with no plaintext in the archive",
    "[server][integration][backup][pitr]") {
  constexpr const char* kCanary = "CANARY-pitr-plaintext-e41d";
  TestNode node(false, {"--set", "backup.continuous=true", "--set", "backup.archive_interval_s=1"});
  node.Seed();
  auto put = [&](const std::string& id, int v) {
    REQUIRE(
        node.client->UpsertItem("db", "c", json{{"id", id}, {"tenant", "t"}, {"v", v}, {"note", kCanary}}.dump()).ok());
  };
  for (int i = 0; i < 20; ++i) put("i" + std::to_string(i), i);
  // The first periodic backup, taken by itself.
  std::vector<client::BackupRecord> listed;
  for (int tries = 0; tries < 100 && listed.empty(); ++tries) {
    auto l = node.client->ListBackups();
    REQUIRE(l.ok());
    listed = *l;
    if (listed.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  REQUIRE(listed.size() == 1);
  for (int i = 20; i < 40; ++i) put("i" + std::to_string(i), i);
  const int64_t t1 = Mark();
  for (int i = 40; i < 60; ++i) put("i" + std::to_string(i), i);
  auto second = node.client->BackupNow();
  REQUIRE(second.ok());
  for (int i = 60; i < 70; ++i) put("i" + std::to_string(i), i);
  put("precious", 1000);
  const int64_t t2 = Mark();
  REQUIRE(node.client->DeleteItem("db", "c", "\"t\"", "precious").ok());
  REQUIRE(node.client->DeleteContainer("db", "c").ok());

  const fs::path cluster_dir = node.cluster->options().dir;
  const std::string backups = (cluster_dir / "node-1" / "data" / "backups").string();
  const std::string master = "file:" + (cluster_dir / "master.key").string();
  const std::string cli = std::string(BULWARK_BIN_DIR) + "/bulwark ";
  auto open = [&](const std::string& path) {
    storage::StoreOptions o;
    o.path = path;
    auto key = crypto::LoadMasterKey(master);
    REQUIRE(key.ok());
    auto store = storage::DocumentStore::Open(o, std::move(key).value());
    INFO(store.status().ToString());
    REQUIRE(store.ok());
    return std::move(store).value();
  };
  auto restore = [&](int64_t t, const std::string& target, const std::string& extra = "") {
    return RunCommand(cli + "restore --from " + backups + " --to-time " + std::to_string(t) + " --target " + target +
                      " --master-key-uri " + master + extra);
  };
  // The archive is written every second: until it holds the deletion, a
  // restore to t2 is refused as not yet vouched for (and leaves nothing).
  bulwark::testing::CommandResult at_t2;
  for (int tries = 0; tries < 60; ++tries) {
    at_t2 = restore(t2, node.dir.sub("at-t2"));
    if (at_t2.exit_code == 0) break;
    INFO(at_t2.output);
    REQUIRE((at_t2.output.find("vouches for writes up to") != std::string::npos ||
             at_t2.output.find("does not continue backup") != std::string::npos));
    REQUIRE(!fs::exists(node.dir.sub("at-t2")));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  INFO(at_t2.output);
  REQUIRE(at_t2.exit_code == 0);
  {
    // Just before the deletes: the container and every item are back.
    auto s = open(node.dir.sub("at-t2"));
    CHECK(ValuesIn(*s) == [] {
      auto v = Upto(70);
      v.insert(1000);
      return v;
    }());
  }
  {
    // Between the two backups: from the first, through the archive; nothing
    // written after t1.
    auto r = restore(t1, node.dir.sub("at-t1"));
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(r.output.find("backup " + listed[0].id) != std::string::npos);
    auto s = open(node.dir.sub("at-t1"));
    CHECK(ValuesIn(*s) == Upto(40));
  }
  {
    // One deleted item, printed as it was.
    auto r = restore(t2, node.dir.sub("item"), " --database db --container c --item precious --partition-key '\"t\"'");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(r.output.find("\"id\":\"precious\"") != std::string::npos);
    CHECK(r.output.find("\"v\":1000") != std::string::npos);
  }
  // The window `backup list` shows: from the first backup to past t2.
  client::BackupWindowRecord window;
  REQUIRE(node.client->ListBackups(&window).ok());
  CHECK(window.continuous);
  CHECK(window.archive_segments >= 1);
  CHECK(window.from_unix_ms == listed[0].image_unix_ms);
  CHECK(window.to_unix_ms >= second->image_unix_ms);
  // `backup verify --archive`: every segment read, no hole.
  auto archive = node.client->VerifyArchive();
  INFO(archive.status().ToString());
  REQUIRE(archive.ok());
  CHECK(archive->segments == window.archive_segments);
  CHECK(archive->commands >= 53);  // at least every write after the first backup
  CHECK(archive->holes.empty());
  // Only ciphertext in the backups and the archive.
  size_t files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(backups)) {
    if (!entry.is_regular_file()) continue;
    ++files;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    INFO(entry.path());
    CHECK(ss.str().find(kCanary) == std::string::npos);
  }
  CHECK(files >= 6);  // two backups and at least one segment, two files each
}

TEST_CASE("Backups: a restored store starts a new replica set that serves and takes writes",
          "[server][integration][backup]") {
  TestNode node;
  node.Seed();
  for (int i = 0; i < 10; ++i) {
    REQUIRE(node.client->UpsertItem("db", "c", json{{"id", "i" + std::to_string(i)}, {"tenant", "t"}, {"v", i}}.dump())
                .ok());
  }
  auto taken = node.client->BackupNow();
  REQUIRE(taken.ok());
  REQUIRE(node.client->UpsertItem("db", "c", json{{"id", "late"}, {"tenant", "t"}, {"v", 99}}.dump()).ok());
  const fs::path cluster_dir = node.cluster->options().dir;
  const fs::path data = cluster_dir / "node-1" / "data";
  const std::string saved = node.dir.sub("saved-backups");
  const std::string master = "file:" + (cluster_dir / "master.key").string();
  fs::copy(data / "backups", saved, fs::copy_options::recursive);
  node.client.reset();
  REQUIRE(node.cluster->Stop().ok());
  // A new node directory: nothing of the old one but the restored store.
  fs::remove_all(data);
  fs::create_directories(data);
  auto r = RunCommand(std::string(BULWARK_BIN_DIR) + "/bulwark restore --from " + saved + " --id " + taken->id +
                      " --target " + (data / "store").string() + " --master-key-uri " + master);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  node.Start();
  auto item = node.client->ReadItem("db", "c", "\"t\"", "i7");
  INFO(item.status().ToString());
  REQUIRE(item.ok());
  CHECK(node.client->ReadItem("db", "c", "\"t\"", "late").status().code() == Code::kNotFound);
  // New writes get raft indexes after the restored one (not taken for
  // entries already applied), and survive a restart.
  auto put = node.client->UpsertItem("db", "c", json{{"id", "new"}, {"tenant", "t"}, {"v", 7}}.dump());
  INFO(put.status().ToString());
  REQUIRE(put.ok());
  node.client.reset();
  REQUIRE(node.cluster->Stop().ok());
  node.Start();
  CHECK(node.client->ReadItem("db", "c", "\"t\"", "new").ok());
  CHECK(node.Log().find("event=log_restarted_after_restore") != std::string::npos);
}

TEST_CASE("bulwark restore refuses bad arguments, naming them, before it reads anything",
          "[server][backup][bad-input]") {
  bulwark::testing::TempDir dir;
  const std::string cli = std::string(BULWARK_BIN_DIR) + "/bulwark restore --from " + dir.sub("none") +
                          " --master-key-uri file:" + dir.sub("no-such-key") + " --target " + dir.sub("t");
  auto refused = [&](const std::string& args, const std::string& says) {
    auto r = RunCommand(cli + " " + args);
    INFO(args << " -> " << r.output);
    CHECK(r.exit_code != 0);
    CHECK(r.output.find(says) != std::string::npos);
    CHECK_FALSE(fs::exists(dir.sub("t")));
  };
  refused("--to-time yesterday", "a time is");
  refused("--to-time 2026-11-29T01:00:00", "a time is");  // no Z: not UTC
  refused("--to-time 2026-11-29T01:00:00.Z", "a time is");
  refused("", "give --id or --to-time");
  refused("--to-time 1 --database db --container c --item x", "--item needs --partition-key");
  refused("--id b-1-00000000 --to-time 1", "excludes");
  refused("--container c --to-time 1", "requires --database");
  refused("--to-time 2026-11-29T01:00:00Z", "no-such-key");  // arguments fine: the key is read, and missing
}
