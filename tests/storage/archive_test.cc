// Continuous backup (storage/archive.h): point-in-time restore from a backup
// plus the archived command log gives exactly the state after the log's
// prefix up to that time (deleted containers back, nothing later); a hole,
// a damaged segment, the wrong key or a time the archive cannot vouch for is
// refused and leaves nothing behind; no plaintext reaches the archive.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "storage/archive.h"
#include "storage/commands.h"
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

constexpr const char* kCanary = "CANARY-archive-plaintext-51c0";

// A time strictly between what came before and what comes after.
int64_t Mark() {
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  const int64_t t = UnixNowMillis();
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  return t;
}

// Stands in for a replica set's log: each command is applied at the next
// raft index (as the apply loop does) and kept, encoded, for the archive.
struct Log {
  DocumentStore* store;
  uint64_t index = 0;
  std::vector<ArchivedCommand> entries;

  void Apply(Result<WriteCommand> cmd) {
    INFO(cmd.status().ToString());
    REQUIRE(cmd.ok());
    cmd->proposed_unix_ms = UnixNowMillis();
    const std::string bytes = cmd->Encode();
    auto outcome = store->Apply(++index, std::move(cmd).value());
    REQUIRE(outcome.ok());
    INFO(outcome->status.ToString());
    REQUIRE(outcome->status.ok());
    entries.push_back({index, bytes});
  }
  void Empty() { ++index; }  // a new leader's empty entry: covered, never stored
  void Put(const std::string& container, int i) {
    const std::string doc = json{{"id", "i" + std::to_string(i)}, {"tenant", "t"}, {"v", i}, {"note", kCanary}}.dump();
    Apply(store->PrepareItemWrite(WriteCommand::Kind::kUpsertItem, "db", container, doc));
  }
  // Archives (from, to] as one segment.
  void Archive(const std::string& location, const crypto::MasterKey& key, uint64_t from, uint64_t to) {
    std::vector<ArchivedCommand> part;
    for (const auto& e : entries) {
      if (e.index > from && e.index <= to) part.push_back(e);
    }
    auto seg = WriteArchiveSegment(location, key, from + 1, to, part);
    INFO(seg.status().ToString());
    REQUIRE(seg.ok());
  }
};

std::set<int> Values(DocumentStore& s, const std::string& container) {
  std::set<int> out;
  ListOptions lo;
  lo.max_items = kMaxPageItems;
  for (;;) {
    auto page = s.ListItems("db", container, lo);
    REQUIRE(page.ok());
    for (const auto& item : page->items) out.insert(json::parse(item).at("v").get<int>());
    if (page->continuation.empty()) break;
    lo.continuation = page->continuation;
  }
  return out;
}

std::set<int> Range(int from, int to) {
  std::set<int> out;
  for (int i = from; i < to; ++i) out.insert(i);
  return out;
}

std::set<std::string> Containers(DocumentStore& s) {
  std::set<std::string> out;
  auto list = s.ListContainers("db");
  REQUIRE(list.ok());
  for (const auto& c : *list) out.insert(c.id);
  return out;
}

}  // namespace

