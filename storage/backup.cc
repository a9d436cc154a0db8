#include "storage/backup.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "crypto/secret.h"
#include "storage/document_store.h"
#include "storage/sealed_dir.h"

namespace bulwark::storage {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kWhat = "backup";
// The key catalog: the image's data-key records, kept out of `data` so a
// purge can remove one container's keys from a backup and leave the rest.
// [24-byte nonce][XChaCha20-Poly1305 of the records], under a subkey of the
// backup's own key, bound to the backup id.
constexpr const char* kCatalogFile = "KEYS";
constexpr size_t kMaxCatalogBytes = 16 << 20;
constexpr size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTag = crypto_aead_xchacha20poly1305_ietf_ABYTES;

crypto::SecretBytes CatalogKey(std::string_view backup_key) {
  crypto::SecretBytes out(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  crypto_kdf_derive_from_key(out.data(), out.size(), 1, "bwkeycat",
                             reinterpret_cast<const unsigned char*>(backup_key.data()));
  return out;
}

std::string CatalogAd(const std::string& id) { return "bulwark-backup-keys:" + id; }

// Written beside `data` (then synced); replaced atomically when a purge
// drops keys from it.
Status WriteCatalog(const fs::path& dir, const std::string& id, std::string_view backup_key, std::string_view records) {
  const crypto::SecretBytes key = CatalogKey(backup_key);
  std::string out = crypto::RandomBytes(kNonce);
  out.resize(kNonce + records.size() + kTag);
  unsigned long long len = 0;
  const std::string ad = CatalogAd(id);
  crypto_aead_xchacha20poly1305_ietf_encrypt(reinterpret_cast<unsigned char*>(out.data() + kNonce), &len,
                                             reinterpret_cast<const unsigned char*>(records.data()), records.size(),
                                             reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nullptr,
                                             reinterpret_cast<const unsigned char*>(out.data()), key.data());
  const fs::path tmp = dir / (std::string(kCatalogFile) + ".tmp");
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    f.close();
    if (!f) return Status::IOError("cannot write " + tmp.string());
  }
  BULWARK_RETURN_IF_ERROR(sealed::SyncPath(tmp));
  std::error_code ec;
  fs::rename(tmp, dir / kCatalogFile, ec);
  if (ec) return Status::IOError("cannot replace the key catalog of backup " + id + ": " + ec.message());
  return sealed::SyncPath(dir);
}

Result<std::string> ReadCatalog(const fs::path& dir, const std::string& id, std::string_view backup_key) {
  std::ifstream in(dir / kCatalogFile, std::ios::binary);
  if (!in) return Status::Corruption("backup " + id + " has no key catalog (KEYS)");
  const size_t limit = kMaxCatalogBytes + kNonce + kTag;
  std::string bytes(limit + 1, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<size_t>(in.gcount()));
  if (bytes.size() > limit) return Status::Corruption("backup " + id + ": its key catalog is too large");
  if (bytes.size() < kNonce + kTag) return Status::Corruption("backup " + id + ": its key catalog is cut short");
  const crypto::SecretBytes key = CatalogKey(backup_key);
  std::string plain(bytes.size() - kNonce - kTag, '\0');
  unsigned long long len = 0;
  const std::string ad = CatalogAd(id);
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain.data()), &len, nullptr,
          reinterpret_cast<const unsigned char*>(bytes.data() + kNonce), bytes.size() - kNonce,
          reinterpret_cast<const unsigned char*>(ad.data()), ad.size(),
          reinterpret_cast<const unsigned char*>(bytes.data()), key.data()) != 0) {
    return Status::Corruption("backup " + id +
                              ": its key catalog fails authentication (changed, or from another backup)");
  }
  plain.resize(len);
  return plain;
}

bool HasCatalog(const sealed::Manifest& m) { return m.fields.value("key_catalog", false); }

