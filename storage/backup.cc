#include "storage/backup.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/coding.h"
#include "crypto/secret.h"
#include "storage/document_store.h"

namespace bulwark::storage {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kFormat = 1;
constexpr const char* kDataFile = "data";
constexpr const char* kManifestFile = "MANIFEST";
constexpr size_t kStreamHeader = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr size_t kStreamOverhead = crypto_secretstream_xchacha20poly1305_ABYTES;
constexpr size_t kMaxManifestBytes = 64 * 1024;

std::string KeyContext(const std::string& id) { return "bulwark-backup:" + id; }

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id.rfind("b-", 0) != 0) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; });
}

Status SyncPath(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Status::IOError("cannot open " + path.string() + " to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError("cannot sync " + path.string());
  return Status::Ok();
}

Result<std::string> ReadSmallFile(const fs::path& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path.string());
  std::string out(limit + 1, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  if (out.size() > limit) return Status::Corruption(path.string() + " is too large");
  return out;
}

std::string ToJson(const BackupInfo& info, const std::string& wrapped_key, const std::string& hash_hex) {
  return json{{"format", kFormat},
              {"id", info.id},
              {"created_unix_ms", info.created_unix_ms},
              {"applied_index", info.applied_index},
              {"glsn", info.glsn},
              {"chunks", info.chunks},
              {"bytes", info.bytes},
              {"master_key_id", info.master_key_id},
              {"data_blake2b", hash_hex},
              {"wrapped_key", crypto::Base64Encode(wrapped_key)}}
      .dump(2);
}

struct Manifest {
  BackupInfo info;
  std::string wrapped_key;
  std::string hash_hex;
};

Result<Manifest> ReadManifest(const fs::path& dir) {
  BULWARK_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(dir / kManifestFile, kMaxManifestBytes));
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const std::string where = (dir / kManifestFile).string();
  if (j.is_discarded() || !j.is_object()) return Status::Corruption(where + " is not a JSON object");
  try {
    if (j.at("format").get<int>() != kFormat) return Status::Corruption(where + ": unknown backup format");
    Manifest m;
    m.info.id = j.at("id").get<std::string>();
    m.info.created_unix_ms = j.at("created_unix_ms").get<int64_t>();
    m.info.applied_index = j.at("applied_index").get<uint64_t>();
    m.info.glsn = j.at("glsn").get<uint64_t>();
    m.info.chunks = j.at("chunks").get<uint64_t>();
    m.info.bytes = j.at("bytes").get<uint64_t>();
    m.info.master_key_id = j.at("master_key_id").get<std::string>();
    m.hash_hex = j.at("data_blake2b").get<std::string>();
    auto wrapped = crypto::Base64DecodeSecret(j.at("wrapped_key").get<std::string>());
    if (!wrapped.ok()) return Status::Corruption(where + ": the wrapped key is not base64");
    m.wrapped_key = std::string(wrapped->view());
    if (m.info.id != dir.filename().string()) return Status::Corruption(where + " names another backup");
    return m;
  } catch (const json::exception& e) {
    return Status::Corruption(where + " is missing a field or has a wrong type: " + e.what());
  }
}

