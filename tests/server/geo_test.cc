// Geo-replication integration tests: regions of four real bulwarkd
// processes each (region R on 127.0.R.1-4), the write region streaming to
// the others over mutual TLS. They prove that a write in r1 is read in r2 at
// every level (served by r2 itself: r1 is frozen while r2 answers), that a
// Session token read in r2 returns the write, that a ConsistentPrefix reader
// never sees a gap, that the stream survives kill -9 of each region's leader
// with no gap and no duplicate, that Strong writes go on without a dead
// region once dynamic quorum drops it and every acknowledged write is in
// every region of the set, and that BoundedStaleness keeps a slow region
// within K writes by throttling the writer.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "chaos/local_account.h"
#include "client/client.h"
#include "tests/server/geo_account.h"
#include "tests/server/partition.h"
#include "tests/test_util.h"

using namespace bulwark;
using bulwark::testing::FreePort;
using bulwark::testing::Partition;
using bulwark::testing::TempDir;
using namespace bulwark::testing;
using nlohmann::json;

TEST_CASE("two regions: a write in r1 is read in r2 at every level, served by r2", "[geo]") {
  TestAccount t(2, "Strong");
  auto writer = t.Client(1);
  auto reader = t.Client(2);
  REQUIRE(writer->CreateDatabase("db").ok());
  REQUIRE(writer->CreateContainer("db", "c", "/tenant").ok());
  auto w = writer->UpsertItem("db", "c", Doc("a", 1));
  INFO(w.status().ToString());
  REQUIRE(w.ok());
  CHECK(w->session_token.rfind("0:1#", 0) == 0);
  // Strong: acknowledged only once r2 committed it, so a Strong read in r2
  // sees it at once.
  auto strong = reader->ReadItem("db", "c", "\"t\"", "a", {ConsistencyLevel::kStrong, ""});
  INFO(strong.status().ToString());
  REQUIRE(strong.ok());
  CHECK(ValueOf(strong->json) == 1);
  CHECK(reader->read_region() == "r2");

  // Another write, then freeze r1: r2 must answer alone.
  auto w2 = writer->UpsertItem("db", "c", Doc("a", 2));
  REQUIRE(w2.ok());
  REQUIRE(t.WaitRegionAt(2, t.Glsn(1)));
  t.Signal(1, SIGSTOP);
  for (auto level : {ConsistencyLevel::kSession, ConsistencyLevel::kConsistentPrefix, ConsistencyLevel::kEventual,
                     ConsistencyLevel::kBoundedStaleness}) {
    INFO(ConsistencyName(level));
    client::ReadOptions ro{level, level == ConsistencyLevel::kSession ? w2->session_token : ""};
    auto r = reader->ReadItem("db", "c", "\"t\"", "a", ro);
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    CHECK(ValueOf(r->json) == 2);
  }
  t.Signal(1, SIGCONT);

  // Session: a token from a just-acknowledged write in r1, read in r2 at once.
  for (int i = 3; i < 13; ++i) {
    auto wi = writer->UpsertItem("db", "c", Doc("a", i));
    REQUIRE(wi.ok());
    auto r = reader->ReadItem("db", "c", "\"t\"", "a", {ConsistencyLevel::kSession, wi->session_token});
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    CHECK(ValueOf(r->json) == i);
  }
  // A write sent to a node of r2 is refused there (writes go to r1).
  auto direct = client::Client::Connect(t.account->region(2).node_client_options(1));
  REQUIRE(direct.ok());
  auto refused = (*direct)->UpsertItem("db", "c", Doc("x", 1));
  CHECK(refused.status().code() == Code::kFailedPrecondition);
  CHECK(refused.status().message().find("write region is r1") != std::string::npos);
}

