// The audit log's read side: VerifyAuditLog and QueryAuditLog. Both only
// read, so they may run while the writer appends to the same directory.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>
#include <vector>

#include "security/audit_format.h"
#include "security/audit_log.h"

namespace bulwark::security {
namespace {

using audit::ChainPoint;
using audit::RecordKind;
using audit::SegmentLabel;
using audit::SegmentReader;

// Whether a writer holds the directory's lock. Only then may the newest
// segment end inside a frame: with no writer, a torn frame is damage.
bool WriterRunning(const std::string& dir) {
  const std::string path = dir + "/" + std::string(audit::kLockFileName);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool locked = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // also drops the shared lock, if we got it
  return locked;
}

std::string SegmentWhere(uint64_t number) { return "segment " + SegmentLabel(number); }

// The state carried from one segment to the next.
struct Walk {
  std::optional<ChainPoint> end;  // the last record of the segments read so far
  uint64_t end_segment = 0;
  ChainPoint first_link;           // what the oldest segment held links to
  std::vector<ChainPoint> pruned;  // what pruned records name
  // The previous segment ended without a seal: the next one must begin with
  // a signed "recovered" record (its writer's restart after a crash), or the
  // previous one was truncated. Holds the problem to report in that case.
  std::optional<std::string> unsealed;
};

// Checks one segment's link to the one before, its records' signatures and
// that it ends in a seal (unless it is the newest).
Status VerifySegment(const std::string& dir, uint64_t number, bool newest, bool writer_running,
                     const audit::AuditCrypto& keys, Walk& walk, AuditVerifyReport& report) {
  BULWARK_ASSIGN_OR_RETURN(auto reader, SegmentReader::Open(dir, number, keys));
  const ChainPoint& link = reader->header().previous;
  const std::optional<std::string> unsealed_before = std::exchange(walk.unsealed, std::nullopt);
  if (!walk.end) {
    walk.first_link = link;
    report.first_index = link.index + 1;
  } else if (link != *walk.end && unsealed_before) {
    return Status::Corruption(*unsealed_before);  // the unsealed segment lost its end: report it
  } else if (link != *walk.end) {
    return Status::Corruption(SegmentWhere(number) + ": links to record " + std::to_string(link.index) + " but " +
                              SegmentWhere(walk.end_segment) + " ends at record " + std::to_string(walk.end->index) +
                              " (a segment is missing)");
  }
  bool sealed = false;
  bool first = true;
  for (;;) {
    BULWARK_ASSIGN_OR_RETURN(SegmentReader::Step step, reader->Next());
    if (step == SegmentReader::Step::kEnd) break;
    if (step == SegmentReader::Step::kPartial) {
      if (newest && writer_running) {
        report.in_progress = true;
        break;
      }
      const std::string torn = reader->Where(reader->last().index + 1) + ": truncated frame";
      if (newest) return Status::Corruption(torn);
      // A torn frame in an older segment: a crash mid-write, if the next
      // segment says it recovered from exactly here.
      walk.unsealed = torn;
      break;
    }
    const audit::StoredRecord& record = reader->record();
    const std::string where = reader->Where(record.record.index);
    if (first && unsealed_before) {
      if (record.kind != RecordKind::kRecovered) return Status::Corruption(*unsealed_before);
      ++report.unclean_stops;
    }
    first = false;
    if (sealed) return Status::Corruption(where + ": follows the segment's seal");
    if (record.kind != RecordKind::kEvent &&
        !audit::VerifySignature(keys, record.kind, number, record.signed_at, record.signature)) {
      return Status::Corruption(where + ": " + std::string(audit::OperationName(record.kind)) +
                                " signature does not verify");
    }
    if (record.kind == RecordKind::kSeal) sealed = true;
    if (record.kind == RecordKind::kPruned) walk.pruned.push_back(record.signed_at);
    ++report.records;
  }
  if (first && unsealed_before) return Status::Corruption(*unsealed_before);  // no records: no recovery
  if (!newest && !sealed && !walk.unsealed) {
    walk.unsealed = SegmentWhere(number) + ": not sealed after record " + std::to_string(reader->last().index) +
                    " (truncated, or its node crashed and no recovery record follows)";
  }
  walk.end = reader->last();
  walk.end_segment = number;
  ++report.segments;
  return Status::Ok();
}

Status VerifySegments(const std::string& dir, const std::vector<uint64_t>& numbers, const audit::AuditCrypto& keys,
                      AuditVerifyReport& report) {
  const bool writer_running = WriterRunning(dir);
  Walk walk;
  for (size_t i = 0; i < numbers.size(); ++i) {
    BULWARK_RETURN_IF_ERROR(
        VerifySegment(dir, numbers[i], i + 1 == numbers.size(), writer_running, keys, walk, report));
  }
  if (!walk.end) return Status::Ok();  // no segments: an empty log
  // A log that does not start at the beginning must have been pruned to
  // exactly where it starts; anything else is deletion.
  if (walk.first_link.index != 0 &&
      std::find(walk.pruned.begin(), walk.pruned.end(), walk.first_link) == walk.pruned.end()) {
    return Status::Corruption(SegmentWhere(numbers.front()) + ": links to record " +
                              std::to_string(walk.first_link.index) +
                              ", which no pruned record names (older segments deleted)");
  }
  report.last_index = walk.end->index;
  return Status::Ok();
}

bool Matches(const audit::StoredRecord& stored, const AuditQuery& query) {
  const AuditRecord& r = stored.record;
  // Seals and checkpoints are the log's bookkeeping: only on request.
  if ((stored.kind == RecordKind::kSeal || stored.kind == RecordKind::kCheckpoint) &&
      query.operation != audit::OperationName(stored.kind)) {
    return false;
  }
  if (query.since_unix_ms && r.time_unix_ms < *query.since_unix_ms) return false;
  if (query.until_unix_ms && r.time_unix_ms > *query.until_unix_ms) return false;
  if (!query.principal.empty() && r.principal != query.principal) return false;
  if (!query.operation.empty() && r.operation != query.operation) return false;
  return r.resource.starts_with(query.resource);
}

}  // namespace

Result<AuditVerifyReport> VerifyAuditLog(const std::string& dir, const AuditKeys& keys) {
  BULWARK_ASSIGN_OR_RETURN(audit::AuditCrypto crypto, audit::AuditCrypto::From(keys));
  BULWARK_ASSIGN_OR_RETURN(std::vector<uint64_t> numbers, audit::ListSegments(dir));
  AuditVerifyReport report;
  Status s = VerifySegments(dir, numbers, crypto, report);
  if (!s.ok() && s.code() != Code::kCorruption) return s;
  report.ok = s.ok();
  report.problem = s.message();
  return report;
}

Result<std::vector<AuditRecord>> QueryAuditLog(const std::string& dir, const AuditKeys& keys, const AuditQuery& query) {
  BULWARK_ASSIGN_OR_RETURN(audit::AuditCrypto crypto, audit::AuditCrypto::From(keys));
  BULWARK_ASSIGN_OR_RETURN(std::vector<uint64_t> numbers, audit::ListSegments(dir));
  std::vector<AuditRecord> out;
  for (size_t i = 0; i < numbers.size() && out.size() < query.limit; ++i) {
    BULWARK_ASSIGN_OR_RETURN(auto reader, SegmentReader::Open(dir, numbers[i], crypto));
    while (out.size() < query.limit) {
      BULWARK_ASSIGN_OR_RETURN(SegmentReader::Step step, reader->Next());
      if (step == SegmentReader::Step::kEnd) break;
      // The newest segment may end in a frame still being written.
      if (step == SegmentReader::Step::kPartial) {
        if (i + 1 == numbers.size()) break;
        return Status::Corruption(reader->Where(reader->last().index + 1) + ": truncated frame");
      }
      if (Matches(reader->record(), query)) out.push_back(reader->record().record);
    }
  }
  return out;
}

}  // namespace bulwark::security
