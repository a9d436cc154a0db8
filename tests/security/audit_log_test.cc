// Proves the audit log keeps what it is given (Query returns it, filtered),
// that Verify passes an untouched log with exact counts and names the place
// of every kind of tampering (an edited byte, a deleted, reordered or
// truncated record, a missing segment), that retention is told apart from
// deletion, that a full queue leaves a visible record, that a reopened log
// chains on, and that neither the files nor the errors give away a secret.
#include "security/audit_log.h"

#include <sodium.h>
#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crypto/secret.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::security;
using std::chrono::system_clock;

namespace {

constexpr std::string_view kNode = "node-a";
// A principal no format would produce by accident, to look for in raw bytes.
constexpr std::string_view kDistinctivePrincipal = "identity:zebra-quartz-4711@example";

// Deterministic keys, so a failure replays exactly.
AuditKeys Keys(char encryption_byte = 'k') {
  REQUIRE(crypto::InitSodium().ok());
  AuditKeys keys;
  keys.encryption_key = crypto::SecretBytes::CopyFrom(std::string(kAuditKeyBytes, encryption_byte));
  keys.signing_seed = crypto::SecretBytes::CopyFrom(std::string(kAuditSigningSeedBytes, 's'));
  return keys;
}

// Small segments so a few dozen records span several; no checkpoints (an
// hour apart), so record counts are exact; no fsync, for speed.
AuditOptions Options(const std::string& dir) {
  AuditOptions options;
  options.dir = dir;
  options.node = std::string(kNode);
  options.segment_max_bytes = 1500;
  options.checkpoint_interval = std::chrono::hours(1);
  options.sync = false;
  return options;
}

AuditRecord Event(int n) {
  AuditRecord r;
  r.time_unix_ms = 1'700'000'000'000 + n * 1000;
  r.principal = n % 2 == 0 ? "key:primary" : std::string(kDistinctivePrincipal);
  r.source = "ipv4:127.0.0.1:5000";
  r.operation = n % 3 == 0 ? "DeleteItem" : "CreateItem";
  r.resource = "dbs/D/colls/C" + std::to_string(n % 2) + "/docs/" + std::to_string(n);
  r.code = "OK";
  r.latency_us = 100 + n;
  r.detail = "request " + std::to_string(n);
  return r;
}

std::unique_ptr<AuditLog> OpenLog(const AuditOptions& options) {
  auto log = AuditLog::Open(options, Keys());
  REQUIRE(log.ok());
  return std::move(log).value();
}

// Writes `count` events into a fresh log and closes it.
void WriteLog(const std::string& dir, int count) {
  auto log = OpenLog(Options(dir));
  for (int n = 1; n <= count; ++n) log->Append(Event(n));
  REQUIRE(log->Flush().ok());
  log->Close();
}

AuditVerifyReport Verify(const std::string& dir, const AuditKeys& keys = Keys()) {
  auto report = VerifyAuditLog(dir, keys);
  REQUIRE(report.ok());
  INFO(report->problem);
  return std::move(report).value();
}

std::vector<AuditRecord> Query(const std::string& dir, AuditQuery query = {}) {
  auto records = QueryAuditLog(dir, Keys(), query);
  REQUIRE(records.ok());
  return std::move(records).value();
}

std::string SegmentPath(const std::string& dir, int number) {
  char name[32];
  std::snprintf(name, sizeof(name), "/%08d.audit", number);
  return dir + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

uint32_t LoadU32(const std::string& bytes, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + i])) << (8 * i);
  return v;
}

// A segment file cut into its header and whole frames, read independently of
// the code under test (layout: audit_format.h).
struct SegmentBytes {
  std::string header;
  std::vector<std::string> frames;

  static SegmentBytes Read(const std::string& path) {
    const std::string bytes = ReadFile(path);
    SegmentBytes out;
    // magic, number, node length | node | time, previous index and hash, key id, nonce, tag
    const size_t header_bytes = 20 + LoadU32(bytes, 16) + 8 + 8 + 32 + 16 + 24 + 16;
    REQUIRE(bytes.size() >= header_bytes);
    out.header = bytes.substr(0, header_bytes);
    for (size_t at = header_bytes; at < bytes.size();) {
      const size_t frame_bytes = 4 + 24 + LoadU32(bytes, at);
      REQUIRE(at + frame_bytes <= bytes.size());
      out.frames.push_back(bytes.substr(at, frame_bytes));
      at += frame_bytes;
    }
    return out;
  }
  void Write(const std::string& path) const {
    std::string bytes = header;
    for (const std::string& frame : frames) bytes += frame;
    WriteFile(path, bytes);
  }
};

