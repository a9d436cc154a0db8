// The fault-injecting proxy over loopback, in front of an echo server: bytes
// pass unchanged; delay, loss, stall and throttle hold bytes back; a
// blackhole holds them until lifted; Cut() closes connections and refuses new
// ones until Restore(); faults change while a connection runs.
//
// Timing: the only time assertions are lower bounds (a delay of D cannot
// deliver in less than D), which a slow machine cannot break.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

#include <catch2/catch.hpp>

#include "chaos/fault_proxy.h"

using namespace bulwark;
using namespace bulwark::chaos;
using Clock = std::chrono::steady_clock;

namespace {

// Reads a whole reply: bounded by this, so a broken proxy fails the test
// instead of hanging it.
constexpr auto kIoTimeout = std::chrono::seconds(20);

// Echoes every connection back, until destroyed.
class EchoServer {
 public:
  EchoServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
    for (auto& t : workers_) t.join();
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) != 1) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      workers_.emplace_back([this, c] {
        char buf[4096];
        while (!stop_) {
          pollfd q{c, POLLIN, 0};
          if (::poll(&q, 1, 20) != 1) continue;
          const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
          if (n <= 0) break;
          if (::send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
        }
        ::close(c);
      });
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> workers_;
};

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  return fd;
}

// Receives exactly `n` bytes, or what came before the peer closed or
// `timeout` passed.
std::string Receive(int fd, size_t n, std::chrono::milliseconds timeout = kIoTimeout) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  char buf[8192];
  while (out.size() < n && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10) != 1) continue;
    const ssize_t r = ::recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Sends `data` from a thread (the echo comes back while we send) and
// returns what was echoed.
std::string RoundTrip(int fd, const std::string& data) {
  std::thread sender([&] { ::send(fd, data.data(), data.size(), MSG_NOSIGNAL); });
  std::string back = Receive(fd, data.size());
  sender.join();
  return back;
}

