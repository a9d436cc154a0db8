#include "crypto/page_encryption.h"

#include <sodium.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <mutex>

#include "common/coding.h"

namespace bulwark::crypto {
namespace {

constexpr char kMagic[8] = {'B', 'W', 'P', 'A', 'G', 'E', 0x00, 0x01};
constexpr uint32_t kPrefixFormatV1 = 1;
constexpr size_t kHeaderBytes = 16;  // magic, format, store-key version: the AD
constexpr size_t kWrapNonceOffset = kHeaderBytes;
constexpr size_t kWrappedOffset = kWrapNonceOffset + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kFileKeyBytes = crypto_stream_xchacha20_KEYBYTES;
constexpr size_t kFileNonceBytes = crypto_stream_xchacha20_NONCEBYTES;
constexpr size_t kWrappedBytes = kFileKeyBytes + kFileNonceBytes + crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kBlockBytes = 64;  // XChaCha20's block: the counter's unit
static_assert(kWrappedOffset + kWrappedBytes <= kPagePrefixBytes);

uint32_t LoadU32(const char* p) {
  std::string_view in(p, 4);
  uint32_t v = 0;
  GetFixed32(in, v);
  return v;
}

// One file's key and nonce; zeroed when the file is closed. Not mlocked: there
// is one per open file, and locked memory is a scarce resource.
class XChaChaFileStream : public rocksdb::BlockAccessCipherStream {
 public:
  XChaChaFileStream(const unsigned char* key, const unsigned char* nonce) {
    std::memcpy(key_, key, kFileKeyBytes);
    std::memcpy(nonce_, nonce, kFileNonceBytes);
  }
  ~XChaChaFileStream() override {
    sodium_memzero(key_, sizeof(key_));
    sodium_memzero(nonce_, sizeof(nonce_));
  }
  size_t BlockSize() override { return kBlockBytes; }
  // XOR with the keystream is its own inverse.
  rocksdb::Status Encrypt(uint64_t offset, char* data, size_t size) override { return Xor(offset, data, size); }
  rocksdb::Status Decrypt(uint64_t offset, char* data, size_t size) override { return Xor(offset, data, size); }

 protected:
  void AllocateScratch(std::string&) override {}
  rocksdb::Status EncryptBlock(uint64_t block, char* data, char*) override {
    return Xor(block * kBlockBytes, data, kBlockBytes);
  }
  rocksdb::Status DecryptBlock(uint64_t block, char* data, char*) override {
    return Xor(block * kBlockBytes, data, kBlockBytes);
  }

 private:
  rocksdb::Status Xor(uint64_t offset, char* data, size_t size) {
    auto* p = reinterpret_cast<unsigned char*>(data);
    uint64_t block = offset / kBlockBytes;
    const size_t skip = offset % kBlockBytes;
    if (skip != 0 && size > 0) {  // a write or read that starts mid-block
      unsigned char stream[kBlockBytes] = {};
      crypto_stream_xchacha20_xor_ic(stream, stream, kBlockBytes, nonce_, block, key_);
      const size_t take = std::min(kBlockBytes - skip, size);
      for (size_t i = 0; i < take; ++i) p[i] ^= stream[skip + i];
      sodium_memzero(stream, sizeof(stream));
      p += take;
      size -= take;
      ++block;
    }
    if (size > 0) crypto_stream_xchacha20_xor_ic(p, p, size, nonce_, block, key_);
    return rocksdb::Status::OK();
  }

