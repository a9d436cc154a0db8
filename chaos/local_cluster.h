#pragma once
// LocalCluster: real bulwarkd processes on loopback, for `bulwark cluster up`
// and for the integration tests.
//
// Prepare() lays out `dir` on first use: a master key and an account key
// (0600), a CA, and per node a certificate for its address and a data
// directory. Later runs reuse all of it, so a second `cluster up` finds its
// data. Node i (1-based) of a replica set of `nodes` listens on the i-th
// loopback address from `ip` (127.0.1.1, 127.0.1.2, ...): client API on
// `port`, peer link on `port + 1`, metrics on `metrics_port`.
//
// The whole-cluster calls (Start, Stop, Kill, client_options, ...) act on
// every node, or on node 1 where one node is meant; the *Node calls act on
// one node.
//
// Pid files: while a node runs, `dir`/node-N/bulwarkd.pid holds its process
// id (written when it is started, removed when it is reaped or killed), so
// another process can find and stop it (StopFromPidFiles, for `bulwark
// cluster down`), and a second cluster cannot be started over a running one.
//
// Ownership: the object owns the child processes and kills them (SIGKILL) if
// it is destroyed while they run. Not thread-safe: one owner drives it.

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/status.h"

namespace bulwark::chaos {

constexpr std::chrono::seconds kNodeStartTimeout{30};

constexpr const char* kPidFileName = "bulwarkd.pid";

struct ClusterOptions {
  std::string dir = ".bulwark";  // keys, certificates, data, logs, the client profile
  std::string bin_dir;           // where bulwarkd lives
  std::string ip = "127.0.1.1";  // each node gets its own loopback address
  int port = 7100;
  int metrics_port = 7180;  // 0 disables the HTTP port
  bool insecure = false;
  std::vector<std::string> extra_args;                // appended to bulwarkd's command line
  std::map<int, std::vector<std::string>> node_args;  // node i (1-based): appended after extra_args
  std::string master_key_uri;                         // default: file:<dir>/master.key
  // Node i's own master key, after a master-key rotation of that node alone
  // (each node wraps its keys under its own master key); default: the above.
  std::map<int, std::string> node_master_key_uri;
  int nodes = 1;  // nodes laid out (the replica set plus spares)
  // The nodes 1..founding_nodes form the set and Start() starts them; the
  // rest are spares that StartNode starts with --join, for `node add`
  // (0: every node founds the set).
  int founding_nodes = 0;
};

class LocalCluster {
 public:
  static Result<std::unique_ptr<LocalCluster>> Prepare(const ClusterOptions& options);
  ~LocalCluster();

  // Starts every node and waits until each answers a signed Status call and
  // (for more than one node) the replica set has a leader.
  Status Start();
  // SIGTERM to every node, then SIGKILL to those still running after
  // `grace`. Returns the worst exit code (0 if all shut down cleanly), or
  // Internal if a node had to be killed.
  Result<int> Stop(std::chrono::milliseconds grace = std::chrono::seconds(20));
  // SIGKILL every node now, as a crash would.
  void Kill();
  bool running() const;  // any node
  // True once some node process has ended on its own (reaps it).
  bool Exited();
  // Reaps the nodes that ended on their own since the last call and returns
  // them with their exit codes (128 + signal number if a signal ended one).
  struct NodeExit {
    int node = 0;  // 1-based
    int code = 0;
  };
  std::vector<NodeExit> ReapExited();
  pid_t pid() const { return node_pid(1); }

  // One node, 1-based.
  Status StartNode(int i, bool wait_ready = true);
  Result<int> StopNode(int i, std::chrono::milliseconds grace = std::chrono::seconds(20));
  void KillNode(int i);
  bool node_running(int i) const { return pid_.at(i - 1) > 0; }
  pid_t node_pid(int i) const { return pid_.at(i - 1); }
  std::string node_ip(int i) const;
  std::string node_endpoint(int i) const;
  std::string node_peer_endpoint(int i) const;
  std::string node_log_path(int i) const;
  std::string node_data_dir(int i) const;
  std::string node_pid_path(int i) const;
  client::ClientOptions node_client_options(int i) const;
  int size() const { return options_.nodes; }
  // The node every running node names as leader (1-based), or 0 if they do
  // not agree on one yet.
  int Leader() const;
  // Waits up to `timeout` for Leader() to return a node.
  Result<int> WaitForLeader(std::chrono::milliseconds timeout = std::chrono::seconds(15)) const;

  client::ClientOptions client_options() const { return node_client_options(1); }
  // Node 1 first, with every node in `endpoints`, so the client fails over.
  client::ClientOptions failover_client_options() const;
  std::string endpoint() const { return node_endpoint(1); }
  std::string metrics_endpoint() const;
  std::string log_path() const { return node_log_path(1); }
  const ClusterOptions& options() const { return options_; }
  // Takes effect at the next Start (e.g. after a master-key rotation).
  void set_master_key_uri(std::string uri) { options_.master_key_uri = std::move(uri); }
  // Writes a new random master key beside node i's data (node-i/master-<ms>.key,
  // owner-only) and returns its URI, for Client::RotateMasterKey on that
  // node; set_node_master_key_uri makes its later starts use it. Errors: IOError.
  Result<std::string> NewNodeMasterKey(int i) const;
  void set_node_master_key_uri(int i, std::string uri) { options_.node_master_key_uri[i] = std::move(uri); }
  // Node i's later starts pass --join: after its data was wiped it must
  // wait to be added back, never found a set of its own.
  void set_node_join(int i);

  // What StopFromPidFiles did to one node.
  struct NodeStopReport {
    int node = 0;  // 1-based, from the node-N directory
    pid_t pid = -1;
    enum class Outcome {
      kStopped,     // ended after SIGTERM within the grace period
      kKilled,      // ignored SIGTERM for the grace period; sent SIGKILL
      kNotRunning,  // the pid file was stale (the process is gone or is not this node); removed
    } outcome = Outcome::kNotRunning;
  };
  // Stops, from any process, the nodes whose pid files are in `dir`: SIGTERM
  // to each, then waits up to `grace` for all of them and SIGKILLs the rest.
  // A pid file is trusted only if its process is a bulwarkd running on that
  // node's data directory, so a reused pid is never signalled. Removes the
  // pid files of the nodes that are gone. Empty if no pid file was found.
  static std::vector<NodeStopReport> StopFromPidFiles(const std::string& dir,
                                                      std::chrono::milliseconds grace = std::chrono::seconds(20));

 private:
  explicit LocalCluster(ClusterOptions options) : options_(std::move(options)), pid_(options_.nodes, -1) {}
  Status Layout();
  Status CheckNoOtherLayout() const;
  // The node's process is gone: forget its pid and remove its pid file.
  void Forget(int i);
  std::vector<std::string> Command(int i) const;
  Result<int> WaitExit(int i, std::chrono::milliseconds timeout);
  std::string members(int i) const;
  int founding() const { return options_.founding_nodes == 0 ? options_.nodes : options_.founding_nodes; }

  ClusterOptions options_;
  std::string account_key_;
  std::vector<pid_t> pid_;  // per node; -1 when not running
};

}  // namespace bulwark::chaos
