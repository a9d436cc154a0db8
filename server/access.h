#pragma once
// Access control on every request: who is asking (Authenticate) and whether
// they may do this (Authorize). docs/security.md describes the model; in
// short:
//
//   - account keys (primary, secondary and their read-only twins) sign
//     requests; a read-only key cannot change anything;
//   - a resource token (read from a permission) grants Read or All on one
//     database or container, optionally one partition key, until it expires
//     or its permission, user or signing key goes away;
//   - an identity (a JWT from a trusted issuer, or a client certificate)
//     gets what its role assignments grant: data actions at a scope;
//   - the IP firewall's allowlist is part of the same snapshot;
//   - disable_local_auth refuses account keys and resource tokens for data
//     operations, so RBAC is the only way in; control-plane operations
//     (databases, containers, admin, access) always need an account key.
//
// Refusals are UNAUTHENTICATED (who are you?) or PERMISSION_DENIED (not
// this); messages name the missing action or the failed check, never a
// secret.
//
// Ownership: borrows the store. Thread safety: all methods may be called
// concurrently; the snapshot is immutable and replaced (not changed) when the
// replicated access records change.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/secret.h"
#include "security/ip_allowlist.h"
#include "security/jwt.h"
#include "security/rbac.h"
#include "security/request_signing.h"
#include "security/resource_token.h"

namespace grpc {
class ServerContext;
}
namespace bulwark::storage {
class DocumentStore;
}

namespace bulwark::server {

constexpr std::string_view kDefaultAudience = "bulwark";

// Access records' keys (values are JSON built by access_service.cc).
std::string UserKey(std::string_view db, std::string_view user);
std::string PermissionKey(std::string_view db, std::string_view user, std::string_view permission);
std::string RoleKey(std::string_view id);
std::string AssignmentKey(std::string_view id);
std::string IssuerKey(std::string_view key_id);
constexpr std::string_view kAccessSettingsKey = "ac/s/access";
constexpr std::string_view kLockdownKey = "ac/s/lockdown";

struct AccountKey {
  std::string name;
  uint64_t version = 0;  // 0: the bootstrap key, before the replicated keys exist
  int64_t created_unix_s = 0;
  bool read_only = false;
  crypto::SecretBytes key;
};

struct PermissionRecord {
  std::string database, user, id;
  security::PermissionMode mode = security::PermissionMode::kRead;
  std::string resource;            // "dbs/D" or "dbs/D/colls/C"
  std::string partition_key_json;  // canonical; empty: the whole resource
  std::string rid, etag;
  int64_t ts = 0;
};

struct AssignmentRecord {
  std::string id, principal, role;
  security::Scope scope;
};

struct IssuerRecord {
  std::string key_id, issuer, public_key_base64;
};

// The replicated access state, as one immutable value.
struct AccessSnapshot {
  uint64_t generation = 0;
  std::vector<AccountKey> keys;
  std::set<std::string> users;                          // by UserKey
  std::map<std::string, PermissionRecord> permissions;  // by PermissionKey (only of existing users)
  std::vector<security::RoleDefinition> roles;          // built-ins first
  std::vector<AssignmentRecord> assignments;
  std::vector<IssuerRecord> issuers;
  std::vector<security::JwtIssuerKey> issuer_keys;
  // The IP firewall's client allowlist (replicated with the account's other
  // settings, so it reloads with them). Null: the stored list does not
  // parse, and every client is refused until it is fixed (failing open
  // would defeat the firewall).
  std::shared_ptr<const security::IpAllowlist> firewall;
  bool disable_local_auth = false;
  bool lockdown = false;  // the account is read-only (kLockdownKey present)
  std::string audience{kDefaultAudience};

  const AccountKey* FindKey(std::string_view name) const;
  const security::RoleDefinition* FindRole(std::string_view id_or_name) const;
};

enum class Plane { kControl, kData };

// What a request does, as access control sees it.
struct Operation {
  const char* name = "";  // the RPC, e.g. "CreateItem"
  Plane plane = Plane::kControl;
  bool write = false;                 // changes state
  bool needs_read_write_key = false;  // reads a secret (a key, a token)
  // A change that stays allowed in lockdown (incident response: key
  // regeneration, firewall, revocations, access settings, lockdown off).
  bool allowed_in_lockdown = false;
  std::string consistency;          // reads: the level asked for (a metrics label)
  std::string_view action;          // data plane: the RBAC action
  std::string database, container;  // empty: account or database level
  // Item operations: the canonical partition key the request touches,
  // computed only when a partition-scoped token asks. Null: the request
  // spans the whole container.
  std::function<Result<std::string>()> partition_key;
};

struct Principal {
  enum class Kind { kAccountKey, kResourceToken, kIdentity, kCertificate };
  Kind kind = Kind::kAccountKey;
  std::string display;   // for logs and audit: "key:primary", "token:dbs/D/users/U/permissions/P", ...
  std::string key_name;  // kAccountKey: which key signed ("primary", "secondary-readonly", ...)
  bool read_only = false;
  security::ResourceTokenClaims token;  // kResourceToken
  std::vector<std::string> names;       // kIdentity: the subject; kCertificate: its SANs
  // A master-signed request: when it was signed (x-ms-date), and an id
  // derived from its signature, so the replica set applies a signed write
  // once (a replay within the signing window is refused).
  std::chrono::system_clock::time_point signed_at;
  std::string replay_id;
};

class AccessControl {
 public:
  // `bootstrap_primary` authenticates as the primary key until the
  // replicated keys exist (the first leader proposes them at start).
  AccessControl(storage::DocumentStore* store, crypto::SecretBytes bootstrap_primary);

  // The current snapshot, reloaded when the store's settings generation
  // moved. A record that does not parse is skipped (it grants nothing) and
  // logged; keys that fail to unwrap make this fail (Internal).
  Result<std::shared_ptr<const AccessSnapshot>> Snapshot();

  const crypto::SecretBytes& bootstrap_primary() const { return bootstrap_primary_; }

  Result<Principal> Authenticate(const grpc::ServerContext& ctx, const security::ResourceRef& ref,
                                 const AccessSnapshot& snap) const;
  Status Authorize(const Principal& who, const Operation& op, const AccessSnapshot& snap) const;

 private:
  Result<std::shared_ptr<const AccessSnapshot>> Load(uint64_t generation) const;

  storage::DocumentStore* store_;
  crypto::SecretBytes bootstrap_primary_;
  std::mutex mu_;
  std::shared_ptr<const AccessSnapshot> snapshot_;  // GUARDED_BY(mu_)
};

// Parses stored records (access_service.cc writes them). InvalidArgument or
// Corruption on malformed input.
Result<PermissionRecord> ParsePermissionRecord(std::string_view json);
Result<AssignmentRecord> ParseAssignmentRecord(std::string_view json);
Result<IssuerRecord> ParseIssuerRecord(std::string_view json);
Result<security::RoleDefinition> ParseRoleRecord(std::string_view json);

}  // namespace bulwark::server
