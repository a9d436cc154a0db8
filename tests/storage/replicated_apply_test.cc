// The replicated write path of DocumentStore: commands prepared on one store
// and applied to others (each with its own master key) give the same state;
// request ids apply once; the applied index survives a restart; a command
// prepared against a container that was since re-created does not apply;
// state images move the whole replicated state between stores; malformed
// commands and image chunks are refused.
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

std::string Doc(const std::string& id, int v) { return json{{"id", id}, {"tenant", "t"}, {"v", v}}.dump(); }

// Two replicas with different master keys, and a leader-side log of commands.
struct Pair {
  TempDir dir;
  crypto::MasterKey key_a = crypto::MasterKey::Generate();
  crypto::MasterKey key_b = crypto::MasterKey::Generate();
  std::unique_ptr<DocumentStore> a = OpenTestStore(dir.sub("a"), key_a);
  std::unique_ptr<DocumentStore> b = OpenTestStore(dir.sub("b"), key_b);
  uint64_t index = 0;

  // Prepared on `a` (the leader), applied to both in log order.
  ApplyOutcome Both(Result<WriteCommand> cmd, const std::string& request_id = {}) {
    INFO(cmd.status().ToString());
    REQUIRE(cmd.ok());
    cmd->request_id = request_id;
    cmd->proposed_unix_ms = 1'000'000 + static_cast<int64_t>(index);
    const std::string encoded = cmd->Encode();
    ++index;
    auto ra = a->Apply(index, *WriteCommand::Decode(encoded));
    auto rb = b->Apply(index, *WriteCommand::Decode(encoded));
    REQUIRE(ra.ok());
    REQUIRE(rb.ok());
    CHECK(ra->status.code() == rb->status.code());
    CHECK(ra->etag == rb->etag);
    CHECK(ra->duplicate == rb->duplicate);
    return std::move(ra).value();
  }
};

}  // namespace

TEST_CASE("Replicated apply: replicas with different master keys reach the same state", "[storage][apply]") {
  Pair p;
  REQUIRE(p.Both(p.a->PrepareCreateDatabase("db")).status.ok());
  REQUIRE(p.Both(p.a->PrepareCreateContainer("db", "c", "/tenant")).status.ok());
  for (int i = 0; i < 20; ++i) {
    REQUIRE(p.Both(p.a->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc("i" + std::to_string(i), i)))
                .status.ok());
  }
  REQUIRE(p.Both(p.a->PrepareRotateDataKey("db", "c")).key_version == 2);
  REQUIRE(p.Both(p.a->PrepareItemWrite(WriteCommand::Kind::kReplaceItem, "db", "c", Doc("i3", 33), "i3")).status.ok());
  REQUIRE(p.Both(p.a->PrepareDeleteItem("db", "c", "\"t\"", "i4")).status.ok());
  // Outcomes that depend on the state are the same on both.
  CHECK(p.Both(p.a->PrepareItemWrite(WriteCommand::Kind::kCreateItem, "db", "c", Doc("i5", 0))).status.code() ==
        Code::kAlreadyExists);
  CHECK(p.Both(p.a->PrepareDeleteItem("db", "c", "\"t\"", "i4")).status.code() == Code::kNotFound);

  auto ca = p.a->ReadContainer("db", "c");
  auto cb = p.b->ReadContainer("db", "c");
  REQUIRE(ca.ok());
  REQUIRE(cb.ok());
  CHECK(ca->rid == cb->rid);
  for (int i = 0; i < 20; ++i) {
    auto ra = p.a->ReadItem("db", "c", "\"t\"", "i" + std::to_string(i));
    auto rb = p.b->ReadItem("db", "c", "\"t\"", "i" + std::to_string(i));
    CHECK(ra.ok() == rb.ok());
    if (ra.ok() && rb.ok()) {
      CHECK(ra->json == rb->json);  // the same sealed bytes, opened under each replica's keyring
      CHECK(ra->etag == rb->etag);
    }
  }
  CHECK(p.a->applied_index() == p.index);
  CHECK(p.b->applied_index() == p.index);
  auto la = p.a->ReadChangeLog(1, 1000);
  auto lb = p.b->ReadChangeLog(1, 1000);
  REQUIRE(la.ok());
  REQUIRE(lb.ok());
  REQUIRE(la->size() == lb->size());
  for (size_t i = 0; i < la->size(); ++i) CHECK((*la)[i].Encode() == (*lb)[i].Encode());

  // The applied index is durable with the writes.
  p.b.reset();
  p.b = OpenTestStore(p.dir.sub("b"), p.key_b);
  CHECK(p.b->applied_index() == p.index);
}