// Segment `number`'s records are numbered on from the frames before it
// (records are indexed from 1 across the whole log).
uint64_t FirstIndexOf(const std::string& dir, int number) {
  uint64_t index = 1;
  for (int n = 1; n < number; ++n) index += SegmentBytes::Read(SegmentPath(dir, n)).frames.size();
  return index;
}

void CheckFails(const AuditVerifyReport& report, const std::string& place, const std::string& reason) {
  INFO(report.problem);
  CHECK_FALSE(report.ok);
  CHECK(report.problem.find(place) != std::string::npos);
  CHECK(report.problem.find(reason) != std::string::npos);
}

}  // namespace

TEST_CASE("Records round-trip through Query, filtered, oldest first", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  WriteLog(path, 30);

  const std::vector<AuditRecord> all = Query(path);
  REQUIRE(all.size() == 30);  // seals are bookkeeping: not returned unless asked for
  for (int n = 1; n <= 30; ++n) {
    const AuditRecord& got = all[n - 1];
    const AuditRecord want = Event(n);
    CHECK(got.node == kNode);
    CHECK(got.time_unix_ms == want.time_unix_ms);
    CHECK(got.principal == want.principal);
    CHECK(got.source == want.source);
    CHECK(got.operation == want.operation);
    CHECK(got.resource == want.resource);
    CHECK(got.code == want.code);
    CHECK(got.latency_us == want.latency_us);
    CHECK(got.detail == want.detail);
    if (n > 1) CHECK(got.index > all[n - 2].index);
  }
  CHECK(all.front().index == 1);

  AuditQuery by_principal;
  by_principal.principal = std::string(kDistinctivePrincipal);
  CHECK(Query(path, by_principal).size() == 15);
  AuditQuery by_operation;
  by_operation.operation = "DeleteItem";
  CHECK(Query(path, by_operation).size() == 10);
  AuditQuery by_resource;
  by_resource.resource = "dbs/D/colls/C1/";
  const auto odd = Query(path, by_resource);
  REQUIRE(odd.size() == 15);
  CHECK(odd.front().resource == "dbs/D/colls/C1/docs/1");
  AuditQuery by_time;
  by_time.since_unix_ms = Event(5).time_unix_ms;
  by_time.until_unix_ms = Event(9).time_unix_ms;
  const auto window = Query(path, by_time);
  REQUIRE(window.size() == 5);
  CHECK(window.front().detail == "request 5");
  CHECK(window.back().detail == "request 9");
  AuditQuery limited = by_operation;
  limited.limit = 3;
  const auto first_three = Query(path, limited);
  REQUIRE(first_three.size() == 3);
  CHECK(first_three.back().detail == "request 9");
  AuditQuery seals;
  seals.operation = "AuditSeal";
  CHECK(Query(path, seals).size() == Verify(path).segments);
}

TEST_CASE("Fields over their limits are cut so the record still fits", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  auto log = OpenLog(Options(path));
  AuditRecord huge = Event(1);
  huge.detail = std::string(3 * kMaxAuditRecordBytes, '\x01');  // escapes to six bytes each
  huge.resource = std::string(kMaxAuditRecordBytes, 'r');
  log->Append(std::move(huge));
  REQUIRE(log->Flush().ok());
  log->Close();
  const auto records = Query(path);
  REQUIRE(records.size() == 1);
  CHECK(records[0].detail.size() < kMaxAuditRecordBytes);
  CHECK(records[0].resource.size() < kMaxAuditRecordBytes);
  CHECK(records[0].principal == Event(1).principal);
  CHECK(Verify(path).ok);
}

