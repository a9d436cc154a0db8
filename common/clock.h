#pragma once
// Wall-clock "now" as Unix time, the forms records and tokens carry.
// Pure; thread-safe.
#include <chrono>
#include <cstdint>

namespace bulwark {

inline int64_t UnixNowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline int64_t UnixNowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace bulwark
