// The disk-fault test hook (storage/fault_fs.h): the journal puts files back
// to what was synced, as a power cut would; injected faults fail the calls
// they name and nothing else; a malformed journal is refused.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <catch2/catch.hpp>

#include "storage/fault_fs.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::storage;
using bulwark::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<rocksdb::FSWritableFile> Create(rocksdb::FileSystem& f, const std::string& path) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  REQUIRE(f.NewWritableFile(path, rocksdb::FileOptions(), &file, nullptr).ok());
  return file;
}

rocksdb::IOStatus Append(rocksdb::FSWritableFile& file, const std::string& data) {
  return file.Append(data, rocksdb::IOOptions(), nullptr);
}

void WaitForPoll() { std::this_thread::sleep_for(std::chrono::milliseconds(3 * kFsFaultPollMs)); }

}  // namespace

TEST_CASE("fault fs: a power cut keeps what was synced and drops the rest", "[fault_fs]") {
  TempDir dir;
  const std::string faults = FsFaultDir(dir.sub("store"));
  auto made = NewFaultFileSystem(rocksdb::FileSystem::Default(), faults);
  REQUIRE(made.ok());
  rocksdb::FileSystem& f = **made;
  fs::create_directories(dir.sub("store"));

  auto a = Create(f, dir.sub("store/a"));
  REQUIRE(Append(*a, "synced").ok());
  REQUIRE(a->Sync(rocksdb::IOOptions(), nullptr).ok());
  REQUIRE(Append(*a, "-lost").ok());
  REQUIRE(a->Flush(rocksdb::IOOptions(), nullptr).ok());
  auto b = Create(f, dir.sub("store/b"));  // never synced
  REQUIRE(Append(*b, "gone").ok());
  REQUIRE(b->Flush(rocksdb::IOOptions(), nullptr).ok());
  auto c = Create(f, dir.sub("store/c.tmp"));  // synced, then renamed
  REQUIRE(Append(*c, "kept").ok());
  REQUIRE(c->Fsync(rocksdb::IOOptions(), nullptr).ok());
  REQUIRE(f.RenameFile(dir.sub("store/c.tmp"), dir.sub("store/c"), rocksdb::IOOptions(), nullptr).ok());
  auto d = Create(f, dir.sub("store/d"));  // deleted: not brought back
  REQUIRE(f.DeleteFile(dir.sub("store/d"), rocksdb::IOOptions(), nullptr).ok());
  // The process dies with the files open: nothing is closed.
  REQUIRE(fs::file_size(dir.sub("store/a")) == 11);

  auto dropped = DropUnsyncedData(faults);
  REQUIRE(dropped.ok());
  CHECK(dropped->files_truncated == 1);
  CHECK(dropped->files_deleted == 1);
  CHECK(dropped->bytes_dropped == 5 + 4);
  CHECK(fs::file_size(dir.sub("store/a")) == 6);
  CHECK_FALSE(fs::exists(dir.sub("store/b")));
  CHECK(fs::file_size(dir.sub("store/c")) == 4);
  CHECK_FALSE(fs::exists(dir.sub("store/d")));
  // The journal is emptied: a second pass changes nothing.
  auto again = DropUnsyncedData(faults);
  REQUIRE(again.ok());
  CHECK(again->files_truncated + again->files_deleted == 0);
}

TEST_CASE("fault fs: injected faults fail the calls they name until lifted", "[fault_fs]") {
  TempDir dir;
  const std::string faults = FsFaultDir(dir.sub("store"));
  auto made = NewFaultFileSystem(rocksdb::FileSystem::Default(), faults);
  REQUIRE(made.ok());
  rocksdb::FileSystem& f = **made;
  auto file = Create(f, dir.sub("x"));

  REQUIRE(SetFsFault(faults, FsFault::kSyncError).ok());
  WaitForPoll();
  CHECK(Append(*file, "data").ok());
  auto s = file->Sync(rocksdb::IOOptions(), nullptr);
  CHECK(s.IsIOError());
  CHECK(s.ToString().find("injected") != std::string::npos);

  REQUIRE(SetFsFault(faults, FsFault::kNoSpace).ok());
  WaitForPoll();
  s = Append(*file, "more");
  CHECK(s.IsNoSpace());
  CHECK(file->Sync(rocksdb::IOOptions(), nullptr).ok());

  REQUIRE(SetFsFault(faults, FsFault::kWriteError).ok());
  WaitForPoll();
  CHECK(Append(*file, "more").IsIOError());
  std::unique_ptr<rocksdb::FSWritableFile> other;
  CHECK(f.NewWritableFile(dir.sub("y"), rocksdb::FileOptions(), &other, nullptr).IsIOError());

  REQUIRE(SetFsFault(faults, FsFault::kNone).ok());
  WaitForPoll();
  CHECK(Append(*file, "ok").ok());
  CHECK(file->Sync(rocksdb::IOOptions(), nullptr).ok());
  // Only what succeeded was written.
  CHECK(fs::file_size(dir.sub("x")) == 6);
}

TEST_CASE("fault fs: RocksDB keeps a synced write and loses an unsynced one across a power cut", "[fault_fs]") {
  TempDir dir;
  const std::string path = dir.sub("db");
  const std::string faults = FsFaultDir(path);
  // The writer is a child process that ends without closing the database,
  // as kill -9 would, so nothing is flushed or synced on the way out.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::alarm(30);
    auto made = NewFaultFileSystem(rocksdb::FileSystem::Default(), faults);
    if (!made.ok()) ::_exit(2);
    auto env = rocksdb::NewCompositeEnv(*made);
    rocksdb::Options o;
    o.create_if_missing = true;
    o.env = env.get();
    rocksdb::DB* db = nullptr;
    if (!rocksdb::DB::Open(o, path, &db).ok()) ::_exit(3);
    rocksdb::WriteOptions synced;
    synced.sync = true;
    if (!db->Put(synced, "durable", "1").ok()) ::_exit(4);
    if (!db->Put(rocksdb::WriteOptions(), "volatile", "2").ok()) ::_exit(5);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);

  auto dropped = DropUnsyncedData(faults);
  REQUIRE(dropped.ok());
  CHECK(dropped->bytes_dropped > 0);

  rocksdb::DB* raw = nullptr;
  rocksdb::Options o;
  REQUIRE(rocksdb::DB::Open(o, path, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string v;
  CHECK(db->Get(rocksdb::ReadOptions(), "durable", &v).ok());
  CHECK(v == "1");
  CHECK(db->Get(rocksdb::ReadOptions(), "volatile", &v).IsNotFound());
}

TEST_CASE("fault fs: a malformed journal is refused", "[fault_fs]") {
  TempDir dir;
  const std::string faults = dir.sub("x.faults");
  fs::create_directories(faults);
  for (const char* bad : {"S\t/a\tnot-a-number\n", "Q\t/a\n", "C\n", "S\t/a\n"}) {
    std::ofstream(faults + "/journal", std::ios::trunc) << bad;
    auto r = DropUnsyncedData(faults);
    INFO(bad);
    CHECK(r.status().code() == Code::kCorruption);
  }
}
