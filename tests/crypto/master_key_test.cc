// Proves each master-key provider loads a good key and refuses every bad one
// with a clear error that never contains the key material.
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include <catch2/catch.hpp>

#include "crypto/master_key.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::crypto;
using bulwark::testing::TempDir;

namespace {

std::string WriteKeyFile(const TempDir& dir, const std::string& name, const std::string& content, mode_t mode) {
  const std::string path = dir.sub(name);
  std::ofstream(path, std::ios::binary) << content;
  ::chmod(path.c_str(), mode);
  return path;
}

const std::string kKeyB64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // bytes 0..31

}  // namespace

TEST_CASE("file: provider accepts raw and base64 keys in a 0600 file", "[crypto][master-key]") {
  TempDir dir;
  std::string raw;
  for (int i = 0; i < 32; ++i) raw.push_back(static_cast<char>(i));
  auto a = LoadMasterKey("file:" + WriteKeyFile(dir, "raw.key", raw, 0600));
  auto b = LoadMasterKey("file:" + WriteKeyFile(dir, "b64.key", kKeyB64 + "\n", 0400));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->id() == b->id());  // the same 32 bytes, two spellings
  CHECK(a->id().size() == 16);
}

TEST_CASE("file: provider refuses a key file group or others can read", "[crypto][master-key]") {
  TempDir dir;
  auto r = LoadMasterKey("file:" + WriteKeyFile(dir, "open.key", kKeyB64, 0644));
  REQUIRE(r.status().code() == Code::kPermissionDenied);
  CHECK(r.status().message().find("chmod 600") != std::string::npos);
  CHECK(r.status().message().find(kKeyB64) == std::string::npos);
}

TEST_CASE("file: provider errors: missing file, wrong size, not a file", "[crypto][master-key]") {
  TempDir dir;
  CHECK(LoadMasterKey("file:" + dir.sub("absent.key")).status().code() == Code::kNotFound);
  auto short_key = LoadMasterKey("file:" + WriteKeyFile(dir, "short.key", "c2hvcnQ=", 0600));
  CHECK(short_key.status().code() == Code::kInvalidArgument);
  CHECK(short_key.status().message().find("c2hvcnQ") == std::string::npos);
  ::chmod(dir.path().c_str(), 0700);
  CHECK(LoadMasterKey("file:" + dir.path().string()).status().code() == Code::kInvalidArgument);
  CHECK(LoadMasterKey("file:").status().code() == Code::kInvalidArgument);
}

TEST_CASE("env: provider reads base64 and reports a missing or bad variable", "[crypto][master-key]") {
  ::setenv("BULWARK_TEST_MASTER_KEY", kKeyB64.c_str(), 1);
  auto good = LoadMasterKey("env:BULWARK_TEST_MASTER_KEY");
  REQUIRE(good.ok());
  ::setenv("BULWARK_TEST_BAD_KEY", "too-short-and-not-base64", 1);
  auto bad = LoadMasterKey("env:BULWARK_TEST_BAD_KEY");
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK(bad.status().message().find("too-short") == std::string::npos);
  ::unsetenv("BULWARK_TEST_UNSET_KEY");
  CHECK(LoadMasterKey("env:BULWARK_TEST_UNSET_KEY").status().code() == Code::kNotFound);
}

TEST_CASE("command: provider runs a helper, bounded in time, with clear failures", "[crypto][master-key]") {
  auto good = LoadMasterKey("command:/bin/echo " + kKeyB64);
  REQUIRE(good.ok());
  ::setenv("BULWARK_TEST_MASTER_KEY", kKeyB64.c_str(), 1);
  CHECK(good->id() == LoadMasterKey("env:BULWARK_TEST_MASTER_KEY")->id());

  CHECK(LoadMasterKey("command:/bin/false").status().code() == Code::kUnavailable);
  CHECK(LoadMasterKey("command:/nonexistent/kms-helper").status().code() == Code::kUnavailable);
  KeyProviderOptions quick;
  quick.command_timeout = std::chrono::milliseconds(200);
  auto hung = LoadMasterKey("command:/bin/sleep 5", quick);
  CHECK(hung.status().code() == Code::kDeadlineExceeded);
  auto garbage = LoadMasterKey("command:/bin/echo sekrit-output");
  CHECK(garbage.status().code() == Code::kInvalidArgument);
  CHECK(garbage.status().message().find("sekrit") == std::string::npos);
  CHECK(LoadMasterKey("command:").status().code() == Code::kInvalidArgument);
}

TEST_CASE("master key URI must name a known provider", "[crypto][master-key]") {
  CHECK(LoadMasterKey("vault:secret/bulwark").status().code() == Code::kInvalidArgument);
  CHECK(LoadMasterKey("no-colon").status().code() == Code::kInvalidArgument);
}

TEST_CASE("Wrap binds the context and the key", "[crypto][master-key]") {
  const MasterKey k1 = MasterKey::Generate();
  const MasterKey k2 = MasterKey::Generate();
  CHECK(k1.id() != k2.id());
  const std::string wrapped = k1.Wrap("a data key of 32 bytes.........!", "ctx-a");
  auto back = k1.Unwrap(wrapped, "ctx-a");
  REQUIRE(back.ok());
  CHECK(back->view() == "a data key of 32 bytes.........!");
  CHECK(k1.Unwrap(wrapped, "ctx-b").status().code() == Code::kCorruption);
  CHECK(k2.Unwrap(wrapped, "ctx-a").status().code() == Code::kCorruption);
  std::string flipped = wrapped;
  flipped[flipped.size() / 2] ^= 0x01;
  CHECK(k1.Unwrap(flipped, "ctx-a").status().code() == Code::kCorruption);
  CHECK(k1.Unwrap("x", "ctx-a").status().code() == Code::kCorruption);
}
