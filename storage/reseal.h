#pragma once
// Re-sealing after a container data-key (DEK) rotation, and its progress.
//
// Three pieces, private to storage/:
//   - a compaction filter (items and change log) that re-seals a value sealed
//     under a DEK version older than its container's current one, also when a
//     memtable is flushed;
//   - a table-properties collector that records in every SST how many sealed
//     values (and bytes) it holds per (container rid, DEK version), so
//     progress is read from the live SSTs' properties without a scan;
//   - ResealWorker: one store-owned thread that compacts a rotated
//     container's data so re-sealing finishes without waiting for natural
//     compactions (see DocumentStore::Impl and docs/storage.md).
//
// The filter never drops a value: a value it cannot open (bad bytes, unknown
// version) or whose container has no keys is kept as it is and, for the
// former, counted in ResealCounters::failed.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include <rocksdb/compaction_filter.h>
#include <rocksdb/table_properties.h>

#include "common/status.h"
#include "crypto/keyring.h"

namespace bulwark::storage {

// Which column family a filter or collector serves: the layout of its values.
enum class SealedColumn { kItems, kChangeLog };

// Thread-safe counters shared by every filter of one store, since it opened.
struct ResealCounters {
  std::atomic<uint64_t> resealed{0};
  std::atomic<uint64_t> failed{0};  // values that could not be opened: kept unchanged
};

// `keyring` must outlive the RocksDB instance the factory is given to
// (DocumentStore::Impl declares the keyring before the DB for that reason).
std::shared_ptr<rocksdb::CompactionFilterFactory> NewResealFilterFactory(SealedColumn column,
                                                                         const crypto::Keyring* keyring,
                                                                         std::shared_ptr<ResealCounters> counters);
std::shared_ptr<rocksdb::TablePropertiesCollectorFactory> NewDekUsageCollectorFactory(SealedColumn column);

// The user-collected property the collector writes.
constexpr const char* kDekUsageProperty = "bulwark.dek-usage.v1";
// A value whose header is unreadable is recorded under this version.
constexpr uint32_t kUnreadableVersion = 0;

struct DekUsageCount {
  uint64_t values = 0;
  uint64_t bytes = 0;
};
// (raw container rid, DEK version) -> count.
using DekUsageMap = std::map<std::pair<std::string, uint32_t>, DekUsageCount>;

// Adds one SST's recorded usage to `out`. Returns false if the SST has no
// such property (written before it existed); Corruption if it is malformed.
Result<bool> AddDekUsage(const rocksdb::TableProperties& properties, DekUsageMap& out);

// One background thread running re-seal jobs, one container (raw rid) at a
// time, in the order scheduled; a rid already queued is not queued twice.
// Thread safety: every method may be called from any thread.
class ResealWorker {
 public:
  // `job(rid, canceled)` does the work; it should return soon after
  // `canceled` becomes true. Its error is logged, not retried.
  using Job = std::function<Status(const std::string& rid, std::atomic<bool>& canceled)>;
  explicit ResealWorker(Job job);
  ~ResealWorker();  // Stop()
  ResealWorker(const ResealWorker&) = delete;
  ResealWorker& operator=(const ResealWorker&) = delete;

  void Schedule(const std::string& rid);
  // True while `rid` is queued or being worked on.
  bool Pending(const std::string& rid) const;
  // Cancels the running job, drops the queue and joins the thread. Idempotent.
  void Stop();

 private:
  void Run();

  Job job_;
  std::atomic<bool> canceled_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;  // GUARDED_BY(mu_)
  std::set<std::string> queued_;   // GUARDED_BY(mu_): the queue's members
  std::string running_;            // GUARDED_BY(mu_): empty when idle
  bool stopping_ = false;          // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace bulwark::storage
