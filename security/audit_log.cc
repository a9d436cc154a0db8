// The audit log's writer: a queue that Append fills and one thread that
// drains it into segment files (the format is in audit_format.h).
#include "security/audit_log.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "security/audit_format.h"

namespace bulwark::security {
namespace {

using audit::ChainPoint;
using audit::RecordKind;
using std::chrono::steady_clock;
using std::chrono::system_clock;

int64_t UnixMs(system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

Status ErrnoStatus(const std::string& what) { return Status::IOError(what + ": " + std::strerror(errno)); }

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("cannot write audit segment '" + path + "'");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Makes renames and unlinks in `dir` durable.
Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open audit directory '" + dir + "'");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoStatus("cannot sync audit directory '" + dir + "'");
  return Status::Ok();
}

Status ValidateOptions(const AuditOptions& options) {
  if (options.dir.empty()) return Status::InvalidArgument("audit log needs a directory");
  if (options.node.size() > audit::kMaxNodeNameBytes) {
    return Status::InvalidArgument("audit node name over " + std::to_string(audit::kMaxNodeNameBytes) + " bytes");
  }
  if (options.segment_max_bytes == 0 || options.segment_max_age.count() <= 0 ||
      options.checkpoint_interval.count() <= 0 || options.retention.count() < 0 || options.queue_limit == 0) {
    return Status::InvalidArgument("audit options: sizes, intervals and the queue limit must be positive");
  }
  return Status::Ok();
}

// A record the log writes about itself.
AuditRecord BookkeepingRecord(std::string_view operation, std::string_view code, std::string detail) {
  AuditRecord record;
  record.time_unix_ms = UnixMs(system_clock::now());
  record.principal = "-";
  record.operation = operation;
  record.code = code;
  record.detail = std::move(detail);
  return record;
}

}  // namespace

// Invariants: everything below `mu` belongs to the writer thread once it
// runs (Start sets it up before). `last` is the newest record written (or
// queued into a batch buffer about to be written); `segment_fd` is open on
// segment `segment_number` and holds `segment_bytes`. After a write fails,
// `failure` is set and nothing more is written: a segment with a torn frame
// must not be continued.
struct AuditLog::Impl {
  Impl(AuditOptions options_in, audit::AuditCrypto keys_in)
      : options(std::move(options_in)), keys(std::move(keys_in)) {}
  ~Impl() {
    assert(!writer.joinable());
    if (segment_fd >= 0) ::close(segment_fd);
    if (lock_fd >= 0) ::close(lock_fd);  // releases the flock
  }

  struct RetentionRequest {
    system_clock::time_point now;
    std::promise<Status> done;
  };
  // What the writer knows about a closed segment, for retention.
  struct SegmentSummary {
    ChainPoint last;
    int64_t newest_unix_ms = 0;
  };

  Status Start();
  void Run();
  Status WriteBatch(std::vector<AuditRecord> records, uint64_t dropped);
  void AddRecord(AuditRecord record, RecordKind kind, const ChainPoint& pruned, std::string& out);
  Status WriteOut(std::string& out);
  Status RollIfDue(std::string& out);
  Status SealSegment(std::string& out);
  Status CreateSegment(uint64_t number);
  Status RunRetention(system_clock::time_point now);
  Result<SegmentSummary> Summarize(uint64_t number);
  bool CheckpointDue() const {
    return unsigned_records && steady_clock::now() - last_signed >= options.checkpoint_interval;
  }

  const AuditOptions options;
  const audit::AuditCrypto keys;
  int lock_fd = -1;
  std::thread writer;
  std::atomic<uint64_t> appended{0};
  std::atomic<uint64_t> sealed_index{0};  // the last seal written
  std::atomic<uint64_t> dropped{0};

