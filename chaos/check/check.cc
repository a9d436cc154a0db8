#include "chaos/check/check.h"

namespace bulwark::chaos::check {

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kValid:
      return "valid";
    case Outcome::kInvalid:
      return "INVALID";
    case Outcome::kUnknown:
      return "unknown";
  }
  return "?";
}

std::optional<Workload> ParseWorkload(std::string_view text) {
  if (text == "register") return Workload::kRegister;
  if (text == "set") return Workload::kSet;
  if (text == "append") return Workload::kAppend;
  return std::nullopt;
}

const char* WorkloadName(Workload workload) {
  switch (workload) {
    case Workload::kRegister:
      return "register";
    case Workload::kSet:
      return "set";
    case Workload::kAppend:
      return "append";
  }
  return "?";
}

void Verdict::Add(Finding finding) {
  outcome = Outcome::kInvalid;
  if (findings.size() >= kMaxFindings) {
    ++findings_dropped;
    return;
  }
  findings.push_back(std::move(finding));
}

std::string FormatVerdict(const Verdict& verdict, const std::vector<Operation>& ops) {
  std::string out = verdict.checker + ": " + OutcomeName(verdict.outcome) + " - " + verdict.summary + "\n";
  for (const Finding& f : verdict.findings) {
    out += "  * " + f.what + "\n";
    for (size_t id : f.ops) {
      if (id < ops.size()) out += "      " + DescribeOperation(ops[id]) + "\n";
    }
  }
  if (verdict.findings_dropped > 0) {
    out += "  ... and " + std::to_string(verdict.findings_dropped) + " more findings not listed\n";
  }
  return out;
}

std::vector<Verdict> CheckHistory(const std::vector<Operation>& ops, Workload workload, ConsistencyLevel level,
                                  const CheckOptions& options) {
  std::vector<Verdict> out;
  out.push_back(CheckValuesRead(ops, workload));
  switch (level) {
    case ConsistencyLevel::kStrong:
      if (workload == Workload::kRegister) {
        out.push_back(CheckLinearizable(ops, options.linearizability));
      } else {
        out.push_back(CheckBoundedStaleness(ops, workload, StalenessBound{0, 0}));
        out.push_back(CheckConsistentPrefix(ops, workload));
      }
      break;
    case ConsistencyLevel::kBoundedStaleness:
      out.push_back(CheckBoundedStaleness(ops, workload, options.staleness));
      out.push_back(CheckConsistentPrefix(ops, workload));
      break;
    case ConsistencyLevel::kSession:
      for (Verdict& v : CheckSession(ops, workload)) out.push_back(std::move(v));
      out.push_back(CheckConsistentPrefix(ops, workload));
      break;
    case ConsistencyLevel::kConsistentPrefix:
      out.push_back(CheckConsistentPrefix(ops, workload));
      break;
    case ConsistencyLevel::kEventual:
      break;
  }
  out.push_back(CheckLostWrites(ops, workload));
  return out;
}

Outcome Worst(const std::vector<Verdict>& verdicts) {
  Outcome worst = Outcome::kValid;
  for (const Verdict& v : verdicts) {
    if (v.outcome == Outcome::kInvalid) return Outcome::kInvalid;
    if (v.outcome == Outcome::kUnknown) worst = Outcome::kUnknown;
  }
  return worst;
}

}  // namespace bulwark::chaos::check