TEST_CASE("Replicated apply: a request id is applied once, with its first outcome", "[storage][apply]") {
  Pair p;
  p.Both(p.a->PrepareCreateDatabase("db"));
  p.Both(p.a->PrepareCreateContainer("db", "c", "/tenant"));
  const ApplyOutcome first =
      p.Both(p.a->PrepareItemWrite(WriteCommand::Kind::kCreateItem, "db", "c", Doc("x", 1)), "req-1");
  REQUIRE(first.status.ok());
  const uint64_t lsn = p.a->last_lsn();
  // A retry, prepared again (new etag), under the same id: nothing new.
  const ApplyOutcome retry =
      p.Both(p.a->PrepareItemWrite(WriteCommand::Kind::kCreateItem, "db", "c", Doc("x", 2)), "req-1");
  CHECK(retry.status.ok());
  CHECK(retry.duplicate);
  CHECK(retry.etag == first.etag);
  CHECK(p.a->last_lsn() == lsn);
  auto read = p.b->ReadItem("db", "c", "\"t\"", "x");
  REQUIRE(read.ok());
  CHECK(read->etag == first.etag);
  // A failed outcome is remembered too.
  const ApplyOutcome conflict =
      p.Both(p.a->PrepareItemWrite(WriteCommand::Kind::kCreateItem, "db", "c", Doc("x", 3)), "req-2");
  CHECK(conflict.status.code() == Code::kAlreadyExists);
  const ApplyOutcome conflict_again =
      p.Both(p.a->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc("x", 4)), "req-2");
  CHECK(conflict_again.duplicate);
  CHECK(conflict_again.status.code() == Code::kAlreadyExists);
  // Ids expire after the window, by the commands' own clock: a command
  // proposed later than the window removes old records.
  auto late = p.a->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc("y", 1));
  REQUIRE(late.ok());
  late->request_id = "req-late";
  late->proposed_unix_ms = 1'000'000 + kDedupWindowMs + 1000;
  REQUIRE(p.a->Apply(++p.index, std::move(late).value()).ok());
  auto after = p.a->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc("x", 5));
  REQUIRE(after.ok());
  after->request_id = "req-1";
  after->proposed_unix_ms = 1'000'000 + kDedupWindowMs + 2000;
  auto applied = p.a->Apply(++p.index, std::move(after).value());
  REQUIRE(applied.ok());
  CHECK_FALSE(applied->duplicate);  // forgotten: applied as a new write
}

TEST_CASE("Replicated apply: a command for a re-created container does not apply", "[storage][apply]") {
  Pair p;
  p.Both(p.a->PrepareCreateDatabase("db"));
  p.Both(p.a->PrepareCreateContainer("db", "c", "/tenant"));
  auto stale = p.a->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc("x", 1));
  REQUIRE(stale.ok());
  p.Both(p.a->PrepareDeleteContainer("db", "c"));
  p.Both(p.a->PrepareCreateContainer("db", "c", "/tenant"));
  const ApplyOutcome out = p.Both(std::move(stale));
  CHECK(out.status.code() == Code::kNotFound);
  CHECK(p.a->ReadItem("db", "c", "\"t\"", "x").status().code() == Code::kNotFound);
}

