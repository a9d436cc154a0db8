// Integration tests: real bulwarkd processes, each on its own loopback address
// (127.0.1.X), real TLS with a generated CA, real RocksDB on disk, started and
// stopped by the test. They prove the client round trip, every kind of bad
// input the issue names (right status, nothing changed, server alive), crash
// durability (kill -9), graceful SIGTERM, and the CLI.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <regex>

#include "bulwark/v1/document.grpc.pb.h"
#include "chaos/local_cluster.h"
#include "client/client.h"
#include "client/profile.h"
#include "crypto/master_key.h"
#include "security/request_signing.h"
#include "storage/document_store.h"
#include "tests/server/run_command.h"
#include "tests/server/test_node.h"
#include "tests/test_util.h"

using namespace bulwark;
using bulwark::testing::CommandResult;
using bulwark::testing::FreePort;
using bulwark::testing::NextIp;
using bulwark::testing::RunCommand;
using bulwark::testing::TempDir;
using bulwark::testing::TestNode;
namespace v1 = bulwark::v1;
using nlohmann::json;

namespace {

std::string Doc(const std::string& id, const std::string& tenant, int v = 0) {
  return json{{"id", id}, {"tenant", tenant}, {"v", v}}.dump();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::shared_ptr<grpc::Channel> TlsChannel(const TestNode& node) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(node.cluster->client_options().ca_file);
  return grpc::CreateChannel(node.cluster->endpoint(), grpc::SslCredentials(ssl));
}

// One unary call through gRPC's generic stub: raw request bytes in, raw
// response bytes out, for calls the generated stubs cannot make.
grpc::Status GenericCall(const TestNode& node, const std::string& method, const std::string& request_bytes,
                         std::string* response_bytes) {
  grpc::GenericStub generic(TlsChannel(node));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  generic.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    std::lock_guard lock(mu);
    result = s;
    done = true;
    cv.notify_one();
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
  if (result.ok() && response_bytes != nullptr) {
    std::vector<grpc::Slice> slices;
    (void)response.Dump(&slices);
    for (const auto& s : slices) response_bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return result;
}

}  // namespace

TEST_CASE("Client library round trip over TLS", "[server][integration]") {
  TestNode node;
  auto& c = *node.client;
  node.Seed();
  CHECK(c.ListDatabases()->size() == 1);
  CHECK(c.ReadContainer("db", "c")->partition_key_path == "/tenant");
  CHECK(c.ListContainers("db")->size() == 1);

  auto created = c.CreateItem("db", "c", Doc("o1", "acme", 1));
  REQUIRE(created.ok());
  const std::string token1 = c.SessionToken("db", "c");
  CHECK(token1.rfind("0:1#", 0) == 0);
  CHECK(c.CreateItem("db", "c", Doc("o1", "acme", 2)).status().code() == Code::kAlreadyExists);
  auto read = c.ReadItem("db", "c", "\"acme\"", "o1");
  REQUIRE(read.ok());
  CHECK(json::parse(read->json)["v"] == 1);
  CHECK(read->etag == created->etag);

  auto up = c.UpsertItem("db", "c", Doc("o1", "acme", 3));
  REQUIRE(up.ok());
  CHECK(c.SessionToken("db", "c") != token1);  // the session moved forward
  CHECK(c.ReplaceItem("db", "c", "o1", Doc("o1", "acme", 4), created->etag).status().code() ==
        Code::kPreconditionFailed);
  REQUIRE(c.ReplaceItem("db", "c", "o1", Doc("o1", "acme", 5), up->etag).ok());
  client::ReadOptions eventual;
  eventual.consistency = ConsistencyLevel::kEventual;
  CHECK(json::parse(c.ReadItem("db", "c", "\"acme\"", "o1", eventual)->json)["v"] == 5);
  client::ReadOptions strong;
  strong.consistency = ConsistencyLevel::kStrong;  // stronger than the default Session
  CHECK(c.ReadItem("db", "c", "\"acme\"", "o1", strong).status().code() == Code::kInvalidArgument);

  for (int i = 0; i < 12; ++i) REQUIRE(c.UpsertItem("db", "c", Doc("p" + std::to_string(i), "beta")).ok());
  client::ListOptions page_opts;
  page_opts.partition_key_json = "\"beta\"";
  page_opts.max_items = 5;
  size_t seen = 0;
  int pages = 0;
  do {
    auto page = c.ListItems("db", "c", page_opts);
    REQUIRE(page.ok());
    seen += page->items.size();
    page_opts.continuation = page->continuation;
    ++pages;
  } while (!page_opts.continuation.empty() && pages < 10);
  CHECK(seen == 12);
  CHECK(pages == 3);

  REQUIRE(c.DeleteItem("db", "c", "\"acme\"", "o1").ok());
  CHECK(c.ReadItem("db", "c", "\"acme\"", "o1").status().code() == Code::kNotFound);
  auto status = c.GetStatus();
  REQUIRE(status.ok());
  CHECK(status->tls);
  CHECK(status->last_lsn > 10);
  REQUIRE(c.DeleteContainer("db", "c").ok());
  REQUIRE(c.DeleteDatabase("db").ok());
  CHECK(c.ListDatabases()->empty());
}

TEST_CASE("Bad input gets the right status, changes nothing, and never crashes the node",
          "[server][integration][bad-input]") {
  TestNode node;
  node.Seed();
  auto& c = *node.client;
  REQUIRE(c.UpsertItem("db", "c", Doc("keep", "t", 1)).ok());
  const uint64_t lsn = c.GetStatus()->last_lsn;

  CHECK(c.UpsertItem("db", "c", "{not json").status().code() == Code::kInvalidArgument);
  CHECK(c.UpsertItem("db", "c", R"({"tenant":"t"})").status().code() == Code::kInvalidArgument);
  const std::string three_mib = json{{"id", "big"}, {"tenant", "t"}, {"v", std::string(3 << 20, 'x')}}.dump();
  CHECK(c.UpsertItem("db", "c", three_mib).status().code() == Code::kTooLarge);
  const std::string five_mib = json{{"id", "huge"}, {"tenant", "t"}, {"v", std::string(5 << 20, 'x')}}.dump();
  CHECK(c.UpsertItem("db", "c", five_mib).status().code() == Code::kResourceExhausted);
  CHECK(c.UpsertItem("nodb", "c", Doc("x", "t")).status().code() == Code::kNotFound);
  CHECK(c.UpsertItem("db", "nocontainer", Doc("x", "t")).status().code() == Code::kNotFound);

  SECTION("wrong key") {
    auto options = node.cluster->client_options();
    options.key = crypto::Base64Encode(crypto::RandomBytes(64));
    auto wrong = client::Client::Connect(options);
    REQUIRE(wrong.ok());
    CHECK((*wrong)->UpsertItem("db", "c", Doc("x", "t")).status().code() == Code::kUnauthenticated);
    CHECK((*wrong)->ReadItem("db", "c", "\"t\"", "keep").status().code() == Code::kUnauthenticated);
  }
  SECTION("missing signature, stale date, signature for another resource") {
    auto stub = v1::DocumentService::NewStub(TlsChannel(node));
    v1::ReadItemRequest req;
    req.set_database("db");
    req.set_container("c");
    req.set_partition_key_json("\"t\"");
    req.set_id("keep");
    v1::ItemResponse resp;
    {
      grpc::ClientContext ctx;
      CHECK(stub->ReadItem(&ctx, req, &resp).error_code() == grpc::StatusCode::UNAUTHENTICATED);
    }
    const std::string key_b64 = node.cluster->client_options().key;
    const auto key = crypto::Base64DecodeSecret(key_b64).value();
    {
      grpc::ClientContext ctx;
      const std::string stale = security::FormatHttpDate(std::chrono::system_clock::now() - std::chrono::minutes(20));
      ctx.AddMetadata("x-ms-date", stale);
      ctx.AddMetadata("authorization",
                      security::SignWithMasterKey(key, security::ItemRef("get", "db", "c", "keep"), stale));
      const grpc::Status s = stub->ReadItem(&ctx, req, &resp);
      CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
      CHECK(s.error_message().find("15 minutes") != std::string::npos);
    }
    {
      grpc::ClientContext ctx;  // a valid signature, but for another item
      const std::string now = security::FormatHttpDate(std::chrono::system_clock::now());
      ctx.AddMetadata("x-ms-date", now);
      ctx.AddMetadata("authorization",
                      security::SignWithMasterKey(key, security::ItemRef("get", "db", "c", "other"), now));
      CHECK(stub->ReadItem(&ctx, req, &resp).error_code() == grpc::StatusCode::UNAUTHENTICATED);
    }
  }
  SECTION("a malformed request message") {
    CHECK_FALSE(
        GenericCall(node, "/bulwark.v1.DocumentService/UpsertItem", "\xff\xff\xff\xff\x0f not a protobuf", nullptr)
            .ok());
  }
  SECTION("garbage bytes sent to the port, not even TLS") {
    const auto colon = node.cluster->endpoint().rfind(':');
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(node.cluster->endpoint().substr(colon + 1))));
    ::inet_pton(AF_INET, node.cluster->endpoint().substr(0, colon).c_str(), &addr.sin_addr);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    const std::string junk = crypto::RandomBytes(64 * 1024);
    (void)::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    char buf[256];
    (void)::recv(fd, buf, sizeof(buf), 0);
    ::close(fd);
  }

  // Whatever was sent, the node still serves and nothing changed.
  auto status = c.GetStatus();
  REQUIRE(status.ok());
  CHECK(status->last_lsn == lsn);
  CHECK(node.CountItems() == 1);
  CHECK(json::parse(c.ReadItem("db", "c", "\"t\"", "keep")->json)["v"] == 1);
  CHECK(node.cluster->running());
}

