#include "storage/sealed_dir.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "common/clock.h"
#include "common/coding.h"
#include "crypto/secret.h"

namespace bulwark::storage::sealed {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kFormat = 1;
constexpr const char* kDataFile = "data";
constexpr const char* kManifestFile = "MANIFEST";
constexpr size_t kStreamHeader = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr size_t kStreamOverhead = crypto_secretstream_xchacha20poly1305_ABYTES;
constexpr size_t kMaxManifestBytes = 64 * 1024;
// The fields every manifest has; a caller's field may not reuse a name.
constexpr const char* kOwnFields[] = {"format",        "id",           "created_unix_ms", "chunks", "bytes",
                                      "master_key_id", "data_blake2b", "wrapped_key"};

// Binds a wrapped key to its directory: a key moved to another id does not
// unwrap. (Named "backup" for every kind: the ids' prefixes differ.)
std::string KeyContext(const std::string& id) { return "bulwark-backup:" + id; }

std::string Name(std::string_view what, const std::string& id) { return std::string(what) + " " + id; }

Result<std::string> ReadSmallFile(const fs::path& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path.string());
  std::string out(limit + 1, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  if (out.size() > limit) return Status::Corruption(path.string() + " is too large");
  return out;
}

std::string ToJson(const Manifest& m) {
  json j = m.fields.is_object() ? m.fields : json::object();
  j["format"] = kFormat;
  j["id"] = m.id;
  j["created_unix_ms"] = m.created_unix_ms;
  j["chunks"] = m.chunks;
  j["bytes"] = m.bytes;
  j["master_key_id"] = m.master_key_id;
  j["data_blake2b"] = m.hash_hex;
  j["wrapped_key"] = crypto::Base64Encode(m.wrapped_key);
  return j.dump(2);
}

Status WriteManifest(const fs::path& path, const Manifest& m) {
  std::ofstream out(path, std::ios::binary);
  out << ToJson(m) << "\n";
  out.close();
  if (!out) return Status::IOError("cannot write " + path.string());
  return SyncPath(path);
}

}  // namespace

