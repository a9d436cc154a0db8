#include "storage/records.h"

#include "common/coding.h"
#include "crypto/secret.h"
#include "storage/item_rules.h"

namespace bulwark::storage {

std::string AccessUserPrefix(std::string_view db) {
  return std::string(kAccessMetaPrefix) + "u/" + std::string(db) + "/";
}
namespace {

constexpr uint8_t kItemRecordFormatV1 = 1;
constexpr uint8_t kChangeRecordFormatV1 = 1;
constexpr uint8_t kContinuationFormatV1 = 1;
constexpr size_t kMaxEtagBytes = 128;
constexpr size_t kMaxNameBytes = 1024;

}  // namespace

std::string DatabaseMetaKey(std::string_view db) {
  std::string k(kDatabaseMetaPrefix);
  k += db;
  return k;
}

std::string ContainerMetaPrefix(std::string_view db) {
  std::string k(kContainerMetaPrefixAll);
  k += db;
  k += '/';
  return k;
}

std::string ContainerMetaKey(std::string_view db, std::string_view container) {
  return ContainerMetaPrefix(db) + std::string(container);
}

std::string DeletedContainerPrefix(std::string_view db, std::string_view container) {
  std::string k(kDeletedContainerMetaPrefix);
  k += db;
  k += '/';
  k += container;
  k += '/';
  return k;
}

std::string FenceMetaKey(std::string_view rid_hex) { return std::string(kFenceMetaPrefix) + std::string(rid_hex); }

std::string DeletedContainerKey(std::string_view db, std::string_view container, std::string_view rid_hex) {
  return DeletedContainerPrefix(db, container) + std::string(rid_hex);
}

std::string DataKeyMetaKey(std::string_view rid_hex, uint32_t version) {
  std::string k(kDataKeyMetaPrefix);
  k += rid_hex;
  k += '/';
  PutBigEndian32(k, version);
  return k;
}

bool ParseDataKeyMetaKey(std::string_view key, std::string& rid_hex, uint32_t& version) {
  if (key.substr(0, kDataKeyMetaPrefix.size()) != kDataKeyMetaPrefix) return false;
  key.remove_prefix(kDataKeyMetaPrefix.size());
  const size_t slash = key.find('/');
  if (slash == std::string_view::npos || slash != 2 * kContainerRidBytes) return false;
  rid_hex = std::string(key.substr(0, slash));
  key.remove_prefix(slash + 1);
  return GetBigEndian32(key, version) && key.empty();
}

std::string ItemPartitionPrefix(std::string_view rid, std::string_view partition_key) {
  std::string k(rid);
  PutBigEndian32(k, static_cast<uint32_t>(partition_key.size()));
  k += partition_key;
  return k;
}

std::string ItemKey(std::string_view rid, std::string_view partition_key, std::string_view id) {
  std::string k = ItemPartitionPrefix(rid, partition_key);
  k += id;
  return k;
}

bool ParseItemKey(std::string_view key, std::string_view& rid, std::string_view& partition_key, std::string_view& id) {
  if (key.size() < kContainerRidBytes) return false;
  rid = key.substr(0, kContainerRidBytes);
  key.remove_prefix(kContainerRidBytes);
  uint32_t len = 0;
  if (!GetBigEndian32(key, len) || len > key.size()) return false;
  partition_key = key.substr(0, len);
  id = key.substr(len);
  return true;
}

std::string LsnKey(uint64_t lsn) {
  std::string k;
  PutBigEndian64(k, lsn);
  return k;
}

Result<uint64_t> ParseLsnKey(std::string_view key) {
  uint64_t lsn = 0;
  if (!GetBigEndian64(key, lsn) || !key.empty()) return Status::Corruption("malformed change-log key");
  return lsn;
}

std::string EncodeItemRecord(std::string_view etag, int64_t ts, std::string_view body) {
  std::string out;
  out.reserve(1 + 4 + etag.size() + 8 + body.size());
  out.push_back(static_cast<char>(kItemRecordFormatV1));
  PutLengthPrefixed(out, etag);
  PutFixed64(out, static_cast<uint64_t>(ts));
  out += body;
  return out;
}

Result<ItemRecord> DecodeItemRecord(std::string_view plaintext) { return DecodeItemRecord(std::string(plaintext)); }

Result<ItemRecord> DecodeItemRecord(std::string&& plaintext) {
  std::string_view rest(plaintext);
  if (rest.empty() || static_cast<uint8_t>(rest[0]) != kItemRecordFormatV1) {
    return Status::Corruption("item record has an unknown format");
  }
  rest.remove_prefix(1);
  std::string_view etag;
  uint64_t ts = 0;
  if (!GetLengthPrefixed(rest, etag, kMaxEtagBytes) || !GetFixed64(rest, ts)) {
    return Status::Corruption("item record is truncated");
  }
  ItemRecord record{std::string(etag), static_cast<int64_t>(ts), {}};
  plaintext.erase(0, plaintext.size() - rest.size());
  record.body = std::move(plaintext);
  return record;
}

std::string ChangeRecord::Encode() const {
  std::string out;
  out.reserve(64 + database.size() + container.size() + partition_key.size() + item_id.size() + sealed_value.size());
  out.push_back(static_cast<char>(kChangeRecordFormatV1));
  out.push_back(static_cast<char>(op));
  for (std::string_view f : {std::string_view(database), std::string_view(container), std::string_view(container_rid),
                             std::string_view(partition_key), std::string_view(item_id), std::string_view(etag)}) {
    PutLengthPrefixed(out, f);
  }
  PutFixed64(out, static_cast<uint64_t>(ts));
  PutLengthPrefixed(out, sealed_value);
  if (glsn != 0) PutFixed64(out, glsn);  // absent before geo-replication
  return out;
}

Result<ChangeRecord> ChangeRecord::Decode(uint64_t lsn, std::string_view in) {
  const Status bad = Status::Corruption("change-log record " + std::to_string(lsn) + " is malformed");
  if (in.size() < 2 || static_cast<uint8_t>(in[0]) != kChangeRecordFormatV1) return bad;
  const auto op = static_cast<uint8_t>(in[1]);
  if (op < static_cast<uint8_t>(ChangeOp::kCreateDatabase) || op > static_cast<uint8_t>(ChangeOp::kPurgeContainer)) {
    return bad;
  }
  in.remove_prefix(2);
  ChangeRecord r;
  r.lsn = lsn;
  r.op = static_cast<ChangeOp>(op);
  std::string_view f[6];
  for (auto& field : f) {
    if (!GetLengthPrefixed(in, field, kMaxNameBytes + kMaxPartitionKeyBytes)) return bad;
  }
  uint64_t ts = 0;
  std::string_view value;
  if (!GetFixed64(in, ts) || !GetLengthPrefixed(in, value, 2 * kMaxItemBytes)) return bad;
  if (!in.empty() && (!GetFixed64(in, r.glsn) || !in.empty())) return bad;
  r.database = f[0];
  r.container = f[1];
  r.container_rid = f[2];
  r.partition_key = f[3];
  r.item_id = f[4];
  r.etag = f[5];
  r.ts = static_cast<int64_t>(ts);
  r.sealed_value = value;
  return r;
}

std::string ConflictPrefix(std::string_view db, std::string_view container) {
  std::string k(kConflictMetaPrefix);
  k.append(db);
  k.push_back('\0');
  k.append(container);
  k.push_back('\0');
  return k;
}

std::string ConflictRecord::Encode() const {
  std::string out;
  out.push_back(static_cast<char>(1));  // format
  PutFixed64(out, epoch);
  PutFixed64(out, static_cast<uint64_t>(captured_unix_ms));
  PutFixed64(out, change.lsn);
  out.append(change.Encode());
  return out;
}

Result<ConflictRecord> ConflictRecord::Decode(std::string_view in) {
  ConflictRecord r;
  uint64_t ms = 0, lsn = 0;
  if (in.empty() || in[0] != 1) return Status::Corruption("a conflict record is malformed");
  in.remove_prefix(1);
  if (!GetFixed64(in, r.epoch) || !GetFixed64(in, ms) || !GetFixed64(in, lsn)) {
    return Status::Corruption("a conflict record is malformed");
  }
  r.captured_unix_ms = static_cast<int64_t>(ms);
  BULWARK_ASSIGN_OR_RETURN(r.change, ChangeRecord::Decode(lsn, in));
  return r;
}

std::string EncodeContinuation(std::string_view last_key) {
  std::string raw;
  raw.push_back(static_cast<char>(kContinuationFormatV1));
  raw += last_key;
  return crypto::Base64Encode(raw);
}

Result<std::string> DecodeContinuation(std::string_view token) {
  if (token.size() > kMaxContinuationBytes) return Status::InvalidArgument("continuation token is too long");
  auto raw = crypto::Base64Decode(token);
  if (!raw.ok() || raw->empty() || static_cast<uint8_t>((*raw)[0]) != kContinuationFormatV1) {
    return Status::InvalidArgument("continuation token is malformed");
  }
  return raw->substr(1);
}

}  // namespace bulwark::storage
