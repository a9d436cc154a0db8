#include "chaos/check/write_index.h"

#include <algorithm>
#include <set>

namespace bulwark::chaos::check {
namespace {

std::string ValueKey(const std::string& key, const nlohmann::json& value) { return key + '\0' + value.dump(); }

}  // namespace

WriteIndex::WriteIndex(const std::vector<Operation>& ops, Workload workload) : ops_(ops), workload_(workload) {
  std::set<std::string> ambiguous;
  for (const Operation& op : ops) {
    if (!IsWrite(op)) continue;
    const std::string vk = ValueKey(op.key, Written(op));
    if (op.outcome == EventType::kFail) {
      failed_by_value_.emplace(vk, op.id);
      continue;
    }
    by_key_[op.key].push_back(op.id);
    if (!by_value_.emplace(vk, op.id).second) ambiguous.insert(op.key);
  }
  ambiguous_.assign(ambiguous.begin(), ambiguous.end());
  effective_complete_.assign(ops.size(), kNeverCompleted);
  for (const Operation& op : ops) {
    if (IsWrite(op) && op.outcome == EventType::kOk) effective_complete_[op.id] = op.complete_ns;
  }
  // An info write shown by an ok read had happened by the time that read
  // completed: from then on it is ordered and must not be lost like any
  // acknowledged write. Without this a write that timed out but committed
  // (common under faults) could be read and then vanish unnoticed. Info
  // writes are few and set reads long, so each element is looked up by its
  // JSON hash among the key's info writes only (no dump per element).
  std::unordered_map<std::string, std::unordered_map<nlohmann::json, size_t>> info_by_key;
  for (const Operation& op : ops) {
    if (!IsWrite(op) || op.outcome != EventType::kInfo) continue;
    if (Source(op.key, Written(op)) != static_cast<int64_t>(op.id))
      continue;  // a value written twice maps to the first
    info_by_key[op.key].emplace(Written(op), op.id);
  }
  for (const Operation& op : ops) {
    if (op.f != "read" || op.outcome != EventType::kOk) continue;
    auto info = info_by_key.find(op.key);
    if (info == info_by_key.end()) continue;
    auto shown = [&](const nlohmann::json& value) {
      auto w = info->second.find(value);
      if (w == info->second.end()) return;
      int64_t& at = effective_complete_[w->second];
      at = std::min(at, op.complete_ns);
    };
    if (workload_ == Workload::kRegister) {
      shown(op.output);
    } else if (op.output.is_array()) {
      for (const auto& value : op.output) shown(value);
    }
  }
}

bool WriteIndex::IsWrite(const Operation& op) {
  return op.f == "write" || op.f == "cas" || op.f == "add" || op.f == "append";
}

const nlohmann::json& WriteIndex::Written(const Operation& op) {
  static const nlohmann::json kNull;
  if (op.f == "cas") return op.input.is_array() && op.input.size() == 2 ? op.input[1] : kNull;
  return op.input;
}

int64_t WriteIndex::Source(const std::string& key, const nlohmann::json& value) const {
  if (value.is_null() && workload_ == Workload::kRegister) return kInitialValue;
  auto it = by_value_.find(ValueKey(key, value));
  return it == by_value_.end() ? kNoSuchWrite : static_cast<int64_t>(it->second);
}

int64_t WriteIndex::FailedSource(const std::string& key, const nlohmann::json& value) const {
  auto it = failed_by_value_.find(ValueKey(key, value));
  return it == failed_by_value_.end() ? kNoSuchWrite : static_cast<int64_t>(it->second);
}

bool WriteIndex::KnownBefore(size_t a, size_t b) const {
  const Operation& x = ops_[a];
  const Operation& y = ops_[b];
  if (a == b) return false;
  // Real time orders writes in any correct history: the write region is
  // linearizable, so a GLSN order that contradicts it is itself a bug to report.
  if (x.glsn && y.glsn && *x.glsn < *y.glsn) return true;
  return effective_complete_[a] < y.invoke_ns;
}

std::vector<nlohmann::json> WriteIndex::ReadElements(const Operation& read, Workload workload) {
  if (workload == Workload::kRegister) return {read.output};
  std::vector<nlohmann::json> out;
  if (read.output.is_array()) {
    for (const auto& v : read.output) out.push_back(v);
  }
  return out;
}

}  // namespace bulwark::chaos::check
