#pragma once
// ReadOnly: the leader's queue of ReadIndex requests waiting for a quorum of
// heartbeat acknowledgements (the "safe" read-index protocol, Raft thesis
// section 6.4).
//
// Bounded: at most max_pending_reads requests wait at once; more are refused.
// Thread safety: not thread-safe; owned by the core.

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "replication/raft/types.h"

namespace bulwark::raft {

enum class ReadOnlyOption : uint8_t {
  kSafe,        // confirm leadership with a heartbeat round per read batch
  kLeaseBased,  // trust the leader lease; requires check_quorum (validated)
};

struct ReadIndexStatus {
  Message req;     // the original request (from == local id or a follower)
  uint64_t index;  // the commit index when the request arrived
  std::set<uint64_t> acks;
};

class ReadOnly {
 public:
  explicit ReadOnly(size_t max_pending_reads) : max_pending_reads_(max_pending_reads) {}

  bool Full() const { return queue_.size() >= max_pending_reads_; }
  // Adds a request under its context; a duplicate context is ignored.
  void AddRequest(uint64_t index, const Message& m);
  // Records an ack for the context; returns the ack set, or nullptr if the
  // context is unknown.
  const std::set<uint64_t>* RecvAck(uint64_t id, const std::string& ctx);
  // Pops every request up to and including ctx, in arrival order.
  std::vector<ReadIndexStatus> Advance(const std::string& ctx);
  // The context of the newest pending request, or "" if none.
  std::string LastPendingRequestCtx() const;
  size_t PendingCount() const { return queue_.size(); }
  // Pending contexts, oldest first.
  const std::deque<std::string>& PendingContexts() const { return queue_; }
  // The acks recorded for a pending context, or nullptr if it is unknown.
  const std::set<uint64_t>* Acks(const std::string& ctx) const {
    auto it = pending_.find(ctx);
    return it == pending_.end() ? nullptr : &it->second.acks;
  }
  void Reset() {
    pending_.clear();
    queue_.clear();
  }

 private:
  size_t max_pending_reads_;
  std::map<std::string, ReadIndexStatus> pending_;
  std::deque<std::string> queue_;
};

}  // namespace bulwark::raft
