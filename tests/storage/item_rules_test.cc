// Proves the Cosmos DB item rules: ids, partition-key paths and values,
// size and depth limits, each refused with a typed error.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "storage/item_rules.h"

using namespace bulwark;
using namespace bulwark::storage;

TEST_CASE("Ids: 1..255 bytes, no slash, backslash, question mark or hash, no control characters", "[storage][rules]") {
  CHECK(ValidateId("order-1", "item id").ok());
  CHECK(ValidateId(std::string(255, 'a'), "item id").ok());
  CHECK(ValidateId("", "item id").code() == Code::kInvalidArgument);
  CHECK(ValidateId(std::string(256, 'a'), "item id").code() == Code::kInvalidArgument);
  for (const char* bad : {"a/b", "a\\b", "a?b", "a#b", "a\nb", "a\x7f"}) {
    INFO(bad);
    CHECK(ValidateId(bad, "item id").code() == Code::kInvalidArgument);
  }
  CHECK(ValidateId("a/b", "database id").message().find("database id") != std::string::npos);
}

TEST_CASE("Partition-key paths", "[storage][rules]") {
  CHECK(ValidatePartitionKeyPath("/tenant").ok());
  CHECK(ValidatePartitionKeyPath("/address/zip").ok());
  for (const char* bad : {"", "/", "tenant", "//a", "/a/", "/a/b/c/d/e/f/g/h/i"}) {
    INFO(bad);
    CHECK(ValidatePartitionKeyPath(bad).code() == Code::kInvalidArgument);
  }
}

TEST_CASE("Item JSON: malformed, not an object, too large, too deep", "[storage][rules]") {
  nlohmann::json j;
  CHECK(ParseItemJson(R"({"id":"a"})", j).ok());
  CHECK(ParseItemJson(R"({"id":)", j).code() == Code::kInvalidArgument);
  CHECK(ParseItemJson(R"([1,2])", j).code() == Code::kInvalidArgument);
  CHECK(ParseItemJson("\"str\"", j).code() == Code::kInvalidArgument);
  const std::string big = R"({"id":"a","v":")" + std::string(kMaxItemBytes, 'x') + "\"}";
  CHECK(ParseItemJson(big, j).code() == Code::kTooLarge);
  std::string deep = R"({"id":"a","v":)";
  for (size_t i = 0; i < kMaxJsonDepth + 5; ++i) deep += "[";
  for (size_t i = 0; i < kMaxJsonDepth + 5; ++i) deep += "]";
  deep += "}";
  auto s = ParseItemJson(deep, j);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(s.message().find("deeper") != std::string::npos);
  // Brackets inside strings (and escaped quotes) do not count as nesting.
  std::string brackets = R"({"id":"a","v":")" + std::string(kMaxJsonDepth + 5, '[') + R"(\"[[[[")";
  brackets += "}";
  CHECK(ParseItemJson(brackets, j).ok());
  // Exactly the maximum depth is allowed (the top-level object counts as 1).
  std::string at_limit = R"({"id":"a","v":)";
  for (size_t i = 1; i < kMaxJsonDepth; ++i) at_limit += "[";
  for (size_t i = 1; i < kMaxJsonDepth; ++i) at_limit += "]";
  at_limit += "}";
  CHECK(ParseItemJson(at_limit, j).ok());
  // A very deep document of the maximum size is refused cheaply, not by a stack overflow.
  CHECK(ParseItemJson(std::string(kMaxItemBytes - 1, '['), j).code() == Code::kInvalidArgument);
}

TEST_CASE("Identity: id and partition-key value from the document", "[storage][rules]") {
  auto doc = [](const char* text) { return nlohmann::json::parse(text); };
  auto who = ExtractIdentity(doc(R"({"id":"o1","tenant":"acme"})"), "/tenant");
  REQUIRE(who.ok());
  CHECK(who->id == "o1");
  CHECK(who->partition_key == "\"acme\"");
  auto nested = ExtractIdentity(doc(R"({"id":"o1","a":{"zip":12345}})"), "/a/zip");
  REQUIRE(nested.ok());
  CHECK(nested->partition_key == "12345");
  CHECK(ExtractIdentity(doc(R"({"tenant":"acme"})"), "/tenant").status().code() == Code::kInvalidArgument);
  CHECK(ExtractIdentity(doc(R"({"id":7,"tenant":"acme"})"), "/tenant").status().code() == Code::kInvalidArgument);
  CHECK(ExtractIdentity(doc(R"({"id":"a/b","tenant":"x"})"), "/tenant").status().code() == Code::kInvalidArgument);
  auto missing = ExtractIdentity(doc(R"({"id":"o1"})"), "/tenant");
  CHECK(missing.status().code() == Code::kInvalidArgument);
  CHECK(missing.status().message().find("partition key") != std::string::npos);
  CHECK(ExtractIdentity(doc(R"({"id":"o1","tenant":{"x":1}})"), "/tenant").status().code() == Code::kInvalidArgument);
  CHECK(ExtractIdentity(doc(R"({"id":"o1","a":5})"), "/a/zip").status().code() == Code::kInvalidArgument);
  const std::string long_key = R"({"id":"o1","tenant":")" + std::string(kMaxPartitionKeyBytes, 'k') + "\"}";
  CHECK(ExtractIdentity(doc(long_key.c_str()), "/tenant").status().code() == Code::kInvalidArgument);
}

TEST_CASE("Caller-supplied partition keys take the same canonical form", "[storage][rules]") {
  CHECK(*CanonicalPartitionKey("\"acme\"") == "\"acme\"");
  CHECK(*CanonicalPartitionKey(" 42 ") == "42");
  CHECK(*CanonicalPartitionKey("null") == "null");
  CHECK(CanonicalPartitionKey("acme").status().code() == Code::kInvalidArgument);
  CHECK(CanonicalPartitionKey("[1]").status().code() == Code::kInvalidArgument);
}
