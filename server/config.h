#pragma once
// bulwarkd's configuration: one YAML file, overridden by flags.
//
// Every key is listed in docs/configuration.md. An unknown key or a bad value
// stops start-up with an error naming the key (InvalidArgument).

#include <cstdint>
#include <string>

#include "common/consistency.h"
#include "common/status.h"

namespace bulwark::server {

struct Limits {
  uint32_t max_message_bytes = 4 * 1024 * 1024;  // larger requests: RESOURCE_EXHAUSTED
  uint32_t max_concurrent_streams = 256;         // per connection
  uint32_t request_deadline_ms = 30'000;         // a request without a shorter deadline gets this one
  uint32_t shutdown_grace_ms = 10'000;           // in-flight requests get this long on SIGTERM
};

struct NodeConfig {
  std::string node_id = "node-1";
  std::string region = "local";
  std::string listen_address = "127.0.0.1:7100";
  std::string metrics_address = "127.0.0.1:7180";  // "" disables the HTTP port
  std::string data_dir = "bulwark-data";
  std::string master_key_uri;  // required
  bool insecure = false;       // plaintext gRPC: only on explicit request, loudly
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_file;       // the cluster CA (peers, later mutual TLS)
  std::string account_key_file;  // where the generated primary key is written once (0600)
  ConsistencyLevel default_consistency = ConsistencyLevel::kSession;
  bool sync_writes = true;
  std::string log_level = "info";
  Limits limits;
};

// Parses YAML text into `config`, on top of what it already holds.
Status ParseConfigYaml(std::string_view yaml_text, NodeConfig& config);
Status LoadConfigFile(const std::string& path, NodeConfig& config);
// Checks the whole configuration once flags are applied.
Status ValidateConfig(const NodeConfig& config);

}  // namespace bulwark::server
