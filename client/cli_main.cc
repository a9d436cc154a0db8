// bulwark: the command-line client, and `bulwark cluster up`.
//
// Connection: .bulwark/client.json, then BULWARK_ENDPOINT/BULWARK_CA/BULWARK_KEY,
// then --endpoint/--ca/--key. Items print as JSON; lists print as tables
// unless --json is given. Exit codes: 0 success, 1 the operation failed,
// 2 bad usage or configuration.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <iterator>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "chaos/local_cluster.h"
#include "client/client.h"
#include "client/profile.h"

namespace fs = std::filesystem;
using namespace bulwark;
using namespace bulwark::client;
using nlohmann::json;

namespace {

struct Globals {
  std::string profile_dir = kDefaultProfileDir;
  std::string endpoint, ca, key;
  bool insecure = false;
  bool json_output = false;
};

int Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  switch (s.code()) {
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
      std::cerr << "hint: is the cluster running and reachable? Start one with: bulwark cluster up\n";
      break;
    case Code::kUnauthenticated:
      std::cerr << "hint: check the account key (--key, BULWARK_KEY or .bulwark/client.json) and this machine's "
                   "clock\n";
      break;
    case Code::kNotFound:
      std::cerr << "hint: list what exists with: bulwark db list / bulwark container list DB\n";
      break;
    default: break;
  }
  return 1;
}

Result<std::unique_ptr<Client>> Open(const Globals& g) {
  BULWARK_ASSIGN_OR_RETURN(ClientOptions options, LoadProfile(g.profile_dir));
  if (!g.endpoint.empty()) options.endpoint = g.endpoint;
  if (!g.ca.empty()) options.ca_file = g.ca;
  if (!g.key.empty()) options.key = g.key;
  if (g.insecure) options.insecure = true;
  if (options.endpoint.empty() || options.key.empty()) {
    return Status::InvalidArgument(
        "no connection details: run `bulwark cluster up` here, or give --endpoint, --ca and --key");
  }
  return Client::Connect(options);
}

// Pads each column to its widest cell.
void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) {
      std::cout << cells[i] << (i + 1 < cells.size() ? std::string(width[i] - cells[i].size() + 2, ' ') : "");
    }
    std::cout << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

std::string Clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

Result<std::string> ReadJsonArg(const std::string& arg) {
  if (arg != "-") return arg;
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (text.empty()) return Status::InvalidArgument("--json - read nothing from standard input");
  return text;
}

std::optional<ConsistencyLevel> LevelArg(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return ParseConsistency(s);
}

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

fs::path SelfDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

int ClusterUp(const Globals& g, const std::string& ip, int port) {
  // Ctrl-C and SIGTERM are handled by waiting for them, not by a handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  chaos::ClusterOptions options;
  options.dir = g.profile_dir;
  options.bin_dir = SelfDir().string();
  options.ip = ip;
  options.port = port;
  options.metrics_port = port + 80;
  auto cluster = chaos::LocalCluster::Prepare(options);
  if (!cluster.ok()) return Fail(cluster.status());
  std::cout << "starting bulwarkd node-1 on " << (*cluster)->endpoint() << " (TLS; data in " << g.profile_dir
            << "/node-1/data, log in " << (*cluster)->log_path() << ")\n";
  if (Status s = (*cluster)->Start(); !s.ok()) return Fail(s);
  if (Status s = WriteProfile(g.profile_dir, (*cluster)->client_options()); !s.ok()) return Fail(s);
  std::cout << "Bulwark is up: 1 node at " << (*cluster)->endpoint() << ", metrics at http://"
            << (*cluster)->metrics_endpoint() << "/metrics\n"
            << "The client profile is " << g.profile_dir << "/client.json; from this directory try:\n"
            << "  build/bin/bulwark db create shop\n"
            << "  build/bin/bulwark container create shop orders --partition-key /tenant\n"
            << "  build/bin/bulwark item put shop orders --json '{\"id\":\"o1\",\"tenant\":\"acme\",\"total\":42}'\n"
            << "  build/bin/bulwark item get shop orders o1 --pk acme\n"
            << "Press Ctrl-C to stop the cluster.\n"
            << std::flush;
  // Wait for Ctrl-C, or for the node to die on its own.
  while (true) {
    timespec tick{0, 200'000'000};
    if (sigtimedwait(&signals, nullptr, &tick) > 0) break;
    if ((*cluster)->Exited()) {
      std::cerr << "bulwarkd stopped unexpectedly; see " << (*cluster)->log_path() << "\n";
      return 1;
    }
  }
  std::cout << "\nstopping...\n";
  auto code = (*cluster)->Stop();
  if (!code.ok()) return Fail(code.status());
  std::cout << "stopped (bulwarkd exit code " << *code << "); data kept for the next `cluster up`\n";
  return *code == 0 ? 0 : 1;
}

