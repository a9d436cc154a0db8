#include "chaos/check/synth.h"

#include <algorithm>
#include <map>
#include <random>

namespace bulwark::chaos::check {

std::vector<Event> SynthesizeRegisterHistory(const SynthOptions& options) {
  std::mt19937_64 rng(options.seed);
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  std::vector<Event> events;
  std::vector<int64_t> process(options.processes);  // the process id each client uses now
  std::vector<int64_t> free_at(options.processes, 0);
  for (int i = 0; i < options.processes; ++i) process[i] = i;
  int64_t next_process = options.processes;
  std::map<int, int64_t> state;  // key -> value; absent = null
  int64_t next_value = 1;
  // Bounded: each pass either emits an operation or moves time on; a client
  // is always free again after `spread` steps.
  size_t made = 0;
  for (int64_t step = 1; made < options.operations; ++step) {
    const int64_t at = step * 10;  // the instant the operation takes effect
    const int client = static_cast<int>(uniform(0, options.processes - 1));
    const int64_t invoke = std::max(free_at[client] + 1, at - uniform(0, options.spread));
    if (invoke > at) continue;  // this client is still busy: try at the next instant
    const int64_t complete = at + uniform(0, options.spread);
    const int key_index = static_cast<int>(uniform(0, options.keys - 1));
    const std::string key = "k" + std::to_string(key_index);
    const bool info = uniform(0, 999) < options.info_per_mille;
    const bool happened = !info || uniform(0, 1) == 1;
    Event in;
    in.process = process[client];
    in.key = key;
    in.time_ns = invoke;
    in.consistency = "Strong";
    Event out = in;
    out.time_ns = complete;
    out.type = info ? EventType::kInfo : EventType::kOk;
    const nlohmann::json current = state.count(key_index) ? nlohmann::json(state[key_index]) : nlohmann::json();
    switch (uniform(0, 2)) {
      case 0:
        in.f = out.f = "read";
        out.value = info ? nlohmann::json() : current;
        break;
      case 1: {
        in.f = out.f = "write";
        in.value = out.value = next_value;
        if (happened) state[key_index] = next_value;
        ++next_value;
        break;
      }
      default: {
        in.f = out.f = "cas";
        // Half the time expect the value it holds, so some succeed.
        const nlohmann::json expected = uniform(0, 1) == 0 ? current : nlohmann::json(uniform(1, next_value));
        in.value = out.value = nlohmann::json::array({expected, next_value});
        if (expected == current) {
          if (happened) state[key_index] = next_value;
        } else if (!info) {
          out.type = EventType::kFail;
        }
        ++next_value;
        break;
      }
    }
    if (info) out.value = in.value;
    events.push_back(in);
    events.push_back(out);
    // An info's process never issues again: the client takes a new id.
    free_at[client] = info ? invoke : complete;
    if (info) process[client] = next_process++;
    ++made;
  }
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) { return a.time_ns < b.time_ns; });
  return events;
}

}  // namespace bulwark::chaos::check
