// Proves the authorization header round-trips for every type, accepts its
// fields in any order, and refuses every malformed shape without quoting the
// credential.
#include "security/auth_header.h"

#include <catch2/catch.hpp>
#include <string>

#include "crypto/secret.h"
#include "security/request_signing.h"

using namespace bulwark;
using namespace bulwark::security;

namespace {
// A credential with the characters base64 and JWTs carry: '+', '/', '=', '.'.
const std::string kCredential = "eyJhbGci.b2s+/x==";
}  // namespace

TEST_CASE("Formatting then parsing returns the type and credential, for each type", "[security][auth_header]") {
  for (AuthType type : {AuthType::kMaster, AuthType::kResource, AuthType::kAad}) {
    const std::string header = FormatAuthorization(type, kCredential);
    // URL-encoded: no raw separator is left for a proxy to misread.
    CHECK(header.find('&') == std::string::npos);
    CHECK(header.find('=') == std::string::npos);
    auto parsed = ParseAuthorization(header);
    REQUIRE(parsed.ok());
    CHECK(parsed->type == type);
    CHECK(parsed->credential == kCredential);
  }
  CHECK(AuthTypeName(AuthType::kAad) == "aad");
}

TEST_CASE("Fields may come in any order, URL-encoded or not", "[security][auth_header]") {
  auto parsed = ParseAuthorization("sig=abc%3D%3D&type=resource&ver=1.0");
  REQUIRE(parsed.ok());
  CHECK(parsed->type == AuthType::kResource);
  CHECK(parsed->credential == "abc==");
  auto plain = ParseAuthorization("ver=1.0&sig=a+b/c==&type=aad");
  REQUIRE(plain.ok());
  CHECK(plain->type == AuthType::kAad);
  CHECK(plain->credential == "a+b/c==");  // '+' is not a space here
}

TEST_CASE("A master-key signature's header parses as type master", "[security][auth_header]") {
  const auto key = crypto::SecretBytes::Random(kAccountKeyBytes);
  const std::string header =
      SignWithMasterKey(key, ItemRef("get", "d", "c", "i"), FormatHttpDate(std::chrono::system_clock::now()));
  auto parsed = ParseAuthorization(header);
  REQUIRE(parsed.ok());
  CHECK(parsed->type == AuthType::kMaster);
  CHECK(crypto::Base64Decode(parsed->credential).ok());
}

TEST_CASE("Each malformed header is refused as Unauthenticated, naming the problem", "[security][auth_header]") {
  struct Case {
    std::string header;
    std::string reason;
  };
  const std::string secret = "s3cretCredentialXYZ";
  const Case cases[] = {
      {"", "no authorization header"},
      {std::string(kMaxAuthorizationHeaderBytes + 1, 'a'), "too long"},
      {"type=master&ver=1.0&sig=" + secret + "%G1", "percent-encoding"},
      {"type=master&ver=1.0&sig=" + secret + "%4", "percent-encoding"},
      {"type=master&ver=1.0&sig=" + secret + "&extra=1", "unknown field"},
      {"type=master&ver=1.0&sig=" + secret + "&sig=" + secret, "repeated field"},
      {"type=master&type=aad&ver=1.0&sig=" + secret, "repeated field"},
      {"type=master&ver=1.0", "must have type, ver and sig"},
      {"type=master&sig=" + secret, "must have type, ver and sig"},
      {"type=master&ver=2.0&sig=" + secret, "ver must be 1.0"},
      {"type=Master&ver=1.0&sig=" + secret, "type must be"},
      {"type=bearer&ver=1.0&sig=" + secret, "type must be"},
      {"type=master&ver=1.0&sig=", "sig is empty"},
      {"type=master&ver=1.0&" + secret, "without '='"},
      {"type=master&ver=1.0&sig=" + secret + "&", "without '='"},
      {"type=master&ver=1.0&sig=" + secret + "%0Aevil", "not printable"},
      {"type=master&ver=1.0&sig=" + secret + " x", "not printable"},
  };
  for (const Case& c : cases) {
    INFO(c.reason);
    auto parsed = ParseAuthorization(c.header);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == Code::kUnauthenticated);
    CHECK(parsed.status().message().find(c.reason) != std::string::npos);
    CHECK(parsed.status().message().find(secret) == std::string::npos);
  }
}

TEST_CASE("The length limit is checked before decoding and holds at exactly the limit", "[security][auth_header]") {
  const std::string prefix = "type=aad&ver=1.0&sig=";
  const std::string at_limit = prefix + std::string(kMaxAuthorizationHeaderBytes - prefix.size(), 'x');
  CHECK(ParseAuthorization(at_limit).ok());
  // Percent-encoded bytes count before decoding: 4097 encoded bytes are refused
  // even though they would decode to fewer.
  std::string encoded = prefix;
  while (encoded.size() <= kMaxAuthorizationHeaderBytes) encoded += "%41";
  auto parsed = ParseAuthorization(encoded);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.status().message().find("too long") != std::string::npos);
}
