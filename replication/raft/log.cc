#include "replication/raft/log.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>

namespace bulwark::raft {

// ---- Unstable ----

std::optional<uint64_t> Unstable::MaybeFirstIndex() const {
  if (snapshot) return snapshot->metadata.index + 1;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeLastIndex() const {
  if (!entries.empty()) return offset + entries.size() - 1;
  if (snapshot) return snapshot->metadata.index;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeTerm(uint64_t i) const {
  if (i < offset) {
    if (snapshot && snapshot->metadata.index == i) return snapshot->metadata.term;
    return std::nullopt;
  }
  std::optional<uint64_t> last = MaybeLastIndex();
  if (!last || i > *last) return std::nullopt;
  return entries[i - offset].term;
}

void Unstable::StableTo(uint64_t i, uint64_t t) {
  std::optional<uint64_t> gt = MaybeTerm(i);
  if (!gt) return;
  // Only drop entries if the term still matches: a newer leader may have
  // replaced them while the write was in flight.
  if (*gt == t && i >= offset) {
    entries.erase(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(i + 1 - offset));
    offset = i + 1;
  }
}

void Unstable::StableSnapTo(uint64_t i) {
  if (snapshot && snapshot->metadata.index == i) snapshot.reset();
}

void Unstable::Restore(const Snapshot& s) {
  offset = s.metadata.index + 1;
  entries.clear();
  snapshot = s;
}

void Unstable::TruncateAndAppend(const std::vector<Entry>& ents) {
  assert(!ents.empty());
  uint64_t after = ents.front().index;
  if (after == offset + entries.size()) {
    entries.insert(entries.end(), ents.begin(), ents.end());
  } else if (after <= offset) {
    // Replaces the whole unstable part; the log resumes at `after`.
    offset = after;
    entries = ents;
  } else {
    entries.resize(after - offset);
    entries.insert(entries.end(), ents.begin(), ents.end());
  }
}

std::vector<Entry> Unstable::Slice(uint64_t lo, uint64_t hi) const {
  assert(lo <= hi && lo >= offset && hi <= offset + entries.size());
  return std::vector<Entry>(entries.begin() + static_cast<std::ptrdiff_t>(lo - offset),
                            entries.begin() + static_cast<std::ptrdiff_t>(hi - offset));
}

// ---- RaftLog ----

RaftLog::RaftLog(const Storage* storage, uint64_t max_applying_size_bytes)
    : storage_(storage), max_applying_size_bytes_(max_applying_size_bytes) {
  assert(storage_ != nullptr);
  uint64_t first = storage_->FirstIndex();
  uint64_t last = storage_->LastIndex();
  unstable_.offset = last + 1;
  // Start from the snapshot point: everything before it is applied.
  committed_ = first - 1;
  applied_ = first - 1;
}

std::optional<uint64_t> RaftLog::MaybeAppend(uint64_t index, uint64_t log_term,
                                             uint64_t committed, const std::vector<Entry>& ents) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  uint64_t last_new = index + ents.size();
  uint64_t ci = FindConflict(ents);
  if (ci != 0) {
    // A committed entry never conflicts: that would break log matching.
    assert(ci > committed_ && "entry conflicts with a committed entry");
    std::vector<Entry> rest(ents.begin() + static_cast<std::ptrdiff_t>(ci - (index + 1)), ents.end());
    Append(rest);
  }
  CommitTo(std::min(committed, last_new));
  return last_new;
}

uint64_t RaftLog::Append(const std::vector<Entry>& ents) {
  if (ents.empty()) return LastIndex();
  assert(ents.front().index - 1 >= committed_ && "appending below the commit index");
  unstable_.TruncateAndAppend(ents);
  return LastIndex();
}

uint64_t RaftLog::FindConflict(const std::vector<Entry>& ents) const {
  for (const Entry& e : ents) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return 0;
}

std::pair<uint64_t, uint64_t> RaftLog::FindConflictByTerm(uint64_t index, uint64_t term) const {
  for (; index > 0; --index) {
    Result<uint64_t> t = Term(index);
    if (!t.ok()) return {index, 0};  // compacted: let the leader decide
    if (*t <= term) return {index, *t};
  }
  return {0, 0};
}

std::vector<Entry> RaftLog::NextEntries() const {
  uint64_t off = std::max(applied_ + 1, FirstIndex());
  if (committed_ + 1 <= off) return {};
  Result<std::vector<Entry>> ents = Slice(off, committed_ + 1, max_applying_size_bytes_);
  assert(ents.ok() && "unexpected error reading committed entries");
  return std::move(ents).value();
}

bool RaftLog::HasNextEntries() const {
  return committed_ + 1 > std::max(applied_ + 1, FirstIndex());
}

Result<Snapshot> RaftLog::GetSnapshot() const {
  if (unstable_.snapshot) return *unstable_.snapshot;
  return storage_->GetSnapshot();
}

uint64_t RaftLog::FirstIndex() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  return storage_->FirstIndex();
}

uint64_t RaftLog::LastIndex() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  return storage_->LastIndex();
}

