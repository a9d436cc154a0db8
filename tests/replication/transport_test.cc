// Tests of the node-to-node transport: the wire codec, and real gRPC servers
// with mutual TLS on distinct loopback addresses (127.0.2.x), so that the
// certificate's IP SAN can be checked against each member's address.

#include "replication/transport.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "replication/message_codec.h"
#include "security/certificates.h"

namespace bulwark::replication {
namespace {

using namespace std::chrono_literals;
using Emit = std::function<Status(std::string_view)>;

template <typename T>
T Must(Result<T> r) {
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Records every callback; tests wait on it with WaitUntil.
class RecordingHandler : public TransportHandler {
 public:
  void OnMessage(raft::Message m) override {
    std::lock_guard lock(mu);
    events.push_back("msg:" + std::string(raft::MessageTypeName(m.type)));
    messages.push_back(std::move(m));
    cv.notify_all();
  }
  void OnUnreachable(uint64_t peer) override {
    std::lock_guard lock(mu);
    ++unreachable[peer];
    cv.notify_all();
  }
  void OnSnapshotStatus(uint64_t peer, bool failed) override {
    std::lock_guard lock(mu);
    snapshot_status.emplace_back(peer, failed);
    cv.notify_all();
  }
  Status WriteSnapshot(uint64_t peer, const Emit& emit) override {
    return write_snapshot ? write_snapshot(peer, emit) : Status::Ok();
  }
  Status BeginSnapshot(uint64_t from) override {
    std::lock_guard lock(mu);
    events.push_back("begin:" + std::to_string(from));
    staged.clear();
    cv.notify_all();
    return Status::Ok();
  }
  Status SnapshotChunk(uint64_t /*from*/, std::string_view chunk) override {
    std::lock_guard lock(mu);
    events.push_back("chunk");
    staged.append(chunk);
    cv.notify_all();
    return Status::Ok();
  }
  Status EndSnapshot(uint64_t from, bool complete) override {
    std::lock_guard lock(mu);
    events.push_back("end:" + std::to_string(from) + ":" + (complete ? "complete" : "aborted"));
    cv.notify_all();
    return Status::Ok();
  }
  v1::ForwardResponse OnForward(uint64_t from, const v1::ForwardRequest& request) override {
    std::lock_guard lock(mu);
    forwarded_from.push_back(from);
    v1::ForwardResponse response;
    response.set_response("echo:" + request.method() + ":" + request.request());
    return response;
  }

  // Region images: the receiver reads every chunk and answers with their
  // total size as its GLSN (error: how the stream ended, if it broke); the
  // server side serves `served` for id "img".
  v1::RegionAppendResponse OnRegionImage(const v1::RegionImageHeader& header, const ChunkReader& next) override {
    if (!take_images) return TransportHandler::OnRegionImage(header, next);
    v1::RegionAppendResponse r;
    r.set_leader(true);
    std::string chunk, all;
    for (;;) {
      Result<bool> more = next(&chunk);
      if (!more.ok()) {
        r.set_error(more.status().ToString());
        break;
      }
      if (!*more) break;
      all += chunk;
    }
    r.set_applied_glsn(all.size());
    std::lock_guard lock(mu);
    image_received = all;
    image_result = r.error();
    image_done = true;
    cv.notify_all();
    return r;
  }
  Status ServeRegionImage(const std::string& id, const Emit& emit) override {
    if (id != "img") return Status::NotFound("no region image " + id);
    for (const std::string& c : served) BULWARK_RETURN_IF_ERROR(emit(c));
    return Status::Ok();
  }

  template <typename Pred>
  bool WaitUntil(Pred pred, std::chrono::milliseconds timeout = 15s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, pred);
  }
  size_t CountMessages(raft::MessageType type) {  // REQUIRES: mu held
    return static_cast<size_t>(
        std::count_if(messages.begin(), messages.end(), [&](const raft::Message& m) { return m.type == type; }));
  }

  // Set before the transport starts; runs on the sender thread.
  std::function<Status(uint64_t, const Emit&)> write_snapshot;

  std::mutex mu;
  std::condition_variable cv;
  std::vector<raft::Message> messages;
  std::vector<std::string> events;
  std::map<uint64_t, int> unreachable;
  std::vector<std::pair<uint64_t, bool>> snapshot_status;
  std::vector<uint64_t> forwarded_from;
  std::string staged;
  bool take_images = false;
  std::vector<std::string> served;
  std::string image_received, image_result;
  bool image_done = false;
};

// One cluster CA for the whole test binary: key generation is the slow part.
const security::PemPair& ClusterCa() {
  static const security::PemPair ca = Must(security::GenerateCa("bulwark-test-cluster"));
  return ca;
}

PeerTls TlsFor(const security::PemPair& ca, const std::string& ip, const security::PemPair& trusted = ClusterCa()) {
  security::PemPair leaf = Must(security::IssueCertificate(ca, "node-" + ip, {ip}, {}));
  PeerTls tls;
  tls.ca_pem = trusted.certificate;
  tls.cert_pem = leaf.certificate;
  tls.key_pem = leaf.private_key;
  return tls;
}

struct Node {
  uint64_t id = 0;
  std::string ip;
  RecordingHandler handler;
  std::unique_ptr<Transport> transport;  // declared last: stops before the handler dies

