#include "security/jwt.h"

#include <sodium.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "crypto/secret.h"

namespace bulwark::security {
namespace {

using nlohmann::json;

constexpr std::string_view kAlgorithm = "EdDSA";
// More audiences than this is not a token any issuer we trust would write.
constexpr size_t kMaxAudiences = 32;

Status Malformed(std::string_view what) { return Status::Unauthenticated("JWT is malformed: " + std::string(what)); }

// Parses a JSON object, refusing duplicate member names at any depth (RFC
// 7515 section 5.2 allows refusing them; accepting the last one would let two
// parsers disagree about which "alg" or "aud" a token has). Never throws.
bool ParseObject(std::string_view text, json& out) {
  std::vector<std::set<std::string>> open_objects;  // the member names seen so far, innermost last
  bool duplicate = false;
  const json::parser_callback_t on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == json::parse_event_t::key && !open_objects.empty() &&
        !open_objects.back().insert(parsed.get<std::string>()).second) {
      duplicate = true;
    }
    return true;
  };
  out = json::parse(text, on_event, /*allow_exceptions=*/false);
  return !out.is_discarded() && out.is_object() && !duplicate;
}

Result<json> DecodeSegment(std::string_view segment, std::string_view name) {
  auto bytes = crypto::Base64UrlDecode(segment);
  if (!bytes.ok()) return Malformed(std::string("the ") + std::string(name) + " is not unpadded base64url");
  json object;
  if (!ParseObject(*bytes, object)) {
    return Malformed(std::string("the ") + std::string(name) + " is not a JSON object with unique names");
  }
  return object;
}

// An optional string member; false if present with another type or empty.
bool ReadString(const json& object, const char* name, std::string& out) {
  const auto it = object.find(name);
  if (it == object.end()) return true;
  if (!it->is_string() || it->get_ref<const std::string&>().empty()) return false;
  out = it->get<std::string>();
  return true;
}

// An optional NumericDate, as a non-negative integer; false otherwise.
bool ReadSeconds(const json& object, const char* name, int64_t& out) {
  const auto it = object.find(name);
  if (it == object.end()) return true;
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    out = static_cast<int64_t>(it->get<uint64_t>());
    return true;
  }
  if (!it->is_number_integer()) return false;
  out = it->get<int64_t>();
  return out >= 0;
}

bool ReadAudiences(const json& payload, std::vector<std::string>& out) {
  const auto it = payload.find("aud");
  if (it == payload.end()) return false;
  if (it->is_string()) {
    out.push_back(it->get<std::string>());
  } else if (it->is_array() && !it->empty() && it->size() <= kMaxAudiences) {
    for (const json& aud : *it) {
      if (!aud.is_string()) return false;
      out.push_back(aud.get<std::string>());
    }
  } else {
    return false;
  }
  for (const std::string& aud : out) {
    if (aud.empty()) return false;
  }
  return true;
}

Status CheckHeader(const json& header, std::string& key_id) {
  const auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string() || alg->get_ref<const std::string&>() != kAlgorithm) {
    return Status::Unauthenticated("JWT algorithm must be EdDSA");
  }
  // We understand no extension, so a token that says one is critical must be
  // refused (RFC 7515 section 4.1.11).
  if (header.contains("crit")) return Status::Unauthenticated("JWT has a crit header, which is not supported");
  if (const auto typ = header.find("typ"); typ != header.end()) {
    // RFC 7519 section 5.1 recommends "JWT"; some issuers write it lower-case.
    if (!typ->is_string() || (*typ != "JWT" && *typ != "jwt")) {
      return Malformed("typ must be JWT");
    }
  }
  if (!ReadString(header, "kid", key_id)) return Malformed("kid must be a non-empty string");
  return Status::Ok();
}

