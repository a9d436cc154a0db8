#include "storage/item_rules.h"

#include <nlohmann/json.hpp>

namespace bulwark::storage {
namespace {

using nlohmann::json;

// Nesting depth of JSON text, by a linear scan that skips strings. The
// parser is only reached with text whose depth is bounded, so writing the
// value back out (recursive) cannot exhaust the stack. Far cheaper than the
// parser's per-event callback, which it replaces.
bool DepthWithin(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return true;
}

Status ParseBounded(std::string_view text, json& out) {
  if (!DepthWithin(text, kMaxJsonDepth)) {
    return Status::InvalidArgument("JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  out = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded()) return Status::InvalidArgument("malformed JSON");
  return Status::Ok();
}

// Checks the value's type and returns its canonical form.
Result<std::string> CanonicalScalarKey(const json& v) {
  if (!(v.is_string() || v.is_number() || v.is_boolean() || v.is_null())) {
    return Status::InvalidArgument("partition-key value must be a string, number, boolean or null");
  }
  std::string canonical = v.dump();
  if (canonical.size() > kMaxPartitionKeyBytes) {
    return Status::InvalidArgument("partition-key value is longer than " + std::to_string(kMaxPartitionKeyBytes) +
                                   " bytes");
  }
  return canonical;
}

}  // namespace

Status ValidateId(std::string_view id, std::string_view what) {
  if (id.empty()) return Status::InvalidArgument(std::string(what) + " must not be empty");
  if (id.size() > kMaxIdBytes) {
    return Status::InvalidArgument(std::string(what) + " is longer than " + std::to_string(kMaxIdBytes) + " bytes");
  }
  for (char c : id) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '/' || c == '\\' || c == '?' || c == '#') {
      return Status::InvalidArgument(std::string(what) + " must not contain '" + std::string(1, c) + "'");
    }
    if (u < 0x20 || u == 0x7f)
      return Status::InvalidArgument(std::string(what) + " must not contain control characters");
  }
  return Status::Ok();
}

Status ValidatePartitionKeyPath(std::string_view path) {
  if (path.size() < 2 || path[0] != '/') {
    return Status::InvalidArgument("partition-key path must look like /field or /field/subfield");
  }
  size_t segments = 0;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end == start) return Status::InvalidArgument("partition-key path has an empty segment");
    ++segments;
    start = end + 1;
  }
  if (segments > kMaxPartitionKeyPathDepth) {
    return Status::InvalidArgument("partition-key path is deeper than " + std::to_string(kMaxPartitionKeyPathDepth));
  }
  return Status::Ok();
}

Status ParseItemJson(std::string_view text, json& out) {
  if (text.size() > kMaxItemBytes) {
    return Status::TooLarge("item is " + std::to_string(text.size()) + " bytes; the limit is " +
                            std::to_string(kMaxItemBytes));
  }
  BULWARK_RETURN_IF_ERROR(ParseBounded(text, out));
  if (!out.is_object()) return Status::InvalidArgument("an item must be a JSON object");
  return Status::Ok();
}

Result<ItemIdentity> ExtractIdentity(const json& item, std::string_view partition_key_path) {
  auto id_it = item.find("id");
  if (id_it == item.end()) return Status::InvalidArgument("item has no 'id'");
  if (!id_it->is_string()) return Status::InvalidArgument("item 'id' must be a string");
  ItemIdentity identity;
  identity.id = id_it->get<std::string>();
  BULWARK_RETURN_IF_ERROR(ValidateId(identity.id, "item id"));

  const json* node = &item;
  size_t start = 1;
  while (start <= partition_key_path.size()) {
    size_t end = partition_key_path.find('/', start);
    if (end == std::string_view::npos) end = partition_key_path.size();
    const std::string segment(partition_key_path.substr(start, end - start));
    if (!node->is_object())
      return Status::InvalidArgument("item has no partition key at " + std::string(partition_key_path));
    auto it = node->find(segment);
    if (it == node->end())
      return Status::InvalidArgument("item has no partition key at " + std::string(partition_key_path));
    node = &*it;
    start = end + 1;
  }
  BULWARK_ASSIGN_OR_RETURN(identity.partition_key, CanonicalScalarKey(*node));
  return identity;
}

Result<std::string> CanonicalPartitionKey(std::string_view json_text) {
  if (json_text.size() > 2 * kMaxPartitionKeyBytes) return Status::InvalidArgument("partition-key value is too long");
  json v;
  BULWARK_RETURN_IF_ERROR(ParseBounded(json_text, v));
  return CanonicalScalarKey(v);
}

}  // namespace bulwark::storage
