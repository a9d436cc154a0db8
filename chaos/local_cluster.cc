#include "chaos/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/clock.h"
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

fs::path NodeDir(const fs::path& dir, int i) { return dir / ("node-" + std::to_string(i)); }

// The highest i for which `dir`/node-i/data exists, counting up from 1: the
// size of the replica set whose data is in `dir` (0 if none).
int NodesWithData(const fs::path& dir) {
  int n = 0;
  while (n < 64 && fs::exists(NodeDir(dir, n + 1) / "data")) ++n;  // bounded: Prepare allows 9 nodes
  return n;
}

// True if `pid` is a live (not zombie) process whose --data-dir is
// `data_dir`: a bulwarkd of that node, not a process that was given the pid
// after the node ended. Paths are compared canonically, so `.bulwark` and
// `./.bulwark/` name the same node.
bool IsNodeProcess(pid_t pid, const fs::path& data_dir) {
  if (pid <= 0) return false;
  auto stat = ReadText("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return false;
  // "pid (comm) S ...": the state follows the last ')' (comm may hold one).
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return false;
  const char state = (*stat)[paren + 2];
  if (state == 'Z' || state == 'X') return false;
  auto cmdline = ReadText("/proc/" + std::to_string(pid) + "/cmdline");
  if (!cmdline.ok()) return false;
  std::vector<std::string> args;
  size_t start = 0;
  while (start < cmdline->size()) {  // bounded by the command line's length
    size_t end = cmdline->find('\0', start);
    if (end == std::string::npos) end = cmdline->size();
    args.push_back(cmdline->substr(start, end - start));
    start = end + 1;
  }
  std::error_code ec;
  const fs::path want = fs::weakly_canonical(fs::absolute(data_dir), ec);
  if (ec) return false;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] != "--data-dir") continue;
    const fs::path have = fs::weakly_canonical(args[i + 1], ec);
    return !ec && have == want;
  }
  return false;
}

