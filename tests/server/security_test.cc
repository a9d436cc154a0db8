// Proves the Cosmos DB signing scheme (string to sign, signature, header) and
// every way a signature check can fail; and that generated certificates parse.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <catch2/catch.hpp>

#include "crypto/secret.h"
#include "security/certificates.h"
#include "security/ip_allowlist.h"
#include "security/request_signing.h"

using namespace bulwark;
using namespace bulwark::security;
using std::chrono::system_clock;

TEST_CASE("String to sign follows the Cosmos DB REST layout", "[security][signing]") {
  const auto ref = ItemRef("GET", "Shop", "Orders", "O1");
  CHECK(StringToSign(ref, "Tue, 01 Nov 1994 08:12:31 GMT") ==
        "get\ndocs\ndbs/Shop/colls/Orders/docs/O1\ntue, 01 nov 1994 08:12:31 gmt\n\n");
  CHECK(ItemFeedRef("post", "d", "c").link == "dbs/d/colls/c");
  CHECK(ItemFeedRef("post", "d", "c").type == "docs");
  CHECK(ContainerFeedRef("post", "d").link == "dbs/d");
  CHECK(DatabaseFeedRef("get").link.empty());
  CHECK(AccountRef("get").type.empty());
}

TEST_CASE("The signature equals an independent HMAC-SHA256 (OpenSSL) of the string to sign", "[security][signing]") {
  const auto key = crypto::SecretBytes::Random(kAccountKeyBytes);
  const auto ref = ItemRef("put", "Shop", "Orders", "O1");
  const std::string date = "Sat, 28 Nov 2026 12:00:00 GMT";
  auto decoded = UrlDecode(SignWithMasterKey(key, ref, date));
  REQUIRE(decoded.ok());
  const std::string prefix = "type=master&ver=1.0&sig=";
  REQUIRE(decoded->rfind(prefix, 0) == 0);
  const std::string message = StringToSign(ref, date);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac, &mac_len);
  CHECK(decoded->substr(prefix.size()) ==
        crypto::Base64Encode(std::string_view(reinterpret_cast<const char*>(mac), mac_len)));
}

TEST_CASE("Signature verification: good, wrong key, other resource, stale, malformed", "[security][signing]") {
  const auto key = crypto::SecretBytes::Random(kAccountKeyBytes);
  const auto now = system_clock::now();
  const std::string date = FormatHttpDate(now);
  const auto ref = ItemRef("get", "d", "c", "i1");
  const std::string auth = SignWithMasterKey(key, ref, date);
  CHECK(VerifyMasterSignature(key, ref, date, auth, now).ok());

  CHECK(VerifyMasterSignature(crypto::SecretBytes::Random(kAccountKeyBytes), ref, date, auth, now).code() ==
        Code::kUnauthenticated);
  CHECK(VerifyMasterSignature(key, ItemRef("get", "d", "c", "i2"), date, auth, now).code() == Code::kUnauthenticated);
  CHECK(VerifyMasterSignature(key, ItemRef("delete", "d", "c", "i1"), date, auth, now).code() ==
        Code::kUnauthenticated);
  const auto stale = now - std::chrono::minutes(16);
  const std::string old_date = FormatHttpDate(stale);
  auto s = VerifyMasterSignature(key, ref, old_date, SignWithMasterKey(key, ref, old_date), now);
  CHECK(s.code() == Code::kUnauthenticated);
  CHECK(s.message().find("15 minutes") != std::string::npos);
  const auto future = FormatHttpDate(now + std::chrono::minutes(16));
  CHECK(VerifyMasterSignature(key, ref, future, SignWithMasterKey(key, ref, future), now).code() ==
        Code::kUnauthenticated);
  CHECK(VerifyMasterSignature(key, ref, date, "", now).code() == Code::kUnauthenticated);
  CHECK(VerifyMasterSignature(key, ref, "", auth, now).code() == Code::kUnauthenticated);
  CHECK(VerifyMasterSignature(key, ref, "yesterday", auth, now).code() == Code::kUnauthenticated);
  CHECK(VerifyMasterSignature(key, ref, date, "type=master&ver=1.0&sig=%%%", now).code() == Code::kUnauthenticated);
  CHECK(VerifyMasterSignature(key, ref, date, "type=resource&ver=1.0&sig=abc", now).code() == Code::kUnauthenticated);
  CHECK(VerifyMasterSignature(key, ref, date, std::string(5000, 'a'), now).code() == Code::kUnauthenticated);
  // The error never carries the key or the expected signature.
  CHECK(s.message().find(crypto::Base64Encode(key.view())) == std::string::npos);
}