Status SyncPath(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Status::IOError("cannot open " + path.string() + " to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError("cannot sync " + path.string());
  return Status::Ok();
}

Result<Manifest> Write(const std::string& location, const std::string& id, const crypto::MasterKey& master,
                       std::string_view what, const std::function<Status(const ChunkSink&)>& produce,
                       const std::function<json()>& fields, const Progress& progress, const FinishFn& finish) {
  std::error_code ec;
  fs::create_directories(location, ec);
  if (ec) return Status::IOError("cannot create " + location + ": " + ec.message());
  Manifest m;
  m.id = id;
  m.created_unix_ms = UnixNowMillis();
  m.master_key_id = master.id();
  const fs::path final_dir = fs::path(location) / id;
  // A name of its own: two nodes that both believe they lead may write the
  // same segment of a shared location at once.
  const fs::path dir = fs::path(location) / (id + ".partial-" + crypto::HexEncode(crypto::RandomBytes(4)));
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
  m.bytes = kStreamHeader;
  std::string frame;
  auto push = [&](std::string_view chunk, unsigned char tag) -> Status {
    if (chunk.size() > kMaxMessageBytes) {
      return Status::Internal(Name(what, id) + ": a message is over the size limit");
    }
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
    m.bytes += 4 + len;
    if (!out) return Status::IOError("cannot write " + (dir / kDataFile).string());
    if (progress) progress(m.bytes);
    return Status::Ok();
  };
  Status produced = produce([&](std::string_view chunk) {
    ++m.chunks;
    return push(chunk, 0);
  });
  if (!produced.ok()) return fail(produced);
  if (Status s = push({}, crypto_secretstream_xchacha20poly1305_TAG_FINAL); !s.ok()) return fail(s);
  out.close();
  if (!out) return fail(Status::IOError("cannot write " + (dir / kDataFile).string()));
  unsigned char digest[32];
  crypto_generichash_final(&hash, digest, sizeof(digest));
  m.hash_hex = crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
  m.wrapped_key = master.Wrap(key.view(), KeyContext(id));
  if (finish) {
    if (Status s = finish(dir, key.view()); !s.ok()) return fail(s);
  }
  m.fields = fields ? fields() : json::object();
  for (const char* name : kOwnFields) {
    if (m.fields.contains(name)) return fail(Status::Internal(std::string("manifest field clash: ") + name));
  }
  if (Status s = WriteManifest(dir / kManifestFile, m); !s.ok()) return fail(s);
  if (Status s = SyncPath(dir / kDataFile); !s.ok()) return fail(s);
  if (Status s = SyncPath(dir); !s.ok()) return fail(s);
  fs::rename(dir, final_dir, ec);
  if (ec && fs::exists(final_dir)) {
    // The other writer published the same content first; keep its copy.
    fs::remove_all(dir, ec);
    return ReadManifest(final_dir, what);
  }
  if (ec) return fail(Status::IOError("cannot publish " + Name(what, id) + ": " + ec.message()));
  BULWARK_RETURN_IF_ERROR(SyncPath(location));
  return m;
}

Result<size_t> RewrapAll(const std::vector<fs::path>& dirs, std::string_view what, const crypto::MasterKey& old_master,
                         const crypto::MasterKey& new_master) {
  size_t done = 0, failed = 0;
  Status first = Status::Ok();
  for (const fs::path& dir : dirs) {
    auto r = Rewrap(dir, what, old_master, new_master);
    if (r.ok()) {
      done += *r ? 1 : 0;
      continue;
    }
    if (failed++ == 0) first = r.status();
  }
  if (failed > 0) {
    return first.WithContext("re-wrapped " + std::to_string(done) + " " + std::string(what) + "s; " +
                             std::to_string(failed) + " could not be; the first");
  }
  return done;
}

Status Copy(const std::string& from_location, const std::string& to_location, const std::string& id) {
  std::error_code ec;
  const fs::path final_dir = fs::path(to_location) / id;
  if (fs::exists(final_dir, ec)) return Status::Ok();
  fs::create_directories(to_location, ec);
  const fs::path partial = fs::path(to_location) / (id + ".partial-" + crypto::HexEncode(crypto::RandomBytes(4)));
  auto fail = [&](Status s) {
    fs::remove_all(partial, ec);
    return s;
  };
  fs::copy(fs::path(from_location) / id, partial, fs::copy_options::recursive, ec);
  if (ec) return fail(Status::IOError("cannot copy " + id + " to " + to_location + ": " + ec.message()));
  for (const auto& entry : fs::directory_iterator(partial, ec)) {
    if (Status s = SyncPath(entry.path()); !s.ok()) return fail(s);
  }
  if (Status s = SyncPath(partial); !s.ok()) return fail(s);
  fs::rename(partial, final_dir, ec);
  if (ec && fs::exists(final_dir)) {
    fs::remove_all(partial, ec);
    return Status::Ok();
  }
  if (ec) return fail(Status::IOError("cannot publish " + id + " in " + to_location + ": " + ec.message()));
  return SyncPath(to_location);
}

Result<Manifest> ReadManifest(const fs::path& dir, std::string_view what) {
  BULWARK_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(dir / kManifestFile, kMaxManifestBytes));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const std::string where = (dir / kManifestFile).string();
  if (j.is_discarded() || !j.is_object()) return Status::Corruption(where + " is not a JSON object");
  try {
    if (j.at("format").get<int>() != kFormat)
      return Status::Corruption(where + ": unknown " + std::string(what) + " format");
    Manifest m;
    m.id = j.at("id").get<std::string>();
    m.created_unix_ms = j.at("created_unix_ms").get<int64_t>();
    m.chunks = j.at("chunks").get<uint64_t>();
    m.bytes = j.at("bytes").get<uint64_t>();
    m.master_key_id = j.at("master_key_id").get<std::string>();
    m.hash_hex = j.at("data_blake2b").get<std::string>();
    auto wrapped = crypto::Base64DecodeSecret(j.at("wrapped_key").get<std::string>());
    if (!wrapped.ok()) return Status::Corruption(where + ": the wrapped key is not base64");
    m.wrapped_key = std::string(wrapped->view());
    if (m.id != dir.filename().string()) return Status::Corruption(where + " names another " + std::string(what));
    for (const char* name : kOwnFields) j.erase(name);
    m.fields = std::move(j);
    return m;
  } catch (const json::exception& e) {
    return Status::Corruption(where + " is missing a field or has a wrong type: " + e.what());
  }
}

Result<crypto::SecretBytes> UnwrapKey(const Manifest& m, const crypto::MasterKey& master, std::string_view what) {
  const std::string name = Name(what, m.id);
  if (m.master_key_id != master.id()) {
    return Status::FailedPrecondition(name + " was written under master key " + m.master_key_id +
                                      ", not the one given (" + master.id() + ")");
  }
  auto key = master.Unwrap(m.wrapped_key, KeyContext(m.id));
  if (!key.ok()) return Status::Corruption(name + ": its key does not unwrap under the master key");
  return key;
}

