#pragma once
// The writes of a history by key and by the value they wrote, and the known
// order between them (see guarantees.h). Internal to chaos/check.
// Not thread-safe while being built; const use is.

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "chaos/check/history.h"
#include "chaos/check/verdict.h"

namespace bulwark::chaos::check {

// The source of a read value: the id of the write that wrote it, or one of these.
constexpr int64_t kInitialValue = -1;  // a register never written (absent)
constexpr int64_t kNoSuchWrite = -2;   // no write wrote it

class WriteIndex {
 public:
  WriteIndex(const std::vector<Operation>& ops, Workload workload);

  // True for write, cas, add, append.
  static bool IsWrite(const Operation& op);
  // What a write op wrote (cas: the new value).
  static const nlohmann::json& Written(const Operation& op);

  // The write (ok or info) of `value` to `key`, or kInitialValue for a null
  // register read, or kNoSuchWrite.
  int64_t Source(const std::string& key, const nlohmann::json& value) const;
  // The failed write of `value` to `key`, or kNoSuchWrite.
  int64_t FailedSource(const std::string& key, const nlohmann::json& value) const;
  // When write `w` had certainly taken effect: its completion if ok; for an
  // info write, the completion of the first ok read that showed its value
  // (a read cannot show a write that has not happened); else kNeverCompleted.
  int64_t EffectiveComplete(size_t w) const { return effective_complete_[w]; }
  // Ok writes, and info writes some ok read showed: both must stay.
  bool Acknowledged(size_t w) const { return effective_complete_[w] != kNeverCompleted; }
  // True if write `a` certainly took effect before write `b`: a lower GLSN,
  // or it had taken effect (EffectiveComplete) before `b` was invoked.
  bool KnownBefore(size_t a, size_t b) const;
  // Ok and info writes per key, in invoke order.
  const std::map<std::string, std::vector<size_t>>& writes_by_key() const { return by_key_; }
  // Keys with a value written twice: the value-to-write mapping is ambiguous.
  const std::vector<std::string>& ambiguous_keys() const { return ambiguous_; }
  // The elements a read returned (register: the one value).
  static std::vector<nlohmann::json> ReadElements(const Operation& read, Workload workload);

 private:
  const std::vector<Operation>& ops_;
  Workload workload_;
  std::map<std::string, std::vector<size_t>> by_key_;
  std::unordered_map<std::string, size_t> by_value_;  // key + '\0' + value -> op
  std::unordered_map<std::string, size_t> failed_by_value_;
  std::vector<std::string> ambiguous_;
  std::vector<int64_t> effective_complete_;  // by op id; kNeverCompleted for reads and failed writes
};

}  // namespace bulwark::chaos::check
