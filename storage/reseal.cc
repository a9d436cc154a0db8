#include "storage/reseal.h"

#include <optional>
#include <unordered_map>

#include <sodium.h>
#include <spdlog/spdlog.h>

#include "common/coding.h"
#include "crypto/item_seal.h"
#include "crypto/secret.h"
#include "storage/records.h"

namespace bulwark::storage {
namespace {

constexpr size_t kMaxRidBytes = 64;

// Re-seals one compaction's (or flush's) values. RocksDB makes one filter per
// thread of work, so the per-filter cache needs no lock; the keyring and the
// counters are thread-safe.
class ResealFilter : public rocksdb::CompactionFilter {
 public:
  ResealFilter(SealedColumn column, const crypto::Keyring* keyring, ResealCounters* counters)
      : column_(column), keyring_(keyring), counters_(counters) {}

  bool Filter(int /*level*/, const rocksdb::Slice& key, const rocksdb::Slice& value, std::string* new_value,
              bool* value_changed) const override {
    // Exceptions must not reach RocksDB (bad_alloc is the only one possible).
    try {
      if (column_ == SealedColumn::kItems) {
        std::string_view rid, pk, id;
        if (!ParseItemKey(key.ToStringView(), rid, pk, id)) return false;
        auto resealed = Reseal({rid, pk, id}, value.ToStringView());
        if (resealed) {
          *new_value = std::move(*resealed);
          *value_changed = true;
        }
        return false;
      }
      auto lsn = ParseLsnKey(key.ToStringView());
      if (!lsn.ok()) return false;
      auto record = ChangeRecord::Decode(*lsn, value.ToStringView());
      if (!record.ok() || record->op != ChangeOp::kPutItem || record->sealed_value.empty()) return false;
      auto resealed = Reseal({record->container_rid, record->partition_key, record->item_id}, record->sealed_value);
      if (resealed) {
        record->sealed_value = std::move(*resealed);
        *new_value = record->Encode();
        *value_changed = true;
      }
    } catch (...) {
      counters_->failed.fetch_add(1, std::memory_order_relaxed);
    }
    return false;  // never drop a value
  }

  const char* Name() const override { return "bulwark.ResealFilter"; }