Result<JwtClaims> ReadClaims(const json& payload) {
  JwtClaims claims;
  if (!payload.contains("iss") || !ReadString(payload, "iss", claims.issuer)) {
    return Malformed("iss must be a non-empty string");
  }
  if (!payload.contains("sub") || !ReadString(payload, "sub", claims.subject)) {
    return Malformed("sub must be a non-empty string");
  }
  if (!ReadAudiences(payload, claims.audiences)) return Malformed("aud must be a non-empty string or array of them");
  if (!payload.contains("exp")) return Malformed("exp is required");
  if (!ReadSeconds(payload, "exp", claims.expires_unix_s) || !ReadSeconds(payload, "nbf", claims.not_before_unix_s) ||
      !ReadSeconds(payload, "iat", claims.issued_unix_s)) {
    return Malformed("exp, nbf and iat must be non-negative integers");
  }
  return claims;
}

// True if one of `trusted`'s keys for the claimed issuer (and kid, if any)
// verifies `signature` over `signing_input`. Sets `issuer_known` and
// `kid_known` so the error can say which check failed.
bool SignatureVerifies(const std::vector<JwtIssuerKey>& trusted, const JwtClaims& claims,
                       std::string_view signing_input, std::string_view signature, bool& issuer_known,
                       bool& kid_known) {
  issuer_known = kid_known = false;
  bool verified = false;
  for (const JwtIssuerKey& key : trusted) {
    if (key.issuer != claims.issuer) continue;
    issuer_known = true;
    if (!claims.key_id.empty() && key.key_id != claims.key_id) continue;
    kid_known = true;
    // No early exit: the time taken does not reveal which key matched.
    verified |= crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(signature.data()),
                                            reinterpret_cast<const unsigned char*>(signing_input.data()),
                                            signing_input.size(), key.public_key.data()) == 0;
  }
  return verified;
}

}  // namespace

Result<JwtClaims> VerifyJwt(std::string_view jwt, const std::vector<JwtIssuerKey>& trusted, std::string_view audience,
                            std::chrono::system_clock::time_point now) {
  if (jwt.empty()) return Malformed("empty");
  if (jwt.size() > kMaxJwtBytes) return Status::Unauthenticated("JWT too long");
  (void)crypto::InitSodium();
  const size_t first_dot = jwt.find('.');
  const size_t second_dot = first_dot == std::string_view::npos ? first_dot : jwt.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos || jwt.find('.', second_dot + 1) != std::string_view::npos) {
    return Malformed("it must have exactly three segments");
  }
  const std::string_view signing_input = jwt.substr(0, second_dot);
  const std::string_view signature_b64 = jwt.substr(second_dot + 1);
  if (first_dot == 0 || second_dot == first_dot + 1 || signature_b64.empty()) return Malformed("an empty segment");

  BULWARK_ASSIGN_OR_RETURN(const json header, DecodeSegment(jwt.substr(0, first_dot), "header"));
  std::string key_id;
  BULWARK_RETURN_IF_ERROR(CheckHeader(header, key_id));
  BULWARK_ASSIGN_OR_RETURN(const json payload,
                           DecodeSegment(jwt.substr(first_dot + 1, second_dot - first_dot - 1), "payload"));
  BULWARK_ASSIGN_OR_RETURN(JwtClaims claims, ReadClaims(payload));
  claims.key_id = std::move(key_id);
  auto signature = crypto::Base64UrlDecode(signature_b64);
  if (!signature.ok()) return Malformed("the signature is not unpadded base64url");
  if (signature->size() != crypto_sign_BYTES) return Malformed("the signature is not 64 bytes");

  bool issuer_known = false, kid_known = false;
  const bool verified = SignatureVerifies(trusted, claims, signing_input, *signature, issuer_known, kid_known);
  if (!issuer_known) return Status::Unauthenticated("JWT issuer is not trusted");
  if (!kid_known) return Status::Unauthenticated("JWT kid names no key of its issuer");
  if (!verified) return Status::Unauthenticated("JWT signature does not verify");

  // Only now, with the claims authenticated, do they mean anything.
  bool audience_matches = false;
  for (const std::string& aud : claims.audiences) audience_matches |= !audience.empty() && aud == audience;
  if (!audience_matches) return Status::Unauthenticated("JWT audience is not this account");
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const int64_t leeway_s = kJwtLeeway.count();
  // Written as now - leeway, never exp + leeway, which could overflow.
  if (now_s - leeway_s >= claims.expires_unix_s) return Status::Unauthenticated("JWT expired");
  if (claims.not_before_unix_s != 0 && claims.not_before_unix_s - leeway_s > now_s) {
    return Status::Unauthenticated("JWT is not yet valid (nbf)");
  }
  return claims;
}

