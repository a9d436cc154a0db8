#include "chaos/check/history.h"

#include <algorithm>
#include <map>
#include <set>

namespace bulwark::chaos::check {
namespace {

Status LineError(size_t line, const std::string& what) {
  return Status::InvalidArgument("line " + std::to_string(line) + ": " + what);
}

std::optional<EventType> ParseType(const std::string& s) {
  if (s == "invoke") return EventType::kInvoke;
  if (s == "ok") return EventType::kOk;
  if (s == "fail") return EventType::kFail;
  if (s == "info") return EventType::kInfo;
  return std::nullopt;
}

}  // namespace

const char* EventTypeName(EventType type) {
  switch (type) {
    case EventType::kInvoke:
      return "invoke";
    case EventType::kOk:
      return "ok";
    case EventType::kFail:
      return "fail";
    case EventType::kInfo:
      return "info";
  }
  return "?";
}

Result<Event> ParseEvent(const std::string& text, size_t line) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return LineError(line, "not valid JSON");
  if (!j.is_object()) return LineError(line, "not a JSON object");
  Event e;
  e.line = line;
  auto process = j.find("process");
  if (process == j.end() || !process->is_number_integer()) return LineError(line, "`process` must be an integer");
  e.process = process->get<int64_t>();
  auto type = j.find("type");
  if (type == j.end() || !type->is_string()) return LineError(line, "`type` must be a string");
  auto parsed_type = ParseType(type->get<std::string>());
  if (!parsed_type)
    return LineError(line, "`type` must be invoke, ok, fail or info, not \"" + type->get<std::string>() + "\"");
  e.type = *parsed_type;
  auto f = j.find("f");
  if (f == j.end() || !f->is_string() || f->get<std::string>().empty()) {
    return LineError(line, "`f` must be a non-empty string");
  }
  e.f = f->get<std::string>();
  auto time = j.find("time");
  if (time == j.end() || !time->is_number_integer()) return LineError(line, "`time` must be integer nanoseconds");
  e.time_ns = time->get<int64_t>();
  if (e.time_ns < 0 || e.time_ns == kNeverCompleted) return LineError(line, "`time` out of range");
  if (auto key = j.find("key"); key != j.end() && !key->is_null()) {
    if (key->is_string()) {
      e.key = key->get<std::string>();
    } else if (key->is_number()) {
      e.key = key->dump();
    } else {
      return LineError(line, "`key` must be a string or a number");
    }
  }
  if (auto value = j.find("value"); value != j.end()) e.value = *value;
  for (auto [name, out] :
       {std::pair{"consistency", &e.consistency}, std::pair{"region", &e.region}, std::pair{"error", &e.error}}) {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_string()) return LineError(line, std::string("`") + name + "` must be a string");
    *out = it->get<std::string>();
  }
  if (auto session = j.find("session"); session != j.end() && !session->is_null()) {
    if (!session->is_number_integer()) return LineError(line, "`session` must be an integer");
    e.session = session->get<int64_t>();
  }
  if (auto glsn = j.find("glsn"); glsn != j.end() && !glsn->is_null()) {
    if (!glsn->is_number_unsigned()) return LineError(line, "`glsn` must be a non-negative integer");
    e.glsn = glsn->get<uint64_t>();
  }
  return e;
}

Result<std::vector<Event>> ParseHistory(std::istream& in) {
  std::vector<Event> events;
  std::string text;
  size_t line = 0;
  while (std::getline(in, text)) {  // bounded by the input's length
    ++line;
    if (text.size() > kMaxHistoryLineBytes) {
      return LineError(line, "longer than " + std::to_string(kMaxHistoryLineBytes) + " bytes");
    }
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    BULWARK_ASSIGN_OR_RETURN(Event e, ParseEvent(text, line));
    events.push_back(std::move(e));
  }
  if (in.bad()) return Status::IOError("read error after line " + std::to_string(line));
  return events;
}

Result<std::vector<Event>> ParseHistoryFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open history " + path);
  auto events = ParseHistory(in);
  if (!events.ok()) return events.status().WithContext(path);
  return events;
}

