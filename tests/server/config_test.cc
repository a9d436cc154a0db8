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
  for (const Case& k :
       {Case{"bogus: 1", "bogus"}, Case{"tls:\n  certfile: x", "tls.certfile"}, Case{"insecure: maybe", "insecure"},
        Case{"limits:\n  max_message_bytes: 10", "max_message_bytes"},
        Case{"limits:\n  request_deadline_ms: soon", "request_deadline_ms"},
        Case{"consistency:\n  default: Linearizable", "consistency.default"}, Case{"node_id: [a, b]", "node_id"}}) {
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

TEST_CASE("Config: replica keys parse, bad member lists and values name the key", "[server][config][bad-input]") {
  NodeConfig c;
  const char* yaml = R"(
replica:
  id: 2
  peer_listen: 127.0.1.2:7101
  members: 1=127.0.1.1:7101,2=127.0.1.2:7101,3=127.0.1.3:7101
  join: true
  tick_ms: 20
  election_ticks: 15
  snapshot_entries: 500
  peer_allowlist: 127.0.1.0/24, 10.0.0.5
)";
  REQUIRE(ParseConfigYaml(yaml, c).ok());
  CHECK(c.replica.id == 2);
  CHECK(c.replica.join);
  CHECK(c.replica.tick_ms == 20);
  CHECK(c.replica.election_ticks == 15);
  CHECK(c.replica.snapshot_entries == 500);
  CHECK(c.replica.peer_allowlist == std::vector<std::string>{"127.0.1.0/24", "10.0.0.5/32"});
  auto members = ParseMembers(c.replica);
  REQUIRE(members.ok());
  CHECK(members->size() == 3);
  CHECK(members->at(3) == "127.0.1.3:7101");

  struct Case {
    const char* yaml;
    const char* key;
  };
  for (const Case& k :
       {Case{"replica:\n  id: 0", "replica.id"}, Case{"replica:\n  id: many", "replica.id"},
        Case{"replica:\n  join: perhaps", "replica.join"}, Case{"replica:\n  tick_ms: 1", "replica.tick_ms"},
        Case{"replica:\n  snapshot_entries: 5", "replica.snapshot_entries"},
        Case{"replica:\n  members: [1, 2]", "replica.members"},
        Case{"replica:\n  peer_allowlist: 10.0.0.1/8", "replica.peer_allowlist"},
        Case{"replica:\n  peer_allowlist: [a, b]", "replica.peer_allowlist"}}) {
    NodeConfig bad;
    const Status s = ParseConfigYaml(k.yaml, bad);
    INFO(k.yaml);
    REQUIRE(s.code() == Code::kInvalidArgument);
    CHECK(s.message().find(k.key) != std::string::npos);
  }

  // Member lists that parse as strings but are wrong: each refused, naming the key.
  for (const char* list :
       {"1=127.0.0.1:7101,x=127.0.0.2:7101", "1=127.0.0.1:7101,0=127.0.0.2:7101", "1=127.0.0.1:7101,2=nocolon",
        "1=127.0.0.1:7101,1=127.0.0.2:7101", "2=127.0.0.2:7101", "1=127.0.0.9:7101"}) {
    ReplicaConfig r;
    r.id = 1;
    r.peer_address = "127.0.0.1:7101";
    r.members = list;
    auto parsed = ParseMembers(r);
    INFO(list);
    REQUIRE(parsed.status().code() == Code::kInvalidArgument);
    CHECK(parsed.status().message().find("replica.members") != std::string::npos);
  }
  // An empty list is this node alone.
  ReplicaConfig alone;
  auto self = ParseMembers(alone);
  REQUIRE(self.ok());
  CHECK(self->size() == 1);
  CHECK(self->at(1) == alone.peer_address);

  // Validation: the peer port may not be the client port.
  NodeConfig same;
  same.insecure = true;
  same.master_key_uri = "env:KEY";
  same.replica.peer_address = same.listen_address;
  same.replica.members = "";
  CHECK(ValidateConfig(same).message().find("replica.peer_listen") != std::string::npos);
}

