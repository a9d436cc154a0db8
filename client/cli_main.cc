// bulwark: the command-line client, and `bulwark cluster up/down`.
//
// Connection: .bulwark/client.json, then BULWARK_ENDPOINT/BULWARK_CA/BULWARK_KEY,
// then --endpoint/--ca/--key. The profile lists every node of the replica
// set, so the client fails over between them; an endpoint from the
// environment or a flag means that one node only. Items print as JSON; lists
// print as tables unless --json is given. Exit codes: 0 success, 1 the
// operation failed, 2 bad usage or configuration.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <map>
#include <chrono>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "chaos/local_cluster.h"
#include "client/client.h"
#include "client/profile.h"

namespace fs = std::filesystem;
using namespace bulwark;
using namespace bulwark::client;
using nlohmann::json;

namespace {

struct Globals {
  std::string profile_dir = kDefaultProfileDir;
  std::string endpoint, ca, key;
  bool insecure = false;
  bool json_output = false;
};

int Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  switch (s.code()) {
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
      std::cerr << "hint: is the cluster running and reachable? Start one with: bulwark cluster up\n";
      break;
    case Code::kUnauthenticated:
      std::cerr << "hint: check the account key (--key, BULWARK_KEY or .bulwark/client.json) and this machine's "
                   "clock\n";
      break;
    case Code::kNotFound:
      std::cerr << "hint: list what exists with: bulwark db list / bulwark container list DB\n";
      break;
    default: break;
  }
  return 1;
}

// The profile, then the environment (in LoadProfile), then the flags.
Result<ClientOptions> Options(const Globals& g) {
  BULWARK_ASSIGN_OR_RETURN(ClientOptions options, LoadProfile(g.profile_dir));
  if (!g.endpoint.empty()) {
    // One node by name: the profile's others could belong to another cluster.
    options.endpoint = g.endpoint;
    options.endpoints.clear();
  }
  if (!g.ca.empty()) options.ca_file = g.ca;
  if (!g.key.empty()) options.key = g.key;
  if (g.insecure) options.insecure = true;
  if ((options.endpoint.empty() && options.endpoints.empty()) || options.key.empty()) {
    return Status::InvalidArgument(
        "no connection details: run `bulwark cluster up` here, or give --endpoint, --ca and --key");
  }
  return options;
}

// Every node the options name, in profile order (node 1 first).
std::vector<std::string> NodeAddresses(const ClientOptions& options) {
  std::vector<std::string> out = options.endpoints;
  if (!options.endpoint.empty() && std::find(out.begin(), out.end(), options.endpoint) == out.end()) {
    out.insert(out.begin(), options.endpoint);
  }
  return out;
}

// Options for talking to exactly one node, with no failover to the others.
ClientOptions OneNode(ClientOptions options, const std::string& address) {
  options.endpoint = address;
  options.endpoints.clear();
  return options;
}

Result<std::unique_ptr<Client>> Open(const Globals& g) {
  BULWARK_ASSIGN_OR_RETURN(ClientOptions options, Options(g));
  return Client::Connect(options);
}

// Pads each column to its widest cell.
void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) {
      std::cout << cells[i] << (i + 1 < cells.size() ? std::string(width[i] - cells[i].size() + 2, ' ') : "");
    }
    std::cout << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

std::string Clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

Result<std::string> ReadJsonArg(const std::string& arg) {
  if (arg != "-") return arg;
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (text.empty()) return Status::InvalidArgument("--json - read nothing from standard input");
  return text;
}

std::optional<ConsistencyLevel> LevelArg(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return ParseConsistency(s);
}

// Runs `fn(client)`; maps failures to exit codes.
template <typename Fn>
int WithClient(const Globals& g, Fn&& fn) {
  auto client = Open(g);
  if (!client.ok()) {
    std::cerr << "error: " << client.status().message() << "\n";
    return 2;
  }
  Status s = fn(**client);
  return s.ok() ? 0 : Fail(s);
}

fs::path SelfDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

struct ClusterUpArgs {
  std::string ip = "127.0.1.1";
  int port = 7100;
  int regions = 1;
  int nodes = 4;
};

void PrintNodes(const Globals& g, const chaos::LocalCluster& cluster) {
  for (int i = 1; i <= cluster.size(); ++i) {
    const std::string metrics =
        cluster.options().metrics_port == 0
            ? std::string("off")
            : "http://" + cluster.node_ip(i) + ":" + std::to_string(cluster.options().metrics_port) + "/metrics";
    std::cout << "  node-" << i << ": client " << cluster.node_endpoint(i) << ", peer " << cluster.node_peer_endpoint(i)
              << ", metrics " << metrics << ", data " << g.profile_dir << "/node-" << i << "/data, log "
              << cluster.node_log_path(i) << "\n";
  }
}

