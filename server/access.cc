#include "server/access.h"

#include <algorithm>
#include <set>

#include <grpcpp/grpcpp.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "security/auth_header.h"
#include "storage/document_store.h"

namespace bulwark::server {
namespace {

using security::PermissionMode;
using Json = nlohmann::json;

constexpr std::string_view kAccessPrefix = "ac/";
constexpr std::string_view kUserPrefix = "ac/u/";

std::string_view MetadataValue(const grpc::ServerContext& ctx, std::string_view key) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(grpc::string_ref(key.data(), key.size()));
  if (it == md.end()) return {};
  return std::string_view(it->second.data(), it->second.size());
}

// A short, stable id for one signature (BLAKE2b-128 of it); WritePath binds
// it to the request's bytes to make a replayed signed write a no-op.
std::string ReplayId(std::string_view signature) {
  unsigned char h[16];
  crypto_generichash(h, sizeof(h), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(), nullptr,
                     0);
  return "sig:" + crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(h), sizeof(h)));
}

bool IsReadOnlyKeyName(std::string_view name) { return name.size() > 9 && name.ends_with("-readonly"); }

// A JSON field of the expected type; Corruption naming it otherwise.
template <typename T>
Result<T> Field(const Json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) return Status::Corruption(std::string("access record lacks \"") + name + "\"");
  try {
    return it->template get<T>();
  } catch (const Json::exception&) {
    return Status::Corruption(std::string("access record field \"") + name + "\" has the wrong type");
  }
}

Result<Json> ParseObject(std::string_view text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Corruption("access record is not a JSON object");
  return j;
}

// "dbs/D" or "dbs/D/colls/C" as a scope.
Result<security::Scope> LinkScope(std::string_view link) { return security::ParseScope("/" + std::string(link)); }

std::string OperationLink(const Operation& op) {
  if (op.database.empty()) return "/";
  if (op.container.empty()) return "/dbs/" + op.database;
  return "/dbs/" + op.database + "/colls/" + op.container;
}

}  // namespace

std::string UserKey(std::string_view db, std::string_view user) {
  return std::string(kUserPrefix) + std::string(db) + "/" + std::string(user);
}
std::string PermissionKey(std::string_view db, std::string_view user, std::string_view permission) {
  return UserKey(db, user) + "/" + std::string(permission);
}
std::string RoleKey(std::string_view id) { return "ac/r/" + std::string(id); }
std::string AssignmentKey(std::string_view id) { return "ac/a/" + std::string(id); }
std::string IssuerKey(std::string_view key_id) { return "ac/i/" + std::string(key_id); }

