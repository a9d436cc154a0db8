// `bulwark db|container|item|keys ...`: the data and key commands.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "chaos/local_cluster.h"
#include "client/cli.h"

using nlohmann::json;

namespace bulwark::cli {
using namespace bulwark::client;

namespace {
// "r1,r2", or "any" for a database or container without a geo-fence.
std::string RegionList(const std::vector<std::string>& regions) {
  std::string out;
  for (const auto& r : regions) out += (out.empty() ? "" : ",") + r;
  return out.empty() ? "any" : out;
}
std::string FenceNote(const std::vector<std::string>& regions) {
  return regions.empty() ? "" : ", geo-fenced to " + RegionList(regions);
}
}  // namespace

void AddDatabaseCommands(CLI::App& app, Globals& g, int& rc) {
  auto* db = app.add_subcommand("db", "databases")->require_subcommand(1);
  static std::string name;
  static std::vector<std::string> db_regions;
  auto* db_create = db->add_subcommand("create", "create a database")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto d, c.CreateDatabase(name, db_regions));
      std::cout << "created database " << d.id << FenceNote(d.allowed_regions) << "\n";
      return Status::Ok();
    });
  });
  db_create->add_option("NAME", name)->required();
  db_create
      ->add_option("--allowed-regions", db_regions,
                   "geo-fence: the regions its data may be in (comma-separated; docs/geo-fencing.md)")
      ->delimiter(',');
  auto* db_list = db->add_subcommand("list", "list databases");
  db_list->add_flag("--json", g.json_output, "print JSON instead of a table");
  db_list->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto list, c.ListDatabases());
      if (g.json_output) {
        json out = json::array();
        for (const auto& d : list) {
          json one = {{"id", d.id}, {"_etag", d.etag}, {"_ts", d.ts}};
          if (!d.allowed_regions.empty()) one["allowedRegions"] = d.allowed_regions;
          out.push_back(std::move(one));
        }
        std::cout << out.dump(2) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows;
        for (const auto& d : list) rows.push_back({d.id, d.etag, std::to_string(d.ts), RegionList(d.allowed_regions)});
        PrintTable({"ID", "ETAG", "TS", "ALLOWED REGIONS"}, rows);
      }
      return Status::Ok();
    });
  });
  db->add_subcommand("delete", "delete a database and everything in it")
      ->callback([&] {
        rc = WithClient(g, [&](Client& c) -> Status {
          BULWARK_RETURN_IF_ERROR(c.DeleteDatabase(name));
          std::cout << "deleted database " << name << "\n";
          return Status::Ok();
        });
      })
      ->add_option("NAME", name)
      ->required();
}