  std::string address() const { return ip + ":" + std::to_string(transport->bound_port()); }
};

std::unique_ptr<Node> StartNode(uint64_t id, const std::string& ip, PeerTls tls, TransportLimits limits = {},
                                int port = 0, std::function<Status(uint64_t, const Emit&)> write_snapshot = {},
                                const std::function<void(TransportOptions&)>& tweak = {}) {
  auto node = std::make_unique<Node>();
  node->id = id;
  node->ip = ip;
  node->handler.write_snapshot = std::move(write_snapshot);
  TransportOptions options;
  options.self_id = id;
  options.listen_address = ip + ":" + std::to_string(port);
  options.tls = std::move(tls);
  options.limits = limits;
  if (tweak) tweak(options);
  node->transport = Must(Transport::Start(std::move(options), &node->handler));
  return node;
}

// Two members that know each other.
void Connect(Node& a, Node& b) {
  a.transport->SetPeers({{b.id, b.address()}});
  b.transport->SetPeers({{a.id, a.address()}});
}

raft::Message App(uint64_t from, uint64_t to, uint64_t index, size_t payload_bytes = 32) {
  raft::Message m;
  m.type = raft::MessageType::kApp;
  m.from = from;
  m.to = to;
  m.term = 2;
  m.index = index;
  m.log_term = 2;
  m.entries.push_back(raft::Entry{2, index + 1, raft::EntryType::kNormal, std::string(payload_bytes, 'a')});
  return m;
}

raft::Message Heartbeat(uint64_t from, uint64_t to) {
  raft::Message m;
  m.type = raft::MessageType::kHeartbeat;
  m.from = from;
  m.to = to;
  m.term = 2;
  return m;
}

raft::Message Snap(uint64_t from, uint64_t to, uint64_t index) {
  raft::Message m;
  m.type = raft::MessageType::kSnap;
  m.from = from;
  m.to = to;
  m.term = 3;
  raft::Snapshot snapshot;
  snapshot.metadata.index = index;
  snapshot.metadata.term = 3;
  snapshot.metadata.conf_state.voters = {from, to};
  m.snapshot = snapshot;
  return m;
}

// A port on `ip` that nothing listens on (bound once, then released).
int UnusedPort(const std::string& ip) {
  auto probe = StartNode(99, ip, TlsFor(ClusterCa(), ip));
  int port = probe->transport->bound_port();
  probe->transport->Stop();
  return port;
}

}  // namespace

TEST_CASE("codec round-trips every message type with entries and snapshot metadata", "[transport]") {
  for (int t = 0; t <= static_cast<int>(raft::MessageType::kPreVoteResp); ++t) {
    raft::Message m;
    m.type = static_cast<raft::MessageType>(t);
    m.to = 2;
    m.from = 7;
    m.term = 1ULL << 40;
    m.log_term = 5;
    m.index = UINT64_MAX;
    m.commit = 9;
    m.reject = t % 2 == 0;
    m.reject_hint = 3;
    m.context = std::string("ctx\0bytes", 9);
    m.entries = {raft::Entry{4, 10, raft::EntryType::kNormal, std::string("\x00\xff payload", 10)},
                 raft::Entry{4, 11, raft::EntryType::kConfChange, "cc"},
                 raft::Entry{4, 12, raft::EntryType::kNormal, ""}};
    if (m.type == raft::MessageType::kSnap) {
      raft::Snapshot snapshot;
      snapshot.data = "image";
      snapshot.metadata = raft::SnapshotMetadata{raft::ConfState{{1, 2, 3}, {4}}, 100, 6};
      m.snapshot = snapshot;
    }
    v1::RaftMessage wire;
    EncodeMessage(m, &wire);
    v1::RaftMessage parsed;
    REQUIRE(parsed.ParseFromString(wire.SerializeAsString()));
    raft::Message decoded = Must(DecodeMessage(parsed));
    CAPTURE(raft::MessageTypeName(m.type));
    REQUIRE(decoded == m);
    REQUIRE(ApproximateWireBytes(m) >= wire.ByteSizeLong());
  }
}

TEST_CASE("codec rejects unknown enum values instead of guessing", "[transport]") {
  v1::RaftMessage wire;
  SECTION("message type 99") { REQUIRE(wire.ParseFromString(std::string("\x08\x63", 2))); }
  SECTION("entry type 7") { REQUIRE(wire.ParseFromString(std::string("\x08\x03\x3a\x02\x18\x07", 6))); }
  Result<raft::Message> decoded = DecodeMessage(wire);
  REQUIRE_FALSE(decoded.ok());
  REQUIRE(decoded.status().code() == Code::kInvalidArgument);
}

TEST_CASE("raft messages between two members over mutual TLS arrive in order", "[transport]") {
  // Small batches force many frames; one message larger than a batch still
  // goes through alone.
  TransportLimits limits;
  limits.max_batch_bytes = 4096;
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"), limits);
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"), limits);
  Connect(*n1, *n2);

  constexpr uint64_t kCount = 600;
  for (uint64_t i = 0; i < kCount; i += 50) {
    std::vector<raft::Message> batch;
    for (uint64_t j = i; j < i + 50; ++j) batch.push_back(App(1, 2, j, j == 300 ? 20000 : 100));
    n1->transport->Send(std::move(batch));
  }
  n2->transport->Send({Heartbeat(2, 1)});

  REQUIRE(n2->handler.WaitUntil([&] { return n2->handler.messages.size() == kCount; }));
  for (uint64_t i = 0; i < kCount; ++i) REQUIRE(n2->handler.messages[i] == App(1, 2, i, i == 300 ? 20000 : 100));
  REQUIRE(n1->handler.WaitUntil([&] { return n1->handler.messages.size() == 1; }));
  REQUIRE(n1->handler.messages[0] == Heartbeat(2, 1));
  REQUIRE(n1->handler.unreachable.empty());
}

TEST_CASE("a sender that is not a member is refused until it becomes one", "[transport]") {
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"));
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"));
  n1->transport->SetPeers({{2, n2->address()}});
  n2->transport->SetPeers({{3, "127.0.2.3:1"}});  // node 1 is not a member of n2's view

  n1->transport->Send({Heartbeat(1, 2)});
  REQUIRE(n1->handler.WaitUntil([&] { return n1->handler.unreachable[2] >= 1; }));
  std::this_thread::sleep_for(200ms);
  {
    std::lock_guard lock(n2->handler.mu);
    REQUIRE(n2->handler.messages.empty());
  }
  // Forward is held to the same rule.
  Result<v1::ForwardResponse> forwarded = n1->transport->Forward(2, v1::ForwardRequest());
  REQUIRE(forwarded.status().code() == Code::kPermissionDenied);

  n2->transport->SetPeers({{1, n1->address()}});
  bool delivered = false;
  for (int attempt = 0; attempt < 100 && !delivered; ++attempt) {
    n1->transport->Send({Heartbeat(1, 2)});  // the refused ones were dropped
    delivered = n2->handler.WaitUntil([&] { return !n2->handler.messages.empty(); }, 100ms);
  }
  REQUIRE(delivered);
}

TEST_CASE("the peer allowlist refuses a member connecting from another address", "[transport][firewall]") {
  auto from_own_ip = [](const std::string& ip) { return [ip](TransportOptions& o) { o.source_ip = ip; }; };
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"), {}, 0, {}, from_own_ip("127.0.2.1"));
  auto n3 = StartNode(3, "127.0.2.3", TlsFor(ClusterCa(), "127.0.2.3"), {}, 0, {}, from_own_ip("127.0.2.3"));
  // n2 lets peers in only from 127.0.2.1; n3 is a member with a valid
  // certificate, but its address is not on the list.
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"), {}, 0, {}, [](TransportOptions& o) {
    o.source_ip = "127.0.2.2";
    o.peer_allowlist = {"127.0.2.1/32"};
  });
  n1->transport->SetPeers({{2, n2->address()}});
  n3->transport->SetPeers({{2, n2->address()}});
  n2->transport->SetPeers({{1, n1->address()}, {3, n3->address()}});

  n3->transport->Send({Heartbeat(3, 2)});
  REQUIRE(n3->handler.WaitUntil([&] { return n3->handler.unreachable[2] >= 1; }));
  CHECK(n3->transport->Forward(2, v1::ForwardRequest()).status().code() == Code::kPermissionDenied);
  bool delivered = false;
  for (int attempt = 0; attempt < 100 && !delivered; ++attempt) {
    n1->transport->Send({Heartbeat(1, 2)});
    delivered = n2->handler.WaitUntil([&] { return !n2->handler.messages.empty(); }, 100ms);
  }
  REQUIRE(delivered);
  std::lock_guard lock(n2->handler.mu);
  for (const auto& m : n2->handler.messages) CHECK(m.from == 1);  // nothing from node 3
  // A malformed list refuses to start.
  TransportOptions bad;
  bad.self_id = 4;
  bad.listen_address = "127.0.2.4:0";
  bad.tls = TlsFor(ClusterCa(), "127.0.2.4");
  bad.peer_allowlist = {"10.0.0.1/8"};
  Node probe;
  CHECK(Transport::Start(std::move(bad), &probe.handler).status().code() == Code::kInvalidArgument);
}

