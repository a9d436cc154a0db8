#include "bench/kv_target.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <random>
#include <sstream>

#include <grpcpp/grpcpp.h>

#include "bench/etcd_cluster.h"
#include "chaos/local_cluster.h"
#include "client/client.h"
#include "proto/etcd_kv.grpc.pb.h"

namespace bulwark::bench {
namespace {

// Every request of both systems gets this deadline: long enough that a
// saturated server's queue shows as latency, not as errors.
constexpr std::chrono::seconds kRequestDeadline{10};

// One field of /proc/PID/status in kB ("VmRSS:  1234 kB"), 0 if absent.
double StatusKib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1));
  }
  return 0;
}

// utime + stime of a process in seconds (/proc/PID/stat fields 14 and 15;
// field 2, the command, is in parentheses and may hold spaces).
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  // After the command: state is field 3, so utime (14) is the 12th token.
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// A Bulwark item holding `value` under id (and partition key) `key`.
std::string ItemJson(const std::string& key, const std::string& value) {
  return R"({"id":")" + key + R"(","pk":")" + key + R"(","v":")" + value + "\"}";
}

class BulwarkTarget final : public KvTarget {
 public:
  BulwarkTarget(std::unique_ptr<chaos::LocalCluster> cluster, bool unencrypted)
      : cluster_(std::move(cluster)), unencrypted_(unencrypted) {
    // Request ids must be unique across runs of this process: a random tag.
    run_tag_ = std::to_string(std::random_device{}());
  }
  ~BulwarkTarget() override {
    clients_.clear();
    (void)cluster_->Stop(std::chrono::seconds(10));
  }
  std::string name() const override { return unencrypted_ ? "bulwark-plain" : "bulwark"; }
  std::string description() const override {
    return std::to_string(cluster_->size()) + "-node replica set, TLS, signed requests, fsync on, " +
           (unencrypted_ ? "items unsealed, files unencrypted (--benchmark-unencrypted)"
                         : "sealed items, encrypted files");
  }
  Status Connect(int clients) override {
    clients_.clear();
    for (int t = 0; t < clients; ++t) {
      client::ClientOptions options = cluster_->node_client_options(1 + t % cluster_->size());
      options.deadline = kRequestDeadline;
      auto c = client::Client::Connect(options);
      if (!c.ok()) return c.status();
      // One call first, so the TLS handshake is not timed in the first request.
      if (auto s = (*c)->GetStatus(); !s.ok()) return s.status();
      clients_.push_back(std::move(c).value());
    }
    return Status::Ok();
  }
  bool Put(int client, const std::string& key, const std::string& value) override {
    const std::string request_id = run_tag_ + "-" + std::to_string(next_request_++);
    return clients_[client]->UpsertItem("bench", "kv", ItemJson(key, value), request_id).ok();
  }
  bool Get(int client, const std::string& key, ReadLevel level) override {
    client::ReadOptions options;
    options.consistency = level == ReadLevel::kStrong    ? ConsistencyLevel::kStrong
                          : level == ReadLevel::kSession ? ConsistencyLevel::kSession
                                                         : ConsistencyLevel::kEventual;
    return clients_[client]->ReadItem("bench", "kv", "\"" + key + "\"", key, options).ok();
  }
  std::vector<pid_t> server_pids() const override {
    std::vector<pid_t> pids;
    for (int i = 1; i <= cluster_->size(); ++i) pids.push_back(cluster_->node_pid(i));
    return pids;
  }

 private:
  std::unique_ptr<chaos::LocalCluster> cluster_;
  bool unencrypted_ = false;
  std::vector<std::unique_ptr<client::Client>> clients_;
  std::string run_tag_;
  std::atomic<uint64_t> next_request_{0};
};