void AddDatabaseCommands(CLI::App& app, Globals& g, int& rc) {
  auto* db = app.add_subcommand("db", "databases")->require_subcommand(1);
  static std::string name;
  db->add_subcommand("create", "create a database")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto d, c.CreateDatabase(name));
      std::cout << "created database " << d.id << "\n";
      return Status::Ok();
    });
  })->add_option("NAME", name)->required();
  auto* db_list = db->add_subcommand("list", "list databases");
  db_list->add_flag("--json", g.json_output, "print JSON instead of a table");
  db_list->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto list, c.ListDatabases());
      if (g.json_output) {
        json out = json::array();
        for (const auto& d : list) out.push_back({{"id", d.id}, {"_etag", d.etag}, {"_ts", d.ts}});
        std::cout << out.dump(2) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows;
        for (const auto& d : list) rows.push_back({d.id, d.etag, std::to_string(d.ts)});
        PrintTable({"ID", "ETAG", "TS"}, rows);
      }
      return Status::Ok();
    });
  });
  db->add_subcommand("delete", "delete a database and everything in it")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_RETURN_IF_ERROR(c.DeleteDatabase(name));
      std::cout << "deleted database " << name << "\n";
      return Status::Ok();
    });
  })->add_option("NAME", name)->required();
}

void AddContainerCommands(CLI::App& app, Globals& g, int& rc) {
  auto* cmd = app.add_subcommand("container", "containers")->require_subcommand(1);
  static std::string db, name, pk_path;
  auto* create = cmd->add_subcommand("create", "create a container")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto info, c.CreateContainer(db, name, pk_path));
      std::cout << "created container " << info.database << "/" << info.id << " partitioned by "
                << info.partition_key_path << "\n";
      return Status::Ok();
    });
  });
  create->add_option("DB", db)->required();
  create->add_option("NAME", name)->required();
  create->add_option("--partition-key", pk_path, "partition-key path, e.g. /tenant")->required();
  auto* list = cmd->add_subcommand("list", "list a database's containers")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto all, c.ListContainers(db));
      if (g.json_output) {
        json out = json::array();
        for (const auto& x : all) {
          out.push_back({{"id", x.id}, {"partitionKey", x.partition_key_path}, {"_rid", x.rid}, {"_ts", x.ts}});
        }
        std::cout << out.dump(2) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows;
        for (const auto& x : all) rows.push_back({x.id, x.partition_key_path, x.rid});
        PrintTable({"ID", "PARTITION KEY", "RID"}, rows);
      }
      return Status::Ok();
    });
  });
  list->add_option("DB", db)->required();
  list->add_flag("--json", g.json_output, "print JSON instead of a table");
  auto* del = cmd->add_subcommand("delete", "delete a container and its items")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_RETURN_IF_ERROR(c.DeleteContainer(db, name));
      std::cout << "deleted container " << db << "/" << name << "\n";
      return Status::Ok();
    });
  });
  del->add_option("DB", db)->required();
  del->add_option("NAME", name)->required();
}

