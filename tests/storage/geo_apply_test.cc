// GLSN positions: the write region's replicas number every account command
// alike; a remote region applies shipped commands only in GLSN order,
// skipping duplicates and refusing gaps, whatever its own raft indexes are;
// the position survives a restart and travels in a state image.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

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

// A command as the write region would ship it: the encoded command with the
// stamp it got there.
WriteCommand Shipped(const std::string& encoded, uint64_t glsn, uint64_t source_index) {
  auto cmd = WriteCommand::Decode(encoded);
  REQUIRE(cmd.ok());
  cmd->geo_glsn = glsn;
  cmd->geo_epoch = 1;
  cmd->geo_source_index = source_index;
  auto round = WriteCommand::Decode(cmd->Encode());  // format 3 on the wire
  REQUIRE(round.ok());
  CHECK(round->geo_glsn == glsn);
  CHECK(round->geo_source_index == source_index);
  return std::move(round).value();
}

}  // namespace

TEST_CASE("write region: every account command takes the next GLSN, member records do not") {
  TempDir dir;
  auto key = crypto::MasterKey::Generate();
  auto w = OpenTestStore(dir.sub("w"), key);
  CHECK(w->geo_position().glsn == 0);
  REQUIRE(w->Apply(3, *w->PrepareCreateDatabase("db")).ok());
  CHECK(w->geo_position().glsn == 1);
  CHECK(w->geo_position().source_index == 3);
  WriteCommand member;
  member.kind = WriteCommand::Kind::kSetMember;
  member.member_id = 2;
  member.member_address = "127.0.0.2:7101";
  REQUIRE(w->Apply(4, member).ok());
  CHECK(w->geo_position().glsn == 1);  // region-local: no GLSN
  // A command whose outcome is an error still takes its GLSN: every region
  // applies it and reaches the same error.
  auto again = w->Apply(5, *WriteCommand::Decode(w->PrepareCreateDatabase("db2")->Encode()));
  REQUIRE(again.ok());
  auto dup = *w->PrepareCreateDatabase("db2");
  auto second = w->Apply(6, dup);
  REQUIRE(second.ok());
  CHECK(second->status.code() == Code::kAlreadyExists);
  CHECK(w->geo_position().glsn == 3);
  CHECK(w->geo_position().source_index == 6);
  REQUIRE(w->RecordApplied(7, {}).ok());  // an empty entry keeps the position
  CHECK(w->geo_position().glsn == 3);
  w.reset();
  auto reopened = OpenTestStore(dir.sub("w"), key);
  CHECK(reopened->applied_index() == 7);
  CHECK(reopened->geo_position().glsn == 3);
  CHECK(reopened->geo_position().source_index == 6);
}

