// The page layer: every file RocksDB writes is ciphertext. Proves the cipher
// stream at arbitrary offsets, that no canary (names, ids, partition keys,
// bodies) reaches any file on disk, and that flipped bytes in an SST, the WAL,
// the MANIFEST or a file prefix give an error, never different data.
#include <filesystem>
#include <fstream>
#include <random>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "crypto/page_encryption.h"
#include "storage/document_store.h"
#include "storage/store_keys.h"
#include "tests/store_scan.h"
#include "tests/test_util.h"

using namespace bulwark;
using namespace bulwark::storage;
using bulwark::testing::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<crypto::PageEncryptionProvider> Provider() {
  std::map<uint32_t, crypto::SecretBytes> keys;
  keys.emplace(1, crypto::SecretBytes::Random(crypto::kStoreKeyBytes));
  return std::make_shared<crypto::PageEncryptionProvider>(std::move(keys), 1);
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Canaries hidden in every place a name or value can go.
const std::vector<std::string> kCanaries = {"dbCANARY7a1", "collCANARY7b2", "idCANARY7c3", "pkCANARY7d4",
                                            "bodyCANARY7e5"};

void WriteCanaries(DocumentStore& store, int from, int to) {
  for (int i = from; i < to; ++i) {
    const json doc = {{"id", kCanaries[2] + std::to_string(i)},
                      {"tenant", kCanaries[3]},
                      {"secret", kCanaries[4] + " and more text"}};
    REQUIRE(store.UpsertItem(kCanaries[0], kCanaries[1], doc.dump()).ok());
  }
}

// Counts, for each canary, the files under `dir` that contain it.
std::map<std::string, int> ScanForCanaries(const fs::path& dir) {
  std::map<std::string, int> hits;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string bytes = ReadAll(entry.path());
    for (const auto& c : kCanaries) {
      if (bytes.find(c) != std::string::npos) ++hits[c];
    }
  }
  return hits;
}

std::unique_ptr<DocumentStore> MakeCanaryStore(const std::string& path, const crypto::MasterKey& key, bool encrypt) {
  StoreOptions options;
  options.path = path;
  options.encrypt_files = encrypt;
  auto store = DocumentStore::Open(options, key.Clone());
  REQUIRE(store.ok());
  REQUIRE((*store)->CreateDatabase(kCanaries[0]).ok());
  REQUIRE((*store)->CreateContainer(kCanaries[0], kCanaries[1], "/tenant").ok());
  WriteCanaries(**store, 0, 200);
  REQUIRE((*store)->Compact().ok());  // SSTs, a fresh MANIFEST
  WriteCanaries(**store, 200, 260);   // these stay in the WAL: close does not flush it
  return std::move(store).value();
}

}  // namespace

TEST_CASE("Page cipher stream: any chunking at any offset round trips", "[crypto][page]") {
  auto provider = Provider();
  std::string prefix(crypto::kPagePrefixBytes, '\0');
  REQUIRE(provider->CreateNewPrefix("f", prefix.data(), prefix.size()).ok());
  CHECK(*crypto::PageEncryptionProvider::PrefixKeyVersion(prefix) == 1);
  rocksdb::Slice slice(prefix);
  std::unique_ptr<rocksdb::BlockAccessCipherStream> stream;
  REQUIRE(provider->CreateCipherStream("f", rocksdb::EnvOptions(), slice, &stream).ok());

  std::mt19937 rng(5);
  std::string plain(5000, '\0');
  for (auto& c : plain) c = static_cast<char>(rng());
  std::string whole = plain;
  REQUIRE(stream->Encrypt(1000, whole.data(), whole.size()).ok());
  CHECK(whole != plain);
  // Decrypt in odd pieces: every piece must use the right counter and skip.
  std::string pieces = whole;
  size_t at = 0;
  for (size_t len : {1, 63, 64, 65, 7, 1000, 3000}) {
    len = std::min(len, pieces.size() - at);
    REQUIRE(stream->Decrypt(1000 + at, pieces.data() + at, len).ok());
    at += len;
  }
  REQUIRE(stream->Decrypt(1000 + at, pieces.data() + at, pieces.size() - at).ok());
  CHECK(pieces == plain);
}