void AddItemCommands(CLI::App& app, Globals& g, int& rc) {
  auto* cmd = app.add_subcommand("item", "items")->require_subcommand(1);
  static std::string db, container, id, json_arg, pk, if_match, level;
  static uint32_t max_items = 0;
  static std::string continuation;
  for (const char* verb : {"put", "create", "replace"}) {
    const std::string v = verb;
    auto* sub = cmd->add_subcommand(v, v == "put" ? "create or replace (upsert) an item"
                                                   : v == "create" ? "create an item (fails if it exists)"
                                                                   : "replace an existing item")
                    ->callback([&, v] {
                      rc = WithClient(g, [&](Client& c) -> Status {
                        BULWARK_ASSIGN_OR_RETURN(std::string text, ReadJsonArg(json_arg));
                        Result<Item> r = Status::Internal("unreachable");
                        if (v == "put") {
                          r = c.UpsertItem(db, container, text);
                        } else if (v == "create") {
                          r = c.CreateItem(db, container, text);
                        } else {
                          const json doc = json::parse(text, nullptr, false);
                          if (doc.is_discarded() || !doc.is_object() || !doc.contains("id") || !doc["id"].is_string()) {
                            return Status::InvalidArgument("replace needs a JSON object with a string 'id'");
                          }
                          r = c.ReplaceItem(db, container, doc["id"].get<std::string>(), text, if_match);
                        }
                        BULWARK_RETURN_IF_ERROR(r.status());
                        std::cout << r->json << "\n";
                        return Status::Ok();
                      });
                    });
    sub->add_option("DB", db)->required();
    sub->add_option("CONTAINER", container)->required();
    sub->add_option("--json", json_arg, "the item as JSON, or - to read standard input")->required();
    if (v == "replace") sub->add_option("--if-match", if_match, "only if the item still has this etag");
  }
  auto* get = cmd->add_subcommand("get", "read an item")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      ReadOptions options;
      options.consistency = LevelArg(level);
      BULWARK_ASSIGN_OR_RETURN(auto item, c.ReadItem(db, container, PartitionKeyArgToJson(pk), id, options));
      std::cout << item.json << "\n";
      return Status::Ok();
    });
  });
  auto* del = cmd->add_subcommand("delete", "delete an item")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_RETURN_IF_ERROR(c.DeleteItem(db, container, PartitionKeyArgToJson(pk), id, if_match));
      std::cout << "deleted item " << id << "\n";
      return Status::Ok();
    });
  });
  for (auto* sub : {get, del}) {
    sub->add_option("DB", db)->required();
    sub->add_option("CONTAINER", container)->required();
    sub->add_option("ID", id)->required();
    sub->add_option("--pk", pk, "partition-key value (acme, 42, true; '\"42\"' for the string 42)")->required();
  }
  del->add_option("--if-match", if_match, "only if the item still has this etag");
  auto* list = cmd->add_subcommand("list", "list items")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      ListOptions options;
      if (!pk.empty()) options.partition_key_json = PartitionKeyArgToJson(pk);
      options.max_items = max_items;
      options.continuation = continuation;
      options.consistency = LevelArg(level);
      BULWARK_ASSIGN_OR_RETURN(auto page, c.ListItems(db, container, options));
      if (g.json_output) {
        json out = {{"items", json::array()}, {"continuation", page.continuation}};
        for (const auto& item : page.items) out["items"].push_back(json::parse(item, nullptr, false));
        std::cout << out.dump(2) << "\n";
        return Status::Ok();
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& item : page.items) {
        const json doc = json::parse(item, nullptr, false);
        rows.push_back({doc.value("id", "?"), doc.value("_etag", ""), Clip(item, 60)});
      }
      PrintTable({"ID", "ETAG", "ITEM"}, rows);
      if (!page.continuation.empty()) std::cout << "more: --continuation " << page.continuation << "\n";
      return Status::Ok();
    });
  });
  list->add_option("DB", db)->required();
  list->add_option("CONTAINER", container)->required();
  list->add_option("--pk", pk, "only this partition-key value");
  list->add_option("--max", max_items, "items per page");
  list->add_option("--continuation", continuation, "resume after an earlier page");
  list->add_flag("--json", g.json_output, "print JSON instead of a table");
  for (auto* sub : {get, list}) {
    sub->add_option("--consistency", level, "Strong, BoundedStaleness, Session, ConsistentPrefix or Eventual")
        ->check([](const std::string& s) {
          return ParseConsistency(s) ? std::string() : std::string("unknown consistency level '" + s + "'");
        });
  }
}

