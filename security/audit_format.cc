#include "security/audit_format.h"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/coding.h"

namespace bulwark::security::audit {
namespace {

using nlohmann::json;

constexpr std::string_view kKeyIdContext = "bulwark.audit.key-id.v1";
constexpr std::string_view kSignatureContext = "bulwark.audit.signature.v1";
// The header up to the node name: magic, number and the name's length.
constexpr size_t kHeaderPrefixBytes = 8 + 8 + 4;
// After the node name: time, previous index and hash, key id, nonce, tag.
constexpr size_t kHeaderSuffixBytes = 8 + 8 + kHashBytes + kKeyIdBytes + kNonceBytes + kTagBytes;
// How far around an unreadable frame's expected index DiagnoseFrame looks for
// the index it does open as. Enough to name a swap or a short deletion; a
// bound so a damaged file costs at most this many decryptions per report.
constexpr uint64_t kDiagnoseWindow = 64;
// Each halving of the longest field shrinks the record; this bounds the loop
// far above what the field limits below ever need.
constexpr int kMaxTruncationRounds = 64;

// Per-field limits, so one huge field cannot crowd out the others. Their sum
// stays under kMaxAuditRecordBytes for plain ASCII; escaping can still push a
// record over, which the halving loop in EncodeRecord handles.
constexpr size_t kMaxPrincipalBytes = 1024;
constexpr size_t kMaxSourceBytes = 256;
constexpr size_t kMaxOperationBytes = 256;
constexpr size_t kMaxResourceBytes = 2048;
constexpr size_t kMaxCodeBytes = 64;
constexpr size_t kMaxDetailBytes = 8192;

const unsigned char* Bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
std::string_view View(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

// Cuts `s` to at most `max_bytes` without splitting a UTF-8 sequence.
void CutUtf8(std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return;
  size_t n = max_bytes;
  while (n > 0 && (static_cast<uint8_t>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
}

std::string_view KindTag(RecordKind kind) {
  switch (kind) {
    case RecordKind::kSeal:
      return "seal";
    case RecordKind::kCheckpoint:
      return "checkpoint";
    case RecordKind::kPruned:
      return "pruned";
    case RecordKind::kRecovered:
      return "recovered";
    case RecordKind::kEvent:
      break;
  }
  return "";
}

std::string SignedMessage(RecordKind kind, uint64_t segment, const ChainPoint& point) {
  std::string message(kSignatureContext);
  message.push_back(static_cast<char>(kind));
  PutFixed64(message, segment);
  PutFixed64(message, point.index);
  message.append(View(point.hash.data(), point.hash.size()));
  return message;
}

std::string AssociatedData(uint64_t segment, uint64_t index) {
  std::string ad;
  PutFixed64(ad, segment);
  PutFixed64(ad, index);
  return ad;
}

bool OpenFrame(const AuditCrypto& keys, uint64_t segment, uint64_t index, std::string_view nonce,
               std::string_view ciphertext, std::string& plaintext) {
  assert(ciphertext.size() >= kTagBytes);
  const std::string ad = AssociatedData(segment, index);
  plaintext.resize(ciphertext.size() - kTagBytes);
  unsigned long long plaintext_size = 0;
  return crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(plaintext.data()), &plaintext_size,
                                                    nullptr, Bytes(ciphertext), ciphertext.size(), Bytes(ad), ad.size(),
                                                    Bytes(nonce), keys.encryption_key.data()) == 0;
}

bool GetString(const json& j, const char* key, std::string& out) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return false;
  out = it->get<std::string>();
  return true;
}

template <typename Int>
bool GetInteger(const json& j, const char* key, Int& out) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return false;
  out = it->get<Int>();
  return true;
}

bool GetHash(const json& j, const char* key, Hash& out) {
  std::string hex;
  if (!GetString(j, key, hex)) return false;
  Result<std::string> raw = crypto::HexDecode(hex);
  if (!raw.ok() || raw->size() != kHashBytes) return false;
  std::memcpy(out.data(), raw->data(), kHashBytes);
  return true;
}

// Decrypted bytes are authentic, so a record that does not parse means a bug
// or a leaked key; it is still reported as corruption, never trusted.
Result<StoredRecord> DecodeRecord(std::string_view plaintext) {
  const json j = json::parse(plaintext, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Corruption("record is not a JSON object");
  StoredRecord out;
  AuditRecord& r = out.record;
  if (!GetInteger(j, "i", r.index) || r.index == 0 || !GetHash(j, "prev", out.previous.hash) ||
      !GetInteger(j, "t", r.time_unix_ms) || !GetString(j, "node", r.node) || !GetString(j, "principal", r.principal) ||
      !GetString(j, "source", r.source) || !GetString(j, "op", r.operation) || !GetString(j, "resource", r.resource) ||
      !GetString(j, "code", r.code) || !GetInteger(j, "lat", r.latency_us) || !GetString(j, "detail", r.detail)) {
    return Status::Corruption("record has a missing or mistyped field");
  }
  out.previous.index = r.index - 1;
  out.signed_at = out.previous;
  std::string kind;
  if (!GetString(j, "k", kind)) return out;  // an event
  if (kind == KindTag(RecordKind::kSeal)) {
    out.kind = RecordKind::kSeal;
  } else if (kind == KindTag(RecordKind::kCheckpoint)) {
    out.kind = RecordKind::kCheckpoint;
  } else if (kind == KindTag(RecordKind::kRecovered)) {
    out.kind = RecordKind::kRecovered;
  } else if (kind == KindTag(RecordKind::kPruned)) {
    out.kind = RecordKind::kPruned;
    if (!GetInteger(j, "pi", out.signed_at.index) || !GetHash(j, "ph", out.signed_at.hash)) {
      return Status::Corruption("pruned record does not name what it pruned");
    }
  } else {
    return Status::Corruption("record has an unknown kind");
  }
  std::string signature_base64;
  if (!GetString(j, "sig", signature_base64)) return Status::Corruption("signed record has no signature");
  Result<std::string> signature = crypto::Base64Decode(signature_base64);
  if (!signature.ok() || signature->size() != kSignatureBytes) {
    return Status::Corruption("signed record has a malformed signature");
  }
  out.signature = std::move(signature).value();
  return out;
}

}  // namespace

Result<AuditCrypto> AuditCrypto::From(const AuditKeys& keys) {
  BULWARK_RETURN_IF_ERROR(crypto::InitSodium());
  if (keys.encryption_key.size() != kAuditKeyBytes) {
    return Status::InvalidArgument("audit encryption key must be " + std::to_string(kAuditKeyBytes) + " bytes");
  }
  if (keys.signing_seed.size() != kAuditSigningSeedBytes) {
    return Status::InvalidArgument("audit signing seed must be " + std::to_string(kAuditSigningSeedBytes) + " bytes");
  }
  AuditCrypto out;
  out.encryption_key = keys.encryption_key.Clone();
  out.signing_secret_key = crypto::SecretBytes(crypto_sign_SECRETKEYBYTES);
  crypto_sign_seed_keypair(out.public_key.data(), out.signing_secret_key.data(), keys.signing_seed.data());
  crypto_generichash(out.key_id.data(), out.key_id.size(), Bytes(kKeyIdContext), kKeyIdContext.size(),
                     keys.encryption_key.data(), keys.encryption_key.size());
  return out;
}

std::string_view OperationName(RecordKind kind) {
  switch (kind) {
    case RecordKind::kSeal:
      return "AuditSeal";
    case RecordKind::kCheckpoint:
      return "AuditCheckpoint";
    case RecordKind::kPruned:
      return "AuditPruned";
    case RecordKind::kRecovered:
      return "AuditRecovered";
    case RecordKind::kEvent:
      break;
  }
  return "";
}

std::string SegmentLabel(uint64_t number) {
  char label[32];
  std::snprintf(label, sizeof(label), "%08llu", static_cast<unsigned long long>(number));
  return label;
}

std::string SegmentFileName(uint64_t number) { return SegmentLabel(number) + std::string(kSegmentSuffix); }

std::string SegmentPath(const std::string& dir, uint64_t number) { return dir + "/" + SegmentFileName(number); }

uint64_t ParseSegmentFileName(std::string_view name) {
  if (name.size() != kSegmentNumberDigits + kSegmentSuffix.size() || !name.ends_with(kSegmentSuffix)) return 0;
  uint64_t number = 0;
  for (char c : name.substr(0, kSegmentNumberDigits)) {
    if (c < '0' || c > '9') return 0;
    number = number * 10 + static_cast<uint64_t>(c - '0');
  }
  return number;
}

Result<std::vector<uint64_t>> ListSegments(const std::string& dir) {
  std::error_code ec;
  std::vector<uint64_t> numbers;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const uint64_t number = ParseSegmentFileName(it->path().filename().string());
    if (number != 0) numbers.push_back(number);
  }
  if (ec) return Status::IOError("cannot list audit directory '" + dir + "': " + ec.message());
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

std::string EncodeHeader(const SegmentHeader& header, const AuditCrypto& keys) {
  assert(header.node.size() <= kMaxNodeNameBytes);
  std::string out(kSegmentMagic);
  PutFixed64(out, header.number);
  PutLengthPrefixed(out, header.node);
  PutFixed64(out, static_cast<uint64_t>(header.created_unix_ms));
  PutFixed64(out, header.previous.index);
  out.append(View(header.previous.hash.data(), kHashBytes));
  out.append(View(keys.key_id.data(), kKeyIdBytes));
  const std::string nonce = crypto::RandomBytes(kNonceBytes);
  unsigned char tag[kTagBytes];
  unsigned long long tag_size = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(tag, &tag_size, nullptr, 0, Bytes(out), out.size(), nullptr, Bytes(nonce),
                                             keys.encryption_key.data());
  out.append(nonce);
  out.append(View(tag, kTagBytes));
  return out;
}

std::string EncodeRecord(const AuditRecord& record, RecordKind kind, const Hash& previous_hash,
                         const ChainPoint& signed_at, std::string_view signature) {
  AuditRecord r = record;
  CutUtf8(r.node, kMaxNodeNameBytes);
  CutUtf8(r.principal, kMaxPrincipalBytes);
  CutUtf8(r.source, kMaxSourceBytes);
  CutUtf8(r.operation, kMaxOperationBytes);
  CutUtf8(r.resource, kMaxResourceBytes);
  CutUtf8(r.code, kMaxCodeBytes);
  CutUtf8(r.detail, kMaxDetailBytes);
  for (int round = 0; round < kMaxTruncationRounds; ++round) {
    json j = {{"i", r.index},
              {"prev", crypto::HexEncode(View(previous_hash.data(), kHashBytes))},
              {"t", r.time_unix_ms},
              {"node", r.node},
              {"principal", r.principal},
              {"source", r.source},
              {"op", r.operation},
              {"resource", r.resource},
              {"code", r.code},
              {"lat", r.latency_us},
              {"detail", r.detail}};
    if (kind != RecordKind::kEvent) {
      j["k"] = KindTag(kind);
      j["sig"] = crypto::Base64Encode(signature);
    }
    if (kind == RecordKind::kPruned) {
      j["pi"] = signed_at.index;
      j["ph"] = crypto::HexEncode(View(signed_at.hash.data(), kHashBytes));
    }
    // Invalid UTF-8 from a caller becomes U+FFFD instead of an exception.
    std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() <= kMaxAuditRecordBytes) return text;
    // Escaping made it too long: halve the longest field and try again.
    std::string* fields[] = {&r.node, &r.principal, &r.source, &r.operation, &r.resource, &r.code, &r.detail};
    std::string* longest =
        *std::max_element(std::begin(fields), std::end(fields),
                          [](const std::string* a, const std::string* b) { return a->size() < b->size(); });
    CutUtf8(*longest, longest->size() / 2);
  }
  assert(false && "record fields did not shrink under kMaxAuditRecordBytes");
  return {};
}

Hash ChainHash(const Hash& previous_hash, std::string_view plaintext) {
  Hash out{};
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, out.size());
  crypto_generichash_update(&state, previous_hash.data(), previous_hash.size());
  crypto_generichash_update(&state, Bytes(plaintext), plaintext.size());
  crypto_generichash_final(&state, out.data(), out.size());
  return out;
}