struct Fixture {
  EchoServer echo;
  std::unique_ptr<FaultProxy> proxy;
  Fixture() {
    FaultProxy::Options o;
    o.target_host = "127.0.0.1";
    o.target_port = echo.port();
    auto p = FaultProxy::Start(o);
    INFO(p.status().ToString());
    REQUIRE(p.ok());
    proxy = std::move(p).value();
  }
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

TEST_CASE("Proxy: a megabyte passes both ways unchanged") {
  Fixture f;
  const int fd = Connect(f.proxy->port());
  const std::string data = RandomBytes(1 << 20, 1);
  CHECK(RoundTrip(fd, data) == data);
  ::close(fd);
  const auto stats = f.proxy->stats();
  CHECK(stats.connections == 1);
  CHECK(stats.bytes[0] == data.size());
  CHECK(stats.bytes[1] == data.size());
}

TEST_CASE("Proxy: delay, loss and stall hold bytes back at least as long as configured") {
  Fixture f;
  const int fd = Connect(f.proxy->port());
  LinkFaults slow;
  slow.delay = std::chrono::milliseconds(150);
  slow.jitter = std::chrono::milliseconds(20);
  f.proxy->SetFaults(FaultProxy::Direction::kToTarget, slow);
  auto start = Clock::now();
  CHECK(RoundTrip(fd, "ping") == "ping");
  CHECK(Seconds(Clock::now() - start) >= 0.150);

  LinkFaults lossy;
  lossy.loss_probability = 1.0;
  lossy.loss_penalty = std::chrono::milliseconds(100);
  f.proxy->SetFaults(lossy);  // both directions: two penalties per round trip
  start = Clock::now();
  CHECK(RoundTrip(fd, "lost") == "lost");
  CHECK(Seconds(Clock::now() - start) >= 0.200);
  CHECK(f.proxy->stats().chunks_lost[0] >= 1);
  CHECK(f.proxy->stats().chunks_lost[1] >= 1);

  LinkFaults stalls;
  stalls.stall_probability = 1.0;
  stalls.stall = std::chrono::milliseconds(120);
  f.proxy->SetFaults(FaultProxy::Direction::kToClient, stalls);
  f.proxy->SetFaults(FaultProxy::Direction::kToTarget, LinkFaults{});
  start = Clock::now();
  CHECK(RoundTrip(fd, "stall") == "stall");
  CHECK(Seconds(Clock::now() - start) >= 0.120);
  CHECK(f.proxy->stats().stalls[1] >= 1);
  ::close(fd);
}

TEST_CASE("Proxy: a bandwidth limit throttles a transfer to about that rate") {
  Fixture f;
  const int fd = Connect(f.proxy->port());
  LinkFaults narrow;
  narrow.bandwidth_bytes_per_s = 512 << 10;
  f.proxy->SetFaults(FaultProxy::Direction::kToClient, narrow);
  const std::string data = RandomBytes(256 << 10, 2);
  const auto start = Clock::now();
  CHECK(RoundTrip(fd, data) == data);
  // 256 KiB at 512 KiB/s is 0.5 s; the bucket's burst (a tenth of a second's
  // worth) may pass at once.
  CHECK(Seconds(Clock::now() - start) >= 0.5 - 0.1);
  ::close(fd);
}

TEST_CASE("Proxy: a one-way blackhole holds bytes until lifted, then delivers them intact") {
  Fixture f;
  const int fd = Connect(f.proxy->port());
  CHECK(RoundTrip(fd, "before") == "before");
  LinkFaults hole;
  hole.blackhole = true;
  f.proxy->SetFaults(FaultProxy::Direction::kToClient, hole);
  const std::string data = RandomBytes(100'000, 3);
  REQUIRE(::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
  // The request reaches the echo server; the reply is held.
  CHECK(Receive(fd, 1, std::chrono::milliseconds(300)).empty());
  f.proxy->SetFaults(FaultProxy::Direction::kToClient, LinkFaults{});
  CHECK(Receive(fd, data.size()) == data);
  ::close(fd);
}

TEST_CASE("Proxy: Cut closes connections and refuses new ones until Restore") {
  Fixture f;
  const int fd = Connect(f.proxy->port());
  CHECK(RoundTrip(fd, "up") == "up");
  f.proxy->Cut();
  CHECK(f.proxy->cut());
  // The open connection is closed under the client: it reads end-of-stream.
  CHECK(Receive(fd, 1).empty());
  ::close(fd);
  const int refused = Connect(f.proxy->port());  // the kernel accepts; the proxy closes it
  ::send(refused, "x", 1, MSG_NOSIGNAL);
  CHECK(Receive(refused, 1).empty());
  ::close(refused);
  CHECK(f.proxy->stats().refused >= 1);
  f.proxy->Restore();
  const int again = Connect(f.proxy->port());
  CHECK(RoundTrip(again, "back") == "back");
  ::close(again);
}

TEST_CASE("Proxy: faults change from another thread while traffic flows, and nothing is lost or reordered") {
  Fixture f;
  const int fd = Connect(f.proxy->port());
  std::atomic<bool> done{false};
  std::thread chaos([&] {
    std::mt19937_64 rng(4);
    while (!done) {  // bounded by the transfer below
      LinkFaults lf;
      lf.delay = std::chrono::microseconds(rng() % 3000);
      lf.jitter = std::chrono::microseconds(rng() % 3000);
      lf.loss_probability = 0.05;
      lf.loss_penalty = std::chrono::milliseconds(5);
      lf.blackhole = rng() % 4 == 0;
      f.proxy->SetFaults(static_cast<FaultProxy::Direction>(rng() % 2), lf);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    f.proxy->SetFaults(LinkFaults{});
  });
  const std::string data = RandomBytes(2 << 20, 5);
  std::thread sender([&] { ::send(fd, data.data(), data.size(), MSG_NOSIGNAL); });
  std::string back = Receive(fd, data.size() / 2);
  done = true;
  chaos.join();
  back += Receive(fd, data.size() - back.size());
  sender.join();
  CHECK(back.size() == data.size());
  CHECK(back == data);
  ::close(fd);
}

TEST_CASE("Proxy: bad addresses are refused at Start") {
  FaultProxy::Options o;
  o.target_host = "not-an-ip";
  o.target_port = 1;
  auto p = FaultProxy::Start(o);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == Code::kInvalidArgument);
}

TEST_CASE("Proxy: with bind_to_client_ip the target sees the client's own address") {
  // The WAN proxies between regions rely on this: nodes authorize region
  // peers by source address, and firewall rules name node addresses.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const int target_port = ntohs(addr.sin_port);

  for (bool bind_to_client : {true, false}) {
    FaultProxy::Options o;
    o.target_host = "127.0.0.1";
    o.target_port = target_port;
    o.bind_to_client_ip = bind_to_client;
    auto proxy = FaultProxy::Start(o);
    REQUIRE(proxy.ok());
    // The client calls from 127.0.0.9.
    const int client = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.9", &from.sin_addr);
    REQUIRE(::bind(client, reinterpret_cast<sockaddr*>(&from), sizeof(from)) == 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons(static_cast<uint16_t>((*proxy)->port()));
    REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0);
    pollfd p{listener, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 20000) == 1);
    sockaddr_in peer{};
    socklen_t peer_len = sizeof(peer);
    const int accepted = ::accept(listener, reinterpret_cast<sockaddr*>(&peer), &peer_len);
    REQUIRE(accepted >= 0);
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof(text));
    CHECK(std::string(text) == (bind_to_client ? "127.0.0.9" : "127.0.0.1"));
    ::close(accepted);
    ::close(client);
  }
  ::close(listener);
}