TEST_CASE("two regions: a ConsistentPrefix reader in r2 never sees a gap", "[geo]") {
  TestAccount t(2, "Session", {}, std::chrono::milliseconds(5));
  auto writer = t.ClientWithContainer();
  constexpr int kWrites = 150;
  REQUIRE(t.WaitRegionAt(2, t.Glsn(1)));  // the container exists in r2 before the reader starts
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, gaps{0}, nonempty{0}, errors{0};
  auto reader = t.Client(2);
  std::thread reader_thread([&] {
    while (!done.load()) {
      Status error;
      std::set<std::string> ids = Ids(*reader, ConsistencyLevel::kConsistentPrefix, &error);
      if (!error.ok()) {
        ++errors;
        continue;
      }
      // Items s0000..s0149 are created in order: a prefix of the write order
      // is s0000..s(n-1) with nothing missing in between.
      int n = static_cast<int>(ids.size());
      for (int i = 0; i < n; ++i) {
        char id[16];
        std::snprintf(id, sizeof(id), "s%04d", i);
        if (ids.count(id) == 0) {
          ++gaps;
          break;
        }
      }
      if (n > 0 && n < kWrites) ++nonempty;
      ++reads;
    }
  });
  for (int i = 0; i < kWrites; ++i) {
    char id[16];
    std::snprintf(id, sizeof(id), "s%04d", i);
    auto w = writer->CreateItem("db", "c", Doc(id, i));
    INFO(w.status().ToString());
    REQUIRE(w.ok());
  }
  REQUIRE(t.WaitRegionAt(2, t.Glsn(1)));
  done = true;
  reader_thread.join();
  INFO("reads " << reads.load() << ", mid-stream reads " << nonempty.load() << ", errors " << errors.load());
  CHECK(reads.load() > 0);
  CHECK(gaps.load() == 0);
  CHECK(errors.load() == 0);
  CHECK(Ids(*reader, ConsistencyLevel::kEventual).size() == kWrites);
}

TEST_CASE("two regions: the stream survives kill -9 of each region's leader, no gap, no duplicate", "[geo]") {
  TestAccount t(2, "Session");
  auto writer = t.ClientWithContainer();
  std::set<std::string> acked;
  auto write_some = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const std::string id = "k" + std::to_string(i);
      // Retried under its request id through the leader change.
      const std::string request_id = "req-" + id;
      Result<client::Item> w = Status::Unavailable("not tried");
      for (int attempt = 0; attempt < 20 && !w.ok(); ++attempt) {
        w = writer->CreateItem("db", "c", Doc(id, i), request_id);
        if (!w.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      INFO(w.status().ToString());
      REQUIRE(w.ok());
      acked.insert(id);
    }
  };
  write_some(0, 60);
  const int l1 = t.Leader(1);
  t.account->region(1).KillNode(l1);
  write_some(60, 120);
  REQUIRE(t.account->region(1).StartNode(l1).ok());
  const int l2 = t.Leader(2);
  t.account->region(2).KillNode(l2);
  write_some(120, 180);
  REQUIRE(t.account->region(2).StartNode(l2).ok());
  write_some(180, 200);

  const uint64_t head = t.Glsn(1);
  REQUIRE(t.WaitRegionAt(2, head));
  // Same GLSN in both regions: every command arrived once, in order (a gap
  // is refused on apply and a repeat skipped, so a count that matches the
  // write region's means neither happened).
  CHECK(t.Glsn(2) == head);
  auto r2 = t.Client(2);
  CHECK(Ids(*r2, ConsistencyLevel::kEventual) == acked);
  auto r1 = t.Client(1);
  CHECK(Ids(*r1, std::nullopt) == acked);
  // No node of r2 refused a gap.
  for (int i = 1; i <= 4; ++i) {
    std::ifstream log(t.account->region(2).node_log_path(i));
    std::stringstream text;
    text << log.rdbuf();
    CHECK(text.str().find("region stream gap") == std::string::npos);
  }
}

