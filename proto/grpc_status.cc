#include "proto/grpc_status.h"

namespace bulwark {
namespace {

grpc::StatusCode GrpcCode(Code code) {
  switch (code) {
    case Code::kOk:
      return grpc::StatusCode::OK;
    case Code::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case Code::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case Code::kAlreadyExists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case Code::kPreconditionFailed:
      return grpc::StatusCode::ABORTED;  // a failed test-and-set
    case Code::kTooLarge:
      return grpc::StatusCode::OUT_OF_RANGE;
    case Code::kFailedPrecondition:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case Code::kPermissionDenied:
      return grpc::StatusCode::PERMISSION_DENIED;
    case Code::kUnauthenticated:
      return grpc::StatusCode::UNAUTHENTICATED;
    case Code::kCorruption:
      return grpc::StatusCode::DATA_LOSS;
    case Code::kIOError:
      return grpc::StatusCode::INTERNAL;
    case Code::kUnavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case Code::kDeadlineExceeded:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case Code::kResourceExhausted:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case Code::kInternal:
      return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::UNKNOWN;
}

Code FromGrpcCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return Code::kOk;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return Code::kInvalidArgument;
    case grpc::StatusCode::NOT_FOUND:
      return Code::kNotFound;
    case grpc::StatusCode::ALREADY_EXISTS:
      return Code::kAlreadyExists;
    case grpc::StatusCode::ABORTED:
      return Code::kPreconditionFailed;
    case grpc::StatusCode::OUT_OF_RANGE:
      return Code::kTooLarge;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return Code::kFailedPrecondition;
    case grpc::StatusCode::PERMISSION_DENIED:
      return Code::kPermissionDenied;
    case grpc::StatusCode::UNAUTHENTICATED:
      return Code::kUnauthenticated;
    case grpc::StatusCode::DATA_LOSS:
      return Code::kCorruption;
    case grpc::StatusCode::UNAVAILABLE:
      return Code::kUnavailable;
    // The server cancelled a call it had not started (it was stopping).
    case grpc::StatusCode::CANCELLED:
      return Code::kUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Code::kDeadlineExceeded;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Code::kResourceExhausted;
    default:
      return Code::kInternal;
  }
}

}  // namespace

grpc::Status ToGrpcStatus(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(GrpcCode(s.code()), s.message());
}

Status FromGrpcStatus(grpc::StatusCode code, std::string message) {
  const Code c = FromGrpcCode(code);
  if (c == Code::kInternal && message.empty()) message = "gRPC error " + std::to_string(static_cast<int>(code));
  return Status::FromCode(c, std::move(message));
}

Status FromGrpcStatus(const grpc::Status& s) { return FromGrpcStatus(s.error_code(), s.error_message()); }

}  // namespace bulwark
