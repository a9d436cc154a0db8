// Backups on a real bulwarkd: on by default (the node takes one shortly
// after it starts leading, and a second copy goes to backup.geo_dir); taken
// on request while the node serves; verified over the API; restored offline
// by `bulwark restore` into a new store that holds exactly the backed-up
// state; a corrupted backup is refused by verify and by restore.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "storage/document_store.h"
#include "tests/server/run_command.h"
#include "tests/server/test_node.h"

using namespace bulwark;
using bulwark::testing::RunCommand;
using bulwark::testing::TestNode;
namespace fs = std::filesystem;
using nlohmann::json;

TEST_CASE(
    "Backups: periodic by default with a geo copy, on request, verified, restored offline; a corrupted one "
    "is refused",
    "[server][integration][backup]") {
  bulwark::testing::TempDir geo;
  TestNode node(false, {"--set", "backup.geo_dir=" + geo.sub("copies")});
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
  auto restored = RunCommand(cli + "restore --from " + backups + " --id " + taken->id + " --target " + target +
                             " --master-key-uri " + master);
  INFO(restored.output);
  REQUIRE(restored.exit_code == 0);
  {
    storage::StoreOptions o;
    o.path = target;
    auto key = crypto::LoadMasterKey(master);
    REQUIRE(key.ok());
    auto store = storage::DocumentStore::Open(o, std::move(key).value());
    REQUIRE(store.ok());
    auto item = (*store)->ReadItem("db", "c", "\"t\"", "i7");
    REQUIRE(item.ok());
    CHECK(json::parse(item->json).at("v") == 7);
    CHECK((*store)->ReadItem("db", "c", "\"t\"", "late").status().code() == Code::kNotFound);
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

  // Crypto-shredding reaches the backups: every backup taken before the
  // purge holds the container's keys, so the purge removes them (both
  // locations) before its shred is done.
  REQUIRE(node.client->PurgeContainer("db", "c").ok());
  bool gone = false;
  for (int tries = 0; tries < 150 && !gone; ++tries) {
    auto l = node.client->ListBackups();
    REQUIRE(l.ok());
    gone = std::none_of(l->begin(), l->end(),
                        [&](const client::BackupRecord& b) { return b.id == taken->id || b.id == listed[0].id; });
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  CHECK(gone);
  CHECK(!fs::exists(fs::path(geo.sub("copies")) / listed[0].id));
  CHECK(node.Log().find("backup_removed_for_purge") != std::string::npos);
}
