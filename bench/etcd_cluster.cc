#include "bench/etcd_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "proto/etcd_kv.grpc.pb.h"
#include "security/certificates.h"

extern char** environ;

namespace bulwark::bench {
namespace {

namespace fs = std::filesystem;

Status WritePrivate(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return Status::IOError("cannot write " + path.string());
  out << content;
  out.close();
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  return out ? Status::Ok() : Status::IOError("cannot write " + path.string());
}

// One linearizable Range on `endpoint`: it succeeds only once the member
// knows a leader and can run ReadIndex through it.
bool ServesRange(const std::string& endpoint, const std::string& ca_pem) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  auto stub = etcdserverpb::KV::NewStub(grpc::CreateChannel(endpoint, grpc::SslCredentials(ssl)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  etcdserverpb::RangeRequest request;
  request.set_key("bench-ready");
  etcdserverpb::RangeResponse response;
  return stub->Range(&ctx, request, &response).ok();
}

}  // namespace

Result<std::unique_ptr<EtcdCluster>> EtcdCluster::Prepare(const EtcdOptions& options) {
  if (options.dir.empty()) return Status::InvalidArgument("the etcd cluster needs a directory");
  if (options.members < 1) return Status::InvalidArgument("the etcd cluster needs at least one member");
  auto cluster = std::unique_ptr<EtcdCluster>(new EtcdCluster(options));
  if (Status s = cluster->Layout(); !s.ok()) return s;
  return cluster;
}

EtcdCluster::~EtcdCluster() { Stop(std::chrono::milliseconds(0)); }

std::string EtcdCluster::member_ip(int i) const {
  const std::string& ip = options_.ip;
  const size_t dot = ip.rfind('.');
  return ip.substr(0, dot + 1) + std::to_string(std::stoi(ip.substr(dot + 1)) + (i - 1));
}

std::string EtcdCluster::client_endpoint(int i) const {
  return member_ip(i) + ":" + std::to_string(options_.client_port);
}

Status EtcdCluster::Layout() {
  const fs::path dir = options_.dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
  auto ca = security::GenerateCa("Bulwark bench etcd CA");
  if (!ca.ok()) return ca.status();
  ca_pem_ = ca->certificate;
  if (Status s = WritePrivate(dir / "ca.pem", ca->certificate); !s.ok()) return s;
  for (int i = 1; i <= options_.members; ++i) {
    const fs::path member = dir / ("member-" + std::to_string(i));
    fs::create_directories(member, ec);
    if (ec) return Status::IOError("cannot create " + member.string() + ": " + ec.message());
    // One certificate per member for both its client and its peer port,
    // usable as server and as client certificate (peer mutual TLS).
    auto leaf = security::IssueCertificate(*ca, "etcd-" + std::to_string(i), {member_ip(i)}, {"localhost"});
    if (!leaf.ok()) return leaf.status();
    if (Status s = WritePrivate(member / "member.pem", leaf->certificate); !s.ok()) return s;
    if (Status s = WritePrivate(member / "member.key", leaf->private_key); !s.ok()) return s;
  }
  return Status::Ok();
}

std::vector<std::string> EtcdCluster::Command(int i) const {
  const fs::path dir = options_.dir;
  const fs::path member = dir / ("member-" + std::to_string(i));
  auto peer_url = [&](int m) { return "https://" + member_ip(m) + ":" + std::to_string(options_.peer_port); };
  std::string initial;
  for (int m = 1; m <= options_.members; ++m) {
    initial += (m > 1 ? "," : "") + ("m" + std::to_string(m)) + "=" + peer_url(m);
  }
  const std::string client_url = "https://" + client_endpoint(i);
  return {options_.binary,
          "--name=m" + std::to_string(i),
          "--data-dir=" + (member / "data").string(),
          "--listen-client-urls=" + client_url,
          "--advertise-client-urls=" + client_url,
          "--listen-peer-urls=" + peer_url(i),
          "--initial-advertise-peer-urls=" + peer_url(i),
          "--initial-cluster=" + initial,
          "--initial-cluster-state=new",
          "--initial-cluster-token=bulwark-bench",
          "--cert-file=" + (member / "member.pem").string(),
          "--key-file=" + (member / "member.key").string(),
          "--peer-cert-file=" + (member / "member.pem").string(),
          "--peer-key-file=" + (member / "member.key").string(),
          "--peer-trusted-ca-file=" + (dir / "ca.pem").string(),
          "--peer-client-cert-auth",
          "--logger=zap",
          "--log-level=warn"};
}

Status EtcdCluster::Start() {
  for (int i = 1; i <= options_.members; ++i) {
    std::vector<std::string> cmd = Command(i);
    std::vector<char*> argv;
    for (auto& a : cmd) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = (fs::path(options_.dir) / ("member-" + std::to_string(i)) / "etcd.log").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    pid_t pid = -1;
    const int err = ::posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0) return Status::Unavailable("cannot start " + cmd[0] + ": " + std::strerror(err));
    pid_[i - 1] = pid;
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  for (int i = 1; i <= options_.members; ++i) {
    while (!ServesRange(client_endpoint(i), ca_pem_)) {
      int status = 0;
      if (::waitpid(pid_[i - 1], &status, WNOHANG) == pid_[i - 1]) {
        pid_[i - 1] = -1;
        return Status::Unavailable("etcd member " + std::to_string(i) + " exited; see its etcd.log in " + options_.dir);
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return Status::DeadlineExceeded("etcd member " + std::to_string(i) + " did not serve a Range in time");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return Status::Ok();
}

void EtcdCluster::Stop(std::chrono::milliseconds grace) {
  for (pid_t pid : pid_) {
    if (pid > 0) ::kill(pid, grace.count() > 0 ? SIGTERM : SIGKILL);
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (pid_t& pid : pid_) {
    if (pid <= 0) continue;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid = -1;
  }
}

}  // namespace bulwark::bench
