// Data-key rotation, after the new version is in place: the usage report
// (which versions still seal how many values) and the background job that
// compacts a rotated container's data so the re-seal filter rewrites it.
#include <limits>
#include <mutex>
#include <shared_mutex>

#include <spdlog/spdlog.h>

#include "crypto/secret.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

// A pass that leaves values under old versions is repeated (writes prepared
// before the rotation may land after the first pass), but only while it makes
// progress, and at most this often.
constexpr int kResealPassesMax = 4;

struct UsageMaps {
  DekUsageMap items;
  DekUsageMap changes;
  uint64_t unclassified_files = 0;
};

Status CollectUsage(const DocumentStore::Impl& s, UsageMaps& out) {
  for (auto [cf, map] : {std::pair{s.items, &out.items}, std::pair{s.changelog, &out.changes}}) {
    rocksdb::TablePropertiesCollection tables;
    BULWARK_RETURN_IF_ERROR(FromRocks(s.db->GetPropertiesOfAllTables(cf, &tables), "cannot read SST properties"));
    for (const auto& [file, properties] : tables) {
      BULWARK_ASSIGN_OR_RETURN(bool recorded, AddDekUsage(*properties, *map));
      if (!recorded) ++out.unclassified_files;
    }
  }
  return Status::Ok();
}

uint32_t CurrentVersion(const DocumentStore::Impl& s, const std::string& rid) {
  auto current = s.keyring.Current(crypto::HexEncode(rid));
  return current ? current->version : 0;
}

// Values of `rid` under a version older than the current one (unreadable
// headers included: a pass cannot fix those, so they end the job).
uint64_t OldValues(const UsageMaps& usage, const std::string& rid, uint32_t current) {
  uint64_t n = 0;
  for (const DekUsageMap* map : {&usage.items, &usage.changes}) {
    for (auto it = map->lower_bound({rid, 0}); it != map->end() && it->first.first == rid; ++it) {
      if (it->first.second < current) n += it->second.values;
    }
  }
  return n;
}

}  // namespace

Status ResealContainer(DocumentStore::Impl& s, const std::string& rid, std::atomic<bool>& canceled) {
  uint64_t previous = std::numeric_limits<uint64_t>::max();
  for (int pass = 1; pass <= kResealPassesMax; ++pass) {
    // Not exclusive: automatic compactions (and writes) go on beside it.
    rocksdb::CompactRangeOptions options;
    options.exclusive_manual_compaction = false;
    options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    options.canceled = &canceled;
    const std::string end = rid + "\xff";  // above every item key of the container
    const rocksdb::Slice begin_key(rid), end_key(end);
    BULWARK_RETURN_IF_ERROR(
        FromRocks(s.db->CompactRange(options, s.items, &begin_key, &end_key), "cannot compact the items"));
    // The change log is ordered by LSN, not by container: all of it.
    BULWARK_RETURN_IF_ERROR(
        FromRocks(s.db->CompactRange(options, s.changelog, nullptr, nullptr), "cannot compact the change log"));
    UsageMaps usage;
    BULWARK_RETURN_IF_ERROR(CollectUsage(s, usage));
    const uint64_t old = OldValues(usage, rid, CurrentVersion(s, rid));
    spdlog::info("event=dek_reseal_pass container={} pass={} old_values={}", crypto::HexEncode(rid), pass, old);
    if (old == 0 || old >= previous) return Status::Ok();
    previous = old;
  }
  return Status::Ok();
}

Status ScheduleResealWhereNeeded(DocumentStore::Impl& s) {
  if (!s.reseal) return Status::Ok();
  UsageMaps usage;
  BULWARK_RETURN_IF_ERROR(CollectUsage(s, usage));
  std::set<std::string> rids;
  for (const DekUsageMap* map : {&usage.items, &usage.changes}) {
    for (const auto& [where, count] : *map) {
      const uint32_t current = CurrentVersion(s, where.first);
      if (current != 0 && where.second != kUnreadableVersion && where.second < current) rids.insert(where.first);
    }
  }
  // Files from before usage was recorded: a container that was ever rotated
  // may have old values in them.
  if (usage.unclassified_files > 0) {
    for (const auto& [_, c] : s.containers) {
      if (s.keyring.Versions(c->info.rid).size() > 1) rids.insert(c->rid_raw);
    }
  }
  for (const auto& rid : rids) s.reseal->Schedule(rid);
  return Status::Ok();
}

Result<DataKeyUsage> DocumentStore::DataKeyUsageReport() const {
  const Impl& s = *impl_;
  DataKeyUsage out;
  if (!s.options.seal_items) return out;
  UsageMaps usage;
  BULWARK_RETURN_IF_ERROR(CollectUsage(s, usage));
  out.unclassified_files = usage.unclassified_files;
  for (auto* cf : {s.items, s.changelog}) {
    uint64_t active = 0, immutable = 0;
    s.db->GetIntProperty(cf, "rocksdb.num-entries-active-mem-table", &active);
    s.db->GetIntProperty(cf, "rocksdb.num-entries-imm-mem-tables", &immutable);
    out.unflushed_values += active + immutable;
  }
  out.resealed = s.reseal_counters->resealed.load();
  out.reseal_failures = s.reseal_counters->failed.load();

  // raw rid -> container, live containers first (listed even with no data).
  std::map<std::string, ContainerKeyUsage> by_rid;
  {
    std::shared_lock lock(s.ddl_mu);
    for (const auto& [_, c] : s.containers) {
      ContainerKeyUsage& u = by_rid[c->rid_raw];
      u.database = c->info.database;
      u.container = c->info.id;
    }
  }
  std::map<std::string, std::map<uint32_t, DataKeyVersionUsage>> versions;
  for (auto [map, is_item] : {std::pair{&usage.items, true}, std::pair{&usage.changes, false}}) {
    for (const auto& [where, count] : *map) {
      by_rid[where.first];
      DataKeyVersionUsage& v = versions[where.first][where.second];
      (is_item ? v.items : v.change_log_records) += count.values;
      v.bytes += count.bytes;
    }
  }
  for (auto& [rid, u] : by_rid) {
    u.rid = crypto::HexEncode(rid);
    u.current_version = CurrentVersion(s, rid);
    auto& mine = versions[rid];
    if (u.current_version != 0) mine[u.current_version].current = true;
    for (auto& [version, v] : mine) {
      v.version = version;
      u.versions.push_back(v);
    }
    u.reseal_pending = s.reseal && s.reseal->Pending(rid);
    out.containers.push_back(std::move(u));
  }
  return out;
}

rocksdb::ColumnFamilyHandle* DocumentStore::column_family_for_testing(std::string_view name) const {
  if (name == "items") return impl_->items;
  if (name == "changelog") return impl_->changelog;
  return nullptr;
}

}  // namespace bulwark::storage