// Waits for Ctrl-C or SIGTERM (returns true), or for every node to end on its
// own (returns false, e.g. after `bulwark cluster down`). Nodes that end are
// reported as they go; `worst_exit` keeps the worst exit code seen. A node
// that crashes does not stop the others: the replica set keeps serving while
// a quorum remains, as it would in production.
bool WaitForStop(const sigset_t& signals, chaos::LocalCluster& cluster, int& worst_exit) {
  while (true) {
    timespec tick{0, 200'000'000};
    if (sigtimedwait(&signals, nullptr, &tick) > 0) return true;
    for (const auto& exit : cluster.ReapExited()) {
      worst_exit = std::max(worst_exit, exit.code);
      if (exit.code == 0) {
        std::cout << "node-" << exit.node << " stopped (exit code 0)\n" << std::flush;
      } else {
        std::cerr << "bulwarkd node-" << exit.node << " stopped unexpectedly (exit code " << exit.code << "); see "
                  << cluster.node_log_path(exit.node) << "\n";
      }
    }
    if (!cluster.running()) return false;
  }
}

int ClusterUp(const Globals& g, const ClusterUpArgs& args) {
  if (args.regions != 1) {
    std::cerr << "error: --regions " << args.regions
              << ": geo-replication (more than one region) is not built yet; only --regions 1 is supported\n";
    return 2;
  }
  // Ctrl-C and SIGTERM are handled by waiting for them, not by a handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  chaos::ClusterOptions options;
  options.dir = g.profile_dir;
  options.bin_dir = SelfDir().string();
  options.ip = args.ip;
  options.port = args.port;
  options.metrics_port = args.port + 80;
  options.nodes = args.nodes;
  auto cluster = chaos::LocalCluster::Prepare(options);
  if (!cluster.ok()) return Fail(cluster.status());
  chaos::LocalCluster& c = **cluster;
  std::cout << "starting " << c.size() << (c.size() == 1 ? " bulwarkd node" : " bulwarkd nodes")
            << " (TLS; keys, certificates and data in " << g.profile_dir << "):\n";
  PrintNodes(g, c);
  std::cout << std::flush;
  if (Status s = c.Start(); !s.ok()) {
    // A clean stop of whatever did start, rather than the destructor's kill.
    if (c.running()) (void)c.Stop();
    return Fail(s);
  }
  const int leader = c.size() > 1 ? c.Leader() : 1;
  if (Status s = WriteProfile(g.profile_dir, c.failover_client_options()); !s.ok()) return Fail(s);
  std::cout << "Bulwark is up: " << c.size() << (c.size() == 1 ? " node" : " nodes") << ", leader "
            << (leader == 0 ? std::string("(election running)")
                            : "node-" + std::to_string(leader) + " at " + c.node_endpoint(leader))
            << "\n"
            << "The client profile is " << g.profile_dir << "/client.json; from this directory try:\n"
            << "  build/bin/bulwark status\n"
            << "  build/bin/bulwark db create shop\n"
            << "  build/bin/bulwark container create shop orders --partition-key /tenant\n"
            << "  build/bin/bulwark item put shop orders --json '{\"id\":\"o1\",\"tenant\":\"acme\",\"total\":42}'\n"
            << "  build/bin/bulwark item get shop orders o1 --pk acme\n"
            << "Press Ctrl-C (or run `bulwark cluster down` in another shell) to stop the cluster.\n"
            << std::flush;
  int worst_exit = 0;
  if (!WaitForStop(signals, c, worst_exit)) {
    if (worst_exit == 0) {
      std::cout << "all nodes stopped cleanly (bulwark cluster down); data kept for the next `cluster up`\n";
      return 0;
    }
    std::cerr << "all nodes have stopped, some unexpectedly (see above)\n";
    return 1;
  }
  std::cout << "\nstopping...\n" << std::flush;
  if (c.running()) {
    auto code = c.Stop();
    if (!code.ok()) return Fail(code.status());
    worst_exit = std::max(worst_exit, *code);
  }
  std::cout << "stopped (worst bulwarkd exit code " << worst_exit << "); data kept for the next `cluster up`\n";
  return worst_exit == 0 ? 0 : 1;
}

