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
  const fs::path dir = fs::path(options_.dir) / RegionName(r);
  if (r > 1) {
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
  c.ip = "127.0." + std::to_string(r) + ".1";
  c.port = options_.port;
  c.metrics_port = options_.metrics_port;
  c.nodes = options_.nodes;
  c.extra_args = options_.extra_args;
  if (!options_.consistency.empty()) {
    c.extra_args.push_back("--set");
    c.extra_args.push_back("consistency.default=" + options_.consistency);
  }
  return LocalCluster::Prepare(c);
}

Status LocalAccount::ApplyGeoArgs(int r) {
  ClusterOptions c = regions_[r - 1]->options();
  auto geo = GeoArgs(r);
  c.extra_args.insert(c.extra_args.end(), geo.begin(), geo.end());
  BULWARK_ASSIGN_OR_RETURN(regions_[r - 1], LocalCluster::Prepare(c));
  return Status::Ok();
}

Result<std::unique_ptr<LocalAccount>> LocalAccount::Prepare(const AccountOptions& options) {
  if (options.regions < 1 || options.regions > 9) return Status::InvalidArgument("a local account has 1 to 9 regions");
  std::unique_ptr<LocalAccount> account(new LocalAccount(options));
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return Status::IOError("cannot create " + options.dir + ": " + ec.message());
  for (int r = 1; r <= options.regions; ++r) {
    BULWARK_ASSIGN_OR_RETURN(auto cluster, account->PrepareRegion(r));
    account->regions_.push_back(std::move(cluster));
  }
  for (int r = 1; r <= options.regions; ++r) BULWARK_RETURN_IF_ERROR(account->ApplyGeoArgs(r));
  return account;
}

Result<int> LocalAccount::AddRegion() {
  if (options_.regions < 2) return Status::FailedPrecondition("only a geo account (2+ regions) adds regions");
  if (options_.regions >= 9) return Status::InvalidArgument("a local account has 1 to 9 regions");
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
  set("region=" + RegionName(r));
  for (int q = 1; q <= options_.regions; ++q) {
    const LocalCluster& c = *regions_.at(q - 1);
    std::vector<std::string> peers, endpoints;
    for (int i = 1; i <= c.size(); ++i) {
      peers.push_back(c.node_peer_endpoint(i));
      endpoints.push_back(c.node_endpoint(i));
    }
    const std::string key = "geo.regions." + RegionName(q);
    set(key + ".peers=" + Join(peers));
    set(key + ".endpoints=" + Join(endpoints));
    set(key + ".priority=" + std::to_string(q - 1));
    if (q != r && options_.link_delay.count() > 0)
      set(key + ".delay_ms=" + std::to_string(options_.link_delay.count()));
  }
  return out;
}

Status LocalAccount::Start() {
  for (auto& c : regions_) BULWARK_RETURN_IF_ERROR(c->Start());
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
  if (!failed.ok()) return failed;
  return worst;
}

void LocalAccount::Kill() {
  for (auto& c : regions_) c->Kill();
}

bool LocalAccount::running() const {
  for (const auto& c : regions_) {
    if (c->running()) return true;
  }
  return false;
}

client::ClientOptions LocalAccount::client_options(int r) const {
  client::ClientOptions o = region(r).failover_client_options();
  o.discover_topology = true;
  o.preferred_regions = {RegionName(r)};
  return o;
}

}  // namespace bulwark::chaos