TEST_CASE("remote region: shipped commands apply in GLSN order only, duplicates skip, gaps are refused") {
  TempDir dir;
  auto key_w = crypto::MasterKey::Generate();
  auto key_r = crypto::MasterKey::Generate();
  auto w = OpenTestStore(dir.sub("w"), key_w);
  auto r = OpenTestStore(dir.sub("r"), key_r);
  std::vector<std::string> log;
  auto write = [&](Result<WriteCommand> cmd) {
    REQUIRE(cmd.ok());
    log.push_back(cmd->Encode());
    REQUIRE(w->Apply(10 + log.size(), *WriteCommand::Decode(log.back())).ok());
  };
  write(w->PrepareCreateDatabase("db"));
  write(w->PrepareCreateContainer("db", "c", "/tenant"));
  for (int i = 0; i < 3; ++i) {
    write(w->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c",
                              json{{"id", "i" + std::to_string(i)}, {"tenant", "t"}, {"v", i}}.dump()));
  }
  REQUIRE(w->geo_position().glsn == 5);

  uint64_t index = 100;  // the remote region's own raft indexes differ
  // GLSN 1 and 2 arrive; then GLSN 4 (3 was lost): refused, nothing written.
  REQUIRE(r->Apply(++index, Shipped(log[0], 1, 11))->status.ok());
  REQUIRE(r->Apply(++index, Shipped(log[1], 2, 12))->status.ok());
  auto gap = r->Apply(++index, Shipped(log[3], 4, 14));
  REQUIRE(gap.ok());
  CHECK(gap->status.code() == Code::kFailedPrecondition);
  CHECK(r->geo_position().glsn == 2);
  CHECK(r->ReadItem("db", "c", "\"t\"", "i1").status().code() == Code::kNotFound);
  CHECK(r->applied_index() == index);  // the raft entry itself is applied
  // A duplicate of GLSN 2 (a resent batch) is skipped.
  auto dup = r->Apply(++index, Shipped(log[1], 2, 12));
  REQUIRE(dup.ok());
  CHECK(dup->duplicate);
  CHECK(dup->status.ok());
  for (uint64_t g = 3; g <= 5; ++g) {
    auto applied = r->Apply(++index, Shipped(log[g - 1], g, 10 + g));
    REQUIRE(applied.ok());
    CHECK(applied->status.ok());
  }
  CHECK(r->geo_position().glsn == 5);
  CHECK(r->geo_position().source_index == 15);
  // Same content, each region sealing nothing anew: the bytes travelled as they were.
  for (int i = 0; i < 3; ++i) {
    auto a = w->ReadItem("db", "c", "\"t\"", "i" + std::to_string(i));
    auto b = r->ReadItem("db", "c", "\"t\"", "i" + std::to_string(i));
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(a->json == b->json);
    CHECK(a->etag == b->etag);
  }

  // The position travels in a state image (a new replica of the remote region).
  auto fresh = OpenTestStore(dir.sub("fresh"), crypto::MasterKey::Generate());
  REQUIRE(fresh->BeginStateImage().ok());
  auto written = r->WriteStateImage(1 << 20, [&](std::string_view chunk) { return fresh->AddStateImageChunk(chunk); });
  REQUIRE(written.ok());
  REQUIRE(fresh->FinishStateImage().ok());
  REQUIRE(fresh->InstallStateImage().ok());
  CHECK(fresh->geo_position().glsn == 5);
  CHECK(fresh->geo_position().source_index == 15);
}

TEST_CASE("a shipped command with GLSN 0 in format 3 is refused as corrupt") {
  WriteCommand cmd;
  cmd.kind = WriteCommand::Kind::kCreateDatabase;
  cmd.database = "db";
  cmd.geo_glsn = 7;
  std::string bytes = cmd.Encode();
  // The stamp's GLSN is the third-from-last u64.
  for (size_t i = bytes.size() - 24; i < bytes.size() - 16; ++i) bytes[i] = 0;
  CHECK(WriteCommand::Decode(bytes).status().code() == Code::kCorruption);
  for (size_t cut = 1; cut < 24; ++cut) {
    CHECK(WriteCommand::Decode(std::string_view(cmd.Encode()).substr(0, cmd.Encode().size() - cut)).status().code() ==
          Code::kCorruption);
  }
}

TEST_CASE("a retried request keeps the GLSN of its first application (its session token names the write)") {
  TempDir dir;
  auto key = crypto::MasterKey::Generate();
  auto w = OpenTestStore(dir.sub("w"), key);
  REQUIRE(w->Apply(1, *w->PrepareCreateDatabase("db")).ok());
  REQUIRE(w->Apply(2, *w->PrepareCreateContainer("db", "c", "/tenant")).ok());
  auto cmd = w->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", R"({"id":"a","tenant":"t"})");
  REQUIRE(cmd.ok());
  cmd->request_id = "req-1";
  cmd->proposed_unix_ms = 1000;
  const std::string encoded = cmd->Encode();
  auto first = w->Apply(3, *WriteCommand::Decode(encoded));
  REQUIRE(first.ok());
  CHECK(first->glsn == 3);
  REQUIRE(w->Apply(4, *w->PrepareCreateDatabase("db2")).ok());
  auto retry = w->Apply(5, *WriteCommand::Decode(encoded));
  REQUIRE(retry.ok());
  CHECK(retry->duplicate);
  CHECK(retry->glsn == 3);
  CHECK(w->geo_position().glsn == 5);  // the retry's own entry still took a GLSN
}
