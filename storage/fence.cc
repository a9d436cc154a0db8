#include "storage/fence.h"

#include <algorithm>

#include "crypto/secret.h"
#include "storage/commands.h"

namespace bulwark::storage {

std::string JoinFence(std::vector<std::string> regions) {
  std::erase(regions, std::string());
  std::sort(regions.begin(), regions.end());
  regions.erase(std::unique(regions.begin(), regions.end()), regions.end());
  std::string out;
  for (const auto& r : regions) out += (out.empty() ? "" : ",") + r;
  return out;
}

std::vector<std::string> SplitFence(std::string_view fence) {
  std::vector<std::string> out;
  while (!fence.empty()) {
    const size_t comma = fence.find(',');
    const std::string_view name = fence.substr(0, comma);
    if (!name.empty()) out.emplace_back(name);
    if (comma == std::string_view::npos) break;
    fence.remove_prefix(comma + 1);
  }
  return out;
}

bool FenceAllows(std::string_view fence, std::string_view region) {
  if (fence.empty()) return true;
  for (const auto& r : SplitFence(fence)) {
    if (r == region) return true;
  }
  return false;
}

bool FenceWithin(std::string_view inner, std::string_view outer) {
  if (outer.empty()) return true;
  if (inner.empty()) return false;  // everywhere is not within a fence
  for (const auto& r : SplitFence(inner)) {
    if (!FenceAllows(outer, r)) return false;
  }
  return true;
}

WriteCommand FencedOutPlaceholder(const WriteCommand& cmd) {
  if (cmd.kind == WriteCommand::Kind::kFencedOut) return cmd;  // already one
  WriteCommand p;
  p.kind = WriteCommand::Kind::kFencedOut;
  // The request id too: a retried request is deduplicated in every region
  // alike (and the dedup records expire alike).
  p.request_id = cmd.request_id;
  p.proposed_unix_ms = cmd.proposed_unix_ms;
  p.fence = cmd.fence;
  p.geo_glsn = cmd.geo_glsn;
  p.geo_epoch = cmd.geo_epoch;
  p.geo_source_index = cmd.geo_source_index;
  switch (cmd.kind) {
    case WriteCommand::Kind::kCreateContainer:
      p.setting = "create:" + crypto::HexEncode(cmd.rid);
      break;
    case WriteCommand::Kind::kDeleteContainer:
      p.setting = "drop:" + crypto::HexEncode(cmd.rid);
      break;
    case WriteCommand::Kind::kDeleteDatabase:
    case WriteCommand::Kind::kPurgeContainer:
      p.setting = cmd.setting;  // already "drop:..." (or empty)
      break;
    default:
      break;
  }
  return p;
}

std::vector<std::string> FenceRecordRids(std::string_view setting, std::string_view verb) {
  if (setting.size() <= verb.size() || setting.substr(0, verb.size()) != verb || setting[verb.size()] != ':') return {};
  return SplitFence(setting.substr(verb.size() + 1));
}

}  // namespace bulwark::storage
