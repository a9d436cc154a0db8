#pragma once
// The tamper-evident audit log: one per node, append-only, in segment files
// under a directory of its own (docs/security.md, "Audit log").
//
// Segment file "NNNNNNNN.audit" (8 decimal digits, increasing):
//   header: magic "BWAUDIT1", segment number, node name, creation time, and
//           the index and hash of the last record before this segment (so a
//           missing segment breaks the chain);
//   frames: u32 length | 24-byte nonce | XChaCha20-Poly1305 ciphertext+tag of
//           one record (associated data: segment number and record index),
//           so the file holds no plaintext and an edited byte fails to open.
// Record plaintext: compact JSON with the global index "i", the previous
// record's hash "prev" (hex), and the record's fields. Each record's hash is
// BLAKE2b-256(prev hash || plaintext): an edit, a deletion or a reordering
// breaks the chain at that record.
// Seals: the writer appends a signed seal record (Ed25519 over segment
// number, last index and hash) when it closes a segment (size, age, or a
// clean Close), and a signed checkpoint every checkpoint_interval while
// records arrive, so everything up to the last seal or checkpoint is covered
// by a signature. A segment other than the newest that does not end in a
// seal was truncated (or its node crashed): Verify reports it.
// Retention drops whole segments only, oldest first, and appends a signed
// "pruned" record naming the last index and hash they held, so Verify can
// tell retention from deletion.
// The byte layout is in audit_format.h. The writer holds an exclusive flock
// on "LOCK" in the directory, so a second writer is refused and Verify knows
// whether the newest segment may still be growing.
//
// Ownership: AuditLog owns its writer thread and files. Thread safety: Append
// may be called from any thread (it only queues); the rest from one owner.
// Errors: Open and Flush return IOError for file trouble (Open also
// FailedPrecondition when another writer holds the directory, and Corruption
// when the newest segment's header does not open, e.g. a wrong key). After a
// write fails the writer writes nothing more (a torn segment must not be
// continued): later records count as dropped and Flush returns the error.
// Verify and Query return Corruption naming the first bad place ("segment
// 00000003 record 17: ...") and never a key.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/secret.h"

namespace bulwark::security {

constexpr size_t kAuditKeyBytes = 32;              // the encryption key
constexpr size_t kAuditSigningSeedBytes = 32;      // the Ed25519 seed
constexpr size_t kMaxAuditRecordBytes = 16 << 10;  // a record's plaintext; longer fields are cut

struct AuditRecord {
  uint64_t index = 0;        // set by the log (global, from 1)
  int64_t time_unix_ms = 0;  // when the operation finished
  std::string node;
  std::string principal;  // "key:primary", "token:dbs/D/users/U/permissions/P", "identity:SUB", "cert:SAN", "-"
  std::string source;     // the caller's address ("ipv4:127.0.0.1:5000")
  std::string operation;  // the RPC ("CreateItem"), or an event ("AddressBlocked", "AuditDropped")
  std::string resource;   // "dbs/D/colls/C/docs/I", "" for the account
  std::string code;       // "OK", "PermissionDenied", ...
  int64_t latency_us = 0;
  std::string detail;  // optional context, never a secret
};

// The node's audit keys, from its keyring (stored wrapped by its master key).
struct AuditKeys {
  crypto::SecretBytes encryption_key;  // kAuditKeyBytes
  crypto::SecretBytes signing_seed;    // kAuditSigningSeedBytes: the Ed25519 key pair derives from it
};

struct AuditOptions {
  std::string dir;
  std::string node;
  size_t segment_max_bytes = 64 << 20;
  std::chrono::seconds segment_max_age{3600};
  std::chrono::milliseconds checkpoint_interval{1000};
  // Segments whose newest record is older than this are dropped (0: keep all).
  std::chrono::seconds retention{30 * 24 * 3600};
  // Records waiting for the writer; beyond it Append drops and counts, and
  // the writer records how many it dropped ("AuditDropped"), so a loss is
  // never silent.
  size_t queue_limit = 65536;
  bool sync = true;  // fsync what is written
  // With sync: 0 fsyncs every written batch; otherwise at most once per
  // interval (and with every seal and checkpoint), so a busy node's audit
  // writer does not add an fsync per request batch to the disk the raft log
  // syncs on. Records are appended after their request is answered either
  // way; this bounds what a power loss can take to the interval.
  std::chrono::milliseconds sync_interval{0};
  // The index this log was sealed through at its last clean Close, as the
  // owner recorded it somewhere the log's files cannot change (bulwarkd: its
  // encrypted store). When Open finds the newest old segment unsealed, that
  // is a crash if the segment still reaches this index, and the new segment
  // starts with a signed "recovered" record, which Verify accepts; if the
  // segment ends before it, records were removed: no recovery is signed and
  // Verify keeps failing. Nullopt: unknown (a first start).
  std::optional<uint64_t> sealed_through;
};

class AuditLog {
 public:
  // Opens the directory (creating it, 0700), starts a new segment chained to
  // the last record found there, and starts the writer.
  static Result<std::unique_ptr<AuditLog>> Open(AuditOptions options, AuditKeys keys);
  ~AuditLog();  // Close()

  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Queues a record (index and node are filled in). Never blocks on disk.
  // Records appended after Close are dropped (and counted).
  void Append(AuditRecord record);
  // Waits until every record appended before the call is written (and
  // synced, with options.sync).
  Status Flush();
  // Seals the current segment, stops the writer and lets go of the
  // directory (another AuditLog may open it). Idempotent.
  void Close();
  // Drops whole segments older than the retention, now. (The writer also
  // does this when it rolls a segment.)
  Status ApplyRetention(std::chrono::system_clock::time_point now);