void AddContainerCommands(CLI::App& app, Globals& g, int& rc) {
  auto* cmd = app.add_subcommand("container", "containers")->require_subcommand(1);
  static std::string db, name, pk_path;
  static std::vector<std::string> regions;
  auto* create = cmd->add_subcommand("create", "create a container")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto info, c.CreateContainer(db, name, pk_path, regions));
      std::cout << "created container " << info.database << "/" << info.id << " partitioned by "
                << info.partition_key_path << FenceNote(info.allowed_regions) << "\n";
      return Status::Ok();
    });
  });
  create->add_option("DB", db)->required();
  create->add_option("NAME", name)->required();
  create->add_option("--partition-key", pk_path, "partition-key path, e.g. /tenant")->required();
  create
      ->add_option("--allowed-regions", regions,
                   "geo-fence: the regions its data may be in, within its database's (comma-separated; "
                   "docs/geo-fencing.md)")
      ->delimiter(',');
  auto* list = cmd->add_subcommand("list", "list a database's containers")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto all, c.ListContainers(db));
      if (g.json_output) {
        json out = json::array();
        for (const auto& x : all) {
          json one = {{"id", x.id}, {"partitionKey", x.partition_key_path}, {"_rid", x.rid}, {"_ts", x.ts}};
          if (!x.allowed_regions.empty()) one["allowedRegions"] = x.allowed_regions;
          out.push_back(std::move(one));
        }
        std::cout << out.dump(2) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows;
        for (const auto& x : all) rows.push_back({x.id, x.partition_key_path, x.rid, RegionList(x.allowed_regions)});
        PrintTable({"ID", "PARTITION KEY", "RID", "ALLOWED REGIONS"}, rows);
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
  static int purge_wait_s = 120;
  auto* purge =
      cmd->add_subcommand("purge", "destroy a container's data keys on every node: irreversible")->callback([&] {
        rc = WithClient(g, [&](Client& c) -> Status {
          BULWARK_ASSIGN_OR_RETURN(PurgeResult r, c.PurgeContainer(db, name));
          std::cout << "purged " << db << "/" << name << ": the data keys of " << r.rids.size()
                    << " container(s) are destroyed; waiting for every node to shred its files\n";
          // Each node rewrites its own files; the purge is complete when none
          // has it pending.
          BULWARK_ASSIGN_OR_RETURN(ClientOptions options, Options(g));
          const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(purge_wait_s);
          for (const std::string& address : NodeAddresses(options)) {
            auto one = Client::Connect(OneNode(options, address));
            while (true) {
              Result<KeyStatus> ks = one.ok() ? (*one)->GetKeyStatus() : Result<KeyStatus>(one.status());
              bool pending = !ks.ok();
              for (size_t i = 0; ks.ok() && i < ks->pending_shreds.size(); ++i) {
                for (const auto& rid : r.rids) pending = pending || ks->pending_shreds[i].rid == rid;
              }
              if (!pending) {
                std::cout << "  " << address << ": shredded\n";
                break;
              }
              if (std::chrono::steady_clock::now() >= deadline) {
                const std::string why = !ks.ok() ? ks.status().message() : ks->last_shred_error;
                return Status::Unavailable(address + " has not finished shredding" + (why.empty() ? "" : ": " + why) +
                                           " (it goes on; see: bulwark keys status)");
              }
              std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
          }
          std::cout << "purge complete: no node's files hold the container's keys or records\n";
          return Status::Ok();
        });
      });
  purge->add_option("DB", db)->required();
  purge->add_option("NAME", name)->required();
  purge->add_option("--wait", purge_wait_s, "seconds to wait for every node to shred its files")
      ->check(CLI::Range(0, 3600));
}

void AddItemCommands(CLI::App& app, Globals& g, int& rc) {
  auto* cmd = app.add_subcommand("item", "items")->require_subcommand(1);
  static std::string db, container, id, json_arg, pk, if_match, level;
  static uint32_t max_items = 0;
  static std::string continuation;
  for (const char* verb : {"put", "create", "replace"}) {
    const std::string v = verb;
    auto* sub = cmd->add_subcommand(v, v == "put"      ? "create or replace (upsert) an item"
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

json PendingShredsJson(const KeyStatus& s) {
  json out = json::array();
  for (const auto& p : s.pending_shreds) out.push_back({{"rid", p.rid}, {"purgeIndex", p.purge_index}});
  return out;
}

json KeyStatusJson(const KeyStatus& s) {
  json store_keys = json::array();
  for (const auto& u : s.store_keys) {
    store_keys.push_back({{"version", u.version}, {"current", u.current}, {"files", u.files}, {"bytes", u.bytes}});
  }
  json containers = json::array();
  for (const auto& c : s.containers) {
    json versions = json::array();
    for (const auto& v : c.versions) {
      versions.push_back({{"version", v.version},
                          {"current", v.current},
                          {"items", v.items},
                          {"changeLogRecords", v.change_log_records},
                          {"bytes", v.bytes}});
    }
    containers.push_back({{"database", c.database},
                          {"container", c.container},
                          {"rid", c.rid},
                          {"currentVersion", c.current_version},
                          {"resealPending", c.reseal_pending},
                          {"versions", versions}});
  }
  return {{"masterKeyId", s.master_key_id},
          {"storeKeys", store_keys},
          {"rewriteRunning", s.rewrite_running},
          {"lastRewriteError", s.last_rewrite_error},
          {"dataKeys", containers},
          {"unflushedValues", s.unflushed_values},
          {"resealFailures", s.reseal_failures},
          {"pendingShreds", PendingShredsJson(s)},
          {"lastShredError", s.last_shred_error}};
}

void PrintKeyStatus(const KeyStatus& s) {
  std::cout << "master key " << s.master_key_id << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& u : s.store_keys) {
    rows.push_back({"v" + std::to_string(u.version), u.current ? "current" : "", std::to_string(u.files),
                    std::to_string(u.bytes)});
  }
  PrintTable({"STORE KEY", "", "FILES", "BYTES"}, rows);
  std::cout << (s.rewrite_running ? "rewrite of older files: running\n" : "rewrite of older files: idle\n");
  if (!s.last_rewrite_error.empty()) std::cout << "last rewrite failed: " << s.last_rewrite_error << "\n";
  // One row per container and data-key version: the re-seal's progress.
  rows.clear();
  for (const auto& c : s.containers) {
    const std::string name = c.database.empty() ? "(deleted " + c.rid + ")" : c.database + "/" + c.container;
    for (const auto& v : c.versions) {
      rows.push_back({name, "v" + std::to_string(v.version), v.current ? "current" : "", std::to_string(v.items),
                      std::to_string(v.change_log_records), c.reseal_pending ? "re-sealing" : "idle"});
    }
  }
  std::cout << "\n";
  PrintTable({"CONTAINER", "DATA KEY", "", "ITEMS", "CHANGE LOG", "RE-SEAL"}, rows);
  if (s.unflushed_values > 0) std::cout << s.unflushed_values << " recent values not yet counted (in memory)\n";
  if (s.reseal_failures > 0) {
    std::cout << s.reseal_failures << " values could not be opened to re-seal; they were kept as they are\n";
  }
  for (const auto& p : s.pending_shreds) std::cout << "shred pending: container rid " << p.rid << "\n";
  if (!s.last_shred_error.empty()) std::cout << "last shred attempt: " << s.last_shred_error << "\n";
}

void AddFirewallCommands(CLI::App& app, Globals& g, int& rc) {
  auto* fw = app.add_subcommand("firewall", "the account's IP firewall (client allowlist)")->require_subcommand(1);
  auto print = [](const std::vector<std::string>& ranges) {
    if (ranges.empty()) {
      std::cout << "the firewall is OPEN: every address may connect\n";
      return;
    }
    std::cout << "allowed:\n";
    for (const auto& r : ranges) std::cout << "  " << r << "\n";
  };
  fw->add_subcommand("list", "the allowed addresses and ranges")->callback([&, print] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto ranges, c.FirewallList());
      print(ranges);
      return Status::Ok();
    });
  });
  static std::string range;
  for (const bool allow : {true, false}) {
    auto* sub = fw->add_subcommand(allow ? "allow" : "deny",
                                   allow ? "let an address or CIDR range connect (the first one closes the firewall "
                                           "to every other address)"
                                         : "remove an address or range from the allowlist")
                    ->callback([&, print, allow] {
                      rc = WithClient(g, [&](Client& c) -> Status {
                        BULWARK_ASSIGN_OR_RETURN(auto ranges, allow ? c.FirewallAllow(range) : c.FirewallDeny(range));
                        print(ranges);
                        return Status::Ok();
                      });
                    });
    sub->add_option("RANGE", range, "an IPv4 or IPv6 address, or a CIDR range such as 10.0.0.0/8")->required();
  }
}

