#pragma once
// The node's shred job: after a container purge has applied here (or a state
// image dropped keys this node held), it waits until the raft log no longer
// holds the purged commands, then rewrites the node's files
// (DocumentStore::ShredFiles). It retries until every pending shred is done;
// `bulwark keys status` shows what is pending and the last error.
//
// Thread safety: Start/Stop from one thread; the accessors from any.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace bulwark::storage {
class DocumentStore;
struct PendingShred;
}  // namespace bulwark::storage
namespace bulwark::replication {
class Replica;
}

namespace bulwark::server {

class ShredWorker {
 public:
  ShredWorker() = default;
  ~ShredWorker() { Stop(); }
  ShredWorker(const ShredWorker&) = delete;
  ShredWorker& operator=(const ShredWorker&) = delete;

  // Borrows both; they must outlive Stop().
  void Start(storage::DocumentStore* store, replication::Replica* replica);
  // Wakes the worker now (a purge was just applied).
  void Poke();
  // Runs before each shred with the purges it completes (internal ids and
  // raft indexes), and must succeed first: other copies of the purged keys
  // (the node's backups and archive) go before the files are rewritten and
  // the shred is recorded as done.
  using BeforeShredFn = std::function<Status(const std::vector<storage::PendingShred>& purges)>;
  void set_before_shred(BeforeShredFn fn);
  // Waits for a running shred to finish, then stops.
  void Stop();
  std::string last_error() const;
  bool running() const { return running_; }

 private:
  void Loop();

  storage::DocumentStore* store_ = nullptr;
  replication::Replica* replica_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                 // GUARDED_BY(mu_)
  bool poked_ = false;                // GUARDED_BY(mu_)
  std::string error_;                 // GUARDED_BY(mu_)
  BeforeShredFn before_shred_;        // GUARDED_BY(mu_)
  std::atomic<bool> running_{false};  // a ShredFiles call is under way
  std::thread thread_;
};

}  // namespace bulwark::server
