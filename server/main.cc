// bulwarkd: one Bulwark node. Configuration from a YAML file and flags (see
// docs/configuration.md); TLS unless --insecure; a metrics/health HTTP port;
// graceful shutdown on SIGTERM/SIGINT.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "crypto/master_key.h"
#include "replication/replica.h"
#include "security/request_signing.h"
#include "server/access_service.h"
#include "server/backup_worker.h"
#include "server/config.h"
#include "server/control.h"
#include "server/geo.h"
#include "server/node_setup.h"
#include "server/services.h"

namespace fs = std::filesystem;
using namespace bulwark;
using namespace bulwark::server;

namespace {

constexpr std::string_view kPrimaryKeySecret = "account-key/primary";
// How long a draining node keeps answering UNAVAILABLE before it closes its
// port, so clients with requests on the wire hear a clear refusal.
constexpr uint32_t kDrainLingerMs = 200;
// gRPC's own stop after a complete drain (see Run).
constexpr uint32_t kGrpcStopMs = 500;
// How long a stopping leader waits for a follower to take over.
constexpr std::chrono::milliseconds kHandOffWait{2000};

Result<std::string> ReadFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + std::string(what) + " '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Writes the account key once, 0600, for the operator or the cluster launcher.
Status WriteAccountKeyFile(const std::string& path, const crypto::SecretBytes& key) {
  if (path.empty() || fs::exists(path)) return Status::Ok();
  const mode_t old_mask = ::umask(077);
  std::ofstream out(path, std::ios::binary);
  out << crypto::Base64Encode(key.view()) << "\n";
  out.close();
  ::umask(old_mask);
  if (!out) return Status::IOError("cannot write the account key file '" + path + "'");
  spdlog::info("event=account_key_written path={}", path);
  return Status::Ok();
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

Result<replication::PeerTls> PeerCredentials(const NodeConfig& c) {
  replication::PeerTls tls;
  if (c.insecure) {
    tls.insecure = true;
    return tls;
  }
  if (c.tls_ca_file.empty()) {
    return Status::InvalidArgument("tls.ca_file is required: peers authenticate each other with the cluster CA");
  }
  BULWARK_ASSIGN_OR_RETURN(tls.ca_pem, ReadFile(c.tls_ca_file, "TLS CA"));
  BULWARK_ASSIGN_OR_RETURN(tls.cert_pem, ReadFile(c.tls_cert_file, "TLS certificate"));
  BULWARK_ASSIGN_OR_RETURN(tls.key_pem, ReadFile(c.tls_key_file, "TLS key"));
  tls.ca_file = c.tls_ca_file;
  tls.cert_file = c.tls_cert_file;
  tls.key_file = c.tls_key_file;
  tls.min_version = c.tls_min_version;
  return tls;
}

Result<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(const NodeConfig& c) {
  if (c.insecure) {
    spdlog::warn(
        "event=insecure note=\"--insecure: the client port serves PLAINTEXT; anyone on the network can "
        "read and alter requests. Never use this outside a test.\"");
    return grpc::InsecureServerCredentials();
  }
  // Clients authenticate with signed requests or tokens; a client may also
  // present a certificate from the cluster CA, whose subject alternative
  // names are then its identity for RBAC. Optional, but verified if sent.
  security::TlsServerConfig tls;
  tls.cert_file = c.tls_cert_file;
  tls.key_file = c.tls_key_file;
  tls.ca_file = c.tls_ca_file;
  tls.min_version = c.tls_min_version;
  tls.client_certificates =
      c.tls_ca_file.empty() ? security::ClientCertificates::kNone : security::ClientCertificates::kOptional;
  tls.name = "client port";
  return security::MakeTlsServerCredentials(tls);
}

// A leader that is asked to stop hands its leadership to the most caught-up
// follower first (Raft's TimeoutNow), so a clean restart costs the set a
// round trip instead of an election timeout. Bounded: if no follower takes
// over in time, the node stops anyway and the others elect.
void HandOffLeadership(replication::Replica& replica) {
  const replication::ReplicaStatus s = replica.status();
  if (s.role != "leader" || s.voters.size() < 2) return;
  uint64_t best = 0, best_match = 0;
  for (const auto& [id, match] : s.match) {
    if (id != s.node_id && match >= best_match) {
      best = id;
      best_match = match;
    }
  }
  if (best == 0 || !replica.TransferLeadership(best).ok()) return;
  const auto deadline = std::chrono::steady_clock::now() + kHandOffWait;
  while (replica.is_leader() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  spdlog::info("event=leadership_handed_off to={} done={}", best, !replica.is_leader());
}

// Blocks SIGTERM/SIGINT in every thread (called before any thread starts) so
// that one thread can wait for them with sigwait.
sigset_t BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int Run(NodeConfig config) {
  const sigset_t signals = BlockShutdownSignals();
  auto master = crypto::LoadMasterKey(config.master_key_uri);
  if (!master.ok()) {
    spdlog::critical("event=start_failed error=\"{}\"", master.status().ToString());
    return 1;
  }
  storage::StoreOptions store_options;
  store_options.path = (fs::path(config.data_dir) / "store").string();
  // The raft log shares the store's WAL and is fsync'd before anything is
  // acknowledged; applying committed entries need not sync again (a crash
  // replays them from the log, which is never compacted past what the store
  // has synced).
  store_options.sync_writes = false;
  if (config.benchmark_unencrypted) {
    store_options.seal_items = false;
    store_options.encrypt_files = false;
    spdlog::critical(
        "event=benchmark_unencrypted note=\"items are stored UNSEALED on UNENCRYPTED files: for measuring what "
        "encryption costs, never for data\"");
  }
  // The backup worker needs the key too: a second handle, not a second
  // load (a command: provider may be a KMS round trip).
  crypto::MasterKey backup_key = master->Clone();
  crypto::MasterKey control_key = master->Clone();
  auto store = storage::DocumentStore::Open(store_options, std::move(master).value());
  if (!store.ok()) {
    spdlog::critical("event=start_failed error=\"{}\"", store.status().ToString());
    return 1;
  }
  // A replica set shares one account key: the launcher writes it to the
  // account key file before the nodes start, and each imports it once.
  std::optional<crypto::SecretBytes> given_key;
  if (!config.account_key_file.empty() && fs::exists(config.account_key_file)) {
    auto text = ReadFile(config.account_key_file, "account key file");
    auto key = text.ok() ? crypto::Base64DecodeSecret(Trim(*text)) : Result<crypto::SecretBytes>(text.status());
    if (!key.ok() || key->size() != security::kAccountKeyBytes) {
      spdlog::critical("event=start_failed error=\"the account key file '{}' does not hold a base64 key of {} bytes\"",
                       config.account_key_file, security::kAccountKeyBytes);
      return 1;
    }
    given_key = std::move(key).value();
  }
  auto primary = (*store)->LoadOrCreateSecret(kPrimaryKeySecret, security::kAccountKeyBytes,
                                              given_key ? given_key->view() : std::string_view());
  // Once the account's replicated keys exist, the file was only the first
  // primary (a regenerated primary may have replaced it there): no longer
  // this node's concern.
  auto replicated_keys = (*store)->AccountKeys();
  const bool bootstrapped = replicated_keys.ok() && !replicated_keys->empty();
  if (primary.ok() && given_key && !primary->value.Equals(*given_key) && !bootstrapped) {
    spdlog::critical("event=start_failed error=\"the account key file '{}' differs from the key this node holds\"",
                     config.account_key_file);
    return 1;
  }
  if (!primary.ok()) {
    spdlog::critical("event=start_failed error=\"{}\"", primary.status().ToString());
    return 1;
  }
  if (Status s = WriteAccountKeyFile(config.account_key_file, primary->value); !s.ok()) {
    spdlog::critical("event=start_failed error=\"{}\"", s.ToString());
    return 1;
  }

  auto members = ParseMembers(config.replica);
  auto peer_tls = PeerCredentials(config);
  if (!members.ok() || !peer_tls.ok()) {
    spdlog::critical("event=start_failed error=\"{}\"",
                     (!members.ok() ? members.status() : peer_tls.status()).ToString());
    return 1;
  }
  replication::ReplicaOptions replica_options;
  replica_options.node_id = config.replica.id;
  replica_options.members = *members;
  replica_options.tick = std::chrono::milliseconds(config.replica.tick_ms);
  replica_options.election_ticks = static_cast<int>(config.replica.election_ticks);
  replica_options.snapshot_entries = config.replica.snapshot_entries;
  replica_options.keep_entries = config.replica.snapshot_entries / 4;
  replica_options.sync_log = config.sync_writes;
  replica_options.join = config.replica.join;
  replication::TransportOptions transport_options;
  transport_options.listen_address = config.replica.peer_address;
  transport_options.source_ip = config.replica.peer_address.substr(0, config.replica.peer_address.rfind(':'));
  transport_options.tls = std::move(peer_tls).value();
  transport_options.peer_allowlist = config.replica.peer_allowlist;
  auto replica = replication::Replica::Start(replica_options, store->get(), std::move(transport_options));
  if (!replica.ok()) {
    spdlog::critical("event=start_failed error=\"{}\"", replica.status().ToString());
    return 1;
  }

  // A control group voter: its own store and replica set, on its control port.
  std::unique_ptr<ControlMember> control;
  if (config.control.id != 0) {
    auto started = PeerCredentials(config);
    auto member = started.ok() ? ControlMember::Start(config, std::move(control_key), std::move(started).value())
                               : Result<std::unique_ptr<ControlMember>>(started.status());
    if (!member.ok()) {
      spdlog::critical("event=start_failed error=\"control group: {}\"", member.status().ToString());
      return 1;
    }
    control = std::move(member).value();
  }
  // A witness only votes: it takes no part in geo-replication.
  if (config.witness) config.geo.regions.clear();

  Metrics metrics;
  NodeContext node;
  node.control = control.get();
  WritePath writes(&node);
  node.replica = replica->get();
  node.writes = &writes;
  // Purges applied here (or missed while down) shred this node's files.
  ShredWorker shred;
  shred.Start(store->get(), replica->get());
  node.shred = &shred;
  (*replica)->set_forward_handler([&writes](const v1::ForwardRequest& r) { return writes.HandleForward(r); });
  node.config = &config;
  node.store = store->get();
  node.metrics = &metrics;
  BackupWorker backups(&node, std::move(backup_key));
  node.backups = &backups;
  shred.set_before_shred(
      [&backups](const std::vector<storage::PendingShred>& purges) { return backups.ForgetPurged(purges); });
  auto geo = Geo::Start(&node);
  if (!geo.ok()) {
    spdlog::critical("event=start_failed error=\"{}\"", geo.status().ToString());
    return 1;
  }
  node.geo = geo->get();
  (*replica)->set_region_append_handler(
      [g = geo->get()](const v1::RegionAppendRequest& r) { return g->OnRegionAppend(r); });
  (*replica)->set_region_image_handler(
      [g = geo->get()](const v1::RegionImageHeader& h, const replication::TransportHandler::ChunkReader& next) {
        return g->OnRegionImage(h, next);
      });
  // The log is kept for whichever needs more of it: a lagging region's
  // stream, or the continuous-backup archive.
  (*replica)->set_log_retention([g = geo->get(), &backups] {
    const uint64_t region = g->RetainFrom(), archive = backups.RetainFrom();
    return region == 0 ? archive : archive == 0 ? region : std::min(region, archive);
  });

  AccessControl access(store->get(), std::move(primary->value));
  node.access = &access;
  if (node.store->store_key_versions_held() > 1) {
    // A store-key rotation that did not finish before the last stop resumes.
    std::lock_guard lock(node.rewrite_mu);
    StartStoreKeyRewriteLocked(&node);
    spdlog::info("event=store_key_rewrite_resumed versions_held={}", node.store->store_key_versions_held());
  }
  // Response to attacks, and the audit log.
  AuthGuard guard(config.defense);
  RateLimiter limiter(config.defense);
  Alerts alerts;
  node.guard = &guard;
  node.limiter = &limiter;
  node.alerts = &alerts;
  security::AuditKeys audit_keys;
  std::unique_ptr<security::AuditLog> audit;
  if (config.audit_enabled) {
    auto keys = LoadAuditKeys(*node.store);
    auto log = keys.ok() ? OpenAuditLog(config, {keys->encryption_key.Clone(), keys->signing_seed.Clone()}, *node.store)
                         : Result<std::unique_ptr<security::AuditLog>>(keys.status());
    if (!log.ok()) {
      spdlog::critical("event=start_failed error=\"audit log: {}\"", log.status().ToString());
      return 1;
    }
    audit_keys = std::move(keys).value();
    audit = std::move(log).value();
    node.audit = audit.get();
    node.audit_keys = &audit_keys;
    node.audit_dir = (fs::path(config.data_dir) / "audit").string();
  }
  RegisterNodeMetrics(metrics, node);

  auto creds = MakeCredentials(config);
  if (!creds.ok()) {
    spdlog::critical("event=start_failed error=\"{}\"", creds.status().ToString());
    return 1;
  }
  DocumentService documents(&node);
  AdminService admin(&node);
  AccessService access_service(&node);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(config.listen_address, *creds, &bound_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.limits.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config.limits.max_message_bytes));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, static_cast<int>(config.limits.max_concurrent_streams));
  builder.RegisterService(&documents);
  builder.RegisterService(&admin);
  builder.RegisterService(&access_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    spdlog::critical("event=start_failed error=\"cannot listen on {}\"", config.listen_address);
    return 1;
  }

  httplib::Server http;
  std::thread http_thread;
  if (!config.metrics_address.empty()) {
    http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.Render(), "text/plain; version=0.0.4");
    });
    http.Get("/healthz",
             [&](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
    const auto colon = config.metrics_address.rfind(':');
    const std::string host = config.metrics_address.substr(0, colon);
    const int port = std::stoi(config.metrics_address.substr(colon + 1));
    if (!http.bind_to_port(host, port)) {
      spdlog::critical("event=start_failed error=\"cannot listen on {} (metrics)\"", config.metrics_address);
      server->Shutdown();
      return 1;
    }
    http_thread = std::thread([&] { http.listen_after_bind(); });
  }
  spdlog::info(
      "event=ready node={} replica_id={} region={} listen={} peer_listen={} members={} tls={} metrics={} "
      "master_key={} applied={}",
      config.node_id, config.replica.id, config.region, config.listen_address, config.replica.peer_address,
      members->size(), !config.insecure, config.metrics_address, node.store->master_key_id(),
      node.replica->applied_index());

  // A read region's account keys come with the stream from the write region.
  AccountKeyBootstrap key_bootstrap(&node);
  if (node.geo->is_write_region()) key_bootstrap.Start();
  backups.Start();

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  key_bootstrap.Stop();
  backups.Stop();
  shred.set_before_shred({});  // the hook points at `backups`, which goes first
  spdlog::info("event=shutting_down signal={} grace_ms={}", signal_number, config.limits.shutdown_grace_ms);
  HandOffLeadership(*node.replica);
  // Drain first: refuse new requests with UNAVAILABLE (clients retry
  // elsewhere, knowing nothing was applied) while running ones finish. Only
  // then stop gRPC, which would CANCEL calls it has queued, an ambiguous
  // answer for a write. Finally close the store, which flushes it.
  node.draining = true;
  const auto drain_deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config.limits.shutdown_grace_ms / 2);
  while (node.in_flight > 0 && std::chrono::steady_clock::now() < drain_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  spdlog::info("event=drained in_flight={}", node.in_flight.load());
  std::this_thread::sleep_for(
      std::chrono::milliseconds(std::min<uint32_t>(kDrainLingerMs, config.limits.shutdown_grace_ms)));
  // gRPC's Shutdown waits for idle client connections to go away, for up to
  // its deadline. After a full drain nothing is left to protect, so give it a
  // short one; if handlers are still running, they keep the full grace.
  const auto grpc_grace = node.in_flight > 0 ? std::chrono::milliseconds(config.limits.shutdown_grace_ms)
                                             : std::chrono::milliseconds(kGrpcStopMs);
  server->Shutdown(std::chrono::system_clock::now() + grpc_grace);
  server->Wait();
  spdlog::info("event=grpc_stopped");
  if (http_thread.joinable()) {
    http.stop();
    http_thread.join();
  }
  // A running rewrite (compaction) must end before the store closes. The
  // thread takes rewrite_mu as it finishes, so join it outside the lock.
  std::thread rewrite;
  {
    std::lock_guard lock(node.rewrite_mu);
    rewrite = std::move(node.rewrite_thread);
  }
  if (rewrite.joinable()) rewrite.join();
  // Every request has ended: seal the audit log's segment.
  if (audit) {
    if (Status s = CloseAuditLog(*audit, *node.store); !s.ok()) {
      spdlog::error("event=audit_close_failed error=\"{}\"", s.ToString());
    }
  }
  shred.Stop();
  // The replica applies to the store: it stops first.
  node.geo->Stop();  // the stream uses the replica
  if (control) control->Stop();
  (*replica)->Stop();
  replica->reset();
  store->reset();
  spdlog::info("event=stopped node={}", config.node_id);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // gRPC's absl Mutexes run a deadlock detector (a lock graph updated on
  // every acquisition) unless told not to; it showed as 2-4% of CPU under
  // load. Bulwark's own locks do not use absl.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App app{"bulwarkd: a Bulwark node"};
  std::string config_file;
  NodeConfig flags;
  std::string consistency;
  app.add_option("--config", config_file, "YAML configuration file");
  auto* node_id = app.add_option("--node-id", flags.node_id, "this node's id");
  auto* region = app.add_option("--region", flags.region, "this node's region");
  auto* listen = app.add_option("--listen", flags.listen_address, "client API host:port");
  auto* metrics_listen =
      app.add_option("--metrics-listen", flags.metrics_address, "metrics/health host:port ('' disables)");
  auto* data_dir = app.add_option("--data-dir", flags.data_dir, "data directory");
  auto* key_uri = app.add_option("--master-key-uri", flags.master_key_uri, "file:PATH, env:VAR or command:PATH ARGS");
  auto* tls_cert = app.add_option("--tls-cert", flags.tls_cert_file, "TLS certificate (PEM)");
  auto* tls_key = app.add_option("--tls-key", flags.tls_key_file, "TLS private key (PEM)");
  auto* tls_ca = app.add_option("--tls-ca", flags.tls_ca_file, "cluster CA (PEM)");
  std::vector<std::string> overrides;
  app.add_option("--set", overrides, "KEY=VALUE: any config key (docs/configuration.md); repeatable, applied last");
  std::string tls_min_version;
  auto* tls_min = app.add_option("--tls-min-version", tls_min_version, "lowest TLS version accepted: 1.2 or 1.3");
  auto* account_key = app.add_option("--account-key-file", flags.account_key_file,
                                     "write the generated primary account key here once (0600)");
  auto* level = app.add_option("--default-consistency", consistency, "account default consistency level");
  auto* insecure = app.add_flag("--insecure", flags.insecure, "serve PLAINTEXT gRPC (tests only)");
  // A command-line flag only, never a config key: a file cannot turn it on
  // by accident. The store records the mode and refuses to open in the other.
  bool benchmark_unencrypted = false;
  app.add_flag("--benchmark-unencrypted", benchmark_unencrypted,
               "BENCHMARKS ONLY: store items unsealed on unencrypted files, to measure what encryption costs (a "
               "new data directory only; it can never be opened encrypted)");
  auto* log_level = app.add_option("--log-level", flags.log_level, "debug, info, warn or error");
  auto* replica_id = app.add_option("--replica-id", flags.replica.id, "this node's id in its replica set (>= 1)");
  auto* peer_listen =
      app.add_option("--peer-listen", flags.replica.peer_address, "node-to-node host:port (mutual TLS)");
  auto* members = app.add_option("--members", flags.replica.members, "every member: 1=ip:port,2=ip:port,...");
  auto* tick_ms = app.add_option("--tick-ms", flags.replica.tick_ms, "raft tick in milliseconds");
  auto* join = app.add_flag("--join", flags.replica.join,
                            "join an existing replica set (after `bulwark node add`) instead of founding one");
  bool witness = false;
  app.add_flag("--witness", witness,
               "a control group witness: votes (control.id, control.members) and stores no documents");
  auto* snapshot_entries = app.add_option("--snapshot-entries", flags.replica.snapshot_entries,
                                          "compact the raft log beyond this many entries");
  CLI11_PARSE(app, argc, argv);

  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z level=%l %v");
  NodeConfig config;
  if (!config_file.empty()) {
    if (Status s = LoadConfigFile(config_file, config); !s.ok()) {
      std::cerr << "bulwarkd: " << s.message() << "\n";
      return 2;
    }
  }
  // Flags given on the command line override the file.
  if (*node_id) config.node_id = flags.node_id;
  if (*region) config.region = flags.region;
  if (*listen) config.listen_address = flags.listen_address;
  if (*metrics_listen) config.metrics_address = flags.metrics_address;
  if (*data_dir) config.data_dir = flags.data_dir;
  if (*key_uri) config.master_key_uri = flags.master_key_uri;
  if (*tls_cert) config.tls_cert_file = flags.tls_cert_file;
  if (*tls_key) config.tls_key_file = flags.tls_key_file;
  if (*tls_ca) config.tls_ca_file = flags.tls_ca_file;
  if (*tls_min) {
    auto v = security::ParseTlsVersion(tls_min_version);
    if (!v.ok()) {
      std::cerr << "bulwarkd: --tls-min-version: " << v.status().message() << "\n";
      return 2;
    }
    config.tls_min_version = *v;
  }
  for (const std::string& o : overrides) {
    if (Status s = ApplyConfigOverride(o, config); !s.ok()) {
      std::cerr << "bulwarkd: --set " << o << ": " << s.message() << "\n";
      return 2;
    }
  }
  // Before anything builds TLS credentials (see security/tls_server.h).
  if (config.tls_min_version == security::TlsVersion::kTls13) security::RequireTls13ProcessWide();
  if (*account_key) config.account_key_file = flags.account_key_file;
  if (*insecure) config.insecure = flags.insecure;
  config.benchmark_unencrypted = benchmark_unencrypted;
  if (*log_level) config.log_level = flags.log_level;
  if (*replica_id) config.replica.id = flags.replica.id;
  if (*peer_listen) config.replica.peer_address = flags.replica.peer_address;
  if (*members) config.replica.members = flags.replica.members;
  if (*tick_ms) config.replica.tick_ms = flags.replica.tick_ms;
  if (*snapshot_entries) config.replica.snapshot_entries = flags.replica.snapshot_entries;
  if (*join) config.replica.join = flags.replica.join;
  if (witness) config.witness = true;
  if (*level) {
    auto parsed = ParseConsistency(consistency);
    if (!parsed) {
      std::cerr << "bulwarkd: --default-consistency must be Strong, BoundedStaleness, Session, ConsistentPrefix or "
                   "Eventual\n";
      return 2;
    }
    config.default_consistency = *parsed;
  }
  if (Status s = ValidateConfig(config); !s.ok()) {
    std::cerr << "bulwarkd: " << s.message() << "\n";
    return 2;
  }
  NormalizeGeo(config.geo);
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  return Run(std::move(config));
}