// Reads the whole backup, authenticated: the image chunks, then (if it has
// one) the key catalog's records as a last chunk.
Status ReadBackupData(const fs::path& dir, const sealed::Manifest& m, const crypto::MasterKey& master,
                      const sealed::ChunkSink& sink, const BackupProgress& progress) {
  if (!HasCatalog(m)) return sealed::ReadData(dir, m, master, kWhat, sink, progress);
  // The catalog first: a container whose keys a purge has since removed is
  // left out of what the restore sees (its records would be unreadable, and
  // a store refuses a live container without a key).
  BULWARK_ASSIGN_OR_RETURN(crypto::SecretBytes key, sealed::UnwrapKey(m, master, kWhat));
  BULWARK_ASSIGN_OR_RETURN(std::string records, ReadCatalog(dir, m.id, key.view()));
  std::set<std::string> keyed;
  {
    std::string rest, kept;
    BULWARK_RETURN_IF_ERROR(DocumentStore::SplitImageDataKeys(records, &rest, &kept, nullptr, nullptr, &keyed));
    sodium_memzero(kept.data(), kept.size());
  }
  uint64_t dropped = 0;
  std::string filtered;
  BULWARK_RETURN_IF_ERROR(sealed::ReadData(
      dir, m, master, kWhat,
      [&](std::string_view chunk) {
        filtered.clear();
        BULWARK_RETURN_IF_ERROR(DocumentStore::DropUnkeyedContainers(chunk, keyed, &filtered, &dropped));
        return filtered.empty() ? Status::Ok() : sink(filtered);
      },
      progress));
  Status s = records.empty() ? Status::Ok() : sink(records);
  sodium_memzero(records.data(), records.size());
  return s;
}

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id.rfind("b-", 0) != 0) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; });
}

Result<BackupInfo> InfoFrom(const sealed::Manifest& m, const fs::path& dir) {
  BackupInfo info;
  info.id = m.id;
  info.created_unix_ms = m.created_unix_ms;
  info.chunks = m.chunks;
  info.bytes = m.bytes;
  info.master_key_id = m.master_key_id;
  try {
    info.applied_index = m.fields.at("applied_index").get<uint64_t>();
    info.glsn = m.fields.at("glsn").get<uint64_t>();
    // Written since point-in-time restore; older backups count from their start.
    info.image_unix_ms = m.fields.value("image_unix_ms", m.created_unix_ms);
  } catch (const json::exception& e) {
    return Status::Corruption((dir / "MANIFEST").string() + " is missing a field or has a wrong type: " + e.what());
  }
  return info;
}

Result<BackupInfo> ReadInfo(const fs::path& dir) {
  BULWARK_ASSIGN_OR_RETURN(sealed::Manifest m, sealed::ReadManifest(dir, kWhat));
  return InfoFrom(m, dir);
}

}  // namespace

Result<BackupInfo> WriteBackup(const DocumentStore& store, const crypto::MasterKey& master, const std::string& location,
                               const BackupProgress& progress, const std::string* fenced_for) {
  const int64_t now_ms = UnixNowMillis();
  const std::string id = "b-" + std::to_string(now_ms) + "-" + crypto::HexEncode(crypto::RandomBytes(4));
  uint64_t applied_index = 0, glsn = 0;
  int64_t image_unix_ms = 0;
  std::string catalog;  // the data-key records, unwrapped: wiped below
  auto produce = [&](const sealed::ChunkSink& push) -> Status {
    std::string rest;
    BULWARK_ASSIGN_OR_RETURN(applied_index,
                             store.WriteStateImage(
                                 kBackupChunkBytes,
                                 [&](std::string_view chunk) {
                                   rest.clear();
                                   BULWARK_RETURN_IF_ERROR(DocumentStore::SplitImageDataKeys(chunk, &rest, &catalog));
                                   if (catalog.size() > kMaxCatalogBytes) {
                                     return Status::ResourceExhausted("the key catalog would exceed its limit");
                                   }
                                   return rest.empty() ? Status::Ok() : push(rest);
                                 },
                                 /*region_image=*/false, fenced_for));
    glsn = store.geo_position().glsn;  // at least the image's (the position only grows)
    // Measured once the image is written: every write it holds was proposed
    // before this (point-in-time restore relies on it; see storage/archive.h).
    image_unix_ms = UnixNowMillis();
    return Status::Ok();
  };
  auto fields = [&] {
    return json{
        {"applied_index", applied_index}, {"glsn", glsn}, {"image_unix_ms", image_unix_ms}, {"key_catalog", true}};
  };
  auto finish = [&](const fs::path& dir, std::string_view key) { return WriteCatalog(dir, id, key, catalog); };
  auto m = sealed::Write(location, id, master, kWhat, produce, fields, progress, finish);
  sodium_memzero(catalog.data(), catalog.size());
  if (!m.ok()) return m.status();
  return InfoFrom(*m, fs::path(location) / id);
}

