// Proves the secret buffer and the encoding helpers behave, including on bad input.
#include <catch2/catch.hpp>

#include "crypto/secret.h"

using namespace bulwark;
using namespace bulwark::crypto;

TEST_CASE("SecretBytes: random keys differ, copies compare equal, moves empty the source", "[crypto]") {
  REQUIRE(InitSodium().ok());
  SecretBytes a = SecretBytes::Random(32);
  SecretBytes b = SecretBytes::Random(32);
  REQUIRE(a.size() == 32);
  CHECK_FALSE(a.Equals(b));
  SecretBytes c = a.Clone();
  CHECK(a.Equals(c));
  SecretBytes moved = std::move(c);
  CHECK(c.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is the point
  CHECK(moved.Equals(a));
  CHECK_FALSE(a.Equals(SecretBytes::Random(16)));
}

TEST_CASE("Base64 and hex round trip and refuse malformed input", "[crypto]") {
  const std::string bytes("\x00\x01\xfe\xffhello", 9);
  auto decoded = Base64Decode(Base64Encode(bytes));
  REQUIRE(decoded.ok());
  CHECK(*decoded == bytes);
  CHECK(Base64Decode("not base64!").status().code() == Code::kInvalidArgument);
  CHECK(Base64Decode("QUJD=").status().code() == Code::kInvalidArgument);
  auto secret = Base64DecodeSecret(Base64Encode(bytes));
  REQUIRE(secret.ok());
  CHECK(secret->view() == bytes);

  auto hex = HexDecode(HexEncode(bytes));
  REQUIRE(hex.ok());
  CHECK(*hex == bytes);
  CHECK(HexDecode("abc").status().code() == Code::kInvalidArgument);
  CHECK(HexDecode("zz").status().code() == Code::kInvalidArgument);
}
