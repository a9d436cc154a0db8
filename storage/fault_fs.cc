#include "storage/fault_fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <rocksdb/file_system.h>

namespace bulwark::storage {
namespace {

namespace fs = std::filesystem;

// Journal records, one line each, fields separated by tabs:
//   C path          created (empty, nothing synced yet)
//   O path size     reopened for appending; `size` bytes were there
//   S path size     synced: the first `size` bytes are durable
//   T path size     truncated to `size`
//   R from to       renamed
//   L from to       hard-linked (the new name shares the durable size)
//   D path          deleted
constexpr const char* kJournalName = "journal";
constexpr const char* kControlName = "inject";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Absolute(const std::string& path) {
  std::error_code ec;
  const fs::path p = fs::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

FsFault ParseFault(const std::string& word) {
  for (FsFault f : {FsFault::kSyncError, FsFault::kWriteError, FsFault::kNoSpace}) {
    if (word == FsFaultName(f)) return f;
  }
  return FsFault::kNone;
}

// What every wrapper and file of one store share: the journal and the
// injected fault.
class Shared {
 public:
  Shared(int journal_fd, std::string control_path) : journal_fd_(journal_fd), control_path_(std::move(control_path)) {}
  ~Shared() { ::close(journal_fd_); }

  void Journal(const std::string& line) {
    // One write(2) per record on an O_APPEND descriptor: records never
    // interleave, and they outlive a kill -9 (the kernel has them).
    const std::string rec = line + "\n";
    (void)!::write(journal_fd_, rec.data(), rec.size());
  }

  FsFault fault() {
    const int64_t now = NowMs();
    int64_t next = next_poll_ms_.load(std::memory_order_relaxed);
    if (now >= next && next_poll_ms_.compare_exchange_strong(next, now + kFsFaultPollMs)) {
      std::ifstream in(control_path_);
      std::string word;
      if (in) {
        char buf[kFsFaultControlMaxBytes] = {};
        in.read(buf, sizeof(buf) - 1);
        std::istringstream(std::string(buf, static_cast<size_t>(in.gcount()))) >> word;
      }
      fault_.store(static_cast<int>(ParseFault(word)), std::memory_order_relaxed);
    }
    return static_cast<FsFault>(fault_.load(std::memory_order_relaxed));
  }

  rocksdb::IOStatus Injected(FsFault wanted, const char* what) {
    const FsFault f = fault();
    if (wanted == FsFault::kSyncError && f == FsFault::kSyncError) {
      return rocksdb::IOStatus::IOError(std::string("injected fault: ") + what + " failed (fsync error)");
    }
    if (wanted != FsFault::kSyncError && f == FsFault::kWriteError) {
      return rocksdb::IOStatus::IOError(std::string("injected fault: ") + what + " failed (write error)");
    }
    if (wanted != FsFault::kSyncError && f == FsFault::kNoSpace) {
      return rocksdb::IOStatus::NoSpace(std::string("injected fault: ") + what + ": no space left on device");
    }
    return rocksdb::IOStatus::OK();
  }

 private:
  const int journal_fd_;
  const std::string control_path_;
  std::atomic<int64_t> next_poll_ms_{0};
  std::atomic<int> fault_{static_cast<int>(FsFault::kNone)};
};

class FaultWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, std::string path, uint64_t size,
                    std::shared_ptr<Shared> shared)
      : FSWritableFileOwnerWrapper(std::move(file)), path_(std::move(path)), size_(size), shared_(std::move(shared)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
    if (auto s = shared_->Injected(FsFault::kWriteError, "write"); !s.ok()) return s;
    auto s = target()->Append(data, o, dbg);
    if (s.ok()) size_.fetch_add(data.size());
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
    if (auto s = shared_->Injected(FsFault::kWriteError, "write"); !s.ok()) return s;
    auto s = target()->Append(data, o, info, dbg);
    if (s.ok()) size_.fetch_add(data.size());
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset, const rocksdb::IOOptions& o,
                                     rocksdb::IODebugContext* dbg) override {
    if (auto s = shared_->Injected(FsFault::kWriteError, "write"); !s.ok()) return s;
    auto s = target()->PositionedAppend(data, offset, o, dbg);
    if (s.ok()) Grow(offset + data.size());
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset, const rocksdb::IOOptions& o,
                                     const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
    if (auto s = shared_->Injected(FsFault::kWriteError, "write"); !s.ok()) return s;
    auto s = target()->PositionedAppend(data, offset, o, info, dbg);
    if (s.ok()) Grow(offset + data.size());
    return s;
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    auto s = target()->Truncate(size, o, dbg);
    if (s.ok()) {
      size_.store(size);
      shared_->Journal("T\t" + path_ + "\t" + std::to_string(size));
    }
    return s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return Synced([&] { return target()->Sync(o, dbg); });
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return Synced([&] { return target()->Fsync(o, dbg); });
  }

