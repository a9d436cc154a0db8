#include "replication/raft/storage.h"

#include <cassert>

namespace bulwark::raft {

namespace {
constexpr char kCompactedMessage[] = "raft: requested index is unavailable due to compaction";
}  // namespace

Status CompactedError() { return Status::NotFound(kCompactedMessage); }
bool IsCompacted(const Status& s) {
  return s.code() == Code::kNotFound && s.message() == kCompactedMessage;
}
Status SnapshotTemporarilyUnavailableError() {
  return Status::Unavailable("raft: snapshot is temporarily unavailable");
}

void LimitSize(std::vector<Entry>* ents, uint64_t max_size_bytes) {
  if (ents->empty()) return;
  uint64_t size = EntrySizeBytes((*ents)[0]);
  size_t limit = 1;
  for (; limit < ents->size(); ++limit) {
    size += EntrySizeBytes((*ents)[limit]);
    if (size > max_size_bytes) break;
  }
  ents->resize(limit);
}

MemoryStorage::MemoryStorage() { ents_.push_back(Entry{}); }

Status MemoryStorage::InitialState(HardState* hs, ConfState* cs) const {
  *hs = hard_state_;
  *cs = snapshot_.metadata.conf_state;
  return Status::Ok();
}

Result<std::vector<Entry>> MemoryStorage::Entries(uint64_t lo, uint64_t hi,
                                                  uint64_t max_size_bytes) const {
  uint64_t offset = ents_.front().index;
  if (lo <= offset) return CompactedError();
  assert(hi <= LastIndexInternal() + 1 && "entries out of bound");
  if (ents_.size() == 1) return CompactedError();  // only the dummy entry
  std::vector<Entry> out(ents_.begin() + static_cast<std::ptrdiff_t>(lo - offset),
                         ents_.begin() + static_cast<std::ptrdiff_t>(hi - offset));
  LimitSize(&out, max_size_bytes);
  return out;
}

Result<uint64_t> MemoryStorage::Term(uint64_t i) const {
  uint64_t offset = ents_.front().index;
  if (i < offset) return CompactedError();
  assert(i - offset < ents_.size() && "term of an index beyond the last");
  return ents_[i - offset].term;
}

uint64_t MemoryStorage::LastIndex() const { return LastIndexInternal(); }
uint64_t MemoryStorage::FirstIndex() const { return FirstIndexInternal(); }
Result<Snapshot> MemoryStorage::GetSnapshot() const { return snapshot_; }

Status MemoryStorage::ApplySnapshot(const Snapshot& snap) {
  if (snapshot_.metadata.index >= snap.metadata.index) {
    return Status::FailedPrecondition("raft: snapshot is out of date");
  }
  snapshot_ = snap;
  ents_.assign(1, Entry{snap.metadata.term, snap.metadata.index, EntryType::kNormal, ""});
  return Status::Ok();
}

Status MemoryStorage::CreateSnapshot(uint64_t i, const ConfState& cs, std::string data) {
  if (i <= snapshot_.metadata.index) {
    return Status::FailedPrecondition("raft: snapshot is out of date");
  }
  assert(i <= LastIndexInternal() && "snapshot index beyond the last index");
  uint64_t offset = ents_.front().index;
  snapshot_.metadata.index = i;
  snapshot_.metadata.term = ents_[i - offset].term;
  snapshot_.metadata.conf_state = cs;
  snapshot_.data = std::move(data);
  return Status::Ok();
}

Status MemoryStorage::Compact(uint64_t compact_index) {
  uint64_t offset = ents_.front().index;
  if (compact_index <= offset) return CompactedError();
  assert(compact_index <= LastIndexInternal() && "compact beyond the last index");
  uint64_t i = compact_index - offset;
  std::vector<Entry> kept;
  kept.reserve(ents_.size() - i);
  kept.push_back(Entry{ents_[i].term, ents_[i].index, EntryType::kNormal, ""});
  kept.insert(kept.end(), ents_.begin() + static_cast<std::ptrdiff_t>(i + 1), ents_.end());
  ents_ = std::move(kept);
  return Status::Ok();
}

Status MemoryStorage::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return Status::Ok();
  uint64_t first = FirstIndexInternal();
  uint64_t last = entries.back().index;
  if (last < first) return Status::Ok();  // all already compacted
  size_t skip = first > entries.front().index ? first - entries.front().index : 0;
  uint64_t offset = entries[skip].index - ents_.front().index;
  if (offset > ents_.size()) {
    return Status::Internal("raft: missing log entries before an append");
  }
  ents_.resize(offset);  // truncate any conflicting suffix
  ents_.insert(ents_.end(), entries.begin() + static_cast<std::ptrdiff_t>(skip), entries.end());
  return Status::Ok();
}

}  // namespace bulwark::raft
