#include "storage/store_keys.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "crypto/secret.h"
#include "storage/fault_fs.h"

namespace bulwark::storage {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kKeyFileFormat = 1;

Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot open " + path + " to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError("fsync of " + path + " failed");
  return Status::Ok();
}

}  // namespace

std::string StoreKeyContext(uint32_t version) { return "bulwark.store-key.v1|" + std::to_string(version); }

Result<std::optional<StoreKeyFile>> ReadStoreKeyFile(const std::string& store_path) {
  const fs::path path = fs::path(store_path) / kStoreKeyFileName;
  std::ifstream in(path);
  if (!in) return std::optional<StoreKeyFile>();
  const json j = json::parse(in, nullptr, false);
  const Status bad = Status::Corruption(path.string() + " is malformed");
  if (j.is_discarded() || !j.is_object() || j.value("format", 0) != kKeyFileFormat) return bad;
  try {
    StoreKeyFile file;
    file.current = j.at("current").get<uint32_t>();
    for (const auto& k : j.at("keys")) {
      StoreKeyRecord r;
      r.version = k.at("version").get<uint32_t>();
      r.created_unix_s = k.at("created").get<int64_t>();
      for (const auto& [id, wrapped] : k.at("wraps").items()) {
        auto raw = crypto::Base64Decode(wrapped.get<std::string>());
        if (!raw.ok()) return bad;
        r.wraps[id] = std::move(raw).value();
      }
      file.keys.push_back(std::move(r));
    }
    return std::optional<StoreKeyFile>(std::move(file));
  } catch (const std::exception&) {
    return bad;  // a malformed file is a typed error, not an exception
  }
}

Status WriteStoreKeyFile(const std::string& store_path, const StoreKeyFile& file) {
  json keys = json::array();
  for (const auto& r : file.keys) {
    json wraps = json::object();
    for (const auto& [id, wrapped] : r.wraps) wraps[id] = crypto::Base64Encode(wrapped);
    keys.push_back({{"version", r.version}, {"created", r.created_unix_s}, {"wraps", wraps}});
  }
  const json j = {{"format", kKeyFileFormat}, {"current", file.current}, {"keys", keys}};
  const fs::path path = fs::path(store_path) / kStoreKeyFileName;
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    out.close();
    if (!out) return Status::IOError("cannot write " + tmp.string());
  }
  BULWARK_RETURN_IF_ERROR(FsyncPath(tmp.string(), O_RDONLY));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Status::IOError("cannot rename " + tmp.string() + ": " + ec.message());
  return FsyncPath(store_path, O_RDONLY | O_DIRECTORY);
}

Result<StoreEnv> OpenStoreEnv(const std::string& store_path, const crypto::Keyring& keyring, bool create) {
  BULWARK_ASSIGN_OR_RETURN(auto file, ReadStoreKeyFile(store_path));
  if (!file) {
    if (fs::exists(fs::path(store_path) / "CURRENT")) {
      return Status::FailedPrecondition(store_path + " holds a store made without page encryption");
    }
    if (!create) return Status::NotFound("no store keys in " + store_path);
    // First open: store key version 1.
    const crypto::SecretBytes key = crypto::SecretBytes::Random(crypto::kStoreKeyBytes);
    StoreKeyRecord r;
    r.version = 1;
    r.created_unix_s =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    r.wraps[keyring.master_key_id()] = keyring.WrapSecret(key.view(), StoreKeyContext(1));
    file = StoreKeyFile{1, {r}};
    BULWARK_RETURN_IF_ERROR(WriteStoreKeyFile(store_path, *file));
  }
  const std::string id = keyring.master_key_id();
  std::map<uint32_t, crypto::SecretBytes> keys;
  for (const auto& r : file->keys) {
    auto it = r.wraps.find(id);
    if (it == r.wraps.end()) {
      std::string ids;
      for (const auto& [other, _] : r.wraps) ids += (ids.empty() ? "" : ", ") + other;
      return Status::FailedPrecondition("wrong master key: this store's keys are wrapped by master key " + ids +
                                        ", but the key given is " + id);
    }
    auto key = keyring.UnwrapSecret(it->second, StoreKeyContext(r.version));
    if (!key.ok()) return Status(key.status()).WithContext("store key v" + std::to_string(r.version));
    keys.emplace(r.version, std::move(key).value());
  }
  if (keys.count(file->current) == 0) return Status::Corruption("the store-key file names a missing current key");
  StoreEnv out;
  out.provider = std::make_shared<crypto::PageEncryptionProvider>(std::move(keys), file->current);
  BULWARK_ASSIGN_OR_RETURN(out.base, MaybeFaultEnv(store_path));
  out.env.reset(rocksdb::NewEncryptedEnv(out.base ? out.base.get() : rocksdb::Env::Default(), out.provider));
  return out;
}

Result<std::unique_ptr<rocksdb::Env>> MaybeFaultEnv(const std::string& store_path) {
  if (!FsFaultsEnabled()) return std::unique_ptr<rocksdb::Env>();
  BULWARK_ASSIGN_OR_RETURN(auto faulty, NewFaultFileSystem(rocksdb::FileSystem::Default(), FsFaultDir(store_path)));
  spdlog::warn("event=test_hook_on hook=fs_faults store={} note=\"{} is set: disk faults may be injected\"", store_path,
               kFsFaultsEnv);
  return rocksdb::NewCompositeEnv(faulty);
}

Result<std::vector<StoreFileKey>> ReadStoreFileKeys(const std::string& store_path) {
  std::vector<StoreFileKey> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(store_path, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name.rfind(kStoreKeyFileName, 0) == 0) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string prefix(16, '\0');
    in.read(prefix.data(), static_cast<std::streamsize>(prefix.size()));
    if (in.gcount() < 16) continue;
    auto version = crypto::PageEncryptionProvider::PrefixKeyVersion(prefix);
    if (!version.ok()) return Status(version.status()).WithContext(name);
    std::error_code size_ec;
    const uint64_t bytes = entry.file_size(size_ec);
    out.push_back({name, *version, size_ec ? 0 : bytes});
  }
  if (ec) return Status::IOError("cannot list " + store_path + ": " + ec.message());
  return out;
}

Result<StoreEnv> OpenStoreEnvForTools(const std::string& store_path, const crypto::MasterKey& master) {
  crypto::Keyring keyring(master.Clone());
  return OpenStoreEnv(store_path, keyring, /*create=*/false);
}

}  // namespace bulwark::storage
