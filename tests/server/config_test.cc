// Proves the node configuration: every key parses, unknown keys and bad values
// stop start-up with a message naming the key, and TLS is required by default.
#include <catch2/catch.hpp>

#include "server/config.h"

using namespace bulwark;
using namespace bulwark::server;

TEST_CASE("Config: every key parses, nested or dotted", "[server][config]") {
  NodeConfig c;
  const char* yaml = R"(
node_id: n7
region: eu-west
listen: 127.0.2.1:7200
metrics_listen: ""
data_dir: /var/lib/bulwark
master_key_uri: file:/etc/bulwark/master.key
insecure: false
tls:
  cert_file: /etc/bulwark/node.pem
  key_file: /etc/bulwark/node.key
  ca_file: /etc/bulwark/ca.pem
consistency:
  default: Eventual
sync_writes: true
log_level: warn
limits:
  max_message_bytes: 1048576
  max_concurrent_streams: 64
  request_deadline_ms: 5000
  shutdown_grace_ms: 2000
)";
  REQUIRE(ParseConfigYaml(yaml, c).ok());
  CHECK(c.node_id == "n7");
  CHECK(c.region == "eu-west");
  CHECK(c.metrics_address.empty());
  CHECK(c.tls_ca_file == "/etc/bulwark/ca.pem");
  CHECK(c.default_consistency == ConsistencyLevel::kEventual);
  CHECK(c.limits.max_message_bytes == 1048576);
  CHECK(c.limits.shutdown_grace_ms == 2000);
  CHECK(ValidateConfig(c).ok());
}

TEST_CASE("Config: unknown keys and bad values name the key", "[server][config][bad-input]") {
  struct Case {
    const char* yaml;
    const char* key;
  };
  for (const Case& k : {Case{"bogus: 1", "bogus"}, Case{"tls:\n  certfile: x", "tls.certfile"},
                        Case{"insecure: maybe", "insecure"}, Case{"limits:\n  max_message_bytes: 10", "max_message_bytes"},
                        Case{"limits:\n  request_deadline_ms: soon", "request_deadline_ms"},
                        Case{"consistency:\n  default: Linearizable", "consistency.default"},
                        Case{"node_id: [a, b]", "node_id"}}) {
    NodeConfig c;
    const Status s = ParseConfigYaml(k.yaml, c);
    INFO(k.yaml);
    REQUIRE(s.code() == Code::kInvalidArgument);
    CHECK(s.message().find(k.key) != std::string::npos);
  }
  NodeConfig c;
  CHECK(ParseConfigYaml("key: [unclosed", c).code() == Code::kInvalidArgument);
  CHECK(ParseConfigYaml("- a list", c).code() == Code::kInvalidArgument);
}

TEST_CASE("Config validation: TLS unless --insecure, a master key, sane addresses", "[server][config]") {
  NodeConfig c;
  c.master_key_uri = "env:KEY";
  auto s = ValidateConfig(c);
  REQUIRE(s.code() == Code::kInvalidArgument);
  CHECK(s.message().find("tls.cert_file") != std::string::npos);
  CHECK(s.message().find("--insecure") != std::string::npos);
  c.insecure = true;
  CHECK(ValidateConfig(c).ok());
  c.master_key_uri.clear();
  CHECK(ValidateConfig(c).message().find("master_key_uri") != std::string::npos);
  c.master_key_uri = "env:KEY";
  c.listen_address = "nocolon";
  CHECK(ValidateConfig(c).message().find("listen") != std::string::npos);
}