// Reads `data`, authenticating every message, and hands each plaintext
// chunk to `sink`. Corruption for anything short of a complete, intact
// stream that matches the manifest.
Status ReadData(const fs::path& dir, const Manifest& m, const crypto::MasterKey& master,
                const std::function<Status(std::string_view)>& sink, const BackupProgress& progress) {
  if (m.info.master_key_id != master.id()) {
    return Status::FailedPrecondition("backup " + m.info.id + " was written under master key " + m.info.master_key_id +
                                      ", not the one given (" + master.id() + ")");
  }
  auto key = master.Unwrap(m.wrapped_key, KeyContext(m.info.id));
  if (!key.ok()) return Status::Corruption("backup " + m.info.id + ": its key does not unwrap under the master key");
  std::ifstream in(dir / kDataFile, std::ios::binary);
  if (!in) return Status::Corruption("backup " + m.info.id + " has no data file");
  unsigned char header[kStreamHeader];
  in.read(reinterpret_cast<char*>(header), kStreamHeader);
  if (static_cast<size_t>(in.gcount()) != kStreamHeader)
    return Status::Corruption("backup " + m.info.id + " is cut short");
  crypto_secretstream_xchacha20poly1305_state state;
  if (crypto_secretstream_xchacha20poly1305_init_pull(
          &state, header, reinterpret_cast<const unsigned char*>(key->view().data())) != 0) {
    return Status::Corruption("backup " + m.info.id + " has a bad stream header");
  }
  crypto_generichash_state hash;
  crypto_generichash_init(&hash, nullptr, 0, 32);
  crypto_generichash_update(&hash, header, kStreamHeader);
  uint64_t bytes = kStreamHeader, chunks = 0;
  bool final_seen = false;
  std::string frame, plain;
  for (;;) {
    unsigned char len_bytes[4];
    in.read(reinterpret_cast<char*>(len_bytes), 4);
    if (in.gcount() == 0 && in.eof()) break;
    if (in.gcount() != 4) return Status::Corruption("backup " + m.info.id + " is cut short");
    if (final_seen) return Status::Corruption("backup " + m.info.id + " has data after its end");
    std::string_view lv(reinterpret_cast<const char*>(len_bytes), 4);
    uint32_t len = 0;
    GetFixed32(lv, len);
    if (len < kStreamOverhead || len > kBackupChunkBytes + kStreamOverhead) {
      return Status::Corruption("backup " + m.info.id + " has a malformed message length");
    }
    frame.resize(len);
    in.read(frame.data(), len);
    if (static_cast<uint32_t>(in.gcount()) != len) return Status::Corruption("backup " + m.info.id + " is cut short");
    crypto_generichash_update(&hash, len_bytes, 4);
    crypto_generichash_update(&hash, reinterpret_cast<const unsigned char*>(frame.data()), len);
    plain.resize(len - kStreamOverhead);
    unsigned long long plain_len = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&state, reinterpret_cast<unsigned char*>(plain.data()), &plain_len,
                                                   &tag, reinterpret_cast<const unsigned char*>(frame.data()), len,
                                                   nullptr, 0) != 0) {
      return Status::Corruption("backup " + m.info.id + ": message " + std::to_string(chunks) +
                                " fails authentication (changed, reordered or from another backup)");
    }
    plain.resize(plain_len);
    bytes += 4 + len;
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
      final_seen = true;
      if (!plain.empty()) return Status::Corruption("backup " + m.info.id + ": its end marker carries data");
      continue;
    }
    ++chunks;
    BULWARK_RETURN_IF_ERROR(sink(plain));
    if (progress) progress(bytes);
  }
  if (!final_seen) return Status::Corruption("backup " + m.info.id + " is incomplete: its end marker is missing");
  unsigned char digest[32];
  crypto_generichash_final(&hash, digest, sizeof(digest));
  const std::string hex = crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
  if (chunks != m.info.chunks || bytes != m.info.bytes || hex != m.hash_hex) {
    return Status::Corruption("backup " + m.info.id + " does not match its manifest (chunks, size or hash)");
  }
  return Status::Ok();
}

}  // namespace

Result<BackupInfo> WriteBackup(const DocumentStore& store, const crypto::MasterKey& master, const std::string& location,
                               const BackupProgress& progress) {
  std::error_code ec;
  fs::create_directories(location, ec);
  if (ec) return Status::IOError("cannot create the backup location " + location + ": " + ec.message());
  BackupInfo info;
  info.created_unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  info.id = "b-" + std::to_string(info.created_unix_ms) + "-" + crypto::HexEncode(crypto::RandomBytes(4));
  info.master_key_id = master.id();
  const fs::path final_dir = fs::path(location) / info.id;
  const fs::path dir = fs::path(location) / (info.id + ".partial");
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
  auto fail = [&](Status s) {
    fs::remove_all(dir, ec);
    return s;
  };

  crypto::SecretBytes key = crypto::SecretBytes::Random(crypto_secretstream_xchacha20poly1305_KEYBYTES);
  crypto_secretstream_xchacha20poly1305_state state;
  unsigned char header[kStreamHeader];
  crypto_secretstream_xchacha20poly1305_init_push(&state, header,
                                                  reinterpret_cast<const unsigned char*>(key.view().data()));
  std::ofstream out(dir / kDataFile, std::ios::binary);
  if (!out) return fail(Status::IOError("cannot write " + (dir / kDataFile).string()));
  crypto_generichash_state hash;
  crypto_generichash_init(&hash, nullptr, 0, 32);
  out.write(reinterpret_cast<const char*>(header), kStreamHeader);
  crypto_generichash_update(&hash, header, kStreamHeader);
  info.bytes = kStreamHeader;
  std::string frame;
  auto push = [&](std::string_view chunk, unsigned char tag) -> Status {
    frame.resize(4 + chunk.size() + kStreamOverhead);
    unsigned long long len = 0;
    crypto_secretstream_xchacha20poly1305_push(&state, reinterpret_cast<unsigned char*>(frame.data() + 4), &len,
                                               reinterpret_cast<const unsigned char*>(chunk.data()), chunk.size(),
                                               nullptr, 0, tag);
    std::string prefix;
    PutFixed32(prefix, static_cast<uint32_t>(len));
    std::copy(prefix.begin(), prefix.end(), frame.begin());
    out.write(frame.data(), static_cast<std::streamsize>(4 + len));
    crypto_generichash_update(&hash, reinterpret_cast<const unsigned char*>(frame.data()), 4 + len);
    info.bytes += 4 + len;
    if (!out) return Status::IOError("cannot write " + (dir / kDataFile).string());
    if (progress) progress(info.bytes);
    return Status::Ok();
  };
  auto image = store.WriteStateImage(kBackupChunkBytes, [&](std::string_view chunk) {
    ++info.chunks;
    return push(chunk, 0);
  });
  if (!image.ok()) return fail(image.status());
  info.applied_index = *image;
  info.glsn = store.geo_position().glsn;  // at least the image's (the position only grows)
  BULWARK_RETURN_IF_ERROR(push({}, crypto_secretstream_xchacha20poly1305_TAG_FINAL));
  out.close();
  if (!out) return fail(Status::IOError("cannot write " + (dir / kDataFile).string()));
  unsigned char digest[32];
  crypto_generichash_final(&hash, digest, sizeof(digest));
  const std::string hex = crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
  {
    std::ofstream manifest(dir / kManifestFile, std::ios::binary);
    manifest << ToJson(info, master.Wrap(key.view(), KeyContext(info.id)), hex) << "\n";
    if (!manifest) return fail(Status::IOError("cannot write the manifest"));
  }
  for (const char* name : {kDataFile, kManifestFile}) {
    if (Status s = SyncPath(dir / name); !s.ok()) return fail(s);
  }
  if (Status s = SyncPath(dir); !s.ok()) return fail(s);
  fs::rename(dir, final_dir, ec);
  if (ec) return fail(Status::IOError("cannot publish the backup: " + ec.message()));
  BULWARK_RETURN_IF_ERROR(SyncPath(location));
  return info;
}

