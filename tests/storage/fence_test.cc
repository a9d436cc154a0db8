// Geo-fencing in the store (docs/geo-fencing.md): every command of a fenced
// database or container carries its fence; a region outside it applies the
// placeholder instead (same GLSN, fence records only, no names or data);
// a region image or backup for such a region leaves the fenced data out.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "crypto/secret.h"
#include "storage/backup.h"
#include "storage/document_store.h"
#include "storage/fence.h"
#include "tests/storage/open_store.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::storage;
using bulwark::testing::OpenTestStore;
using bulwark::testing::TempDir;
using nlohmann::json;

namespace {

const std::vector<std::string> kCanaries = {"collFENCE1", "idFENCE2", "pkFENCE3"};

std::string FencedDoc(int i) {
  return json{{"id", kCanaries[1] + std::to_string(i)}, {"tenant", kCanaries[2]}, {"v", i}}.dump();
}

// A write region's store with database "db" (not fenced), container "c"
// (not fenced, item "keep"), container kCanaries[0] fenced to r1,r2 with
// items, and database "fencedDB" fenced to r1 with container "inner".
struct Writer {
  TempDir dir;
  crypto::MasterKey key = crypto::MasterKey::Generate();
  std::unique_ptr<DocumentStore> store = OpenTestStore(dir.sub("w"), key);
  std::vector<std::string> log;  // every command as applied, encoded
  uint64_t index = 0;

  ApplyOutcome Write(Result<WriteCommand> cmd) {
    INFO(cmd.status().ToString());
    REQUIRE(cmd.ok());
    log.push_back(cmd->Encode());
    auto out = store->Apply(++index, std::move(cmd).value());
    INFO(out.status().ToString());
    REQUIRE(out.ok());
    INFO(out->status.ToString());
    REQUIRE(out->status.ok());
    return *out;
  }

  void Populate() {
    Write(store->PrepareCreateDatabase("db"));
    Write(store->PrepareCreateContainer("db", "c", "/tenant"));
    Write(store->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c",
                                  json{{"id", "keep"}, {"tenant", "t"}}.dump()));
    Write(store->PrepareCreateContainer("db", kCanaries[0], "/tenant", "r2,r1"));
    for (int i = 0; i < 5; ++i) {
      Write(store->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", kCanaries[0], FencedDoc(i)));
    }
    Write(store->PrepareRotateDataKey("db", kCanaries[0]));
    Write(store->PrepareCreateDatabase("fencedDB", "r1"));
    Write(store->PrepareCreateContainer("fencedDB", "inner", "/tenant"));
    Write(store->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "fencedDB", "inner", FencedDoc(99)));
  }
};

// The bytes of a state image of `s`, for `fenced_for` (null: whole).
std::string ImageBytes(const DocumentStore& s, const std::string* fenced_for) {
  std::string all;
  auto written = s.WriteStateImage(
      4096,
      [&](std::string_view chunk) {
        all.append(chunk);
        return Status::Ok();
      },
      /*region_image=*/true, fenced_for);
  INFO(written.status().ToString());
  REQUIRE(written.ok());
  return all;
}

}  // namespace

