#pragma once
// Keyring: every container's data keys (DEKs), by version, unwrapped in
// secret memory, and the master key that wraps them.
//
// The keyring holds no storage. Creating or rotating a DEK returns a
// WrappedDataKey record that the caller persists (atomically with whatever
// made it necessary), and at start-up the caller loads every record back.
// A record is bound to its container and version (the wrap's associated
// data), so a record copied under another container does not load.
//
// Thread safety: all methods are safe to call concurrently. Keys are handed
// out as shared_ptr<const DataKey>, so a rotation or a Forget never frees a key
// an in-flight operation still uses.

#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "crypto/item_seal.h"
#include "crypto/master_key.h"

namespace bulwark::crypto {

// The persistent form of one DEK version. Holds no secret in the clear.
struct WrappedDataKey {
  std::string container_rid;
  uint32_t version = 0;
  std::string master_key_id;  // which master key wrapped it (public fingerprint)
  int64_t created_unix_s = 0;
  std::string wrapped;  // MasterKey::Wrap output

  // Binary encoding of everything but container_rid and version, which the
  // caller keeps in the record's key.
  std::string EncodeValue() const;
  static Result<WrappedDataKey> DecodeValue(std::string_view container_rid, uint32_t version, std::string_view value);
};

class Keyring {
 public:
  explicit Keyring(MasterKey master) : master_(std::make_shared<const MasterKey>(std::move(master))) {}

  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;

  std::string master_key_id() const;

  // Creates version 1 of a new container's DEK. AlreadyExists if it has keys.
  Result<WrappedDataKey> CreateDataKey(std::string_view container_rid, int64_t now_unix_s);
  // Adds the next version; new writes use it, older versions stay readable.
  // NotFound if the container has no keys.
  Result<WrappedDataKey> RotateDataKey(std::string_view container_rid, int64_t now_unix_s);
  // Adds a DEK version chosen elsewhere (a replicated command carries it):
  // the ring takes a copy and returns the record to persist. AlreadyExists if
  // the version is present; InvalidArgument for a key of the wrong length.
  Result<WrappedDataKey> AddDataKey(std::string_view container_rid, uint32_t version, std::string_view key,
                                    int64_t created_unix_s);
  // Wraps a DEK under the current master key without adding it to the ring
  // (a received state image is staged before it is installed).
  Result<WrappedDataKey> WrapDataKey(std::string_view container_rid, uint32_t version, std::string_view key,
                                     int64_t created_unix_s) const;
  // The raw key of a persisted record, without adding it to the ring (a
  // staged image is served to a peer). Same errors as Load.
  Result<SecretBytes> UnwrapDataKey(const WrappedDataKey& record) const;
  // The record wrapped under `next` instead (a staged image across a
  // master-key rotation). Same errors as Load.
  Result<WrappedDataKey> RewrapDataKey(const WrappedDataKey& record, const MasterKey& next) const;
  // Forgets every DEK (before reloading the ring from storage).
  void Clear();
  // Forgets one container's DEKs (a purge). The secret memory is wiped once
  // the last in-flight user of each key lets go of it.
  void Forget(std::string_view container_rid);
  // Unwraps a persisted record into the ring. FailedPrecondition if it was
  // wrapped by another master key; Corruption if it fails authentication.
  Status Load(const WrappedDataKey& record);

  // The version new writes use; null if the container has no keys.
  std::shared_ptr<const DataKey> Current(std::string_view container_rid) const;
  // A specific version; null if unknown.
  std::shared_ptr<const DataKey> Find(std::string_view container_rid, uint32_t version) const;
  std::vector<uint32_t> Versions(std::string_view container_rid) const;

  // Re-wraps every DEK under `new_master` and returns the records to persist.
  // Nothing in the ring changes until CommitMasterKey, so a failed persist
  // leaves the old key in charge.
  std::vector<WrappedDataKey> RewrapAll(const MasterKey& new_master, int64_t now_unix_s) const;
  void CommitMasterKey(MasterKey new_master);

  // Wraps/unwraps an arbitrary secret under the current master key (e.g. the
  // store's key check). Same errors as MasterKey.
  std::string WrapSecret(std::string_view secret, std::string_view context) const;
  Result<SecretBytes> UnwrapSecret(std::string_view wrapped, std::string_view context) const;

 private:
  using Versions_ = std::map<uint32_t, std::shared_ptr<const DataKey>>;
  WrappedDataKey WrapKey(const MasterKey& master, std::string_view container_rid, const DataKey& key,
                         int64_t now_unix_s) const;
  std::shared_ptr<const MasterKey> master() const;

  // Transparent hashing: lookups by string_view allocate nothing (hot path).
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  mutable std::shared_mutex mu_;
  std::shared_ptr<const MasterKey> master_;                                           // GUARDED_BY(mu_)
  std::unordered_map<std::string, Versions_, NameHash, std::equal_to<>> containers_;  // GUARDED_BY(mu_)
};

}  // namespace bulwark::crypto