// Stops, from another shell, the nodes a `cluster up` started here.
int ClusterDown(const Globals& g, int timeout_s) {
  using Outcome = chaos::LocalCluster::NodeStopReport::Outcome;
  const auto reports = chaos::LocalCluster::StopFromPidFiles(g.profile_dir, std::chrono::seconds(timeout_s));
  if (reports.empty()) {
    std::cout << "no running nodes found in " << g.profile_dir << " (no pid files); nothing to stop\n";
    return 0;
  }
  bool killed = false;
  for (const auto& r : reports) {
    std::cout << "node-" << r.node << " (pid " << r.pid << "): ";
    switch (r.outcome) {
      case Outcome::kStopped:
        std::cout << "stopped\n";
        break;
      case Outcome::kKilled:
        killed = true;
        std::cout << "killed\n";
        std::cerr << "warning: node-" << r.node << " ignored SIGTERM for " << timeout_s
                  << " s and was killed (SIGKILL); it recovers from its log on the next start\n";
        break;
      case Outcome::kNotRunning:
        std::cout << "was not running (stale pid file removed)\n";
        break;
    }
  }
  return killed ? 1 : 0;
}

// One node's row in `bulwark status`.
struct NodeReport {
  std::string address;
  Status error;  // why the node could not be asked; Ok if it answered
  NodeStatus status;
};

// Asks every node for its status, all at once, each with a short deadline
// and no retry or failover, so a down node costs one refused connection and
// a hung one at most the deadline.
std::vector<NodeReport> QueryNodes(const ClientOptions& options) {
  constexpr std::chrono::seconds kStatusDeadline{3};
  const std::vector<std::string> addresses = NodeAddresses(options);
  std::vector<NodeReport> reports(addresses.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < addresses.size(); ++i) {
    threads.emplace_back([&, i] {
      NodeReport& r = reports[i];
      r.address = addresses[i];
      ClientOptions one = OneNode(options, addresses[i]);
      one.deadline = kStatusDeadline;
      one.max_retries = 0;
      auto client = Client::Connect(one);
      if (!client.ok()) {
        r.error = client.status();
        return;
      }
      auto status = (*client)->GetStatus();
      if (status.ok()) {
        r.status = std::move(status).value();
      } else {
        r.error = status.status();
      }
    });
  }
  for (auto& t : threads) t.join();
  return reports;
}

// The lag of each replica id as the leader sees it (its member table); empty
// if no reachable node is the leader. The highest term wins if two nodes
// claim to lead (an old leader not yet told of the new term).
std::map<uint64_t, uint64_t> LagByReplica(const std::vector<NodeReport>& reports) {
  const NodeStatus* leader = nullptr;
  for (const auto& r : reports) {
    if (r.error.ok() && r.status.role == "leader" && (leader == nullptr || r.status.term > leader->term)) {
      leader = &r.status;
    }
  }
  std::map<uint64_t, uint64_t> lag;
  if (leader == nullptr) return lag;
  for (const auto& m : leader->members) lag[m.id] = m.lag;
  return lag;
}

json StatusJson(const std::vector<NodeReport>& reports) {
  const auto lag = LagByReplica(reports);
  json out = json::array();
  for (const auto& r : reports) {
    json node = {{"address", r.address}, {"reachable", r.error.ok()}};
    if (!r.error.ok()) {
      for (const char* k : {"node_id", "role", "replica_id", "term", "leader_id", "commit_index", "applied_index",
                            "lag", "data_key_versions", "store_key_version"}) {
        node[k] = nullptr;
      }
      node["error"] = r.error.ToString();
    } else {
      const NodeStatus& s = r.status;
      auto it = lag.find(s.replica_id);
      node.update({{"node_id", s.node_id},
                   {"role", s.role},
                   {"replica_id", s.replica_id},
                   {"term", s.term},
                   {"leader_id", s.leader_id},
                   {"commit_index", s.commit_index},
                   {"applied_index", s.applied_index},
                   {"lag", it == lag.end() ? json(nullptr) : json(it->second)},
                   {"data_key_versions", s.data_key_versions},
                   {"store_key_version", s.store_key_version},
                   {"replica_error", s.replica_error},
                   {"version", s.version},
                   {"region", s.region}});
    }
    out.push_back(std::move(node));
  }
  return out;
}

