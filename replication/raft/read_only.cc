#include "replication/raft/read_only.h"

#include <cassert>

namespace bulwark::raft {

void ReadOnly::AddRequest(uint64_t index, const Message& m) {
  assert(!m.context.empty() && "a read-index request needs a context");
  if (pending_.count(m.context) != 0) return;
  pending_.emplace(m.context, ReadIndexStatus{m, index, {}});
  queue_.push_back(m.context);
}

const std::set<uint64_t>* ReadOnly::RecvAck(uint64_t id, const std::string& ctx) {
  auto it = pending_.find(ctx);
  if (it == pending_.end()) return nullptr;
  it->second.acks.insert(id);
  return &it->second.acks;
}

std::vector<ReadIndexStatus> ReadOnly::Advance(const std::string& ctx) {
  std::vector<ReadIndexStatus> out;
  if (pending_.count(ctx) == 0) return out;
  // Bounded by queue_.size(): each iteration pops one request.
  while (!queue_.empty()) {
    std::string front = queue_.front();
    queue_.pop_front();
    auto it = pending_.find(front);
    assert(it != pending_.end() && "read queue and pending map out of sync");
    out.push_back(std::move(it->second));
    pending_.erase(it);
    if (front == ctx) break;
  }
  return out;
}

std::string ReadOnly::LastPendingRequestCtx() const {
  return queue_.empty() ? std::string() : queue_.back();
}

}  // namespace bulwark::raft
