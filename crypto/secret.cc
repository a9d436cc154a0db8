#include "crypto/secret.h"

#include <sodium.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace bulwark::crypto {

Status InitSodium() {
  static std::once_flag once;
  static int result = -1;
  std::call_once(once, [] { result = sodium_init(); });
  // sodium_init returns 1 when already initialised by someone else: fine.
  if (result < 0) return Status::Internal("libsodium failed to initialise");
  return Status::Ok();
}

SecretBytes::SecretBytes(size_t size) : size_(size) {
  if (size == 0) return;
  if (!InitSodium().ok()) std::abort();
  data_ = static_cast<uint8_t*>(sodium_malloc(size));
  if (data_ == nullptr) std::abort();
  sodium_memzero(data_, size);
}

SecretBytes SecretBytes::CopyFrom(std::string_view data) {
  SecretBytes out(data.size());
  if (!data.empty()) std::memcpy(out.data_, data.data(), data.size());
  return out;
}

SecretBytes SecretBytes::Random(size_t size) {
  SecretBytes out(size);
  if (size > 0) randombytes_buf(out.data_, size);
  return out;
}

SecretBytes::~SecretBytes() {
  if (data_ != nullptr) sodium_free(data_);  // zeroes before freeing
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) sodium_free(data_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

bool SecretBytes::Equals(const SecretBytes& other) const {
  if (size_ != other.size_) return false;
  if (size_ == 0) return true;
  return sodium_memcmp(data_, other.data_, size_) == 0;
}

namespace {
std::string EncodeVariant(std::string_view bytes, int variant) {
  (void)InitSodium();
  const size_t encoded_len = sodium_base64_encoded_len(bytes.size(), variant);
  std::string out(encoded_len, '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    variant);
  out.resize(encoded_len - 1);  // drop the terminating NUL
  return out;
}

// Decodes into `out` (capacity out_cap); returns the decoded length or -1.
// Anything after the last decodable character (libsodium stops there) is a
// failure, so a trailing '=' in a no-padding variant is refused.
long DecodeInto(std::string_view text, unsigned char* out, size_t out_cap,
                int variant = sodium_base64_VARIANT_ORIGINAL) {
  // libsodium 1.0.18 reads the text as signed chars, and its constant-time
  // alphabet check then takes every byte >= 0x80 for some base64 digit: a
  // token would have many spellings. No base64 alphabet has such a byte.
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return -1;
  }
  size_t bin_len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out, out_cap, text.data(), text.size(), nullptr, &bin_len, &end, variant) != 0 ||
      end != text.data() + text.size()) {
    return -1;
  }
  return static_cast<long>(bin_len);
}
}  // namespace

std::string Base64Encode(std::string_view bytes) { return EncodeVariant(bytes, sodium_base64_VARIANT_ORIGINAL); }

std::string Base64UrlEncode(std::string_view bytes) {
  return EncodeVariant(bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

Result<std::string> Base64UrlDecode(std::string_view text) {
  (void)InitSodium();
  std::string out(text.size() / 4 * 3 + 3, '\0');
  const long n = DecodeInto(text, reinterpret_cast<unsigned char*>(out.data()), out.size(),
                            sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  if (n < 0) return Status::InvalidArgument("malformed base64url");
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  (void)InitSodium();
  std::string out(text.size() / 4 * 3 + 3, '\0');
  const long n = DecodeInto(text, reinterpret_cast<unsigned char*>(out.data()), out.size());
  if (n < 0) return Status::InvalidArgument("malformed base64");
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<SecretBytes> Base64DecodeSecret(std::string_view text) {
  (void)InitSodium();
  SecretBytes scratch(text.size() / 4 * 3 + 3);
  const long n = DecodeInto(text, scratch.data(), scratch.size());
  if (n < 0) return Status::InvalidArgument("malformed base64");
  return SecretBytes::CopyFrom(scratch.view().substr(0, static_cast<size_t>(n)));
}

std::string HexEncode(std::string_view bytes) {
  (void)InitSodium();
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  out.resize(bytes.size() * 2);
  return out;
}

Result<std::string> HexDecode(std::string_view hex) {
  (void)InitSodium();
  if (hex.size() % 2 != 0) return Status::InvalidArgument("malformed hex");
  std::string out(hex.size() / 2, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), hex.data(), hex.size(), nullptr, &len,
                     &end) != 0 ||
      end != hex.data() + hex.size()) {
    return Status::InvalidArgument("malformed hex");
  }
  out.resize(len);
  return out;
}

std::string RandomBytes(size_t size) {
  (void)InitSodium();
  std::string out(size, '\0');
  randombytes_buf(out.data(), size);
  return out;
}

}  // namespace bulwark::crypto
