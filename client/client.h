#pragma once
// bulwark::client::Client: the C++ client library.
//
// Every request is signed with the account key (Cosmos DB master-key scheme)
// and sent over TLS. The client remembers the newest session token of each
// container it wrote or read and sends it with reads, so a Session read sees
// the client's own writes.
//
// Retries and failover: reads, lists, Status and item writes are retried on
// UNAVAILABLE (a node that is down, draining for shutdown, or cut off from
// its leader) with exponential backoff, at most `max_retries` times per call.
// Item writes may retry because they carry a request id the replica set
// applies once. Database and container writes and admin calls are not
// retried: they carry no request id, so a retry could apply twice.
// With `endpoints` set, every failed UNAVAILABLE attempt also moves the client
// on to the next endpoint (round robin) and the retry goes there; the client
// stays on the node that answered, so later calls start there too. Without
// `endpoints` every attempt goes to `endpoint`.
//
// Ownership: Connect returns the only owner. Thread safety: all methods may be
// called concurrently. Errors come back as Status with the server's message;
// the code tells what to do (see common/status.h).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/consistency.h"
#include "common/status.h"

namespace google::protobuf {
class Message;
}
namespace bulwark::security {
struct ResourceRef;
}
namespace bulwark::v1 {
class ChangeRegionsRequest;
}

