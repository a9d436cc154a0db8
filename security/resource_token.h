#pragma once
// Resource tokens: what reading a permission returns, and what a client then
// sends as `authorization: type=resource&ver=1.0&sig=<token>`.
//
//   token = "bwrt1." base64url(payload) "." base64url(mac)
//   payload = compact JSON of ResourceTokenClaims
//   mac = HMAC-SHA256(subkey, "bwrt1." base64url(payload))
//   subkey = BLAKE2b-256 keyed by the account key over "bulwark resource token v1"
//
// The token names the account key that signed it (primary or secondary) and
// that key's version, so a regenerated key revokes every token it signed, and
// the permission's rid, so a deleted (or deleted and re-created) permission
// revokes it; the server checks both on every request.
//
// Pure functions; thread-safe. Errors are Unauthenticated and never quote the
// token or a key.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "crypto/secret.h"

namespace bulwark::security {

constexpr size_t kMaxResourceTokenBytes = 3072;
constexpr std::chrono::seconds kDefaultResourceTokenTtl{3600};
constexpr std::chrono::seconds kMaxResourceTokenTtl{5 * 3600};

enum class PermissionMode { kRead, kAll };
std::string_view PermissionModeName(PermissionMode mode);           // "Read", "All"
Result<PermissionMode> ParsePermissionMode(std::string_view name);  // case-insensitive; InvalidArgument

struct ResourceTokenClaims {
  std::string key_name;      // the account key that signed it: "primary" or "secondary"
  uint32_t key_version = 0;  // that key's version when it signed
  std::string database;      // the permission's database, user and id
  std::string user;
  std::string permission;
  std::string permission_rid;  // the permission's internal id (hex)
  PermissionMode mode = PermissionMode::kRead;
  std::string resource_link;       // "dbs/D" or "dbs/D/colls/C"
  std::string partition_key_json;  // canonical JSON of the key value; empty: the whole resource
  int64_t issued_unix_s = 0;
  int64_t expires_unix_s = 0;
};

// OK if `claims` can be issued, i.e. ParseResourceToken would accept them:
// key name "primary" or "secondary"; database, user, permission non-empty;
// permission_rid lower-case hex; resource_link "dbs/<database>" or
// "dbs/<database>/colls/C"; partition_key_json empty or JSON; strings UTF-8;
// 0 < issued < expires <= issued + kMaxResourceTokenTtl. InvalidArgument
// naming the first bad claim.
Status ValidateResourceTokenClaims(const ResourceTokenClaims& claims);

// Signs `claims` with `account_key`.
// REQUIRES: ValidateResourceTokenClaims(claims).ok() (asserted in debug builds).
// REQUIRES: account_key is 16..64 bytes (kAccountKeyBytes is 64); aborts
// otherwise, since a shorter key would sign tokens anyone could forge.
std::string IssueResourceToken(const crypto::SecretBytes& account_key, const ResourceTokenClaims& claims);

// Reads the claims without checking the signature (so the server can find
// the key that must verify it). Unauthenticated if malformed or oversized.
Result<ResourceTokenClaims> ParseResourceToken(std::string_view token);

// Checks the signature under `account_key` (in constant time) and the expiry
// against `now`. Returns the claims. Unauthenticated: malformed, bad
// signature ("does not verify"), expired ("expired": expires_unix_s <= now),
// or not yet valid (issued more than 5 minutes after `now`). Internal if
// `account_key` is not 16..64 bytes: a server bug, not the client's fault.
Result<ResourceTokenClaims> VerifyResourceToken(const crypto::SecretBytes& account_key, std::string_view token,
                                                std::chrono::system_clock::time_point now);

}  // namespace bulwark::security
