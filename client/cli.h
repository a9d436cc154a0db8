#pragma once
// Shared by the `bulwark` CLI's source files: the global flags, connecting,
// printing, and the command groups each file adds.
//
// Thread safety: the CLI is single-threaded; none of this is meant for more.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "client/client.h"
#include "client/profile.h"

namespace bulwark::cli {

using client::Client;
using client::ClientOptions;

struct Globals {
  std::string profile_dir = client::kDefaultProfileDir;
  std::string endpoint, ca, key;
  // Other ways to authenticate (see ClientOptions); any of them replaces the
  // profile's account key.
  std::string resource_token, identity_token, cert, cert_key;
  bool insecure = false;
  bool json_output = false;
  std::string region;  // --region: read in this region (an account of several regions)
};

// Prints the error (and a hint for common causes); returns exit code 1.
int Fail(const Status& s);
// The profile, then the environment (in LoadProfile), then the flags.
Result<ClientOptions> Options(const Globals& g);
// Every node the options name, in profile order (node 1 first).
std::vector<std::string> NodeAddresses(const ClientOptions& options);
// Options for talking to exactly one node, with no failover to the others.
ClientOptions OneNode(ClientOptions options, const std::string& address);
Result<std::unique_ptr<Client>> Open(const Globals& g);
// Pads each column to its widest cell.
void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);
// `s`, cut to `n` characters with "..." at the end when longer.
// "a,b,,c" -> {a, b, c}.
std::vector<std::string> SplitCommaList(const std::string& text);
std::string Clip(const std::string& s, size_t n);
// Times are printed with FormatUnixMillis (common/clock.h).
// "2026-11-28T10:00:00Z", "2026-11-28T10:00:00.250Z", "2026-11-28" or Unix
// milliseconds; InvalidArgument naming the forms otherwise.
Result<int64_t> ParseTimeArg(const std::string& text);
// `--json -` reads standard input; anything else is the JSON itself.
Result<std::string> ReadJsonArg(const std::string& arg);
std::optional<ConsistencyLevel> LevelArg(const std::string& s);
// The directory this executable lives in (bulwarkd is expected beside it).
std::filesystem::path SelfDir();

// Runs `fn(client)`; maps failures to exit codes.
template <typename Fn>
int WithClient(const Globals& g, Fn&& fn) {
  auto client = Open(g);
  if (!client.ok()) {
    std::cerr << "error: " << client.status().message() << "\n";
    return 2;
  }
  Status s = fn(**client);
  return s.ok() ? 0 : Fail(s);
}

struct ClusterUpArgs {
  std::string ip = "127.0.1.1";
  int port = 7100;
  int regions = 1;
  int nodes = 4;
  int delay_ms = 0;         // one-way delay on the region streams (the WAN stand-in)
  std::string consistency;  // the account's default consistency; empty: bulwarkd's (Session)
  bool witness = false;     // a control group with a witness on 127.0.9.1 (automatic failover)
  bool control = false;     // a control group of the regions alone (3+ regions: automatic failover)
};

// cli_cluster.cc
int ClusterUp(const Globals& g, const ClusterUpArgs& args);
int ClusterDown(const Globals& g, int timeout_s);
int ShowStatus(const Globals& g);
int TransferLeader(const Globals& g, uint64_t to);
void AddNodeCommands(CLI::App& app, Globals& g, int& rc);

// cli_data.cc
void AddDatabaseCommands(CLI::App& app, Globals& g, int& rc);
void AddContainerCommands(CLI::App& app, Globals& g, int& rc);
void AddItemCommands(CLI::App& app, Globals& g, int& rc);
// Returns the `keys` command (cli_access.cc adds to it).
CLI::App* AddKeyCommands(CLI::App& app, Globals& g, int& rc);
void AddFirewallCommands(CLI::App& app, Globals& g, int& rc);
void AddRegionCommands(CLI::App& app, Globals& g, int& rc);
void AddConflictCommands(CLI::App& app, Globals& g, int& rc);

// cli_access.cc: users, permissions, roles, account settings, identity; and
// `keys list|regenerate|show` under `keys`.
void AddAccessCommands(CLI::App& app, CLI::App* keys, Globals& g, int& rc);
// cli_defense.cc: lockdown, alerts, audit verify|query.
void AddDefenseCommands(CLI::App& app, Globals& g, int& rc);
// cli_backup.cc
void AddBackupCommands(CLI::App& app, Globals& g, int& rc);

}  // namespace bulwark::cli
