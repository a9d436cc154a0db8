#pragma once
// Signed identity tokens: compact JWS (RFC 7515) JWTs signed with EdDSA over
// Ed25519 (RFC 8037), verified with libsodium against the issuer keys the
// account trusts. Sent as `authorization: type=aad&ver=1.0&sig=<jwt>`.
//
// Only {"alg":"EdDSA"} is accepted (never "none", never HMAC: no algorithm
// confusion). Claims checked: iss (a trusted issuer), aud (the account's
// audience; a string or an array), exp (required), nbf (if present), sub
// (required, the principal). `kid`, if present, must match the issuer key's
// id; an issuer may have several keys (rotation).
//
// Pure functions; thread-safe. Errors are Unauthenticated, say which check
// failed (malformed, unknown issuer, signature, audience, expired, not yet
// valid) and never quote the token.

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bulwark::security {

// Below kMaxAuthorizationHeaderBytes, so the header around it still fits.
constexpr size_t kMaxJwtBytes = 3968;
// Clock difference tolerated on exp and nbf.
constexpr std::chrono::seconds kJwtLeeway{60};

struct JwtIssuerKey {
  std::string issuer;                    // the `iss` value it signs for
  std::string key_id;                    // matched against `kid` when the token has one
  std::array<uint8_t, 32> public_key{};  // Ed25519
};

struct JwtClaims {
  std::string issuer;
  std::string subject;
  std::vector<std::string> audiences;
  std::string key_id;
  int64_t expires_unix_s = 0;
  int64_t not_before_unix_s = 0;  // 0: absent
  int64_t issued_unix_s = 0;      // 0: absent
};

Result<JwtClaims> VerifyJwt(std::string_view jwt, const std::vector<JwtIssuerKey>& trusted, std::string_view audience,
                            std::chrono::system_clock::time_point now);

// Signs a token (tests, and `bulwark identity token` for development).
// `secret_key` is a 64-byte libsodium Ed25519 secret key.
Result<std::string> SignJwt(std::string_view secret_key, const JwtClaims& claims);

// An Ed25519 public key given as base64 or base64url of 32 bytes.
Result<std::array<uint8_t, 32>> ParseEd25519PublicKey(std::string_view text);

}  // namespace bulwark::security
