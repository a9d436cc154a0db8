#include "storage/rocks_logger.h"

#include <cstdarg>
#include <cstdio>

#include <spdlog/spdlog.h>

namespace bulwark::storage {
namespace {

constexpr size_t kMaxLineBytes = 1024;

class RocksLogger : public rocksdb::Logger {
 public:
  RocksLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < rocksdb::InfoLogLevel::WARN_LEVEL) return;
    char line[kMaxLineBytes];
    std::vsnprintf(line, sizeof(line), format, ap);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      spdlog::error("event=rocksdb message=\"{}\"", line);
    } else {
      spdlog::warn("event=rocksdb message=\"{}\"", line);
    }
  }
};

}  // namespace

std::shared_ptr<rocksdb::Logger> NewRocksLogger() { return std::make_shared<RocksLogger>(); }

}  // namespace bulwark::storage