Status ReadData(const fs::path& dir, const Manifest& m, const crypto::MasterKey& master, std::string_view what,
                const ChunkSink& sink, const Progress& progress) {
  const std::string name = Name(what, m.id);
  BULWARK_ASSIGN_OR_RETURN(crypto::SecretBytes key_bytes, UnwrapKey(m, master, what));
  const crypto::SecretBytes* key = &key_bytes;
  std::ifstream in(dir / kDataFile, std::ios::binary);
  if (!in) return Status::Corruption(name + " has no data file");
  unsigned char header[kStreamHeader];
  in.read(reinterpret_cast<char*>(header), kStreamHeader);
  if (static_cast<size_t>(in.gcount()) != kStreamHeader) return Status::Corruption(name + " is cut short");
  crypto_secretstream_xchacha20poly1305_state state;
  if (crypto_secretstream_xchacha20poly1305_init_pull(
          &state, header, reinterpret_cast<const unsigned char*>(key->view().data())) != 0) {
    return Status::Corruption(name + " has a bad stream header");
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
    if (in.gcount() != 4) return Status::Corruption(name + " is cut short");
    if (final_seen) return Status::Corruption(name + " has data after its end");
    std::string_view lv(reinterpret_cast<const char*>(len_bytes), 4);
    uint32_t len = 0;
    GetFixed32(lv, len);
    if (len < kStreamOverhead || len > kMaxMessageBytes + kStreamOverhead) {
      return Status::Corruption(name + " has a malformed message length");
    }
    frame.resize(len);
    in.read(frame.data(), len);
    if (static_cast<uint32_t>(in.gcount()) != len) return Status::Corruption(name + " is cut short");
    crypto_generichash_update(&hash, len_bytes, 4);
    crypto_generichash_update(&hash, reinterpret_cast<const unsigned char*>(frame.data()), len);
    plain.resize(len - kStreamOverhead);
    unsigned long long plain_len = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&state, reinterpret_cast<unsigned char*>(plain.data()), &plain_len,
                                                   &tag, reinterpret_cast<const unsigned char*>(frame.data()), len,
                                                   nullptr, 0) != 0) {
      return Status::Corruption(name + ": message " + std::to_string(chunks) +
                                " fails authentication (changed, reordered or from another " + std::string(what) + ")");
    }
    plain.resize(plain_len);
    bytes += 4 + len;
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
      final_seen = true;
      if (!plain.empty()) return Status::Corruption(name + ": its end marker carries data");
      continue;
    }
    ++chunks;
    BULWARK_RETURN_IF_ERROR(sink(plain));
    if (progress) progress(bytes);
  }
  if (!final_seen) return Status::Corruption(name + " is incomplete: its end marker is missing");
  unsigned char digest[32];
  crypto_generichash_final(&hash, digest, sizeof(digest));
  const std::string hex = crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
  if (chunks != m.chunks || bytes != m.bytes || hex != m.hash_hex) {
    return Status::Corruption(name + " does not match its manifest (chunks, size or hash)");
  }
  return Status::Ok();
}

Result<bool> Rewrap(const fs::path& dir, std::string_view what, const crypto::MasterKey& old_master,
                    const crypto::MasterKey& new_master) {
  BULWARK_ASSIGN_OR_RETURN(Manifest m, ReadManifest(dir, what));
  const std::string name = Name(what, m.id);
  if (m.master_key_id == new_master.id()) return false;
  if (m.master_key_id != old_master.id()) {
    return Status::FailedPrecondition(name + " is under master key " + m.master_key_id +
                                      ", neither the old nor the new one");
  }
  auto key = old_master.Unwrap(m.wrapped_key, KeyContext(m.id));
  if (!key.ok()) return Status::Corruption(name + ": its key does not unwrap under the master key");
  m.master_key_id = new_master.id();
  m.wrapped_key = new_master.Wrap(key->view(), KeyContext(m.id));
  const fs::path tmp = dir / (std::string(kManifestFile) + ".tmp");
  BULWARK_RETURN_IF_ERROR(WriteManifest(tmp, m));
  std::error_code ec;
  fs::rename(tmp, dir / kManifestFile, ec);
  if (ec) return Status::IOError("cannot replace the manifest of " + name + ": " + ec.message());
  BULWARK_RETURN_IF_ERROR(SyncPath(dir));
  return true;
}

}  // namespace bulwark::storage::sealed