  std::mutex mu;
  std::condition_variable work_cv;                    // the writer waits for work
  std::condition_variable done_cv;                    // Flush waits for the writer
  std::deque<AuditRecord> queue;                      // GUARDED_BY(mu), at most options.queue_limit
  uint64_t queued_total = 0;                          // GUARDED_BY(mu): records ever accepted
  uint64_t written_total = 0;                         // GUARDED_BY(mu): of those, written (or given up on)
  uint64_t dropped_unrecorded = 0;                    // GUARDED_BY(mu): refused, no "AuditDropped" yet
  std::optional<RetentionRequest> retention_request;  // GUARDED_BY(mu)
  Status write_error;                                 // GUARDED_BY(mu)
  bool stop = false;                                  // GUARDED_BY(mu)

  int segment_fd = -1;
  uint64_t segment_number = 0;
  uint64_t segment_bytes = 0;
  uint64_t segment_records = 0;
  int64_t segment_created_unix_ms = 0;
  int64_t segment_newest_unix_ms = 0;
  ChainPoint last;
  bool unsigned_records = false;  // records written since the last seal or checkpoint
  steady_clock::time_point last_signed;
  steady_clock::time_point last_sync;            // writer thread only
  std::map<uint64_t, SegmentSummary> summaries;  // closed segments, filled as retention needs them
  Status failure;
};

Status AuditLog::Impl::Start() {
  const std::string& dir = options.dir;
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return ErrnoStatus("cannot create audit directory '" + dir + "'");
  // The directory is the log's own: whatever made it, nobody else reads it.
  if (::chmod(dir.c_str(), 0700) != 0) return ErrnoStatus("cannot restrict audit directory '" + dir + "'");
  const std::string lock_path = dir + "/" + std::string(audit::kLockFileName);
  lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return ErrnoStatus("cannot open '" + lock_path + "'");
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return Status::FailedPrecondition("audit directory '" + dir + "' is in use by another writer");
  }
  // A segment still under its temporary name never got a synced header.
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == audit::kTempSuffix) std::filesystem::remove(it->path(), ec);
  }
  BULWARK_ASSIGN_OR_RETURN(std::vector<uint64_t> numbers, audit::ListSegments(dir));
  bool previous_sealed = true;
  if (!numbers.empty()) {
    // Continue from the last record that reads; a torn tail (a crash) ends
    // the scan.
    BULWARK_ASSIGN_OR_RETURN(auto reader, audit::SegmentReader::Open(dir, numbers.back(), keys));
    previous_sealed = false;
    for (;;) {
      Result<audit::SegmentReader::Step> step = reader->Next();
      if (!step.ok() || *step != audit::SegmentReader::Step::kRecord) break;
      previous_sealed = reader->record().kind == RecordKind::kSeal;
    }
    last = reader->last();
  }
  last_signed = steady_clock::now();
  const uint64_t number = numbers.empty() ? 1 : numbers.back() + 1;
  BULWARK_RETURN_IF_ERROR(CreateSegment(number));
  if (!previous_sealed) {
    if (options.sealed_through && last.index < *options.sealed_through) {
      // The segment was sealed through a later record once: what is
      // missing was removed, not lost in a crash. Sign nothing over it.
      spdlog::error(
          "audit log: {} ends at record {} but the log was sealed through record {}: records were removed; "
          "verify will fail",
          audit::SegmentLabel(numbers.back()), last.index, *options.sealed_through);
    } else {
      // An unclean stop: say so, signed, where the log goes on.
      std::string out;
      AddRecord(
          BookkeepingRecord(audit::OperationName(RecordKind::kRecovered), "OK",
                            "segment " + audit::SegmentLabel(numbers.back()) + " ended without a seal after record " +
                                std::to_string(last.index) + " (unclean stop)"),
          RecordKind::kRecovered, {}, out);
      BULWARK_RETURN_IF_ERROR(WriteOut(out));
    }
  }
  writer = std::thread([this] { Run(); });
  return Status::Ok();
}