TEST_CASE("An untouched log verifies, with exact counts across several segments", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  WriteLog(path, 40);
  const auto files = std::distance(std::filesystem::directory_iterator(path), {}) - 1;  // less the LOCK file
  REQUIRE(files >= 3);

  const AuditVerifyReport report = Verify(path);
  CHECK(report.ok);
  CHECK(report.problem.empty());
  CHECK_FALSE(report.in_progress);
  CHECK(report.segments == static_cast<uint64_t>(files));
  CHECK(report.records == 40 + report.segments);  // the events and one seal per segment
  CHECK(report.first_index == 1);
  CHECK(report.last_index == report.records);
}

TEST_CASE("Every flipped byte of a frame fails Verify, naming the segment and record", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  WriteLog(path, 40);
  const std::string segment = SegmentPath(path, 2);
  const std::string original = ReadFile(segment);
  const SegmentBytes parts = SegmentBytes::Read(segment);
  REQUIRE(parts.frames.size() >= 3);
  const uint64_t index = FirstIndexOf(path, 2) + 1;  // the second frame
  const size_t frame_at = parts.header.size() + parts.frames[0].size();
  for (size_t i = 0; i < parts.frames[1].size(); ++i) {
    INFO("byte " << i << " of the frame");
    std::string edited = original;
    edited[frame_at + i] ^= 0x20;
    WriteFile(segment, edited);
    const AuditVerifyReport report = Verify(path);
    // The length field is the one place a flip can make the frame run past
    // its neighbours; the first bad place is still this record.
    CheckFails(report, "segment 00000002 record " + std::to_string(index), "");
  }
  WriteFile(segment, original);
  CHECK(Verify(path).ok);
}

TEST_CASE("Every flipped byte of a segment header fails Verify, naming the segment", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  WriteLog(path, 40);
  const std::string segment = SegmentPath(path, 2);
  const std::string original = ReadFile(segment);
  const size_t header_bytes = SegmentBytes::Read(segment).header.size();
  for (size_t i = 0; i < header_bytes; ++i) {
    INFO("byte " << i << " of the header");
    std::string edited = original;
    edited[i] ^= 0x01;
    WriteFile(segment, edited);
    CheckFails(Verify(path), "segment 00000002 header", "");
  }
}

TEST_CASE("A deleted record fails Verify, naming where it was", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  WriteLog(path, 40);
  const std::string segment = SegmentPath(path, 2);
  SegmentBytes parts = SegmentBytes::Read(segment);
  const uint64_t deleted = FirstIndexOf(path, 2) + 1;
  parts.frames.erase(parts.frames.begin() + 1);
  parts.Write(segment);
  CheckFails(Verify(path), "segment 00000002 record " + std::to_string(deleted) + " ",
             "holds record " + std::to_string(deleted + 1));
}

TEST_CASE("Two swapped records fail Verify", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  WriteLog(path, 40);
  const std::string segment = SegmentPath(path, 2);
  SegmentBytes parts = SegmentBytes::Read(segment);
  const uint64_t first = FirstIndexOf(path, 2);
  std::swap(parts.frames[0], parts.frames[1]);
  parts.Write(segment);
  CheckFails(Verify(path), "segment 00000002 record " + std::to_string(first) + " ",
             "holds record " + std::to_string(first + 1));
}

TEST_CASE("A truncated older segment fails Verify, naming it", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  WriteLog(path, 40);
  const std::string segment = SegmentPath(path, 2);
  const std::string original = ReadFile(segment);
  SegmentBytes parts = SegmentBytes::Read(segment);

  SECTION("at a frame boundary, dropping the seal") {
    parts.frames.resize(2);
    parts.Write(segment);
    CheckFails(Verify(path), "segment 00000002: not sealed after record " + std::to_string(FirstIndexOf(path, 2) + 1),
               "truncated");
  }
  SECTION("inside a frame") {
    WriteFile(segment, original.substr(0, original.size() - 10));
    CheckFails(Verify(path), "segment 00000002 record", "truncated frame");
  }
}

TEST_CASE("A missing middle segment fails Verify at the broken link", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  WriteLog(path, 40);
  REQUIRE(std::filesystem::exists(SegmentPath(path, 3)));
  std::filesystem::remove(SegmentPath(path, 2));
  CheckFails(Verify(path), "segment 00000003: links to record", "segment 00000001 ends at record");
}

