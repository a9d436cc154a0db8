// fuzz_replay: the fuzz targets as a plain test, for builds without
// libFuzzer. Runs every seed file of each target, then a fixed number of
// inputs mutated from them by a seeded generator (bit flips, byte changes,
// truncations, insertions, splices), so `ctest` exercises the parsers and
// their invariants the same way on every run. An invariant failure aborts.
//
//   fuzz_replay <corpus-dir> [mutations-per-target]

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"

BULWARK_FUZZ_TARGET(AuthHeader);
BULWARK_FUZZ_TARGET(ResourceToken);
BULWARK_FUZZ_TARGET(Jwt);

namespace {

using Target = int (*)(const uint8_t*, size_t);

constexpr size_t kDefaultMutationsPerTarget = 20000;
constexpr uint64_t kSeed = 0x6275'6c77'6172'6b31;  // "bulwark1": every run replays the same inputs
// Past every parser's limit, so the length checks are exercised too.
constexpr size_t kMaxInputBytes = 8192;
constexpr int kMaxMutationsPerInput = 4;

std::vector<std::string> ReadCorpus(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file()) paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());  // directory order is not stable
  std::vector<std::string> files;
  for (const auto& path : paths) {
    std::ifstream in(path, std::ios::binary);
    files.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return files;
}

// Bytes the parsers treat specially, so mutations hit their branches sooner.
constexpr char kInterestingBytes[] = ".=&%-_+/\"{}[]:,0A\x00\xff";
constexpr std::string_view kInteresting(kInterestingBytes, sizeof(kInterestingBytes) - 1);

void Mutate(std::string& input, const std::vector<std::string>& corpus, std::mt19937_64& rng) {
  auto below = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  switch (rng() % 6) {
    case 0:  // flip one bit
      if (!input.empty()) input[below(input.size())] ^= static_cast<char>(1u << below(8));
      break;
    case 1:  // set one byte, often to an interesting one
      if (!input.empty()) {
        input[below(input.size())] = rng() % 2 ? kInteresting[below(kInteresting.size())] : static_cast<char>(rng());
      }
      break;
    case 2:  // truncate
      input.resize(below(input.size() + 1));
      break;
    case 3: {  // insert a few random or interesting bytes
      std::string bytes(1 + below(8), '\0');
      for (char& c : bytes) c = rng() % 2 ? kInteresting[below(kInteresting.size())] : static_cast<char>(rng());
      input.insert(below(input.size() + 1), bytes);
      break;
    }
    case 4: {  // splice: a prefix of this input and a suffix of another
      const std::string& other = corpus[below(corpus.size())];
      input = input.substr(0, below(input.size() + 1)) + other.substr(below(other.size() + 1));
      break;
    }
    case 5: {  // repeat a chunk, to grow towards the length limits
      if (input.empty()) break;
      const size_t at = below(input.size());
      const std::string chunk = input.substr(at, 1 + below(input.size() - at));
      for (size_t times = 1 + below(64); times > 0 && input.size() < kMaxInputBytes; --times) input += chunk;
      break;
    }
  }
  if (input.size() > kMaxInputBytes) input.resize(kMaxInputBytes);
}

// The input being run, so an abort can leave it behind for a rerun under a
// debugger or libFuzzer (`<name>_fuzz crash-file`).
const char* current_target = "";
const std::string* current_input = nullptr;

void SaveCrashingInput(int signal_number) {
  if (current_input != nullptr) {
    const std::string path = std::string("fuzz_replay-crash-") + current_target;
    std::ofstream(path, std::ios::binary) << *current_input;
    std::fprintf(stderr, "%s: the failing input (%zu bytes) is in %s\n", current_target, current_input->size(),
                 path.c_str());
  }
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
}

void Run(Target target, const std::string& input) {
  current_input = &input;
  target(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  current_input = nullptr;
}

size_t Replay(const char* name, Target target, const std::filesystem::path& dir, size_t mutations) {
  const std::vector<std::string> corpus = ReadCorpus(dir);
  if (corpus.empty()) {
    std::fprintf(stderr, "%s: no seed files in %s\n", name, dir.c_str());
    std::exit(1);
  }
  current_target = name;
  size_t runs = 0;
  for (const std::string& input : corpus) {
    Run(target, input);
    ++runs;
  }
  std::mt19937_64 rng(kSeed);
  for (size_t i = 0; i < mutations; ++i) {
    std::string input = corpus[rng() % corpus.size()];
    for (int m = 1 + static_cast<int>(rng() % kMaxMutationsPerInput); m > 0; --m) Mutate(input, corpus, rng);
    Run(target, input);
    ++runs;
  }
  std::printf("%s: %zu seed files, %zu inputs run\n", name, corpus.size(), runs);
  return runs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s <corpus-dir> [mutations-per-target]\n", argv[0]);
    return 2;
  }
  std::signal(SIGABRT, SaveCrashingInput);
  const std::filesystem::path root = argv[1];
  const size_t mutations = argc == 3 ? std::strtoull(argv[2], nullptr, 10) : kDefaultMutationsPerTarget;
  Replay("auth_header", BulwarkFuzzAuthHeader, root / "auth_header", mutations);
  Replay("resource_token", BulwarkFuzzResourceToken, root / "resource_token", mutations);
  Replay("jwt", BulwarkFuzzJwt, root / "jwt", mutations);
  return 0;
}