void AuditLog::Impl::Run() {
  for (;;) {
    std::vector<AuditRecord> batch;
    uint64_t batch_dropped = 0;
    uint64_t taken_through = 0;
    std::optional<RetentionRequest> retention;
    bool stopping = false;
    {
      std::unique_lock lock(mu);
      const auto has_work = [&] { return stop || !queue.empty() || dropped_unrecorded > 0 || retention_request; };
      // With unsigned records, wake for the checkpoint even if nothing comes.
      if (unsigned_records) {
        work_cv.wait_until(lock, last_signed + options.checkpoint_interval, has_work);
      } else {
        work_cv.wait(lock, has_work);
      }
      batch.assign(std::make_move_iterator(queue.begin()), std::make_move_iterator(queue.end()));
      queue.clear();
      batch_dropped = std::exchange(dropped_unrecorded, 0);
      taken_through = queued_total;
      retention.swap(retention_request);
      stopping = stop;
    }
    const size_t batch_size = batch.size();
    if (failure.ok()) failure = WriteBatch(std::move(batch), batch_dropped);
    if (retention) retention->done.set_value(failure.ok() ? RunRetention(retention->now) : failure);
    if (stopping && failure.ok() && segment_fd >= 0) {
      std::string out;
      failure = SealSegment(out);
    }
    if (failure.ok()) {
      appended += batch_size;
    } else {
      dropped += batch_size;
    }
    {
      std::lock_guard lock(mu);
      written_total = taken_through;
      if (!failure.ok() && write_error.ok()) {
        spdlog::error("audit log: {}; further records are dropped", failure.ToString());
        write_error = failure;
      }
    }
    done_cv.notify_all();
    if (stopping) return;
  }
}

// One write (and one sync) for the batch, unless a segment fills up in it.
// The "AuditDropped" record goes after the batch: a record is refused only
// while the queue is full, so every record in this batch was queued before
// the refusals it reports.
Status AuditLog::Impl::WriteBatch(std::vector<AuditRecord> records, uint64_t dropped_count) {
  std::string out;
  for (AuditRecord& record : records) {
    BULWARK_RETURN_IF_ERROR(RollIfDue(out));
    AddRecord(std::move(record), RecordKind::kEvent, {}, out);
  }
  if (dropped_count > 0) {
    BULWARK_RETURN_IF_ERROR(RollIfDue(out));
    AddRecord(
        BookkeepingRecord("AuditDropped", "ResourceExhausted", std::to_string(dropped_count) + " records dropped"),
        RecordKind::kEvent, {}, out);
  }
  if (CheckpointDue()) {
    AddRecord(BookkeepingRecord(audit::OperationName(RecordKind::kCheckpoint), "OK", ""), RecordKind::kCheckpoint, {},
              out);
  }
  return WriteOut(out);
}

// Chains, signs (for bookkeeping kinds), encrypts and frames one record into
// `out`. `pruned` is what a pruned record names; ignored for other kinds.
void AuditLog::Impl::AddRecord(AuditRecord record, RecordKind kind, const ChainPoint& pruned, std::string& out) {
  record.index = last.index + 1;
  record.node = options.node;
  const ChainPoint signed_at = kind == RecordKind::kPruned ? pruned : last;
  const std::string signature =
      kind == RecordKind::kEvent ? std::string() : audit::Sign(keys, kind, segment_number, signed_at);
  const std::string plaintext = audit::EncodeRecord(record, kind, last.hash, signed_at, signature);
  audit::AppendFrame(keys, segment_number, record.index, plaintext, out);
  last = {record.index, audit::ChainHash(last.hash, plaintext)};
  ++segment_records;
  segment_newest_unix_ms = std::max(segment_newest_unix_ms, record.time_unix_ms);
  if (kind == RecordKind::kEvent) unsigned_records = true;
  if (kind == RecordKind::kSeal || kind == RecordKind::kCheckpoint || kind == RecordKind::kRecovered) {
    unsigned_records = false;
    last_signed = steady_clock::now();
  }
}