std::string FormatEvent(const Event& e) {
  // ordered_json keeps the fields in the order the issue lists them, so a
  // history reads well in a terminal.
  nlohmann::ordered_json j;
  j["process"] = e.process;
  j["type"] = EventTypeName(e.type);
  j["f"] = e.f;
  j["key"] = e.key;
  j["value"] = e.value;
  if (!e.consistency.empty()) j["consistency"] = e.consistency;
  if (!e.region.empty()) j["region"] = e.region;
  j["time"] = e.time_ns;
  if (e.session) j["session"] = *e.session;
  if (e.glsn) j["glsn"] = *e.glsn;
  if (!e.error.empty()) j["error"] = e.error;
  return j.dump();
}

Result<std::vector<Operation>> PairOperations(const std::vector<Event>& events) {
  std::vector<Operation> ops;
  std::map<int64_t, size_t> outstanding;  // process -> index in ops
  std::map<int64_t, int64_t> last_time;   // process -> time of its last event
  std::map<int64_t, size_t> crashed;      // process -> line of its info
  for (const Event& e : events) {
    const size_t line = e.line;
    if (auto it = last_time.find(e.process); it != last_time.end() && e.time_ns < it->second) {
      return LineError(line, "time goes backwards for process " + std::to_string(e.process));
    }
    last_time[e.process] = e.time_ns;
    if (e.type == EventType::kInvoke) {
      if (auto it = crashed.find(e.process); it != crashed.end()) {
        return LineError(line, "process " + std::to_string(e.process) + " saw info on line " +
                                   std::to_string(it->second) +
                                   " and must not issue another operation (use a new process id)");
      }
      if (auto it = outstanding.find(e.process); it != outstanding.end()) {
        return LineError(line, "process " + std::to_string(e.process) + " already has an operation outstanding (line " +
                                   std::to_string(ops[it->second].invoke_line) + ")");
      }
      Operation op;
      op.id = ops.size();
      op.process = e.process;
      op.session = e.session.value_or(e.process);
      op.f = e.f;
      op.key = e.key;
      op.input = e.value;
      op.invoke_ns = e.time_ns;
      op.consistency = e.consistency;
      op.region = e.region;
      op.invoke_line = line;
      outstanding[e.process] = ops.size();
      ops.push_back(std::move(op));
      continue;
    }
    auto it = outstanding.find(e.process);
    if (it == outstanding.end()) {
      return LineError(line, std::string(EventTypeName(e.type)) + " without an outstanding invoke of process " +
                                 std::to_string(e.process));
    }
    Operation& op = ops[it->second];
    if (op.f != e.f) return LineError(line, "completes `" + e.f + "` but the invoke was `" + op.f + "`");
    if (op.key != e.key && !e.key.empty()) {
      return LineError(line, "completes key \"" + e.key + "\" but the invoke was for \"" + op.key + "\"");
    }
    op.outcome = e.type;
    op.output = e.value;
    op.glsn = e.glsn;
    op.error = e.error;
    op.complete_line = line;
    // An info's operation may still take effect later: it never completed.
    op.complete_ns = e.type == EventType::kInfo ? kNeverCompleted : e.time_ns;
    if (e.type == EventType::kInfo) crashed[e.process] = line;
    outstanding.erase(it);
  }
  return ops;
}

std::string DescribeOperation(const Operation& op) {
  std::string out = "#" + std::to_string(op.id) + " p" + std::to_string(op.process) + " " + op.f;
  if (!op.key.empty()) out += " " + op.key;
  if (!op.input.is_null()) out += " " + op.input.dump();
  const bool completed = op.complete_line != 0;
  out += std::string(" -> ") + (completed ? EventTypeName(op.outcome) : "no completion");
  if (op.outcome == EventType::kOk && !op.output.is_null() && op.output != op.input) out += " " + op.output.dump();
  if (op.glsn) out += " glsn " + std::to_string(*op.glsn);
  if (!op.error.empty()) out += " (" + op.error + ")";
  out += " [line " + std::to_string(op.invoke_line);
  if (completed) out += "-" + std::to_string(op.complete_line);
  out += "]";
  return out;
}

Result<std::unique_ptr<HistoryWriter>> HistoryWriter::Open(const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IOError("cannot create " + path);
  return std::unique_ptr<HistoryWriter>(new HistoryWriter(std::move(out)));
}

void HistoryWriter::Append(const Event& event) {
  const std::string line = FormatEvent(event) + "\n";
  std::lock_guard lock(mu_);
  out_ << line;
  out_.flush();
}

bool HistoryWriter::ok() const {
  std::lock_guard lock(mu_);
  return out_.good();
}

}  // namespace bulwark::chaos::check
