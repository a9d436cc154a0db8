// backup-bench: what backups cost and how fast they go (issue 11), on the
// storage engine bulwarkd runs (sealed items on page-encrypted files, WAL
// fsync on), in a scratch directory:
//   1. backup and restore throughput: a full backup of N 1 KiB items, then
//      its restore into a new store (MB/s of backup data, items/s);
//   2. point-in-time replay: the same items as archived commands (one
//      segment per 10,000), replayed by RestoreToTime (commands/s);
//   3. the write latency a running backup causes: a writer issuing fsync'd
//      1 KiB upserts for a fixed time with no backup running (the baseline),
//      then for the same time with backups running back to back; p50, p99
//      and p99.9 of both and their ratio.
// Figures are printed (nothing is asserted) and written as JSON. Progress
// goes to stderr. The scratch directory is removed at exit.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "crypto/master_key.h"
#include "storage/archive.h"
#include "storage/backup.h"
#include "storage/commands.h"
#include "storage/document_store.h"

namespace fs = std::filesystem;
using namespace bulwark;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  size_t items = 100'000;
  size_t value_bytes = 1024;
  double latency_seconds = 10;
  std::string dir = "/tmp/bulwark-backup-bench";
  std::string json_out;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string Doc(size_t i, size_t value_bytes) {
  json j{{"id", "item-" + std::to_string(i)}, {"tenant", "t" + std::to_string(i % 64)}, {"v", i}};
  const size_t base = j.dump().size() + 10;
  j["pad"] = std::string(value_bytes > base ? value_bytes - base : 1, 'x');
  return j.dump();
}

std::unique_ptr<storage::DocumentStore> Open(const fs::path& path, const crypto::MasterKey& key, bool sync) {
  storage::StoreOptions options;
  options.path = path.string();
  options.sync_writes = sync;
  auto store = storage::DocumentStore::Open(options, key.Clone());
  if (!store.ok()) {
    std::cerr << "backup-bench: " << store.status().ToString() << "\n";
    std::exit(1);
  }
  return std::move(store).value();
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::cerr << "backup-bench: " << what << ": " << s.ToString() << "\n";
    std::exit(1);
  }
}

