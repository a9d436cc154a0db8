#pragma once
// Chaos histories: the JSON-lines record of every operation a workload ran,
// and the pairing of its invoke and completion lines into operations.
//
// One line per event, one JSON object per line:
//
//   {"process":3,"type":"invoke","f":"write","key":"k1","value":7,
//    "consistency":"Strong","region":"r1","time":123456789}
//   {"process":3,"type":"ok","f":"write","key":"k1","value":7,
//    "consistency":"Strong","region":"r1","time":123999000,"glsn":42}
//
// Required: `process` (integer), `type` (invoke|ok|fail|info), `f`, `time`
// (monotonic nanoseconds). Optional: `key` (string or number; "" if absent),
// `value` (any JSON; null on a read's invoke), `consistency`, `region`,
// `session` (integer: the client session the process belongs to; the process
// id if absent), `glsn` (the write's position in the replication stream, from
// its session token, on an ok completion), `error` (a fail or info's reason).
//
// Functions per workload (`f`):
//   register: read (value: the value read, null for "absent"), write (value),
//             cas (value: [expected, new])
//   set:      add (value: a unique element), read (value: array of elements)
//   append:   append (key, value: a unique element), read (key, value: list)
//
// Rules the parser enforces, each refused with the line number: a completion
// needs an outstanding invoke of the same process and `f`; a process has at
// most one outstanding operation; a process that saw `info` never issues
// another operation (the outcome of its last one is unknown, so a new one
// could overlap it); times never go backwards within a process.
//
// Thread safety: the functions are pure. HistoryWriter is thread-safe.
// Errors: InvalidArgument with "line N: ..." for malformed input, NotFound or
// IOError for files.

#include <cstdint>
#include <fstream>
#include <istream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace bulwark::chaos::check {

// A history file's lines are bounded so that a corrupt file (one enormous
// line) is refused instead of exhausting memory.
constexpr size_t kMaxHistoryLineBytes = 16 << 20;
// An operation that never completed (info, or no completion at all) may
// take effect at any time after its invoke: its completion time is this.
constexpr int64_t kNeverCompleted = std::numeric_limits<int64_t>::max();

enum class EventType { kInvoke, kOk, kFail, kInfo };

const char* EventTypeName(EventType type);

struct Event {
  int64_t process = 0;
  EventType type = EventType::kInvoke;
  std::string f;
  std::string key;
  nlohmann::json value;  // null if absent
  std::string consistency;
  std::string region;
  int64_t time_ns = 0;
  std::optional<int64_t> session;
  std::optional<uint64_t> glsn;
  std::string error;
  size_t line = 0;  // 1-based line in the file it came from; 0 if made in memory
};

// Parses one line (without its newline). `line` is used in error messages.
Result<Event> ParseEvent(const std::string& text, size_t line);
// Reads a whole history. Blank lines are skipped.
Result<std::vector<Event>> ParseHistory(std::istream& in);
Result<std::vector<Event>> ParseHistoryFile(const std::string& path);
// One line, without the newline; ParseEvent(FormatEvent(e)) == e (but line).
std::string FormatEvent(const Event& event);

// One operation: an invoke and its completion.
struct Operation {
  size_t id = 0;  // index in the vector PairOperations returns
  int64_t process = 0;
  int64_t session = 0;
  std::string f;
  std::string key;
  nlohmann::json input;   // the invoke's value (what was written, [old,new] for cas)
  nlohmann::json output;  // the completion's value (what was read); null if none
  // kOk, kFail (known not to have happened), or kInfo (unknown: also for an
  // invoke with no completion at all).
  EventType outcome = EventType::kInfo;
  int64_t invoke_ns = 0;
  int64_t complete_ns = kNeverCompleted;
  std::optional<uint64_t> glsn;
  std::string consistency;
  std::string region;
  std::string error;
  size_t invoke_line = 0;
  size_t complete_line = 0;  // 0 if it never completed
};

// Pairs events into operations, ordered by invoke. Refuses histories that
// break the rules at the top of this file.
Result<std::vector<Operation>> PairOperations(const std::vector<Event>& events);

// "#12 p3 write k1 7 -> ok (lines 20-25)": for verdicts and reports.
std::string DescribeOperation(const Operation& op);

// Appends events to a file as lines, flushing each, so a run that dies
// leaves a readable history. Thread-safe: many workload threads share one.
class HistoryWriter {
 public:
  // IOError if the file cannot be created.
  static Result<std::unique_ptr<HistoryWriter>> Open(const std::string& path);
  void Append(const Event& event);
  // False once a write failed (the disk filled up): the history is incomplete.
  bool ok() const;

 private:
  explicit HistoryWriter(std::ofstream out) : out_(std::move(out)) {}
  mutable std::mutex mu_;
  std::ofstream out_;  // GUARDED_BY(mu_)
};

}  // namespace bulwark::chaos::check
