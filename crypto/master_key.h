#pragma once
// The master key (key-encryption key) and the providers that load it.
//
// Bulwark never stores the master key. It comes from a provider named by a URI:
//   file:PATH          32 raw bytes, or base64 of 32 bytes; the file must not
//                      be readable by group or others.
//   env:VAR            base64 of 32 bytes in an environment variable.
//   command:PATH ARGS  an external key-management helper, run without a shell,
//                      that prints the key (raw or base64) on stdout and exits
//                      0 within the timeout.
// Errors name the provider and what is wrong, never the key or the helper's output.
//
// Thread safety: a MasterKey is immutable after construction; Wrap/Unwrap may
// be called from any number of threads.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "crypto/secret.h"

namespace bulwark::crypto {

constexpr size_t kMasterKeyBytes = 32;
// Upper bound on what a provider may hand us; a key is far smaller.
constexpr size_t kMaxKeyMaterialBytes = 4096;
constexpr std::chrono::milliseconds kDefaultKeyCommandTimeout{10'000};

class MasterKey {
 public:
  // Takes ownership of exactly kMasterKeyBytes of key material.
  static Result<MasterKey> FromBytes(SecretBytes key);
  // A fresh random key: for tests and first-run set-up.
  static MasterKey Generate();

  // A short public fingerprint (16 hex chars): a keyed hash of a constant, so
  // it identifies the key without revealing anything about it.
  const std::string& id() const { return id_; }

  // Seals `secret` (e.g. a data key) under this key. `context` is bound as
  // associated data: the wrapped bytes open only with the same context.
  std::string Wrap(std::string_view secret, std::string_view context) const;
  // Corruption if the bytes were changed or `context` differs, or if they were
  // wrapped by another master key.
  Result<SecretBytes> Unwrap(std::string_view wrapped, std::string_view context) const;

  // A second handle on the same key (bulwarkd's backup worker; tests).
  MasterKey Clone() const;

 private:
  MasterKey(SecretBytes key, std::string id) : key_(std::move(key)), id_(std::move(id)) {}
  SecretBytes key_;
  std::string id_;
};

struct KeyProviderOptions {
  std::chrono::milliseconds command_timeout = kDefaultKeyCommandTimeout;
};

// Loads the master key named by `uri` (see the top of this file).
// InvalidArgument for a malformed URI or key material of the wrong size;
// PermissionDenied for a key file open to group/others; NotFound for a
// missing file or variable; DeadlineExceeded or Unavailable for a helper
// that hangs or fails.
Result<MasterKey> LoadMasterKey(std::string_view uri, const KeyProviderOptions& options = {});

// Parses key material as 32 raw bytes or as base64 (surrounding whitespace
// ignored) of 32 bytes. `source` names where it came from, for errors.
Result<SecretBytes> ParseKeyMaterial(std::string_view material, std::string_view source);

}  // namespace bulwark::crypto