TEST_CASE("Config: --set KEY=VALUE takes the file's keys and checks, and refuses what they refuse",
          "[server][config][bad-input]") {
  NodeConfig c;
  REQUIRE(ApplyConfigOverride("defense.block_base_ms=500", c).ok());
  CHECK(c.defense.block_base.count() == 500);
  REQUIRE(ApplyConfigOverride("listen=[::1]:7100", c).ok());  // a plain string, not a YAML sequence
  CHECK(c.listen_address == "[::1]:7100");
  REQUIRE(ApplyConfigOverride("tls.min_version=1.3", c).ok());
  CHECK(c.tls_min_version == security::TlsVersion::kTls13);
  for (const char* bad : {"defense.block_base_ms=abc", "defense.block_base_ms=5", "no.such.key=1", "no-equals", "=1",
                          "tls.min_version=1.1", "audit.enabled=maybe", "defense.principal_burst=-1"}) {
    INFO(bad);
    NodeConfig untouched;
    const Status s = ApplyConfigOverride(bad, untouched);
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(untouched.defense.block_base.count() == NodeConfig{}.defense.block_base.count());
    CHECK(untouched.tls_min_version == security::TlsVersion::kTls12);
  }
}

TEST_CASE("Config: geo regions parse and normalize, a broken topology is refused naming the key",
          "[server][config][bad-input]") {
  auto base = [] {
    NodeConfig c;
    c.master_key_uri = "file:/tmp/k";
    c.insecure = true;
    c.region = "west";
    return c;
  };
  NodeConfig c = base();
  REQUIRE(ParseConfigYaml(R"(
geo:
  regions:
    east: {peers: "10.0.2.1:7101,10.0.2.2:7101", endpoints: "10.0.2.1:7100", priority: 1}
    west: {peers: "10.0.1.1:7101", endpoints: "10.0.1.1:7100,10.0.1.2:7100", priority: 0}
  bounded_max_writes: 50
)",
                          c)
              .ok());
  REQUIRE(ValidateConfig(c).ok());
  NormalizeGeo(c.geo);
  REQUIRE(c.geo.regions.size() == 2);
  CHECK(c.geo.regions[0].name == "west");  // by priority
  CHECK(c.geo.write_region == "west");
  CHECK(c.geo.strong_regions == std::vector<std::string>{"west", "east"});
  CHECK(c.geo.regions[1].peers.size() == 2);
  CHECK(c.geo.bounded_max_writes == 50);
  // --set reaches the per-region keys too.
  REQUIRE(ApplyConfigOverride("geo.regions.east.delay_ms=20", c).ok());
  CHECK(c.geo.regions[1].link_delay_ms == 20);

  auto refused = [&](const std::string& yaml, const std::string& key) {
    NodeConfig bad = base();
    Status s = ParseConfigYaml(yaml, bad);
    if (s.ok()) s = ValidateConfig(bad);
    INFO(yaml << " -> " << s.ToString());
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(s.message().find(key) != std::string::npos);
  };
  refused("geo: {regions: {west: {peers: \"a:1\", endpoints: \"a:2\", colour: red}}}", "geo.regions.west.colour");
  refused("geo: {regions: {\"we st\": {peers: \"a:1\"}}}", "geo.regions.we st");
  refused("geo: {regions: {west: {peers: \"nohostport\", endpoints: \"a:2\"}}}", "geo.regions.west.peers");
  refused("geo: {regions: {east: {peers: \"a:1\", endpoints: \"a:2\"}}}", "'west' is not one of the regions");
  refused("geo: {regions: {west: {peers: \"a:1\"}}}", "geo.regions.west.endpoints");
  refused(
      "geo: {regions: {west: {peers: \"a:1\", endpoints: \"a:2\", priority: 0}, east: {peers: \"b:1\", endpoints: "
      "\"b:2\", priority: 0}}}",
      "two regions have priority 0");
  refused("geo: {regions: {west: {peers: \"a:1\", endpoints: \"a:2\"}}, write_region: north}", "geo.write_region");
  refused("geo: {regions: {west: {peers: \"a:1\", endpoints: \"a:2\"}}, strong_regions: \"west,south\"}",
          "geo.strong_regions");
  refused("geo: {bounded_max_writes: 9}", "geo.bounded_max_writes");
  refused("geo: {bounded_max_lag_s: 4}", "geo.bounded_max_lag_s");
  refused("geo: {regions: {west: {peers: \"a:1\", endpoints: \"a:2\"}}, lease_ms: 2000, removal_ms: 4000}",
          "geo.removal_ms");
}