Result<std::vector<BackupInfo>> ListBackups(const std::string& location) {
  std::vector<BackupInfo> out;
  std::error_code ec;
  if (!fs::exists(location, ec)) return out;
  for (const auto& entry : fs::directory_iterator(location, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !ValidId(name)) continue;  // .partial, or not ours
    auto info = ReadInfo(entry.path());
    if (!info.ok()) {
      // One damaged backup must not stop the others' listing, pruning or
      // shredding: it is left out (verify and restore name what is wrong).
      spdlog::warn("event=backup_unreadable dir={} error=\"{}\"", entry.path().string(), info.status().ToString());
      continue;
    }
    out.push_back(std::move(info).value());
  }
  if (ec) return Status::IOError("cannot list " + location + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const BackupInfo& a, const BackupInfo& b) { return a.id < b.id; });
  return out;
}

Result<BackupInfo> VerifyBackup(const std::string& location, const std::string& id, const crypto::MasterKey& master,
                                const BackupProgress& progress) {
  if (!ValidId(id)) return Status::InvalidArgument("'" + id + "' is not a backup id");
  const fs::path dir = fs::path(location) / id;
  if (!fs::exists(dir)) return Status::NotFound("no backup " + id + " in " + location);
  BULWARK_ASSIGN_OR_RETURN(sealed::Manifest m, sealed::ReadManifest(dir, kWhat));
  BULWARK_ASSIGN_OR_RETURN(BackupInfo info, InfoFrom(m, dir));
  BULWARK_RETURN_IF_ERROR(ReadBackupData(
      dir, m, master, [](std::string_view) { return Status::Ok(); }, progress));
  return info;
}

Result<BackupInfo> RestoreBackup(const std::string& location, const std::string& id, const crypto::MasterKey& master,
                                 const std::string& target, const BackupProgress& progress) {
  if (!ValidId(id)) return Status::InvalidArgument("'" + id + "' is not a backup id");
  std::error_code ec;
  if (fs::exists(target, ec)) {
    return Status::InvalidArgument("restore target " + target + " exists: restore only into a new directory");
  }
  const fs::path dir = fs::path(location) / id;
  if (!fs::exists(dir)) return Status::NotFound("no backup " + id + " in " + location);
  BULWARK_ASSIGN_OR_RETURN(sealed::Manifest m, sealed::ReadManifest(dir, kWhat));
  BULWARK_ASSIGN_OR_RETURN(BackupInfo info, InfoFrom(m, dir));
  // Checked first, so a wrong key leaves no directory behind.
  if (m.master_key_id != master.id()) {
    return Status::FailedPrecondition("backup " + id + " was written under master key " + m.master_key_id +
                                      ", not the one given (" + master.id() + ")");
  }
  auto restored = [&]() -> Status {
    StoreOptions options;
    options.path = target;
    BULWARK_ASSIGN_OR_RETURN(auto store, DocumentStore::Open(options, master.Clone()));
    BULWARK_RETURN_IF_ERROR(store->BeginStateImage());
    BULWARK_RETURN_IF_ERROR(ReadBackupData(
        dir, m, master, [&](std::string_view chunk) { return store->AddStateImageChunk(chunk); }, progress));
    BULWARK_RETURN_IF_ERROR(store->FinishStateImage());
    BULWARK_RETURN_IF_ERROR(store->InstallStateImage().status());
    return store->SyncWal();
  }();
  if (!restored.ok()) {
    fs::remove_all(target, ec);
    return restored;
  }
  return info;
}

