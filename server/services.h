#pragma once
// The gRPC services of a single node: thin adapters that authenticate the
// request, convert it, call the DocumentStore, and map the Status at the edge.
//
// Ownership: the services borrow everything in NodeContext, which must
// outlive the gRPC server. Thread safety: gRPC calls the handlers from many
// threads at once; everything they touch is thread-safe.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "bulwark/v1/admin.grpc.pb.h"
#include "bulwark/v1/document.grpc.pb.h"
#include "crypto/secret.h"
#include "proto/grpc_status.h"
#include "security/request_signing.h"
#include "server/access.h"
#include "server/config.h"
#include "server/defense.h"
#include "server/metrics.h"
#include "server/shred_worker.h"
#include "server/write_path.h"
#include "storage/document_store.h"

namespace bulwark::replication {
class Replica;
}
namespace bulwark::security {
class AuditLog;
struct AuditKeys;
}  // namespace bulwark::security

namespace bulwark::server {

constexpr size_t kMaxTrackedPlaintextPeers = 1024;
constexpr uint32_t kMaxAuditQueryRecords = 10'000;
// A purge answers this long before its deadline if this node's shred is
// still running (the shred goes on; KeyStatus shows it).
constexpr auto kShredAnswerMargin = std::chrono::milliseconds(300);

class Geo;
class ControlMember;
class BackupWorker;

struct NodeContext {
  const NodeConfig* config = nullptr;
  storage::DocumentStore* store = nullptr;
  replication::Replica* replica = nullptr;
  WritePath* writes = nullptr;
  Geo* geo = nullptr;                // always set (a no-op without geo.regions)
  ControlMember* control = nullptr;  // a control group voter (control.id): its member
  BackupWorker* backups = nullptr;
  ShredWorker* shred = nullptr;
  Metrics* metrics = nullptr;
  AccessControl* access = nullptr;
  // Response to attacks and the audit log (server/defense.h,
  // security/audit_log.h); audit is null when audit.enabled is false.
  AuthGuard* guard = nullptr;
  RateLimiter* limiter = nullptr;
  Alerts* alerts = nullptr;
  security::AuditLog* audit = nullptr;
  const security::AuditKeys* audit_keys = nullptr;  // for verify and query
  std::string audit_dir;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  // Shutdown: once draining, new requests are refused with UNAVAILABLE while
  // those already running finish; `in_flight` counts the latter.
  std::atomic<bool> draining{false};
  std::atomic<int> in_flight{0};

  // Background rewrites after a store-key rotation: one at a time.
  std::mutex rewrite_mu;
  std::thread rewrite_thread;  // GUARDED_BY(rewrite_mu)
  std::atomic<bool> rewrite_running{false};
  std::string last_rewrite_error;  // GUARDED_BY(rewrite_mu)

  std::mutex peers_mu;
  std::set<std::string> plaintext_peers;  // GUARDED_BY(peers_mu): warned about once each

  std::atomic<uint64_t> firewall_refused{0};  // requests the firewall refused, since start
};

// Rewrites every file under the current store key in the background, then
// destroys the older versions. REQUIRES: node->rewrite_mu held, no rewrite
// running.
void StartStoreKeyRewriteLocked(NodeContext* node);

Operation ControlOp(const char* name, const security::ResourceRef& ref);
Operation DataOp(const char* name, std::string_view action, std::string_view db, std::string_view container);

// The deadline a request runs under: the client's, capped by
// limits.request_deadline_ms.
Deadline RequestDeadline(const grpc::ServerContext* ctx, const NodeConfig& config);

namespace v1 = ::bulwark::v1;

// Runs one request: checks the deadline and the signature, runs `fn`, records
// metrics, and maps the result. `fn` returns a Status.
class RequestRunner {
 public:
  explicit RequestRunner(NodeContext* node) : node_(node) {}
  using Handler = std::function<Status()>;
  using PrincipalHandler = std::function<Status(const Principal&)>;
  // A control-plane operation (needs an account key; a write unless the
  // verb is "get").
  grpc::Status Run(grpc::ServerContext* ctx, const char* operation, const security::ResourceRef& ref, Handler fn);
  grpc::Status Run(grpc::ServerContext* ctx, const Operation& op, const security::ResourceRef& ref, Handler fn);
  // As Run, for a handler that needs to know who asked.
  grpc::Status RunAs(grpc::ServerContext* ctx, const char* operation, const security::ResourceRef& ref,
                     PrincipalHandler fn);
  grpc::Status RunAs(grpc::ServerContext* ctx, const Operation& op, const security::ResourceRef& ref,
                     PrincipalHandler fn);