TEST_CASE("Retention drops old segments and Verify tells it from deletion", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  AuditOptions options = Options(path);
  options.retention = std::chrono::hours(1);

  SECTION("retention: a signed pruned record names where the log now starts") {
    auto log = OpenLog(options);
    for (int n = 1; n <= 40; ++n) log->Append(Event(n));
    REQUIRE(log->Flush().ok());
    const uint64_t segments_before = Verify(path).segments;
    REQUIRE(segments_before >= 3);
    // Nothing is an hour old yet: nothing goes.
    REQUIRE(log->ApplyRetention(system_clock::now()).ok());
    CHECK(Verify(path).segments == segments_before);

    REQUIRE(log->ApplyRetention(system_clock::now() + std::chrono::hours(2)).ok());
    const AuditVerifyReport pruned = Verify(path);
    CHECK(pruned.ok);
    CHECK(pruned.segments == 1);  // only the current segment is left
    CHECK(pruned.first_index > 1);
    CHECK(pruned.records == pruned.last_index - pruned.first_index + 1);
    AuditQuery query;
    query.operation = "AuditPruned";
    const auto markers = Query(path, query);
    REQUIRE(markers.size() == 1);
    CHECK(markers[0].detail.find("through record " + std::to_string(pruned.first_index - 1) + " hash ") !=
          std::string::npos);

    // The log goes on, and reopens, from the pruned start.
    log->Append(Event(41));
    log->Close();
    log = OpenLog(options);
    log->Close();
    const AuditVerifyReport reopened = Verify(path);
    CHECK(reopened.ok);
    CHECK(reopened.first_index == pruned.first_index);
    CHECK(Query(path).back().detail == "request 41");
  }
  SECTION("deletion: the same files removed by hand fail Verify") {
    WriteLog(path, 40);
    std::filesystem::remove(SegmentPath(path, 1));
    CheckFails(Verify(path), "segment 00000002: links to record", "no pruned record names");
  }
}

TEST_CASE("A full queue drops records and the log says how many", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  AuditOptions options = Options(path);
  options.segment_max_bytes = 1 << 20;
  options.queue_limit = 1;
  auto log = OpenLog(options);
  constexpr int kAppends = 20000;
  // One slot and a tight loop: the writer cannot keep up.
  for (int n = 1; n <= kAppends; ++n) log->Append(Event(n));
  REQUIRE(log->Flush().ok());
  log->Close();
  REQUIRE(log->dropped() > 0);
  CHECK(log->appended() + log->dropped() == kAppends);

  uint64_t reported = 0;
  uint64_t events = 0;
  AuditQuery everything;
  everything.limit = 2 * kAppends;
  for (const AuditRecord& record : Query(path, everything)) {
    if (record.operation != "AuditDropped") {
      ++events;
      continue;
    }
    const size_t space = record.detail.find(' ');
    REQUIRE(record.detail.substr(space) == " records dropped");
    reported += std::stoull(record.detail.substr(0, space));
  }
  CHECK(reported == log->dropped());
  CHECK(events == log->appended());
  CHECK(Verify(path).ok);
}

TEST_CASE("A reopened log chains on from where it closed", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  AuditOptions options = Options(path);
  options.segment_max_bytes = 1 << 20;
  options.sync = true;  // the fsync path, once
  for (int session = 0; session < 3; ++session) {
    auto log = OpenLog(options);
    for (int n = 1; n <= 5; ++n) log->Append(Event(session * 5 + n));
    log->Close();
    log->Close();  // idempotent
    log->Append(Event(99));
    CHECK(log->dropped() == 1);  // after Close, refused and counted
  }
  const auto records = Query(path);
  REQUIRE(records.size() == 15);
  CHECK(records[5].index == 7);  // after five events and the first session's seal
  CHECK(records[5].detail == "request 6");
  const AuditVerifyReport report = Verify(path);
  CHECK(report.ok);
  CHECK(report.segments == 3);
  CHECK(report.records == 18);
  CHECK(report.last_index == 18);
}

