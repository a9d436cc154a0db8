#pragma once
// BackupWorker: the node's periodic backups (docs/backups.md). While this
// node leads its replica set (so one replica of each region takes them), it
// writes a backup (storage/backup.h) whenever the newest one in its location
// is older than backup.interval_s, copies it to backup.geo_dir if set, and
// keeps backup.retention per location. The check runs every few seconds and
// reads the location itself, so a restart neither skips nor repeats one.
//
// Continuous backup (backup.continuous; storage/archive.h): while leading,
// a second thread archives the committed raft log to <dir>/log every
// backup.archive_interval_s, resuming from the location's newest segment
// (so a new leader, sharing the location or not, carries on where it
// stands), and asks the replica to keep the log from there (RetainFrom). If
// the log no longer holds that position (this node was a follower while the
// log moved on), the hole is logged and a backup taken at once, so restores
// after it work again. Backups and segments are then kept for
// backup.continuous_retention_days (plus the newest backup before that).
//
// Ownership: owned by main; borrows the NodeContext, holds its own handle on
// the master key. Thread safety: every method may be called from any thread;
// backups are taken one at a time, archive passes one at a time (lock order:
// run_mu_, then archive_mu_).

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "crypto/master_key.h"
#include "storage/archive.h"
#include "storage/backup.h"

namespace bulwark::storage {
struct PendingShred;
}

namespace bulwark::server {

struct NodeContext;

class BackupWorker {
 public:
  BackupWorker(NodeContext* node, crypto::MasterKey master);
  ~BackupWorker();
  // Starts the periodic thread (if backup.enabled).
  void Start();
  void Stop();

  // Takes a backup now (also with backups disabled), copies and prunes.
  Result<storage::BackupInfo> BackupNow();
  // (location name, backup): "primary" first, then "geo".
  Result<std::vector<std::pair<std::string, storage::BackupInfo>>> List() const;
  Result<storage::BackupInfo> Verify(const std::string& id) const;
  // Reads and authenticates every archive segment of the primary location.
  Result<storage::ArchiveCheck> VerifyArchive() const;
  // Crypto-shredding: drops the purged containers' data keys from every
  // backup's key catalog (both locations; the backups stay restorable for
  // the rest), and removes the archive segments that start at or before a
  // purge (their commands carry the keys).
  Status ForgetPurged(const std::vector<storage::PendingShred>& purges);
  // After a master-key rotation: later backups are wrapped under `next`, and
  // the existing ones in both locations are re-wrapped to it.
  Status RotateMasterKey(crypto::MasterKey next);
  const std::string& dir() const { return dir_; }

  // Continuous backup: archives what the log holds beyond the archive now
  // (also when not due; FailedPrecondition unless leading with
  // backup.continuous on). Returns the first index not yet archived.
  Result<uint64_t> ArchiveNow();
  // The raft index from which the log must be kept for the archive (0: no
  // wish: not leading, or continuous backup off). Cheap; for the replica.
  uint64_t RetainFrom() const { return retain_from_.load(); }
  // The times the primary location can restore to (none without a backup).
  Result<std::optional<storage::RestoreWindow>> Window() const;

 private:
  void Loop();
  void ArchiveLoop();
  Status ArchiveLocked();
  Status PruneLocked();
  NodeContext* node_;
  crypto::MasterKey master_;
  std::string dir_;
  mutable std::mutex run_mu_;  // one backup at a time; guards master_
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;              // GUARDED_BY(mu_)
  bool backup_due_ = false;        // GUARDED_BY(mu_): the archive has a hole; back up now
  mutable std::mutex archive_mu_;  // one archive pass at a time
  uint64_t next_index_ = 0;        // GUARDED_BY(archive_mu_): first index not archived; 0: read the location
  std::atomic<uint64_t> retain_from_{0};
  std::thread thread_;
  std::thread archive_thread_;
};

}  // namespace bulwark::server