TEST_CASE("a client certificate from another CA is refused", "[transport]") {
  security::PemPair other_ca = Must(security::GenerateCa("some-other-cluster"));
  // n1 trusts the cluster CA (so it accepts n2's server certificate) but
  // presents a certificate the cluster CA never signed.
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(other_ca, "127.0.2.1", ClusterCa()));
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"));
  Connect(*n1, *n2);

  n1->transport->Send({Heartbeat(1, 2)});
  REQUIRE(n1->handler.WaitUntil([&] { return n1->handler.unreachable[2] >= 1; }));
  REQUIRE(n1->transport->Forward(2, v1::ForwardRequest()).status().code() == Code::kUnavailable);
  std::lock_guard lock(n2->handler.mu);
  REQUIRE(n2->handler.messages.empty());
  REQUIRE(n2->handler.forwarded_from.empty());
}

TEST_CASE("a certificate that does not name the member's address is refused", "[transport]") {
  // n1 listens on 127.0.2.1 with a valid cluster certificate for 127.0.2.9:
  // stolen from another member, say.
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.9"));
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"));
  Connect(*n1, *n2);

  SECTION("as a client: n2's membership check refuses it") {
    n1->transport->Send({Heartbeat(1, 2)});
    REQUIRE(n1->handler.WaitUntil([&] { return n1->handler.unreachable[2] >= 1; }));
    REQUIRE(n1->transport->Forward(2, v1::ForwardRequest()).status().code() == Code::kPermissionDenied);
    std::this_thread::sleep_for(200ms);
    std::lock_guard lock(n2->handler.mu);
    REQUIRE(n2->handler.messages.empty());
    REQUIRE(n2->handler.forwarded_from.empty());
  }
  SECTION("as a server: n2's TLS handshake refuses it") {
    n2->transport->Send({Heartbeat(2, 1)});
    REQUIRE(n2->handler.WaitUntil([&] { return n2->handler.unreachable[1] >= 1; }));
    std::this_thread::sleep_for(200ms);
    std::lock_guard lock(n1->handler.mu);
    REQUIRE(n1->handler.messages.empty());
  }
}

