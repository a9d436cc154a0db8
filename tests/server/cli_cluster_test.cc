// The local replica set from the command line, and client failover. These
// tests run the real `bulwark` binary, which starts four real bulwarkd
// processes on their own loopback block (127.0.R.101-104) in a temporary
// directory. They prove that `cluster up` lays out and starts the set and
// writes a profile listing every node, that `status --json` sees one leader,
// that `leader transfer` moves it, that `cluster down` from another process
// stops every node cleanly (the foreground `cluster up` exits 0 and no pid
// file is left), that mismatched layouts and unsupported flags are refused
// before anything starts, and that a client given every endpoint keeps
// reading and writing when the node it started on is killed.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "chaos/local_cluster.h"
#include "client/client.h"
#include "tests/server/run_command.h"
#include "tests/test_util.h"

extern char** environ;

using namespace bulwark;
using bulwark::testing::CommandResult;
using bulwark::testing::FreePort;
using bulwark::testing::RunCommand;
using bulwark::testing::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A block 127.0.R.101-104 that neither node_test (127.0.1.x) nor
// replica_set_test (127.0.R.1-4) uses.
std::string NextBlockIp() {
  static int n = 0;
  return "127.0." + std::to_string(10 + (getpid() * 11 + n++) % 240) + ".101";
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Polls `fn` until it returns true or `timeout` passes.
template <typename Fn>
bool Eventually(Fn&& fn, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fn()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return fn();
}

// `bulwark ... cluster up ...` running in the background, its output in a
// file. Sent SIGTERM (so it stops its nodes cleanly) if the test ends while
// it still runs.
class BackgroundCommand {
 public:
  BackgroundCommand(std::vector<std::string> args, const fs::path& output) : output_(output) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int err = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(err == 0);
  }
  ~BackgroundCommand() {
    if (pid_ > 0) {
      // SIGTERM: `cluster up` stops its nodes cleanly, then exits.
      ::kill(pid_, SIGTERM);
      (void)Wait(std::chrono::seconds(60));
      if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
      }
    }
  }
  // The exit code, or nullopt if it still runs after `timeout`.
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    std::optional<int> code;
    Eventually(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
          pid_ = -1;
          code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
          return true;
        },
        timeout);
    return code;
  }
  bool running() {
    if (pid_ <= 0) return false;
    return !Wait(std::chrono::milliseconds(0)).has_value();
  }
  std::string Output() const { return ReadFile(output_); }

 private:
  fs::path output_;
  pid_t pid_ = -1;
};

json StatusJson(const std::string& cli) {
  auto r = RunCommand(cli + "status --json");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const json j = json::parse(r.output, nullptr, false);
  REQUIRE(j.is_array());
  return j;
}

// The replica id every reachable node names as leader, or 0 if they differ
// or one is unreachable.
uint64_t AgreedLeader(const json& nodes) {
  uint64_t leader = 0;
  for (const auto& n : nodes) {
    if (!n["reachable"].get<bool>() || n["leader_id"].get<uint64_t>() == 0) return 0;
    if (leader != 0 && n["leader_id"].get<uint64_t>() != leader) return 0;
    leader = n["leader_id"].get<uint64_t>();
  }
  return leader;
}

}  // namespace