Result<std::vector<BackupInfo>> ListBackups(const std::string& location) {
  std::vector<BackupInfo> out;
  std::error_code ec;
  if (!fs::exists(location, ec)) return out;
  for (const auto& entry : fs::directory_iterator(location, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !ValidId(name)) continue;  // .partial, or not ours
    BULWARK_ASSIGN_OR_RETURN(Manifest m, ReadManifest(entry.path()));
    out.push_back(m.info);
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
  BULWARK_ASSIGN_OR_RETURN(Manifest m, ReadManifest(dir));
  BULWARK_RETURN_IF_ERROR(ReadData(
      dir, m, master, [](std::string_view) { return Status::Ok(); }, progress));
  return m.info;
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
  BULWARK_ASSIGN_OR_RETURN(Manifest m, ReadManifest(dir));
  // Checked first, so a wrong key leaves no directory behind.
  if (m.info.master_key_id != master.id()) {
    return Status::FailedPrecondition("backup " + id + " was written under master key " + m.info.master_key_id +
                                      ", not the one given (" + master.id() + ")");
  }
  auto restored = [&]() -> Status {
    StoreOptions options;
    options.path = target;
    BULWARK_ASSIGN_OR_RETURN(auto store, DocumentStore::Open(options, master.Clone()));
    BULWARK_RETURN_IF_ERROR(store->BeginStateImage());
    BULWARK_RETURN_IF_ERROR(ReadData(
        dir, m, master, [&](std::string_view chunk) { return store->AddStateImageChunk(chunk); }, progress));
    BULWARK_RETURN_IF_ERROR(store->FinishStateImage());
    BULWARK_RETURN_IF_ERROR(store->InstallStateImage().status());
    return store->SyncWal();
  }();
  if (!restored.ok()) {
    fs::remove_all(target, ec);
    return restored;
  }
  return m.info;
}

Result<size_t> RewrapBackups(const std::string& location, const crypto::MasterKey& old_master,
                             const crypto::MasterKey& new_master) {
  BULWARK_ASSIGN_OR_RETURN(auto all, ListBackups(location));
  size_t done = 0;
  for (const BackupInfo& b : all) {
    const fs::path dir = fs::path(location) / b.id;
    BULWARK_ASSIGN_OR_RETURN(Manifest m, ReadManifest(dir));
    if (m.info.master_key_id == new_master.id()) continue;
    if (m.info.master_key_id != old_master.id()) {
      return Status::FailedPrecondition("backup " + b.id + " is under master key " + m.info.master_key_id +
                                        ", neither the old nor the new one");
    }
    auto key = old_master.Unwrap(m.wrapped_key, KeyContext(b.id));
    if (!key.ok()) return Status::Corruption("backup " + b.id + ": its key does not unwrap under the master key");
    m.info.master_key_id = new_master.id();
    const fs::path tmp = dir / (std::string(kManifestFile) + ".tmp");
    {
      std::ofstream out(tmp, std::ios::binary);
      out << ToJson(m.info, new_master.Wrap(key->view(), KeyContext(b.id)), m.hash_hex) << "\n";
      if (!out) return Status::IOError("cannot write " + tmp.string());
    }
    BULWARK_RETURN_IF_ERROR(SyncPath(tmp));
    std::error_code ec;
    fs::rename(tmp, dir / kManifestFile, ec);
    if (ec) return Status::IOError("cannot replace the manifest of " + b.id + ": " + ec.message());
    BULWARK_RETURN_IF_ERROR(SyncPath(dir));
    ++done;
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
