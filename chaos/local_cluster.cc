#include "chaos/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "crypto/master_key.h"
#include "crypto/secret.h"
#include "security/certificates.h"
#include "security/request_signing.h"

extern char** environ;

namespace bulwark::chaos {
namespace {

namespace fs = std::filesystem;

Status WritePrivate(const fs::path& path, const std::string& content) {
  const mode_t old_mask = ::umask(077);
  std::ofstream out(path, std::ios::binary);
  out << content;
  out.close();
  ::umask(old_mask);
  if (!out) return Status::IOError("cannot write " + path.string());
  return Status::Ok();
}

Result<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string LogTail(const std::string& path) {
  auto text = ReadText(path);
  if (!text.ok()) return "";
  const std::string& t = *text;
  return t.size() > 2000 ? t.substr(t.size() - 2000) : t;
}

}  // namespace

Result<std::unique_ptr<LocalCluster>> LocalCluster::Prepare(const ClusterOptions& options) {
  if (options.nodes < 1 || options.nodes > 9) return Status::InvalidArgument("a local replica set has 1 to 9 nodes");
  std::unique_ptr<LocalCluster> cluster(new LocalCluster(options));
  BULWARK_RETURN_IF_ERROR(cluster->Layout());
  return cluster;
}

LocalCluster::~LocalCluster() { Kill(); }

Status LocalCluster::Layout() {
  const fs::path dir = options_.dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
  fs::permissions(dir, fs::perms::owner_all, ec);
  if (!fs::exists(dir / "master.key")) {
    const crypto::SecretBytes key = crypto::SecretBytes::Random(crypto::kMasterKeyBytes);
    BULWARK_RETURN_IF_ERROR(WritePrivate(dir / "master.key", crypto::Base64Encode(key.view()) + "\n"));
  }
  // One account key for the whole replica set: every node imports it.
  if (!fs::exists(dir / "account.key")) {
    const crypto::SecretBytes key = crypto::SecretBytes::Random(security::kAccountKeyBytes);
    BULWARK_RETURN_IF_ERROR(WritePrivate(dir / "account.key", crypto::Base64Encode(key.view()) + "\n"));
  }
  BULWARK_ASSIGN_OR_RETURN(std::string account_key, ReadText(dir / "account.key"));
  account_key_ = Trim(account_key);
  if (!fs::exists(dir / "ca.pem")) {
    BULWARK_ASSIGN_OR_RETURN(auto ca, security::GenerateCa("Bulwark local cluster CA"));
    BULWARK_RETURN_IF_ERROR(WritePrivate(dir / "ca.key", ca.private_key));
    BULWARK_RETURN_IF_ERROR(WritePrivate(dir / "ca.pem", ca.certificate));
  }
  for (int i = 1; i <= options_.nodes; ++i) {
    const fs::path node = dir / ("node-" + std::to_string(i));
    fs::create_directories(node, ec);
    if (ec) return Status::IOError("cannot create " + node.string() + ": " + ec.message());
    if (fs::exists(node / "node.pem")) continue;
    BULWARK_ASSIGN_OR_RETURN(std::string ca_cert, ReadText(dir / "ca.pem"));
    BULWARK_ASSIGN_OR_RETURN(std::string ca_key, ReadText(dir / "ca.key"));
    BULWARK_ASSIGN_OR_RETURN(auto leaf, security::IssueCertificate({ca_cert, ca_key}, "node-" + std::to_string(i),
                                                                   {node_ip(i)}, {"localhost"}));
    BULWARK_RETURN_IF_ERROR(WritePrivate(node / "node.key", leaf.private_key));
    BULWARK_RETURN_IF_ERROR(WritePrivate(node / "node.pem", leaf.certificate));
  }
  return Status::Ok();
}

std::string LocalCluster::node_ip(int i) const {
  const std::string& ip = options_.ip;
  const size_t dot = ip.rfind('.');
  const int last = std::stoi(ip.substr(dot + 1)) + (i - 1);
  return ip.substr(0, dot + 1) + std::to_string(last);
}
std::string LocalCluster::node_endpoint(int i) const { return node_ip(i) + ":" + std::to_string(options_.port); }
std::string LocalCluster::node_peer_endpoint(int i) const {
  return node_ip(i) + ":" + std::to_string(options_.port + 1);
}
std::string LocalCluster::metrics_endpoint() const {
  return options_.metrics_port == 0 ? "" : node_ip(1) + ":" + std::to_string(options_.metrics_port);
}
std::string LocalCluster::node_log_path(int i) const {
  return (fs::path(options_.dir) / ("node-" + std::to_string(i)) / "bulwarkd.log").string();
}

std::string LocalCluster::members() const {
  std::string out;
  for (int i = 1; i <= options_.nodes; ++i) {
    if (!out.empty()) out += ",";
    out += std::to_string(i) + "=" + node_peer_endpoint(i);
  }
  return out;
}

std::vector<std::string> LocalCluster::Command(int i) const {
  const fs::path dir = fs::absolute(options_.dir);
  const fs::path node = dir / ("node-" + std::to_string(i));
  std::vector<std::string> cmd = {
      (fs::path(options_.bin_dir) / "bulwarkd").string(),
      "--node-id",
      "node-" + std::to_string(i),
      "--listen",
      node_endpoint(i),
      "--metrics-listen",
      options_.metrics_port == 0 ? "" : node_ip(i) + ":" + std::to_string(options_.metrics_port),
      "--data-dir",
      (node / "data").string(),
      "--master-key-uri",
      options_.master_key_uri.empty() ? "file:" + (dir / "master.key").string() : options_.master_key_uri,
      "--account-key-file",
      (dir / "account.key").string(),
      "--replica-id",
      std::to_string(i),
      "--peer-listen",
      node_peer_endpoint(i),
      "--members",
      members(),
  };
  if (options_.insecure) {
    cmd.push_back("--insecure");
  } else {
    for (const std::string& s : {std::string("--tls-cert"), (node / "node.pem").string(), std::string("--tls-key"),
                                 (node / "node.key").string(), std::string("--tls-ca"), (dir / "ca.pem").string()}) {
      cmd.push_back(s);
    }
  }
  cmd.insert(cmd.end(), options_.extra_args.begin(), options_.extra_args.end());
  return cmd;
}

client::ClientOptions LocalCluster::node_client_options(int i) const {
  client::ClientOptions o;
  o.endpoint = node_endpoint(i);
  o.ca_file = fs::absolute(fs::path(options_.dir) / "ca.pem").string();
  o.key = account_key_;
  o.insecure = options_.insecure;
  o.deadline = std::chrono::seconds(10);
  return o;
}

bool LocalCluster::running() const {
  for (pid_t p : pid_) {
    if (p > 0) return true;
  }
  return false;
}

Status LocalCluster::Start() {
  for (int i = 1; i <= options_.nodes; ++i) {
    if (!node_running(i)) BULWARK_RETURN_IF_ERROR(StartNode(i, /*wait_ready=*/false));
  }
  for (int i = 1; i <= options_.nodes; ++i) BULWARK_RETURN_IF_ERROR(StartNode(i, /*wait_ready=*/true));
  if (options_.nodes > 1) return WaitForLeader().status();
  return Status::Ok();
}

Status LocalCluster::StartNode(int i, bool wait_ready) {
  pid_t& pid = pid_.at(i - 1);
  if (pid <= 0) {
    std::vector<std::string> cmd = Command(i);
    std::vector<char*> argv;
    for (auto& a : cmd) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = node_log_path(i);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    // The child starts with no blocked signals, whatever its parent blocks.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    const int err = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (err != 0) {
      pid = -1;
      return Status::Unavailable("cannot start " + cmd[0] + ": " + std::strerror(err));
    }
  }
  if (!wait_ready) return Status::Ok();