TEST_CASE("three regions, Strong: writes go on once a dead region leaves the quorum set, nothing acked is lost",
          "[geo]") {
  TestAccount t(3, "Strong", {"--set", "geo.lease_ms=1000", "--set", "geo.removal_ms=3500"});
  auto writer = t.ClientWithContainer();
  std::set<std::string> acked;
  for (int i = 0; i < 20; ++i) {
    auto w = writer->CreateItem("db", "c", Doc("a" + std::to_string(i), i));
    REQUIRE(w.ok());
    acked.insert("a" + std::to_string(i));
  }
  // Region 3 dies whole.
  t.account->region(3).Kill();
  // Writes stall until dynamic quorum drops r3 (3.5 s), then go on.
  for (int i = 0; i < 20; ++i) {
    const std::string id = "b" + std::to_string(i);
    Result<client::Item> w = Status::Unavailable("not tried");
    for (int attempt = 0; attempt < 10 && !w.ok(); ++attempt)
      w = writer->CreateItem("db", "c", Doc(id, i), "req-" + id);
    INFO(w.status().ToString());
    REQUIRE(w.ok());
    acked.insert(id);
  }
  auto status = t.NodeClient(1, t.Leader(1))->GetStatus();
  REQUIRE(status.ok());
  CHECK(std::find(status->strong_quorum.begin(), status->strong_quorum.end(), "r3") == status->strong_quorum.end());
  CHECK(std::find(status->strong_quorum.begin(), status->strong_quorum.end(), "r2") != status->strong_quorum.end());
  // Every acknowledged Strong write is in every region still in the set,
  // read there at Strong.
  auto r2 = t.Client(2);
  CHECK(Ids(*r2, ConsistencyLevel::kStrong) == acked);
  auto r1 = t.Client(1);
  CHECK(Ids(*r1, ConsistencyLevel::kStrong) == acked);
}

TEST_CASE("BoundedStaleness: a slow region stays within K writes, the writer is throttled", "[geo]") {
  constexpr int kK = 10;
  TestAccount t(2, "BoundedStaleness", {"--set", "geo.bounded_max_writes=" + std::to_string(kK)},
                std::chrono::milliseconds(150));
  auto writer = t.ClientWithContainer();
  REQUIRE(writer->UpsertItem("db", "c", Doc("n", 0)).ok());
  REQUIRE(t.WaitRegionAt(2, t.Glsn(1)));
  std::atomic<int> acked{0};
  std::atomic<bool> done{false};
  std::atomic<int> violations{0}, reads{0}, max_lag{0};
  std::thread reader_thread([&] {
    auto reader = t.Client(2);
    while (!done.load()) {
      const int before = acked.load();
      auto r = reader->ReadItem("db", "c", "\"t\"", "n", {ConsistencyLevel::kBoundedStaleness, ""});
      if (!r.ok()) continue;  // refused as too stale is allowed; a stale answer is not
      const int lag = before - ValueOf(r->json);
      max_lag = std::max(max_lag.load(), lag);
      if (lag > kK) ++violations;
      ++reads;
    }
  });
  // One writer, as fast as it may: with 300 ms round trips to r2 it can
  // only be kept within K by throttling.
  int throttled = 0;
  for (int i = 1; i <= 60; ++i) {
    auto w = writer->UpsertItem("db", "c", Doc("n", i));
    if (!w.ok()) {
      INFO(w.status().ToString());
      REQUIRE(w.status().code() == Code::kResourceExhausted);
      ++throttled;
      --i;
      continue;
    }
    acked = i;
    auto s = t.NodeClient(1, t.Leader(1))->GetStatus();
    if (s.ok() && !s->regions.empty()) CHECK(s->regions.front().lag_writes <= static_cast<uint64_t>(kK));
  }
  done = true;
  reader_thread.join();
  INFO("reads " << reads.load() << ", max lag seen " << max_lag.load() << ", throttled refusals " << throttled);
  CHECK(reads.load() > 0);
  CHECK(violations.load() == 0);
}