std::string Sign(const AuditCrypto& keys, RecordKind kind, uint64_t segment, const ChainPoint& point) {
  const std::string message = SignedMessage(kind, segment, point);
  std::string signature(kSignatureBytes, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(signature.data()), nullptr, Bytes(message), message.size(),
                       keys.signing_secret_key.data());
  return signature;
}

bool VerifySignature(const AuditCrypto& keys, RecordKind kind, uint64_t segment, const ChainPoint& point,
                     std::string_view signature) {
  if (signature.size() != kSignatureBytes) return false;
  const std::string message = SignedMessage(kind, segment, point);
  return crypto_sign_verify_detached(Bytes(signature), Bytes(message), message.size(), keys.public_key.data()) == 0;
}

void AppendFrame(const AuditCrypto& keys, uint64_t segment, uint64_t index, std::string_view plaintext,
                 std::string& out) {
  assert(plaintext.size() <= kMaxAuditRecordBytes);
  const std::string ad = AssociatedData(segment, index);
  const std::string nonce = crypto::RandomBytes(kNonceBytes);
  PutFixed32(out, static_cast<uint32_t>(plaintext.size() + kTagBytes));
  out.append(nonce);
  const size_t start = out.size();
  out.resize(start + plaintext.size() + kTagBytes);
  unsigned long long ciphertext_size = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(reinterpret_cast<unsigned char*>(out.data() + start), &ciphertext_size,
                                             Bytes(plaintext), plaintext.size(), Bytes(ad), ad.size(), nullptr,
                                             Bytes(nonce), keys.encryption_key.data());
}

