// Region images (catch-up across regions): a read region's replica stages
// the write region's state image, installs it as its own state at a raft
// index of its region (keeping its membership and address book), serves it
// to the region's other replicas, and shreds what the image no longer
// holds; the image survives a raft snapshot staged beside it and a
// master-key rotation; and every malformed or missing image is refused.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/coding.h"
#include "crypto/secret.h"
#include "storage/document_store.h"
#include "tests/storage/open_store.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::storage;
using bulwark::testing::OpenTestStore;
using bulwark::testing::TempDir;
using nlohmann::json;

namespace {

WriteCommand Shipped(const WriteCommand& original, uint64_t glsn, uint64_t source_index) {
  auto cmd = WriteCommand::Decode(original.Encode());
  REQUIRE(cmd.ok());
  cmd->geo_glsn = glsn;
  cmd->geo_epoch = 1;
  cmd->geo_source_index = source_index;
  return std::move(cmd).value();
}

std::string Doc(int i) { return json{{"id", "i" + std::to_string(i)}, {"tenant", "t"}, {"v", i}}.dump(); }

// Stages `from`'s state image (a write region's store) into `to` as region image `id`.
GeoPosition StageFrom(const DocumentStore& from, DocumentStore& to, const std::string& id) {
  REQUIRE(to.BeginRegionImage(id).ok());
  auto written = from.WriteStateImage(4096, [&](std::string_view chunk) { return to.AddRegionImageChunk(id, chunk); });
  INFO(written.status().ToString());
  REQUIRE(written.ok());
  auto pos = to.FinishRegionImage(id);
  INFO(pos.status().ToString());
  REQUIRE(pos.ok());
  return *pos;
}

void CheckSameItems(const DocumentStore& a, const DocumentStore& b, int count) {
  for (int i = 0; i < count; ++i) {
    auto x = a.ReadItem("db", "c", "\"t\"", "i" + std::to_string(i));
    auto y = b.ReadItem("db", "c", "\"t\"", "i" + std::to_string(i));
    INFO("item " << i << ": " << y.status().ToString());
    REQUIRE(x.ok());
    REQUIRE(y.ok());
    CHECK(x->json == y->json);
    CHECK(x->etag == y->etag);
  }
}

}  // namespace

