#pragma once
// Secret memory and libsodium start-up.
//
// SecretBytes owns a buffer from sodium_malloc: guarded pages, locked out of
// swap and core dumps where the OS allows, zeroed by sodium_free on release.
// It has no operator<< and no ToString on purpose: a secret never prints.
//
// Thread safety: InitSodium is safe to call from any thread, any number of
// times. A SecretBytes is a value: distinct objects on distinct threads are
// fine; one object shared between threads must be read-only.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bulwark::crypto {

// Initialises libsodium once per process. Every public entry point of this
// library calls it, so callers only need it to fail early.
Status InitSodium();

class SecretBytes {
 public:
  SecretBytes() = default;
  // Allocates `size` zeroed bytes. Aborts if sodium_malloc fails: running
  // out of locked memory for keys is not a state worth limping on in.
  explicit SecretBytes(size_t size);
  // Copies `data` into secret memory. The caller should wipe its own copy.
  static SecretBytes CopyFrom(std::string_view data);
  // `size` random bytes from the OS generator.
  static SecretBytes Random(size_t size);

  ~SecretBytes();
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  SecretBytes Clone() const { return CopyFrom(view()); }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }

  // Constant-time comparison.
  bool Equals(const SecretBytes& other) const;

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Base64 (standard alphabet, with padding) and hex helpers on libsodium.
std::string Base64Encode(std::string_view bytes);
// Fails with InvalidArgument on a malformed input; the message never echoes it.
Result<std::string> Base64Decode(std::string_view text);
// Decodes straight into secret memory so the key never sits in a std::string.
Result<SecretBytes> Base64DecodeSecret(std::string_view text);
// Base64url (RFC 4648 section 5) without padding, as JWTs and resource tokens
// carry it. Decoding is strict: '=', whitespace, the standard alphabet's '+'
// and '/', and non-zero trailing bits are all refused, so every byte string
// has exactly one accepted encoding.
std::string Base64UrlEncode(std::string_view bytes);
Result<std::string> Base64UrlDecode(std::string_view text);
std::string HexEncode(std::string_view bytes);
// InvalidArgument for anything but an even number of hex digits.
Result<std::string> HexDecode(std::string_view hex);

// Fresh random bytes from the OS generator (nonces, ids).
std::string RandomBytes(size_t size);

}  // namespace bulwark::crypto
