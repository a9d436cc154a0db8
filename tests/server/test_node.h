#pragma once
// One real bulwarkd node in a fresh directory, started, with a connected
// client: the fixture of the single-node integration tests.
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "chaos/local_cluster.h"
#include "client/client.h"
#include "crypto/secret.h"
#include "tests/test_util.h"

namespace bulwark::testing {

// 127.0.1.2-251, one per node (node tests run in parallel processes).
inline std::string NextIp() {
  static int n = 0;
  return "127.0.1." + std::to_string(2 + (getpid() * 7 + n++) % 250);
}

struct TestNode {
  TempDir dir;
  std::unique_ptr<chaos::LocalCluster> cluster;
  std::unique_ptr<client::Client> client;

  explicit TestNode(bool insecure = false, std::vector<std::string> extra_args = {}) {
    chaos::ClusterOptions o;
    o.dir = dir.sub("cluster");
    o.bin_dir = BULWARK_BIN_DIR;
    o.ip = NextIp();
    o.port = FreePort(o.ip);
    do {
      o.metrics_port = FreePort(o.ip);
    } while (o.metrics_port == o.port || o.metrics_port == o.port + 1);
    o.insecure = insecure;
    o.extra_args = std::move(extra_args);
    auto c = chaos::LocalCluster::Prepare(o);
    REQUIRE(c.ok());
    cluster = std::move(c).value();
    Start();
  }
  void Start() {
    const Status s = cluster->Start();
    INFO(s.ToString());
    REQUIRE(s.ok());
    auto c = client::Client::Connect(cluster->client_options());
    REQUIRE(c.ok());
    client = std::move(c).value();
  }
  // A database "db" with container "c" partitioned by /tenant.
  void Seed() {
    REQUIRE(client->CreateDatabase("db").ok());
    REQUIRE(client->CreateContainer("db", "c", "/tenant").ok());
  }
  size_t CountItems() {
    client::ListOptions options;
    options.max_items = 1000;
    size_t count = 0;
    for (int pages = 0; pages < 1000; ++pages) {  // bounded: a million items at most
      auto page = client->ListItems("db", "c", options);
      REQUIRE(page.ok());
      count += page->items.size();
      if (page->continuation.empty()) break;
      options.continuation = page->continuation;
    }
    return count;
  }
  // A client whose connections leave from `ip` (so firewall rules and
  // blocks apply to it), without retries; with good_key false it signs with
  // a key the account never had.
  std::unique_ptr<client::Client> ClientFrom(const std::string& ip, bool good_key = true) const {
    client::ClientOptions o = cluster->client_options();
    o.source_ip = ip;
    o.max_retries = 0;
    if (!good_key) o.key = crypto::Base64Encode(std::string(64, 'k'));
    auto c = client::Client::Connect(o);
    REQUIRE(c.ok());
    return std::move(c).value();
  }
  std::string Log() const {
    std::ifstream in(cluster->log_path());
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

}  // namespace bulwark::testing
