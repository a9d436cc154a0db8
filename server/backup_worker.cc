#include "server/backup_worker.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "replication/replica.h"
#include "server/config.h"
#include "server/services.h"

namespace bulwark::server {
namespace {

namespace fs = std::filesystem;
constexpr std::chrono::seconds kCheckEvery{5};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Copies a complete backup directory to `location`, published by rename.
Status CopyBackup(const fs::path& from, const std::string& location, const std::string& id) {
  std::error_code ec;
  fs::create_directories(location, ec);
  const fs::path partial = fs::path(location) / (id + ".partial");
  fs::remove_all(partial, ec);
  fs::copy(from, partial, fs::copy_options::recursive, ec);
  if (ec) return Status::IOError("cannot copy backup " + id + " to " + location + ": " + ec.message());
  fs::rename(partial, fs::path(location) / id, ec);
  if (ec) return Status::IOError("cannot publish backup " + id + " in " + location + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

BackupWorker::BackupWorker(NodeContext* node, crypto::MasterKey master)
    : node_(node),
      master_(std::move(master)),
      dir_(node->config->backup.dir.empty() ? (fs::path(node->config->data_dir) / "backups").string()
                                            : node->config->backup.dir) {}

BackupWorker::~BackupWorker() { Stop(); }

void BackupWorker::Start() {
  if (!node_->config->backup.enabled) return;
  thread_ = std::thread([this] { Loop(); });
}

void BackupWorker::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackupWorker::Loop() {
  const int64_t interval_ms = int64_t{node_->config->backup.interval_s} * 1000;
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, kCheckEvery, [&] { return stop_; })) {
    lock.unlock();
    if (node_->replica->is_leader()) {
      auto existing = storage::ListBackups(dir_);
      const int64_t newest = existing.ok() && !existing->empty() ? existing->back().created_unix_ms : 0;
      if (!existing.ok()) {
        spdlog::error("event=backup_list_failed dir={} error=\"{}\"", dir_, existing.status().ToString());
      } else if (NowMs() - newest >= interval_ms) {
        auto b = BackupNow();
        if (!b.ok()) spdlog::error("event=backup_failed dir={} error=\"{}\"", dir_, b.status().ToString());
      }
    }
    lock.lock();
  }
}

Result<storage::BackupInfo> BackupWorker::BackupNow() {
  std::lock_guard run(run_mu_);
  const auto started = std::chrono::steady_clock::now();
  BULWARK_ASSIGN_OR_RETURN(storage::BackupInfo info, storage::WriteBackup(*node_->store, master_, dir_));
  const BackupConfig& c = node_->config->backup;
  if (!c.geo_dir.empty()) {
    BULWARK_RETURN_IF_ERROR(CopyBackup(fs::path(dir_) / info.id, c.geo_dir, info.id));
    BULWARK_RETURN_IF_ERROR(storage::PruneBackups(c.geo_dir, c.retention).status());
  }
  BULWARK_ASSIGN_OR_RETURN(size_t pruned, storage::PruneBackups(dir_, c.retention));
  spdlog::info("event=backup_taken id={} glsn={} bytes={} seconds={:.2f} pruned={} geo_copy={}", info.id, info.glsn,
               info.bytes, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), pruned,
               !c.geo_dir.empty());
  return info;
}

Result<std::vector<std::pair<std::string, storage::BackupInfo>>> BackupWorker::List() const {
  std::lock_guard run(run_mu_);
  std::vector<std::pair<std::string, storage::BackupInfo>> out;
  BULWARK_ASSIGN_OR_RETURN(auto primary, storage::ListBackups(dir_));
  for (auto& b : primary) out.emplace_back("primary", std::move(b));
  if (!node_->config->backup.geo_dir.empty()) {
    BULWARK_ASSIGN_OR_RETURN(auto geo, storage::ListBackups(node_->config->backup.geo_dir));
    for (auto& b : geo) out.emplace_back("geo", std::move(b));
  }
  return out;
}

Result<storage::BackupInfo> BackupWorker::Verify(const std::string& id) const {
  std::lock_guard run(run_mu_);
  return storage::VerifyBackup(dir_, id, master_);
}

Status BackupWorker::ForgetBefore(int64_t purge_index) {
  std::lock_guard run(run_mu_);
  for (const std::string& location : {dir_, node_->config->backup.geo_dir}) {
    if (location.empty()) continue;
    BULWARK_ASSIGN_OR_RETURN(auto all, storage::ListBackups(location));
    for (const auto& b : all) {
      // A purge outside replication has index 0: every backup may hold its keys.
      if (purge_index > 0 && b.applied_index >= static_cast<uint64_t>(purge_index)) continue;
      std::error_code ec;
      fs::remove_all(fs::path(location) / b.id, ec);
      if (ec) return Status::IOError("cannot remove backup " + b.id + ": " + ec.message());
      spdlog::warn("event=backup_removed_for_purge id={} location={} purge_index={}", b.id, location, purge_index);
    }
  }
  return Status::Ok();
}

Status BackupWorker::RotateMasterKey(crypto::MasterKey next) {
  std::lock_guard run(run_mu_);
  for (const std::string& location : {dir_, node_->config->backup.geo_dir}) {
    if (location.empty()) continue;
    BULWARK_ASSIGN_OR_RETURN(size_t n, storage::RewrapBackups(location, master_, next));
    spdlog::info("event=backups_rewrapped location={} count={}", location, n);
  }
  master_ = std::move(next);
  return Status::Ok();
}

}  // namespace bulwark::server
