#pragma once
// The audit log's on-disk format (audit_log.h describes it): segment headers,
// encrypted frames, record plaintext, the hash chain and the signatures, and
// a reader that walks one segment. Internal to the audit log; the writer and
// Verify/Query share it so they can never disagree about a byte.
//
// Segment header, little-endian:
//   "BWAUDIT1" | u64 segment number | u32 node length | node |
//   i64 creation time (unix ms) | u64 previous index | 32-byte previous hash |
//   16-byte key id | 24-byte nonce | 16-byte tag
// The tag is XChaCha20-Poly1305 over an empty plaintext with everything before
// the nonce as associated data, so an edited header byte fails to open. The
// key id (keyed BLAKE2b of a constant) lets Verify say "wrong key" rather than
// "edited" without ever printing a key.
// Frame: u32 ciphertext length | 24-byte nonce | ciphertext (plaintext + tag),
// associated data u64 segment number | u64 record index.
//
// Files on disk are untrusted: every length is checked against its limit
// before anything is allocated for it.
//
// Thread safety: pure functions; a SegmentReader belongs to one thread.

#include <sodium.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "crypto/secret.h"
#include "security/audit_log.h"

namespace bulwark::security::audit {

constexpr std::string_view kSegmentMagic = "BWAUDIT1";
constexpr std::string_view kSegmentSuffix = ".audit";
// A segment is written under this suffix and renamed into place once its
// header is synced, so a segment file always has a whole header.
constexpr std::string_view kTempSuffix = ".tmp";
// The writer holds an exclusive flock on this file in the directory: a second
// writer is refused, and Verify can tell whether a writer is running.
constexpr std::string_view kLockFileName = "LOCK";
constexpr size_t kSegmentNumberDigits = 8;
constexpr size_t kHashBytes = crypto_generichash_BYTES;
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kKeyIdBytes = crypto_generichash_BYTES_MIN;
constexpr size_t kSignatureBytes = crypto_sign_BYTES;
constexpr size_t kMaxNodeNameBytes = 255;
constexpr size_t kFrameLengthBytes = 4;
constexpr size_t kMaxFrameCiphertextBytes = kMaxAuditRecordBytes + kTagBytes;
constexpr size_t kMaxFrameBytes = kFrameLengthBytes + kNonceBytes + kMaxFrameCiphertextBytes;

using Hash = std::array<uint8_t, kHashBytes>;

// A place in the hash chain: a record's index and hash. Index 0 with the zero
// hash is the start of the log.
struct ChainPoint {
  uint64_t index = 0;
  Hash hash{};
  bool operator==(const ChainPoint&) const = default;
};

// The keys in the forms the format uses, derived once from AuditKeys.
struct AuditCrypto {
  crypto::SecretBytes encryption_key;
  crypto::SecretBytes signing_secret_key;  // crypto_sign_SECRETKEYBYTES, from the seed
  std::array<uint8_t, crypto_sign_PUBLICKEYBYTES> public_key{};
  std::array<uint8_t, kKeyIdBytes> key_id{};

  // InvalidArgument when a key has the wrong size (the message names which,
  // never its bytes).
  static Result<AuditCrypto> From(const AuditKeys& keys);
};

struct SegmentHeader {
  uint64_t number = 0;
  std::string node;
  int64_t created_unix_ms = 0;
  ChainPoint previous;  // the last record before this segment
};

// What a record is for. Events come from Append (and "AuditDropped" from the
// writer); the others are the log's own signed bookkeeping.
enum class RecordKind { kEvent, kSeal, kCheckpoint, kPruned, kRecovered };

std::string_view OperationName(RecordKind kind);  // "AuditSeal", ...; "" for events

// A decoded record with what the chain and the signatures need.
struct StoredRecord {
  AuditRecord record;
  RecordKind kind = RecordKind::kEvent;
  ChainPoint previous;   // from "i" - 1 and "prev"
  ChainPoint signed_at;  // the point a signature covers: `previous`, or what a pruned record names
  std::string signature;
  Hash hash{};
};

// "00000003" and "00000003.audit"; ParseSegmentFileName returns 0 for a name
// that is not a segment (segment numbers start at 1).
std::string SegmentLabel(uint64_t number);
std::string SegmentFileName(uint64_t number);
uint64_t ParseSegmentFileName(std::string_view name);
// The segment numbers in `dir`, oldest first. IOError if it cannot be read.
Result<std::vector<uint64_t>> ListSegments(const std::string& dir);
std::string SegmentPath(const std::string& dir, uint64_t number);

std::string EncodeHeader(const SegmentHeader& header, const AuditCrypto& keys);

// The record's plaintext: compact JSON. Fields over their limits are cut (at
// a UTF-8 boundary) until the whole fits in kMaxAuditRecordBytes.
std::string EncodeRecord(const AuditRecord& record, RecordKind kind, const Hash& previous_hash,
                         const ChainPoint& signed_at, std::string_view signature);
Hash ChainHash(const Hash& previous_hash, std::string_view plaintext);
// Ed25519 over a domain string, the kind, the segment number and the point.
std::string Sign(const AuditCrypto& keys, RecordKind kind, uint64_t segment, const ChainPoint& point);
bool VerifySignature(const AuditCrypto& keys, RecordKind kind, uint64_t segment, const ChainPoint& point,
                     std::string_view signature);
// Appends a frame holding `plaintext` to `out`.
void AppendFrame(const AuditCrypto& keys, uint64_t segment, uint64_t index, std::string_view plaintext,
                 std::string& out);

// Reads one segment file front to back, decrypting each frame and checking
// that it continues the chain from the header's previous point. Problems come
// back as Corruption naming the segment and the record (or byte offset).
class SegmentReader {
 public:
  enum class Step {
    kRecord,   // `record()` holds the next record
    kEnd,      // the file ends cleanly after the last frame
    kPartial,  // the file ends inside a frame (being written, or cut)
  };

  // IOError if the file cannot be opened; Corruption for a bad header.
  static Result<std::unique_ptr<SegmentReader>> Open(const std::string& dir, uint64_t number, const AuditCrypto& keys);
  ~SegmentReader();
  SegmentReader(const SegmentReader&) = delete;
  SegmentReader& operator=(const SegmentReader&) = delete;

  Result<Step> Next();
  const SegmentHeader& header() const { return header_; }
  const StoredRecord& record() const { return record_; }
  // The last record read, or the header's previous point before any.
  const ChainPoint& last() const { return last_; }
  uint64_t offset() const { return offset_; }  // bytes consumed so far
  std::string Where(uint64_t index) const;     // "segment 00000003 record 17"

 private:
  SegmentReader(std::FILE* file, const AuditCrypto& keys) : file_(file), keys_(keys) {}
  Status ReadHeader(uint64_t number);
  // Reads `size` bytes into `out`; false when the file ends first.
  bool ReadExact(size_t size, std::string& out);
  // Why a frame for `index` does not open: names a neighbouring record it
  // does open as, when one does (a deletion or a reordering).
  Status DiagnoseFrame(uint64_t index, uint64_t frame_offset, std::string_view nonce, std::string_view ciphertext);

  std::FILE* file_;
  const AuditCrypto& keys_;
  SegmentHeader header_;
  StoredRecord record_;
  ChainPoint last_;
  uint64_t offset_ = 0;
};

}  // namespace bulwark::security::audit
