#pragma once
// The access API (proto/bulwark/v1/access.proto): account keys, users,
// permissions and resource tokens, roles and assignments, identity issuers
// and access settings; and the bootstrap that gives a new account its four
// keys.
//
// Changes are replicated writes: the handler sends them through WritePath
// (forwarded to the leader), where AccessWrite validates the request, builds
// the record and proposes it. Reads answer from this node's AccessSnapshot.
//
// Ownership: borrows the NodeContext, which must outlive the service and the
// bootstrap thread. Thread safety: handlers run on many gRPC threads; all
// state they touch is thread-safe.

#include <atomic>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

#include <google/protobuf/message.h>

#include "bulwark/v1/access.grpc.pb.h"
#include "common/status.h"
#include "server/services.h"

namespace bulwark::server {

// Resource tokens and records: limits on what a request may ask for.
constexpr size_t kMaxPrincipalBytes = 256;
constexpr size_t kMaxIssuerBytes = 512;
constexpr size_t kMaxAudienceBytes = 256;
constexpr size_t kMaxRoleAssignments = 10'000;

bool IsAccessWrite(std::string_view method);
// The request and response types of an access write (for forwarding).
std::optional<std::pair<std::unique_ptr<google::protobuf::Message>, std::unique_ptr<google::protobuf::Message>>>
AccessWriteTypes(std::string_view method);
// The leader's side of an access write.
Status AccessWrite(NodeContext& node, std::string_view method, const google::protobuf::Message& request,
                   google::protobuf::Message* response, Deadline deadline, std::string_view replay_id);

class AccessService final : public v1::AccessService::Service {
 public:
  explicit AccessService(NodeContext* node) : node_(node), runner_(node) {}
  grpc::Status RegenerateKey(grpc::ServerContext* ctx, const v1::RegenerateKeyRequest* req,
                             v1::RegenerateKeyResponse* resp) override;
  grpc::Status ShowKey(grpc::ServerContext* ctx, const v1::ShowKeyRequest* req, v1::ShowKeyResponse* resp) override;
  grpc::Status CreateUser(grpc::ServerContext* ctx, const v1::UserRequest* req, v1::UserResponse* resp) override;
  grpc::Status ListUsers(grpc::ServerContext* ctx, const v1::ListUsersRequest* req,
                         v1::ListUsersResponse* resp) override;
  grpc::Status DeleteUser(grpc::ServerContext* ctx, const v1::UserRequest* req, v1::UserResponse* resp) override;
  grpc::Status CreatePermission(grpc::ServerContext* ctx, const v1::CreatePermissionRequest* req,
                                v1::PermissionResponse* resp) override;
  grpc::Status ListPermissions(grpc::ServerContext* ctx, const v1::ListPermissionsRequest* req,
                               v1::ListPermissionsResponse* resp) override;
  grpc::Status ReadPermission(grpc::ServerContext* ctx, const v1::PermissionRequest* req,
                              v1::PermissionResponse* resp) override;
  grpc::Status DeletePermission(grpc::ServerContext* ctx, const v1::PermissionRequest* req,
                                v1::PermissionResponse* resp) override;
  grpc::Status CreateRole(grpc::ServerContext* ctx, const v1::CreateRoleRequest* req, v1::RoleResponse* resp) override;
  grpc::Status ListRoles(grpc::ServerContext* ctx, const v1::ListRolesRequest* req,
                         v1::ListRolesResponse* resp) override;
  grpc::Status DeleteRole(grpc::ServerContext* ctx, const v1::RoleRequest* req, v1::RoleResponse* resp) override;
  grpc::Status AssignRole(grpc::ServerContext* ctx, const v1::AssignRoleRequest* req,
                          v1::RoleAssignmentResponse* resp) override;
  grpc::Status ListAssignments(grpc::ServerContext* ctx, const v1::ListAssignmentsRequest* req,
                               v1::ListAssignmentsResponse* resp) override;
  grpc::Status UnassignRole(grpc::ServerContext* ctx, const v1::UnassignRoleRequest* req,
                            v1::RoleAssignmentResponse* resp) override;
  grpc::Status GetAccessSettings(grpc::ServerContext* ctx, const v1::AccessSettingsRequest* req,
                                 v1::AccessSettingsResponse* resp) override;
  grpc::Status SetAccessSettings(grpc::ServerContext* ctx, const v1::SetAccessSettingsRequest* req,
                                 v1::AccessSettingsResponse* resp) override;
  grpc::Status AddIssuer(grpc::ServerContext* ctx, const v1::AddIssuerRequest* req,
                         v1::AccessSettingsResponse* resp) override;
  grpc::Status RemoveIssuer(grpc::ServerContext* ctx, const v1::RemoveIssuerRequest* req,
                            v1::AccessSettingsResponse* resp) override;
  grpc::Status SetLockdown(grpc::ServerContext* ctx, const v1::LockdownRequest* req,
                           v1::AccessSettingsResponse* resp) override;

 private:
  grpc::Status Write(grpc::ServerContext* ctx, const char* method, const security::ResourceRef& ref,
                     const google::protobuf::Message& req, google::protobuf::Message* resp);
  NodeContext* node_;
  RequestRunner runner_;
};

// Gives the account its four keys: while any is missing, the node that leads
// proposes it (the primary from the key this node was started with, the
// others at random); a proposal that loses a race changes nothing. Stops
// when all four exist or on Stop().
class AccountKeyBootstrap {
 public:
  explicit AccountKeyBootstrap(NodeContext* node) : node_(node) {}
  ~AccountKeyBootstrap() { Stop(); }
  void Start();
  void Stop();

 private:
  NodeContext* node_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace bulwark::server