void AddRegionCommands(CLI::App& app, Globals& g, int& rc) {
  auto* region = app.add_subcommand("region", "the account's regions: list, add, remove, priority (online)")
                     ->require_subcommand(1);
  auto print = [](const Topology& t) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : t.regions) {
      std::string endpoints;
      for (const auto& e : r.endpoints) endpoints += (endpoints.empty() ? "" : ",") + e;
      rows.push_back({r.name, std::to_string(r.priority), r.name == t.write_region ? "write" : "read", endpoints});
    }
    PrintTable({"REGION", "PRIORITY", "ROLE", "ENDPOINTS"}, rows);
  };
  region->add_subcommand("list", "the regions in failover-priority order")->callback([&, print] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(Topology t, c.GetTopology());
      print(t);
      return Status::Ok();
    });
  });
  static RegionSpec spec;
  static std::string peers, endpoints;
  auto* add = region
                  ->add_subcommand("add",
                                   "add a region; its nodes (started with geo.write_region naming this account's "
                                   "write region) fill themselves from a state image plus the stream")
                  ->callback([&, print] {
                    spec.peers = SplitCommaList(peers);
                    spec.endpoints = SplitCommaList(endpoints);
                    rc = WithClient(g, [&](Client& c) -> Status {
                      BULWARK_ASSIGN_OR_RETURN(Topology t, c.AddRegion(spec));
                      print(t);
                      return Status::Ok();
                    });
                  });
  add->add_option("NAME", spec.name, "the region's name (1-64 letters, digits, '-' or '_')")->required();
  add->add_option("--peers", peers, "its nodes' peer addresses, ip:port,ip:port,...")->required();
  add->add_option("--endpoints", endpoints, "its nodes' client addresses, ip:port,...")->required();
  add->add_option("--priority", spec.priority, "its failover priority (default: after every other region)");
  add->add_flag("--strong", spec.strong, "make it part of the strong quorum set");
  static std::string name;
  auto* remove = region->add_subcommand("remove", "remove a read region from the account (it then serves nothing)")
                     ->callback([&, print] {
                       rc = WithClient(g, [&](Client& c) -> Status {
                         BULWARK_ASSIGN_OR_RETURN(Topology t, c.RemoveRegion(name));
                         print(t);
                         return Status::Ok();
                       });
                     });
  remove->add_option("NAME", name, "the region")->required();
  static uint32_t priority = 0;
  auto* prio = region->add_subcommand("priority", "change a region's failover priority")->require_subcommand(1);
  auto* set = prio->add_subcommand("set", "move a region to a priority (1 = right after the write region)")
                  ->callback([&, print] {
                    rc = WithClient(g, [&](Client& c) -> Status {
                      BULWARK_ASSIGN_OR_RETURN(Topology t, c.SetRegionPriority(name, priority));
                      print(t);
                      return Status::Ok();
                    });
                  });
  set->add_option("NAME", name, "the region")->required();
  set->add_option("PRIORITY", priority, "the new priority")->required()->check(CLI::Range(1u, 1000u));

  static std::string to;
  static int wait_s = 60;
  auto* failover =
      app.add_subcommand("failover",
                         "move the write region (planned: the current one stops taking writes and streams the rest, "
                         "then TO takes over; nothing acknowledged is lost)")
          ->callback([&, print] {
            rc = WithClient(g, [&](Client& c) -> Status {
              BULWARK_ASSIGN_OR_RETURN(Topology t, c.Failover(to, std::chrono::seconds(wait_s)));
              std::cout << "the write region is " << t.write_region << " (epoch " << t.epoch << ")\n";
              print(t);
              return Status::Ok();
            });
          });
  failover->add_option("--to", to, "the region that takes the writes")->required();
  failover->add_option("--wait", wait_s, "seconds to wait for it to take over")->check(CLI::Range(1, 3600));
}

