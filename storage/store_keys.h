#pragma once
// The node's store keys (the page layer's key-encryption keys), versioned,
// kept in a small file beside RocksDB's: <store>/BULWARK-STORE-KEYS. The file
// holds only wrapped keys (XChaCha20-Poly1305 under the master key), one wrap
// per master-key id, so a master-key rotation can add the new wrap, switch
// RocksDB's keys, then drop the old wrap, and a crash at any point leaves a
// store that opens with whichever key RocksDB's key check accepts.
//
// Thread safety: functions are pure apart from file I/O; callers serialise
// writers (the store does, under its DDL lock).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <rocksdb/env.h>

#include "common/status.h"
#include "crypto/keyring.h"
#include "crypto/page_encryption.h"

namespace bulwark::storage {

constexpr const char* kStoreKeyFileName = "BULWARK-STORE-KEYS";

struct StoreKeyRecord {
  uint32_t version = 0;
  int64_t created_unix_s = 0;
  std::map<std::string, std::string> wraps;  // master-key id -> wrapped key
};

struct StoreKeyFile {
  uint32_t current = 0;
  std::vector<StoreKeyRecord> keys;
};

// nullopt if the file does not exist; Corruption if it is malformed.
Result<std::optional<StoreKeyFile>> ReadStoreKeyFile(const std::string& store_path);
// Atomic: a temporary file, fsync, rename, fsync of the directory.
Status WriteStoreKeyFile(const std::string& store_path, const StoreKeyFile& file);

std::string StoreKeyContext(uint32_t version);

// An encrypted Env for the store at `store_path`, and the provider behind it.
struct StoreEnv {
  std::shared_ptr<crypto::PageEncryptionProvider> provider;
  // Under `env` when the disk-fault test hook is on (storage/fault_fs.h);
  // declared first so that it outlives `env`.
  std::unique_ptr<rocksdb::Env> base;
  std::unique_ptr<rocksdb::Env> env;
};

// The disk-fault test hook's Env for the store at `store_path`
// (storage/fault_fs.h), or null when the hook is off. IOError if its journal
// cannot be made.
Result<std::unique_ptr<rocksdb::Env>> MaybeFaultEnv(const std::string& store_path);

// Opens (or, with `create`, first creates) the store keys and builds the
// encrypted Env. FailedPrecondition if the keys are wrapped by another
// master key, or if the directory holds a store made without page
// encryption.
Result<StoreEnv> OpenStoreEnv(const std::string& store_path, const crypto::Keyring& keyring, bool create);

// A file of the store directory and the store-key version its page prefix
// names.
struct StoreFileKey {
  std::string name;
  uint32_t version = 0;
  uint64_t bytes = 0;
};
// Every file in the store directory that has a page prefix: the key file and
// files shorter than a prefix (LOCK, or one being created, which will be
// under the current key) are skipped. Corruption naming the file for a
// malformed prefix; IOError if the directory cannot be listed.
Result<std::vector<StoreFileKey>> ReadStoreFileKeys(const std::string& store_path);

// For tools and tests that open the store's RocksDB directly.
Result<StoreEnv> OpenStoreEnvForTools(const std::string& store_path, const crypto::MasterKey& master);

}  // namespace bulwark::storage
