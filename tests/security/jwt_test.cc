// Proves EdDSA JWTs round-trip through SignJwt and VerifyJwt, and that every
// check in jwt.h refuses what it should (algorithm confusion, crit, segments,
// padding, issuer, kid, signature, audience, time) without quoting the token.
#include "security/jwt.h"

#include <sodium.h>

#include <catch2/catch.hpp>
#include <string>

#include "crypto/secret.h"

using namespace bulwark;
using namespace bulwark::security;
using std::chrono::seconds;
using std::chrono::system_clock;

namespace {

constexpr int64_t kNow = 1'800'000'000;
const system_clock::time_point kNowTime = system_clock::time_point(seconds(kNow));
constexpr std::string_view kIssuer = "https://login.example/tenant";
constexpr std::string_view kAudience = "https://shop.bulwark.example";

struct KeyPair {
  std::string secret_key;
  std::array<uint8_t, 32> public_key{};
};

// Deterministic keys, so a failure replays exactly.
KeyPair MakeKeyPair(uint8_t seed_byte) {
  REQUIRE(crypto::InitSodium().ok());
  unsigned char seed[crypto_sign_SEEDBYTES];
  std::fill(std::begin(seed), std::end(seed), seed_byte);
  KeyPair pair;
  pair.secret_key.resize(crypto_sign_SECRETKEYBYTES);
  crypto_sign_seed_keypair(pair.public_key.data(), reinterpret_cast<unsigned char*>(pair.secret_key.data()), seed);
  return pair;
}

JwtClaims Claims() {
  JwtClaims c;
  c.issuer = kIssuer;
  c.subject = "alice@example";
  c.audiences = {std::string(kAudience)};
  c.key_id = "k1";
  c.expires_unix_s = kNow + 3600;
  c.not_before_unix_s = kNow - 10;
  c.issued_unix_s = kNow - 10;
  return c;
}

std::string Sign(const KeyPair& pair, const JwtClaims& claims) {
  auto jwt = SignJwt(pair.secret_key, claims);
  REQUIRE(jwt.ok());
  return *jwt;
}

// A token with any header and payload JSON, correctly signed: for checks
// that must hold even when the signature is good.
std::string SignRaw(const KeyPair& pair, std::string_view header, std::string_view payload) {
  const std::string input = crypto::Base64UrlEncode(header) + "." + crypto::Base64UrlEncode(payload);
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                       reinterpret_cast<const unsigned char*>(pair.secret_key.data()));
  return input + "." + crypto::Base64UrlEncode(std::string_view(reinterpret_cast<char*>(sig), sizeof(sig)));
}

const std::string kPayload =
    R"({"iss":"https://login.example/tenant","sub":"alice@example","aud":"https://shop.bulwark.example","exp":1800003600})";

void CheckRefused(const Result<JwtClaims>& result, std::string_view jwt, std::string_view reason) {
  INFO(reason);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == Code::kUnauthenticated);
  CHECK(result.status().message().find(reason) != std::string::npos);
  for (size_t at = 0; at + 12 <= jwt.size(); at += 12) {
    CHECK(result.status().message().find(jwt.substr(at, 12)) == std::string::npos);
  }
}

}  // namespace

TEST_CASE("A signed JWT verifies to its claims", "[security][jwt]") {
  const KeyPair pair = MakeKeyPair(1);
  const std::vector<JwtIssuerKey> trusted = {{std::string(kIssuer), "k1", pair.public_key}};
  const JwtClaims claims = Claims();
  const std::string jwt = Sign(pair, claims);
  auto verified = VerifyJwt(jwt, trusted, kAudience, kNowTime);
  REQUIRE(verified.ok());
  CHECK(verified->issuer == claims.issuer);
  CHECK(verified->subject == claims.subject);
  CHECK(verified->audiences == claims.audiences);
  CHECK(verified->key_id == "k1");
  CHECK(verified->expires_unix_s == claims.expires_unix_s);
  CHECK(verified->not_before_unix_s == claims.not_before_unix_s);
  CHECK(verified->issued_unix_s == claims.issued_unix_s);
  auto header = crypto::Base64UrlDecode(jwt.substr(0, jwt.find('.')));
  REQUIRE(header.ok());
  CHECK(*header == R"({"alg":"EdDSA","kid":"k1","typ":"JWT"})");
}

