// TLS policy on a real bulwarkd, checked from outside with openssl s_client:
// TLS 1.1 is refused; 1.2 is refused once the minimum is 1.3; a plaintext
// client gets nothing; a certificate replaced on disk is served on new
// connections without a restart, on the client port and the peer port.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <catch2/catch.hpp>

#include "bulwark/v1/admin.grpc.pb.h"
#include "bulwark/v1/peer.grpc.pb.h"
#include "chaos/local_cluster.h"
#include "security/certificates.h"
#include "tests/server/run_command.h"
#include "tests/test_util.h"

using namespace bulwark;
using bulwark::testing::FreePort;
using bulwark::testing::RunCommand;
using bulwark::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<chaos::LocalCluster> StartNode(const TempDir& dir, const std::string& ip,
                                               std::vector<std::string> extra_args = {}) {
  chaos::ClusterOptions o;
  o.dir = dir.sub("cluster");
  o.bin_dir = BULWARK_BIN_DIR;
  o.ip = ip;
  o.nodes = 1;
  o.metrics_port = 0;
  o.extra_args = std::move(extra_args);
  do {
    o.port = FreePort(o.ip);
  } while (o.port == 0 || o.port > 65000);
  auto c = chaos::LocalCluster::Prepare(o);
  REQUIRE(c.ok());
  const Status s = (*c)->Start();
  INFO(s.ToString());
  REQUIRE(s.ok());
  return std::move(c).value();
}

// The TLS handshake alone, with one protocol version. s_client's exit code
// also reflects how the server closed the connection afterwards (gRPC hangs
// up on a client that says nothing), so success is its own report.
struct HandshakeResult {
  bool established = false;
  std::string output;
};
HandshakeResult Handshake(const std::string& endpoint, const std::string& version_flag, const std::string& ca_file) {
  auto r = RunCommand("echo | timeout 10 openssl s_client -connect " + endpoint + " " + version_flag +
                      " -alpn h2 -CAfile " + ca_file + " -brief");
  return {r.output.find("CONNECTION ESTABLISHED") != std::string::npos, r.output};
}

std::string NextIp(int offset) { return "127.0." + std::to_string(10 + (getpid() * 17 + offset) % 240) + ".221"; }

}  // namespace