namespace bulwark::client {

struct ClientOptions {
  // host:port of the node to use first. May be empty if `endpoints` is not.
  std::string endpoint;
  // Every node of the replica set (host:port each), for failover; the client
  // starts at `endpoint` (added to the rotation if missing), else at the
  // first. One gRPC channel per endpoint, opened on first use.
  std::vector<std::string> endpoints;
  std::string ca_file;  // PEM of the CA that signed the server's certificate
  // How the client proves who it is: the first that is set of `key` (an
  // account key, base64: requests are signed), `resource_token` (from a
  // permission), `identity_token` (a JWT from an issuer the account trusts),
  // or else the client certificate alone (`cert_file`/`key_file`).
  std::string key;
  std::string resource_token;
  std::string identity_token;
  std::string cert_file;  // PEM: a client certificate issued by the cluster CA (mutual TLS)
  std::string key_file;   // PEM: its private key
  bool insecure = false;  // plaintext: only against a server started with --insecure
  std::chrono::milliseconds deadline{30'000};
  // Retries per call after the first attempt (see the top of this file).
  int max_retries = 3;
  std::chrono::milliseconds retry_backoff{50};
  // If set, connections leave from this local address (e.g. 127.0.0.9), so
  // a firewall rule for it applies; empty: the kernel chooses.
  std::string source_ip;
  // Regions (geo-replication). With discover_topology, or any preferred
  // region, the client asks a node for the account's topology before its
  // first request (and again when a node says the write region moved):
  // writes and admin calls then go to the write region's nodes, reads to the
  // first region of `preferred_regions` that exists (else the write region).
  // A read refused there as too stale (Session, BoundedStaleness, Strong
  // outside the quorum set: UNAVAILABLE) is retried once in the write region.
  bool discover_topology = false;
  std::vector<std::string> preferred_regions;
};

// The account's regions as a node reported them.
struct Topology {
  struct Region {
    std::string name;
    uint32_t priority = 0;
    std::vector<std::string> endpoints;
  };
  std::vector<Region> regions;
  std::string write_region;
  uint64_t epoch = 0;
  std::string self_region;
};

// A region to add to the account (AddRegion).
struct RegionSpec {
  std::string name;
  std::vector<std::string> peers;      // its nodes' peer addresses (ip:port)
  std::vector<std::string> endpoints;  // its nodes' client addresses
  uint32_t priority = 0;               // failover priority; 0: after every other region
  bool strong = false;                 // joins the strong quorum set
};

struct Database {
  std::string id;
  std::string etag;
  int64_t ts = 0;
  std::vector<std::string> allowed_regions;  // its geo-fence, sorted; empty: none
};

struct Container {
  std::string database;
  std::string id;
  std::string partition_key_path;
  std::string rid;
  std::string etag;
  int64_t ts = 0;
  std::vector<std::string> allowed_regions;  // its geo-fence (its own or its database's), sorted; empty: none
};

struct Item {
  std::string json;
  std::string etag;
  int64_t ts = 0;
  std::string session_token;
};

struct ItemPage {
  std::vector<std::string> items;
  std::string continuation;
};

struct ReadOptions {
  std::optional<ConsistencyLevel> consistency;  // the account default if empty
  // A session token from elsewhere (another client's write); if empty, this
  // client's own session for the container.
  std::string session_token;
};

struct ListOptions {
  std::optional<std::string> partition_key_json;
  uint32_t max_items = 0;  // the server's default
  std::string continuation;
  std::optional<ConsistencyLevel> consistency;
};

// One entry of a region's conflict feed.
struct ConflictInfo {
  std::string id, database, container, partition_key, item_id, etag;
  bool deleted = false;
  int64_t ts = 0;
  uint64_t glsn = 0, epoch = 0;
  int64_t captured_unix_ms = 0;
};

struct NodeStatus {
  std::string node_id;
  std::string region;
  std::string version;
  int64_t uptime_s = 0;
  uint64_t last_lsn = 0;
  ConsistencyLevel default_consistency = ConsistencyLevel::kSession;
  bool tls = false;
  uint64_t live_data_bytes = 0;
  std::string master_key_id;
  // The replica set as this node sees it.
  uint64_t replica_id = 0;
  std::string role;
  uint64_t term = 0;
  uint64_t leader_id = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  std::string peer_address;
  std::string replica_error;
  uint32_t data_key_versions = 0;
  uint32_t store_key_version = 0;
  uint32_t firewall_ranges = 0;  // 0: open to every address
  // Geo-replication (empty/0 for one region).
  std::string write_region;
  uint64_t glsn = 0;
  uint64_t epoch = 0;
  struct RegionLag {
    std::string name;
    uint32_t priority = 0;
    bool connected = false;
    bool in_quorum = false;
    uint64_t acked_glsn = 0;
    uint64_t lag_writes = 0;
    double lag_seconds = 0;
    bool needs_image = false;
    std::string error;
  };
  std::vector<RegionLag> regions;  // the write region's leader only
  std::vector<std::string> strong_quorum;
  struct Failover {
    std::string from, to, reason;
    int64_t at_unix_ms = 0;
    uint64_t epoch = 0;  // 0: the write region never moved
  };
  Failover last_failover;
  // The account's control group as this node sees it (server/control.h).
  struct Control {
    bool configured = false;
    bool automatic = false;
    std::string automatic_off;  // why automatic failover is off
    uint32_t grace_ms = 0;
    uint64_t member_id = 0;  // this node's voter id (0: not a voter)
    std::string member_role;
    uint64_t member_leader = 0;
    std::string last_answer_from;     // the control leader that answered this node's region leader last
    int64_t last_answer_ms_ago = -1;  // -1: never
    int64_t lease_left_ms = -1;       // the write region's leader: its lease (-1: none)
    std::string write_region;         // as the control group said last
    uint64_t epoch = 0;
  };
  Control control;
  struct Member {
    uint64_t id = 0;
    std::string peer_address;
    uint64_t match_index = 0;  // leader only
    uint64_t lag = 0;          // leader only
  };
  std::vector<Member> members;
};

struct BackupRecord {
  std::string id;
  int64_t created_unix_ms = 0;
  uint64_t applied_index = 0;
  uint64_t glsn = 0;
  uint64_t bytes = 0;
  std::string location;       // "primary" or "geo"
  int64_t image_unix_ms = 0;  // the earliest time it restores to
};

// `backup verify --archive`: the node's archive segments, all read.
struct ArchiveCheckRecord {
  uint64_t segments = 0;
  uint64_t commands = 0;
  uint64_t first_index = 0;
  uint64_t last_index = 0;
  std::vector<std::string> holes;
};

// The node's point-in-time window (docs/backups.md).
struct BackupWindowRecord {
  bool continuous = false;   // backup.continuous on the node
  int64_t from_unix_ms = 0;  // 0, 0: no backup yet
  int64_t to_unix_ms = 0;
  uint64_t archive_segments = 0;
};

struct StoreKeyUsage {
  uint32_t version = 0;
  bool current = false;
  uint64_t files = 0;
  uint64_t bytes = 0;
};

struct PendingShred {
  std::string rid;  // the purged container's internal id (hex)
  uint64_t purge_index = 0;
};

// Sealed values under one data-key version of a container.
struct DataKeyVersionUsage {
  uint32_t version = 0;  // 0: values whose sealed header could not be read
  bool current = false;
  uint64_t items = 0;
  uint64_t change_log_records = 0;
  uint64_t bytes = 0;
};

// A container's data-key versions and what each still seals on the node.
struct ContainerKeyUsage {
  std::string database;  // empty for a deleted container still on disk
  std::string container;
  std::string rid;
  uint32_t current_version = 0;
  std::vector<DataKeyVersionUsage> versions;
  bool reseal_pending = false;  // a background re-seal is queued or running
};

struct KeyStatus {
  std::string master_key_id;
  std::vector<StoreKeyUsage> store_keys;
  bool rewrite_running = false;
  std::string last_rewrite_error;
  std::vector<ContainerKeyUsage> containers;
  uint64_t unflushed_values = 0;             // in memtables: not yet counted in `containers`
  uint64_t reseal_failures = 0;              // values that could not be opened, kept as they were
  std::vector<PendingShred> pending_shreds;  // this node's files may still hold these
  std::string last_shred_error;
};

struct AccountKeyInfo {
  std::string name;  // primary, secondary, primary-readonly, secondary-readonly
  int64_t created_ts = 0;
  bool read_only = false;
};

struct PurgeResult {
  std::vector<std::string> rids;  // internal ids whose keys were destroyed
  bool shredded_here = false;     // the answering node's files hold none of them
};

// How long a call keeps retrying a write that a region refused because the
// write region moved ("does not take writes"), with a fresh topology each
// time: the window of a planned failover.
constexpr std::chrono::seconds kWriteRegionMoveWait{10};
// A topology refresh asks every endpoint; after the first answer, each
// other one gets this long (a stopped node must not stall the refresh).
constexpr std::chrono::milliseconds kTopologyScanWait{1000};

class Client {
 public:
  // InvalidArgument for no endpoint at all or no credential, NotFound for an
  // unreadable CA or certificate file. Connecting is lazy: an unreachable server shows on the
  // first call.
  static Result<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  // Asks a node for the topology (and, with discovery on, routes by it).
  Result<Topology> GetTopology();
  // Regions online (docs/geo-replication.md): served by the write region;
  // each returns the topology after the change. Errors: InvalidArgument,
  // AlreadyExists, NotFound, FailedPrecondition (the write region cannot be
  // removed; a concurrent change: retry).
  Result<Topology> AddRegion(const RegionSpec& region);
  Result<Topology> RemoveRegion(const std::string& name);
  Result<Topology> SetRegionPriority(const std::string& name, uint32_t priority);
  // A planned failover (docs/geo-replication.md, "Failover"): the write
  // region stops taking writes at the change and streams everything before
  // it; `to` takes writes once it has applied it. Waits up to `wait` until a
  // node of `to` says it is the write region, and returns that topology.
  // Errors: NotFound (no such region), FailedPrecondition (`to` is the
  // write region already, or is not taking the stream now), and
  // DeadlineExceeded if `to` had not taken over by then (the failover is
  // committed and completes once it has the change).
  Result<Topology> Failover(const std::string& to, std::chrono::milliseconds wait = std::chrono::seconds(60));
  // The region reads go to now (empty before any topology is known).
  std::string read_region() const;
  ~Client();

