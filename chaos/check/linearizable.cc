#include "chaos/check/linearizable.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace bulwark::chaos::check {
namespace {

// How many linearized operations before the blocking one a finding names:
// enough to see the value the register held and who wrote it.
constexpr size_t kContextOps = 4;

// The register's values, interned: 0 is absent (null).
class Values {
 public:
  int Id(const nlohmann::json& v) {
    if (v.is_null()) return 0;
    std::string text = v.dump();
    auto [it, inserted] = ids_.try_emplace(text, static_cast<int>(names_.size()));
    if (inserted) names_.push_back(std::move(text));
    return it->second;
  }
  const std::string& Name(int id) const { return names_.at(id); }

 private:
  std::unordered_map<std::string, int> ids_;
  std::vector<std::string> names_{"null"};
};

enum class Kind { kRead, kWrite, kCas };

struct KeyOp {
  size_t id = 0;  // Operation::id
  Kind kind = Kind::kRead;
  int value = 0;     // read: the value returned; write: written; cas: the new value
  int expected = 0;  // cas only
  int64_t invoke_ns = 0;
  int64_t complete_ns = kNeverCompleted;  // kNeverCompleted: optional (info)
};

// One event of the key's history in a doubly linked list, so the search can
// lift an operation's call and return out and put them back in O(1).
struct Entry {
  int op = 0;  // index into the key's ops
  bool call = true;
  int match = -1;  // a call's return entry, or -1 for an optional operation
  int prev = -1;
  int next = -1;
};

struct Config {
  std::vector<uint64_t> bits;  // linearized operations
  int state = 0;               // the register's value after them
  bool operator==(const Config& o) const { return state == o.state && bits == o.bits; }
};
struct ConfigHash {
  size_t operator()(const Config& c) const {
    uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(c.state);
    for (uint64_t w : c.bits) h = (h ^ w) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

bool Step(const KeyOp& op, int state, int* next) {
  switch (op.kind) {
    case Kind::kRead:
      *next = state;
      return state == op.value;
    case Kind::kWrite:
      *next = op.value;
      return true;
    case Kind::kCas:
      if (state != op.expected) return false;
      *next = op.value;
      return true;
  }
  return false;
}

struct KeyResult {
  Outcome outcome = Outcome::kValid;
  std::string why;
  std::vector<size_t> ops;  // Operation ids, the blocking one first
};

class KeySearch {
 public:
  KeySearch(const std::vector<KeyOp>& ops, const Values& values, const LinearizabilityLimits& limits)
      : ops_(ops), values_(values), limits_(limits) {
    BuildList();
  }

  KeyResult Run() {
    KeyResult result;
    const size_t words = (ops_.size() + 63) / 64;
    Config config{std::vector<uint64_t>(words, 0), 0};
    std::unordered_set<Config, ConfigHash> seen;
    const size_t config_bytes = words * sizeof(uint64_t) + sizeof(Config) + 2 * sizeof(void*);
    struct Frame {
      int entry;
      int state;
    };
    std::vector<Frame> stack;  // bounded by the number of operations
    size_t steps = 0;
    int entry = entries_[kHead].next;
    while (must_left_ > 0) {
      if (++steps > limits_.max_steps_per_key)
        return Unknown("more than " + std::to_string(limits_.max_steps_per_key) + " search steps");
      if (entry == -1) break;  // only optional calls remain: all required operations are linearized
      const Entry& e = entries_[entry];
      if (e.call) {
        const KeyOp& op = ops_[e.op];
        int next_state = 0;
        if (Step(op, config.state, &next_state)) {
          Config next{config.bits, next_state};
          next.bits[e.op / 64] |= uint64_t{1} << (e.op % 64);
          if (seen.size() * config_bytes > limits_.max_memo_bytes_per_key) {
            return Unknown("the memo of explored configurations passed " +
                           std::to_string(limits_.max_memo_bytes_per_key >> 20) + " MiB");
          }
          if (seen.insert(next).second) {
            stack.push_back({entry, config.state});
            config = std::move(next);
            Lift(entry);
            entry = entries_[kHead].next;
            continue;
          }
        }
        entry = e.next;
        continue;
      }
      // A return: its operation had to take effect by now and has not.
      if (stack.size() >= deepest_) {
        deepest_ = stack.size();
        blocked_op_ = e.op;
        blocked_state_ = config.state;
        deepest_path_.clear();
        for (size_t i = stack.size() > kContextOps ? stack.size() - kContextOps : 0; i < stack.size(); ++i) {
          deepest_path_.push_back(entries_[stack[i].entry].op);
        }
      }
      if (stack.empty()) return Fail();
      const Frame top = stack.back();
      stack.pop_back();
      const int op = entries_[top.entry].op;
      config.bits[op / 64] &= ~(uint64_t{1} << (op % 64));
      config.state = top.state;
      Unlift(top.entry);
      entry = entries_[top.entry].next;
    }
    return result;
  }

 private:
  static constexpr int kHead = 0;

  void BuildList() {
    struct Event {
      int64_t time;
      bool call;
      int op;
    };
    std::vector<Event> events;
    for (size_t i = 0; i < ops_.size(); ++i) {
      events.push_back({ops_[i].invoke_ns, true, static_cast<int>(i)});
      if (ops_[i].complete_ns != kNeverCompleted) {
        events.push_back({ops_[i].complete_ns, false, static_cast<int>(i)});
        ++must_left_;
      }
    }
    // At equal times calls come first: the operations count as concurrent,
    // the reading that accuses no one wrongly.
    std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
      if (a.time != b.time) return a.time < b.time;
      return a.call && !b.call;
    });
    entries_.resize(events.size() + 1);
    std::vector<int> call_entry(ops_.size(), -1);
    for (size_t i = 0; i < events.size(); ++i) {
      Entry& e = entries_[i + 1];
      e.op = events[i].op;
      e.call = events[i].call;
      e.prev = static_cast<int>(i);
      e.next = i + 1 < events.size() ? static_cast<int>(i + 2) : -1;
      if (e.call) {
        call_entry[e.op] = static_cast<int>(i + 1);
      } else {
        entries_[call_entry[e.op]].match = static_cast<int>(i + 1);
      }
    }
    entries_[kHead].next = events.empty() ? -1 : 1;
  }