TEST_CASE("Config: continuous backup keys parse and are bounded", "[server][config][bad-input]") {
  NodeConfig c;
  c.master_key_uri = "file:/tmp/k";
  c.insecure = true;
  REQUIRE(ParseConfigYaml("backup: {continuous: true, archive_interval_s: 5, continuous_retention_days: 30}", c).ok());
  REQUIRE(ValidateConfig(c).ok());
  CHECK(c.backup.continuous);
  CHECK(c.backup.archive_interval_s == 5);
  CHECK(c.backup.continuous_retention_days == 30);
  auto refused = [](const std::string& yaml, const std::string& key) {
    NodeConfig bad;
    bad.master_key_uri = "file:/tmp/k";
    bad.insecure = true;
    Status s = ParseConfigYaml(yaml, bad);
    if (s.ok()) s = ValidateConfig(bad);
    INFO(yaml << " -> " << s.ToString());
    CHECK_FALSE(s.ok());
    CHECK(s.message().find(key) != std::string::npos);
  };
  refused("backup: {archive_interval_s: 0}", "backup.archive_interval_s");
  refused("backup: {archive_interval_s: 101}", "backup.archive_interval_s");
  refused("backup: {continuous_retention_days: 14}", "backup.continuous_retention_days");
  refused("backup: {continuous: maybe}", "backup.continuous");
}

TEST_CASE("Config: the control group's keys parse, a bad voter list or timing is refused naming the key",
          "[server][config][bad-input]") {
  auto base = [] {
    NodeConfig c;
    c.master_key_uri = "file:/tmp/k";
    c.insecure = true;
    c.region = "west";
    REQUIRE(ParseConfigYaml(R"(
geo:
  regions:
    east: {peers: "10.0.2.1:7101", endpoints: "10.0.2.1:7100"}
    west: {peers: "10.0.1.1:7101", endpoints: "10.0.1.1:7100"}
)",
                            c)
                .ok());
    return c;
  };
  NodeConfig c = base();
  REQUIRE(ParseConfigYaml(R"(
control:
  members: "1=west/10.0.1.1:7102, 2=east/10.0.2.1:7102, 3=witness/10.0.9.1:7102"
  id: 1
  grace_ms: 8000
  lease_ms: 3000
)",
                          c)
              .ok());
  REQUIRE(ValidateConfig(c).ok());
  auto voters = ParseControlMembers(c.control);
  REQUIRE(voters.ok());
  REQUIRE(voters->size() == 3);
  CHECK((*voters)[2].id == 3);
  CHECK((*voters)[2].domain == "witness");
  CHECK((*voters)[2].address == "10.0.9.1:7102");
  CHECK(c.control.grace_ms == 8000);

  auto refused = [&](const std::string& key, const std::string& value) {
    NodeConfig bad = c;
    Status s = ApplyConfigOverride(key + "=" + value, bad);
    if (s.ok()) s = ValidateConfig(bad);
    INFO(key << "=" << value << ": " << s.ToString());
    CHECK(s.code() == Code::kInvalidArgument);
    return s.message();
  };
  CHECK(refused("control.members", "1=10.0.1.1:7102").find("control.members") != std::string::npos);
  CHECK(refused("control.members", "0=west/10.0.1.1:7102").find("control.members") != std::string::npos);
  CHECK(refused("control.members", "1=west/10.0.1.1:7102,1=east/10.0.2.1:7102").find("twice") != std::string::npos);
  CHECK(refused("control.members", "1=west/a:1,2=east/a:1").find("two voters") != std::string::npos);
  CHECK(refused("control.id", "7").find("control.id") != std::string::npos);
  // The old write region's lease must end before a new one writes.
  CHECK(refused("control.grace_ms", "4000").find("control.grace_ms") != std::string::npos);
  // A witness is a voter, and needs a control group.
  NodeConfig w = base();
  w.witness = true;
  CHECK(ValidateConfig(w).message().find("witness") != std::string::npos);
  w = c;
  w.witness = true;
  w.region = "witness";  // not a data region: allowed for a witness only
  CHECK(ValidateConfig(w).ok());
  w.witness = false;
  CHECK_FALSE(ValidateConfig(w).ok());
}