Result<std::unique_ptr<SegmentReader>> SegmentReader::Open(const std::string& dir, uint64_t number,
                                                           const AuditCrypto& keys) {
  const std::string path = SegmentPath(dir, number);
  std::FILE* file = std::fopen(path.c_str(), "rbe");
  if (file == nullptr) {
    return Status::IOError("cannot open audit segment '" + path + "': " + std::strerror(errno));
  }
  std::unique_ptr<SegmentReader> reader(new SegmentReader(file, keys));
  BULWARK_RETURN_IF_ERROR(reader->ReadHeader(number));
  return reader;
}

SegmentReader::~SegmentReader() { std::fclose(file_); }

bool SegmentReader::ReadExact(size_t size, std::string& out) {
  out.resize(size);
  const size_t got = std::fread(out.data(), 1, size, file_);
  out.resize(got);
  offset_ += got;
  return got == size;
}

std::string SegmentReader::Where(uint64_t index) const {
  return "segment " + SegmentLabel(header_.number) + " record " + std::to_string(index);
}

Status SegmentReader::ReadHeader(uint64_t number) {
  const std::string where = "segment " + SegmentLabel(number) + " header";
  std::string prefix, suffix;
  if (!ReadExact(kHeaderPrefixBytes, prefix)) return Status::Corruption(where + ": file too short");
  std::string_view in = prefix;
  if (!in.starts_with(kSegmentMagic)) return Status::Corruption(where + ": not an audit segment (bad magic)");
  in.remove_prefix(kSegmentMagic.size());
  uint32_t node_bytes = 0;
  GetFixed64(in, header_.number);
  GetFixed32(in, node_bytes);
  if (node_bytes > kMaxNodeNameBytes) return Status::Corruption(where + ": node name length out of range");
  if (!ReadExact(node_bytes + kHeaderSuffixBytes, suffix)) return Status::Corruption(where + ": file too short");
  in = suffix;
  header_.node.assign(in.substr(0, node_bytes));
  in.remove_prefix(node_bytes);
  uint64_t created = 0;
  GetFixed64(in, created);
  header_.created_unix_ms = static_cast<int64_t>(created);
  GetFixed64(in, header_.previous.index);
  std::memcpy(header_.previous.hash.data(), in.data(), kHashBytes);
  in.remove_prefix(kHashBytes);
  const bool same_key = sodium_memcmp(in.data(), keys_.key_id.data(), kKeyIdBytes) == 0;
  in.remove_prefix(kKeyIdBytes);
  const std::string_view nonce = in.substr(0, kNonceBytes);
  const std::string_view tag = in.substr(kNonceBytes, kTagBytes);
  const std::string authenticated = prefix + suffix.substr(0, suffix.size() - kNonceBytes - kTagBytes);
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(nullptr, nullptr, nullptr, Bytes(tag), tag.size(),
                                                 Bytes(authenticated), authenticated.size(), Bytes(nonce),
                                                 keys_.encryption_key.data()) != 0) {
    return Status::Corruption(where + (same_key ? ": fails authentication (edited)"
                                                : ": written with a different encryption key, or edited"));
  }
  if (header_.number != number) {
    return Status::Corruption(where + ": names segment " + SegmentLabel(header_.number) + " (file renamed)");
  }
  last_ = header_.previous;
  return Status::Ok();
}

