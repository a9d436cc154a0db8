// Proves a sealed item opens only with its key at its own address, and that
// any changed byte is detected rather than returning other data.
#include <catch2/catch.hpp>

#include "crypto/item_seal.h"

using namespace bulwark;
using namespace bulwark::crypto;

namespace {
DataKey MakeKey(uint32_t version) { return DataKey{version, SecretBytes::Random(kDataKeyBytes), 0}; }
const ItemAddress kHere{"rid-0001", "\"acme\"", "order-1"};
}  // namespace

TEST_CASE("SealItem/OpenItem round trip and carry the key version", "[crypto][seal]") {
  const DataKey key = MakeKey(7);
  const std::string plain = R"({"id":"order-1","tenant":"acme","total":10})";
  const std::string sealed = SealItem(key, kHere, plain);
  CHECK(sealed.size() == plain.size() + kSealOverheadBytes);
  CHECK(sealed.find("tenant") == std::string::npos);
  REQUIRE(SealedKeyVersion(sealed).ok());
  CHECK(*SealedKeyVersion(sealed) == 7);
  auto opened = OpenItem(key, kHere, sealed);
  REQUIRE(opened.ok());
  CHECK(*opened == plain);
  // Two seals of the same item differ: the nonce is random.
  CHECK(SealItem(key, kHere, plain) != sealed);
}

TEST_CASE("A sealed item moved to another address does not open", "[crypto][seal]") {
  const DataKey key = MakeKey(1);
  const std::string sealed = SealItem(key, kHere, "{}");
  CHECK(OpenItem(key, {"rid-0001", "\"acme\"", "order-2"}, sealed).status().code() == Code::kCorruption);
  CHECK(OpenItem(key, {"rid-0001", "\"other\"", "order-1"}, sealed).status().code() == Code::kCorruption);
  CHECK(OpenItem(key, {"rid-0002", "\"acme\"", "order-1"}, sealed).status().code() == Code::kCorruption);
  // Length prefixes keep field boundaries: ("ab","c") is not ("a","bc").
  const std::string s2 = SealItem(key, {"r", "ab", "c"}, "{}");
  CHECK(OpenItem(key, {"r", "a", "bc"}, s2).status().code() == Code::kCorruption);
}

TEST_CASE("Every flipped byte of a sealed item is detected", "[crypto][seal]") {
  const DataKey key = MakeKey(3);
  const std::string sealed = SealItem(key, kHere, R"({"id":"order-1","v":"some body text"})");
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] ^= 0x20;
    auto r = OpenItem(key, kHere, bad);
    INFO("byte " << i);
    CHECK_FALSE(r.ok());
  }
  CHECK(OpenItem(key, kHere, sealed.substr(0, 10)).status().code() == Code::kCorruption);
  CHECK(OpenItem(MakeKey(3), kHere, sealed).status().code() == Code::kCorruption);
  std::string unknown_format = sealed;
  unknown_format[0] = 9;
  CHECK(SealedKeyVersion(unknown_format).status().code() == Code::kCorruption);
}
