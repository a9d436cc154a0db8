#include "chaos/workload.h"

#include <random>

namespace bulwark::chaos {
namespace {

using check::Event;
using check::EventType;

// True if the server said the write did not happen.
bool Definite(Code code) {
  switch (code) {
    case Code::kPreconditionFailed:
    case Code::kNotFound:
    case Code::kInvalidArgument:
    case Code::kAlreadyExists:
    case Code::kPermissionDenied:
    case Code::kUnauthenticated:
    case Code::kTooLarge:
    case Code::kFailedPrecondition:
    case Code::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

std::optional<int64_t> ValueOf(const std::string& json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("v") || !j["v"].is_number_integer()) return std::nullopt;
  return j["v"].get<int64_t>();
}

// An append-workload item's list; nullopt if the item is malformed.
std::optional<nlohmann::json> ListOf(const std::string& json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("v") || !j["v"].is_array()) return std::nullopt;
  return j["v"];
}

}  // namespace

std::string WorkloadKey(check::Workload workload, int k) {
  const char* prefix = workload == check::Workload::kRegister ? "k" : workload == check::Workload::kSet ? "s" : "l";
  return prefix + std::to_string(k);
}

std::optional<uint64_t> SessionTokenIndex(const std::string& token) {
  const size_t hash = token.rfind('#');
  if (hash == std::string::npos || hash + 1 >= token.size()) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = hash + 1; i < token.size(); ++i) {
    if (token[i] < '0' || token[i] > '9' || v > (UINT64_MAX - 9) / 10) return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(token[i] - '0');
  }
  return v;
}

WorkloadRunner::WorkloadRunner(WorkloadOptions options, client::ClientOptions client_options,
                               check::HistoryWriter* writer, std::function<int64_t()> now_ns)
    : WorkloadRunner(options, std::vector<RegionClients>{{options.region, std::move(client_options)}}, writer,
                     std::move(now_ns)) {}

WorkloadRunner::WorkloadRunner(WorkloadOptions options, std::vector<RegionClients> regions,
                               check::HistoryWriter* writer, std::function<int64_t()> now_ns)
    : options_(std::move(options)),
      regions_(std::move(regions)),
      writer_(writer),
      now_ns_(std::move(now_ns)),
      set_sizes_(options_.keys) {
  for (auto& r : regions_) {
    r.options.max_retries = 0;
    r.options.deadline = kOperationDeadline;
  }
  client_options_ = regions_.front().options;
  next_process_ = options_.clients;
}

WorkloadRunner::~WorkloadRunner() { Stop(); }