Result<SegmentReader::Step> SegmentReader::Next() {
  const uint64_t frame_offset = offset_;
  const uint64_t index = last_.index + 1;
  std::string length_bytes, body;
  if (!ReadExact(kFrameLengthBytes, length_bytes)) return length_bytes.empty() ? Step::kEnd : Step::kPartial;
  std::string_view in = length_bytes;
  uint32_t ciphertext_bytes = 0;
  GetFixed32(in, ciphertext_bytes);
  if (ciphertext_bytes < kTagBytes || ciphertext_bytes > kMaxFrameCiphertextBytes) {
    return Status::Corruption(Where(index) + " at byte " + std::to_string(frame_offset) + ": frame length " +
                              std::to_string(ciphertext_bytes) + " out of range");
  }
  if (!ReadExact(kNonceBytes + ciphertext_bytes, body)) return Step::kPartial;
  const std::string_view nonce = std::string_view(body).substr(0, kNonceBytes);
  const std::string_view ciphertext = std::string_view(body).substr(kNonceBytes);
  std::string plaintext;
  if (!OpenFrame(keys_, header_.number, index, nonce, ciphertext, plaintext)) {
    return DiagnoseFrame(index, frame_offset, nonce, ciphertext);
  }
  Result<StoredRecord> record = DecodeRecord(plaintext);
  if (!record.ok()) return record.status().WithContext(Where(index));
  if (record->record.index != index || record->previous.hash != last_.hash) {
    return Status::Corruption(Where(index) + ": hash chain broken");
  }
  record_ = std::move(record).value();
  record_.hash = ChainHash(last_.hash, plaintext);
  last_ = {index, record_.hash};
  return Step::kRecord;
}

Status SegmentReader::DiagnoseFrame(uint64_t index, uint64_t frame_offset, std::string_view nonce,
                                    std::string_view ciphertext) {
  const std::string where = Where(index) + " at byte " + std::to_string(frame_offset);
  const uint64_t first = header_.previous.index + 1;
  const uint64_t low = index - std::min(index - first, kDiagnoseWindow);
  std::string plaintext;
  for (uint64_t candidate = low; candidate <= index + kDiagnoseWindow; ++candidate) {
    if (candidate == index || !OpenFrame(keys_, header_.number, candidate, nonce, ciphertext, plaintext)) continue;
    return Status::Corruption(where + ": holds record " + std::to_string(candidate) +
                              (candidate > index ? " (records deleted or reordered)" : " (records reordered)"));
  }
  return Status::Corruption(where + ": cannot decrypt (edited, or a different encryption key)");
}

}  // namespace bulwark::security::audit
