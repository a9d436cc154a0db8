#pragma once
// Workload clients for a chaos run: threads that each hold one client
// session and issue operations against a cluster, recording an invoke line
// before and a completion line after every operation (history.h).
//
//   register: read / write / cas (If-Match on the etag of the value last
//             read) of items k0..k<keys-1>, value {"v": unique integer};
//   set:      add (create a new item e<N> in set s<i>, partition key s<i>)
//             and read (list set s<i>, one page) of sets s0..s<keys-1>;
//   append:   append (read item l<i> at Strong, replace it If-Match with the
//             value added to its list "v"; create it if absent) and read.
//
// Outcomes: ok; fail when the server said the operation did not happen
// (PreconditionFailed, NotFound, InvalidArgument, Unauthenticated, ...) and
// for every failed read (a read changes nothing); info for a write whose
// outcome is unknown (Unavailable, DeadlineExceeded, ...), after which the
// thread continues under a new process id in the same session.
//
// Clients run with max_retries = 0: a retried write answers with the
// session token of the retry, not of the write, so a hidden retry would
// record a wrong GLSN. Failover still happens: a failed call moves the
// client to the next node for the next call.
//
// Ownership: the runner borrows the writer, which must outlive it.
// Thread safety: Start/Stop/FinalReads from one thread.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "chaos/check/history.h"
#include "chaos/check/verdict.h"
#include "client/client.h"
#include "common/consistency.h"

namespace bulwark::chaos {

// A set stops growing at one list page, so a read is one consistent page.
constexpr int kMaxSetElements = 1000;
// Pause between a thread's operations, so five threads leave the 2-core
// machine room for the nodes.
constexpr std::chrono::milliseconds kThinkTime{5};
// An append is read + replace If-Match; a lost race retries this many times.
constexpr int kMaxAppendAttempts = 5;
// Bound on any one operation (a partitioned node answers after 3 s).
constexpr std::chrono::milliseconds kOperationDeadline{5000};

struct WorkloadOptions {
  check::Workload workload = check::Workload::kRegister;
  ConsistencyLevel consistency = ConsistencyLevel::kStrong;
  int clients = 5;
  int keys = 8;
  uint64_t seed = 1;
  std::string database = "chaos";
  std::string container = "c";
  std::string region = "r1";
};

// One region's clients: workers are spread over the regions in turn, each
// reading in its region (writes go to the write region, by topology).
struct RegionClients {
  std::string region;
  client::ClientOptions options;
};

class WorkloadRunner {
 public:
  // `now_ns`: the run's monotonic clock (nanoseconds since it began).
  WorkloadRunner(WorkloadOptions options, client::ClientOptions client_options, check::HistoryWriter* writer,
                 std::function<int64_t()> now_ns);
  // Several regions: worker w reads in regions[w % size] (and records it);
  // setup and the final reads go through the first.
  WorkloadRunner(WorkloadOptions options, std::vector<RegionClients> regions, check::HistoryWriter* writer,
                 std::function<int64_t()> now_ns);
  ~WorkloadRunner();

  // Creates the database and container (retrying while the set elects a
  // leader, up to `timeout`).
  Status Setup(std::chrono::milliseconds timeout);
  void Start();
  void Stop();
  // One Strong read of every register, set or list through a fresh client,
  // for the lost-writes check (recorded in the history). Retries per key
  // until `timeout`; Unavailable if a key could not be read.
  Status FinalReads(std::chrono::milliseconds timeout);

  uint64_t operations() const { return operations_; }

 private:
  void Loop(int worker);
  void Record(check::Event e);
  check::Event Begin(int64_t process, int session, const std::string& f, const std::string& key,
                     const nlohmann::json& value) const;
  std::string ItemJson(const std::string& id, const std::string& tenant, int64_t value) const;
  // Register: its value (null if absent, "malformed item" if not ours) and etag.
  struct RegisterRead {
    nlohmann::json value;
    std::string etag;
  };
  Result<RegisterRead> ReadRegister(client::Client& c, const std::string& key, ConsistencyLevel level) const;
  // What a read records: a register's value, one page of a set, a list
  // item's array ([] if absent).
  Result<nlohmann::json> ReadValue(client::Client& c, const std::string& key, ConsistencyLevel level) const;
  // Appends by read + replace If-Match; returns the write's GLSN (nullopt if
  // its session token carried none).
  Result<std::optional<uint64_t>> Append(client::Client& c, const std::string& key, int64_t value) const;

  WorkloadOptions options_;
  client::ClientOptions client_options_;
  std::vector<RegionClients> regions_;  // never empty
  check::HistoryWriter* writer_;
  std::function<int64_t()> now_ns_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> next_process_{0};
  std::atomic<uint64_t> operations_{0};
  std::vector<std::atomic<int>> set_sizes_;
  std::vector<std::thread> threads_;
};

// Key k of a workload: register k<k>, set s<k> (its partition key), list l<k>.
std::string WorkloadKey(check::Workload workload, int k);

// "0:1#42" -> 42; nullopt if the token has no index.
std::optional<uint64_t> SessionTokenIndex(const std::string& token);

}  // namespace bulwark::chaos
