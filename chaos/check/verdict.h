#pragma once
// What a checker says about a history: valid, invalid (with the operations
// that prove it), or unknown (a named search limit was hit, or the history
// lacks what the check needs). Plain values; thread-safe as values are.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chaos/check/history.h"

namespace bulwark::chaos::check {

// A verdict lists at most this many findings, so a badly broken run still
// prints a readable report; `findings_dropped` counts the rest.
constexpr size_t kMaxFindings = 50;

enum class Outcome { kValid, kInvalid, kUnknown };

const char* OutcomeName(Outcome outcome);

enum class Workload { kRegister, kSet, kAppend };

std::optional<Workload> ParseWorkload(std::string_view text);
const char* WorkloadName(Workload workload);

struct Finding {
  std::string what;         // one sentence: what is wrong
  std::vector<size_t> ops;  // Operation::id of every operation involved
};

struct Verdict {
  std::string checker;  // "linearizable", "read-your-writes", ...
  Outcome outcome = Outcome::kValid;
  std::string summary;  // one line: what was checked, or why unknown
  std::vector<Finding> findings;
  size_t findings_dropped = 0;

  // Adds a finding (or counts it past kMaxFindings) and makes the verdict invalid.
  void Add(Finding finding);
};

// The verdict as text, each finding followed by its operations described in full.
std::string FormatVerdict(const Verdict& verdict, const std::vector<Operation>& ops);

}  // namespace bulwark::chaos::check
