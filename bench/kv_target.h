#pragma once
// KvTarget: one system under test seen as a key-value store, so the same
// generator (bench/load_driver.h) drives Bulwark and etcd alike.
//
//   BulwarkTarget  a LocalCluster replica set of real bulwarkd nodes (TLS,
//                  fsync on, signed requests); a key is an item id (and its
//                  partition key), a value a string field of the item.
//   EtcdTarget     an EtcdCluster (TLS, fsync on), over etcd's own gRPC API
//                  (bench/proto/etcd_kv.proto) with a client written here.
//
// Clients: Connect(n) opens n clients, client t on server t % servers, each
// with its own channel credentials (so its own connection, as the Bulwark
// client makes one per Client). Put/Get for different clients may run
// concurrently; one client is used by one thread at a time.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace bulwark::bench {

enum class ReadLevel {
  kStrong,    // Bulwark Strong; etcd linearizable Range
  kSession,   // Bulwark Session; etcd serializable Range
  kEventual,  // Bulwark Eventual; etcd serializable Range
};

// What the servers use: summed over every server process, from /proc.
struct ServerUsage {
  double rss_mib = 0;       // VmRSS now
  double peak_rss_mib = 0;  // VmHWM: the most each process ever held
  double cpu_s = 0;         // user + system time so far
};
ServerUsage ReadServerUsage(const std::vector<pid_t>& pids);

class KvTarget {
 public:
  virtual ~KvTarget() = default;
  virtual std::string name() const = 0;
  // How the servers run, for the report (e.g. "4 nodes, TLS, fsync on").
  virtual std::string description() const = 0;
  // Replaces the current clients with `clients` new ones.
  virtual Status Connect(int clients) = 0;
  // A durable, replicated write of `value` under `key`: acknowledged once a
  // quorum has it on disk.
  virtual bool Put(int client, const std::string& key, const std::string& value) = 0;
  // Reads `key`; fails if it is missing.
  virtual bool Get(int client, const std::string& key, ReadLevel level) = 0;
  virtual std::vector<pid_t> server_pids() const = 0;
};

struct BulwarkTargetOptions {
  std::string dir;  // scratch; the cluster's keys, certificates and data
  std::string bin_dir;
  std::string ip = "127.0.13.1";
  int port = 7600;
  int nodes = 4;
  // bulwarkd --benchmark-unencrypted: items unsealed, files unencrypted (the
  // encryption-cost baseline); named "bulwark-plain".
  bool unencrypted = false;
};
Result<std::unique_ptr<KvTarget>> StartBulwark(const BulwarkTargetOptions& options);

struct EtcdTargetOptions {
  std::string dir;
  std::string binary = "etcd";
  std::string ip = "127.0.14.1";
  int members = 3;
};
Result<std::unique_ptr<KvTarget>> StartEtcd(const EtcdTargetOptions& options);

}  // namespace bulwark::bench