 private:
  // The value sealed under the container's current key, or nullopt to keep
  // it as it is (already current, no keys, or cannot be opened).
  std::optional<std::string> Reseal(const crypto::ItemAddress& address, std::string_view sealed) const {
    auto version = crypto::SealedKeyVersion(sealed);
    if (!version.ok()) {
      counters_->failed.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    const crypto::DataKey* current = Current(address.container_rid);
    if (current == nullptr || *version >= current->version) return std::nullopt;
    auto old = keyring_->Find(crypto::HexEncode(address.container_rid), *version);
    if (old == nullptr) {
      counters_->failed.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    auto plain = crypto::OpenItem(*old, address, sealed);
    if (!plain.ok()) {
      counters_->failed.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    std::string out = crypto::SealItem(*current, address, *plain);
    sodium_memzero(plain->data(), plain->size());
    counters_->resealed.fetch_add(1, std::memory_order_relaxed);
    return out;
  }

  // The container's current key, looked up once per filter: a rotation
  // during this compaction only means some values get the previous version.
  const crypto::DataKey* Current(std::string_view rid) const {
    auto it = current_.find(std::string(rid));
    if (it == current_.end()) it = current_.emplace(std::string(rid), keyring_->Current(crypto::HexEncode(rid))).first;
    return it->second.get();
  }

  const SealedColumn column_;
  const crypto::Keyring* const keyring_;
  ResealCounters* const counters_;
  mutable std::unordered_map<std::string, std::shared_ptr<const crypto::DataKey>> current_;
};

class ResealFilterFactory : public rocksdb::CompactionFilterFactory {
 public:
  ResealFilterFactory(SealedColumn column, const crypto::Keyring* keyring, std::shared_ptr<ResealCounters> counters)
      : column_(column), keyring_(keyring), counters_(std::move(counters)) {}

  // Flushes too: a value written under an old version just before a rotation
  // is re-sealed when its memtable is flushed.
  bool ShouldFilterTableFileCreation(rocksdb::TableFileCreationReason reason) const override {
    return reason == rocksdb::TableFileCreationReason::kCompaction ||
           reason == rocksdb::TableFileCreationReason::kFlush;
  }
  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& /*context*/) override {
    return std::make_unique<ResealFilter>(column_, keyring_, counters_.get());
  }
  const char* Name() const override { return "bulwark.ResealFilterFactory"; }

 private:
  const SealedColumn column_;
  const crypto::Keyring* const keyring_;
  const std::shared_ptr<ResealCounters> counters_;
};

// Counts the sealed values one SST holds per (container rid, DEK version).
class DekUsageCollector : public rocksdb::TablePropertiesCollector {
 public:
  explicit DekUsageCollector(SealedColumn column) : column_(column) {}

  rocksdb::Status AddUserKey(const rocksdb::Slice& key, const rocksdb::Slice& value, rocksdb::EntryType type,
                             rocksdb::SequenceNumber /*seq*/, uint64_t /*file_size*/) override {
    if (type != rocksdb::kEntryPut) return rocksdb::Status::OK();
    try {
      if (column_ == SealedColumn::kItems) {
        std::string_view rid, pk, id;
        if (!ParseItemKey(key.ToStringView(), rid, pk, id)) return rocksdb::Status::OK();
        Count(rid, value.ToStringView());
        return rocksdb::Status::OK();
      }
      auto lsn = ParseLsnKey(key.ToStringView());
      if (!lsn.ok()) return rocksdb::Status::OK();
      auto record = ChangeRecord::Decode(*lsn, value.ToStringView());
      if (!record.ok() || record->op != ChangeOp::kPutItem || record->sealed_value.empty()) {
        return rocksdb::Status::OK();
      }
      Count(record->container_rid, record->sealed_value);
    } catch (...) {
      return rocksdb::Status::MemoryLimit("dek usage collector");
    }
    return rocksdb::Status::OK();
  }

  rocksdb::Status Finish(rocksdb::UserCollectedProperties* properties) override {
    std::string out;
    for (const auto& [where, count] : usage_) {
      PutLengthPrefixed(out, where.first);
      PutFixed32(out, where.second);
      PutFixed64(out, count.values);
      PutFixed64(out, count.bytes);
    }
    (*properties)[kDekUsageProperty] = std::move(out);
    return rocksdb::Status::OK();
  }

  rocksdb::UserCollectedProperties GetReadableProperties() const override {
    uint64_t values = 0;
    for (const auto& [_, count] : usage_) values += count.values;
    return {{"bulwark.dek-usage.sealed-values", std::to_string(values)}};
  }

  const char* Name() const override { return "bulwark.DekUsageCollector"; }

 private:
  void Count(std::string_view rid, std::string_view sealed) {
    auto version = crypto::SealedKeyVersion(sealed);
    DekUsageCount& c = usage_[{std::string(rid), version.ok() ? *version : kUnreadableVersion}];
    ++c.values;
    c.bytes += sealed.size();
  }

  const SealedColumn column_;
  DekUsageMap usage_;
};

class DekUsageCollectorFactory : public rocksdb::TablePropertiesCollectorFactory {
 public:
  explicit DekUsageCollectorFactory(SealedColumn column) : column_(column) {}
  rocksdb::TablePropertiesCollector* CreateTablePropertiesCollector(
      rocksdb::TablePropertiesCollectorFactory::Context /*context*/) override {
    return new DekUsageCollector(column_);  // RocksDB takes ownership
  }
  const char* Name() const override { return "bulwark.DekUsageCollectorFactory"; }

 private:
  const SealedColumn column_;
};

}  // namespace

std::shared_ptr<rocksdb::CompactionFilterFactory> NewResealFilterFactory(SealedColumn column,
                                                                         const crypto::Keyring* keyring,
                                                                         std::shared_ptr<ResealCounters> counters) {
  return std::make_shared<ResealFilterFactory>(column, keyring, std::move(counters));
}

std::shared_ptr<rocksdb::TablePropertiesCollectorFactory> NewDekUsageCollectorFactory(SealedColumn column) {
  return std::make_shared<DekUsageCollectorFactory>(column);
}

Result<bool> AddDekUsage(const rocksdb::TableProperties& properties, DekUsageMap& out) {
  auto it = properties.user_collected_properties.find(kDekUsageProperty);
  if (it == properties.user_collected_properties.end()) return false;
  std::string_view in = it->second;
  while (!in.empty()) {
    std::string_view rid;
    uint32_t version = 0;
    uint64_t values = 0, bytes = 0;
    if (!GetLengthPrefixed(in, rid, kMaxRidBytes) || !GetFixed32(in, version) || !GetFixed64(in, values) ||
        !GetFixed64(in, bytes)) {
      return Status::Corruption("an SST's data-key usage property is malformed");
    }
    DekUsageCount& c = out[{std::string(rid), version}];
    c.values += values;
    c.bytes += bytes;
  }
  return true;
}

// ---- ResealWorker ------------------------------------------------------------

ResealWorker::ResealWorker(Job job) : job_(std::move(job)), thread_([this] { Run(); }) {}

ResealWorker::~ResealWorker() { Stop(); }

void ResealWorker::Schedule(const std::string& rid) {
  std::lock_guard lock(mu_);
  if (stopping_ || !queued_.insert(rid).second) return;
  queue_.push_back(rid);
  cv_.notify_one();
}

bool ResealWorker::Pending(const std::string& rid) const {
  std::lock_guard lock(mu_);
  return running_ == rid || queued_.count(rid) != 0;
}

void ResealWorker::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
    queued_.clear();
  }
  canceled_.store(true);
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ResealWorker::Run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    running_ = std::move(queue_.front());
    queue_.pop_front();
    queued_.erase(running_);
    const std::string rid = running_;
    lock.unlock();
    const Status s = job_(rid, canceled_);
    if (!s.ok() && !canceled_.load()) {
      spdlog::warn("event=dek_reseal_failed container={} error=\"{}\"", crypto::HexEncode(rid), s.ToString());
    }
    lock.lock();
    running_.clear();
  }
}

}  // namespace bulwark::storage
