#pragma once
// Internal to storage: the sealed directory that backups (storage/backup.h)
// and continuous-archive segments (storage/archive.h) are both made of.
//
//   <location>/<id>/data      libsodium secretstream (XChaCha20-Poly1305) of
//                             length-prefixed messages under a fresh key;
//                             the last message is tagged FINAL, so a cut
//                             file is refused and every byte authenticated
//   <location>/<id>/MANIFEST  JSON: id, time, message and byte counts, the
//                             BLAKE2b of `data`, the key wrapped by the master
//                             key (bound to the id), and the caller's fields
//
// A directory is written as <id>.partial, its files and itself fsync'd, then
// renamed: a listed one is complete.
//
// Thread safety: free functions; concurrent calls on different ids are fine.
// Errors: Corruption for anything that fails a check (the reader hands out
// no chunk it has not authenticated, but a caller that streams chunks on
// must undo them itself), FailedPrecondition for the wrong master key,
// IOError.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "crypto/master_key.h"
#include "crypto/secret.h"

namespace bulwark::storage::sealed {

// Writers aim for chunks of this size...
constexpr size_t kChunkBytes = 1 << 20;
// ... but one record larger than that (a 2 MiB item with its sealing
// overhead, in an image) travels as a message of its own: messages up to
// this size are accepted, larger ones refused.
constexpr size_t kMaxMessageBytes = 20 << 20;

using ChunkSink = std::function<Status(std::string_view chunk)>;
using Progress = std::function<void(uint64_t bytes)>;

struct Manifest {
  std::string id;
  int64_t created_unix_ms = 0;
  uint64_t chunks = 0;
  uint64_t bytes = 0;  // of `data`
  std::string master_key_id;
  std::string hash_hex;
  std::string wrapped_key;
  nlohmann::json fields;  // the caller's own (an object)
};

// Writes <location>/<id>. `produce` gets a sink for chunks (each at most
// kMaxMessageBytes, preferably kChunkBytes) and must call it for the whole content; `fields` is called
// after it, for manifest fields that depend on what was written. On error
// nothing is left behind. `what` names the thing in messages ("backup").
// `finish`, if set, may add files to the directory before it is published;
// it gets the directory's own key (for files sealed beside `data`).
using FinishFn = std::function<Status(const std::filesystem::path& dir, std::string_view key)>;
Result<Manifest> Write(const std::string& location, const std::string& id, const crypto::MasterKey& master,
                       std::string_view what, const std::function<Status(const ChunkSink&)>& produce,
                       const std::function<nlohmann::json()>& fields, const Progress& progress = {},
                       const FinishFn& finish = {});

// The directory's own key, unwrapped (FailedPrecondition for another master
// key, Corruption if it does not unwrap).
Result<crypto::SecretBytes> UnwrapKey(const Manifest& m, const crypto::MasterKey& master, std::string_view what);

Result<Manifest> ReadManifest(const std::filesystem::path& dir, std::string_view what);

// Authenticates every message of `data` and hands each chunk to `sink`, in
// order; then checks counts and hash against the manifest.
Status ReadData(const std::filesystem::path& dir, const Manifest& m, const crypto::MasterKey& master,
                std::string_view what, const ChunkSink& sink, const Progress& progress = {});

// Re-wraps the directory's key from `old_master` to `new_master` (manifest
// replaced atomically). False if it was already under `new_master`.
Result<bool> Rewrap(const std::filesystem::path& dir, std::string_view what, const crypto::MasterKey& old_master,
                    const crypto::MasterKey& new_master);

// Rewrap for each directory, going on past one that fails (so one damaged
// directory does not leave the others under a key about to be retired).
// Returns how many were re-wrapped; if any failed, an error that counts them
// and names the first.
Result<size_t> RewrapAll(const std::vector<std::filesystem::path>& dirs, std::string_view what,
                         const crypto::MasterKey& old_master, const crypto::MasterKey& new_master);

Status SyncPath(const std::filesystem::path& path);

// Copies the published directory <from_location>/<id> to <to_location>/<id>
// (the geo copy): files and directory fsync'd before it is renamed into
// place, so a listed copy is complete. An existing copy is left alone.
Status Copy(const std::string& from_location, const std::string& to_location, const std::string& id);

}  // namespace bulwark::storage::sealed
