#include "server/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "security/ip_allowlist.h"

namespace bulwark::server {
namespace {

using Setter = std::function<Status(const YAML::Node&, NodeConfig&)>;

Status Bad(const std::string& key, const std::string& why) {
  return Status::InvalidArgument("config key '" + key + "': " + why);
}

Setter String(const std::string& key, std::string NodeConfig::*field) {
  return [key, field](const YAML::Node& n, NodeConfig& c) -> Status {
    if (!n.IsScalar()) return Bad(key, "must be a string");
    c.*field = n.Scalar();
    return Status::Ok();
  };
}

Setter Bool(const std::string& key, bool NodeConfig::*field) {
  return [key, field](const YAML::Node& n, NodeConfig& c) -> Status {
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) return Bad(key, "must be true or false");
    c.*field = v;
    return Status::Ok();
  };
}

// A string or a boolean anywhere in NodeConfig (via `field`); `what` says
// what a string must be.
Setter TextAt(const std::string& key, std::function<std::string&(NodeConfig&)> field, const std::string& what) {
  return [=](const YAML::Node& n, NodeConfig& c) -> Status {
    if (!n.IsScalar()) return Bad(key, "must be " + what);
    field(c) = n.Scalar();
    return Status::Ok();
  };
}

Setter FlagAt(const std::string& key, std::function<bool&(NodeConfig&)> field) {
  return [=](const YAML::Node& n, NodeConfig& c) -> Status {
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) return Bad(key, "must be true or false");
    field(c) = v;
    return Status::Ok();
  };
}

Setter Limit(const std::string& key, uint32_t Limits::*field, uint32_t min, uint32_t max) {
  return [=](const YAML::Node& n, NodeConfig& c) -> Status {
    long long v = 0;
    if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v)) return Bad(key, "must be an integer");
    if (v < min || v > max) {
      return Bad(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    c.limits.*field = static_cast<uint32_t>(v);
    return Status::Ok();
  };
}

// A number in [min, max] for a field anywhere in NodeConfig (via `field`).
template <typename T>
Setter Number(const std::string& key, std::function<T&(NodeConfig&)> field, long long min, long long max) {
  return [=](const YAML::Node& n, NodeConfig& c) -> Status {
    long long v = 0;
    if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v)) return Bad(key, "must be an integer");
    if (v < min || v > max) return Bad(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    field(c) = static_cast<T>(v);
    return Status::Ok();
  };
}

Setter Millis(const std::string& key, std::chrono::milliseconds DefenseOptions::*field, long long min, long long max) {
  return [=](const YAML::Node& n, NodeConfig& c) -> Status {
    long long v = 0;
    if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v)) return Bad(key, "must be an integer (ms)");
    if (v < min || v > max) return Bad(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    c.defense.*field = std::chrono::milliseconds(v);
    return Status::Ok();
  };
}