TEST_CASE("fence: a command's fence round-trips in format 4, placeholders carry no names or data") {
  WriteCommand c;
  c.kind = WriteCommand::Kind::kUpsertItem;
  c.database = "db";
  c.container = "secretname";
  c.rid = std::string(8, '\x07');
  c.item_id = "secretid";
  c.sealed = "sealedbytes";
  c.fence = "r1,r2";
  const std::string local = c.Encode();
  CHECK(static_cast<uint8_t>(local[0]) == 4);
  auto back = WriteCommand::Decode(local);
  REQUIRE(back.ok());
  CHECK(back->fence == "r1,r2");
  CHECK(back->geo_glsn == 0);
  CHECK(back->item_id == "secretid");
  // A command without a fence keeps its old format.
  WriteCommand plain = c;
  plain.fence.clear();
  CHECK(static_cast<uint8_t>(plain.Encode()[0]) == 1);
  plain.geo_epoch = 2;
  CHECK(static_cast<uint8_t>(plain.Encode()[0]) == 3);

  c.geo_glsn = 9;
  c.geo_epoch = 2;
  c.geo_source_index = 40;
  c.proposed_unix_ms = 1234;
  c.request_id = "req-1";
  const WriteCommand p = FencedOutPlaceholder(c);
  CHECK(p.request_id == "req-1");  // a retry is deduplicated alike in every region
  CHECK(p.kind == WriteCommand::Kind::kFencedOut);
  CHECK(p.geo_glsn == 9);
  CHECK(p.geo_epoch == 2);
  CHECK(p.geo_source_index == 40);
  CHECK(p.proposed_unix_ms == 1234);
  CHECK(p.fence == "r1,r2");
  const std::string wire = p.Encode();
  for (const char* secret : {"secretname", "secretid", "sealedbytes", "db"}) {
    INFO(secret);
    CHECK(wire.find(secret) == std::string::npos);
  }
  CHECK(wire.find(std::string(8, '\x07')) == std::string::npos);
  // Bytes from a peer or the disk: a truncated or extended format-4 command is refused.
  CHECK(WriteCommand::Decode(wire.substr(0, wire.size() - 1)).status().code() == Code::kCorruption);
  CHECK(WriteCommand::Decode(wire + "x").status().code() == Code::kCorruption);
  CHECK(WriteCommand::Decode(local.substr(0, local.size() - 2)).status().code() == Code::kCorruption);
  auto p2 = WriteCommand::Decode(wire);
  REQUIRE(p2.ok());
  CHECK(p2->kind == WriteCommand::Kind::kFencedOut);
  // A placeholder of a placeholder is itself (a receiver that checks again
  // keeps the fence records it carries).
  c.kind = WriteCommand::Kind::kCreateContainer;
  const WriteCommand created = FencedOutPlaceholder(c);
  CHECK(created.setting == "create:0707070707070707");
  CHECK(FencedOutPlaceholder(created).setting == created.setting);

  CHECK(JoinFence({"r2", "r1", "r2", ""}) == "r1,r2");
  CHECK(FenceAllows("", "anywhere"));
  CHECK(FenceAllows("r1,r2", "r2"));
  CHECK_FALSE(FenceAllows("r1,r2", "r3"));
  CHECK_FALSE(FenceAllows("r1,r2", ""));
  CHECK(FenceWithin("r1", "r1,r2"));
  CHECK_FALSE(FenceWithin("r1,r3", "r1,r2"));
  CHECK_FALSE(FenceWithin("", "r1"));
  CHECK(FenceRecordRids("drop:aa,bb", "drop") == std::vector<std::string>{"aa", "bb"});
  CHECK(FenceRecordRids("create:aa", "drop").empty());
}

TEST_CASE("fence: commands carry their container's or database's fence, fence records follow the containers") {
  Writer w;
  w.Populate();
  auto fenced = w.store->ReadContainer("db", kCanaries[0]);
  REQUIRE(fenced.ok());
  CHECK(fenced->allowed_regions == std::vector<std::string>{"r1", "r2"});
  auto inner = w.store->ReadContainer("fencedDB", "inner");
  REQUIRE(inner.ok());
  CHECK(inner->allowed_regions == std::vector<std::string>{"r1"});  // its database's
  auto fdb = w.store->ReadDatabase("fencedDB");
  REQUIRE(fdb.ok());
  CHECK(fdb->allowed_regions == std::vector<std::string>{"r1"});
  // A container's own fence must be within its database's.
  auto wider = w.store->PrepareCreateContainer("fencedDB", "wide", "/tenant", "r1,r2");
  CHECK(wider.status().code() == Code::kInvalidArgument);
  CHECK(w.store->PrepareCreateContainer("fencedDB", "narrow", "/tenant", "r1").ok());

  // What a fence would make fail differently in the regions outside it
  // (which apply placeholders) is refused before it is proposed.
  CHECK(w.store->PrepareCreateDatabase("fencedDB").status().code() == Code::kAlreadyExists);
  CHECK(w.store->PrepareCreateDatabase("db", "r1").status().code() == Code::kAlreadyExists);
  CHECK(w.store->PrepareCreateDatabase("db").ok());  // unfenced on unfenced: fails alike everywhere at apply
  CHECK(w.store->PrepareCreateContainer("db", kCanaries[0], "/tenant").status().code() == Code::kAlreadyExists);
  CHECK(w.store->PrepareCreateContainer("db", "c", "/tenant", "r1").status().code() == Code::kAlreadyExists);
  CHECK(w.store->PrepareCreateContainer("nodb", "x", "/tenant", "r1").status().code() == Code::kNotFound);

  auto item = w.store->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", kCanaries[0], FencedDoc(7));
  REQUIRE(item.ok());
  CHECK(item->fence == "r1,r2");
  CHECK(w.store->PrepareDeleteItem("db", kCanaries[0], "\"" + kCanaries[2] + "\"", kCanaries[1] + "1")->fence ==
        "r1,r2");
  CHECK(w.store->PrepareRotateDataKey("db", kCanaries[0])->fence == "r1,r2");
  CHECK(w.store->PrepareDeleteContainer("db", kCanaries[0])->fence == "r1,r2");
  CHECK(w.store->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", json{{"id", "x"}, {"tenant", "t"}}.dump())
            ->fence.empty());
  auto del_db = w.store->PrepareDeleteDatabase("db");
  REQUIRE(del_db.ok());
  CHECK(del_db->fence.empty());
  CHECK(del_db->setting == "drop:" + fenced->rid);  // regions outside its fence drop the record
  CHECK(w.store->PrepareDeleteDatabase("fencedDB")->fence == "r1");

  auto fences = w.store->Fences();
  REQUIRE(fences.ok());
  REQUIRE(fences->size() == 3);  // two containers, one database
  std::set<std::string> named;
  for (const auto& f : *fences) named.insert(f.resource + "=" + f.regions);
  CHECK(named == std::set<std::string>{"dbs/db/colls/" + kCanaries[0] + "=r1,r2", "dbs/fencedDB/colls/inner=r1",
                                       "dbs/fencedDB=r1"});
  // Deleted, the container's fence record goes (its deleted-container record keeps the fence).
  w.Write(w.store->PrepareDeleteContainer("db", kCanaries[0]));
  fences = w.store->Fences();
  REQUIRE(fences.ok());
  CHECK(fences->size() == 2);
  // A purge reaches the regions of the fences of what it destroys.
  auto purge = w.store->PreparePurgeContainer("db", kCanaries[0]);
  REQUIRE(purge.ok());
  CHECK(purge->fence == "r1,r2");
  w.Write(w.store->PrepareCreateContainer("db", kCanaries[0], "/tenant"));  // a new one, not fenced
  CHECK(w.store->PreparePurgeContainer("db", kCanaries[0])->fence.empty());
}

