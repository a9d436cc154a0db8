#include "server/regions.h"

#include <algorithm>
#include <chrono>
#include <set>

#include <nlohmann/json.hpp>

namespace bulwark::server {
namespace {

using nlohmann::json;

// "host:port" with a port of 1..65535.
bool ValidAddress(const std::string& a) {
  const size_t colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= a.size() || a.size() > 255) return false;
  const std::string port = a.substr(colon + 1);
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  const int p = std::stoi(port);
  return p >= 1 && p <= 65535;
}

Result<std::vector<std::string>> Strings(const json& j, const std::string& what) {
  if (!j.is_array()) return Status::InvalidArgument("regions record: " + what + " is not a list");
  std::vector<std::string> out;
  for (const auto& v : j) {
    if (!v.is_string()) return Status::InvalidArgument("regions record: " + what + " holds a non-string");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Status CheckAddresses(const RegionConfig& r) {
  for (const auto* list : {&r.peers, &r.endpoints}) {
    for (const std::string& a : *list) {
      if (!ValidAddress(a)) return Status::InvalidArgument("region " + r.name + ": '" + a + "' is not host:port");
    }
  }
  return Status::Ok();
}

int64_t UnixNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string EncodeRegions(const GeoConfig& geo, const GeoConfig* before) {
  json regions = json::array();
  for (const RegionConfig& r : geo.regions) {
    regions.push_back({{"name", r.name}, {"priority", r.priority}, {"peers", r.peers}, {"endpoints", r.endpoints}});
  }
  json removed = json::array();
  if (before != nullptr) {
    for (const RegionConfig& r : before->regions) {
      const bool kept =
          std::any_of(geo.regions.begin(), geo.regions.end(), [&](const auto& n) { return n.name == r.name; });
      if (!kept) removed.push_back(r.name);
    }
  }
  json out{{"regions", regions},
           {"strong", geo.strong_regions},
           {"removed", removed},
           {"write", geo.write_region},
           {"epoch", geo.epoch}};
  if (geo.last_failover.epoch > 0) {
    const auto& f = geo.last_failover;
    out["last_failover"] = {
        {"from", f.from}, {"to", f.to}, {"reason", f.reason}, {"at_ms", f.at_unix_ms}, {"epoch", f.epoch}};
  }
  return out.dump();
}

Result<GeoConfig> DecodeRegions(std::string_view record, const GeoConfig& geo) {
  const json j = json::parse(record, nullptr, false);
  if (!j.is_object() || !j.contains("regions") || !j.contains("strong")) {
    return Status::InvalidArgument("regions record: not an object with regions and strong");
  }
  GeoConfig out = geo;
  out.regions.clear();
  BULWARK_ASSIGN_OR_RETURN(out.strong_regions, Strings(j["strong"], "strong"));
  if (!j["regions"].is_array()) return Status::InvalidArgument("regions record: regions is not a list");
  for (const json& r : j["regions"]) {
    if (!r.is_object() || !r.contains("name") || !r["name"].is_string() || !r.contains("priority") ||
        !r["priority"].is_number_integer() || !r.contains("peers") || !r.contains("endpoints")) {
      return Status::InvalidArgument("regions record: a region lacks name, priority, peers or endpoints");
    }
    RegionConfig rc;
    rc.name = r["name"].get<std::string>();
    rc.priority = r["priority"].get<int>();
    BULWARK_ASSIGN_OR_RETURN(rc.peers, Strings(r["peers"], "peers"));
    BULWARK_ASSIGN_OR_RETURN(rc.endpoints, Strings(r["endpoints"], "endpoints"));
    for (const RegionConfig& before : geo.regions) {
      if (before.name == rc.name) rc.link_delay_ms = before.link_delay_ms;
    }
    out.regions.push_back(std::move(rc));
  }
  if (out.regions.empty()) return Status::InvalidArgument("regions record: no regions");
  // A record written before failover existed names neither: the
  // configuration's write region at epoch 1.
  if (j.contains("write")) {
    if (!j["write"].is_string()) return Status::InvalidArgument("regions record: write is not a region name");
    out.write_region = j["write"].get<std::string>();
  }
  out.epoch = 1;
  if (j.contains("epoch")) {
    if (!j["epoch"].is_number_unsigned() || j["epoch"].get<uint64_t>() == 0) {
      return Status::InvalidArgument("regions record: epoch is not a positive integer");
    }
    out.epoch = j["epoch"].get<uint64_t>();
  }
  out.last_failover = {};
  if (j.contains("last_failover")) {
    const json& f = j["last_failover"];
    if (!f.is_object() || !f.contains("from") || !f["from"].is_string() || !f.contains("to") || !f["to"].is_string() ||
        !f.contains("reason") || !f["reason"].is_string() || !f.contains("at_ms") || !f["at_ms"].is_number_integer() ||
        !f.contains("epoch") || !f["epoch"].is_number_unsigned()) {
      return Status::InvalidArgument("regions record: last_failover is malformed");
    }
    out.last_failover = {f["from"].get<std::string>(), f["to"].get<std::string>(), f["reason"].get<std::string>(),
                         f["at_ms"].get<int64_t>(), f["epoch"].get<uint64_t>()};
  }
  if (out.strong_regions.empty()) return Status::InvalidArgument("regions record: an empty strong set");
  NormalizeGeo(out);
  BULWARK_RETURN_IF_ERROR(ValidateRegions(out));
  return out;
}

Result<GeoConfig> ChangeRegions(const GeoConfig& current, const v1::ChangeRegionsRequest& change) {
  GeoConfig next = current;
  auto find = [&](const std::string& name) {
    return std::find_if(next.regions.begin(), next.regions.end(), [&](const auto& r) { return r.name == name; });
  };
  auto move_to = [&](std::vector<RegionConfig>::iterator it, int priority) {
    RegionConfig r = *it;
    next.regions.erase(it);
    const size_t at = priority < 0 ? next.regions.size() : std::min<size_t>(priority, next.regions.size());
    next.regions.insert(next.regions.begin() + static_cast<std::ptrdiff_t>(at), std::move(r));
    for (size_t i = 0; i < next.regions.size(); ++i) next.regions[i].priority = static_cast<int>(i);
  };
  switch (change.change_case()) {
    case v1::ChangeRegionsRequest::kAdd: {
      const v1::RegionSpec& spec = change.add();
      if (!IsValidRegionName(spec.name())) {
        return Status::InvalidArgument("a region name has 1-64 letters, digits, '-' or '_'");
      }
      if (find(spec.name()) != next.regions.end()) {
        return Status::AlreadyExists("region " + spec.name() + " is already in the account");
      }
      RegionConfig r;
      r.name = spec.name();
      r.peers.assign(spec.peers().begin(), spec.peers().end());
      r.endpoints.assign(spec.endpoints().begin(), spec.endpoints().end());
      if (r.peers.empty() || r.endpoints.empty()) {
        return Status::InvalidArgument("region " + r.name + " needs its nodes' peer and client addresses");
      }
      BULWARK_RETURN_IF_ERROR(CheckAddresses(r));
      std::set<std::string> taken;
      for (const auto& other : next.regions) taken.insert(other.peers.begin(), other.peers.end());
      for (const auto& p : r.peers) {
        if (taken.count(p)) return Status::AlreadyExists("peer address " + p + " already belongs to a region");
      }
      next.regions.push_back(std::move(r));
      move_to(std::prev(next.regions.end()), spec.priority() > 0 ? static_cast<int>(spec.priority()) : -1);
      if (spec.strong()) next.strong_regions.push_back(spec.name());
      break;
    }
    case v1::ChangeRegionsRequest::kRemove: {
      auto it = find(change.remove());
      if (it == next.regions.end()) return Status::NotFound("region " + change.remove() + " is not in the account");
      if (change.remove() == next.write_region) {
        return Status::FailedPrecondition("region " + change.remove() +
                                          " is the write region: fail over to another region first");
      }
      next.regions.erase(it);
      std::erase(next.strong_regions, change.remove());
      if (next.strong_regions.empty()) {
        return Status::FailedPrecondition("removing " + change.remove() + " would leave the strong quorum set empty");
      }
      for (size_t i = 0; i < next.regions.size(); ++i) next.regions[i].priority = static_cast<int>(i);
      break;
    }
    case v1::ChangeRegionsRequest::kSetPriority: {
      if (change.set_priority().priority() == 0) {
        return Status::InvalidArgument("priority 0 is the write region's: a read region's priority is at least 1");
      }
      if (change.set_priority().name() == next.write_region) {
        return Status::FailedPrecondition("the write region stays first; fail over to move it");
      }
      auto it = find(change.set_priority().name());
      if (it == next.regions.end()) {
        return Status::NotFound("region " + change.set_priority().name() + " is not in the account");
      }
      move_to(it, static_cast<int>(change.set_priority().priority()));
      break;
    }
    case v1::ChangeRegionsRequest::kFailoverTo: {
      const std::string& to = change.failover_to();
      auto it = find(to);
      if (it == next.regions.end()) return Status::NotFound("region " + to + " is not in the account");
      if (to == next.write_region) return Status::FailedPrecondition("region " + to + " is already the write region");
      // The new write region goes first; the others keep their order, so the
      // old write region is the first to fail over to (and is not promoted
      // back by itself).
      next.last_failover = {next.write_region, to, "manual: bulwark failover --to " + to, UnixNowMs(), next.epoch + 1};
      next.write_region = to;
      ++next.epoch;
      move_to(it, 0);
      break;
    }
    default:
      return Status::InvalidArgument("a region change names add, remove, set_priority or failover_to");
  }
  BULWARK_RETURN_IF_ERROR(ValidateRegions(next));
  return next;
}

Status CheckFences(const GeoConfig& geo, const std::vector<storage::GeoFence>& fences) {
  for (const storage::GeoFence& f : fences) {
    const std::string shown = "the geo-fence of " + f.resource + " (" + f.regions + ")";
    if (!storage::FenceAllows(f.regions, geo.write_region)) {
      return Status::FailedPrecondition("the write region " + geo.write_region + " would be outside " + shown +
                                        ": every write is made in the write region");
    }
    const std::string* outside = nullptr;
    for (const RegionConfig& r : geo.regions) {
      if (!storage::FenceAllows(f.regions, r.name)) {
        if (outside == nullptr) outside = &r.name;
      } else if (outside != nullptr) {
        return Status::FailedPrecondition("region " + *outside + ", outside " + shown + ", would come before " +
                                          r.name + " in failover priority, so a failover could move the writes " +
                                          "out of the fence: give " + *outside + " a lower priority (a higher number)");
      }
    }
  }
  return Status::Ok();
}

std::vector<std::string> FenceWriters(const GeoConfig& geo, const std::vector<storage::GeoFence>& fences) {
  std::vector<std::string> out;
  if (fences.empty()) return out;
  for (const RegionConfig& r : geo.regions) {
    if (std::all_of(fences.begin(), fences.end(),
                    [&](const storage::GeoFence& f) { return storage::FenceAllows(f.regions, r.name); })) {
      out.push_back(r.name);
    }
  }
  return out;
}

}  // namespace bulwark::server
