#pragma once
// bulwarkd's configuration: one YAML file, overridden by flags.
//
// Every key is listed in docs/configuration.md. An unknown key or a bad value
// stops start-up with an error naming the key (InvalidArgument).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/consistency.h"
#include "common/status.h"
#include "security/tls_server.h"
#include "server/defense.h"

namespace bulwark::server {

struct Limits {
  uint32_t max_message_bytes = 4 * 1024 * 1024;  // larger requests: RESOURCE_EXHAUSTED
  uint32_t max_concurrent_streams = 256;         // per connection
  uint32_t request_deadline_ms = 30'000;         // a request without a shorter deadline gets this one
  uint32_t shutdown_grace_ms = 10'000;           // in-flight requests get this long on SIGTERM
};

struct ReplicaConfig {
  uint64_t id = 1;                              // this node's id in its replica set (>= 1)
  std::string peer_address = "127.0.0.1:7101";  // node-to-node port (mutual TLS)
  // Every member of the replica set, "1=ip:port,2=ip:port,...", self
  // included; empty: a replica set of this node alone.
  std::string members;
  uint32_t tick_ms = 50;              // raft tick; heartbeats go out every tick
  uint32_t election_ticks = 10;       // a follower campaigns after 10..20 silent ticks
  uint32_t snapshot_entries = 20000;  // compact the raft log beyond this many entries
  bool join = false;                  // joining an existing set (after `bulwark node add`): no membership of its own
  // Node-to-node allowlist: addresses or CIDR ranges peers may connect from,
  // "127.0.1.0/24,10.0.0.5"; empty: any address (membership and mutual TLS
  // still apply).
  std::vector<std::string> peer_allowlist;
};

// One region of the account, as every node of the account is told
// ("geo.regions.<name>.*").
struct RegionConfig {
  std::string name;
  int priority = -1;                   // failover priority (0 = first); -1: by order of appearance
  std::vector<std::string> peers;      // its nodes' peer addresses
  std::vector<std::string> endpoints;  // its nodes' client addresses (for the topology clients fetch)
  uint32_t link_delay_ms = 0;          // test hook: one-way delay this node adds on its stream to that region
};

// Geo-replication ("geo.*"). Without regions the node's replica set is the
// whole account.
struct GeoConfig {
  std::vector<RegionConfig> regions;  // sorted by priority by ValidateConfig
  std::string write_region;           // empty: the region with priority 0
  // The strong quorum set; empty: every region.
  std::vector<std::string> strong_regions;
  // BoundedStaleness(K, T): at least kMinBoundedWrites and kMinBoundedLagS.
  uint64_t bounded_max_writes = 100'000;
  uint32_t bounded_max_lag_s = 300;
  uint32_t heartbeat_ms = 100;
  uint32_t lease_ms = 2000;
  uint32_t removal_ms = 5000;  // a silent region leaves the strong quorum set (3+ regions)
  // From the regions record only (the configuration names epoch 1): the
  // write epoch, raised by each change of write region, and the last change.
  uint64_t epoch = 1;
  struct Failover {
    std::string from, to, reason;
    int64_t at_unix_ms = 0;
    uint64_t epoch = 0;
  };
  Failover last_failover;  // epoch 0: none
  bool enabled() const { return !regions.empty(); }
};
constexpr uint64_t kMinBoundedWrites = 10;
constexpr uint32_t kMinBoundedLagS = 5;

// The account's control group ("control.*"; docs/control-group.md): a
// small Raft group, one voter per region plus an optional witness, that
// keeps the topology, leases the writes to the write region, and promotes
// another region when the write region goes silent.
struct ControlConfig {
  // Every voter, its fault domain and its control port:
  // "1=r1/127.0.1.1:7102,2=r2/127.0.2.1:7102,3=witness/127.0.9.1:7102" (a
  // region's voter names its region; a witness any other name). Every node
  // of the account gets the same list. Empty: no control group.
  std::string members;
  uint64_t id = 0;             // this node's id among the voters; 0: not one
  uint32_t grace_ms = 10'000;  // the write region silent this long: promote another
  uint32_t lease_ms = 4'000;   // the write region's lease (grace must exceed it by kControlLeaseMarginMs)
  bool configured() const { return !members.empty(); }
};
// A promotion waits this long beyond the longest lease: clock-rate drift
// and the report's flight time.
constexpr uint32_t kControlLeaseMarginMs = 2000;
struct ControlVoter {
  uint64_t id = 0;
  std::string domain;   // its fault domain
  std::string address;  // ip:port of its control port
};
// control.members, parsed; InvalidArgument names what is wrong.
Result<std::vector<ControlVoter>> ParseControlMembers(const ControlConfig& control);

// Periodic backups ("backup.*"; docs/backups.md).
struct BackupConfig {
  bool enabled = true;
  uint32_t interval_s = 4 * 3600;  // at least 60
  uint32_t retention = 2;          // backups kept per location (1..1000)
  std::string dir;                 // empty: <data_dir>/backups
  std::string geo_dir;             // a second copy (another region's store); empty: none
  // The region geo_dir is in. A geo-fenced database or container goes into
  // the copy only if this region is inside its fence; empty (unknown): none
  // goes (docs/geo-fencing.md).
  std::string geo_region;
  // Continuous backup (point-in-time restore, storage/archive.h): the leader
  // archives its committed log to <dir>/log at least every
  // archive_interval_s (1..100), and backups and segments are kept for
  // continuous_retention_days (7 or 30).
  bool continuous = false;
  uint32_t archive_interval_s = 10;
  uint32_t continuous_retention_days = 7;
};

struct NodeConfig {
  std::string node_id = "node-1";
  // bulwarkd --benchmark-unencrypted (no config key): items unsealed, files
  // unencrypted, to measure what encryption costs. The store records it.
  bool benchmark_unencrypted = false;
  std::string region = "local";
  std::string listen_address = "127.0.0.1:7100";
  std::string metrics_address = "127.0.0.1:7180";  // "" disables the HTTP port
  std::string data_dir = "bulwark-data";
  std::string master_key_uri;  // required
  bool insecure = false;       // plaintext gRPC: only on explicit request, loudly
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_file;  // the cluster CA: verifies peers, and client certificates
  // The lowest TLS version either port accepts ("tls.min_version": 1.2 or 1.3).
  security::TlsVersion tls_min_version = security::TlsVersion::kTls12;
  std::string account_key_file;  // where the generated primary key is written once (0600)
  ConsistencyLevel default_consistency = ConsistencyLevel::kSession;
  bool sync_writes = true;
  std::string log_level = "info";
  Limits limits;
  ReplicaConfig replica;
  GeoConfig geo;
  ControlConfig control;
  // bulwarkd --witness: a control group voter only (control.id), for an
  // account of two regions: it stores no documents and refuses data requests.
  bool witness = false;
  BackupConfig backup;
  // Response to attacks: blocking sources after failed authentication, the
  // failure-rate alert, per-principal rate limits ("defense.*").
  DefenseOptions defense;
  // The audit log ("audit.*"): in <data_dir>/audit.
  bool audit_enabled = true;
  bool audit_reads = false;  // also record data-plane reads (every read: a lot of records)
  uint32_t audit_retention_days = 30;
};

// Parses ReplicaConfig::members into id -> peer address; an empty text means
// this node alone. InvalidArgument names what is wrong.
Result<std::map<uint64_t, std::string>> ParseMembers(const ReplicaConfig& replica);

// Parses YAML text into `config`, on top of what it already holds.
Status ParseConfigYaml(std::string_view yaml_text, NodeConfig& config);
Status LoadConfigFile(const std::string& path, NodeConfig& config);
// One "key=value" (as --set gives it), with the same keys and checks.
Status ApplyConfigOverride(std::string_view key_equals_value, NodeConfig& config);
// Checks the whole configuration once flags are applied.
Status ValidateConfig(const NodeConfig& config);
// After validation: regions sorted by priority (renumbered 0..n-1), the write
// region and the strong quorum set defaulted.
void NormalizeGeo(GeoConfig& geo);
// The regions alone (names, addresses, priorities, the write region and the
// strong set name known regions); InvalidArgument naming the key.
Status ValidateRegions(const GeoConfig& geo);
bool IsValidRegionName(std::string_view name);

}  // namespace bulwark::server