TEST_CASE("A segment rolls once it is older than segment_max_age", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  AuditOptions options = Options(path);
  options.segment_max_bytes = 1 << 20;
  options.segment_max_age = std::chrono::seconds(1);
  auto log = OpenLog(options);
  log->Append(Event(1));
  REQUIRE(log->Flush().ok());
  log->Append(Event(2));  // young: same segment
  REQUIRE(log->Flush().ok());
  CHECK_FALSE(std::filesystem::exists(SegmentPath(path, 2)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  log->Append(Event(3));
  REQUIRE(log->Flush().ok());
  CHECK(std::filesystem::exists(SegmentPath(path, 2)));
  log->Close();
  const AuditVerifyReport report = Verify(path);
  CHECK(report.ok);
  CHECK(report.segments == 2);
  CHECK(report.records == 5);  // three events, two seals
}

TEST_CASE("A partial last frame is in progress only while a writer holds the log", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  AuditOptions options = Options(path);
  options.segment_max_bytes = 1 << 20;
  auto log = OpenLog(options);
  for (int n = 1; n <= 3; ++n) log->Append(Event(n));
  REQUIRE(log->Flush().ok());
  const std::string newest = SegmentPath(path, 1);
  const std::string whole = ReadFile(newest);
  // A frame's length and the start of its nonce, as a reader racing the
  // writer's write() could see.
  WriteFile(newest, whole + std::string("\x40\x00\x00\x00\x01\x02", 6));
  AuditVerifyReport report = Verify(path);
  CHECK(report.ok);
  CHECK(report.in_progress);
  CHECK(report.records == 3);
  CHECK(Query(path).size() == 3);

  // The same bytes with no writer running are damage.
  log.reset();
  WriteFile(newest, whole + std::string("\x40\x00\x00\x00\x01\x02", 6));
  CheckFails(Verify(path), "segment 00000001 record 4", "truncated frame");
}

TEST_CASE("Verify passes while the writer appends and rolls segments", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  auto log = OpenLog(Options(path));
  std::atomic<bool> done{false};
  std::thread appender([&] {
    for (int n = 1; n <= 3000; ++n) log->Append(Event(n));
    done = true;
  });
  int verified = 0;
  while (!done || verified < 5) {
    const AuditVerifyReport report = Verify(path);
    CHECK(report.ok);
    ++verified;
  }
  appender.join();
  REQUIRE(log->Flush().ok());
  log->Close();
  CHECK(Verify(path).ok);
}

TEST_CASE("A wrong encryption key fails clearly and quotes no key", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  WriteLog(path, 10);
  const AuditKeys wrong = Keys('\xab');
  const std::string wrong_hex = crypto::HexEncode(wrong.encryption_key.view());
  const std::string right_hex = crypto::HexEncode(Keys().encryption_key.view());
  const auto no_key_in = [&](const std::string& message) {
    INFO(message);
    CHECK(message.find(wrong_hex.substr(0, 8)) == std::string::npos);
    CHECK(message.find(right_hex.substr(0, 8)) == std::string::npos);
    CHECK(message.find(crypto::Base64Encode(wrong.encryption_key.view()).substr(0, 8)) == std::string::npos);
    CHECK(message.find(wrong.encryption_key.view().substr(0, 4)) == std::string::npos);
    CHECK(message.find(Keys().encryption_key.view().substr(0, 4)) == std::string::npos);
  };

  const AuditVerifyReport report = Verify(path, wrong);
  CheckFails(report, "segment 00000001 header", "different encryption key");
  no_key_in(report.problem);
  auto query = QueryAuditLog(path, wrong, {});
  REQUIRE_FALSE(query.ok());
  CHECK(query.status().code() == Code::kCorruption);
  no_key_in(query.status().message());
  AuditOptions options = Options(path);
  auto reopened = AuditLog::Open(options, Keys('\xab'));
  REQUIRE_FALSE(reopened.ok());
  no_key_in(reopened.status().message());
}

TEST_CASE("The files hold no plaintext field and only the owner may read them", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  auto log = OpenLog(Options(path));
  CHECK(log->public_key_base64().size() == 44);  // 32 bytes
  for (int n = 1; n <= 40; ++n) log->Append(Event(n));
  REQUIRE(log->Flush().ok());
  REQUIRE(Query(path).size() == 40);  // the principal is there to find, encrypted
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  for (const auto& entry : std::filesystem::directory_iterator(path)) {
    INFO(entry.path());
    const std::string bytes = ReadFile(entry.path().string());
    CHECK(bytes.find(kDistinctivePrincipal) == std::string::npos);
    CHECK(bytes.find("request 1") == std::string::npos);
    CHECK(bytes.find("dbs/D/colls") == std::string::npos);
    REQUIRE(::stat(entry.path().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
  }
}

TEST_CASE("Seals and checkpoints are signed by the key derived from the seed", "[audit]") {
  testing::TempDir dir;
  const std::string path = dir.sub("audit");
  AuditOptions options = Options(path);
  options.checkpoint_interval = std::chrono::milliseconds(1);
  auto log = OpenLog(options);
  unsigned char public_key[crypto_sign_PUBLICKEYBYTES], secret_key[crypto_sign_SECRETKEYBYTES];
  crypto_sign_seed_keypair(public_key, secret_key, Keys().signing_seed.data());
  CHECK(log->public_key_base64() ==
        crypto::Base64Encode(std::string_view(reinterpret_cast<const char*>(public_key), sizeof(public_key))));
  for (int n = 1; n <= 20; ++n) {
    log->Append(Event(n));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  REQUIRE(log->Flush().ok());
  log->Close();
  AuditQuery checkpoints;
  checkpoints.operation = "AuditCheckpoint";
  REQUIRE_FALSE(Query(path, checkpoints).empty());
  CHECK(Verify(path).ok);

  // Another signing seed: the chain and the encryption are fine, the
  // signatures are not.
  AuditKeys other = Keys();
  other.signing_seed = crypto::SecretBytes::CopyFrom(std::string(kAuditSigningSeedBytes, 't'));
  auto report = VerifyAuditLog(path, other);
  REQUIRE(report.ok());
  CheckFails(*report, "segment 00000001 record", "signature does not verify");
}

TEST_CASE("After a crash the next writer signs a recovery, which Verify accepts, a truncation it does not", "[audit]") {
  testing::TempDir dir;
  const std::string live = dir.sub("live"), crashed = dir.sub("crashed");
  AuditOptions options = Options(live);
  options.segment_max_bytes = 1 << 20;
  uint64_t sealed_through = 0;
  {
    auto log = OpenLog(options);
    for (int n = 1; n <= 5; ++n) log->Append(Event(n));
    log->Close();
    sealed_through = log->sealed_through();
  }
  CHECK(sealed_through == 6);  // five events and the seal
  {
    // A crash: the files as they are while the writer still runs, with
    // records past the last seal and no seal of their own.
    auto log = OpenLog(options);
    for (int n = 6; n <= 9; ++n) log->Append(Event(n));
    REQUIRE(log->Flush().ok());
    std::filesystem::copy(live, crashed);
    log->Close();
  }
  std::filesystem::remove(crashed + "/LOCK");
  {
    AuditOptions reopened = Options(crashed);
    reopened.sealed_through = sealed_through;  // the crash left the segment past it: a crash, not a truncation
    auto log = OpenLog(reopened);
    log->Append(Event(10));
    log->Close();
  }
  const AuditVerifyReport report = Verify(crashed);
  CHECK(report.ok);
  CHECK(report.unclean_stops == 1);
  AuditQuery only_recoveries;
  only_recoveries.operation = "AuditRecovered";
  const auto recovered = Query(crashed, only_recoveries);
  REQUIRE(recovered.size() == 1);
  CHECK(recovered[0].detail.find("unclean stop") != std::string::npos);

  // Truncated below the point the owner knows was sealed: no recovery is
  // signed, and Verify names the segment.
  const std::string cut = dir.sub("cut");
  std::filesystem::copy(live, cut);
  std::filesystem::remove(cut + "/LOCK");
  const std::string first = SegmentPath(cut, 1);
  std::filesystem::resize_file(first, std::filesystem::file_size(first) - 30);
  {
    AuditOptions reopened = Options(cut);
    reopened.sealed_through = sealed_through;
    auto log = OpenLog(reopened);
    log->Append(Event(11));
    log->Close();
  }
  const AuditVerifyReport bad = Verify(cut);
  CHECK(!bad.ok);
  CHECK(bad.problem.find("segment 00000001") != std::string::npos);
  CHECK(bad.unclean_stops == 0);
}
