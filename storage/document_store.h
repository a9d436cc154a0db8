#pragma once
// DocumentStore: databases > containers > JSON items in RocksDB, every item
// sealed with its container's data key, every write recorded in an ordered
// change log.
//
// Ownership: Open returns the only owner; destroying it closes RocksDB.
// Thread safety: every method may be called concurrently. Writes to one item
// are serialised (lock striping); database and container changes exclude
// item operations for their duration.
// Durability: a write is durable when its call returns (WAL fsync'd; many
// concurrent writers share one fsync). StoreOptions::sync_writes = false
// trades that for speed: a write then survives a process crash but not a
// power loss or kernel crash.
// Errors (Status codes): InvalidArgument for bad input, TooLarge for an item
// over 2 MiB, NotFound, AlreadyExists, PreconditionFailed for an etag
// mismatch, FailedPrecondition for a wrong master key at open, Corruption for
// stored bytes that fail authentication, IOError/Unavailable for the disk.
// No error leaves a stored item changed or lost.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "crypto/master_key.h"
#include "storage/records.h"

namespace bulwark::storage {

constexpr size_t kDefaultPageItems = 100;
constexpr size_t kMaxPageItems = 1000;
constexpr size_t kMaxPageBytes = 4 * 1024 * 1024;  // a page may exceed it by one item

struct StoreOptions {
  std::string path;         // the data directory; created if missing
  bool sync_writes = true;  // fsync the WAL before a write returns
  // Benchmarks only: store items unsealed, to measure what sealing costs. It
  // is recorded at creation; a store never opens in the other mode.
  bool seal_items = true;
  // Benchmarks only: write RocksDB's files in the clear (no page layer).
  // A store never opens in the other mode.
  bool encrypt_files = true;
};

struct DatabaseInfo {
  std::string id;
  std::string etag;
  int64_t ts = 0;
};

struct ContainerInfo {
  std::string database;
  std::string id;
  std::string partition_key_path;
  std::string rid;  // internal id: 8 raw bytes, never reused
  std::string etag;
  int64_t ts = 0;
};

struct ItemResult {
  std::string json;  // the stored item, with _etag and _ts
  std::string etag;
  int64_t ts = 0;
  uint64_t lsn = 0;  // change-log position of the write (0 for reads)
};

struct ListOptions {
  // Canonical partition-key JSON (see CanonicalPartitionKey); all if empty.
  std::optional<std::string> partition_key;
  size_t max_items = kDefaultPageItems;  // 1..kMaxPageItems
  std::string continuation;              // from the previous page; empty for the first
};

// A named secret the store keeps for the node (e.g. an account key).
struct StoredSecret {
  crypto::SecretBytes value;
  int64_t created_unix_s = 0;
};

// How many of the store's files, and bytes, each store-key version protects.
struct StoreKeyUsage {
  uint32_t version = 0;
  bool current = false;
  uint64_t files = 0;
  uint64_t bytes = 0;
};

struct ItemPage {
  std::vector<std::string> items;  // JSON texts
  std::string continuation;        // empty when there are no more
};

class DocumentStore {
 public:
  // Opens or creates the store at options.path. A new store records the
  // master key's check value; an existing one refuses any other master key
  // (FailedPrecondition) before changing anything.
  static Result<std::unique_ptr<DocumentStore>> Open(const StoreOptions& options, crypto::MasterKey master_key);
  ~DocumentStore();
  DocumentStore(const DocumentStore&) = delete;
  DocumentStore& operator=(const DocumentStore&) = delete;

  // Databases.
  Result<DatabaseInfo> CreateDatabase(std::string_view db);
  Result<DatabaseInfo> ReadDatabase(std::string_view db) const;
  Result<std::vector<DatabaseInfo>> ListDatabases() const;
  // Deletes the database, its containers and their items.
  Status DeleteDatabase(std::string_view db);

  // Containers. `partition_key_path` is like "/tenant".
  Result<ContainerInfo> CreateContainer(std::string_view db, std::string_view container,
                                        std::string_view partition_key_path);
  Result<ContainerInfo> ReadContainer(std::string_view db, std::string_view container) const;
  Result<std::vector<ContainerInfo>> ListContainers(std::string_view db) const;
  Status DeleteContainer(std::string_view db, std::string_view container);

  // Items. `json` is the item's JSON text; the partition key comes from it.
  Result<ItemResult> CreateItem(std::string_view db, std::string_view container, std::string_view json);
  Result<ItemResult> UpsertItem(std::string_view db, std::string_view container, std::string_view json);
  // Replaces an existing item. `id` must equal the item's id; `if_match`, if
  // not empty, must equal its current etag.
  Result<ItemResult> ReplaceItem(std::string_view db, std::string_view container, std::string_view id,
                                 std::string_view json, std::string_view if_match = {});
  // `partition_key` is the value as JSON text, e.g. "\"acme\"" or "42".
  Result<ItemResult> ReadItem(std::string_view db, std::string_view container, std::string_view partition_key,
                              std::string_view id) const;
  Status DeleteItem(std::string_view db, std::string_view container, std::string_view partition_key,
                    std::string_view id, std::string_view if_match = {});
  Result<ItemPage> ListItems(std::string_view db, std::string_view container, const ListOptions& options) const;

  // Keys. A new DEK version seals new writes; old items stay readable.
  Result<uint32_t> RotateDataKey(std::string_view db, std::string_view container);
  std::vector<uint32_t> DataKeyVersions(std::string_view db, std::string_view container) const;
  // Re-wraps every key under `new_master` atomically, online. Afterwards the
  // store opens with only the new key.
  Status RotateMasterKey(crypto::MasterKey new_master);
  std::string master_key_id() const;

  // The secret called `name` (e.g. "account-key/primary"); on first use,
  // `size` fresh random bytes. Stored only wrapped by the master key (and
  // re-wrapped by RotateMasterKey). InvalidArgument for a bad name.
  Result<StoredSecret> LoadOrCreateSecret(std::string_view name, size_t size);

  // Approximate bytes of live data on disk (SST files of every column family).
  uint64_t ApproximateDiskBytes() const;
  // Adds a store-key version, online: new files use it at once; old files
  // keep theirs until rewritten (Compact rewrites every SST; the WAL and the
  // MANIFEST roll over by themselves). Returns the new version.
  // FailedPrecondition for a store without page encryption.
  Result<uint32_t> RotateStoreKey();
  // Files and bytes under the store directory per store-key version, read
  // from each file's prefix: the progress of a rotation. Files that are not
  // RocksDB's (the key file) are not counted.
  Result<std::vector<StoreKeyUsage>> StoreKeyUsageReport() const;

  // Flushes every memtable and compacts every column family to the bottom,
  // rewriting every SST file (used by key rotation, tests and benchmarks).
  Status Compact();

  // The change log, from `from_lsn` (inclusive), at most `max_records`.
  Result<std::vector<ChangeRecord>> ReadChangeLog(uint64_t from_lsn, size_t max_records) const;
  uint64_t last_lsn() const;

  struct Impl;  // opaque; defined in storage/store_impl.h, private to storage/

 private:
  explicit DocumentStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::storage
