#pragma once
// TestAccount and helpers for the integration tests of accounts of several
// regions (geo_test.cc, control_test.cc): regions of four real bulwarkd
// processes each, region R on 127.0.R.1-4.
#include <signal.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "chaos/local_account.h"
#include "client/client.h"
#include "tests/test_util.h"

namespace bulwark::testing {

using nlohmann::json;

inline constexpr auto kConverge = std::chrono::seconds(30);

struct TestAccount {
  TempDir dir;
  std::unique_ptr<chaos::LocalAccount> account;

  explicit TestAccount(int regions, const std::string& consistency, std::vector<std::string> extra_args = {},
                       std::chrono::milliseconds delay = std::chrono::milliseconds(0),
                       const std::function<void(chaos::AccountOptions&)>& adjust = {}) {
    chaos::AccountOptions o;
    o.dir = dir.sub("account");
    o.bin_dir = BULWARK_BIN_DIR;
    o.regions = regions;
    o.nodes = 4;
    o.metrics_port = 0;
    o.consistency = consistency;
    o.link_delay = delay;
    o.extra_args = std::move(extra_args);
    do {
      o.port = FreePort("127.0.1.1");
    } while (o.port == 0 || o.port > 65000);
    if (adjust) adjust(o);
    auto a = chaos::LocalAccount::Prepare(o);
    INFO(a.status().ToString());
    REQUIRE(a.ok());
    account = std::move(a).value();
    const Status s = account->Start();
    INFO(s.ToString());
    REQUIRE(s.ok());
  }
  ~TestAccount() {
    if (account) account->Kill();
  }
  // Writes go to r1; reads to region `r`.
  std::unique_ptr<client::Client> Client(int r) const {
    client::ClientOptions o = account->client_options(r);
    auto c = client::Client::Connect(o);
    REQUIRE(c.ok());
    return std::move(c).value();
  }
  // Client(1), after it created database "db" and container "c" (/tenant).
  std::unique_ptr<client::Client> ClientWithContainer() const {
    auto c = Client(1);
    REQUIRE(c->CreateDatabase("db").ok());
    REQUIRE(c->CreateContainer("db", "c", "/tenant").ok());
    return c;
  }
  // One node only, no topology: for status.
  std::unique_ptr<client::Client> NodeClient(int r, int i) const {
    client::ClientOptions o = account->region(r).node_client_options(i);
    o.max_retries = 0;
    o.deadline = std::chrono::seconds(3);
    auto c = client::Client::Connect(o);
    REQUIRE(c.ok());
    return std::move(c).value();
  }
  // The highest GLSN a running node of region r has applied.
  uint64_t Glsn(int r) const {
    uint64_t best = 0;
    for (int i = 1; i <= account->region(r).size(); ++i) {
      if (!account->region(r).node_running(i)) continue;
      auto s = NodeClient(r, i)->GetStatus();
      if (s.ok()) best = std::max(best, s->glsn);
    }
    return best;
  }
  // Waits until every running node of region r has applied `glsn`.
  bool WaitRegionAt(int r, uint64_t glsn) const {
    const auto until = std::chrono::steady_clock::now() + kConverge;
    while (std::chrono::steady_clock::now() < until) {
      bool all = true;
      for (int i = 1; i <= account->region(r).size() && all; ++i) {
        if (!account->region(r).node_running(i)) continue;
        auto s = NodeClient(r, i)->GetStatus();
        all = s.ok() && s->glsn >= glsn;
      }
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // Node i of region r's status once it reports `epoch` (each node puts a
  // new regions record in force within a poll of applying it), or its last
  // answer after 5 s.
  Result<client::NodeStatus> StatusAtEpoch(int r, int i, uint64_t epoch) const {
    Result<client::NodeStatus> status = Status::Unavailable("not asked");
    for (int attempt = 0; attempt < 50; ++attempt) {
      status = NodeClient(r, i)->GetStatus();
      if (status.ok() && status->epoch == epoch) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return status;
  }
  void Signal(int r, int sig) {
    for (int i = 1; i <= account->region(r).size(); ++i) {
      if (account->region(r).node_running(i)) ::kill(account->region(r).node_pid(i), sig);
    }
  }
  int Leader(int r) const {
    auto lead = account->region(r).WaitForLeader();
    INFO(lead.status().ToString());
    REQUIRE(lead.ok());
    return *lead;
  }
};

inline std::string Doc(const std::string& id, int v) { return json{{"id", id}, {"tenant", "t"}, {"v", v}}.dump(); }

inline int ValueOf(const std::string& item_json) { return json::parse(item_json).at("v").get<int>(); }

// Upserts item `id` with value `v` until acknowledged, retried under one
// request id (so across a leader change it applies once).
inline void UpsertAcked(client::Client& c, const std::string& container, const std::string& id, int v) {
  Result<client::Item> w = Status::Unavailable("not tried");
  for (int attempt = 0; attempt < 20 && !w.ok(); ++attempt) {
    w = c.UpsertItem("db", container, Doc(id, v), "req-" + container + id);
    if (!w.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  INFO(w.status().ToString());
  REQUIRE(w.ok());
}

// UpsertAcked for items prefix<from>..prefix<to-1> (value i), each added to *acked.
inline void UpsertAckedRange(client::Client& c, const std::string& container, const std::string& prefix, int from,
                             int to, std::set<std::string>* acked) {
  for (int i = from; i < to; ++i) {
    UpsertAcked(c, container, prefix + std::to_string(i), i);
    acked->insert(prefix + std::to_string(i));
  }
}

// Every item id of db/c; `error` (if given) receives a failure instead of the
// test failing (for reader threads, where REQUIRE cannot be used).
inline std::set<std::string> Ids(client::Client& c, std::optional<ConsistencyLevel> level, Status* error = nullptr) {
  std::set<std::string> out;
  client::ListOptions lo;
  lo.consistency = level;
  lo.max_items = 1000;
  for (;;) {
    auto page = c.ListItems("db", "c", lo);
    if (error != nullptr && !page.ok()) {
      *error = page.status();
      return {};
    }
    INFO(page.status().ToString());
    REQUIRE(page.ok());
    for (const auto& item : page->items) out.insert(json::parse(item).at("id").get<std::string>());
    if (page->continuation.empty()) break;
    lo.continuation = page->continuation;
  }
  return out;
}

}  // namespace bulwark::testing
