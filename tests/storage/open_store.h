#pragma once
// Opens (or creates) a DocumentStore at `path` with default options for a
// storage test, failing the test with the reason if it cannot.
#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "crypto/master_key.h"
#include "storage/document_store.h"

namespace bulwark::testing {

inline std::unique_ptr<storage::DocumentStore> OpenTestStore(const std::string& path, const crypto::MasterKey& key) {
  storage::StoreOptions options;
  options.path = path;
  auto store = storage::DocumentStore::Open(options, key.Clone());
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(store).value();
}

}  // namespace bulwark::testing