Status AuditLog::Impl::WriteOut(std::string& out) {
  if (out.empty()) return Status::Ok();
  const std::string path = audit::SegmentPath(options.dir, segment_number);
  BULWARK_RETURN_IF_ERROR(WriteAll(segment_fd, out, path));
  // A batch that ends in a seal or checkpoint (unsigned_records just went
  // false) is always synced, so every signature on disk covers synced bytes.
  const auto now = steady_clock::now();
  const bool due = options.sync_interval.count() == 0 || !unsigned_records || now - last_sync >= options.sync_interval;
  if (options.sync && due) {
    if (::fdatasync(segment_fd) != 0) return ErrnoStatus("cannot sync audit segment '" + path + "'");
    last_sync = now;
  }
  segment_bytes += out.size();
  out.clear();
  return Status::Ok();
}

// Rolls once the segment has reached its size or age, before the next record
// goes in. An empty segment never rolls, so a quiet log makes no files.
Status AuditLog::Impl::RollIfDue(std::string& out) {
  if (segment_records == 0) return Status::Ok();
  const bool full = segment_bytes + out.size() >= options.segment_max_bytes;
  const bool old = UnixMs(system_clock::now()) - segment_created_unix_ms >=
                   std::chrono::duration_cast<std::chrono::milliseconds>(options.segment_max_age).count();
  if (!full && !old) return Status::Ok();
  BULWARK_RETURN_IF_ERROR(SealSegment(out));
  BULWARK_RETURN_IF_ERROR(CreateSegment(segment_number + 1));
  // Retention trouble must not stop the log; it is logged and retried at the
  // next roll (ApplyRetention reports it to its caller).
  if (Status s = RunRetention(system_clock::now()); !s.ok()) spdlog::warn("audit retention: {}", s.ToString());
  return Status::Ok();
}

// Appends the seal to `out`, writes it and closes the segment.
Status AuditLog::Impl::SealSegment(std::string& out) {
  AddRecord(BookkeepingRecord(audit::OperationName(RecordKind::kSeal), "OK",
                              "segment " + audit::SegmentLabel(segment_number) + " sealed"),
            RecordKind::kSeal, {}, out);
  BULWARK_RETURN_IF_ERROR(WriteOut(out));
  sealed_index = last.index;
  ::close(segment_fd);
  segment_fd = -1;
  summaries[segment_number] = {last, segment_newest_unix_ms};
  return Status::Ok();
}

// Writes the header under a temporary name, syncs it and renames it in, so
// that no segment file is ever seen without a whole header.
Status AuditLog::Impl::CreateSegment(uint64_t number) {
  const std::string path = audit::SegmentPath(options.dir, number);
  const std::string temp_path = path + std::string(audit::kTempSuffix);
  const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("cannot create audit segment '" + temp_path + "'");
  const int64_t now_ms = UnixMs(system_clock::now());
  const std::string header = audit::EncodeHeader({number, options.node, now_ms, last}, keys);
  Status s = WriteAll(fd, header, temp_path);
  if (s.ok() && options.sync && ::fdatasync(fd) != 0) s = ErrnoStatus("cannot sync '" + temp_path + "'");
  if (s.ok() && ::rename(temp_path.c_str(), path.c_str()) != 0) s = ErrnoStatus("cannot rename '" + temp_path + "'");
  if (s.ok() && options.sync) s = SyncDir(options.dir);
  if (!s.ok()) {
    ::close(fd);
    return s;
  }
  segment_fd = fd;
  segment_number = number;
  segment_bytes = header.size();
  segment_records = 0;
  segment_created_unix_ms = now_ms;
  segment_newest_unix_ms = 0;
  return Status::Ok();
}

Result<AuditLog::Impl::SegmentSummary> AuditLog::Impl::Summarize(uint64_t number) {
  if (auto it = summaries.find(number); it != summaries.end()) return it->second;
  BULWARK_ASSIGN_OR_RETURN(auto reader, audit::SegmentReader::Open(options.dir, number, keys));
  SegmentSummary summary;
  for (;;) {
    BULWARK_ASSIGN_OR_RETURN(audit::SegmentReader::Step step, reader->Next());
    if (step != audit::SegmentReader::Step::kRecord) break;
    summary.newest_unix_ms = std::max(summary.newest_unix_ms, reader->record().record.time_unix_ms);
  }
  summary.last = reader->last();
  summaries[number] = summary;
  return summary;
}