uint64_t RaftLog::LastTerm() const {
  Result<uint64_t> t = Term(LastIndex());
  assert(t.ok() && "unexpected error reading the last term");
  return *t;
}

Result<uint64_t> RaftLog::Term(uint64_t i) const {
  // The valid range is [index of the dummy entry, last index].
  uint64_t dummy = FirstIndex() - 1;
  if (i < dummy) return CompactedError();
  if (i > LastIndex()) return uint64_t{0};
  if (auto t = unstable_.MaybeTerm(i)) return *t;
  Result<uint64_t> t = storage_->Term(i);
  if (t.ok() || IsCompacted(t.status())) return t;
  assert(false && "unexpected storage error reading a term");
  std::abort();
}

uint64_t RaftLog::ZeroTermOnOutOfBounds(uint64_t i) const {
  Result<uint64_t> t = Term(i);
  return t.ok() ? *t : 0;
}

bool RaftLog::MatchTerm(uint64_t i, uint64_t t) const {
  Result<uint64_t> got = Term(i);
  return got.ok() && *got == t;
}

Result<std::vector<Entry>> RaftLog::Entries(uint64_t i, uint64_t max_size_bytes) const {
  if (i > LastIndex()) return std::vector<Entry>{};
  return Slice(i, LastIndex() + 1, max_size_bytes);
}

std::vector<Entry> RaftLog::AllEntries() const {
  Result<std::vector<Entry>> ents = Entries(FirstIndex(), kNoLimit);
  assert(ents.ok() && "reading from FirstIndex() cannot hit compaction");
  return std::move(ents).value();
}

bool RaftLog::IsUpToDate(uint64_t last_index, uint64_t term) const {
  return term > LastTerm() || (term == LastTerm() && last_index >= LastIndex());
}

bool RaftLog::MaybeCommit(uint64_t max_index, uint64_t term) {
  if (max_index > committed_ && ZeroTermOnOutOfBounds(max_index) == term) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::CommitTo(uint64_t to_commit) {
  if (committed_ < to_commit) {
    assert(to_commit <= LastIndex() && "commit index beyond the last index");
    committed_ = to_commit;
  }
}

void RaftLog::AppliedTo(uint64_t i) {
  if (i == 0) return;
  assert(committed_ >= i && i >= applied_ && "applied index out of range");
  applied_ = i;
}

void RaftLog::Restore(const Snapshot& s) {
  committed_ = s.metadata.index;
  unstable_.Restore(s);
}

Status RaftLog::CheckOutOfBounds(uint64_t lo, uint64_t hi) const {
  assert(lo <= hi && "invalid slice");
  uint64_t fi = FirstIndex();
  if (lo < fi) return CompactedError();
  assert(hi <= LastIndex() + 1 && "slice out of bound");
  (void)hi;
  return Status::Ok();
}

Result<std::vector<Entry>> RaftLog::Slice(uint64_t lo, uint64_t hi, uint64_t max_size_bytes) const {
  BULWARK_RETURN_IF_ERROR(CheckOutOfBounds(lo, hi));
  if (lo == hi) return std::vector<Entry>{};
  std::vector<Entry> out;
  if (lo < unstable_.offset) {
    Result<std::vector<Entry>> stored =
        storage_->Entries(lo, std::min(hi, unstable_.offset), max_size_bytes);
    if (!stored.ok()) return stored.status();
    out = std::move(stored).value();
    // Storage stopped early because of the size limit: return what we have.
    if (out.size() < std::min(hi, unstable_.offset) - lo) return out;
  }
  if (hi > unstable_.offset) {
    std::vector<Entry> un = unstable_.Slice(std::max(lo, unstable_.offset), hi);
    out.insert(out.end(), un.begin(), un.end());
  }
  LimitSize(&out, max_size_bytes);
  return out;
}

}  // namespace bulwark::raft