TEST_CASE("kill -9 and restart: every acknowledged write is intact", "[server][integration][durability]") {
  TestNode node;
  node.Seed();
  std::map<std::string, int> acked;
  for (int i = 0; i < 200; ++i) {
    const std::string id = "k" + std::to_string(i % 150);
    if (node.client->UpsertItem("db", "c", Doc(id, "t", i)).ok()) acked[id] = i;
  }
  REQUIRE(acked.size() == 150);
  node.cluster->Kill();
  node.Start();
  CHECK(node.CountItems() == 150);
  for (const auto& [id, v] : acked) {
    auto r = node.client->ReadItem("db", "c", "\"t\"", id);
    REQUIRE(r.ok());
    CHECK(json::parse(r->json)["v"] == v);
  }
}

TEST_CASE("Canary scan of a real node killed with -9: nothing in the clear on disk", "[server][integration][page]") {
  TestNode node;
  const std::string canaries[] = {"dbCANARYq1", "collCANARYq2", "idCANARYq3", "pkCANARYq4", "bodyCANARYq5"};
  REQUIRE(node.client->CreateDatabase(canaries[0]).ok());
  REQUIRE(node.client->CreateContainer(canaries[0], canaries[1], "/tenant").ok());
  for (int i = 0; i < 50; ++i) {
    const json doc = {{"id", canaries[2] + std::to_string(i)}, {"tenant", canaries[3]}, {"v", canaries[4]}};
    REQUIRE(node.client->UpsertItem(canaries[0], canaries[1], doc.dump()).ok());
  }
  node.cluster->Kill();  // unclean: the WAL holds the writes, nothing was flushed
  const std::filesystem::path data = std::filesystem::path(node.cluster->options().dir) / "node-1" / "data";
  size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(data)) {
    if (!entry.is_regular_file()) continue;
    ++files;
    const std::string bytes = ReadFile(entry.path().string());
    for (const auto& c : canaries) {
      INFO(entry.path() << " holds " << c);
      CHECK(bytes.find(c) == std::string::npos);
    }
  }
  CHECK(files >= 4);  // CURRENT, MANIFEST, WAL, OPTIONS at least
  node.Start();
  CHECK(node.client->ReadItem(canaries[0], canaries[1], "\"" + canaries[3] + "\"", canaries[2] + "49").ok());
}