template <typename T>
Setter Replica(const std::string& key, T ReplicaConfig::*field, uint64_t min, uint64_t max) {
  return [=](const YAML::Node& n, NodeConfig& c) -> Status {
    long long v = 0;
    if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v)) return Bad(key, "must be an integer");
    if (v < 0 || static_cast<uint64_t>(v) < min || static_cast<uint64_t>(v) > max) {
      return Bad(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    c.replica.*field = static_cast<T>(v);
    return Status::Ok();
  };
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

const std::map<std::string, Setter>& Setters() {
  static const std::map<std::string, Setter> setters = {
      {"node_id", String("node_id", &NodeConfig::node_id)},
      {"region", String("region", &NodeConfig::region)},
      {"listen", String("listen", &NodeConfig::listen_address)},
      {"metrics_listen", String("metrics_listen", &NodeConfig::metrics_address)},
      {"data_dir", String("data_dir", &NodeConfig::data_dir)},
      {"master_key_uri", String("master_key_uri", &NodeConfig::master_key_uri)},
      {"insecure", Bool("insecure", &NodeConfig::insecure)},
      {"tls.cert_file", String("tls.cert_file", &NodeConfig::tls_cert_file)},
      {"tls.key_file", String("tls.key_file", &NodeConfig::tls_key_file)},
      {"tls.ca_file", String("tls.ca_file", &NodeConfig::tls_ca_file)},
      {"tls.min_version",
       [](const YAML::Node& n, NodeConfig& c) -> Status {
         auto v = n.IsScalar() ? security::ParseTlsVersion(n.Scalar())
                               : Result<security::TlsVersion>(Status::InvalidArgument(""));
         if (!v.ok()) return Bad("tls.min_version", "must be \"1.2\" or \"1.3\"");
         c.tls_min_version = *v;
         return Status::Ok();
       }},
      {"account_key_file", String("account_key_file", &NodeConfig::account_key_file)},
      {"sync_writes", Bool("sync_writes", &NodeConfig::sync_writes)},
      {"log_level", String("log_level", &NodeConfig::log_level)},
      {"consistency.default",
       [](const YAML::Node& n, NodeConfig& c) -> Status {
         auto level = n.IsScalar() ? ParseConsistency(n.Scalar()) : std::nullopt;
         if (!level) {
           return Bad("consistency.default", "must be Strong, BoundedStaleness, Session, ConsistentPrefix or Eventual");
         }
         c.default_consistency = *level;
         return Status::Ok();
       }},
      {"limits.max_message_bytes",
       Limit("limits.max_message_bytes", &Limits::max_message_bytes, 64 * 1024, 64 * 1024 * 1024)},
      {"limits.max_concurrent_streams",
       Limit("limits.max_concurrent_streams", &Limits::max_concurrent_streams, 1, 100'000)},
      {"limits.request_deadline_ms", Limit("limits.request_deadline_ms", &Limits::request_deadline_ms, 10, 600'000)},
      {"replica.id", Replica("replica.id", &ReplicaConfig::id, 1, 1'000'000)},
      {"defense.failures_to_block",
       Number<uint32_t>(
           "defense.failures_to_block", [](NodeConfig& c) -> uint32_t& { return c.defense.failures_to_block; }, 0,
           1'000'000)},
      {"defense.failure_window_ms",
       Millis("defense.failure_window_ms", &DefenseOptions::failure_window, 100, 86'400'000)},
      {"defense.block_base_ms", Millis("defense.block_base_ms", &DefenseOptions::block_base, 100, 86'400'000)},
      {"defense.block_max_ms", Millis("defense.block_max_ms", &DefenseOptions::block_max, 100, 7 * 86'400'000LL)},
      {"defense.alert_failures_per_minute",
       Number<uint32_t>(
           "defense.alert_failures_per_minute",
           [](NodeConfig& c) -> uint32_t& { return c.defense.alert_failures_per_minute; }, 0, 100'000'000)},
      {"defense.principal_requests_per_second",
       Number<double>(
           "defense.principal_requests_per_second",
           [](NodeConfig& c) -> double& { return c.defense.principal_requests_per_second; }, 0, 10'000'000)},
      {"defense.principal_burst",
       Number<double>(
           "defense.principal_burst", [](NodeConfig& c) -> double& { return c.defense.principal_burst; }, 0,
           100'000'000)},
      {"audit.enabled", Bool("audit.enabled", &NodeConfig::audit_enabled)},
      {"audit.include_reads", Bool("audit.include_reads", &NodeConfig::audit_reads)},
      {"audit.retention_days",
       Number<uint32_t>(
           "audit.retention_days", [](NodeConfig& c) -> uint32_t& { return c.audit_retention_days; }, 0, 3650)},
      {"replica.peer_listen",
       [](const YAML::Node& n, NodeConfig& c) -> Status {
         if (!n.IsScalar()) return Bad("replica.peer_listen", "must be a string");
         c.replica.peer_address = n.Scalar();
         return Status::Ok();
       }},
      {"replica.members",
       [](const YAML::Node& n, NodeConfig& c) -> Status {
         if (!n.IsScalar()) return Bad("replica.members", "must be a string like 1=ip:port,2=ip:port");
         c.replica.members = n.Scalar();
         return Status::Ok();
       }},
      {"replica.peer_allowlist",
       [](const YAML::Node& n, NodeConfig& c) -> Status {
         if (!n.IsScalar()) return Bad("replica.peer_allowlist", "must be a string like 127.0.1.0/24,10.0.0.5");
         c.replica.peer_allowlist.clear();
         std::stringstream in(n.Scalar());
         for (std::string item; std::getline(in, item, ',');) {
           item.erase(0, item.find_first_not_of(' '));
           item.erase(item.find_last_not_of(' ') + 1);
           if (item.empty()) continue;
           auto range = security::ParseCidr(item);
           if (!range.ok()) return Bad("replica.peer_allowlist", range.status().message());
           c.replica.peer_allowlist.push_back(security::FormatCidr(*range));
         }
         return Status::Ok();
       }},
      {"replica.join",
       [](const YAML::Node& n, NodeConfig& c) -> Status {
         bool v = false;
         if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) return Bad("replica.join", "must be true or false");
         c.replica.join = v;
         return Status::Ok();
       }},
      {"replica.tick_ms", Replica("replica.tick_ms", &ReplicaConfig::tick_ms, 5, 10'000)},
      {"replica.election_ticks", Replica("replica.election_ticks", &ReplicaConfig::election_ticks, 3, 1000)},
      {"replica.snapshot_entries",
       Replica("replica.snapshot_entries", &ReplicaConfig::snapshot_entries, 100, 100'000'000)},
      {"control.members", TextAt(
                              "control.members", [](NodeConfig& c) -> std::string& { return c.control.members; },
                              "a list like 1=r1/ip:port,2=r2/ip:port,3=witness/ip:port")},
      {"control.id", Number<uint64_t>(
                         "control.id", [](NodeConfig& c) -> uint64_t& { return c.control.id; }, 0, 1'000'000)},
      {"control.grace_ms",
       Number<uint32_t>(
           "control.grace_ms", [](NodeConfig& c) -> uint32_t& { return c.control.grace_ms; }, 3'000, 600'000)},
      {"control.lease_ms",
       Number<uint32_t>(
           "control.lease_ms", [](NodeConfig& c) -> uint32_t& { return c.control.lease_ms; }, 500, 60'000)},
      {"witness", Bool("witness", &NodeConfig::witness)},
      {"geo.write_region",
       TextAt(
           "geo.write_region", [](NodeConfig& c) -> std::string& { return c.geo.write_region; }, "a region name")},
      {"geo.strong_regions",
       [](const YAML::Node& n, NodeConfig& c) -> Status {
         if (!n.IsScalar()) return Bad("geo.strong_regions", "must be a list like r1,r2");
         c.geo.strong_regions = SplitList(n.Scalar());
         return Status::Ok();
       }},
      {"geo.bounded_max_writes",
       Number<uint64_t>(
           "geo.bounded_max_writes", [](NodeConfig& c) -> uint64_t& { return c.geo.bounded_max_writes; },
           kMinBoundedWrites, 1'000'000'000)},
      {"geo.bounded_max_lag_s",
       Number<uint32_t>(
           "geo.bounded_max_lag_s", [](NodeConfig& c) -> uint32_t& { return c.geo.bounded_max_lag_s; }, kMinBoundedLagS,
           86'400)},
      {"geo.heartbeat_ms",
       Number<uint32_t>(
           "geo.heartbeat_ms", [](NodeConfig& c) -> uint32_t& { return c.geo.heartbeat_ms; }, 10, 10'000)},
      {"geo.lease_ms", Number<uint32_t>(
                           "geo.lease_ms", [](NodeConfig& c) -> uint32_t& { return c.geo.lease_ms; }, 500, 60'000)},
      {"geo.removal_ms",
       Number<uint32_t>(
           "geo.removal_ms", [](NodeConfig& c) -> uint32_t& { return c.geo.removal_ms; }, 1000, 600'000)},
      {"backup.enabled", FlagAt("backup.enabled", [](NodeConfig& c) -> bool& { return c.backup.enabled; })},
      {"backup.interval_s",
       Number<uint32_t>(
           "backup.interval_s", [](NodeConfig& c) -> uint32_t& { return c.backup.interval_s; }, 60, 30 * 86'400)},
      {"backup.retention",
       Number<uint32_t>(
           "backup.retention", [](NodeConfig& c) -> uint32_t& { return c.backup.retention; }, 1, 1000)},
      {"backup.dir", TextAt(
                         "backup.dir", [](NodeConfig& c) -> std::string& { return c.backup.dir; }, "a path")},
      {"backup.geo_dir",
       TextAt(
           "backup.geo_dir", [](NodeConfig& c) -> std::string& { return c.backup.geo_dir; }, "a path")},
      {"backup.geo_region",
       TextAt(
           "backup.geo_region", [](NodeConfig& c) -> std::string& { return c.backup.geo_region; }, "a region name")},
      {"backup.continuous", FlagAt("backup.continuous", [](NodeConfig& c) -> bool& { return c.backup.continuous; })},
      {"backup.archive_interval_s",
       Number<uint32_t>(
           "backup.archive_interval_s", [](NodeConfig& c) -> uint32_t& { return c.backup.archive_interval_s; }, 1,
           100)},
      {"backup.continuous_retention_days",
       Number<uint32_t>(
           "backup.continuous_retention_days",
           [](NodeConfig& c) -> uint32_t& { return c.backup.continuous_retention_days; }, 7, 30)},
      {"limits.shutdown_grace_ms", Limit("limits.shutdown_grace_ms", &Limits::shutdown_grace_ms, 0, 600'000)},
  };
  return setters;
}

bool ValidRegionName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

// "geo.regions.<name>.<field>": regions are named by the operator, so these
// keys are not in the fixed table.
Status SetRegionKey(const std::string& key, const YAML::Node& n, NodeConfig& c) {
  const std::string rest = key.substr(std::string("geo.regions.").size());
  const size_t dot = rest.rfind('.');
  if (dot == std::string::npos) return Bad(key, "expected geo.regions.<name>.<field>");
  const std::string name = rest.substr(0, dot), field = rest.substr(dot + 1);
  if (!ValidRegionName(name)) return Bad(key, "a region name has 1-64 letters, digits, '-' or '_'");
  if (!n.IsScalar()) return Bad(key, "must be a scalar");
  auto it = std::find_if(c.geo.regions.begin(), c.geo.regions.end(), [&](const auto& r) { return r.name == name; });
  if (it == c.geo.regions.end()) {
    RegionConfig added;
    added.name = name;
    c.geo.regions.push_back(std::move(added));
    it = std::prev(c.geo.regions.end());
  }
  if (field == "peers" || field == "endpoints") {
    auto list = SplitList(n.Scalar());
    for (const auto& a : list) {
      if (a.find(':') == std::string::npos) return Bad(key, "'" + a + "' is not host:port");
    }
    (field == "peers" ? it->peers : it->endpoints) = std::move(list);
    return Status::Ok();
  }
  long long v = 0;
  if (!YAML::convert<long long>::decode(n, v)) return Bad(key, "must be an integer");
  if (field == "priority") {
    if (v < 0 || v > 1000) return Bad(key, "must be between 0 and 1000");
    it->priority = static_cast<int>(v);
    return Status::Ok();
  }
  if (field == "delay_ms") {
    if (v < 0 || v > 60'000) return Bad(key, "must be between 0 and 60000");
    it->link_delay_ms = static_cast<uint32_t>(v);
    return Status::Ok();
  }
  return Bad(key, "unknown region field (peers, endpoints, priority, delay_ms)");
}

// Walks nested maps, naming each leaf by its dotted path.
Status Apply(const YAML::Node& node, const std::string& prefix, NodeConfig& config) {
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) return Status::InvalidArgument("config has a non-string key under '" + prefix + "'");
    const std::string key = prefix.empty() ? entry.first.Scalar() : prefix + "." + entry.first.Scalar();
    if (entry.second.IsMap()) {
      BULWARK_RETURN_IF_ERROR(Apply(entry.second, key, config));
      continue;
    }
    if (key.rfind("geo.regions.", 0) == 0) {
      BULWARK_RETURN_IF_ERROR(SetRegionKey(key, entry.second, config));
      continue;
    }
    auto it = Setters().find(key);
    if (it == Setters().end()) return Status::InvalidArgument("unknown config key '" + key + "'");
    BULWARK_RETURN_IF_ERROR(it->second(entry.second, config));
  }
  return Status::Ok();
}

}  // namespace

Status ParseConfigYaml(std::string_view yaml_text, NodeConfig& config) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument("config is not valid YAML: " + std::string(e.what()));
  }
  if (root.IsNull()) return Status::Ok();
  if (!root.IsMap()) return Status::InvalidArgument("config must be a YAML map of keys to values");
  try {
    return Apply(root, "", config);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument("config is malformed: " + std::string(e.what()));
  }
}

Status ApplyConfigOverride(std::string_view key_equals_value, NodeConfig& config) {
  const size_t eq = key_equals_value.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Status::InvalidArgument("--set takes key=value, e.g. defense.block_base_ms=500");
  }
  const std::string key(key_equals_value.substr(0, eq));
  if (key.rfind("geo.regions.", 0) == 0) {
    return SetRegionKey(key, YAML::Node(std::string(key_equals_value.substr(eq + 1))), config);
  }
  auto it = Setters().find(key);
  if (it == Setters().end()) return Status::InvalidArgument("unknown config key '" + key + "'");
  // The value is taken as a plain scalar, not parsed as YAML: "[::1]:7100"
  // is an address, not a flow sequence.
  return it->second(YAML::Node(std::string(key_equals_value.substr(eq + 1))), config);
}

Status LoadConfigFile(const std::string& path, NodeConfig& config) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read config file '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfigYaml(text.str(), config).WithContext(path);
}

Result<std::map<uint64_t, std::string>> ParseMembers(const ReplicaConfig& r) {
  std::map<uint64_t, std::string> out;
  if (r.members.empty()) {
    out[r.id] = r.peer_address;
    return out;
  }
  std::stringstream in(r.members);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto eq = item.find('=');
    uint64_t id = 0;
    try {
      if (eq == std::string::npos) throw std::invalid_argument("no =");
      size_t used = 0;
      id = std::stoull(item.substr(0, eq), &used);
      if (used != eq || id == 0) throw std::invalid_argument("bad id");
    } catch (const std::exception&) {
      return Bad("replica.members", "'" + item + "' is not ID=ip:port with an ID >= 1");
    }
    const std::string addr = item.substr(eq + 1);
    if (addr.find(':') == std::string::npos) return Bad("replica.members", "'" + item + "' needs ip:port");
    if (!out.emplace(id, addr).second) return Bad("replica.members", "names node " + std::to_string(id) + " twice");
  }
  auto self = out.find(r.id);
  if (self == out.end())
    return Bad("replica.members", "does not name this node (replica.id " + std::to_string(r.id) + ")");
  if (self->second != r.peer_address) {
    return Bad("replica.members",
               "gives this node the address " + self->second + ", but replica.peer_listen is " + r.peer_address);
  }
  return out;
}

Result<std::vector<ControlVoter>> ParseControlMembers(const ControlConfig& control) {
  std::vector<ControlVoter> out;
  for (const std::string& item : SplitList(control.members)) {
    ControlVoter v;
    const auto eq = item.find('='), slash = item.find('/');
    try {
      if (eq == std::string::npos) throw std::invalid_argument("no =");
      size_t used = 0;
      v.id = std::stoull(item.substr(0, eq), &used);
      if (used != eq || v.id == 0) throw std::invalid_argument("bad id");
    } catch (const std::exception&) {
      return Bad("control.members", "'" + item + "' is not ID=DOMAIN/ip:port with an ID >= 1");
    }
    if (slash == std::string::npos || slash < eq) {
      return Bad("control.members", "'" + item + "' is not ID=DOMAIN/ip:port (the domain: a region, or 'witness')");
    }
    v.domain = item.substr(eq + 1, slash - eq - 1);
    v.address = item.substr(slash + 1);
    if (!ValidRegionName(v.domain)) return Bad("control.members", "'" + item + "' names no valid fault domain");
    if (v.address.find(':') == std::string::npos) return Bad("control.members", "'" + item + "' needs ip:port");
    for (const auto& o : out) {
      if (o.id == v.id) return Bad("control.members", "names voter " + std::to_string(v.id) + " twice");
      if (o.address == v.address) return Bad("control.members", "gives two voters the address " + v.address);
    }
    out.push_back(std::move(v));
  }
  return out;
}

Status ValidateControl(const NodeConfig& c) {
  const ControlConfig& k = c.control;
  if (c.witness && !k.configured()) return Bad("witness", "a witness needs control.members and control.id");
  if (!k.configured()) {
    if (k.id != 0) return Bad("control.id", "needs control.members");
    return Status::Ok();
  }
  if (!c.geo.enabled() && !c.witness) return Bad("control.members", "a control group needs geo.regions");
  BULWARK_ASSIGN_OR_RETURN(auto voters, ParseControlMembers(k));
  if (c.witness && k.id == 0) return Bad("control.id", "a witness is a control group voter: set its id");
  if (k.id != 0 && std::none_of(voters.begin(), voters.end(), [&](const auto& v) { return v.id == k.id; })) {
    return Bad("control.id", std::to_string(k.id) + " is not one of control.members");
  }
  if (k.lease_ms < 500) return Bad("control.lease_ms", "must be at least 500");
  if (k.grace_ms < k.lease_ms + kControlLeaseMarginMs) {
    return Bad("control.grace_ms", "must exceed control.lease_ms by at least " + std::to_string(kControlLeaseMarginMs) +
                                       " ms (the old write region's lease must end before another region writes)");
  }
  return Status::Ok();
}

bool IsValidRegionName(std::string_view name) { return ValidRegionName(name); }

Status ValidateGeo(const NodeConfig& c) {
  const GeoConfig& g = c.geo;
  if (!g.enabled()) return Status::Ok();
  BULWARK_RETURN_IF_ERROR(ValidateRegions(g));
  const bool self = std::any_of(g.regions.begin(), g.regions.end(), [&](const auto& r) { return r.name == c.region; });
  if (!self && !c.witness) return Bad("region", "'" + c.region + "' is not one of the regions under geo.regions");
  if (g.removal_ms <= g.lease_ms + 2000) {
    return Bad("geo.removal_ms", "must exceed geo.lease_ms by more than the 2000 ms request timeout");
  }
  return Status::Ok();
}

Status ValidateRegions(const GeoConfig& g) {
  std::set<int> priorities;
  std::set<std::string> names;
  for (const RegionConfig& r : g.regions) {
    if (!ValidRegionName(r.name))
      return Bad("geo.regions." + r.name, "a region name has 1-64 letters, digits, '-' or '_'");
    if (!names.insert(r.name).second) return Bad("geo.regions." + r.name, "two regions have that name");
    if (r.peers.empty()) return Bad("geo.regions." + r.name + ".peers", "must list the region's peer addresses");
    if (r.endpoints.empty()) {
      return Bad("geo.regions." + r.name + ".endpoints", "must list the region's client addresses");
    }
    if (r.priority >= 0 && !priorities.insert(r.priority).second) {
      return Bad("geo.regions." + r.name + ".priority", "two regions have priority " + std::to_string(r.priority));
    }
  }
  auto named = [&](const std::string& n) {
    return std::any_of(g.regions.begin(), g.regions.end(), [&](const auto& r) { return r.name == n; });
  };
  if (!g.write_region.empty() && !named(g.write_region)) {
    return Bad("geo.write_region", "'" + g.write_region + "' is not one of the regions");
  }
  for (const auto& s : g.strong_regions) {
    if (!named(s)) return Bad("geo.strong_regions", "'" + s + "' is not one of the regions");
  }
  return Status::Ok();
}

// Regions in failover-priority order; the write region defaults to the first.
void NormalizeGeo(GeoConfig& g) {
  std::stable_sort(g.regions.begin(), g.regions.end(), [](const RegionConfig& a, const RegionConfig& b) {
    const int pa = a.priority < 0 ? 1'000'000 : a.priority, pb = b.priority < 0 ? 1'000'000 : b.priority;
    return pa < pb;
  });
  for (size_t i = 0; i < g.regions.size(); ++i) g.regions[i].priority = static_cast<int>(i);
  if (g.write_region.empty() && !g.regions.empty()) g.write_region = g.regions.front().name;
  if (g.strong_regions.empty()) {
    for (const auto& r : g.regions) g.strong_regions.push_back(r.name);
  }
}

Status ValidateConfig(const NodeConfig& c) {
  BULWARK_RETURN_IF_ERROR(ParseMembers(c.replica).status());
  if (c.replica.peer_address.find(':') == std::string::npos) return Bad("replica.peer_listen", "must be host:port");
  if (c.replica.peer_address == c.listen_address) return Bad("replica.peer_listen", "must differ from listen");
  if (c.replica.tick_ms < 5 || c.replica.tick_ms > 10'000) return Bad("replica.tick_ms", "must be between 5 and 10000");
  if (c.replica.snapshot_entries < 100) return Bad("replica.snapshot_entries", "must be at least 100");
  if (c.node_id.empty()) return Bad("node_id", "must not be empty");
  if (c.listen_address.find(':') == std::string::npos) return Bad("listen", "must be host:port");
  if (!c.metrics_address.empty() && c.metrics_address.find(':') == std::string::npos) {
    return Bad("metrics_listen", "must be host:port, or empty to disable");
  }
  if (c.data_dir.empty()) return Bad("data_dir", "must not be empty");
  if (c.master_key_uri.empty()) return Bad("master_key_uri", "is required (file:PATH, env:VAR or command:PATH ARGS)");
  if (!c.insecure && (c.tls_cert_file.empty() || c.tls_key_file.empty())) {
    return Bad("tls.cert_file", "TLS is on by default: set tls.cert_file and tls.key_file, or pass --insecure");
  }
  BULWARK_RETURN_IF_ERROR(ValidateGeo(c));
  BULWARK_RETURN_IF_ERROR(ValidateControl(c));
  if (c.backup.continuous_retention_days != 7 && c.backup.continuous_retention_days != 30) {
    return Bad("backup.continuous_retention_days", "must be 7 or 30");
  }
  if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" && c.log_level != "error") {
    return Bad("log_level", "must be debug, info, warn or error");
  }
  return Status::Ok();
}

}  // namespace bulwark::server