void PrintStatusTable(const std::vector<NodeReport>& reports) {
  const auto lag = LagByReplica(reports);
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : reports) {
    if (!r.error.ok()) {
      rows.push_back({"-", r.address, "unreachable", "-", "-", "-", "-", "-", "-", "-"});
      continue;
    }
    const NodeStatus& s = r.status;
    auto it = lag.find(s.replica_id);
    rows.push_back({std::to_string(s.replica_id), r.address, s.role, std::to_string(s.term),
                    s.leader_id == 0 ? "none" : std::to_string(s.leader_id), std::to_string(s.commit_index),
                    std::to_string(s.applied_index), it == lag.end() ? "?" : std::to_string(it->second),
                    std::to_string(s.data_key_versions), "v" + std::to_string(s.store_key_version)});
  }
  PrintTable({"NODE", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "DATA KEYS", "STORE KEY"}, rows);
  const NodeStatus* first = nullptr;
  for (const auto& r : reports) {
    if (!r.error.ok()) {
      std::cout << r.address << " is unreachable: " << r.error.ToString() << "\n";
    } else if (!r.status.replica_error.empty()) {
      std::cout << "node " << r.status.replica_id << " replication error: " << r.status.replica_error << "\n";
    }
    if (r.error.ok() && first == nullptr) first = &r.status;
  }
  if (first != nullptr) {
    std::cout << "version " << first->version << ", region " << first->region << ", default consistency "
              << ConsistencyName(first->default_consistency) << ", TLS " << (first->tls ? "on" : "OFF (--insecure)")
              << ", master key " << first->master_key_id << "\n";
  }
  if (lag.empty()) std::cout << "no reachable node is the leader, so lag is unknown (?)\n";
}

int ShowStatus(const Globals& g) {
  auto options = Options(g);
  if (!options.ok()) {
    std::cerr << "error: " << options.status().message() << "\n";
    return 2;
  }
  const auto reports = QueryNodes(*options);
  if (g.json_output) {
    std::cout << StatusJson(reports).dump(2) << "\n";
  } else {
    PrintStatusTable(reports);
  }
  for (const auto& r : reports) {
    if (r.error.ok()) return 0;
  }
  // No node answered: the same hints as any other failed call.
  return Fail(reports.front().error);
}

// Asks the leader first: a follower asked to move the leadership to a third
// node does not reliably pass the request on (it then fails after the
// server's wait, UNAVAILABLE). Then the other nodes of the profile in turn,
// in case the leader changed meanwhile; only an unavailable node (down,
// draining, or the transfer did not land) sends it on to the next.
int TransferLeader(const Globals& g, uint64_t to) {
  auto options = Options(g);
  if (!options.ok()) {
    std::cerr << "error: " << options.status().message() << "\n";
    return 2;
  }
  std::vector<std::string> order;
  const auto reports = QueryNodes(*options);
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& r : reports) {
      const bool leads = r.error.ok() && r.status.role == "leader";
      if ((pass == 0) == leads) order.push_back(r.address);
    }
  }
  Status last = Status::Unavailable("no node to ask");
  for (const std::string& address : order) {
    ClientOptions one = OneNode(*options, address);
    one.max_retries = 0;
    auto client = Client::Connect(one);
    if (!client.ok()) return Fail(client.status());
    auto leader = (*client)->TransferLeader(to);
    if (leader.ok()) {
      std::cout << "node " << *leader << " is now the leader\n";
      return *leader == to ? 0 : 1;
    }
    last = leader.status();
    if (last.code() != Code::kUnavailable) break;
  }
  return Fail(last);
}

// Waits until node `id` has caught up with the leader (lag 0 in the
// leader's member table, read from whichever profile node leads), up to
// `timeout`.
Status WaitCaughtUp(const Globals& g, uint64_t id, std::chrono::seconds timeout) {
  BULWARK_ASSIGN_OR_RETURN(ClientOptions options, Options(g));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& r : QueryNodes(options)) {
      if (!r.error.ok() || r.status.role != "leader") continue;
      for (const auto& m : r.status.members) {
        if (m.id == id && m.match_index > 0 && m.lag == 0) return Status::Ok();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::DeadlineExceeded("node " + std::to_string(id) + " did not catch up with the leader in time");
}

std::string Voters(const std::vector<uint64_t>& voters) {
  std::string out;
  for (uint64_t v : voters) out += (out.empty() ? "" : ", ") + std::to_string(v);
  return out;
}

void AddNodeCommands(CLI::App& app, Globals& g, int& rc) {
  auto* node = app.add_subcommand("node", "change the replica set's membership, one node at a time")
                   ->require_subcommand(1);
  static uint64_t id = 0, old_id = 0;
  static std::string peer;
  auto* add = node->add_subcommand("add", "add a node (start it first with bulwarkd --join)")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto voters, c.AddNode(id, peer));
      std::cout << "node " << id << " added; voters: " << Voters(voters) << "\n";
      return Status::Ok();
    });
  });
  add->add_option("ID", id, "the new node's replica id")->required()->check(CLI::PositiveNumber);
  add->add_option("PEER_ADDRESS", peer, "the new node's peer address, ip:port")->required();
  auto* remove = node->add_subcommand("remove", "remove a node from the replica set")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto voters, c.RemoveNode(id));
      std::cout << "node " << id << " removed; voters: " << Voters(voters) << "\n";
      return Status::Ok();
    });
  });
  remove->add_option("ID", id, "the node's replica id")->required()->check(CLI::PositiveNumber);
  auto* replace = node->add_subcommand("replace", "add NEW, wait until it has caught up, then remove OLD")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_RETURN_IF_ERROR(c.AddNode(id, peer).status());
      std::cout << "node " << id << " added; waiting for it to catch up...\n" << std::flush;
      BULWARK_RETURN_IF_ERROR(WaitCaughtUp(g, id, std::chrono::seconds(120)));
      BULWARK_ASSIGN_OR_RETURN(auto voters, c.RemoveNode(old_id));
      std::cout << "node " << old_id << " replaced by node " << id << "; voters: " << Voters(voters) << "\n";
      return Status::Ok();
    });
  });
  replace->add_option("OLD", old_id, "the node to retire")->required()->check(CLI::PositiveNumber);
  replace->add_option("NEW", id, "the new node's replica id")->required()->check(CLI::PositiveNumber);
  replace->add_option("PEER_ADDRESS", peer, "the new node's peer address, ip:port")->required();
}