void AddKeyCommands(CLI::App& app, Globals& g, int& rc) {
  auto* keys = app.add_subcommand("keys", "encryption keys")->require_subcommand(1);
  keys->add_subcommand("status", "master key, and files and bytes per store-key version")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto s, c.GetKeyStatus());
      std::cout << "master key " << s.master_key_id << "\n";
      std::vector<std::vector<std::string>> rows;
      for (const auto& u : s.store_keys) {
        rows.push_back({"v" + std::to_string(u.version), u.current ? "current" : "", std::to_string(u.files),
                        std::to_string(u.bytes)});
      }
      PrintTable({"STORE KEY", "", "FILES", "BYTES"}, rows);
      std::cout << (s.rewrite_running ? "rewrite of older files: running\n" : "rewrite of older files: idle\n");
      if (!s.last_rewrite_error.empty()) std::cout << "last rewrite failed: " << s.last_rewrite_error << "\n";
      return Status::Ok();
    });
  });
  keys->add_subcommand("rotate-store", "new store key for new files; older files are rewritten in the background")
      ->callback([&] {
        rc = WithClient(g, [&](Client& c) -> Status {
          BULWARK_ASSIGN_OR_RETURN(uint32_t v, c.RotateStoreKey());
          std::cout << "store key v" << v << " is current; older files are being rewritten (see: bulwark keys status)\n";
          return Status::Ok();
        });
      });
  static std::string db, container;
  auto* dek = keys->add_subcommand("rotate-container", "new data-key version for a container's new writes")
                  ->callback([&] {
                    rc = WithClient(g, [&](Client& c) -> Status {
                      BULWARK_ASSIGN_OR_RETURN(uint32_t v, c.RotateDataKey(db, container));
                      std::cout << "container " << db << "/" << container << " seals new writes with data key v" << v
                                << "; older items stay readable\n";
                      return Status::Ok();
                    });
                  });
  dek->add_option("DB", db)->required();
  dek->add_option("CONTAINER", container)->required();
  static std::string uri;
  auto* master = keys->add_subcommand("rotate-master", "re-wrap every key under a new master key, online")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(std::string id, c.RotateMasterKey(uri));
      std::cout << "every key is now wrapped by master key " << id << "\n"
                << "restart the node with --master-key-uri " << uri << " (the old key no longer opens it)\n";
      return Status::Ok();
    });
  });
  master->add_option("--new-key-uri", uri, "file:PATH, env:VAR or command:PATH ARGS, resolved on the node")->required();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bulwark: the Bulwark command-line client"};
  app.require_subcommand(1);
  Globals g;
  int rc = 0;
  app.add_option("--profile-dir", g.profile_dir, "where client.json lives (default .bulwark)");
  app.add_option("--endpoint", g.endpoint, "host:port of a node");
  app.add_option("--ca", g.ca, "CA certificate (PEM) that signed the node's certificate");
  app.add_option("--key", g.key, "account key (base64)");
  app.add_flag("--insecure", g.insecure, "plaintext (only against a node started with --insecure)");

  AddDatabaseCommands(app, g, rc);
  AddContainerCommands(app, g, rc);
  AddItemCommands(app, g, rc);
  AddKeyCommands(app, g, rc);
  app.add_subcommand("status", "show the node's status")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto s, c.GetStatus());
      std::cout << "node " << s.node_id << " in region " << s.region << ", version " << s.version << "\n"
                << "  up " << s.uptime_s << " s, change log at LSN " << s.last_lsn << ", " << s.live_data_bytes
                << " bytes on disk\n"
                << "  default consistency " << ConsistencyName(s.default_consistency) << ", TLS "
                << (s.tls ? "on" : "OFF (--insecure)") << ", master key " << s.master_key_id << "\n";
      return Status::Ok();
    });
  });
  auto* cluster = app.add_subcommand("cluster", "run a local cluster")->require_subcommand(1);
  static std::string ip = "127.0.1.1";
  static int port = 7100;
  auto* up = cluster->add_subcommand("up", "start a local cluster in the foreground (Ctrl-C stops it)")->callback([&] {
    rc = ClusterUp(g, ip, port);
  });
  up->add_option("--ip", ip, "loopback address of the first node");
  up->add_option("--port", port, "client port (metrics on port + 80)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return rc;
}