TEST_CASE("Audiences may be an array, kid and nbf/iat may be absent", "[security][jwt]") {
  const KeyPair old_key = MakeKeyPair(1), new_key = MakeKeyPair(2);
  // An issuer in rotation: two keys, and a token without kid tries both.
  const std::vector<JwtIssuerKey> trusted = {{std::string(kIssuer), "old", old_key.public_key},
                                             {std::string(kIssuer), "new", new_key.public_key}};
  JwtClaims claims = Claims();
  claims.audiences = {"https://other.example", std::string(kAudience)};
  claims.key_id.clear();
  claims.not_before_unix_s = 0;
  claims.issued_unix_s = 0;
  const std::string jwt = Sign(new_key, claims);
  auto payload = crypto::Base64UrlDecode(jwt.substr(jwt.find('.') + 1, jwt.rfind('.') - jwt.find('.') - 1));
  REQUIRE(payload.ok());
  CHECK(payload->find(R"("aud":["https://other.example","https://shop.bulwark.example"])") != std::string::npos);
  CHECK(payload->find("nbf") == std::string::npos);
  CHECK(payload->find("iat") == std::string::npos);
  auto verified = VerifyJwt(jwt, trusted, kAudience, kNowTime);
  REQUIRE(verified.ok());
  CHECK(verified->audiences == claims.audiences);
  CHECK(verified->key_id.empty());
  CHECK(verified->not_before_unix_s == 0);
}

TEST_CASE("Every refusal names its check and never quotes the token", "[security][jwt]") {
  const KeyPair pair = MakeKeyPair(1), other = MakeKeyPair(3);
  const std::vector<JwtIssuerKey> trusted = {{std::string(kIssuer), "k1", pair.public_key}};
  const std::string jwt = Sign(pair, Claims());
  const size_t first = jwt.find('.'), second = jwt.rfind('.');
  const std::string header_b64 = jwt.substr(0, first), payload_b64 = jwt.substr(first + 1, second - first - 1),
                    sig_b64 = jwt.substr(second + 1);
  auto verify = [&](const std::string& token) { return VerifyJwt(token, trusted, kAudience, kNowTime); };

  SECTION("tampered payload") {
    JwtClaims admin = Claims();
    admin.subject = "admin";
    const std::string forged = Sign(other, admin);
    const std::string spliced = forged.substr(0, forged.rfind('.') + 1) + sig_b64;
    CheckRefused(verify(spliced), spliced, "signature does not verify");
  }
  SECTION("tampered signature") {
    std::string tampered = jwt;
    tampered[second + 10] = tampered[second + 10] == 'A' ? 'B' : 'A';
    CheckRefused(verify(tampered), tampered, "signature does not verify");
  }
  SECTION("signed by a key the issuer does not have") {
    const std::string forged = Sign(other, Claims());
    CheckRefused(verify(forged), forged, "signature does not verify");
  }
  SECTION("unknown issuer") {
    JwtClaims claims = Claims();
    claims.issuer = "https://evil.example";
    const std::string token = Sign(pair, claims);
    CheckRefused(verify(token), token, "issuer is not trusted");
  }
  SECTION("wrong kid") {
    JwtClaims claims = Claims();
    claims.key_id = "k2";
    const std::string token = Sign(pair, claims);
    CheckRefused(verify(token), token, "kid names no key");
  }
  SECTION("wrong audience") {
    CheckRefused(VerifyJwt(jwt, trusted, "https://other.example", kNowTime), jwt, "audience");
    CheckRefused(VerifyJwt(jwt, trusted, "", kNowTime), jwt, "audience");
  }
  SECTION("expired, after the leeway") {
    const auto exp = kNowTime + seconds(3600);
    CHECK(VerifyJwt(jwt, trusted, kAudience, exp + kJwtLeeway - seconds(1)).ok());
    CheckRefused(VerifyJwt(jwt, trusted, kAudience, exp + kJwtLeeway), jwt, "expired");
  }
  SECTION("not yet valid, beyond the leeway") {
    const auto nbf = kNowTime - seconds(10);
    CHECK(VerifyJwt(jwt, trusted, kAudience, nbf - kJwtLeeway).ok());
    CheckRefused(VerifyJwt(jwt, trusted, kAudience, nbf - kJwtLeeway - seconds(1)), jwt, "not yet valid");
  }
  SECTION("alg none, even with the signature segment dropped or kept") {
    const std::string none = crypto::Base64UrlEncode(R"({"alg":"none","typ":"JWT"})");
    CheckRefused(verify(none + "." + payload_b64 + "."), none, "empty segment");
    CheckRefused(verify(none + "." + payload_b64 + "." + sig_b64), none, "algorithm must be EdDSA");
  }
  SECTION("alg HS256 with the public key as the HMAC secret (algorithm confusion)") {
    const std::string input = crypto::Base64UrlEncode(R"({"alg":"HS256","typ":"JWT"})") + "." + payload_b64;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, pair.public_key.data(), pair.public_key.size());
    crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(input.data()), input.size());
    crypto_auth_hmacsha256_final(&state, mac);
    const std::string token =
        input + "." + crypto::Base64UrlEncode(std::string_view(reinterpret_cast<char*>(mac), sizeof(mac)));
    CheckRefused(verify(token), token, "algorithm must be EdDSA");
  }
  SECTION("a correctly signed token with crit, a duplicate alg, or no exp") {
    const std::string crit = SignRaw(pair, R"({"alg":"EdDSA","crit":["exp"],"exp":1})", kPayload);
    CheckRefused(verify(crit), crit, "crit");
    const std::string twice = SignRaw(pair, R"({"alg":"none","alg":"EdDSA"})", kPayload);
    CheckRefused(verify(twice), twice, "unique names");
    std::string no_exp = kPayload;
    no_exp.erase(no_exp.find(R"(,"exp")"));
    no_exp += "}";
    const std::string token = SignRaw(pair, R"({"alg":"EdDSA"})", no_exp);
    CheckRefused(verify(token), token, "exp is required");
    CHECK(verify(SignRaw(pair, R"({"alg":"EdDSA"})", kPayload)).ok());
  }
  SECTION("claims of the wrong type or empty") {
    const std::string header = R"({"alg":"EdDSA"})";
    auto with = [&](std::string_view from, std::string_view to) {
      std::string payload = kPayload;
      payload.replace(payload.find(from), from.size(), to);
      return SignRaw(pair, header, payload);
    };
    CheckRefused(verify(with(R"("sub":"alice@example")", R"("sub":"")")), "", "sub must be");
    CheckRefused(verify(with(R"("exp":1800003600)", R"("exp":"1800003600")")), "", "non-negative integers");
    CheckRefused(verify(with(R"("exp":1800003600)", R"("exp":1800003600.5)")), "", "non-negative integers");
    CheckRefused(verify(with(R"("aud":"https://shop.bulwark.example")", R"("aud":[])")), "", "aud must be");
    CheckRefused(verify(with(R"("aud":"https://shop.bulwark.example")", R"("aud":[1])")), "", "aud must be");
    CheckRefused(verify(with(R"("iss":"https://login.example/tenant")", R"("iss":7)")), "", "iss must be");
    CheckRefused(verify(SignRaw(pair, R"({"alg":"EdDSA","typ":"JOSE+JSON"})", kPayload)), "", "typ must be JWT");
    CheckRefused(verify(SignRaw(pair, R"({"alg":"EdDSA","kid":""})", kPayload)), "", "kid must be");
    CHECK(
        verify(with(R"("aud":"https://shop.bulwark.example")", R"("aud":["x","https://shop.bulwark.example"])")).ok());
  }
  SECTION("shape: segments, padding, size") {
    const std::string cases[][2] = {
        {"", "empty"},
        {jwt + "." + sig_b64, "three segments"},
        {header_b64 + "." + payload_b64, "three segments"},
        {jwt + std::string(kMaxJwtBytes, 'A'), "too long"},
        {header_b64 + "=." + payload_b64 + "." + sig_b64, "header is not unpadded base64url"},
        {header_b64 + "." + payload_b64 + "=." + sig_b64, "payload is not unpadded base64url"},
        {jwt + "=", "signature is not unpadded base64url"},
        {header_b64 + "." + payload_b64 + "." + sig_b64.substr(4), "not 64 bytes"},
        {"." + payload_b64 + "." + sig_b64, "empty segment"},
        {crypto::Base64UrlEncode("not json") + "." + payload_b64 + "." + sig_b64, "not a JSON object"},
    };
    for (const auto& [token, reason] : cases) CheckRefused(verify(token), token, reason);
  }
}

TEST_CASE("SignJwt refuses what VerifyJwt would refuse", "[security][jwt]") {
  const KeyPair pair = MakeKeyPair(1);
  CHECK(SignJwt("short", Claims()).status().code() == Code::kInvalidArgument);
  JwtClaims claims = Claims();
  claims.subject.clear();
  CHECK_FALSE(SignJwt(pair.secret_key, claims).ok());
  claims = Claims();
  claims.audiences.clear();
  CHECK_FALSE(SignJwt(pair.secret_key, claims).ok());
  claims = Claims();
  claims.expires_unix_s = 0;
  CHECK_FALSE(SignJwt(pair.secret_key, claims).ok());
  claims = Claims();
  claims.subject = std::string(kMaxJwtBytes, 's');
  CHECK_FALSE(SignJwt(pair.secret_key, claims).ok());
}

TEST_CASE("Ed25519 public keys parse from base64 and base64url", "[security][jwt]") {
  const KeyPair pair = MakeKeyPair(5);
  const std::string_view raw(reinterpret_cast<const char*>(pair.public_key.data()), pair.public_key.size());
  const std::string base64 = crypto::Base64Encode(raw), base64url = crypto::Base64UrlEncode(raw);
  for (const std::string& text : {base64, base64url, base64url + "="}) {
    auto key = ParseEd25519PublicKey(text);
    REQUIRE(key.ok());
    CHECK(*key == pair.public_key);
  }
  CHECK_FALSE(ParseEd25519PublicKey("").ok());
  CHECK_FALSE(ParseEd25519PublicKey(crypto::Base64Encode(raw.substr(1))).ok());
  CHECK_FALSE(ParseEd25519PublicKey(base64 + "AAAA").ok());
  CHECK(ParseEd25519PublicKey("not a key!").status().code() == Code::kInvalidArgument);
}
