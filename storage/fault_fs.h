#pragma once
// Test hook for the chaos harness's disk faults (docs/chaos.md): a RocksDB
// FileSystem wrapper under the page encryption that
//   - journals what reached stable storage: each file created, each sync
//     with the file's size at that moment, renames, deletions and
//     truncations, so that after a kill -9 DropUnsyncedData can put every
//     file back to what a power cut would have left (the kernel keeps
//     unsynced writes of a killed process; a power cut does not);
//   - injects I/O errors on demand: failed fsyncs, failed writes, or a full
//     disk (writes fail with NoSpace), read from a small control file.
//
// It is off unless the environment has BULWARK_TEST_FS_FAULTS=1 when the
// store opens (a node logs a warning when it is on). The journal and the
// control file live in FsFaultDir(store path), beside the store.
//
// What the model leaves out (the harness only needs a power cut's worst
// usual case): directory entries are taken as durable once made (rename and
// creation), a file deleted stays deleted, and files written outside RocksDB
// (the store-key file, which is fsynced with its directory) are not
// journalled.
//
// Thread safety: the wrapper may be used by RocksDB from any thread; the
// free functions are for one process driving a stopped node.

#include <memory>
#include <string>

#include "common/status.h"

namespace rocksdb {
class FileSystem;
}

namespace bulwark::storage {

constexpr const char* kFsFaultsEnv = "BULWARK_TEST_FS_FAULTS";
// How often the wrapper re-reads the control file.
constexpr int kFsFaultPollMs = 100;
// Largest control file read (it holds one word).
constexpr size_t kFsFaultControlMaxBytes = 64;

enum class FsFault {
  kNone,
  kSyncError,   // Sync/Fsync of files and directories fail with IOError
  kWriteError,  // Append fails with IOError, nothing written
  kNoSpace,     // Append fails with NoSpace, nothing written (a full disk)
};
const char* FsFaultName(FsFault fault);

// True when the environment turns the hook on.
bool FsFaultsEnabled();
// The journal and control directory of the store at `store_path`:
// "<store_path>.faults".
std::string FsFaultDir(const std::string& store_path);

// Wraps `base`; creates `fault_dir` and starts a new journal there (a new
// process's files start out as what the last one left). IOError if the
// directory or the journal cannot be made.
Result<std::shared_ptr<rocksdb::FileSystem>> NewFaultFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                                const std::string& fault_dir);

// Makes the wrappers using `fault_dir` inject `fault` from their next poll
// (within kFsFaultPollMs). IOError if the control file cannot be written.
Status SetFsFault(const std::string& fault_dir, FsFault fault);

struct DropReport {
  int files_truncated = 0;
  int files_deleted = 0;  // created and never synced
  uint64_t bytes_dropped = 0;
};
// For a node that was killed: truncates every journalled file to its size at
// its last sync and deletes the files created and never synced, then
// empties the journal. Run it only while no process uses the store.
// Corruption for a malformed journal; IOError if a file cannot be cut.
Result<DropReport> DropUnsyncedData(const std::string& fault_dir);

}  // namespace bulwark::storage
