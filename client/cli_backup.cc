// `bulwark backup now|list|verify` (against a node) and `bulwark restore`
// (offline: reads a backup location with the master key and writes a new
// store directory; docs/backups.md).
#include <filesystem>
#include <iostream>

#include "client/cli.h"
#include "crypto/master_key.h"
#include "storage/backup.h"

namespace bulwark::cli {
using namespace bulwark::client;
namespace fs = std::filesystem;

namespace {
void PrintBackups(const std::vector<BackupRecord>& list) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : list) {
    rows.push_back(
        {b.id, b.location, std::to_string(b.glsn), std::to_string(b.applied_index), std::to_string(b.bytes)});
  }
  PrintTable({"ID", "LOCATION", "GLSN", "RAFT INDEX", "BYTES"}, rows);
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
      BULWARK_ASSIGN_OR_RETURN(auto list, c.ListBackups());
      if (list.empty()) {
        std::cout << "no backups yet\n";
      } else {
        PrintBackups(list);
      }
      return Status::Ok();
    });
  });
  static std::string verify_id;
  auto* verify = backup->add_subcommand("verify", "read and authenticate every byte of a backup")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(BackupRecord b, c.VerifyBackup(verify_id));
      std::cout << "backup " << b.id << " is complete and intact (GLSN " << b.glsn << ", " << b.bytes << " bytes)\n";
      return Status::Ok();
    });
  });
  verify->add_option("ID", verify_id, "a backup id from `bulwark backup list`")->required();

  static std::string location, id, target, master_uri;
  auto* restore =
      app.add_subcommand("restore", "restore a backup into a new store directory (offline; needs the master key)")
          ->callback([&] {
            auto master = crypto::LoadMasterKey(master_uri);
            if (!master.ok()) {
              rc = Fail(master.status());
              return;
            }
            uint64_t last_mb = 0;
            auto done = storage::RestoreBackup(location, id, *master, target, [&](uint64_t bytes) {
              if (bytes / (64 << 20) != last_mb) {
                last_mb = bytes / (64 << 20);
                std::cerr << "  restored " << (bytes >> 20) << " MiB\n";
              }
            });
            if (!done.ok()) {
              rc = Fail(done.status());
              return;
            }
            std::cout << "restored backup " << done->id << " (GLSN " << done->glsn << ") into " << target << "\n";
            rc = 0;
          });
  restore->add_option("--from", location, "the backup location (a node's backup.dir)")->required();
  restore->add_option("--id", id, "the backup id")->required();
  restore->add_option("--target", target, "a new directory for the restored store (must not exist)")->required();
  restore->add_option("--master-key-uri", master_uri, "the master key: file:PATH, env:VAR or command:PATH ARGS")
      ->required();
}

}  // namespace bulwark::cli