Result<size_t> RewrapBackups(const std::string& location, const crypto::MasterKey& old_master,
                             const crypto::MasterKey& new_master) {
  BULWARK_ASSIGN_OR_RETURN(auto all, ListBackups(location));
  std::vector<fs::path> dirs;
  for (const BackupInfo& b : all) dirs.push_back(fs::path(location) / b.id);
  return sealed::RewrapAll(dirs, kWhat, old_master, new_master);
}

Status CopyBackupTo(const std::string& from_location, const std::string& to_location, const std::string& id) {
  if (!ValidId(id)) return Status::InvalidArgument("'" + id + "' is not a backup id");
  return sealed::Copy(from_location, to_location, id);
}

Result<size_t> DropKeysFromBackups(const std::string& location, const crypto::MasterKey& master,
                                   const std::set<std::string>& rids) {
  BULWARK_ASSIGN_OR_RETURN(auto all, ListBackups(location));
  size_t dropped = 0;
  for (const BackupInfo& b : all) {
    const fs::path dir = fs::path(location) / b.id;
    // A backup whose catalog cannot be rewritten here (written before key
    // catalogs, so its keys are inside `data`; under another master key;
    // damaged) is removed: only that takes the keys away for sure, and a
    // shred must not wait on it.
    auto forget = [&](const Status& why) -> Status {
      spdlog::warn("event=backup_removed_for_purge id={} reason=\"{}\"", b.id, why.ToString());
      std::error_code ec;
      fs::remove_all(dir, ec);
      if (ec) return Status::IOError("cannot remove backup " + b.id + ": " + ec.message());
      return Status::Ok();
    };
    auto m = sealed::ReadManifest(dir, kWhat);
    if (!m.ok()) {
      BULWARK_RETURN_IF_ERROR(forget(m.status()));
      continue;
    }
    if (!HasCatalog(*m)) {
      BULWARK_RETURN_IF_ERROR(forget(Status::FailedPrecondition("it has no key catalog")));
      continue;
    }
    auto key = sealed::UnwrapKey(*m, master, kWhat);
    auto records = key.ok() ? ReadCatalog(dir, b.id, key->view()) : Result<std::string>(key.status());
    if (!records.ok()) {
      BULWARK_RETURN_IF_ERROR(forget(records.status()));
      continue;
    }
    std::string kept, rest;
    size_t n = 0;
    Status split = DocumentStore::SplitImageDataKeys(*records, &rest, &kept, &rids, &n);
    sodium_memzero(records->data(), records->size());
    if (split.ok() && n > 0) split = WriteCatalog(dir, b.id, key->view(), kept);
    sodium_memzero(kept.data(), kept.size());
    if (!split.ok()) {
      BULWARK_RETURN_IF_ERROR(forget(split));
      continue;
    }
    dropped += n;
  }
  return dropped;
}

Result<size_t> PruneBackups(const std::string& location, size_t keep) {
  BULWARK_ASSIGN_OR_RETURN(auto all, ListBackups(location));
  size_t removed = 0;
  for (size_t i = 0; i + keep < all.size(); ++i) {
    std::error_code ec;
    fs::remove_all(fs::path(location) / all[i].id, ec);
    if (ec) return Status::IOError("cannot remove backup " + all[i].id + ": " + ec.message());
    ++removed;
  }
  return removed;
}

}  // namespace bulwark::storage
