#include "server/access_service.h"

#include <spdlog/spdlog.h>

#include "common/clock.h"

#include <nlohmann/json.hpp>

#include "crypto/secret.h"
#include "replication/replica.h"
#include "storage/item_rules.h"

namespace bulwark::server {
namespace {

namespace pb = google::protobuf;
using BStatus = ::bulwark::Status;
using Ctx = grpc::ServerContext;
using Json = nlohmann::json;
using security::ResourceRef;

constexpr auto kBootstrapPoll = std::chrono::milliseconds(200);

std::string RandomHex(size_t bytes) { return crypto::HexEncode(crypto::RandomBytes(bytes)); }

// Printable ASCII without control characters, 1..max bytes.
BStatus ValidateText(std::string_view value, size_t max, std::string_view what) {
  bool ok = !value.empty() && value.size() <= max;
  for (char c : value) ok = ok && c >= 0x20 && c < 0x7f;
  if (!ok)
    return BStatus::InvalidArgument(std::string(what) + " must be 1.." + std::to_string(max) + " printable characters");
  return BStatus::Ok();
}

// Rewrites a generic outcome of the access commands ("it already exists")
// into one that names the thing.
BStatus Named(BStatus s, const std::string& thing) {
  if (s.code() == Code::kAlreadyExists) return BStatus::AlreadyExists(thing + " already exists");
  if (s.code() == Code::kNotFound) return BStatus::NotFound(thing + " does not exist");
  return s;
}

Result<std::shared_ptr<const AccessSnapshot>> Snap(NodeContext& node) { return node.access->Snapshot(); }

bool UserExists(NodeContext& node, std::string_view db, std::string_view user) {
  auto snap = Snap(node);
  return snap.ok() && (*snap)->users.count(UserKey(db, user)) != 0;
}

void FillPermission(const PermissionRecord& p, v1::Permission* out) {
  out->set_database(p.database);
  out->set_user(p.user);
  out->set_id(p.id);
  out->set_mode(std::string(security::PermissionModeName(p.mode)));
  out->set_resource(p.resource);
  out->set_partition_key_json(p.partition_key_json);
  out->set_rid(p.rid);
  out->set_etag(p.etag);
  out->set_ts(p.ts);
}

void FillRole(const security::RoleDefinition& r, v1::RoleDefinition* out) {
  out->set_id(r.id);
  out->set_name(r.name);
  for (const auto& a : r.actions) out->add_actions(a);
  out->set_built_in(r.built_in);
}

void FillSettings(const AccessSnapshot& snap, v1::AccessSettingsResponse* resp) {
  auto* s = resp->mutable_settings();
  s->set_disable_local_auth(snap.disable_local_auth);
  s->set_audience(snap.audience);
  s->set_lockdown(snap.lockdown);
  for (const auto& i : snap.issuers) {
    auto* out = s->add_issuers();
    out->set_key_id(i.key_id);
    out->set_issuer(i.issuer);
    out->set_public_key(i.public_key_base64);
  }
}

// A permission's resource: a database or container of the permission's own
// database that exists now.
BStatus ValidatePermissionResource(NodeContext& node, const v1::Permission& p) {
  auto scope = security::ParseScope("/" + p.resource());
  if (!scope.ok() || scope->database.empty()) {
    return BStatus::InvalidArgument("a permission's resource is dbs/D or dbs/D/colls/C");
  }
  if (scope->database != p.database()) {
    return BStatus::InvalidArgument("a permission may only name resources of its own database '" + p.database() + "'");
  }
  if (scope->container.empty()) {
    if (!p.partition_key_json().empty()) {
      return BStatus::InvalidArgument("a partition key needs a container resource (dbs/D/colls/C)");
    }
    return node.store->ReadDatabase(scope->database).status();
  }
  return node.store->ReadContainer(scope->database, scope->container).status();
}

// ---- the leader's side of each access write ----

// One access write on the leader: where it runs, until when, and the replay
// id of the signed request it serves (see WritePath::Write).
struct Writer {
  NodeContext& node;
  Deadline deadline;
  std::string_view replay_id;
  Result<replication::Committed> Commit(Result<storage::WriteCommand> cmd) const {
    return CommitOnce(*node.replica, std::move(cmd), replay_id, deadline);
  }
};

BStatus RegenerateKeyWrite(const Writer& w, const v1::RegenerateKeyRequest& r, v1::RegenerateKeyResponse* out) {
  crypto::SecretBytes key = crypto::SecretBytes::Random(security::kAccountKeyBytes);
  BULWARK_RETURN_IF_ERROR(
      w.Commit(w.node.store->PrepareSetAccountKey(r.name(), key.view(), /*only_if_absent=*/false)).status());
  out->mutable_key()->set_name(r.name());
  out->mutable_key()->set_created_ts(UnixNowSeconds());
  out->mutable_key()->set_read_only(r.name().ends_with("-readonly"));
  out->set_key_base64(crypto::Base64Encode(key.view()));
  spdlog::warn("event=account_key_regenerated name={}", r.name());
  return BStatus::Ok();
}

BStatus UserWrite(const Writer& w, std::string_view method, const v1::UserRequest& r, v1::UserResponse* out) {
  BULWARK_RETURN_IF_ERROR(storage::ValidateId(r.user(), "user id"));
  const std::string thing = "user '" + r.user() + "' of database '" + r.database() + "'";
  auto* u = out->mutable_user();
  u->set_database(r.database());
  u->set_id(r.user());
  if (method == "DeleteUser") {
    return Named(w.Commit(w.node.store->PrepareAccessDelete(UserKey(r.database(), r.user()))).status(), thing);
  }
  BULWARK_RETURN_IF_ERROR(w.node.store->ReadDatabase(r.database()).status());
  u->set_rid(RandomHex(8));
  u->set_etag("\"" + RandomHex(8) + "\"");
  u->set_ts(UnixNowSeconds());
  const Json record = {{"id", u->id()}, {"rid", u->rid()}, {"etag", u->etag()}, {"ts", u->ts()}};
  return Named(w.Commit(w.node.store->PrepareAccessPut(UserKey(r.database(), r.user()), record.dump(), true)).status(),
               thing);
}

BStatus CreatePermissionWrite(const Writer& w, const v1::CreatePermissionRequest& r, v1::PermissionResponse* out) {
  v1::Permission p = r.permission();
  BULWARK_RETURN_IF_ERROR(storage::ValidateId(p.id(), "permission id"));
  BULWARK_RETURN_IF_ERROR(storage::ValidateId(p.user(), "user id"));
  BULWARK_ASSIGN_OR_RETURN(auto mode, security::ParsePermissionMode(p.mode()));
  if (!UserExists(w.node, p.database(), p.user())) {
    return BStatus::NotFound("user '" + p.user() + "' of database '" + p.database() + "' does not exist");
  }
  if (!p.partition_key_json().empty()) {
    BULWARK_ASSIGN_OR_RETURN(auto canonical, storage::CanonicalPartitionKey(p.partition_key_json()));
    p.set_partition_key_json(canonical);
  }
  BULWARK_RETURN_IF_ERROR(ValidatePermissionResource(w.node, p));
  p.set_mode(std::string(security::PermissionModeName(mode)));
  p.set_rid(RandomHex(8));
  p.set_etag("\"" + RandomHex(8) + "\"");
  p.set_ts(UnixNowSeconds());
  const Json record = {{"database", p.database()}, {"user", p.user()},         {"id", p.id()},
                       {"mode", p.mode()},         {"resource", p.resource()}, {"pk", p.partition_key_json()},
                       {"rid", p.rid()},           {"etag", p.etag()},         {"ts", p.ts()}};
  BULWARK_RETURN_IF_ERROR(
      Named(w.Commit(w.node.store->PrepareAccessPut(PermissionKey(p.database(), p.user(), p.id()), record.dump(), true))
                .status(),
            "permission '" + p.id() + "' of user '" + p.user() + "'"));
  *out->mutable_permission() = p;
  return BStatus::Ok();
}

BStatus RoleWrite(const Writer& w, std::string_view method, const pb::Message& request, pb::Message* response) {
  BULWARK_ASSIGN_OR_RETURN(auto snap, Snap(w.node));
  if (method == "CreateRole") {
    const auto& r = static_cast<const v1::CreateRoleRequest&>(request);
    std::vector<std::string> actions(r.role().actions().begin(), r.role().actions().end());
    BULWARK_ASSIGN_OR_RETURN(auto role, security::MakeCustomRole(r.role().name(), actions));
    BULWARK_RETURN_IF_ERROR(storage::ValidateId(role.name, "role name"));
    if (const auto* existing = snap->FindRole(role.name); existing != nullptr && existing->built_in) {
      return BStatus::AlreadyExists("role '" + role.name + "' is built in");
    }
    role.id = role.name;
    const Json record = {{"name", role.name}, {"actions", role.actions}};
    BULWARK_RETURN_IF_ERROR(
        Named(w.Commit(w.node.store->PrepareAccessPut(RoleKey(role.id), record.dump(), true)).status(),
              "role '" + role.id + "'"));
    FillRole(role, static_cast<v1::RoleResponse*>(response)->mutable_role());
    return BStatus::Ok();
  }
  if (method == "DeleteRole") {
    const auto& r = static_cast<const v1::RoleRequest&>(request);
    const auto* role = snap->FindRole(r.id());
    if (role != nullptr && role->built_in) return BStatus::FailedPrecondition("built-in roles cannot be deleted");
    for (const auto& a : snap->assignments) {
      if (role != nullptr && (a.role == role->id || a.role == role->name)) {
        return BStatus::FailedPrecondition("role '" + r.id() + "' is assigned (assignment " + a.id +
                                           "); unassign it first");
      }
    }
    BULWARK_RETURN_IF_ERROR(storage::ValidateId(r.id(), "role id"));
    BULWARK_RETURN_IF_ERROR(
        Named(w.Commit(w.node.store->PrepareAccessDelete(RoleKey(r.id()))).status(), "role '" + r.id() + "'"));
    static_cast<v1::RoleResponse*>(response)->mutable_role()->set_id(r.id());
    return BStatus::Ok();
  }
  if (method == "AssignRole") {
    v1::RoleAssignment a = static_cast<const v1::AssignRoleRequest&>(request).assignment();
    BULWARK_RETURN_IF_ERROR(ValidateText(a.principal(), kMaxPrincipalBytes, "a principal"));
    const auto* role = snap->FindRole(a.role());
    if (role == nullptr) return BStatus::NotFound("role '" + a.role() + "' does not exist");
    BULWARK_ASSIGN_OR_RETURN(auto scope, security::ParseScope(a.scope().empty() ? "/" : a.scope()));
    if (snap->assignments.size() >= kMaxRoleAssignments) {
      return BStatus::ResourceExhausted("the account holds at most " + std::to_string(kMaxRoleAssignments) +
                                        " role assignments");
    }
    if (a.id().empty()) a.set_id(RandomHex(8));
    BULWARK_RETURN_IF_ERROR(storage::ValidateId(a.id(), "assignment id"));
    a.set_role(role->id);
    a.set_scope(scope.ToString());
    const Json record = {{"id", a.id()}, {"principal", a.principal()}, {"role", a.role()}, {"scope", a.scope()}};
    BULWARK_RETURN_IF_ERROR(
        Named(w.Commit(w.node.store->PrepareAccessPut(AssignmentKey(a.id()), record.dump(), true)).status(),
              "assignment '" + a.id() + "'"));
    *static_cast<v1::RoleAssignmentResponse*>(response)->mutable_assignment() = a;
    return BStatus::Ok();
  }
  // UnassignRole
  const auto& r = static_cast<const v1::UnassignRoleRequest&>(request);
  BULWARK_RETURN_IF_ERROR(storage::ValidateId(r.id(), "assignment id"));
  BULWARK_RETURN_IF_ERROR(Named(w.Commit(w.node.store->PrepareAccessDelete(AssignmentKey(r.id()))).status(),
                                "assignment '" + r.id() + "'"));
  static_cast<v1::RoleAssignmentResponse*>(response)->mutable_assignment()->set_id(r.id());
  return BStatus::Ok();
}

BStatus SettingsWrite(const Writer& w, std::string_view method, const pb::Message& request, pb::Message* response) {
  if (method == "SetAccessSettings") {
    const auto& r = static_cast<const v1::SetAccessSettingsRequest&>(request);
    BULWARK_ASSIGN_OR_RETURN(auto snap, Snap(w.node));
    bool disable = snap->disable_local_auth;
    std::string audience = snap->audience;
    for (const auto& field : r.set()) {
      if (field == "disable_local_auth") {
        disable = r.disable_local_auth();
      } else if (field == "audience") {
        BULWARK_RETURN_IF_ERROR(ValidateText(r.audience(), kMaxAudienceBytes, "the audience"));
        audience = r.audience();
      } else {
        return BStatus::InvalidArgument("unknown access setting '" + field + "' (disable_local_auth, audience)");
      }
    }
    const Json record = {{"disable_local_auth", disable}, {"audience", audience}};
    BULWARK_RETURN_IF_ERROR(
        w.Commit(w.node.store->PrepareAccessPut(kAccessSettingsKey, record.dump(), false)).status());
    spdlog::warn("event=access_settings_changed disable_local_auth={} audience=\"{}\"", disable, audience);
  } else if (method == "AddIssuer") {
    const auto& i = static_cast<const v1::AddIssuerRequest&>(request).issuer();
    BULWARK_RETURN_IF_ERROR(storage::ValidateId(i.key_id(), "issuer key id"));
    BULWARK_RETURN_IF_ERROR(ValidateText(i.issuer(), kMaxIssuerBytes, "the issuer"));
    BULWARK_RETURN_IF_ERROR(security::ParseEd25519PublicKey(i.public_key()).status());
    const Json record = {{"kid", i.key_id()}, {"issuer", i.issuer()}, {"public_key", i.public_key()}};
    BULWARK_RETURN_IF_ERROR(
        Named(w.Commit(w.node.store->PrepareAccessPut(IssuerKey(i.key_id()), record.dump(), true)).status(),
              "issuer key '" + i.key_id() + "'"));
  } else if (method == "SetLockdown") {
    const bool on = static_cast<const v1::LockdownRequest&>(request).on();
    auto done = on ? w.Commit(w.node.store->PrepareAccessPut(kLockdownKey, "1", false))
                   : w.Commit(w.node.store->PrepareAccessDelete(kLockdownKey));
    // Turning off what is off is not an error.
    if (!done.ok() && !(done.status().code() == Code::kNotFound && !on)) return done.status();
    spdlog::warn("event=lockdown on={}", on);
  } else {
    const auto& r = static_cast<const v1::RemoveIssuerRequest&>(request);
    BULWARK_RETURN_IF_ERROR(storage::ValidateId(r.key_id(), "issuer key id"));
    BULWARK_RETURN_IF_ERROR(Named(w.Commit(w.node.store->PrepareAccessDelete(IssuerKey(r.key_id()))).status(),
                                  "issuer key '" + r.key_id() + "'"));
  }
  BULWARK_ASSIGN_OR_RETURN(auto after, Snap(w.node));
  FillSettings(*after, static_cast<v1::AccessSettingsResponse*>(response));
  return BStatus::Ok();
}

}  // namespace

bool IsAccessWrite(std::string_view method) { return AccessWriteTypes(method).has_value(); }

std::optional<std::pair<std::unique_ptr<pb::Message>, std::unique_ptr<pb::Message>>> AccessWriteTypes(
    std::string_view method) {
  auto make = [](auto req, auto resp) {
    return std::make_optional(std::pair<std::unique_ptr<pb::Message>, std::unique_ptr<pb::Message>>(
        std::make_unique<decltype(req)>(), std::make_unique<decltype(resp)>()));
  };
  if (method == "RegenerateKey") return make(v1::RegenerateKeyRequest{}, v1::RegenerateKeyResponse{});
  if (method == "CreateUser" || method == "DeleteUser") return make(v1::UserRequest{}, v1::UserResponse{});
  if (method == "CreatePermission") return make(v1::CreatePermissionRequest{}, v1::PermissionResponse{});
  if (method == "DeletePermission") return make(v1::PermissionRequest{}, v1::PermissionResponse{});
  if (method == "CreateRole") return make(v1::CreateRoleRequest{}, v1::RoleResponse{});
  if (method == "DeleteRole") return make(v1::RoleRequest{}, v1::RoleResponse{});
  if (method == "AssignRole") return make(v1::AssignRoleRequest{}, v1::RoleAssignmentResponse{});
  if (method == "UnassignRole") return make(v1::UnassignRoleRequest{}, v1::RoleAssignmentResponse{});
  if (method == "SetAccessSettings") return make(v1::SetAccessSettingsRequest{}, v1::AccessSettingsResponse{});
  if (method == "AddIssuer") return make(v1::AddIssuerRequest{}, v1::AccessSettingsResponse{});
  if (method == "RemoveIssuer") return make(v1::RemoveIssuerRequest{}, v1::AccessSettingsResponse{});
  if (method == "SetLockdown") return make(v1::LockdownRequest{}, v1::AccessSettingsResponse{});
  return std::nullopt;
}

Status AccessWrite(NodeContext& node, std::string_view method, const pb::Message& request, pb::Message* response,
                   Deadline deadline, std::string_view replay_id) {
  const Writer w{node, deadline, replay_id};
  if (method == "RegenerateKey") {
    return RegenerateKeyWrite(w, static_cast<const v1::RegenerateKeyRequest&>(request),
                              static_cast<v1::RegenerateKeyResponse*>(response));
  }
  if (method == "CreateUser" || method == "DeleteUser") {
    return UserWrite(w, method, static_cast<const v1::UserRequest&>(request), static_cast<v1::UserResponse*>(response));
  }
  if (method == "CreatePermission") {
    return CreatePermissionWrite(w, static_cast<const v1::CreatePermissionRequest&>(request),
                                 static_cast<v1::PermissionResponse*>(response));
  }
  if (method == "DeletePermission") {
    const auto& r = static_cast<const v1::PermissionRequest&>(request);
    BULWARK_RETURN_IF_ERROR(storage::ValidateId(r.permission(), "permission id"));
    BULWARK_RETURN_IF_ERROR(storage::ValidateId(r.user(), "user id"));
    auto* p = static_cast<v1::PermissionResponse*>(response)->mutable_permission();
    p->set_database(r.database());
    p->set_user(r.user());
    p->set_id(r.permission());
    return Named(
        w.Commit(node.store->PrepareAccessDelete(PermissionKey(r.database(), r.user(), r.permission()))).status(),
        "permission '" + r.permission() + "' of user '" + r.user() + "'");
  }
  if (method == "CreateRole" || method == "DeleteRole" || method == "AssignRole" || method == "UnassignRole") {
    return RoleWrite(w, method, request, response);
  }
  if (method == "SetAccessSettings" || method == "AddIssuer" || method == "RemoveIssuer" || method == "SetLockdown") {
    return SettingsWrite(w, method, request, response);
  }
  return BStatus::Internal("no access write for method '" + std::string(method) + "'");
}

// ---- AccessService -----------------------------------------------------------

grpc::Status AccessService::Write(Ctx* ctx, const char* method, const ResourceRef& ref, const pb::Message& req,
                                  pb::Message* resp) {
  return runner_.RunAs(ctx, method, ref, [&](const Principal& who) -> BStatus {
    return node_->writes->Write(method, req, resp, RequestDeadline(ctx, *node_->config), who.replay_id);
  });
}

grpc::Status AccessService::RegenerateKey(Ctx* ctx, const v1::RegenerateKeyRequest* req,
                                          v1::RegenerateKeyResponse* resp) {
  return Write(ctx, "RegenerateKey", security::AccountRef("post"), *req, resp);
}

grpc::Status AccessService::ShowKey(Ctx* ctx, const v1::ShowKeyRequest* req, v1::ShowKeyResponse* resp) {
  Operation op = ControlOp("ShowKey", security::AccountRef("get"));
  op.needs_read_write_key = true;
  return runner_.Run(ctx, op, security::AccountRef("get"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(auto snap, Snap(*node_));
    const AccountKey* key = snap->FindKey(req->name());
    if (key == nullptr) return BStatus::NotFound("account key '" + req->name() + "' does not exist");
    resp->set_key_base64(crypto::Base64Encode(key->key.view()));
    return BStatus::Ok();
  });
}

grpc::Status AccessService::CreateUser(Ctx* ctx, const v1::UserRequest* req, v1::UserResponse* resp) {
  return Write(ctx, "CreateUser", security::UserFeedRef("post", req->database()), *req, resp);
}

grpc::Status AccessService::DeleteUser(Ctx* ctx, const v1::UserRequest* req, v1::UserResponse* resp) {
  return Write(ctx, "DeleteUser", security::UserRef("delete", req->database(), req->user()), *req, resp);
}

grpc::Status AccessService::ListUsers(Ctx* ctx, const v1::ListUsersRequest* req, v1::ListUsersResponse* resp) {
  return runner_.Run(ctx, "ListUsers", security::UserFeedRef("get", req->database()), [&]() -> BStatus {
    BULWARK_RETURN_IF_ERROR(node_->store->ReadDatabase(req->database()).status());
    const std::string prefix = UserKey(req->database(), "");
    BULWARK_ASSIGN_OR_RETURN(auto records, node_->store->AccessRecords(prefix));
    for (const auto& [key, value] : records) {
      if (key.find('/', prefix.size()) != std::string::npos) continue;  // a permission
      Json j = Json::parse(value, nullptr, false);
      if (!j.is_object()) continue;
      auto* u = resp->add_users();
      u->set_database(req->database());
      u->set_id(key.substr(prefix.size()));
      u->set_rid(j.value("rid", ""));
      u->set_etag(j.value("etag", ""));
      u->set_ts(j.value("ts", int64_t{0}));
    }
    return BStatus::Ok();
  });
}

grpc::Status AccessService::CreatePermission(Ctx* ctx, const v1::CreatePermissionRequest* req,
                                             v1::PermissionResponse* resp) {
  const auto& p = req->permission();
  return Write(ctx, "CreatePermission", security::PermissionFeedRef("post", p.database(), p.user()), *req, resp);
}

grpc::Status AccessService::DeletePermission(Ctx* ctx, const v1::PermissionRequest* req, v1::PermissionResponse* resp) {
  return Write(ctx, "DeletePermission",
               security::PermissionRef("delete", req->database(), req->user(), req->permission()), *req, resp);
}

grpc::Status AccessService::ListPermissions(Ctx* ctx, const v1::ListPermissionsRequest* req,
                                            v1::ListPermissionsResponse* resp) {
  return runner_.Run(
      ctx, "ListPermissions", security::PermissionFeedRef("get", req->database(), req->user()), [&]() -> BStatus {
        BULWARK_ASSIGN_OR_RETURN(auto snap, Snap(*node_));
        if (!UserExists(*node_, req->database(), req->user())) {
          return BStatus::NotFound("user '" + req->user() + "' of database '" + req->database() + "' does not exist");
        }
        const std::string prefix = UserKey(req->database(), req->user()) + "/";
        for (auto it = snap->permissions.lower_bound(prefix);
             it != snap->permissions.end() && it->first.starts_with(prefix); ++it) {
          FillPermission(it->second, resp->add_permissions());
        }
        return BStatus::Ok();
      });
}

grpc::Status AccessService::ReadPermission(Ctx* ctx, const v1::PermissionRequest* req, v1::PermissionResponse* resp) {
  const ResourceRef ref = security::PermissionRef("get", req->database(), req->user(), req->permission());
  Operation op = ControlOp("ReadPermission", ref);
  op.needs_read_write_key = true;  // it issues a token: a read-only key must not mint write access
  return runner_.RunAs(ctx, op, ref, [&](const Principal& who) -> BStatus {
    const uint32_t ttl =
        req->ttl_s() == 0 ? static_cast<uint32_t>(security::kDefaultResourceTokenTtl.count()) : req->ttl_s();
    if (ttl > security::kMaxResourceTokenTtl.count()) {
      return BStatus::InvalidArgument("a resource token lives at most " +
                                      std::to_string(security::kMaxResourceTokenTtl.count()) + " s (5 h)");
    }
    BULWARK_ASSIGN_OR_RETURN(auto snap, Snap(*node_));
    auto it = snap->permissions.find(PermissionKey(req->database(), req->user(), req->permission()));
    if (it == snap->permissions.end()) {
      return BStatus::NotFound("permission '" + req->permission() + "' of user '" + req->user() + "' does not exist");
    }
    // The token is signed by the key the caller used, so regenerating that
    // key revokes it.
    const AccountKey* key = snap->FindKey(who.key_name);
    if (key == nullptr || key->version == 0) {
      return BStatus::Unavailable("the account keys are not set up yet; retry in a moment");
    }
    const PermissionRecord& p = it->second;
    security::ResourceTokenClaims claims;
    claims.key_name = key->name;
    claims.key_version = static_cast<uint32_t>(key->version);
    claims.database = p.database;
    claims.user = p.user;
    claims.permission = p.id;
    claims.permission_rid = p.rid;
    claims.mode = p.mode;
    claims.resource_link = p.resource;
    claims.partition_key_json = p.partition_key_json;
    claims.issued_unix_s = UnixNowSeconds();
    claims.expires_unix_s = claims.issued_unix_s + ttl;
    BULWARK_RETURN_IF_ERROR(security::ValidateResourceTokenClaims(claims));
    FillPermission(p, resp->mutable_permission());
    resp->mutable_permission()->set_token(security::IssueResourceToken(key->key, claims));
    resp->mutable_permission()->set_token_expires_ts(claims.expires_unix_s);
    return BStatus::Ok();
  });
}

grpc::Status AccessService::CreateRole(Ctx* ctx, const v1::CreateRoleRequest* req, v1::RoleResponse* resp) {
  return Write(ctx, "CreateRole", security::AccountRef("post"), *req, resp);
}

grpc::Status AccessService::DeleteRole(Ctx* ctx, const v1::RoleRequest* req, v1::RoleResponse* resp) {
  return Write(ctx, "DeleteRole", security::AccountRef("delete"), *req, resp);
}

grpc::Status AccessService::ListRoles(Ctx* ctx, const v1::ListRolesRequest*, v1::ListRolesResponse* resp) {
  return runner_.Run(ctx, "ListRoles", security::AccountRef("get"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(auto snap, Snap(*node_));
    for (const auto& r : snap->roles) FillRole(r, resp->add_roles());
    return BStatus::Ok();
  });
}

grpc::Status AccessService::AssignRole(Ctx* ctx, const v1::AssignRoleRequest* req, v1::RoleAssignmentResponse* resp) {
  return Write(ctx, "AssignRole", security::AccountRef("post"), *req, resp);
}

grpc::Status AccessService::UnassignRole(Ctx* ctx, const v1::UnassignRoleRequest* req,
                                         v1::RoleAssignmentResponse* resp) {
  return Write(ctx, "UnassignRole", security::AccountRef("delete"), *req, resp);
}

grpc::Status AccessService::ListAssignments(Ctx* ctx, const v1::ListAssignmentsRequest*,
                                            v1::ListAssignmentsResponse* resp) {
  return runner_.Run(ctx, "ListAssignments", security::AccountRef("get"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(auto snap, Snap(*node_));
    for (const auto& a : snap->assignments) {
      auto* out = resp->add_assignments();
      out->set_id(a.id);
      out->set_principal(a.principal);
      out->set_role(a.role);
      out->set_scope(a.scope.ToString());
    }
    return BStatus::Ok();
  });
}

grpc::Status AccessService::GetAccessSettings(Ctx* ctx, const v1::AccessSettingsRequest*,
                                              v1::AccessSettingsResponse* resp) {
  return runner_.Run(ctx, "GetAccessSettings", security::AccountRef("get"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(auto snap, Snap(*node_));
    FillSettings(*snap, resp);
    return BStatus::Ok();
  });
}

grpc::Status AccessService::SetAccessSettings(Ctx* ctx, const v1::SetAccessSettingsRequest* req,
                                              v1::AccessSettingsResponse* resp) {
  return Write(ctx, "SetAccessSettings", security::AccountRef("put"), *req, resp);
}

grpc::Status AccessService::AddIssuer(Ctx* ctx, const v1::AddIssuerRequest* req, v1::AccessSettingsResponse* resp) {
  return Write(ctx, "AddIssuer", security::AccountRef("post"), *req, resp);
}

grpc::Status AccessService::SetLockdown(Ctx* ctx, const v1::LockdownRequest* req, v1::AccessSettingsResponse* resp) {
  return Write(ctx, "SetLockdown", security::AccountRef("put"), *req, resp);
}

grpc::Status AccessService::RemoveIssuer(Ctx* ctx, const v1::RemoveIssuerRequest* req,
                                         v1::AccessSettingsResponse* resp) {
  return Write(ctx, "RemoveIssuer", security::AccountRef("delete"), *req, resp);
}

// ---- AccountKeyBootstrap -------------------------------------------------------

void AccountKeyBootstrap::Start() {
  thread_ = std::thread([this] {
    while (!stop_) {
      auto snap = node_->access->Snapshot();
      size_t present = 0;
      if (snap.ok()) {
        for (std::string_view name : storage::kAccountKeyNames) {
          const AccountKey* k = (*snap)->FindKey(name);
          if (k != nullptr && k->version != 0) ++present;
        }
      }
      if (present == std::size(storage::kAccountKeyNames)) return;
      if (snap.ok() && node_->replica->is_leader() &&
          node_->replica->applied_index() >= node_->replica->status().commit_index) {
        for (std::string_view name : storage::kAccountKeyNames) {
          const AccountKey* k = (*snap)->FindKey(name);
          if (k != nullptr && k->version != 0) continue;
          crypto::SecretBytes key = name == "primary"
                                        ? crypto::SecretBytes::CopyFrom(node_->access->bootstrap_primary().view())
                                        : crypto::SecretBytes::Random(security::kAccountKeyBytes);
          auto done = CommitCommand(*node_->replica, node_->store->PrepareSetAccountKey(name, key.view(), true), {},
                                    std::chrono::system_clock::now() + std::chrono::seconds(5));
          if (done.ok()) {
            spdlog::info("event=account_key_created name={}", name);
          } else if (done.status().code() != Code::kAlreadyExists) {
            spdlog::warn("event=account_key_bootstrap_retry name={} error=\"{}\"", name, done.status().message());
            break;
          }
        }
      }
      for (int i = 0; i < 5 && !stop_; ++i) std::this_thread::sleep_for(kBootstrapPoll / 5);
    }
  });
}

void AccountKeyBootstrap::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace bulwark::server