Status WorkloadRunner::Setup(std::chrono::milliseconds timeout) {
  client::ClientOptions o = client_options_;
  o.max_retries = 3;
  BULWARK_ASSIGN_OR_RETURN(auto c, client::Client::Connect(o));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Status last;
  // Database and container writes are not retried by the client (no request
  // id); AlreadyExists after an unknown outcome means the earlier try worked.
  while (std::chrono::steady_clock::now() < deadline) {
    auto db = c->CreateDatabase(options_.database);
    last = db.status();
    if (db.ok() || last.code() == Code::kAlreadyExists) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!last.ok() && last.code() != Code::kAlreadyExists) return last.WithContext("create database");
  while (std::chrono::steady_clock::now() < deadline) {
    auto cont = c->CreateContainer(options_.database, options_.container, "/tenant");
    last = cont.status();
    if (cont.ok() || last.code() == Code::kAlreadyExists) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return last.WithContext("create container");
}

void WorkloadRunner::Start() {
  stop_ = false;
  for (int w = 0; w < options_.clients; ++w) threads_.emplace_back([this, w] { Loop(w); });
}

void WorkloadRunner::Stop() {
  stop_ = true;
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

Event WorkloadRunner::Begin(int64_t process, int session, const std::string& f, const std::string& key,
                            const nlohmann::json& value) const {
  Event e;
  e.process = process;
  e.type = EventType::kInvoke;
  e.f = f;
  e.key = key;
  e.value = value;
  e.consistency = std::string(ConsistencyName(options_.consistency));
  e.region = regions_[static_cast<size_t>(session) % regions_.size()].region;
  e.session = session;
  e.time_ns = now_ns_();
  return e;
}

void WorkloadRunner::Record(Event e) {
  writer_->Append(e);
  if (e.type != EventType::kInvoke) ++operations_;
}

std::string WorkloadRunner::ItemJson(const std::string& id, const std::string& tenant, int64_t value) const {
  nlohmann::json j{{"id", id}, {"tenant", tenant}, {"v", value}};
  return j.dump();
}

void WorkloadRunner::Loop(int worker) {
  auto connected = client::Client::Connect(regions_[static_cast<size_t>(worker) % regions_.size()].options);
  if (!connected.ok()) return;
  std::unique_ptr<client::Client> c = std::move(connected).value();
  std::mt19937_64 rng(options_.seed * 1000 + static_cast<uint64_t>(worker));
  auto pick = [&](int n) { return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(rng)); };
  int64_t process = worker;
  int64_t counter = 0;
  // Register: the value and etag this session last read per key, for cas.
  std::map<std::string, std::pair<nlohmann::json, std::string>> last_read;
  const std::string& db = options_.database;
  const std::string& cont = options_.container;
  while (!stop_) {  // bounded by the run's duration: Stop() ends it
    std::this_thread::sleep_for(kThinkTime);
    const int64_t value = (static_cast<int64_t>(worker) + 1) * 100'000'000 + ++counter;  // unique per run
    const int k = pick(options_.keys);
    auto complete = [&](Event e, EventType type, const nlohmann::json& out, const Status& s) {
      e.type = type;
      e.value = out;
      e.time_ns = now_ns_();
      if (!s.ok()) e.error = s.ToString().substr(0, 200);
      Record(std::move(e));
      if (type == EventType::kInfo) process = next_process_++;  // the rule: never reuse it
    };
    auto write_outcome = [&](const Status& s) { return Definite(s.code()) ? EventType::kFail : EventType::kInfo; };

    if (options_.workload == check::Workload::kRegister) {
      const std::string key = WorkloadKey(options_.workload, k);
      const int dice = pick(10);
      if (dice < 4) {
        Event e = Begin(process, worker, "read", key, nullptr);
        Record(e);
        auto r = ReadRegister(*c, key, options_.consistency);
        if (r.ok()) {
          if (r->value.is_null()) {
            last_read.erase(key);
          } else {
            last_read[key] = {r->value, r->etag};
          }
          complete(e, EventType::kOk, r->value, Status::Ok());
        } else {
          complete(e, EventType::kFail, nullptr, r.status());
        }
      } else if (dice < 8 || !last_read.count(key)) {
        Event e = Begin(process, worker, "write", key, value);
        Record(e);
        auto r = c->UpsertItem(db, cont, ItemJson(key, "t", value));
        if (r.ok()) {
          e.glsn = SessionTokenIndex(r->session_token);
          complete(e, EventType::kOk, value, Status::Ok());
        } else {
          complete(e, write_outcome(r.status()), value, r.status());
        }
      } else {
        const auto& [expected, etag] = last_read[key];
        const nlohmann::json cas = nlohmann::json::array({expected, value});
        Event e = Begin(process, worker, "cas", key, cas);
        Record(e);
        auto r = c->ReplaceItem(db, cont, key, ItemJson(key, "t", value), etag);
        if (r.ok()) {
          e.glsn = SessionTokenIndex(r->session_token);
          complete(e, EventType::kOk, cas, Status::Ok());
        } else {
          complete(e, write_outcome(r.status()), cas, r.status());
        }
      }
      continue;
    }

    if (options_.workload == check::Workload::kAppend) {
      const std::string key = WorkloadKey(options_.workload, k);
      if (pick(10) < 5) {
        Event e = Begin(process, worker, "append", key, value);
        Record(e);
        auto r = Append(*c, key, value);
        if (r.ok()) {
          e.glsn = *r;  // the format: absent, not 0, when the token had none
          complete(e, EventType::kOk, value, Status::Ok());
        } else {
          complete(e, write_outcome(r.status()), value, r.status());
        }
        continue;
      }
      Event e = Begin(process, worker, "read", key, nullptr);
      Record(e);
      auto r = ReadValue(*c, key, options_.consistency);
      if (r.ok()) {
        complete(e, EventType::kOk, *r, Status::Ok());
      } else {
        complete(e, EventType::kFail, nullptr, r.status());
      }
      continue;
    }

    // Set workload.
    const std::string set = WorkloadKey(options_.workload, k);
    if (pick(10) < 8 && set_sizes_[k].fetch_add(1) < kMaxSetElements) {
      Event e = Begin(process, worker, "add", set, value);
      Record(e);
      auto r = c->CreateItem(db, cont, ItemJson("e" + std::to_string(value), set, value));
      if (r.ok()) {
        e.glsn = SessionTokenIndex(r->session_token);
        complete(e, EventType::kOk, value, Status::Ok());
      } else {
        complete(e, write_outcome(r.status()), value, r.status());
      }
      continue;
    }
    Event e = Begin(process, worker, "read", set, nullptr);
    Record(e);
    auto r = ReadValue(*c, set, options_.consistency);
    if (r.ok()) {
      complete(e, EventType::kOk, *r, Status::Ok());
    } else {
      complete(e, EventType::kFail, nullptr, r.status());
    }
  }
}

Result<WorkloadRunner::RegisterRead> WorkloadRunner::ReadRegister(client::Client& c, const std::string& key,
                                                                  ConsistencyLevel level) const {
  client::ReadOptions ro;
  ro.consistency = level;
  auto r = c.ReadItem(options_.database, options_.container, "\"t\"", key, ro);
  if (r.status().code() == Code::kNotFound) return RegisterRead{};
  if (!r.ok()) return r.status();
  auto v = ValueOf(r->json);
  return RegisterRead{v ? nlohmann::json(*v) : nlohmann::json("malformed item"), r->etag};
}

Result<nlohmann::json> WorkloadRunner::ReadValue(client::Client& c, const std::string& key,
                                                 ConsistencyLevel level) const {
  if (options_.workload == check::Workload::kRegister) {
    BULWARK_ASSIGN_OR_RETURN(RegisterRead r, ReadRegister(c, key, level));
    return std::move(r.value);
  }
  if (options_.workload == check::Workload::kAppend) {
    client::ReadOptions ro;
    ro.consistency = level;
    auto r = c.ReadItem(options_.database, options_.container, "\"t\"", key, ro);
    if (r.status().code() == Code::kNotFound) return nlohmann::json::array();
    if (!r.ok()) return r.status();
    auto list = ListOf(r->json);
    return list ? *list : nlohmann::json("malformed item");
  }
  client::ListOptions lo;
  lo.partition_key_json = nlohmann::json(key).dump();
  lo.max_items = kMaxSetElements;
  lo.consistency = level;
  auto page = c.ListItems(options_.database, options_.container, lo);
  if (!page.ok()) return page.status();
  nlohmann::json elements = nlohmann::json::array();
  for (const std::string& item : page->items) {
    auto v = ValueOf(item);
    elements.push_back(v ? nlohmann::json(*v) : nlohmann::json("malformed item"));
  }
  return elements;
}

Result<std::optional<uint64_t>> WorkloadRunner::Append(client::Client& c, const std::string& key, int64_t value) const {
  // Read, then replace If-Match the etag read (or create if absent); a
  // conflict with another appender retries, a bounded number of times. Each
  // attempt carries a fresh request id, and a conflict means it did not apply.
  Status last;
  for (int attempt = 0; attempt < kMaxAppendAttempts; ++attempt) {
    client::ReadOptions ro;
    ro.consistency = ConsistencyLevel::kStrong;
    auto r = c.ReadItem(options_.database, options_.container, "\"t\"", key, ro);
    Result<client::Item> written = Status::Internal("not written");
    if (r.status().code() == Code::kNotFound) {
      nlohmann::json j{{"id", key}, {"tenant", "t"}, {"v", nlohmann::json::array({value})}};
      written = c.CreateItem(options_.database, options_.container, j.dump());
    } else if (!r.ok()) {
      // The read changed nothing: the append definitely did not happen.
      return Status::FailedPrecondition("append's read failed: " + r.status().ToString());
    } else {
      auto list = ListOf(r->json);
      if (!list) return Status::InvalidArgument("malformed list item " + key);
      list->push_back(value);
      nlohmann::json j{{"id", key}, {"tenant", "t"}, {"v", *list}};
      written = c.ReplaceItem(options_.database, options_.container, key, j.dump(), r->etag);
    }
    if (written.ok()) return SessionTokenIndex(written->session_token);
    last = written.status();
    if (last.code() != Code::kPreconditionFailed && last.code() != Code::kAlreadyExists) return last;
  }
  return Status::PreconditionFailed("append lost " + std::to_string(kMaxAppendAttempts) + " races: " + last.ToString());
}

Status WorkloadRunner::FinalReads(std::chrono::milliseconds timeout) {
  auto connected = client::Client::Connect(client_options_);
  if (!connected.ok()) return connected.status();
  auto& c = *connected;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int k = 0; k < options_.keys; ++k) {
    const std::string key = WorkloadKey(options_.workload, k);
    bool done = false;
    while (!done && std::chrono::steady_clock::now() < deadline) {  // bounded by the deadline
      Event e = Begin(next_process_++, options_.clients, "read", key, nullptr);
      e.consistency = "Strong";
      e.region = regions_.front().region;  // read through the first region's client
      Record(e);
      auto r = ReadValue(*c, key, ConsistencyLevel::kStrong);
      e.time_ns = now_ns_();
      if (!r.ok()) {
        e.type = EventType::kFail;
        e.error = r.status().ToString().substr(0, 200);
        Record(e);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      e.type = EventType::kOk;
      e.value = *r;
      Record(e);
      done = true;
    }
    if (!done) return Status::Unavailable("the final read of " + key + " did not succeed in time");
  }
  return Status::Ok();
}

}  // namespace bulwark::chaos