TEST_CASE(
    "three regions, Strong: a region cut off from the write region leaves the quorum set, serves no Strong "
    "or Bounded reads meanwhile, and comes back once healed",
    "[geo][partition]") {
  TestAccount t(3, "Strong", {"--set", "geo.lease_ms=1000", "--set", "geo.removal_ms=3500"});
  auto writer = t.ClientWithContainer();
  REQUIRE(writer->UpsertItem("db", "c", Doc("a", 1)).ok());
  // A node of r3, asked directly (no topology, so no fallback elsewhere).
  auto r3 = t.NodeClient(3, 1);
  auto strong_at_r3 = [&] { return r3->ReadItem("db", "c", "\"t\"", "a", {ConsistencyLevel::kStrong, ""}); };
  REQUIRE(strong_at_r3().ok());

  Partition net;
  net.Isolate("127.0.1.0/24", {"127.0.3.0/24"});
  // Writes stall until r3 is dropped, then go on.
  for (int i = 2; i <= 6; ++i) {
    Result<client::Item> w = Status::Unavailable("not tried");
    for (int attempt = 0; attempt < 10 && !w.ok(); ++attempt) {
      w = writer->UpsertItem("db", "c", Doc("a", i), "req-a-" + std::to_string(i));
    }
    INFO(w.status().ToString());
    REQUIRE(w.ok());
  }
  auto status = t.NodeClient(1, t.Leader(1))->GetStatus();
  REQUIRE(status.ok());
  CHECK(std::find(status->strong_quorum.begin(), status->strong_quorum.end(), "r3") == status->strong_quorum.end());
  // r3 still runs, but its lease ended before it was dropped: it refuses
  // Strong and Bounded reads rather than answer with the old value.
  auto strong = strong_at_r3();
  CHECK(strong.status().code() == Code::kUnavailable);
  CHECK(strong.status().message().find("not in the strong quorum set") != std::string::npos);
  auto bounded = r3->ReadItem("db", "c", "\"t\"", "a", {ConsistencyLevel::kBoundedStaleness, ""});
  CHECK(bounded.status().code() == Code::kUnavailable);
  // Eventual is still served there, stale.
  auto eventual = r3->ReadItem("db", "c", "\"t\"", "a", {ConsistencyLevel::kEventual, ""});
  REQUIRE(eventual.ok());
  CHECK(ValueOf(eventual->json) == 1);

  net.Heal();
  // It catches up and is added back; then Strong reads there see the last write.
  const auto until = std::chrono::steady_clock::now() + kConverge;
  Result<client::Item> back = Status::Unavailable("not tried");
  while (std::chrono::steady_clock::now() < until) {
    back = strong_at_r3();
    if (back.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  INFO(back.status().ToString());
  REQUIRE(back.ok());
  CHECK(ValueOf(back->json) == 6);
}

TEST_CASE(
    "two regions: a region behind a purge (which cuts the write region's log) catches up by a state image on "
    "every replica, a late replica fetches it, and the stream goes on",
    "[geo]") {
  TestAccount t(2, "Session");
  auto writer = t.ClientWithContainer();
  REQUIRE(writer->CreateContainer("db", "gone", "/tenant").ok());
  std::set<std::string> acked;
  auto write_some = [&](const std::string& container, int from, int to) {
    for (int i = from; i < to; ++i) {
      UpsertAcked(*writer, container, "k" + std::to_string(i), i);
      if (container == "c") acked.insert("k" + std::to_string(i));
    }
  };
  write_some("c", 0, 20);
  write_some("gone", 0, 5);
  REQUIRE(t.WaitRegionAt(2, t.Glsn(1)));

  // r2 goes down whole; meanwhile r1 writes on and purges "gone", which cuts
  // its raft log through the purge: r2's position is no longer in it.
  for (int i = 1; i <= 4; ++i) t.account->region(2).KillNode(i);
  write_some("c", 20, 50);
  auto purged = writer->PurgeContainer("db", "gone");
  INFO(purged.status().ToString());
  REQUIRE(purged.ok());
  write_some("c", 50, 60);
  const uint64_t head = t.Glsn(1);

  // Three of r2's nodes come back (a majority of its four); the fourth later.
  for (int i = 1; i <= 3; ++i) REQUIRE(t.account->region(2).StartNode(i, /*wait_ready=*/false).ok());
  t.Leader(2);
  REQUIRE(t.WaitRegionAt(2, head));
  write_some("c", 60, 70);  // the stream goes on after the image
  REQUIRE(t.account->region(2).StartNode(4, /*wait_ready=*/false).ok());
  const uint64_t head2 = t.Glsn(1);
  REQUIRE(t.WaitRegionAt(2, head2));

  // Every replica of r2, asked alone, holds exactly what r1 acknowledged,
  // at r1's GLSN, and nothing of the purged container.
  for (int i = 1; i <= 4; ++i) {
    INFO("r2 node " << i);
    auto node = t.NodeClient(2, i);
    auto status = node->GetStatus();
    REQUIRE(status.ok());
    CHECK(status->glsn == head2);
    CHECK(Ids(*node, ConsistencyLevel::kEventual) == acked);
    auto item = node->ReadItem("db", "c", "\"t\"", "k42", {ConsistencyLevel::kEventual, ""});
    REQUIRE(item.ok());
    CHECK(ValueOf(item->json) == 42);
    auto gone = node->ReadItem("db", "gone", "\"t\"", "k1", {ConsistencyLevel::kEventual, ""});
    CHECK(gone.status().code() == Code::kNotFound);
  }
  // It was an image, installed by each replica that applied the install
  // entry (the late one fetched it from a peer, or got a raft snapshot).
  auto log_of = [&](int r, int i) {
    std::ifstream in(t.account->region(r).node_log_path(i));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  int installed = 0, fetched = 0;
  for (int i = 1; i <= 4; ++i) {
    const std::string log = log_of(2, i);
    installed += log.find("event=region_image_installed") != std::string::npos ? 1 : 0;
    fetched += log.find("event=region_image_fetched") != std::string::npos ? 1 : 0;
    CHECK(log.find("region stream gap") == std::string::npos);
  }
  CHECK(installed >= 3);
  CHECK(fetched >= 2);  // every replica but the one that received it
  bool sent = false;
  for (int i = 1; i <= 4; ++i) sent = sent || log_of(1, i).find("event=region_image_sent") != std::string::npos;
  CHECK(sent);
}

TEST_CASE(
    "regions online: an added region fills itself from an image plus the stream, a removed one learns it and "
    "serves nothing, and bad changes are refused",
    "[geo]") {
  TestAccount t(2, "Session");
  auto writer = t.ClientWithContainer();
  std::set<std::string> acked;
  UpsertAckedRange(*writer, "c", "k", 0, 30, &acked);

  // r3's nodes run, but the account does not know them yet.
  auto r3 = t.account->AddRegion();
  INFO(r3.status().ToString());
  REQUIRE(r3.ok());
  REQUIRE(*r3 == 3);
  CHECK(t.Glsn(3) == 0);
  client::RegionSpec spec = t.account->region_spec(3);
  auto added = writer->AddRegion(spec);
  INFO(added.status().ToString());
  REQUIRE(added.ok());
  REQUIRE(added->regions.size() == 3);
  CHECK(added->regions.back().name == "r3");
  CHECK(added->regions.back().priority == 2);
  UpsertAckedRange(*writer, "c", "k", 30, 40, &acked);
  REQUIRE(t.WaitRegionAt(3, t.Glsn(1)));
  for (int i = 1; i <= 4; ++i) {
    INFO("r3 node " << i);
    auto node = t.NodeClient(3, i);
    CHECK(Ids(*node, ConsistencyLevel::kEventual) == acked);
  }
  // r2 learned of r3 through the stream: its nodes list it too.
  auto r2_topology = t.NodeClient(2, 1)->GetTopology();
  REQUIRE(r2_topology.ok());
  CHECK(r2_topology->regions.size() == 3);
  // A reader that prefers r3 reads there.
  auto reader = t.Client(3);
  auto item = reader->ReadItem("db", "c", "\"t\"", "k35", {ConsistencyLevel::kEventual, ""});
  REQUIRE(item.ok());
  CHECK(ValueOf(item->json) == 35);

  // Refused: a second r3, someone else's peer address, a malformed address,
  // removing the write region, a change sent to a read region.
  CHECK(writer->AddRegion(spec).status().code() == Code::kAlreadyExists);
  client::RegionSpec clash = spec;
  clash.name = "r9";
  CHECK(writer->AddRegion(clash).status().code() == Code::kAlreadyExists);
  client::RegionSpec bad = spec;
  bad.name = "r8";
  bad.peers = {"127.0.8.1"};
  CHECK(writer->AddRegion(bad).status().code() == Code::kInvalidArgument);
  auto no_write_region = writer->RemoveRegion("r1");
  CHECK(no_write_region.status().code() == Code::kFailedPrecondition);
  CHECK(no_write_region.status().message().find("write region") != std::string::npos);
  CHECK(writer->RemoveRegion("nowhere").status().code() == Code::kNotFound);
  CHECK(t.NodeClient(2, 1)->RemoveRegion("r3").status().code() == Code::kFailedPrecondition);

  // Priorities change online.
  auto moved = writer->SetRegionPriority("r3", 1);
  REQUIRE(moved.ok());
  REQUIRE(moved->regions.size() == 3);
  CHECK(moved->regions[1].name == "r3");
  CHECK(moved->regions[2].name == "r2");

  // r2 leaves while writes go on: it gets the change that removed it and
  // nothing after it, then serves nothing.
  std::atomic<bool> writing{true};
  std::atomic<int> background_acked{0};
  std::thread background([&] {
    auto w = t.Client(1);
    for (int i = 0; writing.load(); ++i) {
      if (w->UpsertItem("db", "c", Doc("bg", i), "req-bg-" + std::to_string(i)).ok()) ++background_acked;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto removed = writer->RemoveRegion("r2");
  const uint64_t at_return = t.Glsn(1);
  INFO(removed.status().ToString());
  REQUIRE(removed.ok());
  CHECK(removed->regions.size() == 2);
  auto r2 = t.NodeClient(2, 1);
  Status refused = Status::Ok();
  const auto until = std::chrono::steady_clock::now() + kConverge;
  while (std::chrono::steady_clock::now() < until) {
    refused = r2->ReadItem("db", "c", "\"t\"", "k1", {ConsistencyLevel::kEventual, ""}).status();
    if (refused.code() == Code::kFailedPrecondition) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(refused.code() == Code::kFailedPrecondition);
  CHECK(refused.message().find("removed from the account") != std::string::npos);
  const uint64_t r2_at = t.Glsn(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // writes go on
  writing = false;
  background.join();
  CHECK(background_acked.load() > 0);
  // Nothing after the removal reached r2; r3 gets everything.
  CHECK(r2_at <= at_return);
  CHECK(t.Glsn(2) == r2_at);
  CHECK(r2_at < t.Glsn(1));
  UpsertAckedRange(*writer, "c", "k", 40, 45, &acked);
  REQUIRE(t.WaitRegionAt(3, t.Glsn(1)));
  acked.insert("bg");
  CHECK(Ids(*t.NodeClient(3, 2), ConsistencyLevel::kEventual) == acked);
  auto status = t.NodeClient(1, t.Leader(1))->GetStatus();
  REQUIRE(status.ok());
  for (const auto& r : status->regions) CHECK(r.name != "r2");

  // A restarted node of r3 keeps the topology it learned, not its configuration.
  t.account->region(3).KillNode(1);
  REQUIRE(t.account->region(3).StartNode(1).ok());
  auto after = t.NodeClient(3, 1)->GetTopology();
  REQUIRE(after.ok());
  CHECK(after->regions.size() == 2);
}

TEST_CASE(
    "planned failover: under load the write region moves to r2 and back, nothing acknowledged is lost, no write "
    "fails, and the old write region refuses writes",
    "[geo]") {
  TestAccount t(2, "Session");
  // The default client: a failover's short window with no write region is
  // retried (kWriteRegionMoveWait), not failed.
  client::ClientOptions o = t.account->client_options(1);
  auto writer = client::Client::Connect(o);
  REQUIRE(writer.ok());
  REQUIRE((*writer)->CreateDatabase("db").ok());
  REQUIRE((*writer)->CreateContainer("db", "c", "/tenant").ok());
  for (int i = 0; i < 20; ++i) UpsertAcked(**writer, "c", "k" + std::to_string(i), i);

  // Refused: the write region itself, a region the account does not have,
  // a failover asked of a read region.
  auto admin = t.Client(1);
  CHECK(admin->Failover("r1", std::chrono::seconds(5)).status().code() == Code::kFailedPrecondition);
  CHECK(admin->Failover("r9", std::chrono::seconds(5)).status().code() == Code::kNotFound);
  CHECK(t.NodeClient(2, 1)->Failover("r2", std::chrono::seconds(5)).status().code() == Code::kFailedPrecondition);

  std::mutex mu;
  std::map<std::string, int> acked;  // id -> value acknowledged
  std::vector<std::string> errors;
  std::atomic<bool> writing{true};
  std::thread background([&] {
    for (int i = 0; writing.load(); ++i) {
      const std::string id = "bg" + std::to_string(i);
      auto w = (*writer)->UpsertItem("db", "c", Doc(id, i), "req-" + id);
      std::lock_guard lock(mu);
      if (w.ok()) {
        acked[id] = i;
      } else {
        errors.push_back(id + ": " + w.status().ToString());
      }
    }
  });
  auto wait_writes = [&](size_t more) {
    size_t start = 0;
    {
      std::lock_guard lock(mu);
      start = acked.size();
    }
    const auto until = std::chrono::steady_clock::now() + kConverge;
    while (std::chrono::steady_clock::now() < until) {
      {
        std::lock_guard lock(mu);
        if (acked.size() >= start + more) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  CHECK(wait_writes(20));
  auto moved = admin->Failover("r2");
  INFO(moved.status().ToString());
  REQUIRE(moved.ok());
  CHECK(moved->write_region == "r2");
  CHECK(moved->epoch == 2);
  REQUIRE(!moved->regions.empty());
  CHECK(moved->regions.front().name == "r2");
  CHECK(wait_writes(20));  // writes go on, now in r2

  // r1 takes no writes now, even sent straight to its leader.
  auto at_r1 = t.NodeClient(1, t.Leader(1));
  auto refused = at_r1->UpsertItem("db", "c", Doc("late", 1), "req-late");
  CHECK(refused.status().code() == Code::kFailedPrecondition);
  CHECK(refused.status().message().find("does not take writes") != std::string::npos);

  // And back: r1 takes over again at epoch 3.
  auto back = admin->Failover("r1");
  INFO(back.status().ToString());
  REQUIRE(back.ok());
  CHECK(back->write_region == "r1");
  CHECK(back->epoch == 3);
  CHECK(wait_writes(20));
  writing = false;
  background.join();
  {
    INFO("first errors: " << (errors.empty() ? std::string() : errors.front()));
    CHECK(errors.empty());
  }

  // Both regions converge on every acknowledged write, with its value.
  REQUIRE(t.WaitRegionAt(2, t.Glsn(1)));
  REQUIRE(t.WaitRegionAt(1, t.Glsn(2)));
  for (int r = 1; r <= 2; ++r) {
    for (int i = 1; i <= 4; ++i) {
      INFO("region " << r << " node " << i);
      auto node = t.NodeClient(r, i);
      const std::set<std::string> ids = Ids(*node, ConsistencyLevel::kEventual);
      for (const auto& [id, v] : acked) {
        INFO(id);
        CHECK(ids.count(id) == 1);
      }
    }
  }
  auto reader = t.NodeClient(2, 1);
  int checked = 0;
  for (const auto& [id, v] : acked) {
    if (++checked % 7 != 0) continue;  // a sample: values too
    auto item = reader->ReadItem("db", "c", "\"t\"", id, {ConsistencyLevel::kEventual, ""});
    REQUIRE(item.ok());
    CHECK(ValueOf(item->json) == v);
  }
  CHECK(t.Glsn(1) == t.Glsn(2));

  // Status records the last failover, on every node.
  auto status = t.StatusAtEpoch(2, 2, 3);
  REQUIRE(status.ok());
  CHECK(status->write_region == "r1");
  CHECK(status->epoch == 3);
  CHECK(status->last_failover.from == "r2");
  CHECK(status->last_failover.to == "r1");
  CHECK(status->last_failover.epoch == 3);
  CHECK(status->last_failover.reason.find("manual") != std::string::npos);
}

TEST_CASE(
    "planned failover, three regions: a region frozen across the switch gets the rest of the old epoch from the old "
    "write region, then the new stream, and a restarted old write region stays a read region",
    "[geo]") {
  TestAccount t(3, "Session");
  auto writer = t.ClientWithContainer();
  std::set<std::string> acked;
  UpsertAckedRange(*writer, "c", "a", 0, 10, &acked);
  REQUIRE(t.WaitRegionAt(3, t.Glsn(1)));
  // r3 stops answering: writes go on without it (Session), so at the switch
  // it is behind.
  t.Signal(3, SIGSTOP);
  UpsertAckedRange(*writer, "c", "b", 0, 10, &acked);
  auto moved = writer->Failover("r2");
  INFO(moved.status().ToString());
  REQUIRE(moved.ok());
  CHECK(moved->epoch == 2);
  CHECK(moved->regions[1].name == "r1");
  UpsertAckedRange(*writer, "c", "c", 0, 10, &acked);  // in r2 now
  // r3 wakes: the new write region waits for the old one to bring r3 to the
  // switch, then streams its own writes.
  t.Signal(3, SIGCONT);
  REQUIRE(t.WaitRegionAt(3, t.Glsn(2)));
  REQUIRE(t.WaitRegionAt(1, t.Glsn(2)));
  for (int r = 1; r <= 3; ++r) {
    INFO("region " << r);
    CHECK(Ids(*t.NodeClient(r, 1), ConsistencyLevel::kEventual) == acked);
  }
  auto r3_status = t.StatusAtEpoch(3, 2, 2);
  REQUIRE(r3_status.ok());
  CHECK(r3_status->write_region == "r2");
  CHECK(r3_status->epoch == 2);

  // The old write region restarts whole (kill -9): it reads the record and
  // comes back as a read region of epoch 2; writes still go to r2.
  t.account->region(1).Kill();
  for (int i = 1; i <= 4; ++i) REQUIRE(t.account->region(1).StartNode(i, false).ok());
  (void)t.Leader(1);
  UpsertAckedRange(*writer, "c", "d", 0, 5, &acked);
  REQUIRE(t.WaitRegionAt(1, t.Glsn(2)));
  auto r1_status = t.StatusAtEpoch(1, 3, 2);
  REQUIRE(r1_status.ok());
  CHECK(r1_status->write_region == "r2");
  CHECK(r1_status->epoch == 2);
  auto refused = t.NodeClient(1, t.Leader(1))->UpsertItem("db", "c", Doc("late", 1), "req-late");
  CHECK(refused.status().code() == Code::kFailedPrecondition);
  CHECK(Ids(*t.NodeClient(1, 4), ConsistencyLevel::kEventual) == acked);
}

TEST_CASE(
    "planned failover: the old write region dies before the target has the switch, once restarted it drains the "
    "switch to it, and the target takes over with every acknowledged write",
    "[geo]") {
  TestAccount t(2, "Session");
  auto writer = t.ClientWithContainer();
  std::set<std::string> acked;
  UpsertAckedRange(*writer, "c", "a", 0, 10, &acked);
  REQUIRE(t.WaitRegionAt(2, t.Glsn(1)));
  // r2 freezes; r1 (which heard from it a moment ago) commits the switch,
  // cannot ship it, and dies whole.
  t.Signal(2, SIGSTOP);
  UpsertAckedRange(*writer, "c", "b", 0, 5, &acked);
  auto moving = t.Client(1)->Failover("r2", std::chrono::seconds(2));
  INFO(moving.status().ToString());
  CHECK(moving.status().code() == Code::kDeadlineExceeded);  // committed, not taken over
  const uint64_t switch_glsn = t.Glsn(1);
  t.account->region(1).Kill();
  t.Signal(2, SIGCONT);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  CHECK(t.Glsn(2) < switch_glsn);  // r2 has not got it: nobody takes writes
  for (int i = 1; i <= 4; ++i) REQUIRE(t.account->region(1).StartNode(i, false).ok());
  // r1 restarts as a read region and drains the switch to r2.
  REQUIRE(t.WaitRegionAt(2, switch_glsn));
  UpsertAckedRange(*writer, "c", "c", 0, 5, &acked);
  REQUIRE(t.WaitRegionAt(1, t.Glsn(2)));
  for (int r = 1; r <= 2; ++r) {
    INFO("region " << r);
    CHECK(Ids(*t.NodeClient(r, 1), ConsistencyLevel::kEventual) == acked);
  }
  auto topology = t.NodeClient(2, 1)->GetTopology();
  REQUIRE(topology.ok());
  CHECK(topology->write_region == "r2");
  CHECK(topology->epoch == 2);
}