TEST_CASE("State image: moves the replicated state to a store with another master key", "[storage][apply]") {
  Pair p;
  p.Both(p.a->PrepareCreateDatabase("db"));
  p.Both(p.a->PrepareCreateContainer("db", "c", "/tenant"));
  for (int i = 0; i < 300; ++i) {
    auto cmd = p.a->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc("i" + std::to_string(i), i));
    REQUIRE(cmd.ok());
    REQUIRE(p.a->Apply(++p.index, std::move(cmd).value()).ok());  // only on a: b falls behind
  }
  p.Both(p.a->PrepareRotateDataKey("db", "c"));
  REQUIRE(p.b->LoadOrCreateSecret("account-key/primary", 64).ok());
  auto b_secret = p.b->LoadOrCreateSecret("account-key/primary", 64);
  REQUIRE(b_secret.ok());

  std::vector<std::string> chunks;
  auto applied = p.a->WriteStateImage(16 * 1024, [&](std::string_view c) {
    chunks.emplace_back(c);
    return Status::Ok();
  });
  REQUIRE(applied.ok());
  CHECK(*applied == p.index);
  CHECK(chunks.size() > 2);  // chunked as asked
  for (const auto& c : chunks) CHECK(c.size() <= 16 * 1024);
  // A malformed chunk is refused.
  CHECK(p.b->AddStateImageChunk(std::string(1, '\x7f') + "junk").code() == Code::kCorruption);
  // Install needs a complete staging.
  REQUIRE(p.b->BeginStateImage().ok());
  for (const auto& c : chunks) REQUIRE(p.b->AddStateImageChunk(c).ok());
  CHECK(p.b->InstallStateImage().status().code() == Code::kFailedPrecondition);
  REQUIRE(p.b->FinishStateImage().ok());
  auto installed = p.b->InstallStateImage();
  REQUIRE(installed.ok());
  CHECK(*installed == p.index);
  CHECK(p.b->applied_index() == p.index);
  for (int i = 0; i < 300; i += 17) {
    auto ra = p.a->ReadItem("db", "c", "\"t\"", "i" + std::to_string(i));
    auto rb = p.b->ReadItem("db", "c", "\"t\"", "i" + std::to_string(i));
    REQUIRE(rb.ok());
    CHECK(ra->json == rb->json);
  }
  CHECK(p.b->DataKeyVersions("db", "c") == std::vector<uint32_t>{1, 2});
  CHECK(p.b->last_lsn() == p.a->last_lsn());
  // b's own secret is untouched, and it still opens with its own master key only.
  p.b.reset();
  p.b = OpenTestStore(p.dir.sub("b"), p.key_b);
  auto after = p.b->LoadOrCreateSecret("account-key/primary", 64);
  REQUIRE(after.ok());
  CHECK(after->value.Equals(b_secret->value));
  CHECK(p.b->ReadItem("db", "c", "\"t\"", "i5").ok());
  // Both keep applying the same log afterwards.
  REQUIRE(p.Both(p.a->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", "c", Doc("after", 1))).status.ok());
}

TEST_CASE("Write commands: every truncation of a valid command is refused", "[storage][apply]") {
  WriteCommand c;
  c.kind = WriteCommand::Kind::kUpsertItem;
  c.request_id = "r";
  c.database = "db";
  c.container = "c";
  c.rid = std::string(8, 'r');
  c.sealed = "sealed-bytes";
  c.partition_key = "\"t\"";
  c.item_id = "x";
  WriteCommand firewall;  // format 2: one more field at the end
  firewall.kind = WriteCommand::Kind::kFirewallAllow;
  firewall.setting = "10.0.0.0/8";
  auto rt = WriteCommand::Decode(firewall.Encode());
  REQUIRE(rt.ok());
  CHECK(rt->setting == "10.0.0.0/8");
  CHECK(rt->kind == WriteCommand::Kind::kFirewallAllow);
  const std::string fw_bytes = firewall.Encode();
  for (size_t n = 0; n < fw_bytes.size(); ++n) {
    CHECK(WriteCommand::Decode(fw_bytes.substr(0, n)).status().code() == Code::kCorruption);
  }
  const std::string bytes = c.Encode();
  auto back = WriteCommand::Decode(bytes);
  REQUIRE(back.ok());
  CHECK(back->Encode() == bytes);
  for (size_t n = 0; n < bytes.size(); ++n) {
    CHECK(WriteCommand::Decode(bytes.substr(0, n)).status().code() == Code::kCorruption);
  }
  CHECK(WriteCommand::Decode(bytes + "x").status().code() == Code::kCorruption);
  std::string bad_kind = bytes;
  bad_kind[1] = 99;
  CHECK(WriteCommand::Decode(bad_kind).status().code() == Code::kCorruption);
}

TEST_CASE("Access records: account keys and users replicate, survive images and master-key rotation",
          "[storage][apply][access]") {
  Pair p;
  const std::string k1 = crypto::RandomBytes(64), k2 = crypto::RandomBytes(64);
  p.Both(p.a->PrepareSetAccountKey("primary", k1, /*only_if_absent=*/true));
  // A second bootstrap proposal (another leader's) changes nothing.
  CHECK(p.Both(p.a->PrepareSetAccountKey("primary", k2, true)).status.code() == Code::kAlreadyExists);
  CHECK(p.a->PrepareSetAccountKey("tertiary", k2, false).status().code() == Code::kInvalidArgument);
  CHECK(p.a->PrepareSetAccountKey("secondary", "short", false).status().code() == Code::kInvalidArgument);
  auto keys_a = p.a->AccountKeys();
  auto keys_b = p.b->AccountKeys();
  REQUIRE(keys_a.ok());
  REQUIRE(keys_b.ok());
  REQUIRE(keys_b->size() == 1);
  CHECK(keys_b->front().key.view() == k1);
  CHECK(keys_b->front().version == keys_a->front().version);
  const uint64_t v1 = keys_b->front().version;
  // Regenerating replaces the key and raises the version.
  p.Both(p.a->PrepareSetAccountKey("primary", k2, false));
  keys_b = p.b->AccountKeys();
  REQUIRE(keys_b.ok());
  CHECK(keys_b->front().key.view() == k2);
  CHECK(keys_b->front().version > v1);

  // Access records: create-only, delete with children, cascade with the database.
  p.Both(p.a->PrepareCreateDatabase("db"));
  p.Both(p.a->PrepareAccessPut("ac/u/db/alice", R"({"id":"alice"})", true));
  CHECK(p.Both(p.a->PrepareAccessPut("ac/u/db/alice", "{}", true)).status.code() == Code::kAlreadyExists);
  p.Both(p.a->PrepareAccessPut("ac/u/db/alice/p1", R"({"id":"p1"})", true));
  p.Both(p.a->PrepareAccessPut("ac/u/db/bob", R"({"id":"bob"})", true));
  CHECK(p.a->PrepareAccessPut("x/secret", "{}", false).status().code() == Code::kInvalidArgument);
  CHECK(p.a->AccessRecords("x/").status().code() == Code::kInvalidArgument);
  CHECK(p.b->AccessRecords("ac/u/db/")->size() == 3);
  p.Both(p.a->PrepareAccessDelete("ac/u/db/alice"));  // and its permission
  CHECK(p.b->AccessRecords("ac/u/db/")->size() == 1);
  CHECK(p.Both(p.a->PrepareAccessDelete("ac/u/db/alice")).status.code() == Code::kNotFound);
  p.Both(p.a->PrepareDeleteDatabase("db"));  // and its users
  CHECK(p.b->AccessRecords("ac/u/db/")->empty());
  p.Both(p.a->PrepareAccessPut("ac/r/reader", R"({"name":"reader"})", true));

  // A state image carries the keys (re-wrapped by the receiver) and records.
  TempDir other;
  crypto::MasterKey key_c = crypto::MasterKey::Generate();
  auto c = OpenTestStore(other.sub("c"), key_c);
  std::vector<std::string> chunks;
  REQUIRE(p.a->WriteStateImage(16 * 1024,
                               [&](std::string_view chunk) {
                                 chunks.emplace_back(chunk);
                                 return Status::Ok();
                               })
              .ok());
  REQUIRE(c->BeginStateImage().ok());
  for (const auto& chunk : chunks) REQUIRE(c->AddStateImageChunk(chunk).ok());
  REQUIRE(c->FinishStateImage().ok());
  REQUIRE(c->InstallStateImage().ok());
  c.reset();
  c = OpenTestStore(other.sub("c"), key_c);
  auto keys_c = c->AccountKeys();
  REQUIRE(keys_c.ok());
  REQUIRE(keys_c->size() == 1);
  CHECK(keys_c->front().key.view() == k2);
  CHECK(keys_c->front().version == keys_b->front().version);
  CHECK(c->AccessRecords("ac/r/")->size() == 1);

  // A master-key rotation re-wraps the account keys: they open under the new
  // key only.
  crypto::MasterKey next = crypto::MasterKey::Generate();
  REQUIRE(c->RotateMasterKey(next.Clone()).ok());
  c.reset();
  c = OpenTestStore(other.sub("c"), next);
  keys_c = c->AccountKeys();
  REQUIRE(keys_c.ok());
  CHECK(keys_c->front().key.view() == k2);
}