void AddDatabaseCommands(CLI::App& app, Globals& g, int& rc) {
  auto* db = app.add_subcommand("db", "databases")->require_subcommand(1);
  static std::string name;
  db->add_subcommand("create", "create a database")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto d, c.CreateDatabase(name));
      std::cout << "created database " << d.id << "\n";
      return Status::Ok();
    });
  })->add_option("NAME", name)->required();
  auto* db_list = db->add_subcommand("list", "list databases");
  db_list->add_flag("--json", g.json_output, "print JSON instead of a table");
  db_list->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto list, c.ListDatabases());
      if (g.json_output) {
        json out = json::array();
        for (const auto& d : list) out.push_back({{"id", d.id}, {"_etag", d.etag}, {"_ts", d.ts}});
        std::cout << out.dump(2) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows;
        for (const auto& d : list) rows.push_back({d.id, d.etag, std::to_string(d.ts)});
        PrintTable({"ID", "ETAG", "TS"}, rows);
      }
      return Status::Ok();
    });
  });
  db->add_subcommand("delete", "delete a database and everything in it")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_RETURN_IF_ERROR(c.DeleteDatabase(name));
      std::cout << "deleted database " << name << "\n";
      return Status::Ok();
    });
  })->add_option("NAME", name)->required();
}

void AddContainerCommands(CLI::App& app, Globals& g, int& rc) {
  auto* cmd = app.add_subcommand("container", "containers")->require_subcommand(1);
  static std::string db, name, pk_path;
  auto* create = cmd->add_subcommand("create", "create a container")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto info, c.CreateContainer(db, name, pk_path));
      std::cout << "created container " << info.database << "/" << info.id << " partitioned by "
                << info.partition_key_path << "\n";
      return Status::Ok();
    });
  });
  create->add_option("DB", db)->required();
  create->add_option("NAME", name)->required();
  create->add_option("--partition-key", pk_path, "partition-key path, e.g. /tenant")->required();
  auto* list = cmd->add_subcommand("list", "list a database's containers")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto all, c.ListContainers(db));
      if (g.json_output) {
        json out = json::array();
        for (const auto& x : all) {
          out.push_back({{"id", x.id}, {"partitionKey", x.partition_key_path}, {"_rid", x.rid}, {"_ts", x.ts}});
        }
        std::cout << out.dump(2) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows;
        for (const auto& x : all) rows.push_back({x.id, x.partition_key_path, x.rid});
        PrintTable({"ID", "PARTITION KEY", "RID"}, rows);
      }
      return Status::Ok();
    });
  });
  list->add_option("DB", db)->required();
  list->add_flag("--json", g.json_output, "print JSON instead of a table");
  auto* del = cmd->add_subcommand("delete", "delete a container and its items")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_RETURN_IF_ERROR(c.DeleteContainer(db, name));
      std::cout << "deleted container " << db << "/" << name << "\n";
      return Status::Ok();
    });
  });
  del->add_option("DB", db)->required();
  del->add_option("NAME", name)->required();
  static int purge_wait_s = 120;
  auto* purge =
      cmd->add_subcommand("purge", "destroy a container's data keys on every node: irreversible")->callback([&] {
        rc = WithClient(g, [&](Client& c) -> Status {
          BULWARK_ASSIGN_OR_RETURN(PurgeResult r, c.PurgeContainer(db, name));
          std::cout << "purged " << db << "/" << name << ": the data keys of " << r.rids.size()
                    << " container(s) are destroyed; waiting for every node to shred its files\n";
          // Each node rewrites its own files; the purge is complete when none
          // has it pending.
          BULWARK_ASSIGN_OR_RETURN(ClientOptions options, Options(g));
          const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(purge_wait_s);
          for (const std::string& address : NodeAddresses(options)) {
            auto one = Client::Connect(OneNode(options, address));
            while (true) {
              Result<KeyStatus> ks = one.ok() ? (*one)->GetKeyStatus() : Result<KeyStatus>(one.status());
              bool pending = !ks.ok();
              for (size_t i = 0; ks.ok() && i < ks->pending_shreds.size(); ++i) {
                for (const auto& rid : r.rids) pending = pending || ks->pending_shreds[i].rid == rid;
              }
              if (!pending) {
                std::cout << "  " << address << ": shredded\n";
                break;
              }
              if (std::chrono::steady_clock::now() >= deadline) {
                const std::string why = !ks.ok() ? ks.status().message() : ks->last_shred_error;
                return Status::Unavailable(address + " has not finished shredding" + (why.empty() ? "" : ": " + why) +
                                           " (it goes on; see: bulwark keys status)");
              }
              std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
          }
          std::cout << "purge complete: no node's files hold the container's keys or records\n";
          return Status::Ok();
        });
      });
  purge->add_option("DB", db)->required();
  purge->add_option("NAME", name)->required();
  purge->add_option("--wait", purge_wait_s, "seconds to wait for every node to shred its files")
      ->check(CLI::Range(0, 3600));
}