 private:
  // Authenticates the caller and checks `op` against what it may do; sets
  // `principal` once the caller is known (even if then refused).
  Result<Principal> CheckAccess(grpc::ServerContext* ctx, const security::ResourceRef& ref, const Operation& op,
                                const AccessSnapshot& snap, std::string& principal);
  // A failed authentication from `source`: may block it, and may raise the
  // failure-rate alert.
  void OnAuthFailure(const std::string& source, const std::string& peer, SteadyTime now);
  void WarnIfPlaintext(grpc::ServerContext* ctx);
  // False if the account's allowlist is non-empty and leaves the caller's
  // address out. A stored list that does not parse refuses everyone (and
  // says so in the log): failing open would defeat the firewall.
  bool FirewallAllows(grpc::ServerContext* ctx, const AccessSnapshot& snap);
  NodeContext* node_;
};

class DocumentService final : public v1::DocumentService::Service {
 public:
  explicit DocumentService(NodeContext* node) : node_(node), runner_(node) {}
  grpc::Status CreateDatabase(grpc::ServerContext* ctx, const v1::CreateDatabaseRequest* req,
                              v1::DatabaseResponse* resp) override;
  grpc::Status ReadDatabase(grpc::ServerContext* ctx, const v1::ReadDatabaseRequest* req,
                            v1::DatabaseResponse* resp) override;
  grpc::Status ListDatabases(grpc::ServerContext* ctx, const v1::ListDatabasesRequest* req,
                             v1::ListDatabasesResponse* resp) override;
  grpc::Status DeleteDatabase(grpc::ServerContext* ctx, const v1::DeleteDatabaseRequest* req,
                              v1::DeleteResponse* resp) override;
  grpc::Status CreateContainer(grpc::ServerContext* ctx, const v1::CreateContainerRequest* req,
                               v1::ContainerResponse* resp) override;
  grpc::Status ReadContainer(grpc::ServerContext* ctx, const v1::ReadContainerRequest* req,
                             v1::ContainerResponse* resp) override;
  grpc::Status ListContainers(grpc::ServerContext* ctx, const v1::ListContainersRequest* req,
                              v1::ListContainersResponse* resp) override;
  grpc::Status DeleteContainer(grpc::ServerContext* ctx, const v1::DeleteContainerRequest* req,
                               v1::DeleteResponse* resp) override;
  grpc::Status CreateItem(grpc::ServerContext* ctx, const v1::WriteItemRequest* req, v1::ItemResponse* resp) override;
  grpc::Status UpsertItem(grpc::ServerContext* ctx, const v1::WriteItemRequest* req, v1::ItemResponse* resp) override;
  grpc::Status ReplaceItem(grpc::ServerContext* ctx, const v1::WriteItemRequest* req, v1::ItemResponse* resp) override;
  grpc::Status ReadItem(grpc::ServerContext* ctx, const v1::ReadItemRequest* req, v1::ItemResponse* resp) override;
  grpc::Status DeleteItem(grpc::ServerContext* ctx, const v1::DeleteItemRequest* req,
                          v1::DeleteResponse* resp) override;
  grpc::Status ListItems(grpc::ServerContext* ctx, const v1::ListItemsRequest* req,
                         v1::ListItemsResponse* resp) override;

