// Response to attacks and the audit log, on real nodes with their own
// loopback addresses: a brute-forcing address is blocked (others are not)
// and the block expires and doubles; the failure-rate alert fires; a
// principal over its rate limit is told when to retry; lockdown refuses
// writes and keeps reads; IPv6 firewall rules match ::1; every refusal is in
// the audit log and the metrics; and `audit verify` passes an untouched log
// and names the place of a flipped byte or a truncation.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <catch2/catch.hpp>

#include "bulwark/v1/access.pb.h"
#include "bulwark/v1/admin.pb.h"
#include "crypto/secret.h"
#include "security/request_signing.h"
#include "tests/server/run_command.h"
#include "tests/server/test_node.h"

using namespace bulwark;
using bulwark::testing::TestNode;
namespace fs = std::filesystem;
namespace v1 = ::bulwark::v1;

namespace {

std::unique_ptr<client::Client> From(const TestNode& node, const std::string& ip, bool good_key = true) {
  return node.ClientFrom(ip, good_key);
}

// The CLI pointed at this node (a LocalCluster writes no profile).
std::string Cli(const TestNode& node) {
  const auto o = node.cluster->client_options();
  return std::string(BULWARK_BIN_DIR) + "/bulwark --endpoint " + o.endpoint + " --ca " + o.ca_file + " --key " + o.key +
         " ";
}

std::string Metrics(const TestNode& node) {
  const auto colon = node.cluster->metrics_endpoint().rfind(':');
  httplib::Client http(node.cluster->metrics_endpoint().substr(0, colon),
                       std::stoi(node.cluster->metrics_endpoint().substr(colon + 1)));
  auto r = http.Get("/metrics");
  REQUIRE(r);
  return r->body;
}

std::vector<v1::AuditRecord> Audit(client::Client& c, const std::string& operation = {}) {
  v1::AuditQueryRequest req;
  req.set_operation(operation);
  req.set_limit(10000);
  v1::AuditQueryResponse resp;
  const Status s = c.CallAdmin("AuditQuery", req, &resp);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return {resp.records().begin(), resp.records().end()};
}

bool Audited(client::Client& c, const std::string& operation, const std::string& detail_part,
             const std::string& source_part = {}) {
  for (const auto& r : Audit(c, operation)) {
    if (r.detail().find(detail_part) != std::string::npos && r.source().find(source_part) != std::string::npos) {
      return true;
    }
  }
  return false;
}

v1::AuditVerifyResponse Verify(client::Client& c) {
  v1::AuditVerifyRequest req;
  v1::AuditVerifyResponse resp;
  const Status s = c.CallAdmin("AuditVerify", req, &resp);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return resp;
}

}  // namespace

TEST_CASE("Brute force: an address is blocked, others are not, the block expires and the next one doubles",
          "[server][integration][defense]") {
  TestNode node(false, {"--set", "defense.failures_to_block=5", "--set", "defense.block_base_ms=1500", "--set",
                        "defense.alert_failures_per_minute=8"});
  node.Seed();
  auto attacker = From(node, "127.0.0.9", /*good_key=*/false);
  for (int i = 0; i < 5; ++i) CHECK(attacker->ReadDatabase("db").status().code() == Code::kUnauthenticated);
  // Blocked now, even with the right key; another address is unaffected.
  auto blocked = From(node, "127.0.0.9")->ReadDatabase("db");
  CHECK(blocked.status().code() == Code::kPermissionDenied);
  CHECK(blocked.status().message().find("blocked") != std::string::npos);
  CHECK(From(node, "127.0.0.8")->ReadDatabase("db").ok());
  // The block expires.
  std::this_thread::sleep_for(std::chrono::milliseconds(1700));
  CHECK(From(node, "127.0.0.9")->ReadDatabase("db").ok());
  // Five more failures: blocked again, for twice as long (3 s).
  for (int i = 0; i < 5; ++i) (void)attacker->ReadDatabase("db");
  std::this_thread::sleep_for(std::chrono::milliseconds(1700));
  CHECK(From(node, "127.0.0.9")->ReadDatabase("db").status().code() == Code::kPermissionDenied);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(From(node, "127.0.0.9")->ReadDatabase("db").ok());

  // Ten failures within the minute crossed the alert threshold of 8.
  v1::AlertsRequest req;
  v1::AlertsResponse alerts;
  REQUIRE(node.client->CallAdmin("ListAlerts", req, &alerts).ok());
  int rate_alerts = 0, block_alerts = 0;
  for (const auto& a : alerts.alerts()) {
    rate_alerts += a.kind() == "auth_failure_rate" ? 1 : 0;
    block_alerts += a.kind() == "address_blocked" ? 1 : 0;
  }
  CHECK(rate_alerts == 1);
  CHECK(block_alerts == 2);
  CHECK(alerts.auth_failures_last_minute() >= 10);
  auto cli = testing::RunCommand(Cli(node) + "alerts");
  INFO(cli.output);
  CHECK(cli.exit_code == 0);
  CHECK(cli.output.find("auth_failure_rate") != std::string::npos);

  // Logged, audited, counted.
  CHECK(node.Log().find("event=address_blocked source=127.0.0.9") != std::string::npos);
  CHECK(Audited(*node.client, "AddressBlocked", "blocked for", "127.0.0.9"));
  CHECK(Audited(*node.client, "ReadDatabase", "refused: blocked", "127.0.0.9"));
  CHECK(Audited(*node.client, "ReadDatabase", "refused: bad_signature", "127.0.0.9"));
  const std::string metrics = Metrics(node);
  CHECK(metrics.find("bulwark_address_blocks_total 2") != std::string::npos);
  // Two requests came while blocked (one after each block began).
  CHECK(metrics.find("bulwark_refusals_total{reason=\"blocked\"} 2") != std::string::npos);
  CHECK(metrics.find("bulwark_refusals_total{reason=\"bad_signature\"} 10") != std::string::npos);
  CHECK(metrics.find("bulwark_alerts_total{kind=\"auth_failure_rate\"} 1") != std::string::npos);
}