 private:
  void Grow(uint64_t end) {
    uint64_t cur = size_.load();
    while (end > cur && !size_.compare_exchange_weak(cur, end)) {
    }
  }
  template <typename F>
  rocksdb::IOStatus Synced(F sync) {
    if (auto s = shared_->Injected(FsFault::kSyncError, "fsync"); !s.ok()) return s;
    // The size before the sync: bytes appended meanwhile may not be covered.
    const uint64_t covered = size_.load();
    auto s = sync();
    if (s.ok()) shared_->Journal("S\t" + path_ + "\t" + std::to_string(covered));
    return s;
  }

  const std::string path_;
  std::atomic<uint64_t> size_;
  std::shared_ptr<Shared> shared_;
};

class FaultDirectory : public rocksdb::FSDirectoryWrapper {
 public:
  FaultDirectory(std::unique_ptr<rocksdb::FSDirectory> dir, std::shared_ptr<Shared> shared)
      : FSDirectoryWrapper(std::move(dir)), shared_(std::move(shared)) {}
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    if (auto s = shared_->Injected(FsFault::kSyncError, "directory fsync"); !s.ok()) return s;
    return FSDirectoryWrapper::Fsync(o, dbg);
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg,
                                        const rocksdb::DirFsyncOptions& d) override {
    if (auto s = shared_->Injected(FsFault::kSyncError, "directory fsync"); !s.ok()) return s;
    return FSDirectoryWrapper::FsyncWithDirOptions(o, dbg, d);
  }

 private:
  std::shared_ptr<Shared> shared_;
};

class FaultFileSystem : public rocksdb::FileSystemWrapper {
 public:
  FaultFileSystem(std::shared_ptr<rocksdb::FileSystem> base, std::shared_ptr<Shared> shared)
      : FileSystemWrapper(std::move(base)), shared_(std::move(shared)) {}
  const char* Name() const override { return "BulwarkFaultInjection"; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    if (auto s = shared_->Injected(FsFault::kWriteError, "create"); !s.ok()) return s;
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto s = target()->NewWritableFile(f, o, &file, dbg);
    if (!s.ok()) return s;
    const std::string path = Absolute(f);
    shared_->Journal("C\t" + path);
    *r = std::make_unique<FaultWritableFile>(std::move(file), path, 0, shared_);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    uint64_t size = 0;
    const bool existed = target()->GetFileSize(f, rocksdb::IOOptions(), &size, dbg).ok();
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto s = target()->ReopenWritableFile(f, o, &file, dbg);
    if (!s.ok()) return s;
    const std::string path = Absolute(f);
    shared_->Journal(existed ? "O\t" + path + "\t" + std::to_string(size) : "C\t" + path);
    *r = std::make_unique<FaultWritableFile>(std::move(file), path, existed ? size : 0, shared_);
    return s;
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& io,
                                 std::unique_ptr<rocksdb::FSDirectory>* r, rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSDirectory> dir;
    auto s = target()->NewDirectory(name, io, &dir, dbg);
    if (s.ok()) *r = std::make_unique<FaultDirectory>(std::move(dir), shared_);
    return s;
  }
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override {
    auto s = target()->RenameFile(from, to, o, dbg);
    if (s.ok()) shared_->Journal("R\t" + Absolute(from) + "\t" + Absolute(to));
    return s;
  }
  rocksdb::IOStatus LinkFile(const std::string& from, const std::string& to, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
    auto s = target()->LinkFile(from, to, o, dbg);
    if (s.ok()) shared_->Journal("L\t" + Absolute(from) + "\t" + Absolute(to));
    return s;
  }
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override {
    auto s = target()->DeleteFile(f, o, dbg);
    if (s.ok()) shared_->Journal("D\t" + Absolute(f));
    return s;
  }
  rocksdb::IOStatus Truncate(const std::string& f, size_t size, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
    auto s = target()->Truncate(f, size, o, dbg);
    if (s.ok()) shared_->Journal("T\t" + Absolute(f) + "\t" + std::to_string(size));
    return s;
  }

 private:
  std::shared_ptr<Shared> shared_;
};