void AddItemCommands(CLI::App& app, Globals& g, int& rc) {
  auto* cmd = app.add_subcommand("item", "items")->require_subcommand(1);
  static std::string db, container, id, json_arg, pk, if_match, level;
  static uint32_t max_items = 0;
  static std::string continuation;
  for (const char* verb : {"put", "create", "replace"}) {
    const std::string v = verb;
    auto* sub = cmd->add_subcommand(v, v == "put" ? "create or replace (upsert) an item"
                                                   : v == "create" ? "create an item (fails if it exists)"
                                                                   : "replace an existing item")
                    ->callback([&, v] {
                      rc = WithClient(g, [&](Client& c) -> Status {
                        BULWARK_ASSIGN_OR_RETURN(std::string text, ReadJsonArg(json_arg));
                        Result<Item> r = Status::Internal("unreachable");
                        if (v == "put") {
                          r = c.UpsertItem(db, container, text);
                        } else if (v == "create") {
                          r = c.CreateItem(db, container, text);
                        } else {
                          const json doc = json::parse(text, nullptr, false);
                          if (doc.is_discarded() || !doc.is_object() || !doc.contains("id") || !doc["id"].is_string()) {
                            return Status::InvalidArgument("replace needs a JSON object with a string 'id'");
                          }
                          r = c.ReplaceItem(db, container, doc["id"].get<std::string>(), text, if_match);
                        }
                        BULWARK_RETURN_IF_ERROR(r.status());
                        std::cout << r->json << "\n";
                        return Status::Ok();
                      });
                    });
    sub->add_option("DB", db)->required();
    sub->add_option("CONTAINER", container)->required();
    sub->add_option("--json", json_arg, "the item as JSON, or - to read standard input")->required();
    if (v == "replace") sub->add_option("--if-match", if_match, "only if the item still has this etag");
  }
  auto* get = cmd->add_subcommand("get", "read an item")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      ReadOptions options;
      options.consistency = LevelArg(level);
      BULWARK_ASSIGN_OR_RETURN(auto item, c.ReadItem(db, container, PartitionKeyArgToJson(pk), id, options));
      std::cout << item.json << "\n";
      return Status::Ok();
    });
  });
  auto* del = cmd->add_subcommand("delete", "delete an item")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_RETURN_IF_ERROR(c.DeleteItem(db, container, PartitionKeyArgToJson(pk), id, if_match));
      std::cout << "deleted item " << id << "\n";
      return Status::Ok();
    });
  });
  for (auto* sub : {get, del}) {
    sub->add_option("DB", db)->required();
    sub->add_option("CONTAINER", container)->required();
    sub->add_option("ID", id)->required();
    sub->add_option("--pk", pk, "partition-key value (acme, 42, true; '\"42\"' for the string 42)")->required();
  }
  del->add_option("--if-match", if_match, "only if the item still has this etag");
  auto* list = cmd->add_subcommand("list", "list items")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      ListOptions options;
      if (!pk.empty()) options.partition_key_json = PartitionKeyArgToJson(pk);
      options.max_items = max_items;
      options.continuation = continuation;
      options.consistency = LevelArg(level);
      BULWARK_ASSIGN_OR_RETURN(auto page, c.ListItems(db, container, options));
      if (g.json_output) {
        json out = {{"items", json::array()}, {"continuation", page.continuation}};
        for (const auto& item : page.items) out["items"].push_back(json::parse(item, nullptr, false));
        std::cout << out.dump(2) << "\n";
        return Status::Ok();
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& item : page.items) {
        const json doc = json::parse(item, nullptr, false);
        rows.push_back({doc.value("id", "?"), doc.value("_etag", ""), Clip(item, 60)});
      }
      PrintTable({"ID", "ETAG", "ITEM"}, rows);
      if (!page.continuation.empty()) std::cout << "more: --continuation " << page.continuation << "\n";
      return Status::Ok();
    });
  });
  list->add_option("DB", db)->required();
  list->add_option("CONTAINER", container)->required();
  list->add_option("--pk", pk, "only this partition-key value");
  list->add_option("--max", max_items, "items per page");
  list->add_option("--continuation", continuation, "resume after an earlier page");
  list->add_flag("--json", g.json_output, "print JSON instead of a table");
  for (auto* sub : {get, list}) {
    sub->add_option("--consistency", level, "Strong, BoundedStaleness, Session, ConsistentPrefix or Eventual")
        ->check([](const std::string& s) {
          return ParseConsistency(s) ? std::string() : std::string("unknown consistency level '" + s + "'");
        });
  }
}