TEST_CASE("a snapshot streams in chunks before its kSnap message", "[transport]") {
  constexpr size_t kChunkBytes = 1 << 20;
  constexpr int kChunks = 5;
  std::string image;
  for (int c = 0; c < kChunks; ++c) {
    for (size_t i = 0; i < kChunkBytes; ++i) image.push_back(static_cast<char>((i * 31 + c * 7) & 0xff));
  }
  auto write = [&](uint64_t peer, const Emit& emit) -> Status {
    REQUIRE(peer == 2);
    for (int c = 0; c < kChunks; ++c)
      BULWARK_RETURN_IF_ERROR(emit(std::string_view(image).substr(c * kChunkBytes, kChunkBytes)));
    return Status::Ok();
  };
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"), {}, 0, write);
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"));
  Connect(*n1, *n2);

  n1->transport->Send({Snap(1, 2, 42), Heartbeat(1, 2)});
  REQUIRE(n1->handler.WaitUntil([&] { return !n1->handler.snapshot_status.empty(); }));
  REQUIRE(n1->handler.snapshot_status == std::vector<std::pair<uint64_t, bool>>{{2, false}});
  REQUIRE(n2->handler.WaitUntil([&] { return n2->handler.messages.size() == 2; }));

  std::lock_guard lock(n2->handler.mu);
  std::vector<std::string> snapshot_events;
  for (const std::string& e : n2->handler.events) {
    if (e != "msg:MsgHeartbeat") snapshot_events.push_back(e);
  }
  std::vector<std::string> expected = {"begin:1"};
  for (int c = 0; c < kChunks; ++c) expected.push_back("chunk");
  expected.push_back("end:1:complete");
  expected.push_back("msg:MsgSnap");
  REQUIRE(snapshot_events == expected);
  REQUIRE(n2->handler.staged == image);
  REQUIRE(n2->handler.CountMessages(raft::MessageType::kSnap) == 1);
  for (const raft::Message& m : n2->handler.messages) {
    if (m.type == raft::MessageType::kSnap) REQUIRE(m == Snap(1, 2, 42));
  }
}

