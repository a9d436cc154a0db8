#include "crypto/item_seal.h"

#include <sodium.h>

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

// Length-prefixed fields, so ("ab","c") and ("a","bc") differ.
std::string AssociatedData(uint32_t dek_version, const ItemAddress& a) {
  std::string ad;
  ad.reserve(1 + 4 + 12 + a.container_rid.size() + a.partition_key.size() + a.item_id.size());
  ad.push_back(static_cast<char>(kSealFormatV1));
  PutFixed32(ad, dek_version);
  for (std::string_view field : {a.container_rid, a.partition_key, a.item_id}) {
    PutFixed32(ad, static_cast<uint32_t>(field.size()));
    ad.append(field);
  }
  return ad;
}

}  // namespace

std::string SealItem(const DataKey& dek, const ItemAddress& address, std::string_view plaintext) {
  assert(dek.key.size() == kDataKeyBytes);
  std::string out(kSealOverheadBytes + plaintext.size(), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = kSealFormatV1;
  for (int i = 0; i < 4; ++i) p[1 + i] = static_cast<unsigned char>((dek.version >> (8 * i)) & 0xff);
  randombytes_buf(p + 5, kNonceBytes);
  const std::string ad = AssociatedData(dek.version, address);
  unsigned long long ct_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(p + kSealHeaderBytes, &ct_len,
                                             reinterpret_cast<const unsigned char*>(plaintext.data()),
                                             plaintext.size(), reinterpret_cast<const unsigned char*>(ad.data()),
                                             ad.size(), nullptr, p + 5, dek.key.data());
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
  const std::string ad = AssociatedData(version, address);
  unsigned long long out_len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(out.data()), &out_len, nullptr,
                                                 p + kSealHeaderBytes, ct_len,
                                                 reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), p + 5,
                                                 dek.key.data()) != 0) {
    return Status::Corruption("sealed item failed authentication: its bytes were changed or it was moved");
  }
  return out;
}

}  // namespace bulwark::crypto
