#include "server/backup_worker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <utility>

#include "common/clock.h"
#include "replication/raft_log_store.h"
#include "replication/replica.h"
#include "server/config.h"
#include "server/services.h"
#include "storage/commands.h"
#include "storage/document_store.h"

namespace bulwark::server {
namespace {

namespace fs = std::filesystem;
constexpr std::chrono::seconds kCheckEvery{5};
constexpr std::chrono::milliseconds kRetryAfterFailure{60'000};

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
  if (node_->config->backup.continuous) archive_thread_ = std::thread([this] { ArchiveLoop(); });
}

void BackupWorker::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (archive_thread_.joinable()) archive_thread_.join();
}

void BackupWorker::Loop() {
  const int64_t interval_ms = int64_t{node_->config->backup.interval_s} * 1000;
  int64_t failed_at = 0;  // a failed backup is retried after kRetryAfterFailure, not at every check
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait_for(lock, kCheckEvery, [&] { return stop_ || backup_due_; });
    if (stop_) return;
    const bool due = std::exchange(backup_due_, false);
    lock.unlock();
    if (node_->replica->is_leader()) {
      auto existing = storage::ListBackups(dir_);
      const int64_t newest = existing.ok() && !existing->empty() ? existing->back().created_unix_ms : 0;
      if (!existing.ok()) {
        spdlog::error("event=backup_list_failed dir={} error=\"{}\"", dir_, existing.status().ToString());
      } else if ((due || UnixNowMillis() - newest >= interval_ms) &&
                 UnixNowMillis() - failed_at >= kRetryAfterFailure.count()) {
        auto b = BackupNow();
        failed_at = b.ok() ? 0 : UnixNowMillis();
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
  Status copied = Status::Ok();
  if (!c.geo_dir.empty()) {
    // The geo copy is for another region: what a geo-fence keeps out of it
    // is left out (a backup of its own, written from the store again);
    // otherwise it is a copy of the files.
    auto filter = node_->store->HoldsFencedOutOf(c.geo_region);
    copied = !filter.ok() ? filter.status()
             : *filter    ? storage::WriteBackup(*node_->store, master_, c.geo_dir, {}, &c.geo_region).status()
                          : storage::CopyBackupTo(dir_, c.geo_dir, info.id);
  }
  BULWARK_RETURN_IF_ERROR(PruneLocked());
  BULWARK_RETURN_IF_ERROR(copied);
  spdlog::info("event=backup_taken id={} glsn={} raft_index={} bytes={} seconds={:.2f} geo_copy={}", info.id, info.glsn,
               info.applied_index, info.bytes,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), !c.geo_dir.empty());
  return info;
}

// Retention, per location. Without continuous backup: the newest
// backup.retention. With it: every backup inside the retention window, the
// newest one before the window (restores to the window's start begin from
// it), and at least backup.retention; then the segments that end before the
// oldest backup kept (no restore can use them).
Status BackupWorker::PruneLocked() {
  const BackupConfig& c = node_->config->backup;
  const int64_t window_start = UnixNowMillis() - int64_t{c.continuous_retention_days} * 86'400'000;
  for (const std::string& location : {dir_, c.geo_dir}) {
    if (location.empty()) continue;
    size_t keep = c.retention;
    if (c.continuous) {
      BULWARK_ASSIGN_OR_RETURN(auto all, storage::ListBackups(location));
      size_t inside = 0;
      for (const auto& b : all) inside += b.image_unix_ms >= window_start ? 1 : 0;
      keep = std::max<size_t>(keep, std::min(all.size(), inside + 1));
    }
    BULWARK_ASSIGN_OR_RETURN(size_t pruned, storage::PruneBackups(location, keep));
    BULWARK_ASSIGN_OR_RETURN(auto kept, storage::ListBackups(location));
    size_t segments = 0;
    if (!kept.empty()) {
      std::lock_guard archive(archive_mu_);
      BULWARK_ASSIGN_OR_RETURN(segments, storage::PruneArchiveBefore(location, kept.front().applied_index + 1));
    }
    if (pruned + segments > 0) {
      spdlog::info("event=backups_pruned location={} backups={} archive_segments={}", location, pruned, segments);
    }
  }
  return Status::Ok();
}

void BackupWorker::ArchiveLoop() {
  const auto every = std::chrono::seconds(node_->config->backup.archive_interval_s);
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, every, [&] { return stop_; })) {
    lock.unlock();
    if (node_->replica->is_leader()) {
      auto next = ArchiveNow();
      if (!next.ok()) spdlog::error("event=archive_failed dir={} error=\"{}\"", dir_, next.status().ToString());
    } else {
      // Another node archives; when this one leads again, it reads where
      // the location stands (it may have moved on meanwhile).
      std::lock_guard archive(archive_mu_);
      next_index_ = 0;
      retain_from_ = 0;
    }
    lock.lock();
  }
}