TEST_CASE("CLI: cluster up runs four nodes, status, put/get, leader transfer, cluster down",
          "[server][integration][cli][cluster]") {
  TempDir dir;
  const fs::path profile = dir.path() / ".bulwark";
  const std::string ip = NextBlockIp();
  int port = 0;
  do {
    port = FreePort(ip);
  } while (port == 0 || port > 65000);
  const std::string bin = std::string(BULWARK_BIN_DIR) + "/bulwark";
  const std::string cli = bin + " --profile-dir " + profile.string() + " ";

  BackgroundCommand up({bin, "--profile-dir", profile.string(), "cluster", "up", "--nodes", "4", "--ip", ip, "--port",
                        std::to_string(port)},
                       dir.path() / "cluster-up.out");
  // The profile is written once every node is ready and a leader is elected;
  // the "Press Ctrl-C" line is the last `cluster up` prints on the way up.
  const bool ready = Eventually(
      [&] {
        if (!up.running()) return true;  // reported below
        const json p = json::parse(ReadFile(profile / "client.json"), nullptr, false);
        return p.is_object() && p.contains("endpoints") && p["endpoints"].size() == 4 &&
               up.Output().find("Press Ctrl-C") != std::string::npos;
      },
      std::chrono::seconds(120));
  INFO(up.Output());
  REQUIRE(ready);
  REQUIRE(up.running());
  const json p = json::parse(ReadFile(profile / "client.json"));
  CHECK(p["endpoint"] == ip + ":" + std::to_string(port));
  CHECK(p["endpoints"][3] == ip.substr(0, ip.rfind('.')) + ".104:" + std::to_string(port));
  CHECK(up.Output().find("leader node-") != std::string::npos);
  for (int i = 1; i <= 4; ++i) CHECK(fs::exists(profile / ("node-" + std::to_string(i)) / chaos::kPidFileName));

  // Four nodes, all reachable, exactly one leader, and all agree on it.
  json nodes = StatusJson(cli);
  REQUIRE(nodes.size() == 4);
  int leaders = 0;
  for (const auto& n : nodes) {
    CHECK(n["reachable"] == true);
    for (const char* k :
         {"address", "role", "replica_id", "term", "leader_id", "commit_index", "applied_index", "lag"}) {
      CHECK(n.contains(k));
    }
    if (n["role"] == "leader") ++leaders;
  }
  CHECK(leaders == 1);
  const uint64_t leader = AgreedLeader(nodes);
  REQUIRE(leader != 0);
  auto table = RunCommand(cli + "status");
  CHECK(table.exit_code == 0);
  CHECK(table.output.find("LAG") != std::string::npos);
  CHECK(table.output.find("TLS on") != std::string::npos);

  // An item through the CLI (the profile's endpoints: node 1 first).
  CHECK(RunCommand(cli + "db create shop").exit_code == 0);
  CHECK(RunCommand(cli + "container create shop orders --partition-key /tenant").exit_code == 0);
  auto put = RunCommand(cli + "item put shop orders --json '{\"id\":\"o1\",\"tenant\":\"acme\",\"total\":42}'");
  INFO(put.output);
  REQUIRE(put.exit_code == 0);
  auto get = RunCommand(cli + "item get shop orders o1 --pk acme");
  INFO(get.output);
  REQUIRE(get.exit_code == 0);
  CHECK(json::parse(get.output)["total"] == 42);

  // keys status lists the container's data-key versions, as a table and as JSON.
  REQUIRE(RunCommand(cli + "keys rotate-container shop orders").exit_code == 0);
  auto keys_table = RunCommand(cli + "keys status");
  INFO(keys_table.output);
  REQUIRE(keys_table.exit_code == 0);
  CHECK(keys_table.output.find("shop/orders") != std::string::npos);
  CHECK(keys_table.output.find("DATA KEY") != std::string::npos);
  // The node asked may be a follower that applies the rotation a little later.
  bool listed = false;
  std::string keys_json;
  for (int attempt = 0; attempt < 50 && !listed; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto r = RunCommand(cli + "keys status --json");
    keys_json = r.output;
    REQUIRE(r.exit_code == 0);
    const json status = json::parse(keys_json);
    for (const auto& c : status["dataKeys"]) {
      if (c["database"] == "shop" && c["container"] == "orders") listed = c["currentVersion"] == 2;
    }
  }
  INFO(keys_json);
  CHECK(listed);

  // container purge: every node reports its files shredded; the container
  // is gone, and a second purge has nothing to do.
  REQUIRE(RunCommand(cli + "container create shop scratch --partition-key /tenant").exit_code == 0);
  REQUIRE(RunCommand(cli + "item put shop scratch --json '{\"id\":\"s1\",\"tenant\":\"acme\"}'").exit_code == 0);
  auto purge = RunCommand(cli + "container purge shop scratch");
  INFO(purge.output);
  CHECK(purge.exit_code == 0);
  size_t shredded = 0;
  for (size_t at = purge.output.find(": shredded"); at != std::string::npos;
       at = purge.output.find(": shredded", at + 1)) {
    ++shredded;
  }
  CHECK(shredded == 4);
  CHECK(purge.output.find("purge complete") != std::string::npos);
  CHECK(RunCommand(cli + "item get shop scratch s1 --pk acme").exit_code != 0);
  CHECK(RunCommand(cli + "container purge shop scratch").exit_code != 0);

  // The firewall: open (and status says so), then one range, then open again.
  CHECK(RunCommand(cli + "firewall list").output.find("OPEN") != std::string::npos);
  CHECK(RunCommand(cli + "status").output.find("firewall is OPEN") != std::string::npos);
  auto allow = RunCommand(cli + "firewall allow 127.0.0.1");
  INFO(allow.output);
  CHECK(allow.exit_code == 0);
  CHECK(allow.output.find("127.0.0.1/32") != std::string::npos);
  CHECK(RunCommand(cli + "status").output.find("1 allowed range") != std::string::npos);
  CHECK(RunCommand(cli + "firewall allow 10.0.0.1/8").exit_code != 0);  // ambiguous: refused
  CHECK(RunCommand(cli + "firewall deny 127.0.0.1").output.find("OPEN") != std::string::npos);

  // Identity and access from the command line: the four keys, a user, a
  // partition-scoped Read permission and its token, a refused write with it,
  // and regenerating the profile's own key (the profile follows).
  CHECK(Eventually(
      [&] {
        auto keys = RunCommand(cli + "keys list");
        return keys.exit_code == 0 && keys.output.find("secondary-readonly") != std::string::npos &&
               keys.output.find("read-only") != std::string::npos;
      },
      std::chrono::seconds(15)));
  REQUIRE(RunCommand(cli + "user create shop alice").exit_code == 0);
  auto perm = RunCommand(cli +
                         "permission create shop alice acme --mode Read --resource dbs/shop/colls/orders "
                         "--partition-key '\"acme\"'");
  INFO(perm.output);
  REQUIRE(perm.exit_code == 0);
  auto token = RunCommand(cli + "permission get shop alice acme --ttl 600");
  INFO(token.output);
  REQUIRE(token.exit_code == 0);
  const std::string tok = token.output.substr(0, token.output.find('\n'));
  REQUIRE(tok.rfind("bwrt1.", 0) == 0);
  const std::string as_token = cli + "--resource-token " + tok + " ";
  auto token_get = RunCommand(as_token + "item get shop orders o1 --pk acme");
  INFO(token_get.output);
  CHECK(token_get.exit_code == 0);
  auto token_put = RunCommand(as_token + "item put shop orders --json '{\"id\":\"o9\",\"tenant\":\"acme\"}'");
  CHECK(token_put.exit_code == 1);
  CHECK(token_put.output.find("PermissionDenied") != std::string::npos);
  CHECK(token_put.output.find(tok) == std::string::npos);
  CHECK(RunCommand(as_token + "db create other").exit_code == 1);
  const std::string old_key = json::parse(ReadFile(profile / "client.json"))["key"];
  auto regen = RunCommand(cli + "keys regenerate primary");
  INFO(regen.output);
  CHECK(regen.exit_code == 0);
  CHECK(regen.output.find("now holds the new key") != std::string::npos);
  CHECK(regen.output.find(old_key) == std::string::npos);
  CHECK(json::parse(ReadFile(profile / "client.json"))["key"] != old_key);
  CHECK(RunCommand(cli + "item get shop orders o1 --pk acme").exit_code == 0);       // the CLI goes on
  CHECK(RunCommand(as_token + "item get shop orders o1 --pk acme").exit_code == 1);  // the token died with its key
  CHECK(RunCommand(cli + "--key " + old_key + " item get shop orders o1 --pk acme").exit_code == 1);

  // Leadership moves to a follower, and every node comes to agree.
  const uint64_t target = leader == 4 ? 3 : 4;
  auto transfer = RunCommand(cli + "leader transfer --to " + std::to_string(target));
  INFO(transfer.output);
  CHECK(transfer.exit_code == 0);
  CHECK(transfer.output.find("node " + std::to_string(target) + " is now the leader") != std::string::npos);
  CHECK(Eventually([&] { return AgreedLeader(StatusJson(cli)) == target; }, std::chrono::seconds(20)));
  CHECK(RunCommand(cli + "leader transfer --to 0").exit_code == 2);

  // `cluster down` from another process: every node stops cleanly, and the
  // foreground `cluster up` sees them go and exits 0.
  auto down = RunCommand(cli + "cluster down");
  INFO(down.output);
  CHECK(down.exit_code == 0);
  for (int i = 1; i <= 4; ++i) CHECK(down.output.find("node-" + std::to_string(i) + " (pid") != std::string::npos);
  CHECK(down.output.find("killed") == std::string::npos);
  const std::optional<int> code = up.Wait(std::chrono::seconds(30));
  INFO(up.Output());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(up.Output().find("all nodes stopped cleanly") != std::string::npos);
  for (int i = 1; i <= 4; ++i) CHECK(!fs::exists(profile / ("node-" + std::to_string(i)) / chaos::kPidFileName));
  CHECK(RunCommand(cli + "cluster down").output.find("nothing to stop") != std::string::npos);

  // Nothing answers now: status says so for every node and exits 1.
  auto after = RunCommand(cli + "status --json");
  CHECK(after.exit_code == 1);
  CHECK(after.output.find("\"reachable\": false") != std::string::npos);
}

