#pragma once
// The five consistency levels, strongest first. A request may only relax the
// account's default. Pure; thread-safe.

#include <optional>
#include <string>
#include <string_view>

namespace bulwark {

enum class ConsistencyLevel : int {
  kStrong = 1,
  kBoundedStaleness = 2,
  kSession = 3,
  kConsistentPrefix = 4,
  kEventual = 5,
};

inline std::string_view ConsistencyName(ConsistencyLevel level) {
  switch (level) {
    case ConsistencyLevel::kStrong: return "Strong";
    case ConsistencyLevel::kBoundedStaleness: return "BoundedStaleness";
    case ConsistencyLevel::kSession: return "Session";
    case ConsistencyLevel::kConsistentPrefix: return "ConsistentPrefix";
    case ConsistencyLevel::kEventual: return "Eventual";
  }
  return "Unknown";
}

// Accepts the names above, case-insensitively, and "bounded"/"prefix" as short forms.
inline std::optional<ConsistencyLevel> ParseConsistency(std::string_view text) {
  std::string lower;
  for (char c : text) lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  if (lower == "strong") return ConsistencyLevel::kStrong;
  if (lower == "boundedstaleness" || lower == "bounded") return ConsistencyLevel::kBoundedStaleness;
  if (lower == "session") return ConsistencyLevel::kSession;
  if (lower == "consistentprefix" || lower == "prefix") return ConsistencyLevel::kConsistentPrefix;
  if (lower == "eventual") return ConsistencyLevel::kEventual;
  return std::nullopt;
}

// True if `requested` is the default or weaker than it.
inline bool MayRelax(ConsistencyLevel account_default, ConsistencyLevel requested) {
  return static_cast<int>(requested) >= static_cast<int>(account_default);
}

}  // namespace bulwark