json PendingShredsJson(const KeyStatus& s) {
  json out = json::array();
  for (const auto& p : s.pending_shreds) out.push_back({{"rid", p.rid}, {"purgeIndex", p.purge_index}});
  return out;
}

json KeyStatusJson(const KeyStatus& s) {
  json store_keys = json::array();
  for (const auto& u : s.store_keys) {
    store_keys.push_back({{"version", u.version}, {"current", u.current}, {"files", u.files}, {"bytes", u.bytes}});
  }
  json containers = json::array();
  for (const auto& c : s.containers) {
    json versions = json::array();
    for (const auto& v : c.versions) {
      versions.push_back({{"version", v.version},
                          {"current", v.current},
                          {"items", v.items},
                          {"changeLogRecords", v.change_log_records},
                          {"bytes", v.bytes}});
    }
    containers.push_back({{"database", c.database},
                          {"container", c.container},
                          {"rid", c.rid},
                          {"currentVersion", c.current_version},
                          {"resealPending", c.reseal_pending},
                          {"versions", versions}});
  }
  return {
      {"masterKeyId", s.master_key_id},           {"storeKeys", store_keys}, {"rewriteRunning", s.rewrite_running},
      {"lastRewriteError", s.last_rewrite_error}, {"dataKeys", containers},  {"unflushedValues", s.unflushed_values},
      {"resealFailures", s.reseal_failures}, {"pendingShreds", PendingShredsJson(s)},
      {"lastShredError", s.last_shred_error}};
}

void PrintKeyStatus(const KeyStatus& s) {
  std::cout << "master key " << s.master_key_id << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& u : s.store_keys) {
    rows.push_back({"v" + std::to_string(u.version), u.current ? "current" : "", std::to_string(u.files),
                    std::to_string(u.bytes)});
  }
  PrintTable({"STORE KEY", "", "FILES", "BYTES"}, rows);
  std::cout << (s.rewrite_running ? "rewrite of older files: running\n" : "rewrite of older files: idle\n");
  if (!s.last_rewrite_error.empty()) std::cout << "last rewrite failed: " << s.last_rewrite_error << "\n";
  // One row per container and data-key version: the re-seal's progress.
  rows.clear();
  for (const auto& c : s.containers) {
    const std::string name = c.database.empty() ? "(deleted " + c.rid + ")" : c.database + "/" + c.container;
    for (const auto& v : c.versions) {
      rows.push_back({name, "v" + std::to_string(v.version), v.current ? "current" : "", std::to_string(v.items),
                      std::to_string(v.change_log_records), c.reseal_pending ? "re-sealing" : "idle"});
    }
  }
  std::cout << "\n";
  PrintTable({"CONTAINER", "DATA KEY", "", "ITEMS", "CHANGE LOG", "RE-SEAL"}, rows);
  if (s.unflushed_values > 0) std::cout << s.unflushed_values << " recent values not yet counted (in memory)\n";
  if (s.reseal_failures > 0) {
    std::cout << s.reseal_failures << " values could not be opened to re-seal; they were kept as they are\n";
  }
  for (const auto& p : s.pending_shreds) std::cout << "shred pending: container rid " << p.rid << "\n";
  if (!s.last_shred_error.empty()) std::cout << "last shred attempt: " << s.last_shred_error << "\n";
}