  const auto deadline = std::chrono::steady_clock::now() + kNodeStartTimeout;
  Status last = Status::Unavailable("not ready yet");
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      pid = -1;
      return Status::Unavailable("bulwarkd node-" + std::to_string(i) + " exited during start-up; its log ends:\n" +
                                 LogTail(node_log_path(i)));
    }
    auto client = client::Client::Connect(node_client_options(i));
    if (client.ok()) {
      last = (*client)->GetStatus().status();
      if (last.ok()) return Status::Ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  KillNode(i);
  return Status::DeadlineExceeded("bulwarkd node-" + std::to_string(i) + " did not become ready (" + last.ToString() +
                                  "); its log ends:\n" + LogTail(node_log_path(i)));
}

int LocalCluster::Leader() const {
  int agreed = 0;
  for (int i = 1; i <= options_.nodes; ++i) {
    if (!node_running(i)) continue;
    auto client = client::Client::Connect(node_client_options(i));
    if (!client.ok()) return 0;
    auto status = (*client)->GetStatus();
    if (!status.ok() || status->leader_id == 0) return 0;
    const int lead = static_cast<int>(status->leader_id);
    if (agreed != 0 && agreed != lead) return 0;
    agreed = lead;
  }
  return agreed != 0 && node_running(agreed) ? agreed : 0;
}