 private:
  // InvalidArgument if the request asks for more than the account default;
  // otherwise waits as the level requires (WritePath::PrepareRead).
  Status PrepareRead(grpc::ServerContext* ctx, const v1::ReadOptions& options);
  NodeContext* node_;
  RequestRunner runner_;
};

class AdminService final : public v1::AdminService::Service {
 public:
  explicit AdminService(NodeContext* node) : node_(node), runner_(node) {}
  grpc::Status Status(grpc::ServerContext* ctx, const v1::StatusRequest* req, v1::StatusResponse* resp) override;
  grpc::Status ChangeRegions(grpc::ServerContext* ctx, const v1::ChangeRegionsRequest* req,
                             v1::TopologyResponse* resp) override;
  grpc::Status ListConflicts(grpc::ServerContext* ctx, const v1::ConflictsRequest* req,
                             v1::ConflictsResponse* resp) override;
  grpc::Status GetConflict(grpc::ServerContext* ctx, const v1::ConflictRequest* req,
                           v1::ConflictResponse* resp) override;
  grpc::Status DiscardConflict(grpc::ServerContext* ctx, const v1::ConflictRequest* req,
                               v1::DiscardConflictResponse* resp) override;
  grpc::Status GetTopology(grpc::ServerContext* ctx, const v1::TopologyRequest* req,
                           v1::TopologyResponse* resp) override;
  grpc::Status BackupNow(grpc::ServerContext* ctx, const v1::BackupNowRequest* req,
                         v1::BackupNowResponse* resp) override;
  grpc::Status ListBackups(grpc::ServerContext* ctx, const v1::ListBackupsRequest* req,
                           v1::ListBackupsResponse* resp) override;
  grpc::Status VerifyBackup(grpc::ServerContext* ctx, const v1::VerifyBackupRequest* req,
                            v1::VerifyBackupResponse* resp) override;
  grpc::Status ListKeys(grpc::ServerContext* ctx, const v1::ListKeysRequest* req, v1::ListKeysResponse* resp) override;
  grpc::Status KeyStatus(grpc::ServerContext* ctx, const v1::KeyStatusRequest* req,
                         v1::KeyStatusResponse* resp) override;
  grpc::Status RotateStoreKey(grpc::ServerContext* ctx, const v1::RotateStoreKeyRequest* req,
                              v1::RotateStoreKeyResponse* resp) override;
  grpc::Status RotateDataKey(grpc::ServerContext* ctx, const v1::RotateDataKeyRequest* req,
                             v1::RotateDataKeyResponse* resp) override;
  grpc::Status PurgeContainer(grpc::ServerContext* ctx, const v1::PurgeContainerRequest* req,
                              v1::PurgeContainerResponse* resp) override;
  grpc::Status FirewallList(grpc::ServerContext* ctx, const v1::FirewallListRequest* req,
                            v1::FirewallResponse* resp) override;
  grpc::Status FirewallAllow(grpc::ServerContext* ctx, const v1::FirewallChangeRequest* req,
                             v1::FirewallResponse* resp) override;
  grpc::Status FirewallDeny(grpc::ServerContext* ctx, const v1::FirewallChangeRequest* req,
                            v1::FirewallResponse* resp) override;
  grpc::Status RotateMasterKey(grpc::ServerContext* ctx, const v1::RotateMasterKeyRequest* req,
                               v1::RotateMasterKeyResponse* resp) override;
  grpc::Status TransferLeader(grpc::ServerContext* ctx, const v1::TransferLeaderRequest* req,
                              v1::TransferLeaderResponse* resp) override;
  grpc::Status AddNode(grpc::ServerContext* ctx, const v1::AddNodeRequest* req, v1::MembershipResponse* resp) override;
  grpc::Status RemoveNode(grpc::ServerContext* ctx, const v1::RemoveNodeRequest* req,
                          v1::MembershipResponse* resp) override;
  grpc::Status ListAlerts(grpc::ServerContext* ctx, const v1::AlertsRequest* req, v1::AlertsResponse* resp) override;
  grpc::Status AuditVerify(grpc::ServerContext* ctx, const v1::AuditVerifyRequest* req,
                           v1::AuditVerifyResponse* resp) override;
  grpc::Status AuditQuery(grpc::ServerContext* ctx, const v1::AuditQueryRequest* req,
                          v1::AuditQueryResponse* resp) override;

 private:
  grpc::Status FirewallChange(grpc::ServerContext* ctx, const char* method, const v1::FirewallChangeRequest& req,
                              v1::FirewallResponse* resp);
  NodeContext* node_;
  RequestRunner runner_;
};

}  // namespace bulwark::server