TEST_CASE("fence: a region outside the fence applies placeholders at the same GLSNs and knows only the fence") {
  Writer w;
  w.Populate();
  w.Write(w.store->PrepareDeleteItem("db", kCanaries[0], "\"" + kCanaries[2] + "\"", kCanaries[1] + "0"));
  TempDir rdir;
  auto rkey = crypto::MasterKey::Generate();
  auto r3 = OpenTestStore(rdir.sub("r3"), rkey);
  uint64_t glsn = 0;
  size_t placeholders = 0;
  auto ship_all = [&](size_t from) {
    for (size_t i = from; i < w.log.size(); ++i) {
      auto cmd = WriteCommand::Decode(w.log[i]);
      REQUIRE(cmd.ok());
      cmd->geo_glsn = ++glsn;
      cmd->geo_epoch = 1;
      cmd->geo_source_index = i + 1;
      WriteCommand sent = FenceAllows(cmd->fence, "r3") ? *cmd : FencedOutPlaceholder(*cmd);
      if (sent.kind == WriteCommand::Kind::kFencedOut) ++placeholders;
      const std::string wire = sent.Encode();
      for (const auto& canary : kCanaries) {
        INFO(canary);
        CHECK(wire.find(canary) == std::string::npos);
      }
      auto out = r3->Apply(100 + i, *WriteCommand::Decode(wire));
      REQUIRE(out.ok());
      CHECK(r3->geo_position().glsn == glsn);
    }
  };
  ship_all(0);
  CHECK(placeholders == 11);  // create, 5 items, rotate, delete item; fdb, inner, its item
  CHECK(r3->geo_position().glsn == w.store->geo_position().glsn);
  auto containers = r3->ListContainers("db");
  REQUIRE(containers.ok());
  REQUIRE(containers->size() == 1);
  CHECK(containers->front().id == "c");
  CHECK(r3->ReadDatabase("fencedDB").status().code() == Code::kNotFound);
  CHECK(r3->ReadItem("db", "c", "\"t\"", "keep").ok());
  auto fences = r3->Fences();
  REQUIRE(fences.ok());
  REQUIRE(fences->size() == 2);  // by rid only: r3 has no name for them
  for (const auto& f : *fences) {
    CHECK(f.resource.find("rid") != std::string::npos);
    CHECK_FALSE(FenceAllows(f.regions, "r3"));
  }
  // Deleting the database that holds one, and the other container: r3 drops both records.
  const size_t before = w.log.size();
  w.Write(w.store->PrepareDeleteDatabase("fencedDB"));
  w.Write(w.store->PrepareDeleteContainer("db", kCanaries[0]));
  ship_all(before);
  fences = r3->Fences();
  REQUIRE(fences.ok());
  CHECK(fences->empty());
}

