#pragma once
// Continuous backup (issue 11): the archive of a replica set's command log,
// and point-in-time restore from a backup plus that archive (docs/backups.md).
//
// The archive lives beside the backups, in <location>/log/, as segments:
// sealed directories (storage/sealed_dir.h, encrypted under their own key,
// wrapped by the master key) named "l-<first index>-<last index>" that hold
// every command of the raft log from the first to the last index (entries
// without a command, such as a new leader's empty entry, are covered but not
// stored). Commands are kept as the log holds them, so items stay sealed
// under their data keys, and a restore replays them through the same
// DocumentStore::Apply that applied them first: the restored state is
// exactly the replica set's state after that prefix of its log.
//
// Point in time: restoring "to time T" gives the state after the longest
// prefix of the log whose commands were all proposed at or before T (each
// command carries its proposal time, taken on the leader's clock). It starts
// from the newest backup whose image was written before T and replays the
// archive from that backup's raft index on. Raft indexes are those of one
// replica set: a location's backups and archive must come from the same one
// (one region).
//
// Segments may overlap (two nodes that both believed they led, each
// archiving the same committed entries) but must not leave a hole: a hole
// (the log was compacted before it was archived) is refused by a restore
// that needs to cross it, naming the indexes.
//
// Thread safety: free functions; concurrent calls on different segments are
// fine. Errors: InvalidArgument (a bad request or target), NotFound (no such
// database or container at that time), FailedPrecondition (no backup or
// archive covers the time asked for, a hole, the wrong master key),
// Corruption (a segment or backup fails a check: nothing is restored), IOError.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/master_key.h"
#include "storage/backup.h"

namespace bulwark::storage {

// The archive's subdirectory of a backup location.
constexpr const char* kArchiveDir = "log";
// A segment holds at most this many bytes of commands (a larger single
// command still gets a segment of its own).
constexpr size_t kMaxSegmentBytes = 64 << 20;
// A write is applied within this long of its proposal, or its client has
// long had a timeout: the archive vouches for times up to this much before
// its newest segment was written.
constexpr int64_t kArchiveSettleMs = 10'000;

struct ArchivedCommand {
  uint64_t index = 0;   // raft index
  std::string command;  // the encoded WriteCommand, as the log holds it
};

struct ArchiveSegment {
  std::string id;
  uint64_t first_index = 0;  // raft indexes covered, inclusive
  uint64_t last_index = 0;
  uint64_t commands = 0;
  int64_t first_unix_ms = 0;  // proposal times of its first and last command
  int64_t last_unix_ms = 0;
  int64_t created_unix_ms = 0;  // when it was archived
  uint64_t bytes = 0;
  std::string master_key_id;
};

// Writes a segment covering [first_index, last_index]; `commands` must lie in
// it, in index order, and be decodable.
Result<ArchiveSegment> WriteArchiveSegment(const std::string& location, const crypto::MasterKey& master,
                                           uint64_t first_index, uint64_t last_index,
                                           const std::vector<ArchivedCommand>& commands);
// Every segment, ordered by first index (reads manifests only).
Result<std::vector<ArchiveSegment>> ListArchive(const std::string& location);
// Removes the segments that end before `index` (no restore needs them once
// the oldest backup kept is past it). Returns how many.
Result<size_t> PruneArchiveBefore(const std::string& location, uint64_t index);
// Crypto-shredding: removes every segment that starts at or before
// `purge_index` (0: every segment), since it may hold the purged keys.
Result<size_t> ForgetArchiveThrough(const std::string& location, uint64_t purge_index);
// After a master-key rotation: as RewrapBackups, for the segments.
Result<size_t> RewrapArchive(const std::string& location, const crypto::MasterKey& old_master,
                             const crypto::MasterKey& new_master);
// Copies one segment to another location's archive (the geo copy).
Status CopyArchiveSegment(const std::string& from_location, const std::string& to_location,
                          const std::string& segment_id);

// What VerifyArchive found: every segment read and authenticated.
struct ArchiveCheck {
  uint64_t segments = 0;
  uint64_t commands = 0;
  uint64_t first_index = 0;  // covered, from the oldest segment...
  uint64_t last_index = 0;   // ... to the newest
  // Holes after the oldest backup (or the first segment without a backup),
  // each as "after raft index X (the next segment starts at Y)".
  std::vector<std::string> holes;
};
// Reads every segment of `location`'s archive and checks it against its
// manifest, restoring nothing; then follows the chain for holes. Corruption
// for a damaged segment, FailedPrecondition for the wrong master key.
Result<ArchiveCheck> VerifyArchive(const std::string& location, const crypto::MasterKey& master);

// The times a location can restore to, from its backups and archive: from
// the oldest backup's image to where the archive stops vouching (see
// kArchiveSettleMs), or nothing if the archive does not continue the newest
// backup. Holes inside are not subtracted (a restore names them).
struct RestoreWindow {
  int64_t from_unix_ms = 0;
  int64_t to_unix_ms = 0;
};
Result<std::optional<RestoreWindow>> RestorableWindow(const std::string& location);

struct PointInTimeRequest {
  int64_t to_unix_ms = 0;
  std::string database;   // not empty: keep only this database...
  std::string container;  // ... and, if set, only this container of it
};

struct PointInTimeResult {
  BackupInfo base;             // the backup it started from
  uint64_t replayed = 0;       // commands applied from the archive
  uint64_t applied_index = 0;  // the raft index it restored to
  uint64_t glsn = 0;
  int64_t last_unix_ms = 0;  // proposal time of the last command replayed (0: none)
};

// Called with a line of progress now and then.
using RestoreProgress = std::function<void(const std::string& line)>;

// Restores the state at `request.to_unix_ms` into a new store at `target`
// (which must not exist), encrypted under `master`. With a database (and
// container) named, everything else is removed from the restored store
// afterwards; naming one that did not exist at that time is NotFound. On
// any error the target is removed again.
Result<PointInTimeResult> RestoreToTime(const std::string& location, const crypto::MasterKey& master,
                                        const PointInTimeRequest& request, const std::string& target,
                                        const RestoreProgress& progress = {});

}  // namespace bulwark::storage
