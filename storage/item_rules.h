#pragma once
// The rules an item must follow, as a Cosmos DB user knows them, and the
// parsing that enforces them. Everything here is pure and thread-safe.
//
// Choices where Cosmos DB leaves room (written down so clients can rely on them):
//   - ids and database/container names: 1..255 characters (UTF-8 bytes),
//     none of / \ ? #, and no control characters (< 0x20, 0x7f);
//   - the partition-key value must be present and a string, number, boolean
//     or null; objects and arrays are refused;
//   - JSON nesting deeper than kMaxJsonDepth is refused (it would otherwise
//     cost unbounded stack when the item is written back out);
//   - client-supplied _etag and _ts are replaced by the store's own.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace bulwark::storage {

constexpr size_t kMaxIdBytes = 255;
constexpr size_t kMaxItemBytes = 2 * 1024 * 1024;  // the stored JSON, system properties included
constexpr size_t kMaxJsonDepth = 64;
constexpr size_t kMaxPartitionKeyPathDepth = 8;
constexpr size_t kMaxPartitionKeyBytes = 2048;  // canonical JSON of the value, as in Cosmos DB

// InvalidArgument naming `what` ("item id", "database id", ...) if `id` breaks the id rules.
Status ValidateId(std::string_view id, std::string_view what);

// A partition-key path such as "/tenant" or "/address/zip".
Status ValidatePartitionKeyPath(std::string_view path);

// Parses a JSON object of at most kMaxItemBytes and kMaxJsonDepth.
// InvalidArgument for malformed JSON or a non-object; TooLarge past the size.
Status ParseItemJson(std::string_view text, nlohmann::json& out);

// The item's id (validated) and the canonical JSON of its partition-key value.
struct ItemIdentity {
  std::string id;
  std::string partition_key;  // canonical JSON text, e.g. "\"acme\"" or "42"
};
Result<ItemIdentity> ExtractIdentity(const nlohmann::json& item, std::string_view partition_key_path);

// Canonicalises a partition-key value supplied by a caller as JSON text
// (e.g. for a point read): the same canonical form ExtractIdentity produces.
Result<std::string> CanonicalPartitionKey(std::string_view json_text);

}  // namespace bulwark::storage
