#pragma once
// BackupWorker: the node's periodic backups (docs/backups.md). While this
// node leads its replica set (so one replica of each region takes them), it
// writes a backup (storage/backup.h) whenever the newest one in its location
// is older than backup.interval_s, copies it to backup.geo_dir if set, and
// keeps backup.retention per location. The check runs every few seconds and
// reads the location itself, so a restart neither skips nor repeats one.
//
// Ownership: owned by main; borrows the NodeContext, holds its own handle on
// the master key. Thread safety: every method may be called from any thread;
// backups are taken one at a time.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "crypto/master_key.h"
#include "storage/backup.h"

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
  // Crypto-shredding: removes every backup (both locations) taken before
  // raft index `purge_index`; they hold the purged container's keys.
  Status ForgetBefore(int64_t purge_index);
  // After a master-key rotation: later backups are wrapped under `next`, and
  // the existing ones in both locations are re-wrapped to it.
  Status RotateMasterKey(crypto::MasterKey next);
  const std::string& dir() const { return dir_; }

 private:
  void Loop();
  NodeContext* node_;
  crypto::MasterKey master_;
  std::string dir_;
  mutable std::mutex run_mu_;  // one backup at a time; guards master_
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace bulwark::server
