#include "chaos/disk_faults.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "client/client.h"

namespace bulwark::chaos {
namespace {

namespace fs = std::filesystem;

// A node's stores: the data store, and the control store on a voter.
std::vector<std::string> Stores(const std::string& data_dir) {
  std::vector<std::string> out;
  for (const char* name : {"store", "control"}) {
    if (fs::exists(fs::path(data_dir) / name)) out.push_back((fs::path(data_dir) / name).string());
  }
  return out;
}

bool Damageable(const std::string& name) {
  auto ends = [&](const std::string& s) { return name.size() > s.size() && name.ends_with(s); };
  return ends(".sst") || ends(".log") || name.rfind("MANIFEST-", 0) == 0;
}

// How long ReplaceNodeDisk retries a membership change the set refuses for
// now (a leader change, the previous change not yet applied).
constexpr std::chrono::seconds kMembershipRetry{30};

// A client of the node that leads the set, asking every running node but
// `except` (a node waiting to be added knows no leader).
Result<std::unique_ptr<client::Client>> LeaderClient(const LocalCluster& cluster, int except) {
  for (int i = 1; i <= cluster.size(); ++i) {
    if (i == except || !cluster.node_running(i)) continue;
    auto st = NodeStatus(cluster, i);
    if (!st.ok() || st->role != "leader") continue;
    client::ClientOptions o = cluster.node_client_options(i);
    o.max_retries = 0;
    return client::Client::Connect(o);
  }
  return Status::Unavailable("no node leads the replica set");
}

template <typename F>
Status RetryOnLeader(LocalCluster& cluster, int except, const char* what, F call) {
  const auto until = std::chrono::steady_clock::now() + kMembershipRetry;
  Status last;
  while (std::chrono::steady_clock::now() < until) {
    auto c = LeaderClient(cluster, except);
    last = c.ok() ? call(**c) : c.status();
    if (last.ok()) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return last.WithContext(what);
}

}  // namespace

Result<client::NodeStatus> NodeStatus(const LocalCluster& cluster, int x) {
  client::ClientOptions o = cluster.node_client_options(x);
  o.max_retries = 0;
  BULWARK_ASSIGN_OR_RETURN(auto c, client::Client::Connect(o));
  return c->GetStatus();
}

void EnableFsFaultHook() { ::setenv(storage::kFsFaultsEnv, "1", 1); }

Result<std::string> DropUnsynced(const std::string& data_dir) {
  storage::DropReport total;
  for (const std::string& store : Stores(data_dir)) {
    BULWARK_ASSIGN_OR_RETURN(auto r, storage::DropUnsyncedData(storage::FsFaultDir(store)));
    total.files_truncated += r.files_truncated;
    total.files_deleted += r.files_deleted;
    total.bytes_dropped += r.bytes_dropped;
  }
  return "dropped " + std::to_string(total.bytes_dropped) + " unsynced bytes (" +
         std::to_string(total.files_truncated) + " files cut, " + std::to_string(total.files_deleted) + " deleted)";
}

Status SetDiskFault(const std::string& data_dir, storage::FsFault fault) {
  for (const std::string& store : Stores(data_dir)) {
    BULWARK_RETURN_IF_ERROR(storage::SetFsFault(storage::FsFaultDir(store), fault));
  }
  return Status::Ok();
}

Result<std::string> Damage(const std::string& data_dir, std::mt19937_64& rng) {
  const fs::path store = fs::path(data_dir) / "store";
  std::vector<fs::path> files, wals;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(store, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || !Damageable(name)) continue;
    files.push_back(e.path());
    if (name.ends_with(".log")) wals.push_back(e.path());
  }
  if (ec) return Status::IOError("cannot list " + store.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  std::sort(wals.begin(), wals.end());
  if (files.empty()) return Status::NotFound("no SST, WAL or MANIFEST in " + store.string());
  const bool cut_tail = !wals.empty() && std::uniform_int_distribution<int>(0, 2)(rng) == 0;
  if (cut_tail) {
    // The newest WAL: its tail holds the last records written.
    const fs::path& wal = wals.back();
    const uintmax_t size = fs::file_size(wal, ec);
    if (ec || size == 0) return Status::NotFound("the newest WAL is empty");
    const uintmax_t cut = std::uniform_int_distribution<uintmax_t>(1, std::min<uintmax_t>(size, 8192))(rng);
    fs::resize_file(wal, size - cut, ec);
    if (ec) return Status::IOError("cannot truncate " + wal.string() + ": " + ec.message());
    return "cut " + std::to_string(cut) + " bytes off the tail of " + wal.filename().string();
  }
  const fs::path& f = files[std::uniform_int_distribution<size_t>(0, files.size() - 1)(rng)];
  const uintmax_t size = fs::file_size(f, ec);
  if (ec || size == 0) return Status::NotFound(f.string() + " is empty");
  const uintmax_t at = std::uniform_int_distribution<uintmax_t>(0, size - 1)(rng);
  const int bit = std::uniform_int_distribution<int>(0, 7)(rng);
  std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(static_cast<std::streamoff>(at));
  char byte = 0;
  io.read(&byte, 1);
  byte = static_cast<char>(byte ^ (1 << bit));
  io.seekp(static_cast<std::streamoff>(at));
  io.write(&byte, 1);
  io.close();
  if (!io) return Status::IOError("cannot flip a bit of " + f.string());
  return "flipped bit " + std::to_string(bit) + " of byte " + std::to_string(at) + "/" + std::to_string(size) + " of " +
         f.filename().string();
}

Status ReplaceNodeDisk(LocalCluster& cluster, int x) {
  const uint64_t id = static_cast<uint64_t>(x);
  BULWARK_RETURN_IF_ERROR(RetryOnLeader(cluster, x, "remove the damaged node", [&](client::Client& c) {
    auto r = c.RemoveNode(id);
    // Already removed by an earlier try whose answer was lost.
    if (!r.ok() && r.status().code() == Code::kNotFound) return Status::Ok();
    return r.status();
  }));
  // Everything but a control voter's store: the audit log and backups are
  // sealed under keys kept in the replica's store and go with it, while the
  // control group is another Raft group whose voter must not lose its state
  // (it has no way to rejoin; docs/control-group.md).
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cluster.node_data_dir(x), ec)) {
    const std::string name = e.path().filename().string();
    if (name == "control" || name == "control.faults") continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    if (rm) return Status::IOError("cannot wipe " + e.path().string() + ": " + rm.message());
  }
  if (ec) return Status::IOError("cannot list " + cluster.node_data_dir(x) + ": " + ec.message());
  cluster.set_node_join(x);
  BULWARK_RETURN_IF_ERROR(cluster.StartNode(x, /*wait_ready=*/false));
  BULWARK_RETURN_IF_ERROR(RetryOnLeader(cluster, x, "add the node back", [&](client::Client& c) {
    auto r = c.AddNode(id, cluster.node_peer_endpoint(x));
    if (!r.ok() && r.status().code() == Code::kAlreadyExists) return Status::Ok();
    return r.status();
  }));
  // Back once it follows a leader (it has the snapshot then, or is getting it).
  const auto until = std::chrono::steady_clock::now() + kMembershipRetry;
  while (std::chrono::steady_clock::now() < until) {
    (void)cluster.ReapExited();
    if (!cluster.node_running(x)) {
      return Status::Internal("node " + std::to_string(x) + " exited after its disk was replaced (see " +
                              cluster.node_log_path(x) + ")");
    }
    auto st = NodeStatus(cluster, x);
    if (st.ok() && st->leader_id != 0 && st->role != "stopped") return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return Status::DeadlineExceeded("node " + std::to_string(x) + " did not rejoin its replica set");
}

}  // namespace bulwark::chaos
