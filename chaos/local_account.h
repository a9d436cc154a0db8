#pragma once
// LocalAccount: an account of several regions on loopback, each a
// LocalCluster of `nodes` real bulwarkd processes. Region R (1-based, named
// "rR", failover priority R-1, region 1 the write region) has its nodes on
// 127.0.R.1, 127.0.R.2, ... and its files in `dir`/rR. Every node is told
// the whole topology (geo.regions.*), so the write region's leader streams
// to the others.
//
// The regions share one account key and one CA (made once in `dir` and
// copied into each region's directory), so region peers authenticate each
// other; each region has its own master key.
//
// With `control`, node 1 of each region is a voter of the account's control
// group (server/control.h; control port `port` + 2); with `witness`, so is
// a witness (bulwarkd --witness) on 127.0.9.1, its files in `dir`/witness.
//
// Ownership: owns its LocalClusters (and so their processes). Not
// thread-safe: one owner drives it.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "chaos/local_cluster.h"
#include "client/client.h"
#include "common/status.h"

namespace bulwark::chaos {

struct AccountOptions {
  std::string dir = ".bulwark";
  std::string bin_dir;
  int regions = 2;  // 1..9
  int nodes = 4;    // per region
  int port = 7100;
  int metrics_port = 7180;  // 0 disables
  std::string consistency;  // the account default ("Strong", ...); empty: bulwarkd's default
  // One-way delay the write region adds on its stream to each other region
  // (the WAN stand-in; see replication/region_stream.h).
  std::chrono::milliseconds link_delay{0};
  std::vector<std::string> extra_args;  // every node
  bool control = false;                 // a control group: node 1 of each region votes
  bool witness = false;                 // ... and a witness (implies control)
  int control_grace_ms = 0;             // 0: bulwarkd's defaults
  int control_lease_ms = 0;
  // Every node's region peers point at WAN proxies (chaos/wan.h) on the
  // peer node's own address at port + kWanProxyPortOffset instead of at its
  // peer port; whoever runs the account runs the proxies.
  bool wan_proxies = false;
};

constexpr int kWanProxyPortOffset = 3;

constexpr const char* kWitnessIp = "127.0.9.1";

class LocalAccount {
 public:
  static Result<std::unique_ptr<LocalAccount>> Prepare(const AccountOptions& options);
  static std::string RegionName(int r) { return "r" + std::to_string(r); }

  // Starts every region (the write region first) and waits for each to
  // have a leader.
  Status Start();
  // Stops every region; the worst exit code, as LocalCluster::Stop.
  Result<int> Stop(std::chrono::milliseconds grace = std::chrono::seconds(20));
  void Kill();
  bool running() const;

  // Lays out and starts region regions()+1 (its nodes configured with every
  // region, itself included), not yet part of the account: the write
  // region adds it (Client::AddRegion with region_spec). Returns its number.
  Result<int> AddRegion();
  // What Client::AddRegion needs for region r.
  client::RegionSpec region_spec(int r) const;

  int regions() const { return static_cast<int>(regions_.size()); }
  LocalCluster& region(int r) { return *regions_.at(r - 1); }
  const LocalCluster& region(int r) const { return *regions_.at(r - 1); }
  // The witness (null without one).
  LocalCluster* witness() { return witness_.get(); }
  // A client that learns the topology, writes to the write region and reads
  // in region `r`, failing over among its nodes.
  client::ClientOptions client_options(int r) const;
  const AccountOptions& options() const { return options_; }

 private:
  explicit LocalAccount(AccountOptions options) : options_(std::move(options)) {}
  // Region r's geo.* flags (r = 0: the witness's).
  std::vector<std::string> GeoArgs(int r) const;
  std::vector<std::string> ControlArgs() const;
  Status PrepareWitness();
  Result<std::unique_ptr<LocalCluster>> PrepareRegion(int r) const;
  // Re-prepares region r with its geo.* flags.
  Status ApplyGeoArgs(int r);

  AccountOptions options_;
  std::vector<std::unique_ptr<LocalCluster>> regions_;
  std::unique_ptr<LocalCluster> witness_;
};

}  // namespace bulwark::chaos