// The pid in a pid file, or -1 if it is missing or unreadable.
pid_t ReadPidFile(const fs::path& path) {
  auto text = ReadText(path);
  if (!text.ok()) return -1;
  try {
    const long pid = std::stol(*text);
    return pid > 0 ? static_cast<pid_t>(pid) : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

// Written whole or not at all (rename), so a reader never sees half a pid.
Status WritePidFile(const fs::path& path, pid_t pid) {
  const fs::path tmp = path.string() + ".tmp";
  BULWARK_RETURN_IF_ERROR(WritePrivate(tmp, std::to_string(pid) + "\n"));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Status::IOError("cannot write " + path.string() + ": " + ec.message());
  return Status::Ok();
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
  BULWARK_RETURN_IF_ERROR(CheckNoOtherLayout());
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

// Each store records the membership it first ran with and keeps it over the
// --members flag, so data laid out for one replica-set size must not be
// started as another: a one-node store would elect itself alone beside the
// new set (two leaders), and a node of a larger set alone never reaches a
// quorum. Refused before anything is written or started, with the way out.
Status LocalCluster::CheckNoOtherLayout() const {
  const fs::path dir = options_.dir;
  const int existing = NodesWithData(dir);
  if (existing == 0 || existing == options_.nodes) return Status::Ok();
  const std::string wanted = std::to_string(options_.nodes);
  const std::string have = std::to_string(existing);
  std::string what = existing == 1 ? "a one-node cluster (node-1/data, no node-2/data)"
                                   : "a " + have + "-node replica set (node-1/data to node-" + have + "/data)";
  return Status::FailedPrecondition(dir.string() + " holds the data of " + what + ": its stores recorded a " + have +
                                    "-member membership and will not form a " + wanted +
                                    "-node replica set. Start it as it was with --nodes " + have + ", or remove " +
                                    dir.string() + " (this deletes its data) to lay out a new " + wanted + "-node set");
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

void LocalCluster::set_node_join(int i) {
  std::vector<std::string>& args = options_.node_args[i];
  if (std::find(args.begin(), args.end(), "--join") == args.end()) args.push_back("--join");
}

std::string LocalCluster::node_data_dir(int i) const { return (NodeDir(options_.dir, i) / "data").string(); }

std::string LocalCluster::node_pid_path(int i) const { return (NodeDir(options_.dir, i) / kPidFileName).string(); }

// A founding node knows the founders; a spare knows everyone (it learns the
// real membership from the leader once added).
std::string LocalCluster::members(int node) const {
  std::string out;
  const int last = node <= founding() ? founding() : options_.nodes;
  for (int i = 1; i <= last; ++i) {
    if (!out.empty()) out += ",";
    out += std::to_string(i) + "=" + node_peer_endpoint(i);
  }
  return out;
}

Result<std::string> LocalCluster::NewNodeMasterKey(int i) const {
  const fs::path path = fs::absolute(options_.dir) / ("node-" + std::to_string(i)) /
                        ("master-" + std::to_string(UnixNowMillis()) + ".key");
  const crypto::SecretBytes key = crypto::SecretBytes::Random(crypto::kMasterKeyBytes);
  BULWARK_RETURN_IF_ERROR(WritePrivate(path, crypto::Base64Encode(key.view()) + "\n"));
  return "file:" + path.string();
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
      options_.node_master_key_uri.count(i) > 0 ? options_.node_master_key_uri.at(i)
      : options_.master_key_uri.empty()         ? "file:" + (dir / "master.key").string()
                                                : options_.master_key_uri,
      "--account-key-file",
      (dir / "account.key").string(),
      "--replica-id",
      std::to_string(i),
      "--peer-listen",
      node_peer_endpoint(i),
      "--members",
      members(i),
  };
  if (i > founding()) cmd.push_back("--join");
  if (options_.insecure) {
    cmd.push_back("--insecure");
  } else {
    for (const std::string& s : {std::string("--tls-cert"), (node / "node.pem").string(), std::string("--tls-key"),
                                 (node / "node.key").string(), std::string("--tls-ca"), (dir / "ca.pem").string()}) {
      cmd.push_back(s);
    }
  }
  cmd.insert(cmd.end(), options_.extra_args.begin(), options_.extra_args.end());
  if (auto it = options_.node_args.find(i); it != options_.node_args.end()) {
    cmd.insert(cmd.end(), it->second.begin(), it->second.end());
  }
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

client::ClientOptions LocalCluster::failover_client_options() const {
  client::ClientOptions o = node_client_options(1);
  for (int i = 1; i <= options_.nodes; ++i) o.endpoints.push_back(node_endpoint(i));
  return o;
}

bool LocalCluster::running() const {
  for (pid_t p : pid_) {
    if (p > 0) return true;
  }
  return false;
}

Status LocalCluster::Start() {
  for (int i = 1; i <= founding(); ++i) {
    if (!node_running(i)) BULWARK_RETURN_IF_ERROR(StartNode(i, /*wait_ready=*/false));
  }
  for (int i = 1; i <= founding(); ++i) BULWARK_RETURN_IF_ERROR(StartNode(i, /*wait_ready=*/true));
  if (founding() > 1) return WaitForLeader().status();
  return Status::Ok();
}

Status LocalCluster::StartNode(int i, bool wait_ready) {
  pid_t& pid = pid_.at(i - 1);
  if (pid <= 0) {
    // Another cluster (another `cluster up`) already runs this node: a second
    // process would fail to bind and, worse, overwrite the first's pid file.
    const pid_t other = ReadPidFile(node_pid_path(i));
    if (IsNodeProcess(other, NodeDir(options_.dir, i) / "data")) {
      return Status::FailedPrecondition("bulwarkd node-" + std::to_string(i) + " already runs from " + options_.dir +
                                        " (pid " + std::to_string(other) + "); stop it first (bulwark cluster down)");
    }
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
    if (Status s = WritePidFile(node_pid_path(i), pid); !s.ok()) {
      KillNode(i);
      return s;
    }
  }
  if (!wait_ready) return Status::Ok();

  const auto deadline = std::chrono::steady_clock::now() + kNodeStartTimeout;
  Status last = Status::Unavailable("not ready yet");
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      Forget(i);
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
      Forget(i);
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
    if (r < 0) {
      Forget(i);
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

std::vector<LocalCluster::NodeExit> LocalCluster::ReapExited() {
  std::vector<NodeExit> exits;
  for (int i = 1; i <= options_.nodes; ++i) {
    const pid_t pid = pid_.at(i - 1);
    if (pid <= 0) continue;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      Forget(i);
      exits.push_back({i, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)});
    }
  }
  return exits;
}

bool LocalCluster::Exited() { return !ReapExited().empty() || !running(); }

void LocalCluster::Forget(int i) {
  pid_.at(i - 1) = -1;
  std::error_code ec;
  fs::remove(node_pid_path(i), ec);  // already gone (cluster down removed it) is fine
}

void LocalCluster::KillNode(int i) {
  pid_t& pid = pid_.at(i - 1);
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  Forget(i);
}

void LocalCluster::Kill() {
  for (int i = 1; i <= options_.nodes; ++i) KillNode(i);
}

std::vector<LocalCluster::NodeStopReport> LocalCluster::StopFromPidFiles(const std::string& dir,
                                                                         std::chrono::milliseconds grace) {
  struct Target {
    NodeStopReport report;
    fs::path pid_file;
    fs::path data_dir;
  };
  std::vector<Target> targets;
  // Node directories are numbered from 1; a gap ends the set. Bounded like
  // NodesWithData.
  for (int i = 1; i <= 64 && fs::exists(NodeDir(dir, i)); ++i) {
    const fs::path pid_file = NodeDir(dir, i) / kPidFileName;
    if (!fs::exists(pid_file)) continue;
    Target t{{i, ReadPidFile(pid_file), NodeStopReport::Outcome::kNotRunning}, pid_file, NodeDir(dir, i) / "data"};
    if (IsNodeProcess(t.report.pid, t.data_dir)) {
      ::kill(t.report.pid, SIGTERM);
      t.report.outcome = NodeStopReport::Outcome::kStopped;
    }
    targets.push_back(std::move(t));
  }
  // The nodes are not our children, so there is no waitpid: poll until each
  // process is gone (or a zombie its parent has yet to reap).
  const auto deadline = std::chrono::steady_clock::now() + grace;
  auto any_running = [&] {
    for (const Target& t : targets) {
      if (t.report.outcome == NodeStopReport::Outcome::kStopped && IsNodeProcess(t.report.pid, t.data_dir)) return true;
    }
    return false;
  };
  while (any_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (Target& t : targets) {
    if (t.report.outcome == NodeStopReport::Outcome::kStopped && IsNodeProcess(t.report.pid, t.data_dir)) {
      ::kill(t.report.pid, SIGKILL);
      t.report.outcome = NodeStopReport::Outcome::kKilled;
    }
    // The owner removes the pid file when it reaps the node; remove it here
    // too for a node whose owner is gone (its `cluster up` was killed), but
    // only if it still names the process just stopped.
    std::error_code ec;
    if (ReadPidFile(t.pid_file) == t.report.pid) fs::remove(t.pid_file, ec);
  }
  std::vector<NodeStopReport> reports;
  for (const Target& t : targets) reports.push_back(t.report);
  return reports;
}

}  // namespace bulwark::chaos
