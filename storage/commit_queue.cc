#include "storage/commit_queue.h"

#include <cassert>

namespace bulwark::storage {

uint64_t CommitQueue::last_lsn() const {
  std::lock_guard lock(mu_);
  return last_lsn_;
}

void CommitQueue::ResetLastLsn(uint64_t lsn) {
  std::lock_guard lock(mu_);
  last_lsn_ = lsn;
}

std::vector<CommitQueue::Writer*> CommitQueue::BuildGroup(rocksdb::WriteBatch& batch, bool& sync) {
  std::vector<Writer*> group;
  size_t bytes = 0;
  for (Writer* w : queue_) {
    if (!group.empty() && bytes > kMaxCommitGroupBytes) break;
    group.push_back(w);
    sync = sync || w->sync;
    for (const Mutation& m : *w->mutations) {
      switch (m.kind) {
        case Mutation::Kind::kPut:
          batch.Put(m.cf, m.key, m.value);
          break;
        case Mutation::Kind::kDelete:
          batch.Delete(m.cf, m.key);
          break;
        case Mutation::Kind::kDeleteRange:
          batch.DeleteRange(m.cf, m.key, m.value);
          break;
      }
      bytes += m.key.size() + m.value.size();
    }
    if (w->change != nullptr) {
      w->lsn = ++last_lsn_;
      w->change->lsn = w->lsn;
      const std::string encoded = w->change->Encode();
      batch.Put(changelog_, LsnKey(w->lsn), encoded);
      bytes += encoded.size();
    }
  }
  return group;
}

Result<uint64_t> CommitQueue::Commit(std::vector<Mutation> mutations, ChangeRecord* change, bool force_sync) {
  Writer self;
  self.mutations = &mutations;
  self.change = change;
  self.sync = force_sync;

  std::unique_lock lock(mu_);
  if (!failed_.ok()) return failed_;
  queue_.push_back(&self);
  self.cv.wait(lock, [&] { return self.done || queue_.front() == &self; });
  if (self.done) {
    if (!self.status.ok()) return self.status;
    return self.lsn;
  }
  if (!failed_.ok()) {  // an earlier group failed while this writer waited
    queue_.pop_front();
    if (!queue_.empty()) queue_.front()->cv.notify_one();
    return failed_;
  }

  // This writer leads: it writes everything queued so far as one batch.
  const uint64_t lsn_before = last_lsn_;
  rocksdb::WriteBatch batch;
  bool sync = sync_;
  std::vector<Writer*> group = BuildGroup(batch, sync);
  lock.unlock();

  rocksdb::WriteOptions options;
  options.sync = sync;
  const rocksdb::Status s = db_->Write(options, &batch);

  lock.lock();
  Status status;
  if (!s.ok()) {
    status = Status::IOError("write failed: " + s.ToString());
    last_lsn_ = lsn_before;  // nothing of the group counts as committed
    failed_ = Status::Unavailable("the store stopped taking writes after an I/O error; restart the node");
  }
  for (Writer* w : group) {
    assert(queue_.front() == w);
    queue_.pop_front();
    w->status = status;
    w->done = true;
    if (w != &self) w->cv.notify_one();
  }
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  if (!status.ok()) return status;
  return self.lsn;
}

}  // namespace bulwark::storage