TEST_CASE("CLI: cluster up refuses other regions and a one-node layout before starting anything",
          "[server][integration][cli][cluster]") {
  TempDir dir;
  const fs::path profile = dir.path() / ".bulwark";
  const std::string cli = std::string(BULWARK_BIN_DIR) + "/bulwark --profile-dir " + profile.string() + " ";
  const std::string ip = NextBlockIp();

  // Regions always sit on 127.0.R.N: an --ip of its own is refused.
  auto regions = RunCommand(cli + "cluster up --regions 2 --ip " + ip);
  CHECK(regions.exit_code == 2);
  CHECK(regions.output.find("--ip does not apply") != std::string::npos);
  CHECK(!fs::exists(profile));

  // The layout an older one-node `cluster up` left: node-1/data, no node-2.
  fs::create_directories(profile / "node-1" / "data");
  auto old_layout = RunCommand(cli + "cluster up --nodes 4 --ip " + ip);
  INFO(old_layout.output);
  CHECK(old_layout.exit_code == 1);
  CHECK(old_layout.output.find("one-node cluster") != std::string::npos);
  CHECK(old_layout.output.find("--nodes 1") != std::string::npos);
  CHECK(!fs::exists(profile / "node-2"));
}

TEST_CASE("Client failover: with every endpoint, reads and item writes survive killing the first node",
          "[server][integration][cli][failover]") {
  TempDir dir;
  chaos::ClusterOptions o;
  o.dir = dir.sub("cluster");
  o.bin_dir = BULWARK_BIN_DIR;
  o.ip = NextBlockIp();
  o.nodes = 4;
  o.metrics_port = 0;
  do {
    o.port = FreePort(o.ip);
  } while (o.port == 0 || o.port > 65000);
  auto prepared = chaos::LocalCluster::Prepare(o);
  REQUIRE(prepared.ok());
  auto& cluster = **prepared;
  const Status started = cluster.Start();
  INFO(started.ToString());
  REQUIRE(started.ok());

  // The leader is the first endpoint, the hardest case: killing it also
  // forces an election before the next write can commit.
  auto lead = cluster.WaitForLeader();
  REQUIRE(lead.ok());
  const int first = *lead;
  client::ClientOptions options = cluster.node_client_options(first);
  for (int i = 1; i <= 4; ++i) options.endpoints.push_back(cluster.node_endpoint(i));
  auto connected = client::Client::Connect(options);
  REQUIRE(connected.ok());
  auto& c = **connected;
  REQUIRE(c.CreateDatabase("db").ok());
  REQUIRE(c.CreateContainer("db", "c", "/tenant").ok());
  REQUIRE(c.UpsertItem("db", "c", R"({"id":"before","tenant":"t"})").ok());
  CHECK(c.CurrentEndpoint() == cluster.node_endpoint(first));

  cluster.KillNode(first);
  auto new_lead = cluster.WaitForLeader();
  INFO(new_lead.status().ToString());
  REQUIRE(new_lead.ok());

  // The first call finds node `first` refusing connections and moves on.
  auto before = c.ReadItem("db", "c", "\"t\"", "before");
  INFO(before.status().ToString());
  REQUIRE(before.ok());
  CHECK(c.CurrentEndpoint() != cluster.node_endpoint(first));
  for (int i = 0; i < 10; ++i) {
    const std::string id = "after-" + std::to_string(i);
    auto w = c.UpsertItem("db", "c", R"({"id":")" + id + R"(","tenant":"t"})");
    INFO(w.status().ToString());
    REQUIRE(w.ok());
    auto r = c.ReadItem("db", "c", "\"t\"", id);
    INFO(r.status().ToString());
    REQUIRE(r.ok());
  }
  client::ListOptions list;
  list.max_items = 100;
  auto page = c.ListItems("db", "c", list);
  REQUIRE(page.ok());
  CHECK(page->items.size() == 11);
  REQUIRE(c.DeleteItem("db", "c", "\"t\"", "before").ok());

  // A fresh client whose very first call goes to the dead node fails over too.
  auto fresh = client::Client::Connect(options);
  REQUIRE(fresh.ok());
  auto w = (*fresh)->CreateItem("db", "c", R"({"id":"fresh","tenant":"t"})");
  INFO(w.status().ToString());
  CHECK(w.ok());

  // Without the other endpoints the same calls fail: the failover is what
  // made them work.
  client::ClientOptions alone = cluster.node_client_options(first);
  alone.max_retries = 1;
  auto single = client::Client::Connect(alone);
  REQUIRE(single.ok());
  CHECK((*single)->ReadItem("db", "c", "\"t\"", "fresh").status().code() == Code::kUnavailable);

  const auto stopped = cluster.Stop();
  INFO(stopped.status().ToString());
  CHECK(stopped.ok());
}
