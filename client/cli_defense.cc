// The `bulwark` CLI's incident-response commands: lockdown, alerts, and the
// audit log (verify, query). Alerts and audit logs are per node: these ask
// every node of the profile and say which node answered what.
#include <ctime>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <google/protobuf/util/json_util.h>

#include "bulwark/v1/access.pb.h"
#include "bulwark/v1/admin.pb.h"
#include "client/cli.h"
#include "common/clock.h"
#include "security/ip_allowlist.h"
#include "security/request_signing.h"

namespace bulwark::cli {
namespace {

namespace v1 = ::bulwark::v1;

// Runs `fn` against each node of the profile; returns 0 if every node
// answered and `fn` found nothing wrong, 1 otherwise.
template <typename Fn>
int EachNode(const Globals& g, Fn&& fn) {
  auto options = Options(g);
  if (!options.ok()) {
    std::cerr << "error: " << options.status().message() << "\n";
    return 2;
  }
  int rc = 0;
  for (const std::string& address : NodeAddresses(*options)) {
    auto client = Client::Connect(OneNode(*options, address));
    Status s = client.ok() ? fn(address, **client) : client.status();
    if (!s.ok()) {
      std::cerr << address << ": " << s.ToString() << "\n";
      rc = 1;
    }
  }
  return rc;
}

}  // namespace

void AddDefenseCommands(CLI::App& app, Globals& g, int& rc) {
  auto* lockdown =
      app.add_subcommand("lockdown", "make the account read-only in one step (incident response), or end it")
          ->require_subcommand(1);
  for (const bool on : {true, false}) {
    lockdown->add_subcommand(on ? "on" : "off", on ? "refuse every change except incident response" : "end lockdown")
        ->callback([&, on] {
          rc = WithClient(g, [&](Client& c) -> Status {
            v1::LockdownRequest req;
            req.set_on(on);
            v1::AccessSettingsResponse resp;
            BULWARK_RETURN_IF_ERROR(c.CallAccess("SetLockdown", security::AccountRef("put"), req, &resp));
            std::cout << (resp.settings().lockdown()
                              ? "LOCKDOWN: the account is read-only. Still allowed: keys regenerate, firewall, "
                                "deleting users, permissions and role assignments, account settings, lockdown off.\n"
                              : "lockdown is off: writes are accepted again\n");
            return Status::Ok();
          });
        });
  }

  app.add_subcommand("alerts", "recent alerts of every node (auth failure rate, blocked addresses, audit drops)")
      ->callback([&] {
        rc = EachNode(g, [&](const std::string& address, Client& c) -> Status {
          v1::AlertsRequest req;
          v1::AlertsResponse resp;
          BULWARK_RETURN_IF_ERROR(c.CallAdmin("ListAlerts", req, &resp));
          std::cout << address << ": " << resp.auth_failures_last_minute() << " failed authentications in the last "
                    << "minute, " << resp.blocked_addresses() << " addresses blocked now\n";
          std::vector<std::vector<std::string>> rows;
          for (const auto& a : resp.alerts())
            rows.push_back({FormatUnixMillis(a.time_unix_ms()), a.kind(), a.message()});
          if (!rows.empty()) PrintTable({"TIME", "KIND", "MESSAGE"}, rows);
          return Status::Ok();
        });
      });

  auto* audit = app.add_subcommand("audit", "each node's tamper-evident audit log")->require_subcommand(1);
  audit->add_subcommand("verify", "check every node's log: any edit, deletion, reordering or truncation fails")
      ->callback([&] {
        rc = EachNode(g, [&](const std::string& address, Client& c) -> Status {
          v1::AuditVerifyRequest req;
          v1::AuditVerifyResponse resp;
          BULWARK_RETURN_IF_ERROR(c.CallAdmin("AuditVerify", req, &resp));
          if (!resp.ok()) {
            return Status::Corruption("audit log FAILED verification: " + resp.problem());
          }
          std::cout << address << ": ok, " << resp.records() << " records in " << resp.segments() << " segments (index "
                    << resp.first_index() << " to " << resp.last_index() << "), signed by " << resp.public_key()
                    << "\n";
          return Status::Ok();
        });
      });
  static std::string since, until, principal, op, resource;
  static uint32_t limit = 0;
  auto* query =
      audit->add_subcommand("query", "records of every node, oldest first, as a table or JSON lines")->callback([&] {
        v1::AuditQueryRequest req;
        for (auto [text, set] : {std::pair{&since, &v1::AuditQueryRequest::set_since_unix_ms},
                                 std::pair{&until, &v1::AuditQueryRequest::set_until_unix_ms}}) {
          if (text->empty()) continue;
          auto t = ParseTimeArg(*text);
          if (!t.ok()) {
            rc = Fail(t.status());
            return;
          }
          (req.*set)(*t);
        }
        req.set_principal(principal);
        req.set_operation(op);
        req.set_resource(resource);
        req.set_limit(limit);
        rc = EachNode(g, [&](const std::string& address, Client& c) -> Status {
          v1::AuditQueryResponse resp;
          BULWARK_RETURN_IF_ERROR(c.CallAdmin("AuditQuery", req, &resp));
          if (g.json_output) {
            for (const auto& r : resp.records()) {
              std::string line;
              google::protobuf::util::JsonPrintOptions compact;
              (void)google::protobuf::util::MessageToJsonString(r, &line, compact);
              std::cout << line << "\n";
            }
            return Status::Ok();
          }
          std::cout << address << ":\n";
          std::vector<std::vector<std::string>> rows;
          for (const auto& r : resp.records()) {
            rows.push_back({std::to_string(r.index()), FormatUnixMillis(r.time_unix_ms()), r.principal(),
                            std::string(security::PeerHost(r.source())), r.operation(), Clip(r.resource(), 40),
                            r.code(), std::to_string(r.latency_us()), Clip(r.detail(), 40)});
          }
          PrintTable({"#", "TIME", "PRINCIPAL", "SOURCE", "OPERATION", "RESOURCE", "CODE", "US", "DETAIL"}, rows);
          return Status::Ok();
        });
      });
  query->add_option("--since", since, "YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix ms");
  query->add_option("--until", until, "the same forms; inclusive");
  query->add_option("--principal", principal, "exact: key:primary, token:dbs/..., identity:SUB, cert:SAN");
  query->add_option("--op", op, "an operation, e.g. CreateItem, AddressBlocked");
  query->add_option("--resource", resource, "a resource link prefix, e.g. dbs/shop");
  query->add_option("--limit", limit, "at most this many per node (default 1000, at most 10000)");
  query->add_flag("--json", g.json_output, "one JSON object per line");
}

}  // namespace bulwark::cli
