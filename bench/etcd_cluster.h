#pragma once
// EtcdCluster: a 3-member etcd cluster (Debian's etcd-server, 3.4) on
// loopback, the baseline the comparison benchmark measures Bulwark against.
//
// Member i (1-based) listens on the i-th loopback address from `ip`: clients
// on `client_port`, peers on `peer_port`. TLS on both, like Bulwark: the
// layout makes a CA and per member a certificate for its address (the same
// certificate code as LocalCluster); peers authenticate each other with
// client certificates (mutual TLS, as Bulwark's nodes do). etcd keeps its
// default durability: every raft entry and every backend commit is fsync'd.
// Clients are not authenticated (etcd's auth is off), whereas every Bulwark
// request is signed: a small handicap for Bulwark, named in the report.
//
// Ownership: the object owns the member processes and kills them (SIGKILL)
// when destroyed; `dir` is the caller's to remove. Not thread-safe.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace bulwark::bench {

struct EtcdOptions {
  std::string dir;                // certificates, data directories, logs
  std::string binary = "etcd";    // found on PATH if not absolute
  std::string ip = "127.0.14.1";  // member i gets the i-th address from it
  int client_port = 2379;
  int peer_port = 2380;
  int members = 3;
  // How long Start waits for every member to answer a Range.
  std::chrono::seconds start_timeout{30};
};

class EtcdCluster {
 public:
  static Result<std::unique_ptr<EtcdCluster>> Prepare(const EtcdOptions& options);
  ~EtcdCluster();

  // Starts every member and waits until each serves a linearizable Range
  // (which needs an elected leader).
  Status Start();
  // SIGTERM, then SIGKILL after `grace`.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  int size() const { return options_.members; }
  std::string member_ip(int i) const;
  std::string client_endpoint(int i) const;  // host:port, 1-based
  std::string ca_pem() const { return ca_pem_; }
  pid_t member_pid(int i) const { return pid_.at(i - 1); }
  std::vector<pid_t> pids() const { return pid_; }

 private:
  explicit EtcdCluster(EtcdOptions options) : options_(std::move(options)), pid_(options_.members, -1) {}
  Status Layout();
  std::vector<std::string> Command(int i) const;

  EtcdOptions options_;
  std::string ca_pem_;
  std::vector<pid_t> pid_;  // -1 when not running
};

}  // namespace bulwark::bench