TEST_CASE("Page prefix: tampered, foreign or unknown-version prefixes are refused", "[crypto][page]") {
  auto provider = Provider();
  std::string prefix(crypto::kPagePrefixBytes, '\0');
  REQUIRE(provider->CreateNewPrefix("f", prefix.data(), prefix.size()).ok());
  std::unique_ptr<rocksdb::BlockAccessCipherStream> stream;
  for (size_t i : {0, 9, 12, 20, 50, 100}) {
    std::string bad = prefix;
    bad[i] ^= 0x04;
    rocksdb::Slice slice(bad);
    INFO("byte " << i);
    CHECK(provider->CreateCipherStream("f", rocksdb::EnvOptions(), slice, &stream).IsCorruption());
  }
  rocksdb::Slice good(prefix);
  CHECK(Provider()->CreateCipherStream("f", rocksdb::EnvOptions(), good, &stream).IsCorruption());  // other key
}

TEST_CASE("Canary scan: no name, id, partition key or body reaches any file", "[storage][page]") {
  TempDir dir;
  const crypto::MasterKey key = crypto::MasterKey::Generate();
  { auto store = MakeCanaryStore(dir.sub("enc"), key, /*encrypt=*/true); }
  { auto store = MakeCanaryStore(dir.sub("plain"), key, /*encrypt=*/false); }
  // The control: without the page layer the scan finds the names and keys
  // (bodies are sealed either way), so the scan is able to find them.
  auto plain_hits = ScanForCanaries(dir.sub("plain"));
  CHECK(plain_hits[kCanaries[0]] > 0);
  CHECK(plain_hits[kCanaries[2]] > 0);
  CHECK(plain_hits[kCanaries[3]] > 0);
  CHECK(plain_hits[kCanaries[4]] == 0);
  // Every file under the store is a Bulwark-encrypted file (or the key file,
  // which holds only wrapped keys, or RocksDB's empty LOCK): no plaintext LOG.
  for (const auto& entry : fs::directory_iterator(dir.sub("enc"))) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kStoreKeyFileName, 0) == 0 || fs::file_size(entry.path()) == 0) continue;
    INFO(name);
    CHECK(crypto::PageEncryptionProvider::PrefixKeyVersion(ReadAll(entry.path()).substr(0, 16)).ok());
  }
  const auto hits = ScanForCanaries(dir.sub("enc"));
  for (const auto& c : kCanaries) {
    INFO(c);
    CHECK(hits.count(c) == 0);
  }
  // The WAL really held the last writes: they come back after reopen.
  StoreOptions options;
  options.path = dir.sub("enc");
  auto store = DocumentStore::Open(options, key.Clone());
  REQUIRE(store.ok());
  CHECK((*store)->ReadItem(kCanaries[0], kCanaries[1], "\"" + kCanaries[3] + "\"", kCanaries[2] + "259").ok());
}

