// `bulwark cluster up|down`, `status`, `leader transfer` and `node ...`:
// running a local replica set and looking after its membership.
#include <signal.h>
#include <unistd.h>
#include <ctime>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "chaos/local_account.h"
#include "chaos/local_cluster.h"
#include "client/cli.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace bulwark::cli {
using namespace bulwark::client;

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

// Several regions: one LocalCluster per region, in .bulwark/rR.
int AccountUp(const Globals& g, const ClusterUpArgs& args, const sigset_t& signals) {
  if (args.ip != "127.0.1.1") {
    std::cerr << "error: with --regions, region R's nodes are always on 127.0.R.1..; --ip does not apply\n";
    return 2;
  }
  chaos::AccountOptions options;
  options.dir = g.profile_dir;
  options.bin_dir = SelfDir().string();
  options.regions = args.regions;
  options.nodes = args.nodes;
  options.port = args.port;
  options.metrics_port = args.port + 80;
  options.link_delay = std::chrono::milliseconds(args.delay_ms);
  options.consistency = args.consistency;
  options.witness = args.witness;
  options.control = args.control || args.witness;
  auto account = chaos::LocalAccount::Prepare(options);
  if (!account.ok()) return Fail(account.status());
  chaos::LocalAccount& a = **account;
  std::cout << "starting " << a.regions() << " regions of " << args.nodes << " bulwarkd nodes (TLS; keys, certificates "
            << "and data in " << g.profile_dir << "/rR; region streams delayed " << args.delay_ms << " ms one way):\n";
  for (int r = 1; r <= a.regions(); ++r) {
    std::cout << "region " << chaos::LocalAccount::RegionName(r) << (r == 1 ? " (write region)" : "") << ":\n";
    Globals region_g = g;
    region_g.profile_dir = g.profile_dir + "/" + chaos::LocalAccount::RegionName(r);
    PrintNodes(region_g, a.region(r));
  }
  if (a.witness() != nullptr) {
    std::cout << "control group witness (votes only, stores no documents):\n";
    Globals witness_g = g;
    witness_g.profile_dir = g.profile_dir + "/witness";
    PrintNodes(witness_g, *a.witness());
  }
  if (options.control) {
    std::cout << "control group: node 1 of each region" << (a.witness() != nullptr ? " and the witness" : "")
              << " (control port " << args.port + 2 << "); if r1 stays cut off for the grace period, the next "
              << "region takes the writes over\n";
  }
  std::cout << std::flush;
  if (Status s = a.Start(); !s.ok()) {
    if (a.running()) (void)a.Stop();
    return Fail(s);
  }
  // The profile lists every node; the client learns the topology, writes to
  // the write region and reads in its preferred region (the write region).
  ClientOptions profile = a.client_options(1);
  for (int r = 2; r <= a.regions(); ++r) {
    for (int i = 1; i <= a.region(r).size(); ++i) profile.endpoints.push_back(a.region(r).node_endpoint(i));
  }
  profile.ca_file = fs::absolute(fs::path(g.profile_dir) / "r1" / "ca.pem").string();
  if (Status s = WriteProfile(g.profile_dir, profile); !s.ok()) return Fail(s);
  std::cout << "Bulwark is up: " << a.regions() << " regions; writes go to r1, which streams them to the others.\n"
            << "The client profile is " << g.profile_dir << "/client.json; from this directory try:\n"
            << "  build/bin/bulwark status\n"
            << "  build/bin/bulwark db create shop\n"
            << "  build/bin/bulwark container create shop orders --partition-key /tenant\n"
            << "  build/bin/bulwark item put shop orders --json '{\"id\":\"o1\",\"tenant\":\"acme\",\"total\":42}'\n"
            << "  build/bin/bulwark --region r2 item get shop orders o1 --pk acme --consistency eventual\n"
            << "Press Ctrl-C (or run `bulwark cluster down` in another shell) to stop the cluster.\n"
            << std::flush;
  int worst_exit = 0;
  bool signalled = false;
  while (true) {
    timespec tick{0, 200'000'000};
    if (sigtimedwait(&signals, nullptr, &tick) > 0) {
      signalled = true;
      break;
    }
    for (int r = 1; r <= a.regions(); ++r) {
      for (const auto& exit : a.region(r).ReapExited()) {
        worst_exit = std::max(worst_exit, exit.code);
        std::cout << "r" << r << " node-" << exit.node << " stopped (exit code " << exit.code << ")\n" << std::flush;
      }
    }
    if (a.witness() != nullptr) {
      for (const auto& exit : a.witness()->ReapExited()) {
        worst_exit = std::max(worst_exit, exit.code);
        std::cout << "witness stopped (exit code " << exit.code << ")\n" << std::flush;
      }
    }
    if (!a.running()) break;
  }
  if (signalled) {
    std::cout << "\nstopping...\n" << std::flush;
    auto code = a.Stop();
    if (!code.ok()) return Fail(code.status());
    worst_exit = std::max(worst_exit, *code);
  }
  std::cout << "stopped (worst bulwarkd exit code " << worst_exit << "); data kept for the next `cluster up`\n";
  return worst_exit == 0 ? 0 : 1;
}