void AddKeyCommands(CLI::App& app, Globals& g, int& rc) {
  auto* keys = app.add_subcommand("keys", "encryption keys")->require_subcommand(1);
  auto* status = keys->add_subcommand(
      "status", "master key, files per store-key version, and items per container data-key version");
  status->add_flag("--json", g.json_output, "print JSON instead of tables");
  status->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto s, c.GetKeyStatus());
      if (g.json_output) {
        std::cout << KeyStatusJson(s).dump(2) << "\n";
      } else {
        PrintKeyStatus(s);
      }
      return Status::Ok();
    });
  });
  keys->add_subcommand("rotate-store", "new store key for new files; older files are rewritten in the background")
      ->callback([&] {
        rc = WithClient(g, [&](Client& c) -> Status {
          BULWARK_ASSIGN_OR_RETURN(uint32_t v, c.RotateStoreKey());
          std::cout << "store key v" << v << " is current; older files are being rewritten (see: bulwark keys status)\n";
          return Status::Ok();
        });
      });
  static std::string db, container;
  auto* dek = keys->add_subcommand("rotate-container", "new data-key version for a container's new writes")
                  ->callback([&] {
                    rc = WithClient(g, [&](Client& c) -> Status {
                      BULWARK_ASSIGN_OR_RETURN(uint32_t v, c.RotateDataKey(db, container));
                      std::cout << "container " << db << "/" << container << " seals new writes with data key v" << v
                                << "; older items stay readable\n";
                      return Status::Ok();
                    });
                  });
  dek->add_option("DB", db)->required();
  dek->add_option("CONTAINER", container)->required();
  static std::string uri;
  auto* master = keys->add_subcommand("rotate-master", "re-wrap every key under a new master key, online")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(std::string id, c.RotateMasterKey(uri));
      std::cout << "every key is now wrapped by master key " << id << "\n"
                << "restart the node with --master-key-uri " << uri << " (the old key no longer opens it)\n";
      return Status::Ok();
    });
  });
  master->add_option("--new-key-uri", uri, "file:PATH, env:VAR or command:PATH ARGS, resolved on the node")->required();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bulwark: the Bulwark command-line client"};
  app.require_subcommand(1);
  Globals g;
  int rc = 0;
  app.add_option("--profile-dir", g.profile_dir, "where client.json lives (default .bulwark)");
  app.add_option("--endpoint", g.endpoint, "host:port of a node");
  app.add_option("--ca", g.ca, "CA certificate (PEM) that signed the node's certificate");
  app.add_option("--key", g.key, "account key (base64)");
  app.add_flag("--insecure", g.insecure, "plaintext (only against a node started with --insecure)");

  AddDatabaseCommands(app, g, rc);
  AddContainerCommands(app, g, rc);
  AddItemCommands(app, g, rc);
  AddKeyCommands(app, g, rc);
  AddNodeCommands(app, g, rc);
  auto* status =
      app.add_subcommand("status", "show every node of the replica set: role, term, indexes, lag, keys")->callback([&] {
        rc = ShowStatus(g);
      });
  status->add_flag("--json", g.json_output, "print a JSON array, one object per node, for scripts");

  auto* leader = app.add_subcommand("leader", "the replica set's leader")->require_subcommand(1);
  static uint64_t to = 0;
  leader->add_subcommand("transfer", "move leadership to another node")
      ->callback([&] { rc = TransferLeader(g, to); })
      ->add_option("--to", to, "the replica id of the new leader (see: bulwark status)")
      ->required()
      ->check(CLI::PositiveNumber);

  auto* cluster = app.add_subcommand("cluster", "run a local cluster")->require_subcommand(1);
  static ClusterUpArgs up_args;
  auto* up =
      cluster->add_subcommand("up", "start a local replica set in the foreground (Ctrl-C stops it)")->callback([&] {
        rc = ClusterUp(g, up_args);
      });
  up->add_option("--regions", up_args.regions, "regions (only 1 for now)");
  up->add_option("--nodes", up_args.nodes, "nodes in the replica set, on consecutive loopback addresses")
      ->check(CLI::Range(1, 9));
  up->add_option("--ip", up_args.ip, "loopback address of node 1; node N gets the N-th address from it");
  up->add_option("--port", up_args.port, "client port of every node (peer link on port + 1, metrics on port + 80)")
      ->check(CLI::Range(1, 65535 - 80));
  static int down_timeout_s = 20;
  auto* down =
      cluster->add_subcommand("down", "stop the nodes `cluster up` started from this directory")->callback([&] {
        rc = ClusterDown(g, down_timeout_s);
      });
  down->add_option("--timeout", down_timeout_s, "seconds to wait for a clean stop before SIGKILL")
      ->check(CLI::Range(1, 3600));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return rc;
}