TEST_CASE("region image: staged, installed at this region's index, served to a replica, older keys shredded") {
  TempDir dir;
  auto w = OpenTestStore(dir.sub("w"), crypto::MasterKey::Generate());
  auto a = OpenTestStore(dir.sub("a"), crypto::MasterKey::Generate());
  auto b = OpenTestStore(dir.sub("b"), crypto::MasterKey::Generate());

  // The read region applied the first writes through the stream, then fell
  // behind: the write region purged "old" and wrote on.
  uint64_t windex = 10, glsn = 0;
  std::vector<WriteCommand> shipped;
  auto write = [&](Result<WriteCommand> cmd) {
    REQUIRE(cmd.ok());
    auto copy = WriteCommand::Decode(cmd->Encode());
    REQUIRE(w->Apply(++windex, std::move(cmd).value()).ok());
    shipped.push_back(Shipped(*copy, ++glsn, windex));
  };
  write(w->PrepareCreateDatabase("db"));
  write(w->PrepareCreateContainer("db", "old", "/tenant"));
  write(w->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "old", Doc(99)));
  uint64_t aindex = 100;
  for (DocumentStore* r : {a.get(), b.get()}) {
    uint64_t i = aindex;
    WriteCommand member;
    member.kind = WriteCommand::Kind::kSetMember;
    member.member_id = 2;
    member.member_address = "127.0.2.2:7101";
    REQUIRE(r->Apply(++i, member).ok());
    REQUIRE(r->RecordApplied(++i, "this region's membership").ok());
    for (const auto& cmd : shipped) REQUIRE(r->Apply(++i, cmd)->status.ok());
  }
  aindex += 2 + shipped.size();
  REQUIRE(a->geo_position().glsn == 3);
  const std::string old_rid = a->ReadContainer("db", "old")->rid;

  write(w->PreparePurgeContainer("db", "old"));
  write(w->PrepareCreateContainer("db", "c", "/tenant"));
  for (int i = 0; i < 20; ++i) write(w->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc(i)));
  REQUIRE(w->RecordApplied(++windex, "the write region's membership").ok());
  const uint64_t w_applied = windex;

  const std::string id = DocumentStore::NewRegionImageId();
  const GeoPosition pos = StageFrom(*w, *a, id);
  CHECK(pos.glsn == w->geo_position().glsn);
  CHECK(pos.source_index == w_applied);  // the stream resumes after the image's index
  CHECK(a->RegionImagePosition(id)->glsn == pos.glsn);
  // Staging changes nothing yet.
  CHECK(a->geo_position().glsn == 3);
  CHECK(a->ReadItem("db", "c", "\"t\"", "i0").status().code() == Code::kNotFound);

  const uint64_t marker = aindex + 1;
  auto installed = a->InstallRegionImage(id, marker);
  INFO(installed.status().ToString());
  REQUIRE(installed.ok());
  CHECK(installed->glsn == pos.glsn);
  CHECK(a->applied_index() == marker);
  CHECK(a->geo_position().glsn == pos.glsn);
  CHECK(a->geo_position().source_index == w_applied);
  CheckSameItems(*w, *a, 20);
  // This region's own records stayed.
  CHECK(*a->AppliedConfState() == "this region's membership");
  CHECK(a->MemberAddresses()->at(2) == "127.0.2.2:7101");
  // The purged container is gone, and its keys wait to be shredded here.
  CHECK(a->ReadContainer("db", "old").status().code() == Code::kNotFound);
  auto shreds = a->PendingShreds();
  REQUIRE(shreds.ok());
  REQUIRE(shreds->size() == 1);
  CHECK(shreds->front().rid == old_rid);
  CHECK(shreds->front().purge_index == marker);

  // Another replica of the region fetches it from this one (which keeps it),
  // under its own master key, and reaches the same state.
  REQUIRE(b->BeginRegionImage(id).ok());
  REQUIRE(
      a->WriteRegionImage(id, 2048, [&](std::string_view chunk) { return b->AddRegionImageChunk(id, chunk); }).ok());
  auto bpos = b->FinishRegionImage(id);
  REQUIRE(bpos.ok());
  CHECK(bpos->glsn == pos.glsn);
  CHECK(bpos->source_index == pos.source_index);
  REQUIRE(b->InstallRegionImage(id, marker).ok());
  CHECK(b->applied_index() == marker);
  CheckSameItems(*w, *b, 20);
  CHECK(*b->AppliedConfState() == "this region's membership");

  // The stream goes on from the image: the next write applies at the next GLSN.
  auto next = w->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc(20));
  REQUIRE(next.ok());
  const WriteCommand ship = Shipped(*next, pos.glsn + 1, w_applied + 1);
  REQUIRE(w->Apply(w_applied + 1, std::move(next).value()).ok());
  auto applied = a->Apply(marker + 1, ship);
  REQUIRE(applied.ok());
  CHECK(applied->status.ok());
  CHECK(a->geo_position().glsn == pos.glsn + 1);
  CheckSameItems(*w, *a, 21);

  // A second image; the first stays for any replica that still applies its
  // entry, until the log no longer holds that entry.
  const std::string id2 = DocumentStore::NewRegionImageId();
  StageFrom(*w, *a, id2);
  REQUIRE(a->InstallRegionImage(id2, marker + 2).ok());
  CHECK(a->applied_index() == marker + 2);
  CheckSameItems(*w, *a, 21);
  auto serves = [&](const std::string& image) {
    return a->WriteRegionImage(image, 4096, [](std::string_view) { return Status::Ok(); });
  };
  CHECK(serves(id).ok());
  // The purge's shred (pending at the first install's index, where this
  // store learned of it) waits while an image installed at or before that
  // index is staged: such an image may hold the purged keys.
  CHECK(a->ShredFiles().code() == Code::kUnavailable);
  REQUIRE(a->DropRegionImages(marker).ok());  // kept a while for replicas still applying its entry
  CHECK(serves(id).ok());
  REQUIRE(a->DropRegionImages(marker, std::chrono::milliseconds(0)).ok());  // the log was cut past it, long enough
  CHECK(serves(id).code() == Code::kNotFound);
  CHECK(serves(id2).ok());
  REQUIRE(a->ShredFiles().ok());  // the second was installed after the purge: it holds no purged key
  CHECK(a->PendingShreds()->empty());
  REQUIRE(a->DropRegionImages(marker + 1, std::chrono::milliseconds(0)).ok());  // not yet past its entry
  CHECK(serves(id2).ok());
  REQUIRE(a->DropRegionImages(marker + 2, std::chrono::milliseconds(0)).ok());
  CHECK(serves(id2).code() == Code::kNotFound);
  // A receiver that gives up drops what it staged.
  const std::string id3 = DocumentStore::NewRegionImageId();
  StageFrom(*w, *a, id3);
  REQUIRE(a->DropRegionImage(id3).ok());
  CHECK(a->RegionImagePosition(id3).status().code() == Code::kNotFound);
}