Result<std::string> SignJwt(std::string_view secret_key, const JwtClaims& claims) {
  if (secret_key.size() != crypto_sign_SECRETKEYBYTES) {
    return Status::InvalidArgument("Ed25519 secret key must be 64 bytes");
  }
  if (claims.issuer.empty() || claims.subject.empty() || claims.audiences.empty() ||
      claims.audiences.size() > kMaxAudiences || claims.expires_unix_s <= 0 || claims.not_before_unix_s < 0 ||
      claims.issued_unix_s < 0) {
    return Status::InvalidArgument("JWT claims need iss, sub, 1..32 audiences and a positive exp");
  }
  for (const std::string& aud : claims.audiences) {
    if (aud.empty()) return Status::InvalidArgument("JWT audiences must be non-empty");
  }
  (void)crypto::InitSodium();
  json header = {{"alg", std::string(kAlgorithm)}, {"typ", "JWT"}};
  if (!claims.key_id.empty()) header["kid"] = claims.key_id;
  json payload = {{"iss", claims.issuer}, {"sub", claims.subject}, {"exp", claims.expires_unix_s}};
  payload["aud"] = claims.audiences.size() == 1 ? json(claims.audiences[0]) : json(claims.audiences);
  if (claims.not_before_unix_s != 0) payload["nbf"] = claims.not_before_unix_s;
  if (claims.issued_unix_s != 0) payload["iat"] = claims.issued_unix_s;

  std::string signing_input;
  try {
    signing_input = crypto::Base64UrlEncode(header.dump()) + "." + crypto::Base64UrlEncode(payload.dump());
  } catch (const json::exception&) {
    return Status::InvalidArgument("JWT claims must be UTF-8");
  }
  unsigned char signature[crypto_sign_BYTES];
  crypto_sign_detached(signature, nullptr, reinterpret_cast<const unsigned char*>(signing_input.data()),
                       signing_input.size(), reinterpret_cast<const unsigned char*>(secret_key.data()));
  std::string jwt =
      signing_input + "." +
      crypto::Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(signature), sizeof(signature)));
  if (jwt.size() > kMaxJwtBytes) return Status::InvalidArgument("JWT would be over kMaxJwtBytes");
  return jwt;
}

Result<std::array<uint8_t, 32>> ParseEd25519PublicKey(std::string_view text) {
  // 32 bytes are 44 base64 characters with padding; anything longer is not a key.
  constexpr size_t kMaxEncodedBytes = 44;
  if (text.empty() || text.size() > kMaxEncodedBytes) {
    return Status::InvalidArgument("Ed25519 public key must be base64 or base64url of 32 bytes");
  }
  // Standard base64 (padded), or base64url with or without padding (JWK "x").
  auto bytes = crypto::Base64Decode(text);
  if (!bytes.ok()) {
    std::string_view unpadded = text;
    if (!unpadded.empty() && unpadded.back() == '=') unpadded.remove_suffix(1);  // 32 bytes pad with one
    bytes = crypto::Base64UrlDecode(unpadded);
  }
  std::array<uint8_t, 32> key{};
  if (!bytes.ok() || bytes->size() != key.size()) {
    return Status::InvalidArgument("Ed25519 public key must be base64 or base64url of 32 bytes");
  }
  std::copy(bytes->begin(), bytes->end(), key.begin());
  return key;
}

}  // namespace bulwark::security