TEST_CASE("TLS: 1.1 refused, 1.2 accepted by default, 1.2 refused when the minimum is 1.3", "[tls]") {
  TempDir a, b;
  auto open = StartNode(a, NextIp(0));
  const std::string ca = open->client_options().ca_file;
  auto r11 = Handshake(open->endpoint(), "-tls1_1", ca);
  INFO(r11.output);
  CHECK(!r11.established);
  auto r12 = Handshake(open->endpoint(), "-tls1_2", ca);
  INFO(r12.output);
  CHECK(r12.established);
  CHECK(r12.output.find("TLSv1.2") != std::string::npos);
  REQUIRE(open->Stop().ok());

  auto strict = StartNode(b, NextIp(1), {"--tls-min-version", "1.3"});
  const std::string ca2 = strict->client_options().ca_file;
  auto s12 = Handshake(strict->endpoint(), "-tls1_2", ca2);
  INFO(s12.output);
  CHECK(!s12.established);
  auto s13 = Handshake(strict->endpoint(), "-tls1_3", ca2);
  INFO(s13.output);
  CHECK(s13.established);
  CHECK(s13.output.find("TLSv1.3") != std::string::npos);
  // The peer port enforces the same minimum.
  auto p12 = Handshake(strict->node_peer_endpoint(1), "-tls1_2", ca2);
  INFO(p12.output);
  CHECK(!p12.established);
  // A client that speaks plaintext to the TLS port gets no answer.
  auto stub = v1::AdminService::NewStub(grpc::CreateChannel(strict->endpoint(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::StatusRequest req;
  v1::StatusResponse resp;
  const grpc::Status plain = stub->Status(&ctx, req, &resp);
  CHECK(!plain.ok());
  CHECK(plain.error_code() == grpc::StatusCode::UNAVAILABLE);
  // The peer port: a node certificate from another CA is refused at the
  // handshake; one from the cluster CA gets through it.
  {
    auto other_ca = security::GenerateCa("some other CA");
    REQUIRE(other_ca.ok());
    const std::string ip = strict->node_ip(1);
    auto stranger = security::IssueCertificate(*other_ca, "stranger", {ip}, {});
    const fs::path cluster = b.sub("cluster");
    security::PemPair cluster_ca{ReadText(cluster / "ca.pem"), ReadText(cluster / "ca.key")};
    auto member = security::IssueCertificate(cluster_ca, "member", {ip}, {});
    REQUIRE(stranger.ok());
    REQUIRE(member.ok());
    // A gRPC call to the peer service with each certificate: the stranger's
    // handshake fails (UNAVAILABLE: no call reaches the service); the
    // member's reaches it (then refused by the membership check, which is
    // another matter: the handshake was fine).
    auto call_with = [&](const security::PemPair& pair) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = ReadText(cluster / "ca.pem");
      ssl.pem_cert_chain = pair.certificate;
      ssl.pem_private_key = pair.private_key;
      auto stub =
          v1::PeerService::NewStub(grpc::CreateChannel(strict->node_peer_endpoint(1), grpc::SslCredentials(ssl)));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      v1::ForwardRequest req;
      req.set_method("Nothing");
      v1::ForwardResponse resp;
      return stub->Forward(&ctx, req, &resp);
    };
    const grpc::Status stranger_call = call_with(*stranger);
    INFO(stranger_call.error_message());
    CHECK(stranger_call.error_code() == grpc::StatusCode::UNAVAILABLE);
    const grpc::Status member_call = call_with(*member);
    INFO(member_call.error_message());
    CHECK(member_call.error_code() != grpc::StatusCode::UNAVAILABLE);
  }
  REQUIRE(strict->Stop().ok());
  // A bad setting is refused at start, by name.
  auto bad = RunCommand(std::string(BULWARK_BIN_DIR) + "/bulwarkd --tls-min-version 1.1 --master-key-uri env:NONE");
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("1.3") != std::string::npos);
}

TEST_CASE("TLS: a certificate replaced on disk is served without a restart", "[tls]") {
  TempDir dir;
  auto node = StartNode(dir, NextIp(2));
  const fs::path cluster = dir.sub("cluster");
  const std::string ca = (cluster / "ca.pem").string();
  auto before = Handshake(node->endpoint(), "-tls1_3", ca);
  INFO(before.output);
  REQUIRE(before.established);
  CHECK(before.output.find("node-1") != std::string::npos);

  // A new certificate for the same address, from the same CA: written to a
  // temporary file and renamed over the old one, as a rotation tool would.
  security::PemPair ca_pair{ReadText(cluster / "ca.pem"), ReadText(cluster / "ca.key")};
  auto fresh = security::IssueCertificate(ca_pair, "node-1-rotated", {node->node_ip(1)}, {"localhost"});
  REQUIRE(fresh.ok());
  const fs::path pem = cluster / "node-1" / "node.pem", key = cluster / "node-1" / "node.key";
  std::ofstream(key.string() + ".new") << fresh->private_key;
  std::ofstream(pem.string() + ".new") << fresh->certificate;
  fs::rename(key.string() + ".new", key);
  fs::rename(pem.string() + ".new", pem);

  bool rotated = false;
  bool peer_rotated = false;
  for (int attempt = 0; attempt < 50 && !(rotated && peer_rotated); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    rotated = rotated || Handshake(node->endpoint(), "-tls1_3", ca).output.find("node-1-rotated") != std::string::npos;
    // The peer port asks for a client certificate; s_client offers none, so
    // only the server's side of the handshake is looked at.
    peer_rotated =
        peer_rotated ||
        Handshake(node->node_peer_endpoint(1), "-tls1_3", ca).output.find("node-1-rotated") != std::string::npos;
  }
  CHECK(rotated);
  CHECK(peer_rotated);
  // The node kept serving throughout: a signed call still works.
  auto client = client::Client::Connect(node->client_options());
  REQUIRE(client.ok());
  CHECK((*client)->GetStatus().ok());
  REQUIRE(node->Stop().ok());
}