class EtcdTarget final : public KvTarget {
 public:
  explicit EtcdTarget(std::unique_ptr<EtcdCluster> cluster) : cluster_(std::move(cluster)) {}
  ~EtcdTarget() override {
    stubs_.clear();
    cluster_->Stop(std::chrono::seconds(10));
  }
  std::string name() const override { return "etcd"; }
  std::string description() const override {
    return std::to_string(cluster_->size()) + "-member etcd 3.4, TLS (peers mutual), no client auth, fsync on";
  }
  Status Connect(int clients) override {
    stubs_.clear();
    for (int t = 0; t < clients; ++t) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = cluster_->ca_pem();
      auto channel =
          grpc::CreateChannel(cluster_->client_endpoint(1 + t % cluster_->size()), grpc::SslCredentials(ssl));
      stubs_.push_back(etcdserverpb::KV::NewStub(channel));
      // One call first, as for Bulwark: the handshake is not timed.
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kRequestDeadline);
      etcdserverpb::RangeRequest request;
      request.set_key("bench-connect");
      request.set_serializable(true);
      etcdserverpb::RangeResponse response;
      if (grpc::Status s = stubs_.back()->Range(&ctx, request, &response); !s.ok()) {
        return Status::Unavailable("etcd: " + s.error_message());
      }
    }
    return Status::Ok();
  }
  bool Put(int client, const std::string& key, const std::string& value) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRequestDeadline);
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    etcdserverpb::PutResponse response;
    return stubs_[client]->Put(&ctx, request, &response).ok();
  }
  bool Get(int client, const std::string& key, ReadLevel level) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kRequestDeadline);
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    request.set_serializable(level != ReadLevel::kStrong);
    etcdserverpb::RangeResponse response;
    return stubs_[client]->Range(&ctx, request, &response).ok() && response.kvs_size() == 1;
  }
  std::vector<pid_t> server_pids() const override { return cluster_->pids(); }

 private:
  std::unique_ptr<EtcdCluster> cluster_;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs_;
};

}  // namespace

ServerUsage ReadServerUsage(const std::vector<pid_t>& pids) {
  ServerUsage u;
  for (pid_t pid : pids) {
    if (pid <= 0) continue;
    u.rss_mib += StatusKib(pid, "VmRSS") / 1024;
    u.peak_rss_mib += StatusKib(pid, "VmHWM") / 1024;
    u.cpu_s += CpuSeconds(pid);
  }
  return u;
}

Result<std::unique_ptr<KvTarget>> StartBulwark(const BulwarkTargetOptions& o) {
  chaos::ClusterOptions options;
  options.dir = o.dir;
  options.bin_dir = o.bin_dir;
  options.ip = o.ip;
  options.port = o.port;
  options.metrics_port = 0;
  options.nodes = o.nodes;
  // Strong as the account default: a request may only relax it, and the
  // benchmark reads at Strong, Session and Eventual.
  options.extra_args = {"--default-consistency", "Strong"};
  if (o.unencrypted) options.extra_args.push_back("--benchmark-unencrypted");
  auto cluster = chaos::LocalCluster::Prepare(options);
  if (!cluster.ok()) return cluster.status();
  if (Status s = (*cluster)->Start(); !s.ok()) return s;
  auto admin = client::Client::Connect((*cluster)->client_options());
  if (!admin.ok()) return admin.status();
  if (auto db = (*admin)->CreateDatabase("bench"); !db.ok()) return db.status();
  if (auto c = (*admin)->CreateContainer("bench", "kv", "/pk"); !c.ok()) return c.status();
  return std::unique_ptr<KvTarget>(new BulwarkTarget(std::move(cluster).value(), o.unencrypted));
}

Result<std::unique_ptr<KvTarget>> StartEtcd(const EtcdTargetOptions& o) {
  EtcdOptions options;
  options.dir = o.dir;
  options.binary = o.binary;
  options.ip = o.ip;
  options.members = o.members;
  auto cluster = EtcdCluster::Prepare(options);
  if (!cluster.ok()) return cluster.status();
  if (Status s = (*cluster)->Start(); !s.ok()) return s;
  return std::unique_ptr<KvTarget>(new EtcdTarget(std::move(cluster).value()));
}

}  // namespace bulwark::bench