Result<uint64_t> BackupWorker::ArchiveNow() {
  if (!node_->config->backup.continuous) return Status::FailedPrecondition("continuous backup is off");
  if (!node_->replica->is_leader()) return Status::FailedPrecondition("only the leader archives");
  std::lock_guard archive(archive_mu_);
  BULWARK_RETURN_IF_ERROR(ArchiveLocked());
  return next_index_;
}

Status BackupWorker::ArchiveLocked() {
  storage::DocumentStore* store = node_->store;
  if (next_index_ == 0) {
    // Where the location stands: after its newest segment, else after its
    // newest backup, else from what this node has applied.
    BULWARK_ASSIGN_OR_RETURN(auto segments, storage::ListArchive(dir_));
    uint64_t next = 0;
    for (const auto& seg : segments) next = std::max(next, seg.last_index + 1);
    if (next == 0) {
      BULWARK_ASSIGN_OR_RETURN(auto backups, storage::ListBackups(dir_));
      next = backups.empty() ? store->applied_index() + 1 : backups.back().applied_index + 1;
    }
    next_index_ = next;
    retain_from_ = next_index_;
  }
  const uint64_t applied = store->applied_index();
  while (next_index_ <= applied) {
    auto entries = replication::ReadStoredEntries(store->raw_db(), store->raft_log_cf(), next_index_, applied + 1,
                                                  storage::kMaxSegmentBytes);
    if (!entries.ok() && entries.status().code() == Code::kNotFound) {
      // Compacted before it was archived: a hole. Restores across it are
      // refused; a backup now makes the times after it restorable.
      const uint64_t first = node_->replica->status().first_index;
      if (first <= next_index_) return entries.status();  // not a hole: something else is wrong
      spdlog::warn("event=archive_hole from_index={} to_index={} reason=\"the log no longer holds them\"", next_index_,
                   first - 1);
      next_index_ = first;
      retain_from_ = next_index_;
      {
        std::lock_guard lock(mu_);
        backup_due_ = true;
      }
      wake_.notify_all();
      continue;
    }
    BULWARK_RETURN_IF_ERROR(entries.status());
    std::vector<storage::ArchivedCommand> commands;
    for (const auto& e : *entries) {
      if (e.type != raft::EntryType::kNormal || e.data.empty()) continue;
      std::string_view bytes;
      if (!replication::EntryCommand(e.data, &bytes)) {
        return Status::Corruption("raft entry " + std::to_string(e.index) + " is malformed");
      }
      commands.push_back({e.index, std::string(bytes)});
    }
    // Only entries without a command so far (a new leader's empty entry):
    // the next segment covers them, so the archive stays without holes.
    if (commands.empty()) break;
    const uint64_t last = entries->back().index;
    BULWARK_ASSIGN_OR_RETURN(storage::ArchiveSegment seg,
                             storage::WriteArchiveSegment(dir_, master_, next_index_, last, commands));
    if (const std::string& geo = node_->config->backup.geo_dir; !geo.empty()) {
      // A fenced command becomes, in the geo copy, the placeholder a region
      // outside its fence applies (the segment restores the same positions).
      const std::string& geo_region = node_->config->backup.geo_region;
      bool fenced = false;
      std::vector<storage::ArchivedCommand> kept = commands;
      for (auto& c : kept) {
        auto cmd = storage::WriteCommand::Decode(c.command);
        if (!cmd.ok()) return cmd.status();
        if (!storage::FenceAllows(cmd->fence, geo_region)) {
          c.command = storage::FencedOutPlaceholder(*cmd).Encode();
          fenced = true;
        }
        cmd->WipeKey();
      }
      BULWARK_RETURN_IF_ERROR(fenced ? storage::WriteArchiveSegment(geo, master_, next_index_, last, kept).status()
                                     : storage::CopyArchiveSegment(dir_, geo, seg.id));
    }
    spdlog::debug("event=archived segment={} commands={} bytes={}", seg.id, seg.commands, seg.bytes);
    next_index_ = last + 1;
    retain_from_ = next_index_;
  }
  return Status::Ok();
}

