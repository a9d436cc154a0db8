#pragma once
// Test helper: every file of a store directory (but the store-key file and
// empty files), decrypted through the page layer with the keys the store's
// key file still holds, exactly as RocksDB would read it. A file no held key
// opens is reported with its error instead of its content.

#include <filesystem>
#include <map>
#include <string>

#include <rocksdb/env.h>

#include "crypto/master_key.h"
#include "storage/store_keys.h"

namespace bulwark::testing {

struct DecryptedFile {
  std::string plain;
  std::string error;  // empty when it decrypted
};

inline std::map<std::string, DecryptedFile> DecryptStoreFiles(const std::filesystem::path& dir,
                                                              const crypto::MasterKey& master) {
  std::map<std::string, DecryptedFile> out;
  auto env = storage::OpenStoreEnvForTools(dir.string(), master);
  if (!env.ok()) {
    out["<store>"].error = env.status().ToString();
    return out;
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name.rfind(storage::kStoreKeyFileName, 0) == 0 ||
        std::filesystem::file_size(entry.path()) == 0) {
      continue;
    }
    DecryptedFile& f = out[name];
    const rocksdb::Status s = rocksdb::ReadFileToString(env->env.get(), entry.path().string(), &f.plain);
    if (!s.ok()) f.error = s.ToString();
  }
  return out;
}

}  // namespace bulwark::testing