  // `allowed_regions` pins the database, or the container (within its
  // database's fence), to those regions: its data never reaches another
  // (docs/geo-fencing.md). InvalidArgument for a region not in the
  // account; FailedPrecondition if the write region is outside, or a region
  // outside comes first in failover priority.
  Result<Database> CreateDatabase(const std::string& db, const std::vector<std::string>& allowed_regions = {});
  Result<Database> ReadDatabase(const std::string& db);
  Result<std::vector<Database>> ListDatabases();
  Status DeleteDatabase(const std::string& db);

  Result<Container> CreateContainer(const std::string& db, const std::string& container,
                                    const std::string& partition_key_path,
                                    const std::vector<std::string>& allowed_regions = {});
  Result<Container> ReadContainer(const std::string& db, const std::string& container);
  Result<std::vector<Container>> ListContainers(const std::string& db);
  Status DeleteContainer(const std::string& db, const std::string& container);

  // Item writes carry a request id (a fresh random one unless given): the
  // region applies a request id once, so these calls retry on UNAVAILABLE
  // (a failover) without risk of applying twice.
  Result<Item> CreateItem(const std::string& db, const std::string& container, const std::string& json,
                          const std::string& request_id = {});
  Result<Item> UpsertItem(const std::string& db, const std::string& container, const std::string& json,
                          const std::string& request_id = {});
  Result<Item> ReplaceItem(const std::string& db, const std::string& container, const std::string& id,
                           const std::string& json, const std::string& if_match = {},
                           const std::string& request_id = {});
  // `partition_key_json` is the value as JSON: "\"acme\"", "42".
  Result<Item> ReadItem(const std::string& db, const std::string& container, const std::string& partition_key_json,
                        const std::string& id, const ReadOptions& options = {});
  Status DeleteItem(const std::string& db, const std::string& container, const std::string& partition_key_json,
                    const std::string& id, const std::string& if_match = {}, const std::string& request_id = {});
  Result<ItemPage> ListItems(const std::string& db, const std::string& container, const ListOptions& options = {});