  void Unlink(int i) {
    Entry& e = entries_[i];
    entries_[e.prev].next = e.next;
    if (e.next != -1) entries_[e.next].prev = e.prev;
  }
  void Relink(int i) {
    Entry& e = entries_[i];
    entries_[e.prev].next = i;
    if (e.next != -1) entries_[e.next].prev = i;
  }
  void Lift(int call) {
    Unlink(call);
    if (int ret = entries_[call].match; ret != -1) {
      Unlink(ret);
      --must_left_;
    }
  }
  // Undoes Lift(call); lifts are undone in reverse order, so the neighbours
  // each entry remembers are in the list again.
  void Unlift(int call) {
    if (int ret = entries_[call].match; ret != -1) {
      Relink(ret);
      ++must_left_;
    }
    Relink(call);
  }

  KeyResult Unknown(const std::string& why) const {
    KeyResult r;
    r.outcome = Outcome::kUnknown;
    r.why = "unknown: search limit hit (" + why + ")";
    return r;
  }

  KeyResult Fail() const {
    KeyResult r;
    r.outcome = Outcome::kInvalid;
    const KeyOp& op = ops_[blocked_op_];
    r.why = "no linearization: at best " + std::to_string(deepest_) +
            " operations are linearized, after which the register holds " + values_.Name(blocked_state_) +
            ", and operation #" + std::to_string(op.id) + " cannot take effect before it completed";
    r.ops.push_back(op.id);
    for (int i : deepest_path_) r.ops.push_back(ops_[i].id);
    return r;
  }

  const std::vector<KeyOp>& ops_;
  const Values& values_;
  const LinearizabilityLimits& limits_;
  std::vector<Entry> entries_;  // [0] is the list head
  size_t must_left_ = 0;        // required operations not linearized
  // The furthest the search got, for the finding.
  size_t deepest_ = 0;
  int blocked_op_ = 0;
  int blocked_state_ = 0;
  std::vector<int> deepest_path_;
};

}  // namespace

