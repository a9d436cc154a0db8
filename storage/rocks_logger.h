#pragma once
// RocksDB's info log, routed into Bulwark's structured log instead of a LOG
// file in the data directory: the page layer cannot encrypt the info log
// (RocksDB opens it outside the encrypted file system), and a plaintext file
// beside the data is exactly what the page layer exists to prevent. Only
// warnings and errors are kept. Thread-safe (spdlog is).

#include <memory>

#include <rocksdb/env.h>

namespace bulwark::storage {

std::shared_ptr<rocksdb::Logger> NewRocksLogger();

}  // namespace bulwark::storage