TEST_CASE("Flipped bytes in SST, WAL, MANIFEST or prefix: an error, never other data", "[storage][page][tamper]") {
  TempDir dir;
  const crypto::MasterKey key = crypto::MasterKey::Generate();
  { auto store = MakeCanaryStore(dir.sub("origin"), key, /*encrypt=*/true); }
  struct Target {
    std::string name_part;
    bool in_prefix;
  };
  for (const Target& t : {Target{".sst", false}, Target{".log", false}, Target{"MANIFEST", false}, Target{".sst", true},
                          Target{"MANIFEST", true}}) {
    const std::string copy = dir.sub("copy");
    fs::remove_all(copy);
    fs::copy(dir.sub("origin"), copy, fs::copy_options::recursive);
    fs::path victim;
    for (const auto& e : fs::directory_iterator(copy)) {
      // The MANIFEST is rewritten whole at each version change, so it is small.
      const uintmax_t min_size = t.name_part == "MANIFEST" ? crypto::kPagePrefixBytes + 64 : 5000;
      if (e.path().filename().string().find(t.name_part) != std::string::npos && fs::file_size(e.path()) > min_size) {
        victim = e.path();
      }
    }
    INFO(t.name_part << (t.in_prefix ? " prefix" : " content") << " in " << victim);
    REQUIRE_FALSE(victim.empty());
    std::string bytes = ReadAll(victim);
    const size_t content = bytes.size() - crypto::kPagePrefixBytes;
    const size_t at = t.in_prefix ? 60 : crypto::kPagePrefixBytes + content / 3;
    bytes[at] ^= 0x10;
    std::ofstream(victim, std::ios::binary | std::ios::trunc) << bytes;

    StoreOptions options;
    options.path = copy;
    auto store = DocumentStore::Open(options, key.Clone());
    if (!store.ok()) {
      CHECK((store.status().code() == Code::kCorruption || store.status().code() == Code::kIOError));
      continue;  // refusing to open, with a clear error, is an allowed answer
    }
    // Opened: every item reads back exactly, or fails; none reads differently.
    int failed = 0;
    for (int i = 0; i < 260; ++i) {
      auto r =
          (*store)->ReadItem(kCanaries[0], kCanaries[1], "\"" + kCanaries[3] + "\"", kCanaries[2] + std::to_string(i));
      if (!r.ok()) {
        ++failed;
        CHECK(r.status().code() != Code::kOk);
        continue;
      }
      const json doc = json::parse(r->json);
      CHECK(doc["id"] == kCanaries[2] + std::to_string(i));
      CHECK(doc["secret"] == kCanaries[4] + " and more text");
    }
    INFO("reads failed: " << failed);
    SUCCEED();
  }
}

TEST_CASE("Store-key rotation: new files use the new key at once, compaction moves the rest",
          "[storage][page][rotation]") {
  TempDir dir;
  const crypto::MasterKey key = crypto::MasterKey::Generate();
  auto store = MakeCanaryStore(dir.sub("s"), key, /*encrypt=*/true);
  auto before = store->StoreKeyUsageReport();
  INFO(before.status().ToString());
  REQUIRE(before.ok());
  REQUIRE(before->size() == 1);
  CHECK(before->front().version == 1);
  CHECK(before->front().files >= 4);

  auto v2 = store->RotateStoreKey();
  REQUIRE(v2.ok());
  CHECK(*v2 == 2);
  WriteCanaries(*store, 260, 300);  // writes go on while the rotation runs
  REQUIRE(store->Compact().ok());   // every SST rewritten under v2
  auto after = store->StoreKeyUsageReport();
  REQUIRE(after.ok());
  std::map<uint32_t, StoreKeyUsage> by_version;
  for (const auto& u : *after) by_version[u.version] = u;
  CHECK(by_version[2].current);
  CHECK(by_version[2].files > 0);
  // Old-key files left are only those RocksDB has not rolled yet (WAL,
  // MANIFEST, info LOG, OPTIONS); every SST moved.
  for (const auto& entry : fs::directory_iterator(dir.sub("s"))) {
    if (entry.path().extension() != ".sst") continue;
    const std::string bytes = ReadAll(entry.path());
    CHECK(*crypto::PageEncryptionProvider::PrefixKeyVersion(bytes.substr(0, 16)) == 2);
  }
  // Retire v1: OPTIONS and IDENTITY move too, then v1 is destroyed.
  CHECK(store->store_key_versions_held() == 2);
  const Status retired = store->RetireOldStoreKeys();
  INFO(retired.ToString());
  REQUIRE(retired.ok());
  CHECK(store->store_key_versions_held() == 1);
  auto one = store->StoreKeyUsageReport();
  REQUIRE(one.ok());
  REQUIRE(one->size() == 1);
  CHECK(one->front().version == 2);
  auto key_file = ReadStoreKeyFile(dir.sub("s"));
  REQUIRE(key_file.ok());
  REQUIRE(key_file->has_value());
  REQUIRE((*key_file)->keys.size() == 1);
  CHECK((*key_file)->keys.front().version == 2);
  WriteCanaries(*store, 300, 310);  // writes go on after it
  store.reset();

  // Reopen with only v2 left: every item, old and new, reads back.
  StoreOptions options;
  options.path = dir.sub("s");
  auto reopened = DocumentStore::Open(options, key.Clone());
  REQUIRE(reopened.ok());
  for (int i : {0, 199, 259, 299, 309}) {
    CHECK((*reopened)
              ->ReadItem(kCanaries[0], kCanaries[1], "\"" + kCanaries[3] + "\"", kCanaries[2] + std::to_string(i))
              .ok());
  }
  auto third = (*reopened)->RotateStoreKey();
  REQUIRE(third.ok());
  CHECK(*third == 3);
  StoreOptions plain;
  plain.path = dir.sub("plain");
  plain.encrypt_files = false;
  auto unencrypted = DocumentStore::Open(plain, key.Clone());
  REQUIRE(unencrypted.ok());
  CHECK((*unencrypted)->RotateStoreKey().status().code() == Code::kFailedPrecondition);
}

