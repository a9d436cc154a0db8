// The control group and automatic failover (server/control.h), with real
// bulwarkd processes: regions of four nodes (region R on 127.0.R.1-4), node
// 1 of each a control voter, and a witness on 127.0.9.1. Faults are real:
// nftables rules cut a region off, kill -9 takes nodes down.
//
// They prove that when the write region is cut off, writes resume in the
// next region within the grace period plus a few seconds, that the old
// region stops acknowledging writes once its lease ends and never
// acknowledges one after the new region did, that it rejoins as a read
// region when the cut heals; that priority picks among healthy regions;
// that without a third fault domain nothing is promoted and status says
// why; and that under Strong nothing acknowledged is lost.
#include <atomic>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/server/geo_account.h"
#include "tests/server/partition.h"

using namespace bulwark;
using namespace bulwark::testing;
using Clock = std::chrono::steady_clock;

namespace {

// Short timings so a test takes seconds, not minutes (grace >= lease + 2 s).
constexpr int kGraceMs = 6000;
constexpr int kLeaseMs = 3000;

std::function<void(chaos::AccountOptions&)> WithControl(bool witness) {
  return [witness](chaos::AccountOptions& o) {
    o.control = true;
    o.witness = witness;
    o.control_grace_ms = kGraceMs;
    o.control_lease_ms = kLeaseMs;
  };
}

// A client pinned to region r's nodes: no topology, few retries, so each
// call says what that region does now.
std::unique_ptr<client::Client> Pinned(const TestAccount& t, int r) {
  client::ClientOptions o = t.account->region(r).failover_client_options();
  o.discover_topology = false;
  o.max_retries = 1;
  o.deadline = std::chrono::seconds(2);
  auto c = client::Client::Connect(o);
  REQUIRE(c.ok());
  return std::move(c).value();
}

// One write attempt as a client saw it.
struct Attempt {
  Clock::time_point invoke, complete;
  bool ok = false;
  std::string error;
};

// Writes to one region's nodes in a loop until stopped, recording every attempt.
class RegionWriter {
 public:
  RegionWriter(const TestAccount& t, int r, std::string prefix) : client_(Pinned(t, r)), prefix_(std::move(prefix)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~RegionWriter() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<Attempt> attempts() {
    std::lock_guard lock(mu_);
    return attempts_;
  }
  std::set<std::string> acked() {
    std::lock_guard lock(mu_);
    return acked_;
  }

 private:
  void Run() {
    for (int n = 0; !stop_; ++n) {
      Attempt a;
      const std::string id = prefix_ + std::to_string(n);
      a.invoke = Clock::now();
      auto w = client_->UpsertItem("db", "c", Doc(id, n));
      a.complete = Clock::now();
      a.ok = w.ok();
      if (!w.ok()) a.error = w.status().ToString();
      {
        std::lock_guard lock(mu_);
        attempts_.push_back(a);
        if (a.ok) acked_.insert(id);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(a.ok ? 20 : 100));
    }
  }
  std::unique_ptr<client::Client> client_;
  std::string prefix_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Attempt> attempts_;  // GUARDED_BY(mu_)
  std::set<std::string> acked_;    // GUARDED_BY(mu_)
  std::thread thread_;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Upserts item `id` through `c` until acknowledged (20 tries, `pause` apart):
// the region may still be taking the writes over.
Result<client::Item> PutUntilAcked(client::Client& c, const std::string& id, std::chrono::milliseconds pause) {
  Result<client::Item> put = Status::Unavailable("not tried");
  for (int attempt = 0; attempt < 20 && !put.ok(); ++attempt) {
    put = c.UpsertItem("db", "c", Doc(id, 1));
    if (!put.ok()) std::this_thread::sleep_for(pause);
  }
  return put;
}

// Waits up to `timeout` until node (r, i) reports write region `write` at `epoch`.
bool WaitWriteRegion(const TestAccount& t, int r, int i, const std::string& write, uint64_t epoch,
                     std::chrono::seconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    auto s = t.NodeClient(r, i)->GetStatus();
    if (s.ok() && s->write_region == write && s->epoch == epoch) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

std::vector<std::string> OtherRegionsAndWitness(int self, int regions) {
  std::vector<std::string> out;
  for (int r = 1; r <= regions; ++r) {
    if (r != self) out.push_back("127.0." + std::to_string(r) + ".0/24");
  }
  out.push_back(chaos::kWitnessIp);
  return out;
}

}  // namespace

TEST_CASE("two regions and a witness: the write region cut off, r2 takes the writes, r1 stops and rejoins",
          "[control]") {
  TestAccount t(2, "Session", {}, std::chrono::milliseconds(0), WithControl(/*witness=*/true));
  REQUIRE(t.account->witness() != nullptr);
  {
    auto admin = t.ClientWithContainer();
    // The witness votes and holds nothing: data requests are refused.
    client::ClientOptions wo = t.account->witness()->node_client_options(1);
    wo.max_retries = 0;
    auto witness = client::Client::Connect(wo);
    REQUIRE(witness.ok());
    auto refused = (*witness)->CreateDatabase("other");
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.status().message().find("witness") != std::string::npos);
    // Automatic failover is on, and r1 holds the lease.
    bool leased = false;
    for (int attempt = 0; attempt < 50 && !leased; ++attempt) {
      auto s = t.NodeClient(1, t.Leader(1))->GetStatus();
      REQUIRE(s.ok());
      CHECK(s->control.configured);
      CHECK(s->control.automatic);
      leased = s->control.lease_left_ms > 0;
      if (!leased) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    REQUIRE(leased);
  }

  RegionWriter r1(t, 1, "a");
  RegionWriter r2(t, 2, "b");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  Partition cut;
  cut.Isolate("127.0.1.0/24", OtherRegionsAndWitness(1, 2));
  const auto cut_at = Clock::now();
  // Writes resume in r2 within the grace period plus a few seconds.
  REQUIRE(WaitWriteRegion(t, 2, t.Leader(2), "r2", 2, std::chrono::seconds(kGraceMs / 1000 + 10)));
  std::this_thread::sleep_for(std::chrono::seconds(3));
  r1.Stop();
  r2.Stop();
  const auto a1 = r1.attempts(), a2 = r2.attempts();

  std::optional<Clock::time_point> first_r2_ok;
  for (const auto& a : a2) {
    if (a.ok && (!first_r2_ok || a.complete < *first_r2_ok)) first_r2_ok = a.complete;
  }
  REQUIRE(first_r2_ok.has_value());
  const double rto = Seconds(*first_r2_ok - cut_at);
  INFO("first write acknowledged by r2 " << rto << " s after the cut");
  CHECK(rto <= kGraceMs / 1000.0 + 5);
  // r2 acknowledged nothing before the cut (it was not the write region).
  for (const auto& a : a2) CHECK((!a.ok || a.invoke > cut_at));
  // r1: acknowledged nothing once its lease could have ended (it was
  // renewed at most one report before the cut, and a write is acknowledged
  // only under it) ...
  const auto lease_end = cut_at + std::chrono::milliseconds(kLeaseMs) + std::chrono::seconds(1);
  int refused_after = 0;
  for (const auto& a : a1) {
    if (a.ok) CHECK(a.complete < lease_end);
    if (!a.ok && a.invoke > lease_end) ++refused_after;
  }
  CHECK(refused_after > 0);
  // ... and never a write invoked after r2 had acknowledged one: there is
  // no moment when both take writes.
  for (const auto& a : a1) {
    if (a.ok) CHECK(a.invoke < *first_r2_ok);
  }

  // Healed, r1 rejoins as a read region of epoch 2, and converges.
  cut.Heal();
  for (int i = 1; i <= 4; ++i) CHECK(WaitWriteRegion(t, 1, i, "r2", 2, std::chrono::seconds(30)));
  auto writer = t.Client(1);  // learns the topology: writes go to r2 now
  UpsertAcked(*writer, "c", "after", 1);
  REQUIRE(t.WaitRegionAt(1, t.Glsn(2)));
  auto s = t.NodeClient(1, 1)->GetStatus();
  REQUIRE(s.ok());
  CHECK(s->last_failover.from == "r1");
  CHECK(s->last_failover.to == "r2");
  CHECK(s->last_failover.reason.rfind("automatic:", 0) == 0);
  // Every write r2 acknowledged is in r1 now.
  auto r1_reader = t.Client(1);
  const auto ids = Ids(*r1_reader, ConsistencyLevel::kEventual);
  for (const auto& id : r2.acked()) CHECK(ids.count(id) == 1);

  // What r1 acknowledged in its last lease and never shipped did not
  // vanish: each such write is in the account or in r1's conflict feed.
  auto feed = r1_reader->ListConflicts("db", "c");
  INFO(feed.status().ToString());
  REQUIRE(feed.ok());
  CHECK(feed->first == "r1");
  std::map<std::string, client::ConflictInfo> conflicts;
  for (const auto& c : feed->second) conflicts[c.item_id] = c;
  int in_feed = 0;
  for (const auto& id : r1.acked()) {
    if (ids.count(id) == 1) continue;
    INFO("acknowledged by r1, in neither the account nor the feed: " << id);
    CHECK(conflicts.count(id) == 1);
    ++in_feed;
  }
  INFO("r1 acknowledged " << r1.acked().size() << " writes, " << in_feed << " only in the feed");
  REQUIRE(in_feed > 0);  // r1 kept acknowledging for most of its lease after the cut
  for (const auto& [item, c] : conflicts) {
    CHECK(c.glsn > 0);
    CHECK(c.epoch == 1);
    CHECK_FALSE(c.deleted);
    CHECK(ids.count(item) == 0);  // nothing in the account's history is taken for a conflict
  }
  // Show: the item as written. Replay one (it reaches the account through
  // the write region, r2), discard another: both leave the feed.
  auto first = feed->second.front();
  auto shown = r1_reader->GetConflict("db", "c", first.id);
  REQUIRE(shown.ok());
  CHECK(json::parse(shown->second).at("id") == first.item_id);
  REQUIRE(r1_reader->UpsertItem("db", "c", shown->second).ok());
  REQUIRE(r1_reader->DiscardConflict("db", "c", first.id).ok());
  auto r2_reader = t.Client(2);
  auto replayed = r2_reader->ReadItem("db", "c", "\"t\"", first.item_id, {ConsistencyLevel::kEventual, ""});
  INFO(replayed.status().ToString());
  CHECK(replayed.ok());
  if (feed->second.size() > 1) {
    const auto second = feed->second[1];
    REQUIRE(r1_reader->DiscardConflict("db", "c", second.id).ok());
    CHECK(r1_reader->DiscardConflict("db", "c", second.id).code() == Code::kNotFound);
  }
  const size_t left = feed->second.size() - std::min<size_t>(2, feed->second.size());
  auto ids_of = [](const std::vector<client::ConflictInfo>& v) {
    std::set<std::string> out;
    for (const auto& c : v) out.insert(c.id);
    return out;
  };
  std::set<std::string> expected = ids_of(feed->second);
  expected.erase(first.id);
  if (feed->second.size() > 1) expected.erase(feed->second[1].id);
  REQUIRE(expected.size() == left);
  // Every node of r1 kept the same feed (each captured it at its install).
  for (int i = 1; i <= 4; ++i) {
    client::ClientOptions o = t.account->region(1).node_client_options(i);
    o.max_retries = 0;
    auto one = client::Client::Connect(o);
    REQUIRE(one.ok());
    Result<std::pair<std::string, std::vector<client::ConflictInfo>>> mine = Status::Unavailable("not asked");
    for (int attempt = 0; attempt < 30; ++attempt) {  // a follower applies the discards a moment later
      mine = (*one)->ListConflicts("db", "c");
      if (mine.ok() && ids_of(mine->second) == expected) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    REQUIRE(mine.ok());
    CHECK(ids_of(mine->second) == expected);
  }
}

TEST_CASE("three regions: r1 cut off and r2's replica set down, r3 is promoted", "[control]") {
  TestAccount t(3, "Session", {}, std::chrono::milliseconds(0), WithControl(/*witness=*/false));
  auto admin = t.ClientWithContainer();
  std::set<std::string> acked;
  UpsertAckedRange(*admin, "c", "x", 0, 20, &acked);
  REQUIRE(t.WaitRegionAt(3, t.Glsn(1)));
  // r2 (priority 1) loses its replica set's majority; its node 1 (a control
  // voter) stays up, so r2's and r3's voters are a majority of the group.
  for (int i = 2; i <= 4; ++i) t.account->region(2).KillNode(i);
  Partition cut;
  cut.Isolate("127.0.1.0/24", OtherRegionsAndWitness(1, 3));
  REQUIRE(WaitWriteRegion(t, 3, t.Leader(3), "r3", 2, std::chrono::seconds(kGraceMs / 1000 + 15)));
  auto w = Pinned(t, 3);
  auto put = PutUntilAcked(*w, "in-r3", std::chrono::milliseconds(200));
  INFO(put.status().ToString());
  CHECK(put.ok());
  auto s = t.NodeClient(3, t.Leader(3))->GetStatus();
  REQUIRE(s.ok());
  CHECK(s->last_failover.to == "r3");
  CHECK(s->last_failover.reason.find("automatic") != std::string::npos);
  // What r1 acknowledged before the cut (streamed to r3) is there.
  auto reader = t.Client(3);
  const auto ids = Ids(*reader, ConsistencyLevel::kEventual);
  for (const auto& id : acked) CHECK(ids.count(id) == 1);
}

TEST_CASE("three regions, a container fenced to r1 and r2: r1 cut off and r2 down, r3 is not promoted",
          "[control][fence]") {
  TestAccount t(3, "Session", {}, std::chrono::milliseconds(0), WithControl(/*witness=*/false));
  auto admin = t.ClientWithContainer();
  auto fenced = admin->CreateContainer("db", "eu", "/tenant", {"r1", "r2"});
  INFO(fenced.status().ToString());
  REQUIRE(fenced.ok());
  REQUIRE(admin->UpsertItem("db", "eu", Doc("e1", 1)).ok());
  REQUIRE(t.WaitRegionAt(3, t.Glsn(1)));
  // The control group has heard r1 report its fence since (a report every
  // 500 ms); r3 has the fence record.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  for (int i = 2; i <= 4; ++i) t.account->region(2).KillNode(i);
  Partition cut;
  cut.Isolate("127.0.1.0/24", OtherRegionsAndWitness(1, 3));
  // As in the case above, r3 would be promoted within grace + a few seconds.
  std::this_thread::sleep_for(std::chrono::milliseconds(kGraceMs + 6000));
  auto s = t.NodeClient(3, t.Leader(3))->GetStatus();
  REQUIRE(s.ok());
  CHECK(s->epoch == 1);
  CHECK(s->write_region == "r1");
  // The group's leader (node 1 of r2 or r3: r1's is cut off) says why.
  std::string logs;
  for (int r = 2; r <= 3; ++r) {
    std::ifstream in(t.account->region(r).node_log_path(1));
    logs += std::string(std::istreambuf_iterator<char>(in), {});
  }
  CHECK(logs.find("event=automatic_failover_blocked") != std::string::npos);
  CHECK(logs.find("r3: outside a geo-fence") != std::string::npos);
}

TEST_CASE("two regions without a witness: nothing is promoted, status says why, manual failover works", "[control]") {
  TestAccount t(2, "Session", {}, std::chrono::milliseconds(0), WithControl(/*witness=*/false));
  auto admin = t.ClientWithContainer();
  auto s = t.NodeClient(1, 1)->GetStatus();
  REQUIRE(s.ok());
  CHECK(s->control.configured);
  CHECK_FALSE(s->control.automatic);
  INFO(s->control.automatic_off);
  CHECK(s->control.automatic_off.find("2 fault domains") != std::string::npos);
  {
    // r1 cut off well past the grace period: r2 is not promoted, and r1
    // (which needs no lease without automatic failover) keeps writing.
    Partition cut;
    cut.Isolate("127.0.1.0/24", OtherRegionsAndWitness(1, 2));
    std::this_thread::sleep_for(std::chrono::milliseconds(kGraceMs + 3000));
    auto r2 = t.NodeClient(2, t.Leader(2))->GetStatus();
    REQUIRE(r2.ok());
    CHECK(r2->epoch == 1);
    CHECK(r2->write_region == "r1");
    auto w = Pinned(t, 1);
    auto put = w->UpsertItem("db", "c", Doc("during-cut", 1));
    INFO(put.status().ToString());
    CHECK(put.ok());
  }
  // A planned failover still works (once r2 caught up).
  REQUIRE(t.WaitRegionAt(2, t.Glsn(1)));
  auto moved = admin->Failover("r2");
  INFO(moved.status().ToString());
  REQUIRE(moved.ok());
  CHECK(moved->write_region == "r2");
}

TEST_CASE("Strong, two regions and a witness: the write region killed under load, no acknowledged write lost",
          "[control]") {
  TestAccount t(2, "Strong", {}, std::chrono::milliseconds(0), WithControl(/*witness=*/true));
  auto admin = t.ClientWithContainer();
  RegionWriter load(t, 1, "s");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  t.Signal(1, SIGKILL);
  for (int i = 1; i <= 4; ++i) t.account->region(1).KillNode(i);
  load.Stop();
  const auto acked = load.acked();
  REQUIRE(acked.size() > 5);
  // r2 (in the strong quorum set: it has every acknowledged write) takes over.
  REQUIRE(WaitWriteRegion(t, 2, t.Leader(2), "r2", 2, std::chrono::seconds(kGraceMs / 1000 + 15)));
  auto reader = t.Client(2);
  const auto ids = Ids(*reader, ConsistencyLevel::kEventual);
  for (const auto& id : acked) CHECK(ids.count(id) == 1);
  // Strong writes go on in r2: its stream started without the old write
  // region in the quorum set (that region's lease had ended).
  auto w = Pinned(t, 2);
  auto put = PutUntilAcked(*w, "after-kill", std::chrono::milliseconds(250));
  INFO(put.status().ToString());
  CHECK(put.ok());
  auto s = t.NodeClient(2, t.Leader(2))->GetStatus();
  REQUIRE(s.ok());
  CHECK(s->strong_quorum == std::vector<std::string>{"r2"});
}

TEST_CASE("a cut-off write region ahead of the new one: its unshipped writes go to the conflict feed", "[control]") {
  TestAccount t(2, "Session", {}, std::chrono::milliseconds(0), WithControl(/*witness=*/true));
  auto admin = t.ClientWithContainer();
  std::set<std::string> before;
  UpsertAckedRange(*admin, "c", "x", 0, 5, &before);
  REQUIRE(t.WaitRegionAt(2, t.Glsn(1)));
  Partition cut;
  cut.Isolate("127.0.1.0/24", OtherRegionsAndWitness(1, 2));
  // r1 goes on acknowledging under its lease; r2 takes over and writes
  // nothing, so r1 ends further along (at a higher GLSN) in the old epoch.
  auto w = Pinned(t, 1);
  std::vector<std::string> acked;
  for (int i = 0; i < 10; ++i) {
    if (w->UpsertItem("db", "c", Doc("late" + std::to_string(i), i)).ok()) acked.push_back("late" + std::to_string(i));
  }
  REQUIRE(acked.size() >= 2);
  REQUIRE(WaitWriteRegion(t, 2, t.Leader(2), "r2", 2, std::chrono::seconds(kGraceMs / 1000 + 10)));
  REQUIRE(t.Glsn(1) > t.Glsn(2));
  cut.Heal();
  for (int i = 1; i <= 4; ++i) CHECK(WaitWriteRegion(t, 1, i, "r2", 2, std::chrono::seconds(30)));
  auto reader = t.Client(1);
  Result<std::pair<std::string, std::vector<client::ConflictInfo>>> feed = Status::Unavailable("not asked");
  for (int attempt = 0; attempt < 100; ++attempt) {  // the image installs a moment after the topology moved
    feed = reader->ListConflicts("db", "c");
    if (feed.ok() && feed->second.size() >= acked.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(feed.ok());
  std::set<std::string> in_feed;
  for (const auto& c : feed->second) in_feed.insert(c.item_id);
  for (const auto& id : acked) CHECK(in_feed.count(id) == 1);
  // r1 now holds the account's history: what was shipped before the cut, not the late writes.
  const auto ids = Ids(*reader, ConsistencyLevel::kEventual);
  for (const auto& id : before) CHECK(ids.count(id) == 1);
  for (const auto& id : acked) CHECK(ids.count(id) == 0);
}