TEST_CASE("Rate limit per principal, lockdown, and an audited firewall refusal", "[server][integration][defense]") {
  TestNode node(false, {"--set", "defense.principal_requests_per_second=5", "--set", "defense.principal_burst=5"});
  node.Seed();
  // Ten reads at once from one principal: the bucket holds five.
  int limited = 0;
  std::string message;
  for (int i = 0; i < 10; ++i) {
    auto r = node.client->ReadDatabase("db");
    if (r.status().code() == Code::kResourceExhausted) {
      ++limited;
      message = r.status().message();
    }
  }
  CHECK(limited >= 4);
  CHECK(message.find("retry after") != std::string::npos);
  CHECK(message.find("key:primary") != std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK(node.client->ReadDatabase("db").ok());
  CHECK(Metrics(node).find("bulwark_refusals_total{reason=\"rate_limited\"}") != std::string::npos);

  // Lockdown: writes refused (data and control), reads go on, lockdown off
  // is allowed, and the refusal is audited.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  const std::string cli = Cli(node);
  auto on = testing::RunCommand(cli + "lockdown on");
  INFO(on.output);
  REQUIRE(on.exit_code == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto write = node.client->UpsertItem("db", "c", R"({"id":"x","tenant":"t"})");
  CHECK(write.status().code() == Code::kPermissionDenied);
  CHECK(write.status().message().find("lockdown") != std::string::npos);
  CHECK(node.client->CreateDatabase("other").status().code() == Code::kPermissionDenied);
  CHECK(node.client->ReadDatabase("db").ok());
  CHECK(node.client->ListItems("db", "c").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK(Audited(*node.client, "UpsertItem", "refused: forbidden"));
  bool named = false;  // the refused caller is named in the record
  for (const auto& r : Audit(*node.client, "UpsertItem")) named = named || r.principal() == "key:primary";
  CHECK(named);
  REQUIRE(testing::RunCommand(cli + "lockdown off").exit_code == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK(node.client->UpsertItem("db", "c", R"({"id":"x","tenant":"t"})").ok());

  // A firewall refusal is audited (and counted) too.
  auto inside = From(node, "127.0.0.8");
  REQUIRE(inside->FirewallAllow("127.0.0.8").ok());
  CHECK(From(node, "127.0.0.9")->ReadDatabase("db").status().code() == Code::kPermissionDenied);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK(Audited(*inside, "ReadDatabase", "refused: firewall", "127.0.0.9"));
  CHECK(Metrics(node).find("bulwark_refusals_total{reason=\"firewall\"} 1") != std::string::npos);
}

TEST_CASE("IP firewall: an IPv6 rule matches a client on ::1", "[server][integration][firewall]") {
  // A plaintext node on [::1] (the node certificates name IPv4 addresses);
  // the firewall does not depend on TLS.
  testing::TempDir dir;
  chaos::ClusterOptions o;
  o.dir = dir.sub("cluster");
  o.bin_dir = BULWARK_BIN_DIR;
  o.ip = testing::NextIp();
  o.port = testing::FreePort(o.ip);
  o.metrics_port = 0;
  o.insecure = true;
  const int v6_port = testing::FreePort("::1");
  REQUIRE(v6_port != 0);
  o.extra_args = {"--set", "listen=[::1]:" + std::to_string(v6_port)};
  auto prepared = chaos::LocalCluster::Prepare(o);
  REQUIRE(prepared.ok());
  auto& cluster = **prepared;
  REQUIRE(cluster.StartNode(1, /*wait_ready=*/false).ok());
  client::ClientOptions co = cluster.client_options();
  co.endpoint = "[::1]:" + std::to_string(v6_port);
  co.max_retries = 0;
  auto c = client::Client::Connect(co);
  REQUIRE(c.ok());
  Status ready = Status::Unavailable("");
  for (int i = 0; i < 200 && !ready.ok(); ++i) {
    ready = (*c)->GetStatus().status();
    if (!ready.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  INFO(ready.ToString());
  REQUIRE(ready.ok());
  auto allowed = (*c)->FirewallAllow("::1");
  INFO(allowed.status().ToString());
  REQUIRE(allowed.ok());
  CHECK(*allowed == std::vector<std::string>{"::1/128"});
  CHECK((*c)->GetStatus().ok());  // ::1 is on the list
  REQUIRE((*c)->FirewallAllow("2001:db8::/32").ok());
  REQUIRE((*c)->FirewallDeny("::1").ok());
  const Status refused = (*c)->GetStatus().status();
  CHECK(refused.code() == Code::kPermissionDenied);
  CHECK(refused.message() == "request refused");
  REQUIRE(cluster.Stop().ok());
}

TEST_CASE("Audit log: verify passes an untouched log, a flipped byte or a truncation is found and named",
          "[server][integration][audit]") {
  TestNode node;
  node.Seed();
  for (int i = 0; i < 20; ++i) {
    REQUIRE(node.client->UpsertItem("db", "c", R"({"id":"i)" + std::to_string(i) + R"(","tenant":"t"})").ok());
  }
  (void)From(node, "127.0.0.9", false)->ReadDatabase("db");  // a refusal, audited
  auto first = Verify(*node.client);
  INFO(first.problem());
  CHECK(first.ok());
  CHECK(first.records() > 20);
  // Every write is there, with its principal, source, operation, resource and code.
  int upserts = 0;
  for (const auto& r : Audit(*node.client, "UpsertItem")) {
    upserts += r.principal() == "key:primary" && r.code() == "OK" && r.resource() == "dbs/db/colls/c" ? 1 : 0;
  }
  CHECK(upserts == 20);
  CHECK(Audited(*node.client, "ReadDatabase", "refused: bad_signature", "127.0.0.9"));
  auto cli = testing::RunCommand(Cli(node) + "audit verify");
  INFO(cli.output);
  CHECK(cli.exit_code == 0);
  CHECK(cli.output.find(": ok,") != std::string::npos);

  // Stop cleanly (the segment is sealed), flip one byte in the middle of it,
  // restart (a new segment starts), and verify.
  REQUIRE(node.cluster->Stop().ok());
  const fs::path audit_dir = fs::path(node.cluster->options().dir) / "node-1" / "data" / "audit";
  std::vector<fs::path> segments;
  for (const auto& e : fs::directory_iterator(audit_dir)) {
    if (e.path().extension() == ".audit") segments.push_back(e.path());
  }
  std::sort(segments.begin(), segments.end());
  REQUIRE(!segments.empty());
  const fs::path victim = segments.back();
  const auto size = fs::file_size(victim);
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(size / 2));
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x20);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.write(&byte, 1);
  }
  node.Start();
  auto edited = Verify(*node.client);
  CHECK(!edited.ok());
  INFO(edited.problem());
  CHECK(edited.problem().find("segment " + victim.stem().string()) != std::string::npos);
  auto failed_cli = testing::RunCommand(Cli(node) + "audit verify");
  CHECK(failed_cli.exit_code == 1);
  CHECK(failed_cli.output.find("FAILED") != std::string::npos);

  REQUIRE(node.cluster->Stop().ok());
}

TEST_CASE("Audit log: a truncated segment is found and named", "[server][integration][audit]") {
  TestNode node;
  node.Seed();
  for (int i = 0; i < 20; ++i) {
    REQUIRE(node.client->UpsertItem("db", "c", R"({"id":"i)" + std::to_string(i) + R"(","tenant":"t"})").ok());
  }
  REQUIRE(node.cluster->Stop().ok());  // sealed
  const fs::path victim = fs::path(node.cluster->options().dir) / "node-1" / "data" / "audit" / "00000001.audit";
  REQUIRE(fs::exists(victim));
  fs::resize_file(victim, fs::file_size(victim) - 40);  // the seal and then some
  node.Start();
  auto truncated = Verify(*node.client);
  CHECK(!truncated.ok());
  CHECK(truncated.problem().find(victim.stem().string()) != std::string::npos);
  REQUIRE(node.cluster->Stop().ok());
}

TEST_CASE("Audit log: a node killed with -9 recovers its log, and verify accepts it", "[server][integration][audit]") {
  TestNode node;
  node.Seed();
  for (int i = 0; i < 10; ++i) {
    REQUIRE(node.client->UpsertItem("db", "c", R"({"id":"k)" + std::to_string(i) + R"(","tenant":"t"})").ok());
  }
  REQUIRE(Verify(*node.client).ok());  // Flush: the records are on disk
  node.cluster->Kill();
  node.Start();
  const auto report = Verify(*node.client);
  INFO(report.problem());
  CHECK(report.ok());
  CHECK(report.unclean_stops() == 1);
  // A clean stop and start adds no unclean stop.
  REQUIRE(node.cluster->Stop().ok());
  node.Start();
  const auto again = Verify(*node.client);
  INFO(again.problem());
  CHECK(again.ok());
  CHECK(again.unclean_stops() == 1);
  REQUIRE(node.cluster->Stop().ok());
}