namespace {

const std::vector<std::string> kPurgeCanaries = {"collPURGEq1", "idPURGEq2", "pkPURGEq3", "bodyPURGEq4"};
const std::string kKeepCanary = "idKEEPk5";

void WritePurgeCanaries(DocumentStore& store, int from, int to) {
  for (int i = from; i < to; ++i) {
    const json doc = {{"id", kPurgeCanaries[1] + std::to_string(i)},
                      {"tenant", kPurgeCanaries[2]},
                      {"secret", kPurgeCanaries[3] + " text"}};
    REQUIRE(store.UpsertItem("db", kPurgeCanaries[0], doc.dump()).ok());
  }
}

// Every decrypted file; fails the test for a file no held key opens.
std::map<std::string, std::string> DecryptAll(const fs::path& dir, const crypto::MasterKey& master) {
  std::map<std::string, std::string> out;
  for (auto& [name, f] : bulwark::testing::DecryptStoreFiles(dir, master)) {
    INFO(name << ": " << f.error);
    CHECK(f.error.empty());
    out[name] = std::move(f.plain);
  }
  return out;
}

}  // namespace

TEST_CASE("Purge: no file holds the purged container's keys or records, even decrypted with every key kept",
          "[storage][page][purge]") {
  TempDir dir;
  const crypto::MasterKey key = crypto::MasterKey::Generate();
  StoreOptions options;
  options.path = dir.sub("s");
  std::vector<std::string> rids;
  {
    auto opened = DocumentStore::Open(options, key.Clone());
    REQUIRE(opened.ok());
    DocumentStore& store = **opened;
    REQUIRE(store.CreateDatabase("db").ok());
    REQUIRE(store.CreateContainer("db", "keep", "/tenant").ok());
    REQUIRE(store.UpsertItem("db", "keep", json{{"id", kKeepCanary}, {"tenant", "t"}}.dump()).ok());
    // An earlier container of the same name, deleted: its keys are kept
    // (its change-log records need them) until the purge.
    auto first = store.CreateContainer("db", kPurgeCanaries[0], "/tenant");
    REQUIRE(first.ok());
    rids.push_back(first->rid);
    WritePurgeCanaries(store, 0, 100);
    REQUIRE(store.DeleteContainer("db", kPurgeCanaries[0]).ok());
    auto second = store.CreateContainer("db", kPurgeCanaries[0], "/tenant");
    REQUIRE(second.ok());
    rids.push_back(second->rid);
    WritePurgeCanaries(store, 100, 200);
    REQUIRE(store.RotateDataKey("db", kPurgeCanaries[0]).ok());
    REQUIRE(store.Compact().ok());
    WritePurgeCanaries(store, 200, 260);  // in the memtable and the WAL only

    // Before: the decrypted files do name the container and its items.
    int before = 0;
    for (const auto& [name, plain] : DecryptAll(options.path, key)) {
      if (plain.find(kPurgeCanaries[1]) != std::string::npos) ++before;
    }
    CHECK(before > 0);

    auto purged = store.PurgeContainer("db", kPurgeCanaries[0]);
    INFO(purged.status().ToString());
    REQUIRE(purged.ok());
    CHECK(std::set<std::string>(purged->begin(), purged->end()) == std::set<std::string>(rids.begin(), rids.end()));
    CHECK(store.ReadContainer("db", kPurgeCanaries[0]).status().code() == Code::kNotFound);
    CHECK(store.PurgeContainer("db", kPurgeCanaries[0]).status().code() == Code::kNotFound);
    // Bad names are refused as such and change nothing.
    for (const auto& [db, c] : std::vector<std::pair<std::string, std::string>>{
             {"", "x"}, {"db", ""}, {"db", "a/b"}, {"db", std::string(300, 'c')}, {"d?b", "keep"}}) {
      INFO(db << " / " << c);
      CHECK(store.PurgeContainer(db, c).status().code() == Code::kInvalidArgument);
    }
    CHECK(store.PurgeContainer("nodb", "keep").status().code() == Code::kNotFound);
    CHECK(store.ReadContainer("db", "keep").ok());
    auto pending = store.PendingShreds();
    REQUIRE(pending.ok());
    CHECK(pending->size() == 2);
    CHECK(store.max_pending_shred_index() == 0);

    const Status shred = store.ShredFiles();
    INFO(shred.ToString());
    REQUIRE(shred.ok());
    CHECK(store.PendingShreds()->empty());
    CHECK(store.max_pending_shred_index() == -1);
    auto usage = store.StoreKeyUsageReport();
    REQUIRE(usage.ok());
    REQUIRE(usage->size() == 1);  // one store-key version left, every file under it
    CHECK(usage->front().current);

    // The node's keys: the master key and the one store key left.
    auto key_file = ReadStoreKeyFile(options.path);
    REQUIRE(key_file.ok());
    REQUIRE(key_file->has_value());
    CHECK((*key_file)->keys.size() == 1);
    int keep_hits = 0;
    for (const auto& [name, plain] : DecryptAll(options.path, key)) {
      INFO(name);
      for (const auto& c : kPurgeCanaries) CHECK(plain.find(c) == std::string::npos);
      for (const auto& rid : rids) CHECK(plain.find(std::string(kDataKeyMetaPrefix) + rid) == std::string::npos);
      if (plain.find(kKeepCanary) != std::string::npos) ++keep_hits;
    }
    CHECK(keep_hits > 0);  // the scan does see plaintext records: it would have seen the purged ones
    for (const auto& [canary, n] : ScanForCanaries(options.path)) CHECK(n == 0);
    // Writes go on after the shred.
    REQUIRE(store.UpsertItem("db", "keep", json{{"id", "after"}, {"tenant", "t"}}.dump()).ok());
  }
  // The store reopens with the master key alone; the rest is intact.
  auto reopened = DocumentStore::Open(options, key.Clone());
  INFO(reopened.status().ToString());
  REQUIRE(reopened.ok());
  CHECK((*reopened)->ReadItem("db", "keep", "\"t\"", kKeepCanary).ok());
  CHECK((*reopened)->ReadItem("db", "keep", "\"t\"", "after").ok());
  CHECK((*reopened)->ReadContainer("db", kPurgeCanaries[0]).status().code() == Code::kNotFound);
  CHECK((*reopened)->PendingShreds()->empty());
}

TEST_CASE("Store-key retirement after a restart between the rotation and the rewrite", "[storage][page][rotation]") {
  TempDir dir;
  const crypto::MasterKey key = crypto::MasterKey::Generate();
  StoreOptions options;
  options.path = dir.sub("s");
  { auto store = MakeCanaryStore(options.path, key, /*encrypt=*/true); }
  {
    auto store = DocumentStore::Open(options, key.Clone());
    REQUIRE(store.ok());
    REQUIRE((*store)->RotateStoreKey().ok());
  }
  auto store = DocumentStore::Open(options, key.Clone());
  REQUIRE(store.ok());
  CHECK((*store)->store_key_versions_held() == 2);
  REQUIRE((*store)->Compact().ok());
  const Status retired = (*store)->RetireOldStoreKeys();
  INFO(retired.ToString());
  REQUIRE(retired.ok());
  CHECK((*store)->store_key_versions_held() == 1);
  for (int i : {0, 259}) {
    CHECK((*store)
              ->ReadItem(kCanaries[0], kCanaries[1], "\"" + kCanaries[3] + "\"", kCanaries[2] + std::to_string(i))
              .ok());
  }
}
