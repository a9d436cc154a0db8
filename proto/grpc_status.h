#pragma once
// The one mapping between Bulwark's Status codes and gRPC's, used by the
// server (answers), the client (reading them back) and the peer transport.
//
//   PreconditionFailed (an If-Match etag mismatch)  <-> ABORTED
//   TooLarge                                        <-> OUT_OF_RANGE
//   Corruption                                      <-> DATA_LOSS
//   IOError, Internal                               ->  INTERNAL
// CANCELLED reads back as Unavailable: a stopping server cancels the calls
// it had not started. Any other unknown code reads back as Internal.
//
// Pure functions; thread-safe.

#include <string>

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace bulwark {

grpc::Status ToGrpcStatus(const Status& s);
Status FromGrpcStatus(grpc::StatusCode code, std::string message);
Status FromGrpcStatus(const grpc::Status& s);

}  // namespace bulwark