TEST_CASE(
    "a snapshot chunk holding one record over the chunk target (a 2 MiB item) travels, one over the frame limit "
    "does not",
    "[transport]") {
  std::string big(3 << 20, 'i');  // one record: a large item, sealed
  size_t emit_bytes = big.size();
  auto write = [&](uint64_t, const Emit& emit) -> Status { return emit(std::string_view(big).substr(0, emit_bytes)); };
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"), {}, 0, write);
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"));
  Connect(*n1, *n2);
  n1->transport->Send({Snap(1, 2, 42)});
  REQUIRE(n1->handler.WaitUntil([&] { return !n1->handler.snapshot_status.empty(); }));
  {
    std::lock_guard lock(n1->handler.mu);
    CHECK(n1->handler.snapshot_status.back() == std::pair<uint64_t, bool>{2, false});
  }
  REQUIRE(n2->handler.WaitUntil([&] { return n2->handler.staged.size() == big.size(); }));
  big.assign(TransportLimits{}.max_snapshot_frame_bytes + 1, 'x');
  emit_bytes = big.size();
  n1->transport->Send({Snap(1, 2, 43)});
  REQUIRE(n1->handler.WaitUntil([&] { return n1->handler.snapshot_status.size() == 2; }));
  std::lock_guard lock(n1->handler.mu);
  CHECK(n1->handler.snapshot_status.back() == std::pair<uint64_t, bool>{2, true});
}

TEST_CASE("a peer that is down is reported unreachable without blocking, and reached once it starts", "[transport]") {
  const int port = UnusedPort("127.0.2.2");
  TransportLimits limits;
  limits.dial_backoff = 50ms;
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"), limits);
  n1->transport->SetPeers({{2, "127.0.2.2:" + std::to_string(port)}});

  auto before = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) n1->transport->Send({Heartbeat(1, 2)});
  REQUIRE(std::chrono::steady_clock::now() - before < 1s);
  REQUIRE(n1->handler.WaitUntil([&] { return n1->handler.unreachable[2] >= 1; }, 5s));
  REQUIRE(n1->transport->Forward(2, v1::ForwardRequest()).status().code() == Code::kUnavailable);

  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"), {}, port);
  n2->transport->SetPeers({{1, n1->address()}});
  bool delivered = false;
  for (int attempt = 0; attempt < 100 && !delivered; ++attempt) {
    n1->transport->Send({App(1, 2, 7)});
    delivered = n2->handler.WaitUntil([&] { return !n2->handler.messages.empty(); }, 100ms);
  }
  REQUIRE(delivered);
  std::lock_guard lock(n2->handler.mu);
  REQUIRE(n2->handler.messages.front() == App(1, 2, 7));
}

