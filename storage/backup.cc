#include "storage/backup.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "crypto/secret.h"
#include "storage/document_store.h"
#include "storage/sealed_dir.h"

namespace bulwark::storage {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kWhat = "backup";

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
                               const BackupProgress& progress) {
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  const std::string id = "b-" + std::to_string(now_ms) + "-" + crypto::HexEncode(crypto::RandomBytes(4));
  uint64_t applied_index = 0, glsn = 0;
  int64_t image_unix_ms = 0;
  auto produce = [&](const sealed::ChunkSink& push) -> Status {
    BULWARK_ASSIGN_OR_RETURN(applied_index, store.WriteStateImage(kBackupChunkBytes, push));
    glsn = store.geo_position().glsn;  // at least the image's (the position only grows)
    // Measured once the image is written: every write it holds was proposed
    // before this (point-in-time restore relies on it; see storage/archive.h).
    image_unix_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    return Status::Ok();
  };
  auto fields = [&] {
    return json{{"applied_index", applied_index}, {"glsn", glsn}, {"image_unix_ms", image_unix_ms}};
  };
  BULWARK_ASSIGN_OR_RETURN(sealed::Manifest m, sealed::Write(location, id, master, kWhat, produce, fields, progress));
  return InfoFrom(m, fs::path(location) / id);
}

Result<std::vector<BackupInfo>> ListBackups(const std::string& location) {
  std::vector<BackupInfo> out;
  std::error_code ec;
  if (!fs::exists(location, ec)) return out;
  for (const auto& entry : fs::directory_iterator(location, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !ValidId(name)) continue;  // .partial, or not ours
    BULWARK_ASSIGN_OR_RETURN(BackupInfo info, ReadInfo(entry.path()));
    out.push_back(std::move(info));
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
  BULWARK_RETURN_IF_ERROR(sealed::ReadData(
      dir, m, master, kWhat, [](std::string_view) { return Status::Ok(); }, progress));
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
    BULWARK_RETURN_IF_ERROR(sealed::ReadData(
        dir, m, master, kWhat, [&](std::string_view chunk) { return store->AddStateImageChunk(chunk); }, progress));
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
  size_t done = 0;
  for (const BackupInfo& b : all) {
    BULWARK_ASSIGN_OR_RETURN(bool rewrapped, sealed::Rewrap(fs::path(location) / b.id, kWhat, old_master, new_master));
    done += rewrapped ? 1 : 0;
  }
  return done;
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