Result<std::optional<storage::RestoreWindow>> BackupWorker::Window() const {
  std::lock_guard archive(archive_mu_);
  return storage::RestorableWindow(dir_);
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

Result<storage::ArchiveCheck> BackupWorker::VerifyArchive() const {
  // Archiving waits meanwhile (segments must not be pruned mid-read);
  // backups go on.
  std::lock_guard archive(archive_mu_);
  return storage::VerifyArchive(dir_, master_);
}

Status BackupWorker::ForgetPurged(const std::vector<storage::PendingShred>& purges) {
  if (purges.empty()) return Status::Ok();
  std::lock_guard run(run_mu_);
  std::lock_guard archive(archive_mu_);
  std::set<std::string> rids;
  int64_t purge_index = 0;
  bool unreplicated = false;  // a purge outside replication (index 0): any segment may hold its keys
  for (const auto& p : purges) {
    rids.insert(p.rid);
    purge_index = std::max(purge_index, static_cast<int64_t>(p.purge_index));
    unreplicated = unreplicated || p.purge_index == 0;
  }
  const uint64_t through = unreplicated ? 0 : static_cast<uint64_t>(purge_index);
  // The archive must not take up the purged container's commands later.
  if (through == 0) {
    next_index_ = 0;
  } else if (next_index_ > 0) {
    next_index_ = std::max<uint64_t>(next_index_, through + 1);
  }
  for (const std::string& location : {dir_, node_->config->backup.geo_dir}) {
    if (location.empty()) continue;
    BULWARK_ASSIGN_OR_RETURN(size_t keys, storage::DropKeysFromBackups(location, master_, rids));
    BULWARK_ASSIGN_OR_RETURN(size_t segments, storage::ForgetArchiveThrough(location, through));
    spdlog::warn("event=backups_forgot_purged location={} containers={} keys_dropped={} archive_segments_removed={}",
                 location, rids.size(), keys, segments);
  }
  // The archive no longer continues the backups before the purge: a new
  // backup now, so times after the purge restore again.
  if (node_->config->backup.continuous) {
    std::lock_guard lock(mu_);
    backup_due_ = true;
  }
  wake_.notify_all();
  return Status::Ok();
}

Status BackupWorker::RotateMasterKey(crypto::MasterKey next) {
  std::lock_guard run(run_mu_);
  std::lock_guard archive(archive_mu_);
  // The store already runs under `next`: later backups use it whatever
  // happens below, and every backup and segment that can be re-wrapped is,
  // even if one cannot (it is named in the error and the log).
  crypto::MasterKey old = std::exchange(master_, std::move(next));
  Status result = Status::Ok();
  for (const std::string& location : {dir_, node_->config->backup.geo_dir}) {
    if (location.empty()) continue;
    auto n = storage::RewrapBackups(location, old, master_);
    auto segments = storage::RewrapArchive(location, old, master_);
    for (const Status& s : {n.status(), segments.status()}) {
      if (s.ok()) continue;
      spdlog::error("event=backups_rewrap_failed location={} error=\"{}\"", location, s.ToString());
      if (result.ok()) result = s;
    }
    spdlog::info("event=backups_rewrapped location={} count={} archive_segments={}", location, n.ok() ? *n : 0,
                 segments.ok() ? *segments : 0);
  }
  return result;
}

}  // namespace bulwark::server
