#include "security/resource_token.h"

#include <sodium.h>

#include <cassert>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>

namespace bulwark::security {
namespace {

using nlohmann::json;

constexpr std::string_view kPrefix = "bwrt1.";
constexpr std::string_view kSubkeyContext = "bulwark resource token v1";
// A token issued by a node whose clock runs ahead is still honoured, up to
// this much; beyond it the token is "not yet valid".
constexpr int64_t kIssuedAheadMax_s = 5 * 60;
// BLAKE2b's key must be at least this long to be a key rather than a salt.
constexpr size_t kMinAccountKeyBytes = crypto_generichash_KEYBYTES_MIN;

Status Malformed(std::string_view what) {
  return Status::Unauthenticated("resource token is malformed: " + std::string(what));
}

bool AccountKeyUsable(const crypto::SecretBytes& key) {
  return key.size() >= kMinAccountKeyBytes && key.size() <= crypto_generichash_KEYBYTES_MAX;
}

// The MAC key: a subkey of the account key, so the same account key can sign
// requests (request_signing.h) without its MACs ever being confusable with a
// token's.
crypto::SecretBytes DeriveSubkey(const crypto::SecretBytes& account_key) {
  crypto::SecretBytes subkey(crypto_auth_hmacsha256_KEYBYTES);
  crypto_generichash(subkey.data(), subkey.size(), reinterpret_cast<const unsigned char*>(kSubkeyContext.data()),
                     kSubkeyContext.size(), account_key.data(), account_key.size());
  return subkey;
}

std::string Mac(const crypto::SecretBytes& subkey, std::string_view signed_part) {
  std::string mac(crypto_auth_hmacsha256_BYTES, '\0');
  crypto_auth_hmacsha256(reinterpret_cast<unsigned char*>(mac.data()),
                         reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), subkey.data());
  return mac;
}

// "dbs/D" or "dbs/D/colls/C" with non-empty names free of '/'; the database
// must be the permission's own.
bool ResourceLinkValid(std::string_view link, std::string_view database) {
  if (link.substr(0, 4) != "dbs/") return false;
  link.remove_prefix(4);
  const size_t slash = link.find('/');
  const std::string_view db = link.substr(0, slash);
  if (db.empty() || db != database) return false;
  if (slash == std::string_view::npos) return true;
  const std::string_view rest = link.substr(slash + 1);
  if (rest.substr(0, 6) != "colls/") return false;
  const std::string_view container = rest.substr(6);
  return !container.empty() && container.find('/') == std::string_view::npos;
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsUtf8(std::string_view s) {
  try {
    (void)json(s).dump();  // the strict error handler throws on invalid UTF-8
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

// The checks a payload must pass, shared by issuing (a precondition) and
// parsing. Returns the name of the first failed check, or nullptr.
const char* InvalidClaim(const ResourceTokenClaims& c) {
  for (const std::string* text : {&c.database, &c.user, &c.permission, &c.partition_key_json}) {
    if (!IsUtf8(*text)) return "text (not UTF-8)";
  }
  if (c.key_name != "primary" && c.key_name != "secondary") return "key name";
  if (c.database.empty() || c.user.empty() || c.permission.empty()) return "database, user or permission";
  if (c.permission_rid.empty() || !IsLowerHex(c.permission_rid)) return "permission rid";
  if (!ResourceLinkValid(c.resource_link, c.database)) return "resource link";
  if (!c.partition_key_json.empty() && !json::accept(c.partition_key_json)) return "partition key";
  if (c.issued_unix_s <= 0 || c.expires_unix_s <= c.issued_unix_s) return "validity period";
  if (c.expires_unix_s - c.issued_unix_s > kMaxResourceTokenTtl.count()) return "validity period (over 5 hours)";
  return nullptr;
}

std::string PayloadJson(const ResourceTokenClaims& c) {
  const json payload = {
      {"k", c.key_name},
      {"kv", c.key_version},
      {"db", c.database},
      {"u", c.user},
      {"p", c.permission},
      {"prid", c.permission_rid},
      {"m", PermissionModeName(c.mode)},
      {"r", c.resource_link},
      {"pk", c.partition_key_json},
      {"iat", c.issued_unix_s},
      {"exp", c.expires_unix_s},
  };
  // Never throws: invalid UTF-8 (a broken precondition) becomes U+FFFD, so
  // the token names a database or user that does not exist.
  return payload.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool ReadString(const json& payload, const char* key, std::string& out) {
  const auto it = payload.find(key);
  if (it == payload.end() || !it->is_string()) return false;
  out = it->get<std::string>();
  return true;
}

bool ReadInteger(const json& payload, const char* key, int64_t min, int64_t max, int64_t& out) {
  const auto it = payload.find(key);
  if (it == payload.end() || !it->is_number_integer()) return false;
  if (it->is_number_unsigned()) {
    const uint64_t value = it->get<uint64_t>();
    if (value > static_cast<uint64_t>(max)) return false;
    out = static_cast<int64_t>(value);
  } else {
    out = it->get<int64_t>();
  }
  return out >= min && out <= max;
}

Result<ResourceTokenClaims> ClaimsFromPayload(std::string_view payload_text) {
  const json payload = json::parse(payload_text, nullptr, /*allow_exceptions=*/false);
  if (payload.is_discarded() || !payload.is_object()) return Malformed("the payload is not a JSON object");
  // Issuers write the compact, key-sorted form; insisting on it refuses
  // duplicate keys and any second spelling of the same claims.
  if (payload.dump() != payload_text) {
    return Malformed("the payload is not in canonical form");
  }
  constexpr size_t kFieldCount = 11;
  if (payload.size() != kFieldCount) return Malformed("the payload has missing or unknown fields");
  ResourceTokenClaims c;
  std::string mode;
  int64_t key_version = 0;
  constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
  if (!ReadString(payload, "k", c.key_name) || !ReadString(payload, "db", c.database) ||
      !ReadString(payload, "u", c.user) || !ReadString(payload, "p", c.permission) ||
      !ReadString(payload, "prid", c.permission_rid) || !ReadString(payload, "m", mode) ||
      !ReadString(payload, "r", c.resource_link) || !ReadString(payload, "pk", c.partition_key_json) ||
      !ReadInteger(payload, "kv", 0, std::numeric_limits<uint32_t>::max(), key_version) ||
      !ReadInteger(payload, "iat", 0, kInt64Max, c.issued_unix_s) ||
      !ReadInteger(payload, "exp", 0, kInt64Max, c.expires_unix_s)) {
    return Malformed("a field is missing, of the wrong type or out of range");
  }
  c.key_version = static_cast<uint32_t>(key_version);
  if (mode == PermissionModeName(PermissionMode::kRead)) {
    c.mode = PermissionMode::kRead;
  } else if (mode == PermissionModeName(PermissionMode::kAll)) {
    c.mode = PermissionMode::kAll;
  } else {
    return Malformed("the mode is neither Read nor All");
  }
  if (const char* bad = InvalidClaim(c)) return Malformed(std::string("invalid ") + bad);
  return c;
}

struct TokenParts {
  std::string_view signed_part;  // "bwrt1." base64url(payload)
  std::string payload;
  std::string mac;
};

Result<TokenParts> SplitToken(std::string_view token) {
  if (token.empty()) return Malformed("empty");
  // Checked before any decoding.
  if (token.size() > kMaxResourceTokenBytes) return Status::Unauthenticated("resource token too long");
  if (token.substr(0, kPrefix.size()) != kPrefix) return Malformed("not a bwrt1 token");
  const size_t dot = token.find('.', kPrefix.size());
  if (dot == std::string_view::npos) return Malformed("no MAC");
  const std::string_view payload_b64 = token.substr(kPrefix.size(), dot - kPrefix.size());
  const std::string_view mac_b64 = token.substr(dot + 1);
  if (payload_b64.empty() || mac_b64.empty()) return Malformed("an empty part");
  auto payload = crypto::Base64UrlDecode(payload_b64);
  if (!payload.ok()) return Malformed("the payload is not base64url");
  auto mac = crypto::Base64UrlDecode(mac_b64);  // a third '.' fails here
  if (!mac.ok()) return Malformed("the MAC is not base64url");
  if (mac->size() != crypto_auth_hmacsha256_BYTES) return Malformed("the MAC has the wrong length");
  return TokenParts{token.substr(0, dot), std::move(*payload), std::move(*mac)};
}

}  // namespace

std::string_view PermissionModeName(PermissionMode mode) { return mode == PermissionMode::kAll ? "All" : "Read"; }

Result<PermissionMode> ParsePermissionMode(std::string_view name) {
  auto equals_ignoring_case = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
      if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
  };
  if (equals_ignoring_case(name, "read")) return PermissionMode::kRead;
  if (equals_ignoring_case(name, "all")) return PermissionMode::kAll;
  return Status::InvalidArgument("permission mode must be Read or All");
}

Status ValidateResourceTokenClaims(const ResourceTokenClaims& claims) {
  if (const char* bad = InvalidClaim(claims)) {
    return Status::InvalidArgument(std::string("resource token claims: invalid ") + bad);
  }
  return Status::Ok();
}

std::string IssueResourceToken(const crypto::SecretBytes& account_key, const ResourceTokenClaims& claims) {
  // A short key would make BLAKE2b unkeyed or weakly keyed, and a token
  // anyone could forge; that is a bug in the caller, not a state to run in.
  if (!AccountKeyUsable(account_key)) std::abort();
  assert(ValidateResourceTokenClaims(claims).ok());
  const std::string signed_part = std::string(kPrefix) + crypto::Base64UrlEncode(PayloadJson(claims));
  return signed_part + "." + crypto::Base64UrlEncode(Mac(DeriveSubkey(account_key), signed_part));
}

Result<ResourceTokenClaims> ParseResourceToken(std::string_view token) {
  BULWARK_ASSIGN_OR_RETURN(TokenParts parts, SplitToken(token));
  return ClaimsFromPayload(parts.payload);
}

Result<ResourceTokenClaims> VerifyResourceToken(const crypto::SecretBytes& account_key, std::string_view token,
                                                std::chrono::system_clock::time_point now) {
  if (!AccountKeyUsable(account_key)) return Status::Internal("the account key has the wrong length");
  BULWARK_ASSIGN_OR_RETURN(TokenParts parts, SplitToken(token));
  // The MAC first: nothing in an unauthenticated payload is looked at beyond
  // its framing, and a forged token learns nothing from the error.
  const crypto::SecretBytes subkey = DeriveSubkey(account_key);
  if (crypto_auth_hmacsha256_verify(reinterpret_cast<const unsigned char*>(parts.mac.data()),
                                    reinterpret_cast<const unsigned char*>(parts.signed_part.data()),
                                    parts.signed_part.size(), subkey.data()) != 0) {
    return Status::Unauthenticated("resource token does not verify (wrong key, or altered)");
  }
  BULWARK_ASSIGN_OR_RETURN(ResourceTokenClaims claims, ClaimsFromPayload(parts.payload));
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (claims.expires_unix_s <= now_s) return Status::Unauthenticated("resource token expired");
  if (claims.issued_unix_s > now_s + kIssuedAheadMax_s) {
    return Status::Unauthenticated("resource token is not yet valid (issued in the future)");
  }
  return claims;
}

}  // namespace bulwark::security