const AccountKey* AccessSnapshot::FindKey(std::string_view name) const {
  for (const auto& k : keys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

const security::RoleDefinition* AccessSnapshot::FindRole(std::string_view id_or_name) const {
  for (const auto& r : roles) {
    if (r.id == id_or_name || r.name == id_or_name) return &r;
  }
  return nullptr;
}

Result<PermissionRecord> ParsePermissionRecord(std::string_view json) {
  BULWARK_ASSIGN_OR_RETURN(Json j, ParseObject(json));
  PermissionRecord p;
  BULWARK_ASSIGN_OR_RETURN(p.database, Field<std::string>(j, "database"));
  BULWARK_ASSIGN_OR_RETURN(p.user, Field<std::string>(j, "user"));
  BULWARK_ASSIGN_OR_RETURN(p.id, Field<std::string>(j, "id"));
  BULWARK_ASSIGN_OR_RETURN(std::string mode, Field<std::string>(j, "mode"));
  BULWARK_ASSIGN_OR_RETURN(p.mode, security::ParsePermissionMode(mode));
  BULWARK_ASSIGN_OR_RETURN(p.resource, Field<std::string>(j, "resource"));
  BULWARK_RETURN_IF_ERROR(LinkScope(p.resource).status());
  BULWARK_ASSIGN_OR_RETURN(p.partition_key_json, Field<std::string>(j, "pk"));
  BULWARK_ASSIGN_OR_RETURN(p.rid, Field<std::string>(j, "rid"));
  BULWARK_ASSIGN_OR_RETURN(p.etag, Field<std::string>(j, "etag"));
  BULWARK_ASSIGN_OR_RETURN(p.ts, Field<int64_t>(j, "ts"));
  return p;
}

Result<AssignmentRecord> ParseAssignmentRecord(std::string_view json) {
  BULWARK_ASSIGN_OR_RETURN(Json j, ParseObject(json));
  AssignmentRecord a;
  BULWARK_ASSIGN_OR_RETURN(a.id, Field<std::string>(j, "id"));
  BULWARK_ASSIGN_OR_RETURN(a.principal, Field<std::string>(j, "principal"));
  BULWARK_ASSIGN_OR_RETURN(a.role, Field<std::string>(j, "role"));
  BULWARK_ASSIGN_OR_RETURN(std::string scope, Field<std::string>(j, "scope"));
  BULWARK_ASSIGN_OR_RETURN(a.scope, security::ParseScope(scope));
  return a;
}

Result<IssuerRecord> ParseIssuerRecord(std::string_view json) {
  BULWARK_ASSIGN_OR_RETURN(Json j, ParseObject(json));
  IssuerRecord r;
  BULWARK_ASSIGN_OR_RETURN(r.key_id, Field<std::string>(j, "kid"));
  BULWARK_ASSIGN_OR_RETURN(r.issuer, Field<std::string>(j, "issuer"));
  BULWARK_ASSIGN_OR_RETURN(r.public_key_base64, Field<std::string>(j, "public_key"));
  return r;
}

Result<security::RoleDefinition> ParseRoleRecord(std::string_view json) {
  BULWARK_ASSIGN_OR_RETURN(Json j, ParseObject(json));
  BULWARK_ASSIGN_OR_RETURN(std::string name, Field<std::string>(j, "name"));
  BULWARK_ASSIGN_OR_RETURN(auto actions, Field<std::vector<std::string>>(j, "actions"));
  return security::MakeCustomRole(name, actions);
}

AccessControl::AccessControl(storage::DocumentStore* store, crypto::SecretBytes bootstrap_primary)
    : store_(store), bootstrap_primary_(std::move(bootstrap_primary)) {}

Result<std::shared_ptr<const AccessSnapshot>> AccessControl::Snapshot() {
  const uint64_t generation = store_->settings_generation();
  {
    std::lock_guard lock(mu_);
    if (snapshot_ && snapshot_->generation == generation) return snapshot_;
  }
  BULWARK_ASSIGN_OR_RETURN(auto fresh, Load(generation));
  std::lock_guard lock(mu_);
  // Another thread may have loaded a newer one meanwhile: keep the newest.
  if (!snapshot_ || snapshot_->generation < fresh->generation) snapshot_ = fresh;
  return snapshot_;
}

Result<std::shared_ptr<const AccessSnapshot>> AccessControl::Load(uint64_t generation) const {
  auto snap = std::make_shared<AccessSnapshot>();
  snap->generation = generation;
  auto keys = store_->AccountKeys();
  if (!keys.ok()) return Status::Internal("the account keys cannot be read: " + keys.status().message());
  for (auto& k : *keys) {
    snap->keys.push_back({k.name, k.version, k.created_unix_s, IsReadOnlyKeyName(k.name), std::move(k.key)});
  }
  if (snap->FindKey("primary") == nullptr) {
    // Before the first leader has proposed the account keys: the key this
    // node was started with is the primary.
    snap->keys.push_back({"primary", 0, 0, false, crypto::SecretBytes::CopyFrom(bootstrap_primary_.view())});
  }
  auto ranges = store_->ClientAllowlist();
  auto firewall = ranges.ok() ? security::IpAllowlist::Parse(*ranges) : Result<security::IpAllowlist>(ranges.status());
  if (firewall.ok()) {
    snap->firewall = std::make_shared<const security::IpAllowlist>(std::move(firewall).value());
  } else {
    spdlog::error("event=firewall_unreadable error=\"{}\" note=\"refusing every client until it is fixed\"",
                  firewall.status().ToString());
  }
  snap->roles = security::BuiltInRoles();
  BULWARK_ASSIGN_OR_RETURN(auto records, store_->AccessRecords(kAccessPrefix));
  for (const auto& [key, value] : records) {
    Status s;
    std::string_view k = key;
    if (k.starts_with(kUserPrefix)) {
      // Users ("ac/u/D/U") grant nothing themselves; permissions
      // ("ac/u/D/U/P") do.
      if (std::count(k.begin(), k.end(), '/') == 3) {
        snap->users.insert(key);
        continue;
      }
      if (std::count(k.begin(), k.end(), '/') != 4) continue;
      auto p = ParsePermissionRecord(value);
      // Records come in key order, so a permission's user came just before
      // it; one without a user (a create that raced the user's delete)
      // grants nothing.
      if (p.ok() && snap->users.count(UserKey(p->database, p->user)) != 0)
        snap->permissions.emplace(key, std::move(p).value());
      s = p.status();
    } else if (k.starts_with("ac/r/")) {
      auto r = ParseRoleRecord(value);
      if (r.ok()) {
        r->id = key.substr(5);
        snap->roles.push_back(std::move(r).value());
      }
      s = r.status();
    } else if (k.starts_with("ac/a/")) {
      auto a = ParseAssignmentRecord(value);
      if (a.ok()) snap->assignments.push_back(std::move(a).value());
      s = a.status();
    } else if (k.starts_with("ac/i/")) {
      auto i = ParseIssuerRecord(value);
      if (i.ok()) {
        auto pk = security::ParseEd25519PublicKey(i->public_key_base64);
        if (pk.ok()) {
          snap->issuer_keys.push_back({i->issuer, i->key_id, *pk});
          snap->issuers.push_back(std::move(i).value());
        }
        s = pk.status();
      } else {
        s = i.status();
      }
    } else if (key == kLockdownKey) {
      snap->lockdown = true;
    } else if (key == kAccessSettingsKey) {
      auto j = ParseObject(value);
      if (j.ok()) {
        snap->disable_local_auth = j->value("disable_local_auth", false);
        snap->audience = j->value("audience", std::string(kDefaultAudience));
      }
      s = j.status();
    }
    // Fails closed: an unreadable record grants nothing (an unreadable
    // setting keeps the safe default only for audience; disable_local_auth
    // stays off, which is the state before anyone turned it on).
    if (!s.ok()) spdlog::error("event=access_record_unreadable key={} error=\"{}\"", key, s.message());
  }
  return std::shared_ptr<const AccessSnapshot>(std::move(snap));
}

Result<Principal> AccessControl::Authenticate(const grpc::ServerContext& ctx, const security::ResourceRef& ref,
                                              const AccessSnapshot& snap) const {
  const std::string_view header = MetadataValue(ctx, security::kAuthorizationHeader);
  const auto now = std::chrono::system_clock::now();
  Principal who;
  if (header.empty()) {
    // A verified client certificate identifies its holder by its subject
    // alternative names (the TLS layer checked it against the cluster CA).
    auto auth = ctx.auth_context();
    if (auth && auth->IsPeerAuthenticated()) {
      for (const auto& san : auth->FindPropertyValues("x509_subject_alternative_name")) {
        who.names.emplace_back(san.data(), san.size());
      }
      if (!who.names.empty()) {
        who.kind = Principal::Kind::kCertificate;
        who.display = "cert:" + who.names.front();
        return who;
      }
    }
    return Status::Unauthenticated("the request is not signed (no authorization header)");
  }
  BULWARK_ASSIGN_OR_RETURN(security::Authorization auth, security::ParseAuthorization(header));
  switch (auth.type) {
    case security::AuthType::kMaster: {
      const std::string_view date = MetadataValue(ctx, security::kDateHeader);
      BULWARK_RETURN_IF_ERROR(security::CheckRequestDate(date, now));
      // Every key is tried, so which one matched does not show in timing
      // beyond the count of keys.
      const AccountKey* matched = nullptr;
      for (const auto& k : snap.keys) {
        if (security::MasterSignatureMatches(k.key, ref, date, auth.credential) && matched == nullptr) matched = &k;
      }
      if (matched == nullptr) {
        return Status::Unauthenticated("the request's signature does not match (wrong key, or a different resource)");
      }
      who.kind = Principal::Kind::kAccountKey;
      who.display = "key:" + matched->name;
      who.key_name = matched->name;
      who.read_only = matched->read_only;
      who.signed_at = security::ParseHttpDate(date).value();
      who.replay_id = ReplayId(auth.credential);
      return who;
    }
    case security::AuthType::kResource: {
      BULWARK_ASSIGN_OR_RETURN(auto claimed, security::ParseResourceToken(auth.credential));
      const AccountKey* key = snap.FindKey(claimed.key_name);
      if (key == nullptr || key->read_only) {
        return Status::Unauthenticated("the resource token names an unknown signing key");
      }
      if (key->version != claimed.key_version) {
        return Status::Unauthenticated("the resource token was signed by the " + claimed.key_name +
                                       " key, which has been regenerated since");
      }
      BULWARK_ASSIGN_OR_RETURN(who.token, security::VerifyResourceToken(key->key, auth.credential, now));
      auto it = snap.permissions.find(PermissionKey(who.token.database, who.token.user, who.token.permission));
      if (it == snap.permissions.end() || it->second.rid != who.token.permission_rid) {
        return Status::Unauthenticated("the resource token's permission (or its user) was deleted");
      }
      who.kind = Principal::Kind::kResourceToken;
      who.display =
          "token:dbs/" + who.token.database + "/users/" + who.token.user + "/permissions/" + who.token.permission;
      who.read_only = who.token.mode == PermissionMode::kRead;
      return who;
    }
    case security::AuthType::kAad: {
      BULWARK_ASSIGN_OR_RETURN(auto claims, security::VerifyJwt(auth.credential, snap.issuer_keys, snap.audience, now));
      who.kind = Principal::Kind::kIdentity;
      who.display = "identity:" + claims.subject;
      who.names.push_back(claims.subject);
      return who;
    }
  }
  return Status::Unauthenticated("unknown authorization type");
}

Status AccessControl::Authorize(const Principal& who, const Operation& op, const AccessSnapshot& snap) const {
  const std::string what = op.plane == Plane::kData ? std::string(op.action) : std::string(op.name);
  if (snap.lockdown && op.write && !op.allowed_in_lockdown) {
    return Status::PermissionDenied("the account is in lockdown (read-only): " + std::string(op.name) +
                                    " is refused until `bulwark lockdown off`");
  }
  switch (who.kind) {
    case Principal::Kind::kAccountKey:
      if (op.plane == Plane::kData && snap.disable_local_auth) {
        return Status::PermissionDenied(
            "local authorization is disabled on this account (disable_local_auth): " + what +
            " needs an identity token or a client certificate with a role assignment");
      }
      if (who.read_only && (op.write || op.needs_read_write_key)) {
        return Status::PermissionDenied("the " + who.key_name + " key is read-only: it cannot " + op.name);
      }
      if (op.write) {
        // A signed write is applied once per signature (its replay id), and
        // the replica set remembers ids for storage::kDedupWindowMs; so a
        // write must be signed within a window that a replay cannot outlive.
        const auto now = std::chrono::system_clock::now();
        const auto skew = now > who.signed_at ? now - who.signed_at : who.signed_at - now;
        if (skew > security::kMaxWriteClockSkew) {
          return Status::Unauthenticated(
              "a signed write's x-ms-date must be within 4 minutes of the server's clock; check the client's clock");
        }
      }
      return Status::Ok();
    case Principal::Kind::kResourceToken: {
      if (snap.disable_local_auth) {
        return Status::PermissionDenied(
            "local authorization is disabled on this account (disable_local_auth): resource tokens are refused");
      }
      if (op.plane == Plane::kControl) {
        return Status::PermissionDenied(std::string("a resource token cannot ") + op.name +
                                        ": control-plane operations need an account key");
      }
      if (op.write && who.token.mode == PermissionMode::kRead) {
        return Status::PermissionDenied("the resource token's permission is Read: it does not grant " + what);
      }
      BULWARK_ASSIGN_OR_RETURN(auto scope, LinkScope(who.token.resource_link));
      if (op.database.empty() || !security::ScopeCovers(scope, op.database, op.container) ||
          (!scope.container.empty() && op.container.empty())) {
        return Status::PermissionDenied("the resource token covers /" + who.token.resource_link + ", not " +
                                        OperationLink(op) + " (" + what + ")");
      }
      if (!who.token.partition_key_json.empty()) {
        if (!op.partition_key) {
          return Status::PermissionDenied("the resource token covers one partition key; " + what +
                                          " over the whole container is not allowed");
        }
        BULWARK_ASSIGN_OR_RETURN(std::string pk, op.partition_key());
        if (pk != who.token.partition_key_json) {
          return Status::PermissionDenied("the resource token covers another partition key (" + what + ")");
        }
      }
      return Status::Ok();
    }
    case Principal::Kind::kIdentity:
    case Principal::Kind::kCertificate: {
      if (op.plane == Plane::kControl) {
        return Status::PermissionDenied(std::string(op.name) +
                                        " is a control-plane operation: it needs an account key (role "
                                        "assignments grant data actions only)");
      }
      for (const auto& a : snap.assignments) {
        if (std::find(who.names.begin(), who.names.end(), a.principal) == who.names.end()) continue;
        if (!security::ScopeCovers(a.scope, op.database, op.container)) continue;
        const auto* role = snap.FindRole(a.role);
        if (role != nullptr && security::RoleGrants(*role, op.action)) return Status::Ok();
      }
      return Status::PermissionDenied(who.display + " has no role assignment that grants " + what + " on " +
                                      OperationLink(op));
    }
  }
  return Status::PermissionDenied("request refused");
}

}  // namespace bulwark::server