  // The conflict feed of the preferred region (or the endpoint's, without
  // regions): writes it committed as write region that the account's
  // history does not have (docs/control-group.md). Empty names: every
  // container's. Discard removes one (replaying is: write the item again,
  // then discard it; the CLI's `conflicts replay`).
  Result<std::pair<std::string, std::vector<ConflictInfo>>> ListConflicts(const std::string& db,
                                                                          const std::string& container);
  Result<std::pair<ConflictInfo, std::string>> GetConflict(const std::string& db, const std::string& container,
                                                           const std::string& id);
  Status DiscardConflict(const std::string& db, const std::string& container, const std::string& id);

  Result<NodeStatus> GetStatus();
  // Moves the replica set's leadership to node `to`; returns the new leader.
  Result<uint64_t> TransferLeader(uint64_t to);
  // Membership, one node at a time; both return the voters afterwards.
  // AddNode: start the new node with --join first (it waits to be added).
  Result<std::vector<uint64_t>> AddNode(uint64_t id, const std::string& peer_address);
  Result<std::vector<uint64_t>> RemoveNode(uint64_t id);

  // Keys (admin). RotateStoreKey returns the new version; the node rewrites
  // older files in the background (GetKeyStatus shows progress).
  // RotateMasterKey has the node load the new key from `new_key_uri` (on the
  // node) and returns its id; the node must be restarted with that URI.
  Result<KeyStatus> GetKeyStatus();
  // The account keys' names and ages (never the keys).
  Result<std::vector<AccountKeyInfo>> ListKeys();
  Result<uint32_t> RotateStoreKey();
  // Backups of the node the call reaches (admin; not retried).
  Result<BackupRecord> BackupNow();
  // `window`, if given, receives the primary location's restore window.
  Result<std::vector<BackupRecord>> ListBackups(BackupWindowRecord* window = nullptr);
  Result<BackupRecord> VerifyBackup(const std::string& id);
  // Reads and authenticates every segment of the node's continuous archive.
  Result<ArchiveCheckRecord> VerifyArchive();
  Result<std::string> RotateMasterKey(const std::string& new_key_uri);
  // A new data-key version for one container; returns it. The node re-seals
  // older items in the background (GetKeyStatus().containers shows progress).
  Result<uint32_t> RotateDataKey(const std::string& db, const std::string& container);
  // Crypto-shredding (docs/storage.md, "Purge"): irreversible. NotFound if
  // there is nothing of that name to purge.
  Result<PurgeResult> PurgeContainer(const std::string& db, const std::string& container);
  // The account's IP firewall (client allowlist). Each returns the list after
  // the call; an empty list means every address may connect.
  Result<std::vector<std::string>> FirewallList();
  Result<std::vector<std::string>> FirewallAllow(const std::string& range);
  Result<std::vector<std::string>> FirewallDeny(const std::string& range);

  // The access API (proto/bulwark/v1/access.proto; client/access.h wraps it):
  // `method` is the AccessService RPC, `request` and `response` its
  // messages. InvalidArgument for an unknown method.
  Status CallAccess(const std::string& method, const security::ResourceRef& ref,
                    const google::protobuf::Message& request, google::protobuf::Message* response);
  // The same for AdminService's ListAlerts, AuditVerify and AuditQuery
  // (client/cli_defense.cc uses them).
  Status CallAdmin(const std::string& method, const google::protobuf::Message& request,
                   google::protobuf::Message* response);

  // The newest session token this client holds for a container ("" if none).
  std::string SessionToken(const std::string& db, const std::string& container) const;
  // The endpoint the next call goes to first (moves on failover).
  std::string CurrentEndpoint() const;

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  Result<std::vector<std::string>> FirewallChange(bool allow, const std::string& range);
  Result<Topology> ChangeRegions(const v1::ChangeRegionsRequest& request);
  std::unique_ptr<Impl> impl_;
};

// Converts a partition-key value typed by a person into JSON: valid JSON
// scalars (42, true, null, "quoted") stay as they are, anything else becomes a
// JSON string ("acme" -> "\"acme\"").
std::string PartitionKeyArgToJson(const std::string& arg);

}  // namespace bulwark::client