uint64_t DirBytes(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// Fsync'd upserts for `seconds`; returns each one's latency in ms.
std::vector<double> WriteFor(storage::DocumentStore& store, double seconds, size_t value_bytes, size_t first_id) {
  std::vector<double> out;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  for (size_t i = first_id; Clock::now() < end; ++i) {
    const std::string doc = Doc(i, value_bytes);
    const auto t0 = Clock::now();
    Check(store.UpsertItem("db", "c", doc).status(), "upsert");
    out.push_back(Seconds(Clock::now() - t0) * 1000);
  }
  return out;
}

json LatencyJson(const std::vector<double>& v) {
  return {{"writes", v.size()},
          {"p50_ms", Percentile(v, 0.50)},
          {"p99_ms", Percentile(v, 0.99)},
          {"p999_ms", Percentile(v, 0.999)}};
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"backup-bench: backup/restore throughput and the write latency a running backup causes"};
  app.add_option("--items", cfg.items, "items in the store that is backed up (1 KiB each)");
  app.add_option("--latency-seconds", cfg.latency_seconds, "seconds of writes with and without a backup running");
  app.add_option("--dir", cfg.dir, "scratch directory (removed at exit)");
  app.add_option("--json", cfg.json_out, "write the figures here as JSON");
  CLI11_PARSE(app, argc, argv);

  const fs::path root = cfg.dir;
  fs::remove_all(root);
  fs::create_directories(root);
  const auto key = crypto::MasterKey::Generate();
  json out{{"items", cfg.items}, {"value_bytes", cfg.value_bytes}};

  // The store, filled through the replicated-apply path (each command kept
  // for the archive, as the raft log would hold it).
  // Filled without an fsync per write (one at the end), then reopened with
  // fsync on, as bulwarkd runs, for the latency runs.
  auto store = Open(root / "live", key, false);
  std::vector<storage::ArchivedCommand> log;
  uint64_t index = 0;
  auto apply = [&](Result<storage::WriteCommand> cmd) {
    Check(cmd.status(), "prepare");
    cmd->proposed_unix_ms = UnixNowMillis();
    log.push_back({++index, cmd->Encode()});
    auto outcome = store->Apply(index, std::move(cmd).value());
    Check(outcome.status(), "apply");
    Check(outcome->status, "apply outcome");
  };
  apply(store->PrepareCreateDatabase("db"));
  apply(store->PrepareCreateContainer("db", "c", "/tenant"));
  const uint64_t base_index = index;
  auto base = storage::WriteBackup(*store, key, (root / "base").string());  // the empty store: PITR starts here
  Check(base.status(), "base backup");
  const auto fill_start = Clock::now();
  for (size_t i = 0; i < cfg.items; ++i) {
    apply(store->PrepareItemWrite(storage::WriteCommand::Kind::kUpsertItem, "db", "c", Doc(i, cfg.value_bytes)));
    if (i % 10'000 == 0) std::fprintf(stderr, "\r  filling %zu/%zu", i, cfg.items);
  }
  std::fprintf(stderr, "\r  filled %zu items in %.1f s\n", cfg.items, Seconds(Clock::now() - fill_start));
  Check(store->SyncWal(), "sync");
  store.reset();
  store = Open(root / "live", key, true);

  // 1. Backup and restore throughput.
  auto t0 = Clock::now();
  auto backup = storage::WriteBackup(*store, key, (root / "backups").string());
  const double backup_s = Seconds(Clock::now() - t0);
  Check(backup.status(), "backup");
  const uint64_t backup_bytes = DirBytes(root / "backups" / backup->id);
  t0 = Clock::now();
  Check(storage::RestoreBackup((root / "backups").string(), backup->id, key, (root / "restored").string()).status(),
        "restore");
  const double restore_s = Seconds(Clock::now() - t0);
  const double mb = static_cast<double>(backup_bytes) / (1 << 20);
  std::printf("backup   %8.1f MiB  %6.2f s  %7.1f MiB/s  %9.0f items/s\n", mb, backup_s, mb / backup_s,
              static_cast<double>(cfg.items) / backup_s);
  std::printf("restore  %8.1f MiB  %6.2f s  %7.1f MiB/s  %9.0f items/s\n", mb, restore_s, mb / restore_s,
              static_cast<double>(cfg.items) / restore_s);
  out["backup"] = {{"bytes", backup_bytes},
                   {"seconds", backup_s},
                   {"mib_per_s", mb / backup_s},
                   {"items_per_s", static_cast<double>(cfg.items) / backup_s}};
  out["restore"] = {{"bytes", backup_bytes},
                    {"seconds", restore_s},
                    {"mib_per_s", mb / restore_s},
                    {"items_per_s", static_cast<double>(cfg.items) / restore_s}};

  // 2. Point-in-time replay: archive everything after the empty-store backup,
  // then restore to now (the archive vouches for it: it holds no later
  // command, so wait out the settle time by dating the request back).
  t0 = Clock::now();
  const std::string base_dir = (root / "base").string();
  constexpr size_t kPerSegment = 10'000;
  for (size_t from = base_index; from < index; from += kPerSegment) {
    const uint64_t to = std::min<uint64_t>(index, from + kPerSegment);
    std::vector<storage::ArchivedCommand> part(log.begin() + static_cast<long>(from),
                                               log.begin() + static_cast<long>(to));
    Check(storage::WriteArchiveSegment(base_dir, key, from + 1, to, part).status(), "archive");
  }
  const double archive_s = Seconds(Clock::now() - t0);
  // A marker command proposed after the cut, so the archive vouches for it.
  const int64_t cut = UnixNowMillis();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  apply(store->PrepareCreateDatabase("marker"));
  Check(storage::WriteArchiveSegment(base_dir, key, index, index, {log.back()}).status(), "archive marker");
  t0 = Clock::now();
  auto pitr = storage::RestoreToTime(base_dir, key, {cut, "", ""}, (root / "pitr").string());
  const double replay_s = Seconds(Clock::now() - t0);
  Check(pitr.status(), "point-in-time restore");
  std::printf("archive  %8zu commands  %6.2f s  %9.0f commands/s\n", static_cast<size_t>(index - base_index), archive_s,
              static_cast<double>(index - base_index) / archive_s);
  std::printf("replay   %8llu commands  %6.2f s  %9.0f commands/s (point-in-time restore)\n",
              static_cast<unsigned long long>(pitr->replayed), replay_s,
              static_cast<double>(pitr->replayed) / replay_s);
  out["archive"] = {{"commands", index - base_index}, {"seconds", archive_s}};
  out["replay"] = {{"commands", pitr->replayed},
                   {"seconds", replay_s},
                   {"commands_per_s", static_cast<double>(pitr->replayed) / replay_s}};

  // 3. Write latency without, then with, a backup running.
  std::fprintf(stderr, "  writes for %.0f s without a backup...\n", cfg.latency_seconds);
  const auto quiet = WriteFor(*store, cfg.latency_seconds, cfg.value_bytes, cfg.items);
  std::fprintf(stderr, "  writes for %.0f s with backups running back to back...\n", cfg.latency_seconds);
  std::atomic<bool> stop{false};
  std::atomic<int> backups_taken{0};
  std::thread backer([&] {
    const std::string loc = (root / "busy").string();
    while (!stop) {
      Check(storage::WriteBackup(*store, key, loc).status(), "backup under load");
      Check(storage::PruneBackups(loc, 1).status(), "prune");
      ++backups_taken;
    }
  });
  const auto busy = WriteFor(*store, cfg.latency_seconds, cfg.value_bytes, cfg.items * 2);
  stop = true;
  backer.join();
  const double p99_quiet = Percentile(quiet, 0.99), p99_busy = Percentile(busy, 0.99);
  std::printf("\nfsync'd 1 KiB upserts   %8s %9s %9s %9s\n", "writes", "p50 ms", "p99 ms", "p99.9 ms");
  std::printf("  no backup running     %8zu %9.2f %9.2f %9.2f\n", quiet.size(), Percentile(quiet, 0.5), p99_quiet,
              Percentile(quiet, 0.999));
  std::printf("  backups running (%d)   %8zu %9.2f %9.2f %9.2f\n", backups_taken.load(), busy.size(),
              Percentile(busy, 0.5), p99_busy, Percentile(busy, 0.999));
  std::printf("  p99 ratio (with / without): %.2f\n", p99_quiet > 0 ? p99_busy / p99_quiet : 0.0);
  out["write_latency"] = {{"without_backup", LatencyJson(quiet)},
                          {"with_backup", LatencyJson(busy)},
                          {"backups_taken", backups_taken.load()},
                          {"p99_ratio", p99_quiet > 0 ? p99_busy / p99_quiet : 0.0}};

  store.reset();
  fs::remove_all(root);
  if (!cfg.json_out.empty()) {
    std::ofstream(cfg.json_out) << out.dump(2) << "\n";
    std::printf("figures written to %s\n", cfg.json_out.c_str());
  }
  return 0;
}
