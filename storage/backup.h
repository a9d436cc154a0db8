#pragma once
// Backups of a DocumentStore: the foundation of issue 11 (docs/backups.md).
//
// A backup is one consistent state image of the store (WriteStateImage: one
// RocksDB snapshot, so it is taken while writes go on), written to a backup
// location (a directory for now; the functions below are the seam where an
// object store would go) as
//   <location>/<id>/data      libsodium secretstream (XChaCha20-Poly1305) of
//                             the image chunks under a fresh per-backup key;
//                             the last message is tagged FINAL, so a cut file
//                             is refused, and every byte is authenticated
//   <location>/<id>/MANIFEST  JSON: id, time, GLSN, raft index, chunk and
//                             byte counts, the BLAKE2b of `data`, and the
//                             per-backup key wrapped by the master key
// Only ciphertext is stored: item values stay sealed under their data keys
// inside the image, and the image itself (names, ids, the data keys) is
// encrypted under the backup key. Restoring needs the master key and
// nothing else. A backup is written under <id>.partial and renamed once its
// files are synced, so a listed backup is always complete.
//
// The directory format is storage/sealed_dir.h (shared with the continuous
// archive, storage/archive.h, which restores to a point in time from a
// backup plus the archived log). A backup's data keys are not in `data` but
// in its key catalog, <id>/KEYS (sealed under a subkey of the backup's key),
// so a purge can remove one container's keys from every backup
// (DropKeysFromBackups) and leave the rest restorable.
//
// Thread safety: free functions; concurrent calls on different backups are
// fine. Errors: InvalidArgument for a bad id or target, NotFound for a
// missing backup, Corruption for a backup that fails any check (nothing is
// restored from it), FailedPrecondition for the wrong master key, IOError.

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/master_key.h"

namespace bulwark::storage {

class DocumentStore;

// Image chunks are at most this large; a larger message in `data` is refused.
constexpr size_t kBackupChunkBytes = 1 << 20;  // = sealed::kChunkBytes

struct BackupInfo {
  std::string id;  // "b-<unix ms>-<8 hex>": sorts by time
  int64_t created_unix_ms = 0;
  uint64_t applied_index = 0;  // the image's raft index
  uint64_t glsn = 0;           // and its GLSN
  // The image holds only writes proposed before this time (measured once
  // it was written): the earliest point in time it can restore to.
  int64_t image_unix_ms = 0;
  uint64_t chunks = 0;
  uint64_t bytes = 0;  // of `data`
  std::string master_key_id;
};

// Called with the bytes written or read so far (for progress).
using BackupProgress = std::function<void(uint64_t bytes)>;

// With `fenced_for`, the backup leaves out what geo-fences keep from that
// region ("": a region in no fence), as a region image does
// (DocumentStore::WriteStateImage): the geo copy for another region.
Result<BackupInfo> WriteBackup(const DocumentStore& store, const crypto::MasterKey& master, const std::string& location,
                               const BackupProgress& progress = {}, const std::string* fenced_for = nullptr);
// Complete backups in `location`, oldest first (a partial one is skipped).
Result<std::vector<BackupInfo>> ListBackups(const std::string& location);
// Reads and authenticates every byte and checks it against the manifest,
// without restoring anything.
Result<BackupInfo> VerifyBackup(const std::string& location, const std::string& id, const crypto::MasterKey& master,
                                const BackupProgress& progress = {});
// Restores into a new store at `target` (which must not exist), encrypted
// under `master`. On any error the target is removed again: a backup is
// restored whole or not at all.
Result<BackupInfo> RestoreBackup(const std::string& location, const std::string& id, const crypto::MasterKey& master,
                                 const std::string& target, const BackupProgress& progress = {});
// After a master-key rotation: re-wraps every backup key in `location` from
// `old_master` to `new_master` (each manifest replaced atomically), so the
// backups restore with the new key alone. Backups already under the new key
// are left as they are. Returns how many it re-wrapped.
Result<size_t> RewrapBackups(const std::string& location, const crypto::MasterKey& old_master,
                             const crypto::MasterKey& new_master);
// Crypto-shredding: removes the data keys of the containers `rids` (hex
// internal ids) from every backup's key catalog in `location`, so no backup
// can open their items again; the backups stay usable for everything else.
// A backup written before key catalogs existed is removed instead. Returns
// how many keys were dropped.
Result<size_t> DropKeysFromBackups(const std::string& location, const crypto::MasterKey& master,
                                   const std::set<std::string>& rids);
// The geo copy: copies backup `id` from one location to another, published
// complete (fsync'd, then renamed). An existing copy is left alone.
Status CopyBackupTo(const std::string& from_location, const std::string& to_location, const std::string& id);
// Removes all but the newest `keep` backups; returns how many it removed.
Result<size_t> PruneBackups(const std::string& location, size_t keep);

}  // namespace bulwark::storage
