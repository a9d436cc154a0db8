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
  std::unique_ptr<LocalCluster> cluster(new LocalCluster(options));
  BULWARK_RETURN_IF_ERROR(cluster->Layout());
  return cluster;
}

LocalCluster::~LocalCluster() { Kill(); }

Status LocalCluster::Layout() {
  const fs::path dir = options_.dir;
  std::error_code ec;
  fs::create_directories(dir / "node-1", ec);
  if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
  fs::permissions(dir, fs::perms::owner_all, ec);
  if (!fs::exists(dir / "master.key")) {
    const crypto::SecretBytes key = crypto::SecretBytes::Random(crypto::kMasterKeyBytes);
    BULWARK_RETURN_IF_ERROR(WritePrivate(dir / "master.key", crypto::Base64Encode(key.view()) + "\n"));
  }
  if (!fs::exists(dir / "ca.pem")) {
    BULWARK_ASSIGN_OR_RETURN(auto ca, security::GenerateCa("Bulwark local cluster CA"));
    BULWARK_RETURN_IF_ERROR(WritePrivate(dir / "ca.key", ca.private_key));
    BULWARK_RETURN_IF_ERROR(WritePrivate(dir / "ca.pem", ca.certificate));
  }
  const fs::path node = dir / "node-1";
  if (!fs::exists(node / "node.pem")) {
    BULWARK_ASSIGN_OR_RETURN(std::string ca_cert, ReadText(dir / "ca.pem"));
    BULWARK_ASSIGN_OR_RETURN(std::string ca_key, ReadText(dir / "ca.key"));
    BULWARK_ASSIGN_OR_RETURN(auto leaf, security::IssueCertificate({ca_cert, ca_key}, "node-1", {options_.ip},
                                                                   {"localhost"}));
    BULWARK_RETURN_IF_ERROR(WritePrivate(node / "node.key", leaf.private_key));
    BULWARK_RETURN_IF_ERROR(WritePrivate(node / "node.pem", leaf.certificate));
  }
  return Status::Ok();
}

std::string LocalCluster::endpoint() const { return options_.ip + ":" + std::to_string(options_.port); }
std::string LocalCluster::metrics_endpoint() const {
  return options_.metrics_port == 0 ? "" : options_.ip + ":" + std::to_string(options_.metrics_port);
}
std::string LocalCluster::log_path() const { return (fs::path(options_.dir) / "node-1" / "bulwarkd.log").string(); }

std::vector<std::string> LocalCluster::Command() const {
  const fs::path dir = fs::absolute(options_.dir);
  const fs::path node = dir / "node-1";
  std::vector<std::string> cmd = {
      (fs::path(options_.bin_dir) / "bulwarkd").string(),
      "--node-id", "node-1",
      "--listen", endpoint(),
      "--metrics-listen", metrics_endpoint(),
      "--data-dir", (node / "data").string(),
      "--master-key-uri",
      options_.master_key_uri.empty() ? "file:" + (dir / "master.key").string() : options_.master_key_uri,
      "--account-key-file", (dir / "account.key").string(),
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

client::ClientOptions LocalCluster::client_options() const {
  client::ClientOptions o;
  o.endpoint = endpoint();
  o.ca_file = fs::absolute(fs::path(options_.dir) / "ca.pem").string();
  o.key = account_key_;
  o.insecure = options_.insecure;
  o.deadline = std::chrono::seconds(10);
  return o;
}

Status LocalCluster::Start() {
  if (running()) return Status::FailedPrecondition("the node is already running");
  std::vector<std::string> cmd = Command();
  std::vector<char*> argv;
  for (auto& a : cmd) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  // The child starts with no blocked signals, whatever its parent blocks.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  const int err = ::posix_spawn(&pid_, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    pid_ = -1;
    return Status::Unavailable("cannot start " + cmd[0] + ": " + std::strerror(err));
  }

  const fs::path key_file = fs::path(options_.dir) / "account.key";
  const auto deadline = std::chrono::steady_clock::now() + kNodeStartTimeout;
  Status last = Status::Unavailable("not ready yet");
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Status::Unavailable("bulwarkd exited during start-up; its log ends:\n" + LogTail(log_path()));
    }
    if (account_key_.empty() && fs::exists(key_file)) {
      auto key = ReadText(key_file);
      if (key.ok()) account_key_ = Trim(*key);
    }
    if (!account_key_.empty()) {
      auto client = client::Client::Connect(client_options());
      if (client.ok()) {
        last = (*client)->GetStatus().status();
        if (last.ok()) return Status::Ok();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Kill();
  return Status::DeadlineExceeded("bulwarkd did not become ready (" + last.ToString() + "); its log ends:\n" +
                                  LogTail(log_path()));
}

Result<int> LocalCluster::WaitExit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
    if (r < 0) {
      pid_ = -1;
      return Status::Internal("lost track of the node process");
    }
    if (std::chrono::steady_clock::now() >= deadline) return Status::DeadlineExceeded("still running");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<int> LocalCluster::Stop(std::chrono::milliseconds grace) {
  if (!running()) return Status::FailedPrecondition("the node is not running");
  ::kill(pid_, SIGTERM);
  auto code = WaitExit(grace);
  if (code.ok()) return code;
  Kill();
  return Status::Internal("bulwarkd ignored SIGTERM for " + std::to_string(grace.count()) + " ms and was killed");
}

bool LocalCluster::Exited() {
  if (!running()) return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
  pid_ = -1;
  return true;
}

void LocalCluster::Kill() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace bulwark::chaos