TEST_CASE("a full peer queue drops new messages and reports the peer unreachable", "[transport]") {
  // The sender thread is held inside WriteSnapshot, so nothing drains the
  // queue while ten heartbeats arrive for a queue of four.
  std::promise<void> started;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto write = [&](uint64_t, const Emit& emit) -> Status {
    started.set_value();
    released.wait();
    return emit("state");
  };
  TransportLimits limits;
  limits.max_queued_messages_per_peer = 4;
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"), limits, 0, write);
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"));
  Connect(*n1, *n2);

  n1->transport->Send({Snap(1, 2, 5)});
  started.get_future().wait();
  for (int i = 0; i < 10; ++i) n1->transport->Send({Heartbeat(1, 2)});
  release.set_value();

  REQUIRE(n1->handler.WaitUntil([&] { return n1->handler.unreachable[2] >= 1; }));
  REQUIRE(n2->handler.WaitUntil([&] {
    return n2->handler.CountMessages(raft::MessageType::kSnap) == 1 &&
           n2->handler.CountMessages(raft::MessageType::kHeartbeat) == 4;
  }));
  std::this_thread::sleep_for(200ms);
  std::lock_guard lock(n2->handler.mu);
  REQUIRE(n2->handler.CountMessages(raft::MessageType::kHeartbeat) == 4);
}

TEST_CASE("Forward runs on the peer and reports an unreachable peer as Unavailable", "[transport]") {
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"));
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"));
  Connect(*n1, *n2);

  v1::ForwardRequest request;
  request.set_method("UpsertItem");
  request.set_request("body");
  request.set_from_node(77);  // the transport names the real sender
  request.set_deadline_unix_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>((std::chrono::system_clock::now() + 5s).time_since_epoch())
          .count());
  v1::ForwardResponse response = Must(n1->transport->Forward(2, request));
  REQUIRE(response.code() == 0);
  REQUIRE(response.response() == "echo:UpsertItem:body");
  {
    std::lock_guard lock(n2->handler.mu);
    REQUIRE(n2->handler.forwarded_from == std::vector<uint64_t>{1});
  }

  const int port = UnusedPort("127.0.2.3");
  n1->transport->SetPeers({{2, n2->address()}, {3, "127.0.2.3:" + std::to_string(port)}});
  auto before = std::chrono::steady_clock::now();
  REQUIRE(n1->transport->Forward(3, v1::ForwardRequest()).status().code() == Code::kUnavailable);
  REQUIRE(std::chrono::steady_clock::now() - before < 5s);
  REQUIRE(n1->transport->Forward(4, v1::ForwardRequest()).status().code() == Code::kUnavailable);
}

TEST_CASE("Stop returns promptly with a stream and a snapshot transfer open", "[transport]") {
  std::promise<void> streaming;
  auto write = [&](uint64_t, const Emit& emit) -> Status {
    const std::string chunk(64 << 10, 's');
    // Bounded so that a broken Stop fails the test instead of hanging it.
    for (int i = 0; i < 100000; ++i) {
      BULWARK_RETURN_IF_ERROR(emit(chunk));
      if (i == 10) streaming.set_value();
    }
    return Status::Ok();
  };
  auto n1 = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"), {}, 0, write);
  auto n2 = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"));
  Connect(*n1, *n2);
  n2->transport->Send({Heartbeat(2, 1)});
  REQUIRE(n1->handler.WaitUntil([&] { return !n1->handler.messages.empty(); }));
  n1->transport->Send({Snap(1, 2, 9)});
  streaming.get_future().wait();

  auto before = std::chrono::steady_clock::now();
  n1->transport->Stop();
  REQUIRE(std::chrono::steady_clock::now() - before < 3s);
  {
    std::lock_guard lock(n1->handler.mu);
    REQUIRE(n1->handler.snapshot_status == std::vector<std::pair<uint64_t, bool>>{{2, true}});
  }
  // The receiver learns the transfer broke and discards it.
  REQUIRE(n2->handler.WaitUntil(
      [&] { return !n2->handler.events.empty() && n2->handler.events.back() == "end:1:aborted"; }));
  before = std::chrono::steady_clock::now();
  n2->transport->Stop();
  REQUIRE(std::chrono::steady_clock::now() - before < 3s);
}

