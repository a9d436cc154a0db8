#include "crypto/item_seal.h"

#include <sodium.h>

#include <array>
#include <cassert>
#include <cstring>

#include "common/coding.h"

namespace bulwark::crypto {
namespace {

constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
static_assert(kSealHeaderBytes == 1 + 4 + kNonceBytes);
static_assert(kSealOverheadBytes == kSealHeaderBytes + crypto_aead_xchacha20poly1305_ietf_ABYTES);

uint32_t LoadU32(const char* p) {
  std::string_view in(p, 4);
  uint32_t v = 0;
  GetFixed32(in, v);
  return v;
}

// The associated data: length-prefixed fields, so ("ab","c") and ("a","bc")
// differ. Built on the stack for the usual small address (this runs on every
// read and write); a long partition key falls back to the heap.
class AssociatedData {
 public:
  AssociatedData(uint32_t dek_version, const ItemAddress& a) {
    const size_t size = 1 + 4 + 12 + a.container_rid.size() + a.partition_key.size() + a.item_id.size();
    char* p = inline_.data();
    if (size > inline_.size()) {
      heap_.resize(size);
      p = heap_.data();
    }
    data_ = reinterpret_cast<const unsigned char*>(p);
    size_ = size;
    *p++ = static_cast<char>(kSealFormatV1);
    p = Put32(p, dek_version);
    for (std::string_view field : {a.container_rid, a.partition_key, a.item_id}) {
      p = Put32(p, static_cast<uint32_t>(field.size()));
      std::memcpy(p, field.data(), field.size());
      p += field.size();
    }
  }
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  static char* Put32(char* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) *p++ = static_cast<char>((v >> (8 * i)) & 0xff);
    return p;
  }
  std::array<char, 512> inline_;
  std::string heap_;
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace

std::string SealItem(const DataKey& dek, const ItemAddress& address, std::string_view plaintext) {
  assert(dek.key.size() == kDataKeyBytes);
  std::string out(kSealOverheadBytes + plaintext.size(), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = kSealFormatV1;
  for (int i = 0; i < 4; ++i) p[1 + i] = static_cast<unsigned char>((dek.version >> (8 * i)) & 0xff);
  randombytes_buf(p + 5, kNonceBytes);
  const AssociatedData ad(dek.version, address);
  unsigned long long ct_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(p + kSealHeaderBytes, &ct_len,
                                             reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(),
                                             ad.data(), ad.size(), nullptr, p + 5, dek.key.data());
  assert(ct_len + kSealHeaderBytes == out.size());
  return out;
}

Result<uint32_t> SealedKeyVersion(std::string_view sealed) {
  if (sealed.size() < kSealOverheadBytes) return Status::Corruption("sealed item is truncated");
  if (static_cast<uint8_t>(sealed[0]) != kSealFormatV1) {
    return Status::Corruption("sealed item has unknown format version " +
                              std::to_string(static_cast<uint8_t>(sealed[0])));
  }
  return LoadU32(sealed.data() + 1);
}

Result<std::string> OpenItem(const DataKey& dek, const ItemAddress& address, std::string_view sealed) {
  BULWARK_ASSIGN_OR_RETURN(uint32_t version, SealedKeyVersion(sealed));
  if (version != dek.version) {
    return Status::Internal("OpenItem called with DEK version " + std::to_string(dek.version) +
                            " for an item sealed with version " + std::to_string(version));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(sealed.data());
  const size_t ct_len = sealed.size() - kSealHeaderBytes;
  std::string out(ct_len - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  const AssociatedData ad(version, address);
  unsigned long long out_len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(out.data()), &out_len, nullptr,
                                                 p + kSealHeaderBytes, ct_len, ad.data(), ad.size(), p + 5,
                                                 dek.key.data()) != 0) {
    return Status::Corruption("sealed item failed authentication: its bytes were changed or it was moved");
  }
  return out;
}

}  // namespace bulwark::crypto
