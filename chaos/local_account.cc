#include "chaos/local_account.h"

#include <filesystem>

namespace bulwark::chaos {
namespace {
namespace fs = std::filesystem;

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

Result<std::unique_ptr<LocalCluster>> LocalAccount::PrepareRegion(int r) const {
  std::error_code ec;
  const fs::path dir = fs::path(options_.dir) / (r == 0 ? std::string("witness") : RegionName(r));
  if (r != 1) {
    // One account key and one CA for the account: copied from region 1.
    fs::create_directories(dir, ec);
    if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
    fs::permissions(dir, fs::perms::owner_all, ec);
    for (const char* name : {"account.key", "ca.pem", "ca.key"}) {
      if (fs::exists(dir / name)) continue;
      fs::copy_file(fs::path(options_.dir) / RegionName(1) / name, dir / name, ec);
      if (ec) return Status::IOError("cannot copy " + std::string(name) + " into " + dir.string());
    }
  }
  ClusterOptions c;
  c.dir = dir.string();
  c.bin_dir = options_.bin_dir;
  c.ip = r == 0 ? kWitnessIp : "127.0." + std::to_string(r) + ".1";
  c.port = options_.port;
  c.metrics_port = options_.metrics_port;
  c.nodes = r == 0 ? 1 : options_.nodes;
  c.extra_args = options_.extra_args;
  if (!options_.consistency.empty()) {
    c.extra_args.push_back("--set");
    c.extra_args.push_back("consistency.default=" + options_.consistency);
  }
  return LocalCluster::Prepare(c);
}

Status LocalAccount::ApplyGeoArgs(int r) {
  std::unique_ptr<LocalCluster>& cluster = r == 0 ? witness_ : regions_[r - 1];
  ClusterOptions c = cluster->options();
  auto geo = GeoArgs(r);
  c.extra_args.insert(c.extra_args.end(), geo.begin(), geo.end());
  if (options_.control) {
    auto control = ControlArgs();
    c.extra_args.insert(c.extra_args.end(), control.begin(), control.end());
    // Voter ids: region R's node 1 is R; the witness is regions + 1.
    const int id = r == 0 ? options_.regions + 1 : r;
    c.node_args[1] = {"--set", "control.id=" + std::to_string(id)};
    if (r == 0) c.node_args[1].push_back("--witness");
  }
  BULWARK_ASSIGN_OR_RETURN(cluster, LocalCluster::Prepare(c));
  return Status::Ok();
}

std::vector<std::string> LocalAccount::ControlArgs() const {
  const std::string port = std::to_string(options_.port + 2);
  std::string members;
  for (int r = 1; r <= options_.regions; ++r) {
    members += (members.empty() ? "" : ",") + std::to_string(r) + "=" + RegionName(r) + "/127.0." + std::to_string(r) +
               ".1:" + port;
  }
  if (options_.witness) {
    members += "," + std::to_string(options_.regions + 1) + "=witness/" + kWitnessIp + ":" + port;
  }
  std::vector<std::string> out = {"--set", "control.members=" + members};
  if (options_.control_grace_ms > 0) {
    out.insert(out.end(), {"--set", "control.grace_ms=" + std::to_string(options_.control_grace_ms)});
  }
  if (options_.control_lease_ms > 0) {
    out.insert(out.end(), {"--set", "control.lease_ms=" + std::to_string(options_.control_lease_ms)});
  }
  return out;
}

Result<std::unique_ptr<LocalAccount>> LocalAccount::Prepare(const AccountOptions& options) {
  if (options.regions < 1 || options.regions > 9) return Status::InvalidArgument("a local account has 1 to 9 regions");
  if (options.witness && options.regions < 2) return Status::InvalidArgument("a witness needs 2 or more regions");
  std::unique_ptr<LocalAccount> account(new LocalAccount(options));
  if (options.witness) account->options_.control = true;
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return Status::IOError("cannot create " + options.dir + ": " + ec.message());
  for (int r = 1; r <= options.regions; ++r) {
    BULWARK_ASSIGN_OR_RETURN(auto cluster, account->PrepareRegion(r));
    account->regions_.push_back(std::move(cluster));
  }
  for (int r = 1; r <= options.regions; ++r) BULWARK_RETURN_IF_ERROR(account->ApplyGeoArgs(r));
  if (account->options_.witness) {
    BULWARK_ASSIGN_OR_RETURN(account->witness_, account->PrepareRegion(0));
    BULWARK_RETURN_IF_ERROR(account->ApplyGeoArgs(0));
  }
  return account;
}

Result<int> LocalAccount::AddRegion() {
  if (options_.regions < 2) return Status::FailedPrecondition("only a geo account (2+ regions) adds regions");
  if (options_.regions >= 9) return Status::InvalidArgument("a local account has 1 to 9 regions");
  if (options_.control) {
    return Status::FailedPrecondition("the control group's voters are fixed when the account is laid out");
  }
  const int r = options_.regions + 1;
  BULWARK_ASSIGN_OR_RETURN(auto cluster, PrepareRegion(r));
  regions_.push_back(std::move(cluster));
  ++options_.regions;
  // Its nodes are told every region (itself included); the others learn of
  // it from the regions record once it is added.
  BULWARK_RETURN_IF_ERROR(ApplyGeoArgs(r));
  BULWARK_RETURN_IF_ERROR(regions_.back()->Start());
  return r;
}

client::RegionSpec LocalAccount::region_spec(int r) const {
  client::RegionSpec spec;
  spec.name = RegionName(r);
  const LocalCluster& c = region(r);
  for (int i = 1; i <= c.size(); ++i) {
    spec.peers.push_back(c.node_peer_endpoint(i));
    spec.endpoints.push_back(c.node_endpoint(i));
  }
  return spec;
}

std::vector<std::string> LocalAccount::GeoArgs(int r) const {
  std::vector<std::string> out;
  if (options_.regions < 2) return out;
  auto set = [&](const std::string& kv) {
    out.push_back("--set");
    out.push_back(kv);
  };
  set("region=" + (r == 0 ? std::string("witness") : RegionName(r)));
  for (int q = 1; q <= options_.regions; ++q) {
    const LocalCluster& c = *regions_.at(q - 1);
    std::vector<std::string> peers, endpoints;
    for (int i = 1; i <= c.size(); ++i) {
      peers.push_back(options_.wan_proxies ? c.node_ip(i) + ":" + std::to_string(options_.port + kWanProxyPortOffset)
                                           : c.node_peer_endpoint(i));
      endpoints.push_back(c.node_endpoint(i));
    }
    const std::string key = "geo.regions." + RegionName(q);
    set(key + ".peers=" + Join(peers));
    set(key + ".endpoints=" + Join(endpoints));
    set(key + ".priority=" + std::to_string(q - 1));
    if (q != r && r != 0 && options_.link_delay.count() > 0)
      set(key + ".delay_ms=" + std::to_string(options_.link_delay.count()));
  }
  return out;
}

Status LocalAccount::Start() {
  for (auto& c : regions_) BULWARK_RETURN_IF_ERROR(c->Start());
  if (witness_) BULWARK_RETURN_IF_ERROR(witness_->Start());
  return Status::Ok();
}

Result<int> LocalAccount::Stop(std::chrono::milliseconds grace) {
  int worst = 0;
  Status failed;
  // Read regions first: the write region keeps streaming until the end.
  for (auto it = regions_.rbegin(); it != regions_.rend(); ++it) {
    if (!(*it)->running()) continue;
    auto code = (*it)->Stop(grace);
    if (!code.ok()) {
      failed = code.status();
    } else {
      worst = std::max(worst, *code);
    }
  }
  if (witness_ && witness_->running()) {
    auto code = witness_->Stop(grace);
    if (!code.ok()) {
      failed = code.status();
    } else {
      worst = std::max(worst, *code);
    }
  }
  if (!failed.ok()) return failed;
  return worst;
}

void LocalAccount::Kill() {
  for (auto& c : regions_) c->Kill();
  if (witness_) witness_->Kill();
}

bool LocalAccount::running() const {
  for (const auto& c : regions_) {
    if (c->running()) return true;
  }
  return witness_ && witness_->running();
}

client::ClientOptions LocalAccount::client_options(int r) const {
  client::ClientOptions o = region(r).failover_client_options();
  o.discover_topology = true;
  o.preferred_regions = {RegionName(r)};
  return o;
}

}  // namespace bulwark::chaos
