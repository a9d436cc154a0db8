#pragma once
// What the fuzz targets share: the entry-point macro, fixed keys and clock,
// and the invariants every refusal must keep.
//
// Under BULWARK_FUZZ (clang, libFuzzer) each target is its own binary and
// BULWARK_FUZZ_TARGET defines LLVMFuzzerTestOneInput. Otherwise the three are
// linked into one `fuzz_replay` binary, so each gets a distinct name,
// BulwarkFuzz<name>, that replay_main.cc calls.
//
// Keys and time are fixed so a crash replays exactly and the seed corpora
// (written by make_seeds.cc) hold tokens that really verify.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/status.h"

#ifdef BULWARK_FUZZ
#define BULWARK_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#else
#define BULWARK_FUZZ_TARGET(name) extern "C" int BulwarkFuzz##name(const uint8_t* data, size_t size)
#endif

// Invariants hold in every build type: abort, never assert (NDEBUG).
#define BULWARK_FUZZ_CHECK(condition)                                            \
  do {                                                                           \
    if (!(condition)) ::bulwark::fuzz::Violated(#condition, __FILE__, __LINE__); \
  } while (0)

#if defined(__clang__)
// The fuzzer must not be rewarded for making its input look like an error
// message, which coverage of the comparison loop below would do.
#define BULWARK_FUZZ_NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define BULWARK_FUZZ_NO_COVERAGE
#endif

namespace bulwark::fuzz {

constexpr int64_t kNow_s = 1'800'000'000;  // every target's "now"
constexpr std::string_view kJwtIssuer = "https://issuer.example";
constexpr std::string_view kJwtKeyId = "fuzz-key";
constexpr std::string_view kJwtAudience = "https://bulwark.example";
constexpr uint8_t kJwtSeedByte = 0x5a;  // Ed25519 seed: 32 copies of it
constexpr size_t kAccountKeyBytes = 64;
inline std::string AccountKeyBytes() {
  std::string key(kAccountKeyBytes, '\0');
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<char>(i * 7 + 1);
  return key;
}

// An error message may quote fixed words; an input window this long appearing
// in it means the input was echoed.
constexpr size_t kEchoWindowBytes = 24;

[[noreturn]] inline void Violated(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "fuzz invariant violated at %s:%d: %s\n", file, line, condition);
  std::abort();
}

// True if any kEchoWindowBytes-long window of `input` occurs in `message`.
// A plain loop, not std::string_view::find: libFuzzer learns from memcmp's
// arguments, and would feed the message back as input.
BULWARK_FUZZ_NO_COVERAGE inline bool EchoesInput(std::string_view message, std::string_view input) {
  if (input.size() < kEchoWindowBytes || message.size() < kEchoWindowBytes) return false;
  for (size_t m = 0; m + kEchoWindowBytes <= message.size(); ++m) {
    for (size_t i = 0; i + kEchoWindowBytes <= input.size(); ++i) {
      size_t n = 0;
      while (n < kEchoWindowBytes && message[m + n] == input[i + n]) ++n;
      if (n == kEchoWindowBytes) return true;
    }
  }
  return false;
}

// Every refusal of a credential: Unauthenticated, says something, quotes nothing.
inline void CheckRefusal(const Status& status, std::string_view input) {
  BULWARK_FUZZ_CHECK(status.code() == Code::kUnauthenticated);
  BULWARK_FUZZ_CHECK(!status.message().empty());
  BULWARK_FUZZ_CHECK(!EchoesInput(status.message(), input));
}

}  // namespace bulwark::fuzz
