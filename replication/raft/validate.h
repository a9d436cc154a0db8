#pragma once
// Checks on messages that arrive from the network, so that a malformed or
// hostile peer message is refused with a Status instead of tripping an
// assertion or corrupting the core's state. RawNode::Step calls
// ValidateMessage on every message; the core re-checks the few properties
// whose violation would abort it (EntriesFollow, ConfStateValid), because
// tests may drive Raft directly.
//
// Thread safety: pure functions.

#include <cstdint>

#include "common/status.h"
#include "replication/raft/types.h"

namespace bulwark::raft {

// OK, or InvalidArgument naming the first problem found in `m` as received
// by node `self` from the network. See docs/raft.md for the list of checks.
Status ValidateMessage(const Message& m, uint64_t self);

// Voter and learner ids are non-zero, distinct and disjoint, with at least
// one voter.
bool ConfStateValid(const ConfState& cs);

// A kApp's entries are numbered m.index + 1, m.index + 2, ..., with
// non-decreasing non-zero terms no lower than m.log_term and no higher than
// m.term (when m.term is set).
bool EntriesFollow(const Message& m);

}  // namespace bulwark::raft