TEST_CASE("region image: kept apart from a raft snapshot, across a master-key rotation and a restart") {
  TempDir dir;
  auto w = OpenTestStore(dir.sub("w"), crypto::MasterKey::Generate());
  REQUIRE(w->Apply(1, *w->PrepareCreateDatabase("db")).ok());
  REQUIRE(w->Apply(2, *w->PrepareCreateContainer("db", "c", "/tenant")).ok());
  for (int i = 0; i < 5; ++i) {
    REQUIRE(w->Apply(3 + i, *w->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc(i))).ok());
  }
  auto key = crypto::MasterKey::Generate();
  auto r = OpenTestStore(dir.sub("r"), key);
  const std::string id = DocumentStore::NewRegionImageId();
  StageFrom(*w, *r, id);
  // A raft snapshot begun and abandoned meanwhile leaves the region image be.
  REQUIRE(r->BeginStateImage().ok());
  REQUIRE(r->AbortStateImage().ok());
  CHECK(r->RegionImagePosition(id).ok());
  // The staged keys move to the new master key with the others.
  auto next_key = crypto::MasterKey::Generate();
  REQUIRE(r->RotateMasterKey(next_key.Clone()).ok());
  r.reset();
  r = OpenTestStore(dir.sub("r"), next_key);
  auto installed = r->InstallRegionImage(id, 50);
  INFO(installed.status().ToString());
  REQUIRE(installed.ok());
  CheckSameItems(*w, *r, 5);
  r.reset();
  r = OpenTestStore(dir.sub("r"), next_key);
  CHECK(r->applied_index() == 50);
  CheckSameItems(*w, *r, 5);
}

TEST_CASE("region image: malformed ids, missing or incomplete images, and replaying the install are refused") {
  TempDir dir;
  auto r = OpenTestStore(dir.sub("r"), crypto::MasterKey::Generate());
  const std::string id = DocumentStore::NewRegionImageId();
  for (const std::string& bad : std::vector<std::string>{"", "../x", std::string(32, 'G'), id + "0", id.substr(1)}) {
    INFO(bad);
    CHECK(r->BeginRegionImage(bad).code() == Code::kInvalidArgument);
    CHECK(r->AddRegionImageChunk(bad, "").code() == Code::kInvalidArgument);
    CHECK(r->InstallRegionImage(bad, 1).status().code() == Code::kInvalidArgument);
  }
  CHECK(r->InstallRegionImage(id, 1).status().code() == Code::kFailedPrecondition);
  CHECK(r->WriteRegionImage(id, 4096, [](std::string_view) { return Status::Ok(); }).code() == Code::kNotFound);
  // Staged but holding no applied-index record: not an image of a store.
  REQUIRE(r->BeginRegionImage(id).ok());
  CHECK(r->FinishRegionImage(id).status().code() == Code::kCorruption);
  CHECK(r->InstallRegionImage(id, 1).status().code() == Code::kFailedPrecondition);
  // A truncated chunk, and a node-local record, are corrupt.
  CHECK(r->AddRegionImageChunk(id, std::string("\x01\x05", 2)).code() == Code::kCorruption);
  std::string local(1, '\x01');  // a meta record naming a node-local secret
  PutLengthPrefixed(local, "x/s");
  PutLengthPrefixed(local, "v");
  CHECK(r->AddRegionImageChunk(id, local).code() == Code::kCorruption);
  // The store itself never applies the install command (only the replica,
  // which has the image, does; an archive replay cannot).
  WriteCommand install;
  install.kind = WriteCommand::Kind::kInstallRegionImage;
  install.setting = id;
  install.member_id = 1;
  install.geo_glsn = 5;
  install.geo_epoch = 1;
  install.geo_source_index = 9;
  auto decoded = WriteCommand::Decode(install.Encode());
  REQUIRE(decoded.ok());
  CHECK(decoded->setting == id);
  CHECK(!IsAccountCommand(decoded->kind));
  CHECK(r->Apply(3, *decoded).status().code() == Code::kFailedPrecondition);
}