TEST_CASE("insecure mode skips certificates but still checks membership", "[transport]") {
  PeerTls plaintext;
  plaintext.insecure = true;
  auto n1 = StartNode(1, "127.0.2.1", plaintext);
  auto n2 = StartNode(2, "127.0.2.2", plaintext);
  auto n3 = StartNode(3, "127.0.2.3", plaintext);
  Connect(*n1, *n2);
  n3->transport->SetPeers({{2, n2->address()}});

  n1->transport->Send({App(1, 2, 1)});
  n3->transport->Send({App(3, 2, 1)});
  REQUIRE(n2->handler.WaitUntil([&] { return !n2->handler.messages.empty(); }));
  REQUIRE(n3->handler.WaitUntil([&] { return n3->handler.unreachable[2] >= 1; }));
  std::this_thread::sleep_for(200ms);
  std::lock_guard lock(n2->handler.mu);
  REQUIRE(n2->handler.messages == std::vector<raft::Message>{App(1, 2, 1)});
}

TEST_CASE("Start refuses bad TLS material and an address it cannot bind", "[transport]") {
  RecordingHandler handler;
  TransportOptions options;
  options.self_id = 1;
  options.listen_address = "127.0.2.1:0";
  options.tls = TlsFor(ClusterCa(), "127.0.2.1");
  options.tls.key_pem = Must(security::GenerateCa("unrelated")).private_key;
  REQUIRE(Transport::Start(options, &handler).status().code() == Code::kInvalidArgument);

  options.tls = TlsFor(ClusterCa(), "127.0.2.1");
  options.listen_address = "192.0.2.1:0";  // TEST-NET-1: not an address of this machine
  REQUIRE(Transport::Start(options, &handler).status().code() == Code::kIOError);
}

TEST_CASE("RegionAppend is taken only from a configured region peer whose certificate names it", "[transport]") {
  auto bind_source = [](const std::string& ip) { return [ip](TransportOptions& o) { o.source_ip = ip; }; };
  auto writer = StartNode(1, "127.0.3.1", TlsFor(ClusterCa(), "127.0.3.1"), {}, 0, {}, bind_source("127.0.3.1"));
  auto reader = StartNode(1, "127.0.4.1", TlsFor(ClusterCa(), "127.0.4.1"), {}, 0, {}, bind_source("127.0.4.1"));
  // Right address, but its certificate names another one.
  auto impostor = StartNode(2, "127.0.3.2", TlsFor(ClusterCa(), "127.0.3.9"), {}, 0, {}, bind_source("127.0.3.2"));
  v1::RegionAppendRequest req;
  req.set_from_region("r1");
  req.set_to_region("r2");
  // Not a configured peer: refused before the handler sees it.
  auto refused = writer->transport->RegionAppend(reader->address(), req);
  CHECK(refused.status().code() == Code::kPermissionDenied);
  CHECK(refused.status().message().find("not a configured region peer") != std::string::npos);

  reader->transport->SetRegionPeers({writer->address(), "127.0.3.2:1"});
  auto taken = writer->transport->RegionAppend(reader->address(), req);
  INFO(taken.status().ToString());
  REQUIRE(taken.ok());
  // The handler answered (this one takes no stream, and says so).
  CHECK(taken->error().find("takes no region stream") != std::string::npos);

  auto named = impostor->transport->RegionAppend(reader->address(), req);
  CHECK(named.status().code() == Code::kPermissionDenied);
  CHECK(named.status().message().find("does not name") != std::string::npos);
}