TEST_CASE("fence: a region image or a backup for a region outside the fence leaves the fenced data out") {
  Writer w;
  w.Populate();
  // A deleted fenced container keeps its keys (and change-log records) until a purge.
  w.Write(w.store->PrepareCreateContainer("db", "gone" + kCanaries[0], "/tenant", "r1"));
  w.Write(w.store->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "gone" + kCanaries[0], FencedDoc(50)));
  w.Write(w.store->PrepareDeleteContainer("db", "gone" + kCanaries[0]));
  CHECK(*w.store->HoldsFencedOutOf("r3"));
  CHECK(*w.store->HoldsFencedOutOf("r2"));  // fencedDB and the deleted one
  CHECK_FALSE(*w.store->HoldsFencedOutOf("r1"));
  const std::string r1 = "r1", r2 = "r2", r3 = "r3", unknown;
  const std::string whole = ImageBytes(*w.store, nullptr);
  for (const auto& canary : kCanaries) CHECK(whole.find(canary) != std::string::npos);  // the scan sees them
  CHECK(ImageBytes(*w.store, &r1) == whole);
  const std::string for_r2 = ImageBytes(*w.store, &r2);
  CHECK(for_r2.find(kCanaries[0]) != std::string::npos);
  CHECK(for_r2.find("fencedDB") == std::string::npos);  // fenced to r1
  for (const std::string* region : {&r3, &unknown}) {
    const std::string bytes = ImageBytes(*w.store, region);
    for (const auto& canary : kCanaries) {
      INFO(*region << " " << canary);
      CHECK(bytes.find(canary) == std::string::npos);
    }
    CHECK(bytes.find("keep") != std::string::npos);
    CHECK(bytes.find("fencedDB") == std::string::npos);
  }

  // Installed as r3's state: the unfenced data and the fence records only.
  TempDir rdir;
  auto rkey = crypto::MasterKey::Generate();
  auto outside = OpenTestStore(rdir.sub("r3"), rkey);
  REQUIRE(outside->BeginRegionImage("0000000000000001aaaaaaaaaaaaaaaa").ok());
  auto written = w.store->WriteStateImage(
      4096, [&](std::string_view c) { return outside->AddRegionImageChunk("0000000000000001aaaaaaaaaaaaaaaa", c); },
      true, &r3);
  REQUIRE(written.ok());
  auto pos = outside->FinishRegionImage("0000000000000001aaaaaaaaaaaaaaaa");
  INFO(pos.status().ToString());
  REQUIRE(pos.ok());
  auto installed = outside->InstallRegionImage("0000000000000001aaaaaaaaaaaaaaaa", 5);
  INFO(installed.status().ToString());
  REQUIRE(installed.ok());
  CHECK(outside->ReadItem("db", "c", "\"t\"", "keep").ok());
  CHECK(outside->ReadContainer("db", kCanaries[0]).status().code() == Code::kNotFound);
  CHECK(outside->ReadDatabase("fencedDB").status().code() == Code::kNotFound);
  CHECK(outside->DataKeyVersionCount() == 1);  // container c's only (not even the deleted one's)
  auto fences = outside->Fences();
  REQUIRE(fences.ok());
  CHECK(fences->size() == 2);  // the two containers' records, by rid

  // A backup for r3 (the geo copy): restored, it holds no fenced data.
  TempDir bdir;
  auto backup = WriteBackup(*w.store, w.key, bdir.sub("geo"), {}, &r3);
  INFO(backup.status().ToString());
  REQUIRE(backup.ok());
  auto restored = RestoreBackup(bdir.sub("geo"), backup->id, w.key, bdir.sub("restored"));
  INFO(restored.status().ToString());
  REQUIRE(restored.ok());
  auto rs = OpenTestStore(bdir.sub("restored"), w.key);
  CHECK(rs->ReadItem("db", "c", "\"t\"", "keep").ok());
  CHECK(rs->ReadContainer("db", kCanaries[0]).status().code() == Code::kNotFound);
  CHECK(rs->ReadDatabase("fencedDB").status().code() == Code::kNotFound);
}
