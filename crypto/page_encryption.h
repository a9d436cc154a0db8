#pragma once
// Page-layer encryption: every file RocksDB writes (SST, WAL, MANIFEST, info
// LOG, OPTIONS, CURRENT) goes through PageEncryptionProvider, plugged in with
// rocksdb::NewEncryptedEnv.
//
// Each file starts with a kPagePrefixBytes prefix:
//   [0..8)    magic "BWPAGE" 0x00 0x01
//   [8..12)   prefix format (1), little-endian
//   [12..16)  store-key version that wraps this file's key
//   [16..40)  wrap nonce (192 bit)
//   [40..112) XChaCha20-Poly1305(store key; file key 32 B || file nonce 24 B),
//             associated data = bytes [0..16)
//   rest      zero
// The content after the prefix is XChaCha20 under the file key and nonce,
// with the 64-byte block counter giving random access
// (crypto_stream_xchacha20_xor_ic). The prefix is authenticated; the content
// is not (a stream cipher): its integrity rests on RocksDB's own checksums
// (block CRCs, WAL record CRCs) and, for document bodies, on the item AEAD.
//
// Thread safety: all methods may be called concurrently; RocksDB does.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <shared_mutex>
#include <string>

#include <rocksdb/env_encryption.h>

#include "common/status.h"
#include "crypto/secret.h"

namespace bulwark::crypto {

constexpr size_t kPagePrefixBytes = 4096;
constexpr size_t kStoreKeyBytes = 32;

class PageEncryptionProvider : public rocksdb::EncryptionProvider {
 public:
  // `current_version` must be one of `store_keys`; new files use it.
  PageEncryptionProvider(std::map<uint32_t, SecretBytes> store_keys, uint32_t current_version);

  const char* Name() const override { return "BulwarkXChaCha20"; }
  size_t GetPrefixLength() const override { return kPagePrefixBytes; }
  rocksdb::Status CreateNewPrefix(const std::string& fname, char* prefix, size_t prefix_length) const override;
  // Keys come from the store's key file, never through RocksDB's descriptors.
  rocksdb::Status AddCipher(const std::string&, const char*, size_t, bool) override {
    return rocksdb::Status::NotSupported("store keys are added with AddStoreKey");
  }
  rocksdb::Status CreateCipherStream(const std::string& fname, const rocksdb::EnvOptions& options,
                                     rocksdb::Slice& prefix,
                                     std::unique_ptr<rocksdb::BlockAccessCipherStream>* result) override;

  // Adds a store-key version; with `make_current`, new files use it from now on.
  void AddStoreKey(uint32_t version, SecretBytes key, bool make_current);
  uint32_t current_version() const;
  // Drops every store-key version not in `keep` (the current one is always
  // kept): files under a dropped version can no longer be read.
  void RetireStoreKeys(const std::set<uint32_t>& keep);
  size_t key_count() const;

  // The store-key version named by a file's prefix (for rotation progress).
  // Corruption if it is not a Bulwark page prefix.
  static Result<uint32_t> PrefixKeyVersion(std::string_view prefix);

 private:
  mutable std::shared_mutex mu_;
  std::map<uint32_t, std::shared_ptr<const SecretBytes>> keys_;  // GUARDED_BY(mu_)
  uint32_t current_version_;                                     // GUARDED_BY(mu_)
};

}  // namespace bulwark::crypto