// Drops the oldest segments whose newest record is older than the retention,
// stopping at the first that is not (or cannot be read: evidence is kept).
// The pruned record is written before the files go: a crash in between
// leaves a record naming a point still on disk, which Verify accepts; the
// other order would leave a gap that looks like deletion.
Status AuditLog::Impl::RunRetention(system_clock::time_point now) {
  if (options.retention.count() == 0) return Status::Ok();
  BULWARK_ASSIGN_OR_RETURN(std::vector<uint64_t> numbers, audit::ListSegments(options.dir));
  const int64_t cutoff_ms = UnixMs(now - options.retention);
  std::vector<uint64_t> doomed;
  ChainPoint through;
  for (uint64_t number : numbers) {
    if (number >= segment_number) break;  // never the current segment
    BULWARK_ASSIGN_OR_RETURN(SegmentSummary summary, Summarize(number));
    if (summary.newest_unix_ms >= cutoff_ms) break;
    doomed.push_back(number);
    through = summary.last;
  }
  if (doomed.empty()) return Status::Ok();
  const std::string hash_hex =
      crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(through.hash.data()), through.hash.size()));
  std::string out;
  AddRecord(BookkeepingRecord(audit::OperationName(RecordKind::kPruned), "OK",
                              "pruned segments " + audit::SegmentLabel(doomed.front()) + ".." +
                                  audit::SegmentLabel(doomed.back()) + " through record " +
                                  std::to_string(through.index) + " hash " + hash_hex),
            RecordKind::kPruned, through, out);
  BULWARK_RETURN_IF_ERROR(WriteOut(out));
  for (uint64_t number : doomed) {
    const std::string path = audit::SegmentPath(options.dir, number);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("cannot remove '" + path + "'");
    summaries.erase(number);
  }
  return options.sync ? SyncDir(options.dir) : Status::Ok();
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(AuditOptions options, AuditKeys keys) {
  BULWARK_RETURN_IF_ERROR(ValidateOptions(options));
  BULWARK_ASSIGN_OR_RETURN(audit::AuditCrypto crypto, audit::AuditCrypto::From(keys));
  auto impl = std::make_unique<Impl>(std::move(options), std::move(crypto));
  BULWARK_RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(impl)));
}

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AuditLog::~AuditLog() { Close(); }

void AuditLog::Append(AuditRecord record) {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stop) {
      ++impl_->dropped;
      return;
    }
    if (impl_->queue.size() >= impl_->options.queue_limit) {
      ++impl_->dropped;
      ++impl_->dropped_unrecorded;
    } else {
      impl_->queue.push_back(std::move(record));
      ++impl_->queued_total;
    }
  }
  impl_->work_cv.notify_one();
}

uint64_t AuditLog::sealed_through() const { return impl_->sealed_index; }

Status AuditLog::Flush() {
  std::unique_lock lock(impl_->mu);
  const uint64_t target = impl_->queued_total;
  impl_->done_cv.wait(lock, [&] { return impl_->written_total >= target || !impl_->write_error.ok(); });
  return impl_->write_error;
}

void AuditLog::Close() {
  if (!impl_->writer.joinable()) return;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->work_cv.notify_one();
  impl_->writer.join();
  // A closed log writes nothing more: let another writer have the directory.
  ::close(impl_->lock_fd);
  impl_->lock_fd = -1;
}

Status AuditLog::ApplyRetention(system_clock::time_point now) {
  std::future<Status> done;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stop) return Status::FailedPrecondition("audit log is closed");
    impl_->retention_request.emplace();
    impl_->retention_request->now = now;
    done = impl_->retention_request->done.get_future();
  }
  impl_->work_cv.notify_one();
  return done.get();
}

uint64_t AuditLog::appended() const { return impl_->appended; }
uint64_t AuditLog::dropped() const { return impl_->dropped; }

std::string AuditLog::public_key_base64() const {
  const auto& key = impl_->keys.public_key;
  return crypto::Base64Encode(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
}

}  // namespace bulwark::security
