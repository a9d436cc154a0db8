// Fuzzes VerifyJwt against one fixed Ed25519 issuer key. Invariants: every
// refusal keeps CheckRefusal's rules; an accepted token carries exactly the
// signature the issuer's key makes over its first two segments (Ed25519 is
// deterministic), so nothing but a genuine token passes; its claims meet the
// checks jwt.h promises; and SignJwt of them verifies to the same claims.
#include <sodium.h>

#include <algorithm>

#include "crypto/secret.h"
#include "fuzz/fuzz_target.h"
#include "security/jwt.h"

using namespace bulwark;
using namespace bulwark::security;

namespace {

struct Issuer {
  std::string secret_key;
  std::vector<JwtIssuerKey> trusted;
};

const Issuer& FixedIssuer() {
  static const Issuer issuer = [] {
    if (!crypto::InitSodium().ok()) std::abort();
    unsigned char seed[crypto_sign_SEEDBYTES];
    std::fill(std::begin(seed), std::end(seed), fuzz::kJwtSeedByte);
    Issuer out;
    out.secret_key.resize(crypto_sign_SECRETKEYBYTES);
    JwtIssuerKey key{std::string(fuzz::kJwtIssuer), std::string(fuzz::kJwtKeyId), {}};
    crypto_sign_seed_keypair(key.public_key.data(), reinterpret_cast<unsigned char*>(out.secret_key.data()), seed);
    out.trusted.push_back(key);
    return out;
  }();
  return issuer;
}

bool SameClaims(const JwtClaims& a, const JwtClaims& b) {
  return a.issuer == b.issuer && a.subject == b.subject && a.audiences == b.audiences && a.key_id == b.key_id &&
         a.expires_unix_s == b.expires_unix_s && a.not_before_unix_s == b.not_before_unix_s &&
         a.issued_unix_s == b.issued_unix_s;
}

}  // namespace

BULWARK_FUZZ_TARGET(Jwt) {
  const Issuer& issuer = FixedIssuer();
  static const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(fuzz::kNow_s));
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  auto verified = VerifyJwt(input, issuer.trusted, fuzz::kJwtAudience, now);
  if (!verified.ok()) {
    fuzz::CheckRefusal(verified.status(), input);
    return 0;
  }
  const std::string_view signing_input = input.substr(0, input.rfind('.'));
  unsigned char signature[crypto_sign_BYTES];
  crypto_sign_detached(signature, nullptr, reinterpret_cast<const unsigned char*>(signing_input.data()),
                       signing_input.size(), reinterpret_cast<const unsigned char*>(issuer.secret_key.data()));
  const std::string genuine =
      std::string(signing_input) + "." +
      crypto::Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(signature), sizeof(signature)));
  BULWARK_FUZZ_CHECK(genuine == input);

  const JwtClaims& claims = *verified;
  BULWARK_FUZZ_CHECK(claims.issuer == fuzz::kJwtIssuer);
  BULWARK_FUZZ_CHECK(!claims.subject.empty());
  BULWARK_FUZZ_CHECK(std::find(claims.audiences.begin(), claims.audiences.end(), fuzz::kJwtAudience) !=
                     claims.audiences.end());
  BULWARK_FUZZ_CHECK(claims.key_id.empty() || claims.key_id == fuzz::kJwtKeyId);
  BULWARK_FUZZ_CHECK(claims.expires_unix_s > fuzz::kNow_s - kJwtLeeway.count());

  auto resigned = SignJwt(issuer.secret_key, claims);
  if (resigned.ok()) {
    auto again = VerifyJwt(*resigned, issuer.trusted, fuzz::kJwtAudience, now);
    BULWARK_FUZZ_CHECK(again.ok());
    BULWARK_FUZZ_CHECK(SameClaims(*again, claims));
  }
  return 0;
}