  unsigned char key_[kFileKeyBytes];
  unsigned char nonce_[kFileNonceBytes];
};

}  // namespace

PageEncryptionProvider::PageEncryptionProvider(std::map<uint32_t, SecretBytes> store_keys, uint32_t current_version)
    : current_version_(current_version) {
  (void)InitSodium();
  for (auto& [version, key] : store_keys) keys_[version] = std::make_shared<const SecretBytes>(std::move(key));
  assert(keys_.count(current_version) == 1);
}

void PageEncryptionProvider::AddStoreKey(uint32_t version, SecretBytes key, bool make_current) {
  auto shared = std::make_shared<const SecretBytes>(std::move(key));
  std::unique_lock lock(mu_);
  keys_[version] = std::move(shared);
  if (make_current) current_version_ = version;
}

void PageEncryptionProvider::RetireStoreKeys(const std::set<uint32_t>& keep) {
  std::unique_lock lock(mu_);
  for (auto it = keys_.begin(); it != keys_.end();) {
    if (it->first == current_version_ || keep.count(it->first) > 0) {
      ++it;
    } else {
      it = keys_.erase(it);
    }
  }
}

size_t PageEncryptionProvider::key_count() const {
  std::shared_lock lock(mu_);
  return keys_.size();
}

uint32_t PageEncryptionProvider::current_version() const {
  std::shared_lock lock(mu_);
  return current_version_;
}

rocksdb::Status PageEncryptionProvider::CreateNewPrefix(const std::string&, char* prefix, size_t prefix_length) const {
  if (prefix_length != kPagePrefixBytes) return rocksdb::Status::InvalidArgument("unexpected page prefix length");
  uint32_t version = 0;
  std::shared_ptr<const SecretBytes> store_key;
  {
    std::shared_lock lock(mu_);
    version = current_version_;
    store_key = keys_.at(version);
  }
  std::memset(prefix, 0, prefix_length);
  std::memcpy(prefix, kMagic, sizeof(kMagic));
  std::string header;
  PutFixed32(header, kPrefixFormatV1);
  PutFixed32(header, version);
  std::memcpy(prefix + 8, header.data(), 8);
  auto* p = reinterpret_cast<unsigned char*>(prefix);
  unsigned char secret[kFileKeyBytes + kFileNonceBytes];
  randombytes_buf(secret, sizeof(secret));
  randombytes_buf(p + kWrapNonceOffset, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned long long wrapped_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(p + kWrappedOffset, &wrapped_len, secret, sizeof(secret), p, kHeaderBytes,
                                             nullptr, p + kWrapNonceOffset, store_key->data());
  sodium_memzero(secret, sizeof(secret));
  return rocksdb::Status::OK();
}

Result<uint32_t> PageEncryptionProvider::PrefixKeyVersion(std::string_view prefix) {
  if (prefix.size() < kHeaderBytes || std::memcmp(prefix.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption("not a Bulwark encrypted file (bad magic)");
  }
  if (LoadU32(prefix.data() + 8) != kPrefixFormatV1) return Status::Corruption("unknown page prefix format");
  return LoadU32(prefix.data() + 12);
}

rocksdb::Status PageEncryptionProvider::CreateCipherStream(const std::string& fname, const rocksdb::EnvOptions&,
                                                           rocksdb::Slice& prefix,
                                                           std::unique_ptr<rocksdb::BlockAccessCipherStream>* result) {
  if (prefix.size() < kWrappedOffset + kWrappedBytes) {
    return rocksdb::Status::Corruption("encrypted file is shorter than its prefix", fname);
  }
  auto version = PrefixKeyVersion(std::string_view(prefix.data(), prefix.size()));
  if (!version.ok()) return rocksdb::Status::Corruption(version.status().message(), fname);
  std::shared_ptr<const SecretBytes> store_key;
  {
    std::shared_lock lock(mu_);
    auto it = keys_.find(*version);
    if (it == keys_.end()) {
      return rocksdb::Status::Corruption(
          "file is encrypted under store-key version " + std::to_string(*version) + ", which this node does not have",
          fname);
    }
    store_key = it->second;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(prefix.data());
  unsigned char secret[kFileKeyBytes + kFileNonceBytes];
  unsigned long long secret_len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(secret, &secret_len, nullptr, p + kWrappedOffset, kWrappedBytes, p,
                                                 kHeaderBytes, p + kWrapNonceOffset, store_key->data()) != 0) {
    return rocksdb::Status::Corruption("encrypted file prefix failed authentication", fname);
  }
  *result = std::make_unique<XChaChaFileStream>(secret, secret + kFileKeyBytes);
  sodium_memzero(secret, sizeof(secret));
  return rocksdb::Status::OK();
}

}  // namespace bulwark::crypto
