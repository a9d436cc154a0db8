// bulwark-demo: a guided tour of the encrypted storage engine on an embedded
// default, run by `make run` until the bulwarkd server lands.
//
// First run generates a master key (file:<data-dir>/keys/master.key, mode
// 0600). Keeping the key beside the data is for the demo only: in production
// the key comes from a separate file, an environment variable or a KMS helper.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "crypto/master_key.h"
#include "crypto/secret.h"
#include "storage/document_store.h"

namespace fs = std::filesystem;
using bulwark::Status;
using namespace bulwark;

namespace {

constexpr std::string_view kSecretMarker = "card-4242-4242-4242";

Status EnsureDemoKey(const fs::path& key_path) {
  if (fs::exists(key_path)) return Status::Ok();
  std::error_code ec;
  fs::create_directories(key_path.parent_path(), ec);
  if (ec) return Status::IOError("cannot create " + key_path.parent_path().string() + ": " + ec.message());
  const crypto::SecretBytes key = crypto::SecretBytes::Random(crypto::kMasterKeyBytes);
  const std::string encoded = crypto::Base64Encode(key.view());
  const mode_t old_mask = ::umask(077);  // the file is born 0600, never briefly readable
  std::ofstream out(key_path, std::ios::binary);
  out << encoded << "\n";
  out.close();
  ::umask(old_mask);
  if (!out) return Status::IOError("cannot write " + key_path.string());
  std::cout << "generated a new master key at " << key_path.string()
            << " (demo only: production keeps it away from the data)\n";
  return Status::Ok();
}

// Looks for `needle` in every file under `dir`: a sealed store must not have it.
int CountFilesContaining(const fs::path& dir, std::string_view needle) {
  int hits = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.find(needle) != std::string::npos) ++hits;
  }
  return hits;
}

void Check(const Status& s, std::string_view what) {
  if (s.ok()) return;
  std::cerr << what << ": " << s.ToString() << "\n";
  std::exit(1);
}

void Tour(storage::DocumentStore& store) {
  if (!store.ReadDatabase("demo").ok()) Check(store.CreateDatabase("demo").status(), "create database");
  if (!store.ReadContainer("demo", "orders").ok()) {
    Check(store.CreateContainer("demo", "orders", "/tenant").status(), "create container");
  }
  for (int i = 1; i <= 3; ++i) {
    const std::string doc = R"({"id":"order-)" + std::to_string(i) + R"(","tenant":"acme","total":)" +
                            std::to_string(i * 10) + R"(,"card":")" + std::string(kSecretMarker) + R"("})";
    auto r = store.UpsertItem("demo", "orders", doc);
    Check(r.status(), "upsert");
    std::cout << "upserted order-" << i << " etag " << r->etag << " lsn " << r->lsn << "\n";
  }
  auto read = store.ReadItem("demo", "orders", R"("acme")", "order-2");
  Check(read.status(), "read");
  std::cout << "read back: " << read->json << "\n";

  auto stale = store.ReplaceItem("demo", "orders", "order-2", R"({"id":"order-2","tenant":"acme","total":0})",
                                 "\"not-the-etag\"");
  std::cout << "replace with a stale etag: " << stale.status().ToString() << "\n";

  auto version = store.RotateDataKey("demo", "orders");
  Check(version.status(), "rotate data key");
  Check(store.UpsertItem("demo", "orders", R"({"id":"order-4","tenant":"acme","total":40})").status(), "upsert");
  storage::ListOptions list;
  list.partition_key = R"("acme")";
  auto page = store.ListItems("demo", "orders", list);
  Check(page.status(), "list");
  std::cout << "rotated the container's data key to v" << *version << "; partition \"acme\" now lists "
            << page->items.size() << " items across key versions\n";
  std::cout << "change log holds " << store.last_lsn() << " writes\n";
}

int RunDemo(const fs::path& data_dir, const std::string& key_uri) {
  auto master = crypto::LoadMasterKey(key_uri);
  Check(master.status(), "loading the master key");
  storage::StoreOptions options;
  options.path = (data_dir / "store").string();
  {
    auto opened = storage::DocumentStore::Open(options, std::move(master).value());
    Check(opened.status(), "opening the store");
    std::cout << "opened " << options.path << " (master key " << (*opened)->master_key_id() << ", change log at LSN "
              << (*opened)->last_lsn() << ")\n";
    Tour(**opened);
  }  // closed here, so every file is flushed before the scan
  const int hits = CountFilesContaining(data_dir / "store", kSecretMarker);
  std::cout << "files on disk containing the card number in the clear: " << hits << "\n";
  return hits == 0 ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Bulwark storage demo: encrypted documents on an embedded default"};
  std::string data_dir = "bulwark-data";
  std::string key_uri;
  app.add_option("--data-dir", data_dir, "where the store and the demo key live");
  app.add_option("--master-key-uri", key_uri, "file:PATH, env:VAR or command:PATH ARGS (default: a generated key)");
  CLI11_PARSE(app, argc, argv);
  if (key_uri.empty()) {
    const fs::path key_path = fs::path(data_dir) / "keys" / "master.key";
    Check(EnsureDemoKey(key_path), "creating the demo key");
    key_uri = "file:" + key_path.string();
  }
  return RunDemo(data_dir, key_uri);
}
