#pragma once
// Status and Result<T>: Bulwark's error values.
//
// Errors are values, checked at every call; exceptions never cross a module
// edge. An OK Status holds no allocation. Messages are for humans and must
// never contain secrets (keys, tokens, document bodies).
//
// Thread safety: values; distinct objects may be used from distinct threads.

#include <cassert>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace bulwark {

// The kinds of failure a caller can act on. Loosely the gRPC codes, so the
// server edge maps them one to one; the comment says what each means here.
enum class Code : int {
  kOk = 0,
  kInvalidArgument,     // bad input from the caller (malformed JSON, bad id, ...)
  kNotFound,            // the resource does not exist
  kAlreadyExists,       // create of something that exists (HTTP 409)
  kPreconditionFailed,  // an If-Match etag did not match (HTTP 412)
  kTooLarge,            // an item or message over its named limit (HTTP 413)
  kFailedPrecondition,  // the system is not in a state to do this (wrong master key, ...)
  kPermissionDenied,    // the caller may not do this
  kUnauthenticated,     // the caller could not be identified
  kCorruption,          // stored bytes failed authentication or decoding
  kIOError,             // the operating system or disk failed
  kUnavailable,         // try again later, maybe elsewhere
  kDeadlineExceeded,    // a bounded wait ran out
  kResourceExhausted,   // a queue or quota is full
  kInternal,            // a bug: an invariant did not hold
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return {Code::kInvalidArgument, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
  static Status AlreadyExists(std::string msg) { return {Code::kAlreadyExists, std::move(msg)}; }
  static Status PreconditionFailed(std::string msg) { return {Code::kPreconditionFailed, std::move(msg)}; }
  static Status TooLarge(std::string msg) { return {Code::kTooLarge, std::move(msg)}; }
  static Status FailedPrecondition(std::string msg) { return {Code::kFailedPrecondition, std::move(msg)}; }
  static Status PermissionDenied(std::string msg) { return {Code::kPermissionDenied, std::move(msg)}; }
  static Status Unauthenticated(std::string msg) { return {Code::kUnauthenticated, std::move(msg)}; }
  static Status Corruption(std::string msg) { return {Code::kCorruption, std::move(msg)}; }
  static Status IOError(std::string msg) { return {Code::kIOError, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {Code::kUnavailable, std::move(msg)}; }
  static Status DeadlineExceeded(std::string msg) { return {Code::kDeadlineExceeded, std::move(msg)}; }
  static Status ResourceExhausted(std::string msg) { return {Code::kResourceExhausted, std::move(msg)}; }
  static Status Internal(std::string msg) { return {Code::kInternal, std::move(msg)}; }
  // For a code read back from storage or the wire: OK for kOk, Corruption
  // for a value outside the enum.
  static Status FromCode(Code code, std::string msg) {
    if (code == Code::kOk) return Ok();
    if (static_cast<int>(code) < 0 || code > Code::kInternal) return Corruption("unknown status code");
    return {code, std::move(msg)};
  }

  bool ok() const { return state_ == nullptr; }
  Code code() const { return state_ ? state_->code : Code::kOk; }
  const std::string& message() const {
    static const std::string kEmpty;
    return state_ ? state_->message : kEmpty;
  }
  // "NotFound: container 'dbs/a/colls/b' does not exist"
  std::string ToString() const;

  // Adds context in front of the message, keeping the code.
  Status WithContext(std::string_view context) const {
    if (ok()) return *this;
    return Status(code(), std::string(context) + ": " + message());
  }

  Status(const Status& other) : state_(other.state_ ? std::make_unique<State>(*other.state_) : nullptr) {}
  Status& operator=(const Status& other) {
    if (this != &other) state_ = other.state_ ? std::make_unique<State>(*other.state_) : nullptr;
    return *this;
  }
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

 private:
  struct State {
    Code code;
    std::string message;
  };
  Status(Code code, std::string msg) : state_(std::make_unique<State>(State{code, std::move(msg)})) {
    assert(code != Code::kOk);
  }
  std::unique_ptr<State> state_;  // null means OK: success never allocates
};

inline std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "OK";
    case Code::kInvalidArgument:
      return "InvalidArgument";
    case Code::kNotFound:
      return "NotFound";
    case Code::kAlreadyExists:
      return "AlreadyExists";
    case Code::kPreconditionFailed:
      return "PreconditionFailed";
    case Code::kTooLarge:
      return "TooLarge";
    case Code::kFailedPrecondition:
      return "FailedPrecondition";
    case Code::kPermissionDenied:
      return "PermissionDenied";
    case Code::kUnauthenticated:
      return "Unauthenticated";
    case Code::kCorruption:
      return "Corruption";
    case Code::kIOError:
      return "IOError";
    case Code::kUnavailable:
      return "Unavailable";
    case Code::kDeadlineExceeded:
      return "DeadlineExceeded";
    case Code::kResourceExhausted:
      return "ResourceExhausted";
    case Code::kInternal:
      return "Internal";
  }
  return "Unknown";
}

inline std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(CodeName(code()));
  out += ": ";
  out += message();
  return out;
}

// Result<T>: a T or a non-OK Status. Constructing a Result from an OK Status
// is a programmer's error (asserted).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace bulwark

// Propagation helpers, in the LevelDB manner: `BULWARK_RETURN_IF_ERROR(s);`.
#define BULWARK_RETURN_IF_ERROR(expr)        \
  do {                                       \
    ::bulwark::Status _bw_status = (expr);   \
    if (!_bw_status.ok()) return _bw_status; \
  } while (0)

#define BULWARK_CONCAT_INNER(a, b) a##b
#define BULWARK_CONCAT(a, b) BULWARK_CONCAT_INNER(a, b)
// `BULWARK_ASSIGN_OR_RETURN(auto x, Foo());`
#define BULWARK_ASSIGN_OR_RETURN(lhs, expr)                                                               \
  auto BULWARK_CONCAT(_bw_result_, __LINE__) = (expr);                                                    \
  if (!BULWARK_CONCAT(_bw_result_, __LINE__).ok()) return BULWARK_CONCAT(_bw_result_, __LINE__).status(); \
  lhs = std::move(BULWARK_CONCAT(_bw_result_, __LINE__)).value()
