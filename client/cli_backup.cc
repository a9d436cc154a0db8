// `bulwark backup now|list|verify` (against a node) and `bulwark restore`
// (offline: reads a backup location with the master key and writes a new
// store directory, from one backup or, with --to-time, from a backup plus
// the continuous archive; docs/backups.md).
#include <filesystem>
#include <iostream>

#include "client/cli.h"
#include "common/clock.h"
#include "crypto/master_key.h"
#include "storage/archive.h"
#include "storage/backup.h"
#include "storage/document_store.h"

namespace bulwark::cli {
using namespace bulwark::client;
namespace fs = std::filesystem;

namespace {
void PrintBackups(const std::vector<BackupRecord>& list) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : list) {
    rows.push_back({b.id, b.location, FormatUnixMillis(b.image_unix_ms), std::to_string(b.glsn),
                    std::to_string(b.applied_index), std::to_string(b.bytes)});
  }
  PrintTable({"ID", "LOCATION", "RESTORES TO", "GLSN", "RAFT INDEX", "BYTES"}, rows);
}

int Restore(const std::string& location, const std::string& id, const std::string& to_time, const std::string& database,
            const std::string& container, const std::string& item, const std::string& partition_key,
            const std::string& target, const std::string& master_uri) {
  if (id.empty() == to_time.empty()) return Fail(Status::InvalidArgument("give --id or --to-time"));
  if (!item.empty() && partition_key.empty()) {
    return Fail(Status::InvalidArgument("--item needs --partition-key (its value as JSON)"));
  }
  // Every argument is checked before the master key is loaded.
  Result<int64_t> when = to_time.empty() ? Result<int64_t>(int64_t{0}) : ParseTimeArg(to_time);
  if (!when.ok()) return Fail(when.status());
  auto master = crypto::LoadMasterKey(master_uri);
  if (!master.ok()) return Fail(master.status());
  if (!id.empty()) {
    uint64_t last_mb = 0;
    auto done = storage::RestoreBackup(location, id, *master, target, [&](uint64_t bytes) {
      if (bytes / (64 << 20) != last_mb) {
        last_mb = bytes / (64 << 20);
        std::cerr << "  restored " << (bytes >> 20) << " MiB\n";
      }
    });
    if (!done.ok()) return Fail(done.status());
    std::cout << "restored backup " << done->id << " (GLSN " << done->glsn << ") into " << target << "\n";
    return 0;
  }
  auto done = storage::RestoreToTime(location, *master, {*when, database, container}, target,
                                     [](const std::string& line) { std::cerr << "  " << line << "\n"; });
  if (!done.ok()) return Fail(done.status());
  std::cout << "restored the state at " << FormatUnixMillis(*when) << " into " << target << ": backup " << done->base.id
            << " plus " << done->replayed << " archived commands (raft index " << done->applied_index << ", GLSN "
            << done->glsn << ")";
  if (!database.empty()) std::cout << ", only " << database << (container.empty() ? "" : "/" + container);
  std::cout << "\n";
  if (item.empty()) return 0;
  storage::StoreOptions options;
  options.path = target;
  auto store = storage::DocumentStore::Open(options, master->Clone());
  if (!store.ok()) return Fail(store.status());
  auto found = (*store)->ReadItem(database, container, partition_key, item);
  if (!found.ok()) {
    return Fail(Status(found.status()).WithContext("item " + item + " at " + FormatUnixMillis(*when)));
  }
  std::cout << found->json << "\n";
  return 0;
}
}  // namespace

void AddBackupCommands(CLI::App& app, Globals& g, int& rc) {
  auto* backup = app.add_subcommand("backup", "the node's backups")->require_subcommand(1);
  backup->add_subcommand("now", "take a backup on the node now")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(BackupRecord b, c.BackupNow());
      std::cout << "backup " << b.id << ": GLSN " << b.glsn << ", " << b.bytes << " bytes\n";
      return Status::Ok();
    });
  });
  backup->add_subcommand("list", "the node's backups, oldest first")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BackupWindowRecord window;
      BULWARK_ASSIGN_OR_RETURN(auto list, c.ListBackups(&window));
      if (list.empty()) {
        std::cout << "no backups yet\n";
        return Status::Ok();
      }
      PrintBackups(list);
      std::cout << "\npoint-in-time restore: from " << FormatUnixMillis(window.from_unix_ms) << " to "
                << FormatUnixMillis(window.to_unix_ms);
      std::cout << (window.continuous
                        ? " (continuous backup on, " + std::to_string(window.archive_segments) + " archive segments)\n"
                        : " (continuous backup off: each backup restores to its own time)\n");
      return Status::Ok();
    });
  });
  static std::string verify_id;
  static bool verify_archive = false;
  auto* verify =
      backup->add_subcommand("verify", "read and authenticate every byte of a backup, or (--archive) of the archive")
          ->callback([&] {
            rc = WithClient(g, [&](Client& c) -> Status {
              if (verify_archive) {
                BULWARK_ASSIGN_OR_RETURN(ArchiveCheckRecord a, c.VerifyArchive());
                std::cout << "archive: " << a.segments << " segments, " << a.commands
                          << " commands, intact; raft indexes " << a.first_index << ".." << a.last_index << "\n";
                for (const auto& h : a.holes) std::cout << "  hole " << h << "\n";
                if (!a.holes.empty()) {
                  return Status::FailedPrecondition(
                      "the archive has holes: restores across them are refused (see docs/backups.md)");
                }
                return Status::Ok();
              }
              if (verify_id.empty()) return Status::InvalidArgument("give a backup ID, or --archive");
              BULWARK_ASSIGN_OR_RETURN(BackupRecord b, c.VerifyBackup(verify_id));
              std::cout << "backup " << b.id << " is complete and intact (GLSN " << b.glsn << ", " << b.bytes
                        << " bytes)\n";
              return Status::Ok();
            });
          });
  verify->add_option("ID", verify_id, "a backup id from `bulwark backup list`");
  verify->add_flag("--archive", verify_archive, "verify the continuous archive's segments instead");

  static std::string location, id, target, master_uri, to_time, database, container, item, partition_key;
  auto* restore =
      app.add_subcommand("restore",
                         "restore a backup, or the state at a point in time, into a new store directory (offline; "
                         "needs the master key)")
          ->callback([&] {
            rc = Restore(location, id, to_time, database, container, item, partition_key, target, master_uri);
          });
  restore->add_option("--from", location, "the backup location (a node's backup.dir)")->required();
  auto* by_id = restore->add_option("--id", id, "a backup id: restore that backup as it is");
  auto* by_time = restore->add_option("--to-time", to_time,
                                      "restore the state at this time (YYYY-MM-DDTHH:MM:SS[.mmm]Z or Unix ms) from "
                                      "a backup plus the continuous archive");
  by_id->excludes(by_time);
  auto* db_opt = restore->add_option("--database", database, "with --to-time: keep only this database")->needs(by_time);
  auto* c_opt = restore->add_option("--container", container, "... and only this container of it")->needs(db_opt);
  auto* item_opt =
      restore->add_option("--item", item, "... and print this item as it was then (a deleted one too)")->needs(c_opt);
  restore->add_option("--partition-key", partition_key, "the item's partition key value as JSON, e.g. '\"acme\"'")
      ->needs(item_opt);
  restore->add_option("--target", target, "a new directory for the restored store (must not exist)")->required();
  restore->add_option("--master-key-uri", master_uri, "the master key: file:PATH, env:VAR or command:PATH ARGS")
      ->required();
}

}  // namespace bulwark::cli