// The durable state of one journalled file.
struct FileState {
  bool ever_synced = false;  // false: created and never synced
  uint64_t durable = 0;      // bytes that survive a power cut
};

Result<uint64_t> ParseSize(const std::string& s, const std::string& line) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0) return Status::Corruption("bad size in journal line: " + line);
  return static_cast<uint64_t>(v);
}

}  // namespace

const char* FsFaultName(FsFault fault) {
  switch (fault) {
    case FsFault::kNone:
      return "none";
    case FsFault::kSyncError:
      return "sync-error";
    case FsFault::kWriteError:
      return "write-error";
    case FsFault::kNoSpace:
      return "no-space";
  }
  return "none";
}

bool FsFaultsEnabled() {
  const char* v = std::getenv(kFsFaultsEnv);
  return v != nullptr && std::string(v) == "1";
}

std::string FsFaultDir(const std::string& store_path) {
  std::string p = fs::path(store_path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p + ".faults";
}

Result<std::shared_ptr<rocksdb::FileSystem>> NewFaultFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                                const std::string& fault_dir) {
  std::error_code ec;
  fs::create_directories(fault_dir, ec);
  if (ec) return Status::IOError("cannot create " + fault_dir + ": " + ec.message());
  const std::string journal = fault_dir + "/" + kJournalName;
  const int fd = ::open(journal.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot open " + journal);
  auto shared = std::make_shared<Shared>(fd, fault_dir + "/" + kControlName);
  return std::shared_ptr<rocksdb::FileSystem>(std::make_shared<FaultFileSystem>(std::move(base), std::move(shared)));
}

Status SetFsFault(const std::string& fault_dir, FsFault fault) {
  const std::string path = fault_dir + "/" + kControlName, tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << FsFaultName(fault) << "\n";
    if (!out) return Status::IOError("cannot write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Status::IOError("cannot rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

Result<DropReport> DropUnsyncedData(const std::string& fault_dir) {
  const std::string journal = fault_dir + "/" + kJournalName;
  std::ifstream in(journal);
  if (!in) return DropReport{};  // the store never opened with the hook on
  std::map<std::string, FileState> files;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string part; std::getline(fields, part, '\t');) f.push_back(part);
    if (f.empty()) continue;
    const std::string& op = f[0];
    const size_t want = (op == "C" || op == "D") ? 2 : 3;
    if (f.size() != want || op.size() != 1) return Status::Corruption("malformed journal line: " + line);
    switch (op[0]) {
      case 'C':
        files[f[1]] = FileState{};
        break;
      case 'O': {
        BULWARK_ASSIGN_OR_RETURN(uint64_t size, ParseSize(f[2], line));
        files[f[1]] = FileState{true, size};
        break;
      }
      case 'S': {
        BULWARK_ASSIGN_OR_RETURN(uint64_t size, ParseSize(f[2], line));
        FileState& s = files[f[1]];
        s.ever_synced = true;
        s.durable = std::max(s.durable, size);
        break;
      }
      case 'T': {
        BULWARK_ASSIGN_OR_RETURN(uint64_t size, ParseSize(f[2], line));
        auto it = files.find(f[1]);
        if (it != files.end()) it->second.durable = std::min(it->second.durable, size);
        break;
      }
      case 'R':
      case 'L': {
        auto it = files.find(f[1]);
        if (it == files.end()) {
          files.erase(f[2]);  // an untracked file (durable as it is) took the name
          break;
        }
        const FileState s = it->second;
        if (op[0] == 'R') files.erase(it);
        files[f[2]] = s;
        break;
      }
      case 'D':
        files.erase(f[1]);
        break;
      default:
        return Status::Corruption("unknown journal record: " + line);
    }
  }
  DropReport report;
  for (const auto& [path, state] : files) {
    std::error_code ec;
    const uintmax_t size = fs::file_size(path, ec);
    if (ec) continue;  // gone already
    if (!state.ever_synced) {
      if (!fs::remove(path, ec) && ec) return Status::IOError("cannot delete " + path + ": " + ec.message());
      ++report.files_deleted;
      report.bytes_dropped += size;
    } else if (size > state.durable) {
      fs::resize_file(path, state.durable, ec);
      if (ec) return Status::IOError("cannot truncate " + path + ": " + ec.message());
      ++report.files_truncated;
      report.bytes_dropped += size - state.durable;
    }
  }
  in.close();
  std::ofstream(journal, std::ios::trunc);
  return report;
}

}  // namespace bulwark::storage