Verdict CheckLinearizable(const std::vector<Operation>& ops, const LinearizabilityLimits& limits) {
  Verdict verdict;
  verdict.checker = "linearizable";
  Values values;
  std::map<std::string, std::vector<KeyOp>> by_key;
  // Values some completed operation observed (a read's result, a cas's
  // expected value), per key. An info write of a value no one observed is
  // left out: dropping it from any linearization leaves a linearization
  // (nothing between it and the next write could depend on its value), and
  // each pending info operation otherwise doubles the search space.
  std::set<std::pair<std::string, std::string>> observed;
  for (const Operation& op : ops) {
    if (op.outcome != EventType::kOk) continue;
    if (op.f == "read") observed.insert({op.key, op.output.dump()});
    if (op.f == "cas" && op.input.is_array() && op.input.size() == 2) observed.insert({op.key, op.input[0].dump()});
  }
  size_t considered = 0;
  size_t unobserved = 0;
  for (const Operation& op : ops) {
    if (op.outcome == EventType::kFail) continue;  // known not to have happened
    if (op.outcome != EventType::kOk && (op.f == "write" || op.f == "cas")) {
      const nlohmann::json& wrote = op.f == "write"                               ? op.input
                                    : op.input.is_array() && op.input.size() == 2 ? op.input[1]
                                                                                  : op.input;
      if (!observed.count({op.key, wrote.dump()})) {
        ++unobserved;
        continue;
      }
    }
    KeyOp k;
    k.id = op.id;
    k.invoke_ns = op.invoke_ns;
    k.complete_ns = op.outcome == EventType::kOk ? op.complete_ns : kNeverCompleted;
    if (op.f == "read") {
      if (op.outcome != EventType::kOk) continue;  // an unknown read changes nothing
      k.kind = Kind::kRead;
      k.value = values.Id(op.output);
    } else if (op.f == "write") {
      k.kind = Kind::kWrite;
      k.value = values.Id(op.input);
    } else if (op.f == "cas") {
      if (!op.input.is_array() || op.input.size() != 2) {
        verdict.Add({"cas needs [expected, new] as its value", {op.id}});
        continue;
      }
      k.kind = Kind::kCas;
      k.expected = values.Id(op.input[0]);
      k.value = values.Id(op.input[1]);
    } else {
      verdict.Add({"`" + op.f + "` is not a register operation (read, write, cas)", {op.id}});
      continue;
    }
    ++considered;
    by_key[op.key].push_back(k);
  }
  size_t unknown_keys = 0;
  std::string unknown_why;
  for (const auto& [key, key_ops] : by_key) {
    KeySearch search(key_ops, values, limits);
    KeyResult r = search.Run();
    if (r.outcome == Outcome::kInvalid) {
      verdict.Add({"key " + key + ": " + r.why, r.ops});
    } else if (r.outcome == Outcome::kUnknown) {
      ++unknown_keys;
      unknown_why = "key " + key + ": " + r.why;
    }
  }
  if (verdict.outcome == Outcome::kValid && unknown_keys > 0) {
    verdict.outcome = Outcome::kUnknown;
    verdict.summary =
        std::to_string(unknown_keys) + " of " + std::to_string(by_key.size()) + " keys undecided; " + unknown_why;
    return verdict;
  }
  if (verdict.outcome == Outcome::kValid) {
    verdict.summary = std::to_string(considered) + " operations on " + std::to_string(by_key.size()) +
                      " keys are linearizable (" + std::to_string(unobserved) +
                      " writes of unknown outcome whose value no one read left out)";
  } else {
    verdict.summary = std::to_string(verdict.findings.size() + verdict.findings_dropped) +
                      " keys (or operations) are not linearizable";
    if (unknown_keys > 0) verdict.summary += "; " + std::to_string(unknown_keys) + " more undecided";
  }
  return verdict;
}

}  // namespace bulwark::chaos::check
