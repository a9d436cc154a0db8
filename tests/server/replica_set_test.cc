// Replica-set integration tests: four real bulwarkd processes on
// 127.0.R.1-4, mutual TLS between them, real RocksDB and fsync. They prove
// that writes through any node are readable everywhere at every consistency
// level, that acknowledged writes survive kill -9 of the leader, that a
// lagging follower catches up by snapshot, that a partitioned minority
// cannot commit, and that request ids are applied once.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "chaos/local_cluster.h"
#include "client/client.h"
#include "crypto/master_key.h"
#include "tests/server/partition.h"
#include "tests/store_scan.h"
#include "tests/test_util.h"

using namespace bulwark;
using bulwark::testing::FreePort;
using bulwark::testing::Partition;
using bulwark::testing::TempDir;

namespace {

constexpr auto kConverge = std::chrono::seconds(15);

// A region address block 127.0.R.1-4 no other test process is likely to use.
std::string NextRegionIp() {
  static int n = 0;
  return "127.0." + std::to_string(10 + (getpid() * 7 + n++) % 240) + ".1";
}

struct TestSet {
  TempDir dir;
  std::unique_ptr<chaos::LocalCluster> cluster;

  explicit TestSet(std::vector<std::string> extra_args = {}, int spares = 0) {
    chaos::ClusterOptions o;
    o.dir = dir.sub("cluster");
    o.bin_dir = BULWARK_BIN_DIR;
    o.ip = NextRegionIp();
    o.nodes = 4 + spares;
    o.founding_nodes = 4;
    o.metrics_port = 0;
    // Strong as the account default, so a request may ask for any level.
    o.extra_args = {"--default-consistency", "Strong"};
    o.extra_args.insert(o.extra_args.end(), extra_args.begin(), extra_args.end());
    // A client port free on the first address, with the peer port after it.
    do {
      o.port = FreePort(o.ip);
    } while (o.port == 0 || o.port > 65000);
    auto c = chaos::LocalCluster::Prepare(o);
    REQUIRE(c.ok());
    cluster = std::move(c).value();
    const Status s = cluster->Start();
    INFO(s.ToString());
    REQUIRE(s.ok());
  }
  std::unique_ptr<client::Client> Client(int node) const {
    auto c = client::Client::Connect(cluster->node_client_options(node));
    REQUIRE(c.ok());
    return std::move(c).value();
  }
  int Leader() const {
    auto lead = cluster->WaitForLeader();
    INFO(lead.status().ToString());
    REQUIRE(lead.ok());
    return *lead;
  }
  void Seed() const {
    auto c = Client(1);
    REQUIRE(c->CreateDatabase("db").ok());
    REQUIRE(c->CreateContainer("db", "c", "/tenant").ok());
  }
  std::string Log(int node) const {
    std::ifstream in(cluster->node_log_path(node));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

std::string ItemJson(const std::string& id, int v = 0) {
  return R"({"id":")" + id + R"(","tenant":"t","v":)" + std::to_string(v) + "}";
}

// Polls `fn` until it returns true or the deadline passes.
template <typename Fn>
bool Eventually(Fn&& fn, std::chrono::milliseconds timeout = kConverge) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fn()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return fn();
}

// Purges a container through `node` and returns its rid. An election under
// load can lose the answer ("its outcome is unknown"); the purge is then
// sent again, and NotFound from the retry means the first one committed
// (the container's rid, read before, is what it destroyed).
std::string PurgeThroughElections(const TestSet& set, int node, const std::string& db, const std::string& container) {
  auto before = set.Client(node)->ReadContainer(db, container);
  INFO(before.status().ToString());
  REQUIRE(before.ok());
  bool unknown = false;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto purged = set.Client(node)->PurgeContainer(db, container);
    INFO("attempt " << attempt << ": " << purged.status().ToString());
    if (purged.ok()) {
      REQUIRE(purged->rids.size() == 1);
      CHECK(purged->rids[0] == before->rid);
      return before->rid;
    }
    if (unknown && purged.status().code() == Code::kNotFound) return before->rid;
    const Code code = purged.status().code();
    REQUIRE((code == Code::kUnavailable || code == Code::kDeadlineExceeded));
    unknown = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  FAIL("the purge's outcome stayed unknown after 5 attempts");
  return {};
}

// Waits until `node` has applied everything the leader had committed when
// the wait began; false if it does not within kConverge.
bool CaughtUp(const TestSet& set, int node) {
  uint64_t target = 0;
  for (int n = 1; n <= set.cluster->size(); ++n) {
    if (!set.cluster->node_running(n)) continue;
    auto s = set.Client(n)->GetStatus();
    if (s.ok() && s->role == "leader") target = s->commit_index;
  }
  if (target == 0) return false;
  auto c = set.Client(node);
  return Eventually([&] {
    auto s = c->GetStatus();
    return s.ok() && s->applied_index >= target;
  });
}

// How many of `ids` node `node` does not hold, read locally once it has
// caught up (one read each: a node missing everything fails fast).
size_t Missing(const TestSet& set, int node, const std::set<std::string>& ids) {
  if (!CaughtUp(set, node)) return ids.size();
  auto c = set.Client(node);
  client::ReadOptions local;
  local.consistency = ConsistencyLevel::kEventual;
  size_t missing = 0;
  for (const auto& id : ids) {
    if (!c->ReadItem("db", "c", "\"t\"", id, local).ok()) ++missing;
  }
  return missing;
}

client::ReadOptions At(ConsistencyLevel level) {
  client::ReadOptions o;
  o.consistency = level;
  return o;
}

}  // namespace

TEST_CASE("Replica set: writes through any node read back from every node at every level", "[replica]") {
  TestSet set;
  set.Seed();
  // Each node takes a write; followers forward theirs to the leader.
  for (int n = 1; n <= 4; ++n) {
    auto c = set.Client(n);
    auto w = c->UpsertItem("db", "c", ItemJson("from-" + std::to_string(n), n));
    INFO(w.status().ToString());
    REQUIRE(w.ok());
    // Read-your-writes on the same node, at Session (the default).
    auto r = c->ReadItem("db", "c", "\"t\"", "from-" + std::to_string(n));
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    CHECK(r->etag == w->etag);
  }
  for (int n = 1; n <= 4; ++n) {
    auto c = set.Client(n);
    for (int k = 1; k <= 4; ++k) {
      const std::string id = "from-" + std::to_string(k);
      // Strong reads are linearizable: every acknowledged write is visible.
      auto strong = c->ReadItem("db", "c", "\"t\"", id, At(ConsistencyLevel::kStrong));
      INFO("node " << n << " item " << id << ": " << strong.status().ToString());
      REQUIRE(strong.ok());
      CHECK(strong->json.find("\"v\":" + std::to_string(k)) != std::string::npos);
      // The weaker levels read locally; they converge.
      for (auto level :
           {ConsistencyLevel::kBoundedStaleness, ConsistencyLevel::kConsistentPrefix, ConsistencyLevel::kEventual}) {
        CHECK(Eventually([&] { return c->ReadItem("db", "c", "\"t\"", id, At(level)).ok(); }));
      }
    }
  }
  // A session token from one node makes a read on another see the write.
  auto writer = set.Client(2);
  auto w = writer->UpsertItem("db", "c", ItemJson("session", 7));
  REQUIRE(w.ok());
  for (int n = 1; n <= 4; ++n) {
    auto reader = set.Client(n);
    // Another client: the writer's token is handed over explicitly.
    client::ReadOptions o = At(ConsistencyLevel::kSession);
    o.session_token = w->session_token;
    auto r = reader->ReadItem("db", "c", "\"t\"", "session", o);
    INFO("node " << n << ": " << r.status().ToString());
    REQUIRE(r.ok());
    CHECK(r->etag == w->etag);
  }
}

TEST_CASE("Replica set: a leader stopped cleanly hands its leadership over first", "[replica]") {
  TestSet set;
  set.Seed();
  const int leader = set.Leader();
  auto stopped = set.cluster->StopNode(leader);
  REQUIRE(stopped.ok());
  CHECK(*stopped == 0);
  // The handoff happened (TimeoutNow to a caught-up follower), not an election
  // after the leader vanished.
  const std::string log = set.Log(leader);
  CHECK(log.find("event=leadership_handed_off") != std::string::npos);
  CHECK(log.find("done=true") != std::string::npos);
  const int next = set.Leader();
  CHECK(next != leader);
  auto c = set.Client(next);
  CHECK(c->UpsertItem("db", "c", ItemJson("after-handoff", 1)).ok());
}

TEST_CASE("Replica set: kill -9 of the leader under load loses no acknowledged write", "[replica]") {
  TestSet set;
  set.Seed();
  const int old_leader = set.Leader();
  std::vector<int> survivors;
  for (int n = 1; n <= 4; ++n) {
    if (n != old_leader) survivors.push_back(n);
  }

  std::mutex mu;
  std::set<std::string> acked;
  std::atomic<bool> stop{false};
  std::atomic<bool> killed{false};
  std::atomic<int> acked_after_kill{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t) {
    writers.emplace_back([&, t] {
      auto c = set.Client(survivors[t]);
      for (int i = 0; !stop; ++i) {
        const std::string id = "w" + std::to_string(t) + "-" + std::to_string(i);
        auto r = c->UpsertItem("db", "c", ItemJson(id, i));
        if (r.ok()) {
          std::lock_guard lock(mu);
          acked.insert(id);
          if (killed) ++acked_after_kill;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  set.cluster->KillNode(old_leader);
  killed = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(4000));
  stop = true;
  for (auto& w : writers) w.join();

  const int new_leader = set.Leader();
  CHECK(new_leader != old_leader);
  // Writes resumed under the new leader.
  CHECK(acked_after_kill > 0);
  INFO("acknowledged " << acked.size() << " writes, " << acked_after_kill << " after the kill");
  REQUIRE(acked.size() > 20);
  // Every acknowledged write is on every live node: check each with a local
  // (Eventual) read once the node has caught up, and a Strong read too.
  for (int n : survivors) {
    INFO("node " << n);
    CHECK(Missing(set, n, acked) == 0);
  }
  // The killed node restarts, rejoins and catches up with no operator action.
  REQUIRE(set.cluster->StartNode(old_leader).ok());
  CHECK(Missing(set, old_leader, acked) == 0);
}

TEST_CASE("Replica set: a retried request id is applied once", "[replica]") {
  TestSet set;
  set.Seed();
  const int leader = set.Leader();
  const int follower = leader == 1 ? 2 : 1;
  auto on_leader = set.Client(leader);
  auto on_follower = set.Client(follower);

  auto first = on_leader->CreateItem("db", "c", ItemJson("once", 1), "req-once");
  REQUIRE(first.ok());
  // The same create again (a client retry) succeeds with the first outcome,
  // not AlreadyExists, whichever node it reaches.
  auto again = on_follower->CreateItem("db", "c", ItemJson("once", 1), "req-once");
  INFO(again.status().ToString());
  REQUIRE(again.ok());
  CHECK(again->etag == first->etag);
  // A different body under the same id is still the same request: nothing new is written.
  auto reused = on_leader->UpsertItem("db", "c", ItemJson("once", 2), "req-once");
  REQUIRE(reused.ok());
  CHECK(reused->etag == first->etag);
  auto read = on_leader->ReadItem("db", "c", "\"t\"", "once", At(ConsistencyLevel::kStrong));
  REQUIRE(read.ok());
  CHECK(read->etag == first->etag);
  CHECK(read->json.find("\"v\":1") != std::string::npos);
  // A fresh id is a new write.
  auto fresh = on_leader->CreateItem("db", "c", ItemJson("once", 3), "req-other");
  CHECK(fresh.status().code() == Code::kAlreadyExists);
  // Deletes deduplicate too: the retry of a delete that happened succeeds.
  REQUIRE(on_follower->DeleteItem("db", "c", "\"t\"", "once", {}, "req-delete").ok());
  CHECK(on_leader->DeleteItem("db", "c", "\"t\"", "once", {}, "req-delete").ok());
  CHECK(on_leader->DeleteItem("db", "c", "\"t\"", "once", {}, "req-delete-2").code() == Code::kNotFound);
}

TEST_CASE("Replica set: a follower behind the compacted log catches up by snapshot", "[replica]") {
  TestSet set({"--snapshot-entries", "100"});
  set.Seed();
  const int leader = set.Leader();
  const int lagging = leader == 4 ? 3 : 4;
  REQUIRE(set.cluster->StopNode(lagging).ok());
  auto c = set.Client(leader);
  for (int i = 0; i < 400; ++i) REQUIRE(c->UpsertItem("db", "c", ItemJson("s" + std::to_string(i), i)).ok());
  // The leader has compacted past everything the stopped node has.
  CHECK(Eventually([&] { return set.Log(leader).find("event=log_compacted") != std::string::npos; }));
  REQUIRE(set.cluster->StartNode(lagging).ok());
  auto lag = set.Client(lagging);
  CHECK(Eventually([&] { return set.Log(lagging).find("event=snapshot_installed") != std::string::npos; }));
  for (int i = 0; i < 400; i += 37) {
    const std::string id = "s" + std::to_string(i);
    REQUIRE(Eventually([&] { return lag->ReadItem("db", "c", "\"t\"", id, At(ConsistencyLevel::kEventual)).ok(); }));
  }
  // It keeps following after the snapshot: a new write arrives too.
  REQUIRE(c->UpsertItem("db", "c", ItemJson("after", 1)).ok());
  CHECK(Eventually([&] { return lag->ReadItem("db", "c", "\"t\"", "after", At(ConsistencyLevel::kEventual)).ok(); }));
  auto listed = lag->ListItems("db", "c", client::ListOptions{std::nullopt, 1000, {}, ConsistencyLevel::kStrong});
  INFO(listed.status().ToString());
  REQUIRE(listed.ok());
  CHECK(listed->items.size() == 401);
}

namespace {

// Watches every node's status and records, per term, which nodes said they
// led it: Raft allows at most one.
class LeaderWatch {
 public:
  explicit LeaderWatch(const TestSet& set) : set_(set), thread_([this] { Loop(); }) {}
  ~LeaderWatch() { StopWatching(); }
  void StopWatching() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Terms in which more than one node claimed leadership.
  std::vector<uint64_t> Violations() const {
    std::lock_guard lock(mu_);
    std::vector<uint64_t> out;
    for (const auto& [term, nodes] : leaders_) {
      if (nodes.size() > 1) out.push_back(term);
    }
    return out;
  }
  size_t TermsSeen() const {
    std::lock_guard lock(mu_);
    return leaders_.size();
  }

 private:
  void Loop() {
    std::vector<std::unique_ptr<client::Client>> clients;
    for (int n = 1; n <= 4; ++n) {
      auto o = set_.cluster->node_client_options(n);
      o.deadline = std::chrono::milliseconds(500);
      auto c = client::Client::Connect(o);
      clients.push_back(c.ok() ? std::move(c).value() : nullptr);
    }
    while (!stop_) {
      for (int n = 1; n <= 4; ++n) {
        if (!clients[n - 1]) continue;
        auto s = clients[n - 1]->GetStatus();
        if (s.ok() && s->role == "leader") {
          std::lock_guard lock(mu_);
          leaders_[s->term].insert(n);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  const TestSet& set_;
  mutable std::mutex mu_;
  std::map<uint64_t, std::set<int>> leaders_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::vector<std::string> OtherIps(const chaos::LocalCluster& c, int node) {
  std::vector<std::string> out;
  for (int n = 1; n <= c.size(); ++n) {
    if (n != node) out.push_back(c.node_ip(n));
  }
  return out;
}

}  // namespace

TEST_CASE("Replica set: a partitioned minority cannot commit, the majority goes on, it converges after",
          "[replica][partition]") {
  TestSet set;
  set.Seed();
  LeaderWatch watch(set);
  Partition net;
  std::set<std::string> acked;

  // 1. A follower cut off from the others.
  const int leader = set.Leader();
  const int cut = leader == 4 ? 3 : 4;
  net.Isolate(set.cluster->node_ip(cut), OtherIps(*set.cluster, cut));
  {
    auto minority = set.Client(cut);
    auto w = minority->UpsertItem("db", "c", ItemJson("minority-1", 1));
    INFO(w.status().ToString());
    CHECK(w.status().code() == Code::kUnavailable);
    CHECK(w.status().message().find("leader") != std::string::npos);
    auto r = minority->ReadItem("db", "c", "\"t\"", "minority-1", At(ConsistencyLevel::kStrong));
    CHECK(r.status().code() == Code::kUnavailable);
    // The majority keeps working meanwhile.
    auto majority = set.Client(leader);
    for (int i = 0; i < 20; ++i) {
      const std::string id = "during-a-" + std::to_string(i);
      auto ok = majority->UpsertItem("db", "c", ItemJson(id, i));
      INFO(ok.status().ToString());
      REQUIRE(ok.ok());
      acked.insert(id);
    }
  }
  net.Heal();
  {
    auto healed = set.Client(cut);
    for (const auto& id : acked) {
      REQUIRE(
          Eventually([&] { return healed->ReadItem("db", "c", "\"t\"", id, At(ConsistencyLevel::kEventual)).ok(); }));
    }
    // A write the minority refused was never applied anywhere.
    CHECK(healed->ReadItem("db", "c", "\"t\"", "minority-1", At(ConsistencyLevel::kStrong)).status().code() ==
          Code::kNotFound);
  }

  // 2. The leader itself cut off: the other three elect a new one, the old
  //    one steps down (check-quorum) and cannot commit.
  const int old_leader = set.Leader();
  net.Isolate(set.cluster->node_ip(old_leader), OtherIps(*set.cluster, old_leader));
  int new_leader = 0;
  {
    auto survivor = set.Client(old_leader == 1 ? 2 : 1);
    REQUIRE(Eventually([&] {
      auto s = survivor->GetStatus();
      if (!s.ok() || s->leader_id == 0 || static_cast<int>(s->leader_id) == old_leader) return false;
      new_leader = static_cast<int>(s->leader_id);
      return true;
    }));
    auto majority = set.Client(new_leader);
    for (int i = 0; i < 20; ++i) {
      const std::string id = "during-b-" + std::to_string(i);
      auto ok = majority->UpsertItem("db", "c", ItemJson(id, i));
      INFO(ok.status().ToString());
      REQUIRE(ok.ok());
      acked.insert(id);
    }
    auto isolated = set.Client(old_leader);
    auto w = isolated->UpsertItem("db", "c", ItemJson("old-leader-1", 1));
    INFO(w.status().ToString());
    CHECK(w.status().code() == Code::kUnavailable);
    auto s = isolated->GetStatus();
    REQUIRE(s.ok());
    CHECK(s->role != "leader");
  }
  net.Heal();
  for (int n = 1; n <= 4; ++n) {
    auto c = set.Client(n);
    INFO("node " << n);
    CHECK(Missing(set, n, acked) == 0);
    CHECK(c->ReadItem("db", "c", "\"t\"", "old-leader-1", At(ConsistencyLevel::kStrong)).status().code() ==
          Code::kNotFound);
  }
  CHECK(set.cluster->WaitForLeader().ok());
  watch.StopWatching();
  INFO("terms seen with a leader: " << watch.TermsSeen());
  CHECK(watch.TermsSeen() >= 2);
  CHECK(watch.Violations().empty());
}

TEST_CASE("Replica set: replace a node while writes run, move the leadership from a follower",
          "[replica][membership]") {
  TestSet set({}, /*spares=*/1);
  set.Seed();
  const int leader = set.Leader();
  const int victim = leader == 4 ? 3 : 4;
  std::vector<int> writers_on;
  for (int n = 1; n <= 4; ++n) {
    if (n != victim) writers_on.push_back(n);
  }

  std::mutex mu;
  std::set<std::string> acked;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (size_t t = 0; t < writers_on.size(); ++t) {
    writers.emplace_back([&, t] {
      auto c = set.Client(writers_on[t]);
      for (int i = 0; !stop; ++i) {
        const std::string id = "m" + std::to_string(t) + "-" + std::to_string(i);
        if (c->UpsertItem("db", "c", ItemJson(id, i)).ok()) {
          std::lock_guard lock(mu);
          acked.insert(id);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // Node 5 starts with --join: it has no membership and waits to be added.
  REQUIRE(set.cluster->StartNode(5).ok());
  auto admin = set.Client(writers_on[0]);
  auto added = admin->AddNode(5, set.cluster->node_peer_endpoint(5));
  INFO(added.status().ToString());
  REQUIRE(added.ok());
  CHECK(added->size() == 5);
  // Adding it again is refused.
  CHECK(admin->AddNode(5, set.cluster->node_peer_endpoint(5)).status().code() == Code::kAlreadyExists);
  // It catches up: the leader reports no lag for it.
  REQUIRE(Eventually([&] {
    for (int n : writers_on) {
      auto s = set.Client(n)->GetStatus();
      if (!s.ok() || s->role != "leader") continue;
      for (const auto& m : s->members) {
        if (m.id == 5 && m.match_index > 0 && m.lag < 50) return true;
      }
    }
    return false;
  }));
  auto removed = admin->RemoveNode(victim);
  INFO(removed.status().ToString());
  REQUIRE(removed.ok());
  CHECK(removed->size() == 4);
  CHECK(std::find(removed->begin(), removed->end(), static_cast<uint64_t>(victim)) == removed->end());
  REQUIRE(set.cluster->StopNode(victim).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  for (auto& w : writers) w.join();
  INFO("acknowledged " << acked.size() << " writes");
  REQUIRE(acked.size() > 20);

  std::vector<int> members = writers_on;
  members.push_back(5);
  for (int n : members) {
    INFO("node " << n);
    CHECK(Missing(set, n, acked) == 0);
  }
  // The new set: node 5 is a voter, the victim is gone, writes go on.
  auto status = set.Client(5)->GetStatus();
  REQUIRE(status.ok());
  CHECK(status->role != "stopped");
  REQUIRE(set.Client(5)->UpsertItem("db", "c", ItemJson("after-replace", 1)).ok());

  // Leadership moves on request, even when a follower is asked.
  const int lead = set.Leader();
  int follower = 0, target = 0;
  for (int n : members) {
    if (n == lead) continue;
    if (follower == 0) {
      follower = n;
    } else if (target == 0) {
      target = n;
    }
  }
  auto moved = set.Client(follower)->TransferLeader(static_cast<uint64_t>(target));
  INFO(moved.status().ToString());
  REQUIRE(moved.ok());
  CHECK(*moved == static_cast<uint64_t>(target));
  CHECK(set.Leader() == target);
}

TEST_CASE("Replica set: a purge leaves no node's files with the container's keys or records",
          "[replica][purge][page]") {
  TestSet set;
  set.Seed();
  const std::vector<std::string> canaries = {"collPURGEr1", "idPURGEr2", "pkPURGEr3", "bodyPURGEr4"};
  const std::string keep = "idKEEPr5";
  auto c = set.Client(1);
  REQUIRE(c->CreateContainer("db", canaries[0], "/tenant").ok());
  for (int i = 0; i < 60; ++i) {
    const std::string doc = R"({"id":")" + canaries[1] + std::to_string(i) + R"(","tenant":")" + canaries[2] +
                            R"(","secret":")" + canaries[3] + R"("})";
    REQUIRE(c->UpsertItem("db", canaries[0], doc).ok());
  }
  // A second data-key version: the raft log now carries two raw keys.
  REQUIRE(c->RotateDataKey("db", canaries[0]).ok());
  REQUIRE(c->UpsertItem("db", "c", ItemJson(keep)).ok());

  const std::string rid = PurgeThroughElections(set, 2, "db", canaries[0]);
  CHECK(set.Client(3)->PurgeContainer("db", canaries[0]).status().code() == Code::kNotFound);
  // Every node applies it and shreds its own files.
  for (int n = 1; n <= 4; ++n) {
    INFO("node " << n);
    CHECK(Eventually(
        [&] {
          auto ks = set.Client(n)->GetKeyStatus();
          return ks.ok() && ks->pending_shreds.empty() && ks->store_keys.size() == 1;
        },
        std::chrono::seconds(60)));
  }
  // Writes go on after it.
  REQUIRE(set.Client(4)->UpsertItem("db", "c", ItemJson("after")).ok());
  for (int n = 1; n <= 4; ++n) REQUIRE(set.cluster->StopNode(n).ok());

  auto master = crypto::LoadMasterKey("file:" + set.cluster->options().dir + "/master.key");
  REQUIRE(master.ok());
  for (int n = 1; n <= 4; ++n) {
    const std::filesystem::path store =
        std::filesystem::path(set.cluster->options().dir) / ("node-" + std::to_string(n)) / "data" / "store";
    int keep_hits = 0, files = 0;
    for (const auto& [name, f] : bulwark::testing::DecryptStoreFiles(store, *master)) {
      INFO("node " << n << " " << name << " " << f.error);
      CHECK(f.error.empty());  // every file opens with the one store key left
      ++files;
      for (const auto& canary : canaries) CHECK(f.plain.find(canary) == std::string::npos);
      CHECK(f.plain.find("k/" + rid) == std::string::npos);
      if (f.plain.find(keep) != std::string::npos) ++keep_hits;
    }
    INFO("node " << n);
    CHECK(files >= 4);
    CHECK(keep_hits > 0);  // the scan sees plaintext keys: it would have seen the purged ones
  }
  for (int n = 1; n <= 4; ++n) REQUIRE(set.cluster->StartNode(n).ok());
  set.Leader();
  auto after = set.Client(3);
  CHECK(after->ReadItem("db", "c", "\"t\"", keep).ok());
  CHECK(after->ReadItem("db", "c", "\"t\"", "after").ok());
  CHECK(after->ReadContainer("db", canaries[0]).status().code() == Code::kNotFound);
}

TEST_CASE("Replica set: a node down during a purge shreds its files when it returns", "[replica][purge][page]") {
  TestSet set;
  set.Seed();
  const std::vector<std::string> canaries = {"collPURGEd1", "idPURGEd2", "pkPURGEd3"};
  auto c = set.Client(1);
  REQUIRE(c->CreateContainer("db", canaries[0], "/tenant").ok());
  for (int i = 0; i < 40; ++i) {
    const std::string doc = R"({"id":")" + canaries[1] + std::to_string(i) + R"(","tenant":")" + canaries[2] + R"("})";
    REQUIRE(c->UpsertItem("db", canaries[0], doc).ok());
  }
  const int leader = set.Leader();
  const int away = leader == 4 ? 3 : 4;
  const int via = leader == 1 ? 2 : 1;
  // Everything is on `away`'s disk (its log and store) before it stops.
  REQUIRE(Eventually([&] {
    auto s = set.Client(away)->GetStatus();
    auto l = set.Client(leader)->GetStatus();
    return s.ok() && l.ok() && s->applied_index >= l->commit_index;
  }));
  REQUIRE(set.cluster->StopNode(away).ok());

  const std::string rid = PurgeThroughElections(set, via, "db", canaries[0]);
  // The leader cut its log through the purge: `away` can only catch up by
  // snapshot, and must find out from it that its files hold purged keys.
  REQUIRE(set.cluster->StartNode(away).ok());
  CHECK(Eventually(
      [&] {
        auto ks = set.Client(away)->GetKeyStatus();
        return ks.ok() && ks->pending_shreds.empty() && ks->store_keys.size() == 1 &&
               ks->store_keys.front().version > 1;
      },
      std::chrono::seconds(60)));
  REQUIRE(set.cluster->StopNode(away).ok());
  const std::string log = set.Log(away);
  CHECK(log.find("event=snapshot_installed") != std::string::npos);
  CHECK(log.find("event=shred_done") != std::string::npos);
  auto master = crypto::LoadMasterKey("file:" + set.cluster->options().dir + "/master.key");
  REQUIRE(master.ok());
  const std::filesystem::path store =
      std::filesystem::path(set.cluster->options().dir) / ("node-" + std::to_string(away)) / "data" / "store";
  int files = 0;
  for (const auto& [name, f] : bulwark::testing::DecryptStoreFiles(store, *master)) {
    INFO(name << " " << f.error);
    CHECK(f.error.empty());
    ++files;
    for (const auto& canary : canaries) CHECK(f.plain.find(canary) == std::string::npos);
    CHECK(f.plain.find("k/" + rid) == std::string::npos);
  }
  CHECK(files >= 4);
}

TEST_CASE("Replica set: a firewall change reaches every node within seconds", "[replica][firewall]") {
  TestSet set;
  set.Seed();
  auto from = [&](int node, const std::string& ip) {
    client::ClientOptions o = set.cluster->node_client_options(node);
    o.source_ip = ip;
    o.max_retries = 0;
    auto c = client::Client::Connect(o);
    REQUIRE(c.ok());
    return std::move(c).value();
  };
  REQUIRE(from(2, "127.0.0.8")->FirewallAllow("127.0.0.8/32").ok());  // sent to a follower: forwarded
  for (int n = 1; n <= 4; ++n) {
    INFO("node " << n);
    CHECK(
        Eventually([&] { return from(n, "127.0.0.9")->ReadDatabase("db").status().code() == Code::kPermissionDenied; },
                   std::chrono::seconds(5)));
    CHECK(from(n, "127.0.0.8")->ReadDatabase("db").ok());
  }
  REQUIRE(from(3, "127.0.0.8")->FirewallDeny("127.0.0.8").ok());
  for (int n = 1; n <= 4; ++n) {
    INFO("node " << n);
    CHECK(Eventually([&] { return from(n, "127.0.0.9")->ReadDatabase("db").ok(); }, std::chrono::seconds(5)));
  }
}