TEST_CASE("SIGTERM: in-flight requests finish, the node exits 0, nothing acknowledged is lost",
          "[server][integration][durability]") {
  TestNode node;
  node.Seed();
  constexpr int kWriters = 8;
  std::atomic<bool> stop{false};
  std::vector<std::vector<std::string>> acked(kWriters);
  std::vector<std::vector<Status>> failures(kWriters);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto c = client::Client::Connect(node.cluster->client_options());
      for (int i = 0; !stop && i < 100'000; ++i) {
        const std::string id = "w" + std::to_string(w) + "-" + std::to_string(i);
        auto r = (*c)->CreateItem("db", "c", Doc(id, "t", i));
        if (r.ok()) {
          acked[w].push_back(id);
        } else {
          failures[w].push_back(r.status());
          break;  // the node is going away
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto code = node.cluster->Stop();
  stop = true;
  for (auto& t : writers) t.join();
  REQUIRE(code.ok());
  CHECK(*code == 0);
  size_t total = 0;
  for (int w = 0; w < kWriters; ++w) {
    total += acked[w].size();
    // A request either completed, or was refused because the node was stopping.
    for (const Status& f : failures[w]) {
      INFO("failure: " << f.ToString());
      CHECK((f.code() == Code::kUnavailable || f.code() == Code::kDeadlineExceeded));
    }
  }
  REQUIRE(total > 0);
  CHECK(node.Log().find("event=stopped") != std::string::npos);
  node.Start();
  CHECK(node.CountItems() >= std::min<size_t>(total, 1000));
  for (int w = 0; w < kWriters; ++w) {
    for (const auto& id : acked[w]) {
      auto r = node.client->ReadItem("db", "c", "\"t\"", id);
      INFO(id);
      CHECK(r.ok());
    }
  }
}

TEST_CASE("Plaintext only with --insecure, and it warns", "[server][integration][tls]") {
  TestNode node(/*insecure=*/true);
  node.Seed();
  REQUIRE(node.client->UpsertItem("db", "c", Doc("a", "t")).ok());
  CHECK_FALSE(node.client->GetStatus()->tls);
  const std::string log = node.Log();
  CHECK(log.find("event=insecure") != std::string::npos);
  CHECK(log.find("event=plaintext_connection") != std::string::npos);
  // A TLS client cannot talk to it.
  auto options = node.cluster->client_options();
  options.insecure = false;
  options.deadline = std::chrono::seconds(2);
  auto tls = client::Client::Connect(options);
  REQUIRE(tls.ok());
  CHECK_FALSE((*tls)->GetStatus().ok());
}

TEST_CASE("bulwarkd refuses to start without TLS, or with a bad config key", "[server][integration][config]") {
  TempDir dir;
  const std::string bin = std::string(BULWARK_BIN_DIR) + "/bulwarkd";
  auto no_tls = RunCommand(bin + " --data-dir " + dir.sub("d") + " --master-key-uri env:NOPE --metrics-listen ''");
  CHECK(no_tls.exit_code == 2);
  CHECK(no_tls.output.find("tls.cert_file") != std::string::npos);
  std::ofstream(dir.sub("bad.yaml")) << "listen: 127.0.0.1:1\nmax_message_size: 10\n";
  auto bad_key = RunCommand(bin + " --config " + dir.sub("bad.yaml"));
  CHECK(bad_key.exit_code == 2);
  CHECK(bad_key.output.find("max_message_size") != std::string::npos);
  auto no_key = RunCommand(bin + " --insecure --data-dir " + dir.sub("d") +
                           " --master-key-uri file:" + dir.sub("missing.key") + " --metrics-listen ''");
  CHECK(no_key.exit_code == 1);
  CHECK(no_key.output.find("missing.key") != std::string::npos);
}

TEST_CASE("The standard grpc.health.v1 service answers SERVING", "[server][integration][health]") {
  TestNode node;
  std::string response;
  // HealthCheckRequest{service: ""} encodes to zero bytes.
  const grpc::Status s = GenericCall(node, "/grpc.health.v1.Health/Check", "", &response);
  REQUIRE(s.ok());
  CHECK(response == std::string("\x08\x01", 2));  // HealthCheckResponse{status: SERVING}
}

TEST_CASE("Metrics and health over HTTP", "[server][integration][metrics]") {
  TestNode node;
  node.Seed();
  REQUIRE(node.client->UpsertItem("db", "c", Doc("a", "t")).ok());
  (void)node.client->ReadItem("db", "c", "\"t\"", "missing");
  const auto colon = node.cluster->metrics_endpoint().rfind(':');
  httplib::Client http(node.cluster->metrics_endpoint().substr(0, colon),
                       std::stoi(node.cluster->metrics_endpoint().substr(colon + 1)));
  auto health = http.Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  auto metrics = http.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("bulwark_requests_total{operation=\"UpsertItem\",code=\"OK\"} 1") != std::string::npos);
  CHECK(metrics->body.find(
            "bulwark_requests_total{operation=\"ReadItem\",code=\"NotFound\",consistency=\"default\"} 1") !=
        std::string::npos);
  CHECK(metrics->body.find("bulwark_request_duration_seconds_count{operation=\"UpsertItem\"} 1") != std::string::npos);
  CHECK(metrics->body.find("bulwark_change_log_lsn") != std::string::npos);

  // Every metric the shipped alert rules use is exported (after one refusal,
  // so the refusal counter exists).
  auto bad_key = node.cluster->client_options();
  bad_key.key = crypto::Base64Encode(std::string(64, 'x'));
  bad_key.max_retries = 0;
  CHECK(client::Client::Connect(bad_key).value()->ReadDatabase("db").status().code() == Code::kUnauthenticated);
  const std::string body = http.Get("/metrics")->body;
  const std::string rules = ReadFile(std::string(BULWARK_SOURCE_DIR) + "/deploy/prometheus/bulwark-rules.yml");
  REQUIRE(!rules.empty());
  const std::regex metric_name("bulwark_[a-z_]+");
  int checked = 0;
  for (auto it = std::sregex_iterator(rules.begin(), rules.end(), metric_name); it != std::sregex_iterator(); ++it) {
    const std::string name = it->str();
    if (name.rfind("bulwark-", 0) == 0) continue;
    INFO(name);
    CHECK(body.find("# TYPE " + name + " ") != std::string::npos);
    ++checked;
  }
  CHECK(checked >= 15);
}

TEST_CASE("CLI round trip against a real node", "[server][integration][cli]") {
  TestNode node;
  const std::string profile = node.dir.sub("profile");
  std::filesystem::create_directories(profile);
  REQUIRE(client::WriteProfile(profile, node.cluster->client_options()).ok());
  const std::string cli = std::string(BULWARK_BIN_DIR) + "/bulwark --profile-dir " + profile + " ";

  CHECK(RunCommand(cli + "db create shop").exit_code == 0);
  CHECK(RunCommand(cli + "container create shop orders --partition-key /tenant").exit_code == 0);
  auto put = RunCommand(cli + "item put shop orders --json '{\"id\":\"o1\",\"tenant\":\"acme\",\"total\":42}'");
  REQUIRE(put.exit_code == 0);
  CHECK(json::parse(put.output)["total"] == 42);
  auto from_stdin = RunCommand("echo '{\"id\":\"o2\",\"tenant\":\"acme\",\"total\":7}' | " + cli +
                               "item create shop orders --json -");
  CHECK(from_stdin.exit_code == 0);
  auto get = RunCommand(cli + "item get shop orders o1 --pk acme --consistency Eventual");
  REQUIRE(get.exit_code == 0);
  CHECK(json::parse(get.output)["id"] == "o1");
  auto table = RunCommand(cli + "item list shop orders --pk acme");
  CHECK(table.exit_code == 0);
  CHECK(table.output.find("ID") == 0);
  CHECK(table.output.find("o2") != std::string::npos);
  auto as_json = RunCommand(cli + "item list shop orders --json");
  REQUIRE(as_json.exit_code == 0);
  CHECK(json::parse(as_json.output)["items"].size() == 2);
  CHECK(
      RunCommand(cli + "item replace shop orders --json '{\"id\":\"o1\",\"tenant\":\"acme\",\"total\":1}'").exit_code ==
      0);
  CHECK(RunCommand(cli + "item delete shop orders o2 --pk acme").exit_code == 0);
  CHECK(RunCommand(cli + "db list").output.find("shop") != std::string::npos);
  CHECK(RunCommand(cli + "container list shop --json").exit_code == 0);
  CHECK(RunCommand(cli + "status").output.find("TLS on") != std::string::npos);

  auto missing = RunCommand(cli + "item get shop orders nope --pk acme");
  CHECK(missing.exit_code == 1);
  CHECK(missing.output.find("NotFound") != std::string::npos);
  auto bad_json = RunCommand(cli + "item put shop orders --json '{oops'");
  CHECK(bad_json.exit_code == 1);
  CHECK(bad_json.output.find("InvalidArgument") != std::string::npos);
  auto usage = RunCommand(cli + "item get shop orders");
  CHECK(usage.exit_code == 2);
  auto wrong_key = RunCommand(cli + "--key " + crypto::Base64Encode(crypto::RandomBytes(64)) + " db list");
  CHECK(wrong_key.exit_code == 1);
  CHECK(wrong_key.output.find("hint") != std::string::npos);
  auto nowhere =
      RunCommand(std::string(BULWARK_BIN_DIR) + "/bulwark --profile-dir " + node.dir.sub("none") + " db list");
  CHECK(nowhere.exit_code == 2);
  CHECK(nowhere.output.find("cluster up") != std::string::npos);
}

TEST_CASE("Key rotation over the API: all three key kinds under load, then restart with the new master key",
          "[server][integration][keys]") {
  TestNode node;
  node.Seed();
  for (int i = 0; i < 100; ++i) REQUIRE(node.client->UpsertItem("db", "c", Doc("k" + std::to_string(i), "t", i)).ok());
  auto before = node.client->GetKeyStatus();
  REQUIRE(before.ok());
  REQUIRE(before->store_keys.size() == 1);

  // Writes keep going while the store key rotates and old files are rewritten.
  std::atomic<bool> stop{false};
  std::atomic<int> acked{0}, failed{0};
  std::thread writer([&] {
    auto c = client::Client::Connect(node.cluster->client_options());
    for (int i = 0; !stop; ++i) {
      if ((*c)->UpsertItem("db", "c", Doc("w" + std::to_string(i), "t", i)).ok()) {
        ++acked;
      } else {
        ++failed;
      }
    }
  });
  // Stops and joins the writer on every way out, a failed REQUIRE included.
  struct StopAndJoin {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~StopAndJoin() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } guard{stop, writer};
  auto dek = node.client->RotateDataKey("db", "c");
  REQUIRE(dek.ok());
  CHECK(*dek == 2);
  CHECK(node.client->RotateDataKey("db", "missing").status().code() == Code::kNotFound);
  auto v2 = node.client->RotateStoreKey();
  REQUIRE(v2.ok());
  CHECK(*v2 == 2);
  client::KeyStatus status;
  for (int i = 0; i < 200; ++i) {  // bounded wait for the background rewrite
    auto s = node.client->GetKeyStatus();
    REQUIRE(s.ok());
    status = *s;
    if (!status.rewrite_running) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK_FALSE(status.rewrite_running);
  CHECK(status.last_rewrite_error.empty());
  bool v2_current = false;
  for (const auto& u : status.store_keys) v2_current |= (u.version == 2 && u.current && u.files > 0);
  CHECK(v2_current);
  // Once the rewrite is done, v1 is destroyed: every file is under v2.
  INFO(status.last_rewrite_error);
  CHECK(status.store_keys.size() == 1);

  // The container's items written under DEK v1 are re-sealed in the
  // background: KeyStatus counts none left under v1 (bounded wait).
  uint64_t under_v1 = 0;
  uint32_t current_dek = 0;
  for (int i = 0; i < 600; ++i) {
    auto s = node.client->GetKeyStatus();
    REQUIRE(s.ok());
    bool pending = false;
    under_v1 = 0;
    for (const auto& c : s->containers) {
      if (c.database != "db" || c.container != "c") continue;
      pending = c.reseal_pending;
      current_dek = c.current_version;
      for (const auto& v : c.versions) {
        if (v.version == 1) under_v1 = v.items + v.change_log_records;
      }
    }
    if (!pending && under_v1 == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(current_dek == 2);
  CHECK(under_v1 == 0);
  for (int i = 0; i < 100; i += 9) {
    auto item = node.client->ReadItem("db", "c", "\"t\"", "k" + std::to_string(i));
    REQUIRE(item.ok());
    CHECK(json::parse(item->json)["v"] == i);
  }

  // Master key: the node loads the new key from a URI, re-wraps, and after a
  // restart opens with only the new key.
  const std::string new_key = node.dir.sub("new-master.key");
  {
    const mode_t old_mask = ::umask(077);
    std::ofstream(new_key) << crypto::Base64Encode(crypto::RandomBytes(32)) << "\n";
    ::umask(old_mask);
  }
  auto id = node.client->RotateMasterKey("file:" + new_key);
  REQUIRE(id.ok());
  CHECK(id->size() == 16);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // writes under the new master key too
  stop = true;
  writer.join();
  CHECK(failed == 0);
  REQUIRE(acked > 0);
  CHECK(node.client->RotateMasterKey("file:" + node.dir.sub("absent.key")).status().code() == Code::kNotFound);
  REQUIRE(node.cluster->Stop().ok());
  const Status with_old_key = node.cluster->Start();
  CHECK_FALSE(with_old_key.ok());
  CHECK(with_old_key.message().find("wrong master key") != std::string::npos);
  node.cluster->set_master_key_uri("file:" + new_key);
  node.Start();
  CHECK(node.client->GetKeyStatus()->master_key_id == *id);
  for (int i = 0; i < 100; ++i) {
    auto r = node.client->ReadItem("db", "c", "\"t\"", "k" + std::to_string(i));
    REQUIRE(r.ok());
    CHECK(json::parse(r->json)["v"] == i);
  }
  CHECK(node.CountItems() == static_cast<size_t>(100 + acked));
}

TEST_CASE("An unfinished store-key rotation resumes when the node starts", "[server][integration][keys]") {
  TestNode node;
  node.Seed();
  for (int i = 0; i < 50; ++i) {
    const json doc = {{"id", "r" + std::to_string(i)}, {"tenant", "t"}};
    REQUIRE(node.client->UpsertItem("db", "c", doc.dump()).ok());
  }
  REQUIRE(node.cluster->Stop().ok());
  // As if the node had stopped right after the rotation, before the rewrite:
  // a second store-key version, every file still under the first.
  {
    auto master = crypto::LoadMasterKey("file:" + node.cluster->options().dir + "/master.key");
    REQUIRE(master.ok());
    storage::StoreOptions options;
    options.path = node.cluster->options().dir + "/node-1/data/store";
    auto store = storage::DocumentStore::Open(options, std::move(master).value());
    INFO(store.status().ToString());
    REQUIRE(store.ok());
    REQUIRE((*store)->RotateStoreKey().ok());
    CHECK((*store)->store_key_versions_held() == 2);
  }
  node.Start();
  bool done = false;
  std::string error;
  size_t versions = 0;
  for (int i = 0; i < 400 && !done; ++i) {  // bounded wait for the resumed rewrite
    auto s = node.client->GetKeyStatus();
    REQUIRE(s.ok());
    error = s->last_rewrite_error;
    versions = s->store_keys.size();
    done = !s->rewrite_running && s->store_keys.size() == 1 && s->store_keys.front().version == 2;
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  INFO("versions " << versions << " last error: " << error);
  CHECK(done);
  CHECK(ReadFile(node.cluster->log_path()).find("event=store_key_rewrite_resumed") != std::string::npos);
  for (int i : {0, 49}) CHECK(node.client->ReadItem("db", "c", "\"t\"", "r" + std::to_string(i)).ok());
}

TEST_CASE("IP firewall: outside the allowlist is refused before authentication, changes apply without a restart",
          "[server][integration][firewall]") {
  TestNode node;
  node.Seed();
  auto from = [&](const std::string& ip, bool good_key = true) { return node.ClientFrom(ip, good_key); };
  auto a = from("127.0.0.8");
  auto b = from("127.0.0.9");
  // Open by default, and status says so loudly.
  CHECK(a->ReadDatabase("db").ok());
  CHECK(b->ReadDatabase("db").ok());
  auto status = a->GetStatus();
  REQUIRE(status.ok());
  CHECK(status->firewall_ranges == 0);

  auto list = a->FirewallAllow("127.0.0.8");
  INFO(list.status().ToString());
  REQUIRE(list.ok());
  CHECK(*list == std::vector<std::string>{"127.0.0.8/32"});
  CHECK(a->ReadDatabase("db").ok());
  auto refused = b->ReadDatabase("db");
  CHECK(refused.status().code() == Code::kPermissionDenied);
  CHECK(refused.status().message().find("127.0.0") == std::string::npos);  // no detail
  // Refused before authentication: a bad key from outside gets the same
  // answer, not UNAUTHENTICATED.
  CHECK(from("127.0.0.9", /*good_key=*/false)->ReadDatabase("db").status().code() == Code::kPermissionDenied);
  CHECK(from("127.0.0.8", /*good_key=*/false)->ReadDatabase("db").status().code() == Code::kUnauthenticated);
  CHECK(b->UpsertItem("db", "c", R"({"id":"x","tenant":"t"})").status().code() == Code::kPermissionDenied);
  {  // Refusals are counted in /metrics (three so far).
    const auto colon = node.cluster->metrics_endpoint().rfind(':');
    httplib::Client http(node.cluster->metrics_endpoint().substr(0, colon),
                         std::stoi(node.cluster->metrics_endpoint().substr(colon + 1)));
    auto metrics = http.Get("/metrics");
    REQUIRE(metrics);
    CHECK(metrics->body.find("bulwark_firewall_refused_total 3") != std::string::npos);
  }

  // Bad ranges are refused with a clear error and change nothing.
  CHECK(a->FirewallAllow("10.0.0.1/8").status().code() == Code::kInvalidArgument);
  CHECK(a->FirewallAllow("not-an-address").status().code() == Code::kInvalidArgument);
  CHECK(a->FirewallAllow("127.0.0.8/32").status().code() == Code::kAlreadyExists);
  CHECK(a->FirewallDeny("127.0.0.77").status().code() == Code::kNotFound);

  REQUIRE(a->FirewallAllow("127.0.0.9/32").ok());
  CHECK(b->ReadDatabase("db").ok());  // no restart
  REQUIRE(a->FirewallDeny("127.0.0.8").ok());
  CHECK(a->ReadDatabase("db").status().code() == Code::kPermissionDenied);
  auto left = b->FirewallList();
  REQUIRE(left.ok());
  CHECK(*left == std::vector<std::string>{"127.0.0.9/32"});

  // The list survives a restart. (The launcher's readiness probe comes from
  // 127.0.0.1: let it in, as an operator allows their own machine.)
  REQUIRE(b->FirewallAllow("127.0.0.1").ok());
  REQUIRE(node.cluster->Stop().ok());
  node.Start();
  auto b2 = from("127.0.0.9");
  CHECK(b2->ReadDatabase("db").ok());
  CHECK(from("127.0.0.8")->ReadDatabase("db").status().code() == Code::kPermissionDenied);
  REQUIRE(b2->FirewallDeny("127.0.0.9/32").ok());
  REQUIRE(b2->FirewallDeny("127.0.0.1").status().code() == Code::kPermissionDenied);  // 127.0.0.9 is out now
  REQUIRE(from("127.0.0.1")->FirewallDeny("127.0.0.1").ok());                         // empty again: open
  CHECK(from("127.0.0.8")->ReadDatabase("db").ok());
}

TEST_CASE("bulwarkd --benchmark-unencrypted stores plaintext, and says so loudly", "[server][integration]") {
  // The encryption-cost baseline of the benchmarks: proof that the switch
  // really turns sealing and file encryption off (so the baseline measures
  // what it claims), and that it is logged at the highest level.
  constexpr const char* kCanary = "CANARY-benchmark-plaintext-93be";
  bulwark::testing::TestNode node(false, {"--benchmark-unencrypted"});
  node.Seed();
  REQUIRE(node.client->UpsertItem("db", "c", json{{"id", "x"}, {"tenant", "t"}, {"note", kCanary}}.dump()).ok());
  node.client.reset();
  REQUIRE(node.cluster->Stop().ok());  // flushes the WAL
  bool found = false;
  namespace fs = std::filesystem;
  const fs::path store = fs::path(node.cluster->options().dir) / "node-1" / "data" / "store";
  for (const auto& entry : fs::recursive_directory_iterator(store)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    found = found || ss.str().find(kCanary) != std::string::npos;
  }
  CHECK(found);
  CHECK(node.Log().find("level=critical event=benchmark_unencrypted") != std::string::npos);
}