Result<int> LocalCluster::WaitForLeader(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (int lead = Leader(); lead != 0) return lead;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::DeadlineExceeded("the replica set did not agree on a leader in time");
}

Result<int> LocalCluster::WaitExit(int i, std::chrono::milliseconds timeout) {
  pid_t& pid = pid_.at(i - 1);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      pid = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
    if (r < 0) {
      pid = -1;
      return Status::Internal("lost track of the node process");
    }
    if (std::chrono::steady_clock::now() >= deadline) return Status::DeadlineExceeded("still running");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<int> LocalCluster::StopNode(int i, std::chrono::milliseconds grace) {
  if (!node_running(i)) return Status::FailedPrecondition("node " + std::to_string(i) + " is not running");
  ::kill(node_pid(i), SIGTERM);
  auto code = WaitExit(i, grace);
  if (code.ok()) return code;
  KillNode(i);
  return Status::Internal("bulwarkd node-" + std::to_string(i) + " ignored SIGTERM for " +
                          std::to_string(grace.count()) + " ms and was killed");
}

Result<int> LocalCluster::Stop(std::chrono::milliseconds grace) {
  if (!running()) return Status::FailedPrecondition("the cluster is not running");
  // Followers first, the leader last: no needless elections on the way down.
  const int lead = options_.nodes > 1 ? Leader() : 0;
  for (int i = 1; i <= options_.nodes; ++i) {
    if (node_running(i) && i != lead) ::kill(node_pid(i), SIGTERM);
  }
  int worst = 0;
  Status failure;
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 1; i <= options_.nodes; ++i) {
      if (!node_running(i) || (pass == 0) == (i == lead)) continue;
      if (pass == 1) ::kill(node_pid(i), SIGTERM);
      auto code = WaitExit(i, grace);
      if (!code.ok()) {
        KillNode(i);
        failure = Status::Internal("bulwarkd node-" + std::to_string(i) + " ignored SIGTERM for " +
                                   std::to_string(grace.count()) + " ms and was killed");
        continue;
      }
      worst = std::max(worst, *code);
    }
  }
  if (!failure.ok()) return failure;
  return worst;
}

bool LocalCluster::Exited() {
  for (int i = 1; i <= options_.nodes; ++i) {
    pid_t& pid = pid_.at(i - 1);
    if (pid <= 0) continue;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      pid = -1;
      return true;
    }
  }
  return !running();
}

void LocalCluster::KillNode(int i) {
  pid_t& pid = pid_.at(i - 1);
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  pid = -1;
}

void LocalCluster::Kill() {
  for (int i = 1; i <= options_.nodes; ++i) KillNode(i);
}

}  // namespace bulwark::chaos
