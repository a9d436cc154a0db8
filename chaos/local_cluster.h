#pragma once
// LocalCluster: real bulwarkd processes on loopback, for `bulwark cluster up`
// and for the integration tests.
//
// Prepare() lays out `dir` on first use: a master key (0600), a CA and a
// certificate for the node's address, a data directory. Later runs reuse all
// of it, so a second `cluster up` finds its data. For now one node; the
// replica-set issue grows this to regions of four.
//
// Ownership: the object owns the child process and kills it (SIGKILL) if it
// is destroyed while the node runs. Not thread-safe: one owner drives it.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/status.h"

namespace bulwark::chaos {

constexpr std::chrono::seconds kNodeStartTimeout{30};

struct ClusterOptions {
  std::string dir = ".bulwark";  // keys, certificates, data, logs, the client profile
  std::string bin_dir;           // where bulwarkd lives
  std::string ip = "127.0.1.1";  // each node gets its own loopback address
  int port = 7100;
  int metrics_port = 7180;  // 0 disables the HTTP port
  bool insecure = false;
  std::vector<std::string> extra_args;  // appended to bulwarkd's command line
  std::string master_key_uri;           // default: file:<dir>/master.key
};

class LocalCluster {
 public:
  static Result<std::unique_ptr<LocalCluster>> Prepare(const ClusterOptions& options);
  ~LocalCluster();

  // Starts the node and waits until it answers a signed Status call.
  Status Start();
  // SIGTERM, then SIGKILL if it has not exited within `grace`. Returns the
  // exit code (0 for a clean shutdown) or Internal if it had to be killed.
  Result<int> Stop(std::chrono::milliseconds grace = std::chrono::seconds(20));
  // SIGKILL now, as a crash would.
  void Kill();
  bool running() const { return pid_ > 0; }
  // True once the node process has ended on its own (reaps it).
  bool Exited();
  pid_t pid() const { return pid_; }

  client::ClientOptions client_options() const;
  std::string endpoint() const;
  std::string metrics_endpoint() const;
  std::string log_path() const;
  const ClusterOptions& options() const { return options_; }
  // Takes effect at the next Start (e.g. after a master-key rotation).
  void set_master_key_uri(std::string uri) { options_.master_key_uri = std::move(uri); }

 private:
  explicit LocalCluster(ClusterOptions options) : options_(std::move(options)) {}
  Status Layout();
  std::vector<std::string> Command() const;
  Result<int> WaitExit(std::chrono::milliseconds timeout);

  ClusterOptions options_;
  std::string account_key_;
  pid_t pid_ = -1;
};

}  // namespace bulwark::chaos