CLI::App* AddKeyCommands(CLI::App& app, Globals& g, int& rc) {
  auto* keys = app.add_subcommand("keys", "account keys and encryption keys")->require_subcommand(1);
  auto* status = keys->add_subcommand(
      "status", "master key, files per store-key version, and items per container data-key version");
  status->add_flag("--json", g.json_output, "print JSON instead of tables");
  status->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto s, c.GetKeyStatus());
      if (g.json_output) {
        std::cout << KeyStatusJson(s).dump(2) << "\n";
      } else {
        PrintKeyStatus(s);
      }
      return Status::Ok();
    });
  });
  keys->add_subcommand("rotate-store", "new store key for new files; older files are rewritten in the background")
      ->callback([&] {
        rc = WithClient(g, [&](Client& c) -> Status {
          BULWARK_ASSIGN_OR_RETURN(uint32_t v, c.RotateStoreKey());
          std::cout << "store key v" << v
                    << " is current; older files are being rewritten (see: bulwark keys status)\n";
          return Status::Ok();
        });
      });
  static std::string db, container;
  auto* dek =
      keys->add_subcommand("rotate-container", "new data-key version for a container's new writes")->callback([&] {
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
  auto* master =
      keys->add_subcommand("rotate-master", "re-wrap every key under a new master key, online")->callback([&] {
        rc = WithClient(g, [&](Client& c) -> Status {
          BULWARK_ASSIGN_OR_RETURN(std::string id, c.RotateMasterKey(uri));
          std::cout << "every key is now wrapped by master key " << id << "\n"
                    << "restart the node with --master-key-uri " << uri << " (the old key no longer opens it)\n";
          return Status::Ok();
        });
      });
  master->add_option("--new-key-uri", uri, "file:PATH, env:VAR or command:PATH ARGS, resolved on the node")->required();
  return keys;
}

// The conflict feed (docs/control-group.md): `bulwark --region r1 conflicts
// list` reads r1's.
void AddConflictCommands(CLI::App& app, Globals& g, int& rc) {
  auto* conflicts =
      app.add_subcommand("conflicts",
                         "writes a region committed as write region that the account never received (another region "
                         "took the writes over): list, show, replay (write them again) or discard; --region picks "
                         "the region")
          ->require_subcommand(1);
  static std::string db, container, id;
  static bool force = false;
  auto when = [](int64_t unix_ms) {
    const std::time_t at = static_cast<std::time_t>(unix_ms / 1000);
    char text[32];
    std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&at));
    return std::string(text);
  };
  auto* list =
      conflicts->add_subcommand("list", "the conflicts of a container (or of every container)")->callback([&, when] {
        rc = WithClient(g, [&](Client& c) -> Status {
          BULWARK_ASSIGN_OR_RETURN(auto got, c.ListConflicts(db, container));
          if (g.json_output) {
            nlohmann::json out = nlohmann::json::array();
            for (const auto& x : got.second) {
              out.push_back({{"id", x.id},
                             {"database", x.database},
                             {"container", x.container},
                             {"partition_key", x.partition_key},
                             {"item_id", x.item_id},
                             {"deleted", x.deleted},
                             {"ts", x.ts},
                             {"glsn", x.glsn},
                             {"epoch", x.epoch},
                             {"captured_unix_ms", x.captured_unix_ms}});
            }
            std::cout << nlohmann::json{{"region", got.first}, {"conflicts", out}}.dump(2) << "\n";
            return Status::Ok();
          }
          std::vector<std::vector<std::string>> rows;
          for (const auto& x : got.second) {
            rows.push_back({x.id, x.database + "/" + x.container, x.item_id, x.partition_key,
                            x.deleted ? "delete" : "put", std::to_string(x.glsn), std::to_string(x.epoch),
                            when(x.ts * 1000)});
          }
          std::cout << "conflict feed of region " << got.first << ": " << rows.size() << " write"
                    << (rows.size() == 1 ? "" : "s") << "\n";
          if (!rows.empty()) {
            PrintTable({"ID", "CONTAINER", "ITEM", "PARTITION KEY", "OP", "GLSN", "EPOCH", "WRITTEN"}, rows);
          }
          return Status::Ok();
        });
      });
  list->add_option("DB", db, "the database (with CONTAINER)");
  list->add_option("CONTAINER", container, "the container");
  list->add_flag("--json", g.json_output, "print JSON instead of a table");
  auto* show = conflicts->add_subcommand("show", "one conflict, with the item as it was written")->callback([&, when] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto got, c.GetConflict(db, container, id));
      const auto& x = got.first;
      std::cout << "conflict " << x.id << " of " << x.database << "/" << x.container << ": "
                << (x.deleted ? "delete" : "put") << " of item " << x.item_id << " (partition key " << x.partition_key
                << ") at GLSN " << x.glsn << ", epoch " << x.epoch << ", written " << when(x.ts * 1000) << ", kept "
                << when(x.captured_unix_ms) << "\n";
      if (!x.deleted) std::cout << got.second << "\n";
      return Status::Ok();
    });
  });
  auto* replay =
      conflicts->add_subcommand("replay", "write the conflict's item again (in the write region), then discard it")
          ->callback([&] {
            rc = WithClient(g, [&](Client& c) -> Status {
              BULWARK_ASSIGN_OR_RETURN(auto got, c.GetConflict(db, container, id));
              const auto& x = got.first;
              // The account may have a newer version of the item (written in
              // the new write region since): not overwritten unless asked.
              auto now = c.ReadItem(x.database, x.container, x.partition_key, x.item_id);
              if (now.ok() && !force) {
                const auto current = json::parse(now->json, nullptr, false);
                const int64_t ts = current.is_object() && current.contains("_ts") && current["_ts"].is_number_integer()
                                       ? current["_ts"].get<int64_t>()
                                       : 0;
                if (ts > x.ts) {
                  return Status::FailedPrecondition("the account's item " + x.item_id + " was written at " +
                                                    std::to_string(ts) + ", after the conflict (" +
                                                    std::to_string(x.ts) + "); --force to replay over it");
                }
              } else if (!now.ok() && now.status().code() != Code::kNotFound) {
                return now.status();
              }
              if (x.deleted) {
                Status s = c.DeleteItem(x.database, x.container, x.partition_key, x.item_id);
                if (!s.ok() && s.code() != Code::kNotFound) return s;
              } else {
                BULWARK_RETURN_IF_ERROR(c.UpsertItem(x.database, x.container, got.second).status());
              }
              BULWARK_RETURN_IF_ERROR(c.DiscardConflict(db, container, id));
              std::cout << "replayed " << (x.deleted ? "the delete of item " : "item ") << x.item_id << " into "
                        << x.database << "/" << x.container << "; conflict " << id << " discarded\n";
              return Status::Ok();
            });
          });
  replay->add_flag("--force", force, "replay even over a newer version of the item in the account");
  auto* discard = conflicts->add_subcommand("discard", "drop a conflict without writing it")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_RETURN_IF_ERROR(c.DiscardConflict(db, container, id));
      std::cout << "conflict " << id << " discarded\n";
      return Status::Ok();
    });
  });
  for (auto* sub : {show, replay, discard}) {
    sub->add_option("DB", db, "the database")->required();
    sub->add_option("CONTAINER", container, "the container")->required();
    sub->add_option("ID", id, "the conflict's id (conflicts list)")->required();
  }
}

}  // namespace bulwark::cli