TEST_CASE("Archive: point-in-time restore gives the state at that time, deleted containers included", "[archive]") {
  TempDir dir;
  auto key = crypto::MasterKey::Generate();
  const std::string location = dir.sub("backups");
  auto store = OpenTestStore(dir.sub("live"), key);
  Log log{store.get(), 0, {}};
  log.Apply(store->PrepareCreateDatabase("db"));
  log.Apply(store->PrepareCreateContainer("db", "c1", "/tenant"));
  log.Apply(store->PrepareCreateContainer("db", "c2", "/tenant"));
  for (int i = 0; i < 30; ++i) log.Put("c1", i);
  const int64_t before_b1 = Mark();
  auto b1 = WriteBackup(*store, key, location);
  REQUIRE(b1.ok());
  log.Empty();
  for (int i = 30; i < 50; ++i) log.Put("c1", i);
  for (int i = 0; i < 10; ++i) log.Put("c2", i);
  const int64_t after_50 = Mark();
  for (int i = 50; i < 70; ++i) log.Put("c1", i);
  const int64_t before_c2_delete = Mark();
  log.Apply(store->PrepareDeleteContainer("db", "c2"));
  for (int i = 70; i < 80; ++i) log.Put("c1", i);
  auto b2 = WriteBackup(*store, key, location);
  REQUIRE(b2.ok());
  const int64_t after_b2 = Mark();
  for (int i = 80; i < 90; ++i) log.Put("c1", i);
  const int64_t before_c1_delete = Mark();
  log.Apply(store->PrepareDeleteContainer("db", "c1"));
  log.Apply(store->PrepareCreateContainer("db", "c4", "/tenant"));
  log.Empty();
  // Four segments; the second ends on the empty entry's neighbour, and the
  // third overlaps it (as two nodes that both believed they led would).
  const uint64_t last = log.index;
  log.Archive(location, key, 0, 20);
  log.Archive(location, key, 20, 60);
  log.Archive(location, key, 40, 100);
  log.Archive(location, key, 100, last);
  auto listed = ListArchive(location);
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 4);
  CHECK(listed->front().first_index == 1);
  CHECK(listed->back().last_index == last);

  SECTION("between two backups: from the first, through the archive") {
    auto r = RestoreToTime(location, key, {after_50, "", ""}, dir.sub("r1"));
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    CHECK(r->base.id == b1->id);
    CHECK(r->replayed == 30);
    auto s = OpenTestStore(dir.sub("r1"), key);
    CHECK(Values(*s, "c1") == Range(0, 50));
    CHECK(Values(*s, "c2") == Range(0, 10));
  }
  SECTION("just before a container was deleted: it is back, with every item") {
    auto r = RestoreToTime(location, key, {before_c2_delete, "", ""}, dir.sub("r2"));
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    auto s = OpenTestStore(dir.sub("r2"), key);
    CHECK(Values(*s, "c1") == Range(0, 70));
    CHECK(Values(*s, "c2") == Range(0, 10));
    // The restored store stands where the replica set stood at that point.
    CHECK(s->applied_index() == r->applied_index);
    CHECK(s->geo_position().glsn == r->glsn);
  }
  SECTION("after the second backup: it starts from that one") {
    auto r = RestoreToTime(location, key, {before_c1_delete, "", ""}, dir.sub("r3"));
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    CHECK(r->base.id == b2->id);
    CHECK(r->replayed == 10);
    auto s = OpenTestStore(dir.sub("r3"), key);
    CHECK(Values(*s, "c1") == Range(0, 90));
    CHECK(Containers(*s) == std::set<std::string>{"c1"});
  }
  SECTION("one container of a database: everything else is left out") {
    REQUIRE(store->CreateDatabase("other").ok());  // not in the log: the restore never sees it
    auto r = RestoreToTime(location, key, {before_c2_delete, "db", "c2"}, dir.sub("r4"));
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    auto s = OpenTestStore(dir.sub("r4"), key);
    CHECK(Containers(*s) == std::set<std::string>{"c2"});
    CHECK(Values(*s, "c2") == Range(0, 10));
    auto none = RestoreToTime(location, key, {after_b2, "db", "c2"}, dir.sub("r5"));
    CHECK(none.status().code() == Code::kNotFound);
    CHECK_FALSE(fs::exists(dir.sub("r5")));
    auto no_db = RestoreToTime(location, key, {after_b2, "nope", ""}, dir.sub("r6"));
    CHECK(no_db.status().code() == Code::kNotFound);
  }
  SECTION("before the oldest backup, or later than the archive vouches for: refused") {
    auto early = RestoreToTime(location, key, {before_b1 - 60'000, "", ""}, dir.sub("r7"));
    CHECK(early.status().code() == Code::kFailedPrecondition);
    auto late = RestoreToTime(location, key, {UnixNowMillis() + 1000, "", ""}, dir.sub("r8"));
    INFO(late.status().ToString());
    CHECK(late.status().code() == Code::kFailedPrecondition);
    CHECK(late.status().message().find("vouches") != std::string::npos);
    CHECK_FALSE(fs::exists(dir.sub("r8")));
    auto window = RestorableWindow(location);
    REQUIRE(window.ok());
    REQUIRE(window->has_value());
    CHECK((*window)->from_unix_ms == b1->image_unix_ms);
    CHECK((*window)->to_unix_ms >= b2->image_unix_ms);
  }
  SECTION("a hole is refused past it, and the times before it still restore") {
    auto whole = VerifyArchive(location, key);
    REQUIRE(whole.ok());
    CHECK(whole->segments == 4);
    CHECK(whole->holes.empty());
    // [21,60] gone: nothing continues the first backup (index 33) until 41.
    REQUIRE(fs::remove_all(fs::path(location) / kArchiveDir / (*listed)[1].id) > 0);
    auto holed = VerifyArchive(location, key);
    REQUIRE(holed.ok());
    REQUIRE(holed->holes.size() == 1);
    CHECK(holed->holes[0] == "after raft index 33 (the next segment starts at 41)");
    auto r = RestoreToTime(location, key, {after_50, "", ""}, dir.sub("r9"));
    INFO(r.status().ToString());
    CHECK(r.status().code() == Code::kFailedPrecondition);
    CHECK(r.status().message().find("hole") != std::string::npos);
    CHECK_FALSE(fs::exists(dir.sub("r9")));
    // After the second backup the archive is whole again.
    auto ok = RestoreToTime(location, key, {before_c1_delete, "", ""}, dir.sub("r10"));
    INFO(ok.status().ToString());
    CHECK(ok.ok());
  }
  SECTION("a damaged segment and the wrong master key are refused; nothing is left") {
    const fs::path data = fs::path(location) / kArchiveDir / (*listed)[1].id / "data";
    std::string bytes;
    {
      std::ifstream in(data, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      bytes = ss.str();
    }
    bytes[bytes.size() / 2] ^= 0x01;
    std::ofstream(data, std::ios::binary | std::ios::trunc) << bytes;
    auto r = RestoreToTime(location, key, {after_50, "", ""}, dir.sub("r11"));
    INFO(r.status().ToString());
    CHECK(r.status().code() == Code::kCorruption);
    CHECK(VerifyArchive(location, key).status().code() == Code::kCorruption);
    CHECK(VerifyArchive(location, crypto::MasterKey::Generate()).status().code() == Code::kFailedPrecondition);
    CHECK_FALSE(fs::exists(dir.sub("r11")));
    auto wrong = RestoreToTime(location, crypto::MasterKey::Generate(), {before_c1_delete, "", ""}, dir.sub("r12"));
    CHECK(wrong.status().code() == Code::kFailedPrecondition);
    CHECK_FALSE(fs::exists(dir.sub("r12")));
  }
  SECTION("a master-key rotation re-wraps the segments; a purge forgets the ones that may hold its keys") {
    auto next = crypto::MasterKey::Generate();
    REQUIRE(RewrapBackups(location, key, next).ok());
    auto n = RewrapArchive(location, key, next);
    REQUIRE(n.ok());
    CHECK(*n == 4);
    auto r = RestoreToTime(location, next, {before_c2_delete, "", ""}, dir.sub("r13"));
    INFO(r.status().ToString());
    CHECK(r.ok());
    auto forgotten = ForgetArchiveThrough(location, 40);
    REQUIRE(forgotten.ok());
    CHECK(*forgotten == 2);                           // [1,20] and [21,60] start at or before 40
    auto pruned = PruneArchiveBefore(location, 101);  // [41,100] ends before it
    REQUIRE(pruned.ok());
    CHECK(*pruned == 1);
  }
  SECTION("the archive holds no plaintext") {
    for (const auto& entry : fs::recursive_directory_iterator(fs::path(location) / kArchiveDir)) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      INFO(entry.path());
      CHECK(ss.str().find(kCanary) == std::string::npos);
      CHECK(ss.str().find("\"c2\"") == std::string::npos);
    }
  }
}
