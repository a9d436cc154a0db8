#include "crypto/keyring.h"

#include <mutex>

#include "common/coding.h"

namespace bulwark::crypto {
namespace {

constexpr uint8_t kRecordFormatV1 = 1;
constexpr size_t kMaxRecordFieldBytes = 1024;

// What a wrapped DEK is bound to: a record only opens for its container and version.
std::string WrapContext(std::string_view container_rid, uint32_t version) {
  std::string ctx = "bulwark.dek.v1|";
  ctx += container_rid;
  ctx += '|';
  ctx += std::to_string(version);
  return ctx;
}

}  // namespace

std::string WrappedDataKey::EncodeValue() const {
  std::string out;
  out.push_back(static_cast<char>(kRecordFormatV1));
  PutFixed64(out, static_cast<uint64_t>(created_unix_s));
  PutLengthPrefixed(out, master_key_id);
  PutLengthPrefixed(out, wrapped);
  return out;
}

Result<WrappedDataKey> WrappedDataKey::DecodeValue(std::string_view container_rid, uint32_t version,
                                                   std::string_view value) {
  const Status bad = Status::Corruption("data key record of container " + std::string(container_rid) + " v" +
                                        std::to_string(version) + " is malformed");
  if (value.empty() || static_cast<uint8_t>(value[0]) != kRecordFormatV1) return bad;
  value.remove_prefix(1);
  WrappedDataKey rec;
  rec.container_rid = container_rid;
  rec.version = version;
  uint64_t created = 0;
  std::string_view id, wrapped;
  if (!GetFixed64(value, created) || !GetLengthPrefixed(value, id, kMaxRecordFieldBytes) ||
      !GetLengthPrefixed(value, wrapped, kMaxRecordFieldBytes) || !value.empty()) {
    return bad;
  }
  rec.created_unix_s = static_cast<int64_t>(created);
  rec.master_key_id = id;
  rec.wrapped = wrapped;
  return rec;
}

std::shared_ptr<const MasterKey> Keyring::master() const {
  std::shared_lock lock(mu_);
  return master_;
}

std::string Keyring::master_key_id() const { return master()->id(); }

WrappedDataKey Keyring::WrapKey(const MasterKey& master, std::string_view container_rid, const DataKey& key,
                                int64_t now_unix_s) const {
  WrappedDataKey rec;
  rec.container_rid = container_rid;
  rec.version = key.version;
  rec.master_key_id = master.id();
  rec.created_unix_s = key.created_unix_s != 0 ? key.created_unix_s : now_unix_s;
  rec.wrapped = master.Wrap(key.key.view(), WrapContext(container_rid, key.version));
  return rec;
}

Result<WrappedDataKey> Keyring::CreateDataKey(std::string_view container_rid, int64_t now_unix_s) {
  auto key = std::make_shared<DataKey>(DataKey{1, SecretBytes::Random(kDataKeyBytes), now_unix_s});
  std::unique_lock lock(mu_);
  auto& versions = containers_[std::string(container_rid)];
  if (!versions.empty()) return Status::AlreadyExists("container " + std::string(container_rid) + " has keys");
  versions.emplace(1, key);
  return WrapKey(*master_, container_rid, *key, now_unix_s);
}

Result<WrappedDataKey> Keyring::RotateDataKey(std::string_view container_rid, int64_t now_unix_s) {
  std::unique_lock lock(mu_);
  auto it = containers_.find(container_rid);
  if (it == containers_.end() || it->second.empty()) {
    return Status::NotFound("container " + std::string(container_rid) + " has no data key");
  }
  const uint32_t next = it->second.rbegin()->first + 1;
  auto key = std::make_shared<DataKey>(DataKey{next, SecretBytes::Random(kDataKeyBytes), now_unix_s});
  it->second.emplace(next, key);
  return WrapKey(*master_, container_rid, *key, now_unix_s);
}

Result<WrappedDataKey> Keyring::AddDataKey(std::string_view container_rid, uint32_t version, std::string_view key,
                                           int64_t created_unix_s) {
  if (key.size() != kDataKeyBytes) return Status::InvalidArgument("a data key must be 32 bytes");
  auto dek = std::make_shared<DataKey>(DataKey{version, SecretBytes::CopyFrom(key), created_unix_s});
  std::unique_lock lock(mu_);
  auto& versions = containers_[std::string(container_rid)];
  if (versions.count(version) != 0) {
    return Status::AlreadyExists("container " + std::string(container_rid) + " already has data key v" +
                                 std::to_string(version));
  }
  versions.emplace(version, dek);
  return WrapKey(*master_, container_rid, *dek, created_unix_s);
}

Result<WrappedDataKey> Keyring::WrapDataKey(std::string_view container_rid, uint32_t version, std::string_view key,
                                            int64_t created_unix_s) const {
  if (key.size() != kDataKeyBytes) return Status::InvalidArgument("a data key must be 32 bytes");
  DataKey dek{version, SecretBytes::CopyFrom(key), created_unix_s};
  return WrapKey(*master(), container_rid, dek, created_unix_s);
}

void Keyring::Clear() {
  std::unique_lock lock(mu_);
  containers_.clear();
}

void Keyring::Forget(std::string_view container_rid) {
  std::unique_lock lock(mu_);
  auto it = containers_.find(container_rid);
  if (it != containers_.end()) containers_.erase(it);
}

Result<SecretBytes> Keyring::UnwrapDataKey(const WrappedDataKey& record) const {
  auto m = master();
  if (record.master_key_id != m->id()) {
    return Status::FailedPrecondition("data key of container " + record.container_rid + " v" +
                                      std::to_string(record.version) + " is wrapped by master key " +
                                      record.master_key_id + ", but the loaded master key is " + m->id());
  }
  auto secret = m->Unwrap(record.wrapped, WrapContext(record.container_rid, record.version));
  if (!secret.ok()) return Status(secret.status()).WithContext("data key of container " + record.container_rid);
  if (secret->size() != kDataKeyBytes) return Status::Corruption("data key has the wrong length");
  return secret;
}

Result<WrappedDataKey> Keyring::RewrapDataKey(const WrappedDataKey& record, const MasterKey& next) const {
  BULWARK_ASSIGN_OR_RETURN(SecretBytes secret, UnwrapDataKey(record));
  WrappedDataKey out = record;
  out.master_key_id = next.id();
  out.wrapped = next.Wrap(secret.view(), WrapContext(record.container_rid, record.version));
  return out;
}

Status Keyring::Load(const WrappedDataKey& record) {
  BULWARK_ASSIGN_OR_RETURN(SecretBytes secret, UnwrapDataKey(record));
  auto key = std::make_shared<DataKey>(DataKey{record.version, std::move(secret), record.created_unix_s});
  std::unique_lock lock(mu_);
  containers_[record.container_rid][record.version] = std::move(key);
  return Status::Ok();
}

std::shared_ptr<const DataKey> Keyring::Current(std::string_view container_rid) const {
  std::shared_lock lock(mu_);
  auto it = containers_.find(container_rid);
  if (it == containers_.end() || it->second.empty()) return nullptr;
  return it->second.rbegin()->second;
}

std::shared_ptr<const DataKey> Keyring::Find(std::string_view container_rid, uint32_t version) const {
  std::shared_lock lock(mu_);
  auto it = containers_.find(container_rid);
  if (it == containers_.end()) return nullptr;
  auto v = it->second.find(version);
  return v == it->second.end() ? nullptr : v->second;
}

std::vector<uint32_t> Keyring::Versions(std::string_view container_rid) const {
  std::shared_lock lock(mu_);
  std::vector<uint32_t> out;
  auto it = containers_.find(container_rid);
  if (it != containers_.end()) {
    for (const auto& [v, _] : it->second) out.push_back(v);
  }
  return out;
}

std::vector<WrappedDataKey> Keyring::RewrapAll(const MasterKey& new_master, int64_t now_unix_s) const {
  std::shared_lock lock(mu_);
  std::vector<WrappedDataKey> out;
  for (const auto& [rid, versions] : containers_) {
    for (const auto& [v, key] : versions) out.push_back(WrapKey(new_master, rid, *key, now_unix_s));
  }
  return out;
}

void Keyring::CommitMasterKey(MasterKey new_master) {
  auto m = std::make_shared<const MasterKey>(std::move(new_master));
  std::unique_lock lock(mu_);
  master_ = std::move(m);
}

std::string Keyring::WrapSecret(std::string_view secret, std::string_view context) const {
  return master()->Wrap(secret, context);
}

Result<SecretBytes> Keyring::UnwrapSecret(std::string_view wrapped, std::string_view context) const {
  return master()->Unwrap(wrapped, context);
}

}  // namespace bulwark::crypto