  // After Close: the index of the seal it wrote (for AuditOptions::sealed_through).
  uint64_t sealed_through() const;
  uint64_t appended() const;  // Append's records written (not the log's own)
  uint64_t dropped() const;   // records refused by a full queue
  std::string public_key_base64() const;

  struct Impl;

 private:
  explicit AuditLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct AuditVerifyReport {
  bool ok = false;
  uint64_t segments = 0;
  uint64_t records = 0;      // every record held, seals and checkpoints included
  uint64_t first_index = 0;  // after retention, the oldest record still held
  uint64_t last_index = 0;
  std::string problem;  // when !ok: the first bad place, e.g. "segment 00000003 record 17: hash chain broken"
  // The newest segment ends inside a frame while a writer holds the
  // directory: a record being written, not damage. (Without a writer it is.)
  bool in_progress = false;
  // Segments that ended without a seal (a crash), each followed by a signed
  // "recovered" record: reported, not damage.
  uint64_t unclean_stops = 0;
};

// Reads every segment in `dir` and checks decryption, indexes, the hash
// chain, segment links, seals, checkpoints and pruned markers. A bad log is
// not an error of the call: it is `ok == false` with the problem named.
Result<AuditVerifyReport> VerifyAuditLog(const std::string& dir, const AuditKeys& keys);

struct AuditQuery {
  std::optional<int64_t> since_unix_ms, until_unix_ms;  // inclusive bounds on time_unix_ms
  std::string principal;                                // exact, or empty
  std::string operation;                                // exact, or empty
  std::string resource;                                 // prefix, or empty
  size_t limit = 1000;
};

// The records that match, oldest first. Stops at a record it cannot read
// (Corruption names it). Seal and checkpoint records are the log's own
// bookkeeping: returned only when `operation` names them ("AuditSeal",
// "AuditCheckpoint"); "AuditDropped" and "AuditPruned" are always events.
// Query checks each record and the chain within a segment; links between
// segments and signatures are Verify's work.
Result<std::vector<AuditRecord>> QueryAuditLog(const std::string& dir, const AuditKeys& keys, const AuditQuery& query);

}  // namespace bulwark::security
