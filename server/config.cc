#include "server/config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

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
      {"account_key_file", String("account_key_file", &NodeConfig::account_key_file)},
      {"sync_writes", Bool("sync_writes", &NodeConfig::sync_writes)},
      {"log_level", String("log_level", &NodeConfig::log_level)},
      {"consistency.default",
       [](const YAML::Node& n, NodeConfig& c) -> Status {
         auto level = n.IsScalar() ? ParseConsistency(n.Scalar()) : std::nullopt;
         if (!level) {
           return Bad("consistency.default",
                      "must be Strong, BoundedStaleness, Session, ConsistentPrefix or Eventual");
         }
         c.default_consistency = *level;
         return Status::Ok();
       }},
      {"limits.max_message_bytes", Limit("limits.max_message_bytes", &Limits::max_message_bytes, 64 * 1024,
                                         64 * 1024 * 1024)},
      {"limits.max_concurrent_streams",
       Limit("limits.max_concurrent_streams", &Limits::max_concurrent_streams, 1, 100'000)},
      {"limits.request_deadline_ms", Limit("limits.request_deadline_ms", &Limits::request_deadline_ms, 10, 600'000)},
      {"limits.shutdown_grace_ms", Limit("limits.shutdown_grace_ms", &Limits::shutdown_grace_ms, 0, 600'000)},
  };
  return setters;
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

Status LoadConfigFile(const std::string& path, NodeConfig& config) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read config file '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfigYaml(text.str(), config).WithContext(path);
}

Status ValidateConfig(const NodeConfig& c) {
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
  if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" && c.log_level != "error") {
    return Bad("log_level", "must be debug, info, warn or error");
  }
  return Status::Ok();
}

}  // namespace bulwark::server
