#pragma once
// Conversion between raft::Message and its wire form (bulwark.v1.RaftMessage).
//
// Decoding only checks structure: every enum value must be one Bulwark knows,
// or the message is rejected with InvalidArgument. Whether the message makes
// sense (terms, indexes, who may send it) is the Raft core's judgement.
//
// Thread safety: pure functions.

#include "bulwark/v1/peer.pb.h"
#include "common/status.h"
#include "replication/raft/types.h"

namespace bulwark::replication {

// Overwrites *out. Total: every raft::Message has a wire form.
void EncodeMessage(const raft::Message& message, v1::RaftMessage* out);

// InvalidArgument for an unknown message or entry type.
Result<raft::Message> DecodeMessage(const v1::RaftMessage& wire);

// A cheap upper-bound-ish estimate of the encoded size, used to cut batches
// without encoding twice.
size_t ApproximateWireBytes(const raft::Message& message);

}  // namespace bulwark::replication
