#include "server/shred_worker.h"

#include <chrono>

#include <spdlog/spdlog.h>

#include "replication/replica.h"
#include "storage/document_store.h"

namespace bulwark::server {
namespace {
// How often the worker looks for pending shreds it has not been poked about
// (one left by a restart, or retried after an error).
constexpr auto kShredPollInterval = std::chrono::seconds(1);
}  // namespace

void ShredWorker::Start(storage::DocumentStore* store, replication::Replica* replica) {
  store_ = store;
  replica_ = replica;
  thread_ = std::thread([this] { Loop(); });
}

void ShredWorker::Poke() {
  {
    std::lock_guard lock(mu_);
    poked_ = true;
  }
  cv_.notify_one();
}

void ShredWorker::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void ShredWorker::set_before_shred(BeforeShredFn fn) {
  std::lock_guard lock(mu_);
  before_shred_ = std::move(fn);
}

std::string ShredWorker::last_error() const {
  std::lock_guard lock(mu_);
  return error_;
}

void ShredWorker::Loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, kShredPollInterval, [&] { return stop_ || poked_; });
      if (stop_) return;
      poked_ = false;
    }
    const int64_t purge_index = store_->max_pending_shred_index();
    if (purge_index < 0) continue;
    // The raft log must have dropped the purged commands first (the replica
    // compacts it as soon as the purge has applied).
    if (replica_ != nullptr && purge_index > 0 &&
        replica_->status().first_index <= static_cast<uint64_t>(purge_index)) {
      continue;
    }
    BeforeShredFn before;
    {
      std::lock_guard lock(mu_);
      before = before_shred_;
    }
    running_ = true;
    const auto started = std::chrono::steady_clock::now();
    Status s = Status::Ok();
    if (before) {
      auto purges = store_->PendingShreds();
      s = purges.ok() ? before(*purges) : purges.status();
    }
    if (s.ok()) s = store_->ShredFiles();
    running_ = false;
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    std::lock_guard lock(mu_);
    if (s.ok()) {
      error_.clear();
      spdlog::info("event=shred_done ms={} store_key_version={}", ms, store_->current_store_key_version());
    } else {
      error_ = s.ToString();
      spdlog::warn("event=shred_retry ms={} error=\"{}\"", ms, s.ToString());
    }
  }
}

}  // namespace bulwark::server