int ClusterUp(const Globals& g, const ClusterUpArgs& args) {
  // Ctrl-C and SIGTERM are handled by waiting for them, not by a handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if ((args.witness || args.control) && args.regions < 2) {
    std::cerr << "error: --witness and --control need --regions 2 or more\n";
    return 2;
  }
  if (args.regions > 1) return AccountUp(g, args, signals);

  chaos::ClusterOptions options;
  options.dir = g.profile_dir;
  options.bin_dir = SelfDir().string();
  options.ip = args.ip;
  options.port = args.port;
  options.metrics_port = args.port + 80;
  options.nodes = args.nodes;
  if (!args.consistency.empty()) options.extra_args = {"--set", "consistency.default=" + args.consistency};
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
  std::vector<std::pair<std::string, chaos::LocalCluster::NodeStopReport>> reports;
  for (const auto& r : chaos::LocalCluster::StopFromPidFiles(g.profile_dir, std::chrono::seconds(timeout_s))) {
    reports.push_back({"", r});
  }
  // The regions of `cluster up --regions N`, read regions first, then the witness.
  for (int region = 9; region >= 0; --region) {
    const std::string name = region == 0 ? std::string("witness") : chaos::LocalAccount::RegionName(region);
    const fs::path dir = fs::path(g.profile_dir) / name;
    if (!fs::exists(dir)) continue;
    for (const auto& r : chaos::LocalCluster::StopFromPidFiles(dir.string(), std::chrono::seconds(timeout_s))) {
      reports.push_back({name + " ", r});
    }
  }
  if (reports.empty()) {
    std::cout << "no running nodes found in " << g.profile_dir << " (no pid files); nothing to stop\n";
    return 0;
  }
  bool killed = false;
  for (const auto& [prefix, r] : reports) {
    std::cout << prefix << "node-" << r.node << " (pid " << r.pid << "): ";
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
// Keyed by region and replica id: each region is its own replica set.
std::map<std::pair<std::string, uint64_t>, uint64_t> LagByReplica(const std::vector<NodeReport>& reports) {
  std::map<std::string, const NodeStatus*> leaders;
  for (const auto& r : reports) {
    if (!r.error.ok() || r.status.role != "leader") continue;
    const NodeStatus*& leader = leaders[r.status.region];
    if (leader == nullptr || r.status.term > leader->term) leader = &r.status;
  }
  std::map<std::pair<std::string, uint64_t>, uint64_t> lag;
  for (const auto& [region, leader] : leaders) {
    for (const auto& m : leader->members) lag[{region, m.id}] = m.lag;
  }
  return lag;
}

// The control group's lines of `bulwark status` (geo accounts only).
void PrintControl(const std::vector<NodeReport>& reports) {
  const NodeStatus* any = nullptr;
  const NodeStatus* writer = nullptr;
  std::vector<std::string> voters;
  for (const auto& r : reports) {
    if (!r.error.ok() || r.status.write_region.empty()) continue;
    if (any == nullptr) any = &r.status;
    const auto& c = r.status.control;
    if (c.member_id != 0) {
      voters.push_back(std::to_string(c.member_id) + " (" + r.status.region + ", " + c.member_role + ")");
    }
    if (r.status.role == "leader" && r.status.region == r.status.write_region && c.last_answer_ms_ago >= 0) {
      writer = &r.status;
    }
  }
  if (any == nullptr) return;
  const auto& c = any->control;
  if (!c.configured) {
    std::cout << "control group: none: automatic failover is off (control.members); `bulwark failover --to REGION` "
                 "works\n";
    return;
  }
  if (c.automatic) {
    std::cout << "control group: automatic failover on";
    if (writer != nullptr) {
      const auto& w = writer->control;
      char grace[32];
      std::snprintf(grace, sizeof(grace), "%.1f", w.grace_ms / 1000.0);
      std::cout << " (grace " << grace << " s); write region " << writer->region << " holds "
                << (w.lease_left_ms >= 0 ? "its lease (" + std::to_string(w.lease_left_ms) + " ms left)" : "NO lease")
                << ", last answered by " << w.last_answer_from;
    }
    std::cout << "\n";
  } else {
    std::cout << "control group: automatic failover is OFF: " << c.automatic_off
              << " (`bulwark failover --to REGION` works)\n";
  }
  if (!voters.empty()) {
    std::cout << "control voters seen:";
    for (const auto& v : voters) std::cout << " " << v;
    std::cout << "\n";
  }
}

// The write region leader's view of every other region.
const NodeStatus* WriteRegionLeader(const std::vector<NodeReport>& reports) {
  for (const auto& r : reports) {
    if (r.error.ok() && r.status.role == "leader" && !r.status.regions.empty()) return &r.status;
  }
  return nullptr;
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
      auto it = lag.find({s.region, s.replica_id});
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
                   {"firewall_ranges", s.firewall_ranges},
                   {"replica_error", s.replica_error},
                   {"version", s.version},
                   {"region", s.region},
                   {"glsn", s.glsn}});
      if (!s.regions.empty()) {
        json regions = json::array();
        for (const auto& g : s.regions) {
          regions.push_back({{"name", g.name},
                             {"priority", g.priority},
                             {"connected", g.connected},
                             {"in_quorum", g.in_quorum},
                             {"acked_glsn", g.acked_glsn},
                             {"lag_writes", g.lag_writes},
                             {"lag_seconds", g.lag_seconds},
                             {"needs_image", g.needs_image},
                             {"error", g.error}});
        }
        node["regions"] = std::move(regions);
        node["strong_quorum"] = s.strong_quorum;
      }
      if (s.last_failover.epoch > 0) {
        node["last_failover"] = {{"from", s.last_failover.from},
                                 {"to", s.last_failover.to},
                                 {"reason", s.last_failover.reason},
                                 {"at_unix_ms", s.last_failover.at_unix_ms},
                                 {"epoch", s.last_failover.epoch}};
      }
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
      rows.push_back({"-", "-", r.address, "unreachable", "-", "-", "-", "-", "-", "-", "-"});
      continue;
    }
    const NodeStatus& s = r.status;
    auto it = lag.find({s.region, s.replica_id});
    rows.push_back({s.region, std::to_string(s.replica_id), r.address, s.role, std::to_string(s.term),
                    s.leader_id == 0 ? "none" : std::to_string(s.leader_id), std::to_string(s.commit_index),
                    std::to_string(s.applied_index), it == lag.end() ? "?" : std::to_string(it->second),
                    std::to_string(s.data_key_versions), "v" + std::to_string(s.store_key_version)});
  }
  PrintTable(
      {"REGION", "NODE", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "DATA KEYS", "STORE KEY"},
      rows);
  if (const NodeStatus* w = WriteRegionLeader(reports)) {
    std::vector<std::vector<std::string>> regions;
    regions.push_back({w->region + " (write)", "0", "yes", "-", std::to_string(w->glsn), "0", "0.0", ""});
    for (const auto& g : w->regions) {
      char secs[32];
      std::snprintf(secs, sizeof(secs), "%.1f", g.lag_seconds);
      regions.push_back({g.name, std::to_string(g.priority), g.connected ? "yes" : "no", g.in_quorum ? "yes" : "no",
                         std::to_string(g.acked_glsn), std::to_string(g.lag_writes), secs,
                         g.needs_image ? "needs a state image" : g.error});
    }
    std::cout << "\nregions (epoch " << w->epoch << ", strong quorum set:";
    for (const auto& q : w->strong_quorum) std::cout << " " << q;
    std::cout << "):\n";
    PrintTable({"REGION", "PRIORITY", "CONNECTED", "IN QUORUM", "GLSN", "LAG (WRITES)", "LAG (S)", "NOTE"}, regions);
  }
  for (const auto& r : reports) {
    if (!r.error.ok() || r.status.last_failover.epoch == 0) continue;
    const auto& f = r.status.last_failover;
    const std::time_t at = static_cast<std::time_t>(f.at_unix_ms / 1000);
    char when[32];
    std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&at));
    std::cout << "last failover: " << f.from << " -> " << f.to << " at " << when << " (epoch " << f.epoch
              << "): " << f.reason << "\n";
    break;
  }
  PrintControl(reports);
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
    if (first->firewall_ranges == 0) {
      std::cout << "WARNING: the IP firewall is OPEN: any address may connect (add one with: bulwark firewall allow "
                   "CIDR)\n";
    } else {
      std::cout << "IP firewall: " << first->firewall_ranges << " allowed range(s) (bulwark firewall list)\n";
    }
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
  auto* node =
      app.add_subcommand("node", "change the replica set's membership, one node at a time")->require_subcommand(1);
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
  auto* replace =
      node->add_subcommand("replace", "add NEW, wait until it has caught up, then remove OLD")->callback([&] {
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

}  // namespace bulwark::cli