TEST_CASE("RegionImage: refused from anyone but a configured region peer, chunks arrive whole or the break shows",
          "[transport]") {
  auto bind_source = [](const std::string& ip) { return [ip](TransportOptions& o) { o.source_ip = ip; }; };
  auto writer = StartNode(1, "127.0.3.1", TlsFor(ClusterCa(), "127.0.3.1"), {}, 0, {}, bind_source("127.0.3.1"));
  auto reader = StartNode(1, "127.0.4.1", TlsFor(ClusterCa(), "127.0.4.1"), {}, 0, {}, bind_source("127.0.4.1"));
  v1::RegionImageHeader header;
  header.set_from_region("r1");
  header.set_to_region("r2");
  auto deadline = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               (std::chrono::system_clock::now() + 10s).time_since_epoch())
        .count();
  };
  header.set_deadline_unix_ms(deadline());
  const std::vector<std::string> chunks{std::string(1000, 'a'), std::string(70000, 'b'), "c"};
  auto produce = [&](const Transport::ChunkSink& sink) -> Status {
    for (const auto& c : chunks) BULWARK_RETURN_IF_ERROR(sink(c));
    return Status::Ok();
  };
  auto refused = writer->transport->SendRegionImage(reader->address(), header, produce);
  CHECK(refused.status().code() == Code::kPermissionDenied);
  CHECK(refused.status().message().find("not a configured region peer") != std::string::npos);

  reader->transport->SetRegionPeers({writer->address()});
  // A handler that takes none says so.
  auto none = writer->transport->SendRegionImage(reader->address(), header, produce);
  INFO(none.status().ToString());
  REQUIRE(none.ok());
  CHECK(none->error().find("takes no region image") != std::string::npos);

  reader->handler.take_images = true;
  auto taken = writer->transport->SendRegionImage(reader->address(), header, produce);
  INFO(taken.status().ToString());
  REQUIRE(taken.ok());
  CHECK(taken->applied_glsn() == 71001);
  {
    std::lock_guard lock(reader->handler.mu);
    CHECK(reader->handler.image_received == chunks[0] + chunks[1] + chunks[2]);
    CHECK(reader->handler.image_result.empty());
    reader->handler.image_done = false;
  }
  // The sender fails halfway: the receiver sees a broken stream (or, if the
  // cancel arrives first, no call at all), never an image that merely looks
  // complete.
  auto failing = writer->transport->SendRegionImage(reader->address(), header, [&](const Transport::ChunkSink& sink) {
    BULWARK_RETURN_IF_ERROR(sink(chunks[0]));
    return Status::IOError("the image could not be read");
  });
  CHECK(failing.status().code() == Code::kIOError);
  (void)reader->handler.WaitUntil([&] { return reader->handler.image_done; }, 2s);
  {
    std::lock_guard lock(reader->handler.mu);
    CHECK((!reader->handler.image_done || !reader->handler.image_result.empty()));
  }
}

TEST_CASE("FetchRegionImage: served to members only, in order, unknown ids and a failing sink are errors",
          "[transport]") {
  auto a = StartNode(1, "127.0.2.1", TlsFor(ClusterCa(), "127.0.2.1"));
  auto b = StartNode(2, "127.0.2.2", TlsFor(ClusterCa(), "127.0.2.2"));
  a->handler.served = {"one", std::string(300000, 'x'), "three"};
  // b is not a member of a's set yet: refused.
  b->transport->SetPeers({{1, a->address()}});
  std::string got;
  auto sink = [&](std::string_view c) {
    got.append(c);
    return Status::Ok();
  };
  CHECK(b->transport->FetchRegionImage(1, "img", sink, 10s).code() == Code::kPermissionDenied);
  Connect(*a, *b);
  got.clear();
  REQUIRE(b->transport->FetchRegionImage(1, "img", sink, 10s).ok());
  CHECK(got == "one" + std::string(300000, 'x') + "three");
  CHECK(b->transport->FetchRegionImage(1, "other", sink, 10s).code() == Code::kNotFound);
  CHECK(b->transport->FetchRegionImage(7, "img", sink, 10s).code() == Code::kUnavailable);  // not a member
  auto refusing = [](std::string_view) { return Status::Corruption("bad chunk"); };
  CHECK(b->transport->FetchRegionImage(1, "img", refusing, 10s).code() == Code::kCorruption);
}

}  // namespace bulwark::replication