TEST_CASE("HTTP dates round trip and reject anything else", "[security][signing]") {
  auto t = ParseHttpDate("Tue, 01 Nov 1994 08:12:31 GMT");
  REQUIRE(t.ok());
  CHECK(FormatHttpDate(*t) == "Tue, 01 Nov 1994 08:12:31 GMT");
  CHECK(std::chrono::system_clock::to_time_t(*t) == 783677551);
  for (const char* bad : {"", "Tue, 01 Nov 1994 08:12:31 UTC", "Tue, 01 Foo 1994 08:12:31 GMT",
                          "Tue, 41 Nov 1994 08:12:31 GMT", "Tue, 01 Nov 1994 28:12:31 GMT", "1994-11-01T08:12:31Z"}) {
    INFO(bad);
    CHECK_FALSE(ParseHttpDate(bad).ok());
  }
}

TEST_CASE("URL encoding round trips base64 signatures", "[security][signing]") {
  const std::string sig = "ab+/cd==";
  CHECK(UrlEncode(sig) == "ab%2B%2Fcd%3D%3D");
  CHECK(*UrlDecode(UrlEncode(sig)) == sig);
  CHECK_FALSE(UrlDecode("%4").ok());
  CHECK_FALSE(UrlDecode("%zz").ok());
}

TEST_CASE("Generated CA and node certificates are PEM and differ per call", "[security][certs]") {
  auto ca = GenerateCa("test CA");
  REQUIRE(ca.ok());
  CHECK(ca->certificate.find("BEGIN CERTIFICATE") != std::string::npos);
  CHECK(ca->private_key.find("PRIVATE KEY") != std::string::npos);
  auto leaf = IssueCertificate(*ca, "node-1", {"127.0.1.1"}, {"localhost"});
  REQUIRE(leaf.ok());
  CHECK(leaf->certificate != ca->certificate);
  CHECK(IssueCertificate({"garbage", ca->private_key}, "n", {}, {}).status().code() == Code::kInvalidArgument);
  CHECK(IssueCertificate({ca->certificate, "garbage"}, "n", {}, {}).status().code() == Code::kInvalidArgument);
}

TEST_CASE("Firewall ranges: parsing, canonical form and matching", "[security][firewall]") {
  auto parse = [](const std::string& s) { return ParseCidr(s); };
  REQUIRE(parse("127.0.0.9").ok());
  CHECK(FormatCidr(*parse("127.0.0.9")) == "127.0.0.9/32");
  CHECK(FormatCidr(*parse("10.0.0.0/8")) == "10.0.0.0/8");
  CHECK(FormatCidr(*parse("::1")) == "::1/128");
  CHECK(FormatCidr(*parse("2001:DB8::/32")) == "2001:db8::/32");
  CHECK(FormatCidr(*parse("0.0.0.0/0")) == "0.0.0.0/0");
  for (const std::string& bad :
       std::vector<std::string>{"", "10.0.0.1/33", "::1/129", "10.0.0.1/", "10.0.0.1/8", "10.0.0.0/-1", "10.0.0.0/8x",
                                "host.example", "1.2.3", "10.0.0.0/0008", "::1%lo", std::string(200, '1')}) {
    INFO(bad);
    auto r = parse(bad);
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK(r.status().message().size() < 200);  // a clear, bounded message
  }

  auto list = IpAllowlist::Parse({"127.0.0.8/32", "10.0.0.0/8", "2001:db8::/32"});
  REQUIRE(list.ok());
  CHECK(list->Allows("ipv4:127.0.0.8:5000"));
  CHECK_FALSE(list->Allows("ipv4:127.0.0.9:5000"));
  CHECK(list->Allows("ipv4:10.200.1.2:1"));
  CHECK_FALSE(list->Allows("ipv4:11.0.0.1:1"));
  CHECK(list->Allows("ipv6:[2001:db8:ffff::1]:443"));
  CHECK_FALSE(list->Allows("ipv6:[2001:db9::1]:443"));
  CHECK(list->Allows("ipv6:[::ffff:127.0.0.8]:5000"));  // IPv4 seen through an IPv6 socket
  CHECK_FALSE(list->Allows("ipv6:[::1]:5000"));
  CHECK_FALSE(list->Allows("unix:/tmp/socket"));
  CHECK_FALSE(list->Allows("ipv6:[fe80::1%25eth0]:1"));
  CHECK_FALSE(list->Allows("garbage"));
  auto open = IpAllowlist::Parse({});
  REQUIRE(open.ok());
  CHECK(open->empty());
  CHECK(open->Allows("ipv4:203.0.113.7:1"));
  std::vector<std::string> too_many(kMaxAllowlistEntries + 1, "10.0.0.1");
  CHECK(IpAllowlist::Parse(too_many).status().code() == Code::kInvalidArgument);
}
