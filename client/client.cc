#include "client/client.h"

#include "proto/grpc_status.h"
#include "replication/source_address.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "bulwark/v1/access.grpc.pb.h"
#include "bulwark/v1/admin.grpc.pb.h"
#include "bulwark/v1/document.grpc.pb.h"
#include "crypto/secret.h"
#include "security/auth_header.h"
#include "security/request_signing.h"

namespace bulwark::client {
namespace {

namespace v1 = ::bulwark::v1;
using security::ResourceRef;

v1::ConsistencyLevel ToProto(const std::optional<ConsistencyLevel>& level) {
  return level ? static_cast<v1::ConsistencyLevel>(*level) : v1::CONSISTENCY_LEVEL_UNSPECIFIED;
}

// The server's refusal of a replayed signed write (server/write_path.cc).
constexpr std::string_view kReplayRefused = "this signed request was already applied; a replay is not applied again";

uint64_t TokenPosition(const std::string& token) {
  const size_t hash = token.rfind('#');
  if (hash == std::string::npos) return 0;
  try {
    return std::stoull(token.substr(hash + 1));
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

struct Client::Impl {
  // The stubs of one endpoint; both share its channel. gRPC stubs are
  // thread-safe, and once made they live as long as the Impl.
  struct Stubs {
    std::unique_ptr<v1::DocumentService::Stub> documents;
    std::unique_ptr<v1::AdminService::Stub> admin;
    std::unique_ptr<v1::AccessService::Stub> access;
  };

  ClientOptions options;
  crypto::SecretBytes key;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::vector<std::string> targets;  // the rotation: options.endpoint first, then the other endpoints
  std::atomic<size_t> current{0};    // index into the write route where the next call starts

  mutable std::mutex stubs_mu;
  std::vector<std::unique_ptr<Stubs>> stubs;  // GUARDED_BY(stubs_mu); per target, null until first use

  mutable std::mutex sessions_mu;
  std::map<std::string, std::string> sessions;  // GUARDED_BY(sessions_mu): "db/container" -> newest token

  // The stubs for target `i`, opening its channel on first use, so a client
  // of a four-node set that never fails over opens one connection.
  Stubs& StubsFor(size_t i) {
    std::lock_guard lock(stubs_mu);
    std::unique_ptr<Stubs>& slot = stubs.at(i);
    if (!slot) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
      if (!options.source_ip.empty()) replication::BindOutgoingConnections(args, options.source_ip);
      auto channel = grpc::CreateCustomChannel(targets[i], credentials, args);
      slot = std::make_unique<Stubs>();
      slot->documents = v1::DocumentService::NewStub(channel);
      slot->admin = v1::AdminService::NewStub(channel);
      slot->access = v1::AccessService::NewStub(channel);
    }
    return *slot;
  }

  void Prepare(grpc::ClientContext& ctx, const ResourceRef& ref) const {
    ctx.set_deadline(std::chrono::system_clock::now() + options.deadline);
    const std::string date = security::FormatHttpDate(std::chrono::system_clock::now());
    ctx.AddMetadata(std::string(security::kDateHeader), date);
    if (!key.empty()) {
      ctx.AddMetadata(std::string(security::kAuthorizationHeader), security::SignWithMasterKey(key, ref, date));
    } else if (!options.resource_token.empty()) {
      ctx.AddMetadata(std::string(security::kAuthorizationHeader),
                      security::FormatAuthorization(security::AuthType::kResource, options.resource_token));
    } else if (!options.identity_token.empty()) {
      ctx.AddMetadata(std::string(security::kAuthorizationHeader),
                      security::FormatAuthorization(security::AuthType::kAad, options.identity_token));
    }  // else: the client certificate speaks for the caller
  }

  // Routing (geo-replication): indexes into `targets` for writes and for
  // reads. Both hold every target until a topology is known.
  // GUARDED_BY(routes_mu)
  mutable std::mutex routes_mu;
  std::vector<size_t> write_route, read_route;
  std::string read_region_name;
  bool topology_known = false;
  std::chrono::steady_clock::time_point last_topology_try{};
  std::atomic<size_t> read_current{0};

  bool WantsTopology() const { return options.discover_topology || !options.preferred_regions.empty(); }

  std::vector<size_t> Route(bool read) const {
    std::lock_guard lock(routes_mu);
    return read ? read_route : write_route;
  }

  // The index of `endpoint` in `targets`, appending it if new.
  size_t TargetIndex(const std::string& endpoint) {
    std::lock_guard lock(stubs_mu);
    auto it = std::find(targets.begin(), targets.end(), endpoint);
    if (it != targets.end()) return static_cast<size_t>(it - targets.begin());
    targets.push_back(endpoint);
    stubs.emplace_back();
    return targets.size() - 1;
  }

  Result<Topology> FetchTopology();
  // Fetches the topology and routes by it; at most once per second unless forced.
  void RefreshTopology(bool force);

  // One RPC, signed, sent to the current endpoint of its route (reads: the
  // read region's). On UNAVAILABLE (CANCELLED from a stopping server counts
  // too: see proto/grpc_status.h) the rotation moves to the next endpoint,
  // and a `retry` call tries again there after an exponential backoff, at
  // most options.max_retries times. A read that a read region refuses as
  // too stale goes to the write region; a write that reached a read region
  // refreshes the topology and goes to the write region.
  template <typename Call>
  Status Invoke(const ResourceRef& ref, bool retry, Call&& call, bool read = false) {
    if (WantsTopology()) RefreshTopology(false);
    auto backoff = options.retry_backoff;
    std::optional<std::chrono::steady_clock::time_point> moving_since;
    std::chrono::milliseconds move_backoff{25};
    bool use_read = read;
    for (int attempt = 0;; ++attempt) {
      const std::vector<size_t> route = Route(use_read);
      // One rotation for everything until regions split reads from writes.
      std::atomic<size_t>& pos = use_read && WantsTopology() ? read_current : current;
      size_t at = pos.load() % route.size();
      grpc::ClientContext ctx;
      Prepare(ctx, ref);
      const grpc::Status s = call(ctx, StubsFor(route[at]));
      if (s.error_code() == grpc::StatusCode::ALREADY_EXISTS && s.error_message() == kReplayRefused &&
          attempt < options.max_retries) {
        // The server saw this exact signed request already: the same write
        // was signed twice within one second (the date has whole seconds).
        // A new second gives a new signature; nothing was applied this time.
        std::this_thread::sleep_for(
            std::chrono::milliseconds(1000) -
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()) %
                1000 +
            std::chrono::milliseconds(5));
        continue;
      }
      const Status st = FromGrpcStatus(s);
      const bool moved = WantsTopology() && st.code() == Code::kFailedPrecondition &&
                         st.message().find("does not take writes") != std::string::npos;
      if (moved) {
        // Nothing was written: the write region is elsewhere, or moving (a
        // planned failover: no region takes writes until the new one has
        // the change, a WAN trip plus a topology poll). Retried for up to
        // kWriteRegionMoveWait, apart from max_retries (0 turns it off).
        RefreshTopology(true);
        const auto now = std::chrono::steady_clock::now();
        if (!moving_since) moving_since = now;
        const auto window = std::min<std::chrono::steady_clock::duration>(kWriteRegionMoveWait, options.deadline);
        if (options.max_retries == 0 || now - *moving_since >= window) return st;
        std::this_thread::sleep_for(move_backoff);
        move_backoff = std::min(move_backoff * 2, std::chrono::milliseconds(400));
        --attempt;  // not counted against max_retries
        continue;
      }
      if (use_read && st.code() == Code::kUnavailable &&
          st.message().find("from the write region") != std::string::npos) {
        use_read = false;  // this region cannot serve it at that level; the write region can
        continue;
      }
      const bool unavailable = st.code() == Code::kUnavailable;
      if (unavailable && route.size() > 1) {
        // Only the first of several concurrent failures on `at` moves the
        // rotation, so they do not skip a healthy endpoint between them.
        pos.compare_exchange_strong(at, (at + 1) % route.size());
      }
      if (!unavailable || !retry || attempt >= options.max_retries) return st;
      std::this_thread::sleep_for(backoff);
      backoff *= 2;
    }
  }

  void Remember(const std::string& db, const std::string& container, const std::string& token) {
    if (token.empty()) return;
    std::lock_guard lock(sessions_mu);
    std::string& held = sessions[db + "/" + container];
    if (TokenPosition(token) >= TokenPosition(held)) held = token;
  }
  std::string Session(const std::string& db, const std::string& container) const {
    std::lock_guard lock(sessions_mu);
    auto it = sessions.find(db + "/" + container);
    return it == sessions.end() ? std::string() : it->second;
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.endpoint.empty() && options.endpoints.empty()) {
    return Status::InvalidArgument("no endpoint: give host:port");
  }
  if (options.key.empty() && options.resource_token.empty() && options.identity_token.empty() &&
      options.cert_file.empty()) {
    return Status::InvalidArgument(
        "no credential: give an account key, a resource token, an identity token or a "
        "client certificate");
  }
  if (options.max_retries < 0) return Status::InvalidArgument("max_retries must not be negative");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (!options.key.empty()) {
    auto key = crypto::Base64DecodeSecret(options.key);
    if (!key.ok() || key->empty()) return Status::InvalidArgument("the account key is not valid base64");
    impl->key = std::move(key).value();
  }
  if (options.insecure) {
    impl->credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      std::ifstream in(options.ca_file);
      if (!in) return Status::NotFound("cannot read the CA file '" + options.ca_file + "'");
      std::stringstream pem;
      pem << in.rdbuf();
      ssl.pem_root_certs = pem.str();
    }
    if (!options.cert_file.empty()) {
      for (auto [path, out] :
           {std::pair{&options.cert_file, &ssl.pem_cert_chain}, std::pair{&options.key_file, &ssl.pem_private_key}}) {
        std::ifstream in(*path);
        if (!in) return Status::NotFound("cannot read the client certificate or key file '" + *path + "'");
        std::stringstream pem;
        pem << in.rdbuf();
        *out = pem.str();
      }
    }
    impl->credentials = grpc::SslCredentials(ssl);
  }
  if (!options.endpoint.empty()) impl->targets.push_back(options.endpoint);
  for (const std::string& e : options.endpoints) {
    if (e.empty()) return Status::InvalidArgument("an empty entry in endpoints");
    if (std::find(impl->targets.begin(), impl->targets.end(), e) == impl->targets.end()) impl->targets.push_back(e);
  }
  impl->stubs.resize(impl->targets.size());
  for (size_t i = 0; i < impl->targets.size(); ++i) {
    impl->write_route.push_back(i);
    impl->read_route.push_back(i);
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

namespace {
Topology ToTopology(const v1::TopologyResponse& resp) {
  Topology t;
  t.write_region = resp.write_region();
  t.epoch = resp.epoch();
  t.self_region = resp.self_region();
  for (const auto& r : resp.regions()) {
    t.regions.push_back({r.name(), r.priority(), {r.endpoints().begin(), r.endpoints().end()}});
  }
  return t;
}
}  // namespace

Result<Topology> Client::Impl::FetchTopology() {
  // Every endpoint is asked, and the newest epoch wins: a region cut off
  // from the others (and from the control group) still names itself the
  // write region at an epoch the account has left behind.
  std::vector<size_t> route = Route(false);  // the write region's first, then every other endpoint
  for (size_t i = 0; i < targets.size(); ++i) {
    if (std::find(route.begin(), route.end(), i) == route.end()) route.push_back(i);
  }
  Status last = Status::Unavailable("no endpoint answered");
  std::optional<v1::TopologyResponse> best;
  for (size_t k = 0; k < route.size(); ++k) {
    const size_t at = k;
    grpc::ClientContext ctx;
    Prepare(ctx, security::AccountRef("get"));
    const auto wait = best ? kTopologyScanWait : std::chrono::milliseconds(3000);
    ctx.set_deadline(std::chrono::system_clock::now() + std::min(options.deadline, wait));
    v1::TopologyRequest req;
    v1::TopologyResponse resp;
    const grpc::Status s = StubsFor(route[at]).admin->GetTopology(&ctx, req, &resp);
    if (!s.ok()) {
      last = FromGrpcStatus(s);
      if (!best && last.code() != Code::kUnavailable && last.code() != Code::kDeadlineExceeded) return last;
      continue;
    }
    if (resp.regions_size() <= 1) return ToTopology(resp);  // one region: nothing to compare
    if (!best || resp.epoch() > best->epoch()) best = std::move(resp);
  }
  if (best) return ToTopology(*best);
  return last;
}

void Client::Impl::RefreshTopology(bool force) {
  {
    std::lock_guard lock(routes_mu);
    const auto now = std::chrono::steady_clock::now();
    if (!force && (topology_known || now - last_topology_try < std::chrono::seconds(1))) return;
    last_topology_try = now;
  }
  auto t = FetchTopology();
  if (!t.ok() || t->regions.size() <= 1) {
    if (t.ok()) {
      std::lock_guard lock(routes_mu);
      topology_known = true;  // one region: every endpoint is as good
    }
    return;
  }
  auto endpoints_of = [&](const std::string& name) {
    std::vector<size_t> out;
    for (const auto& r : t->regions) {
      if (r.name != name) continue;
      for (const auto& e : r.endpoints) out.push_back(TargetIndex(e));
    }
    return out;
  };
  std::vector<size_t> writes = endpoints_of(t->write_region), reads;
  std::string read_name;
  for (const auto& preferred : options.preferred_regions) {
    reads = endpoints_of(preferred);
    if (!reads.empty()) {
      read_name = preferred;
      break;
    }
  }
  if (reads.empty()) {
    reads = writes;
    read_name = t->write_region;
  }
  if (writes.empty()) return;
  std::lock_guard lock(routes_mu);
  write_route = std::move(writes);
  read_route = std::move(reads);
  read_region_name = std::move(read_name);
  topology_known = true;
}

Result<Topology> Client::GetTopology() {
  auto t = impl_->FetchTopology();
  if (t.ok() && impl_->WantsTopology()) impl_->RefreshTopology(true);
  return t;
}

std::string Client::read_region() const {
  std::lock_guard lock(impl_->routes_mu);
  return impl_->read_region_name;
}

namespace {
Database ToDatabase(const v1::Database& d) {
  return {d.id(), d.etag(), d.ts(), {d.allowed_regions().begin(), d.allowed_regions().end()}};
}
Container ToContainer(const v1::Container& c) {
  return {c.database(),
          c.id(),
          c.partition_key_path(),
          c.rid(),
          c.etag(),
          c.ts(),
          {c.allowed_regions().begin(), c.allowed_regions().end()}};
}
}  // namespace

Result<Database> Client::CreateDatabase(const std::string& db, const std::vector<std::string>& allowed_regions) {
  v1::CreateDatabaseRequest req;
  req.set_database(db);
  for (const auto& r : allowed_regions) req.add_allowed_regions(r);
  v1::DatabaseResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::DatabaseFeedRef("post"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.documents->CreateDatabase(&ctx, req, &resp); }));
  return ToDatabase(resp.database());
}

Result<Database> Client::ReadDatabase(const std::string& db) {
  v1::ReadDatabaseRequest req;
  req.set_database(db);
  v1::DatabaseResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::DatabaseRef("get", db), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.documents->ReadDatabase(&ctx, req, &resp); }));
  return ToDatabase(resp.database());
}

Result<std::vector<Database>> Client::ListDatabases() {
  v1::ListDatabasesRequest req;
  v1::ListDatabasesResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::DatabaseFeedRef("get"), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.documents->ListDatabases(&ctx, req, &resp); }));
  std::vector<Database> out;
  for (const auto& d : resp.databases()) out.push_back(ToDatabase(d));
  return out;
}

Status Client::DeleteDatabase(const std::string& db) {
  v1::DeleteDatabaseRequest req;
  req.set_database(db);
  v1::DeleteResponse resp;
  return impl_->Invoke(security::DatabaseRef("delete", db), false, [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) {
    return stubs.documents->DeleteDatabase(&ctx, req, &resp);
  });
}

Result<Container> Client::CreateContainer(const std::string& db, const std::string& container,
                                          const std::string& partition_key_path,
                                          const std::vector<std::string>& allowed_regions) {
  v1::CreateContainerRequest req;
  req.set_database(db);
  req.set_container(container);
  req.set_partition_key_path(partition_key_path);
  for (const auto& r : allowed_regions) req.add_allowed_regions(r);
  v1::ContainerResponse resp;
  BULWARK_RETURN_IF_ERROR(
      impl_->Invoke(security::ContainerFeedRef("post", db), false, [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) {
        return stubs.documents->CreateContainer(&ctx, req, &resp);
      }));
  return ToContainer(resp.container());
}

Result<Container> Client::ReadContainer(const std::string& db, const std::string& container) {
  v1::ReadContainerRequest req;
  req.set_database(db);
  req.set_container(container);
  v1::ContainerResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::ContainerRef("get", db, container), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.documents->ReadContainer(&ctx, req, &resp); }));
  return ToContainer(resp.container());
}

Result<std::vector<Container>> Client::ListContainers(const std::string& db) {
  v1::ListContainersRequest req;
  req.set_database(db);
  v1::ListContainersResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::ContainerFeedRef("get", db), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.documents->ListContainers(&ctx, req, &resp); }));
  std::vector<Container> out;
  for (const auto& c : resp.containers()) out.push_back(ToContainer(c));
  return out;
}

Status Client::DeleteContainer(const std::string& db, const std::string& container) {
  v1::DeleteContainerRequest req;
  req.set_database(db);
  req.set_container(container);
  v1::DeleteResponse resp;
  return impl_->Invoke(
      security::ContainerRef("delete", db, container), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.documents->DeleteContainer(&ctx, req, &resp); });
}

namespace {
enum class WriteKind { kCreate, kUpsert, kReplace };

std::string RequestId(const std::string& given) {
  return given.empty() ? crypto::HexEncode(crypto::RandomBytes(16)) : given;
}

Result<Item> WriteItem(Client::Impl& impl, WriteKind kind, const std::string& db, const std::string& container,
                       const std::string& id, const std::string& json, const std::string& if_match,
                       const std::string& request_id) {
  v1::WriteItemRequest req;
  req.set_database(db);
  req.set_container(container);
  req.set_item_json(json);
  req.set_id(id);
  req.set_if_match(if_match);
  req.set_request_id(RequestId(request_id));
  v1::ItemResponse resp;
  const ResourceRef ref = kind == WriteKind::kReplace ? security::ItemRef("put", db, container, id)
                                                      : security::ItemFeedRef("post", db, container);
  BULWARK_RETURN_IF_ERROR(impl.Invoke(ref, true, [&](grpc::ClientContext& ctx, Client::Impl::Stubs& stubs) {
    switch (kind) {
      case WriteKind::kCreate:
        return stubs.documents->CreateItem(&ctx, req, &resp);
      case WriteKind::kUpsert:
        return stubs.documents->UpsertItem(&ctx, req, &resp);
      case WriteKind::kReplace:
        break;
    }
    return stubs.documents->ReplaceItem(&ctx, req, &resp);
  }));
  impl.Remember(db, container, resp.session_token());
  return Item{resp.item_json(), resp.etag(), resp.ts(), resp.session_token()};
}
}  // namespace

Result<Item> Client::CreateItem(const std::string& db, const std::string& container, const std::string& json,
                                const std::string& request_id) {
  return WriteItem(*impl_, WriteKind::kCreate, db, container, "", json, "", request_id);
}

Result<Item> Client::UpsertItem(const std::string& db, const std::string& container, const std::string& json,
                                const std::string& request_id) {
  return WriteItem(*impl_, WriteKind::kUpsert, db, container, "", json, "", request_id);
}

Result<Item> Client::ReplaceItem(const std::string& db, const std::string& container, const std::string& id,
                                 const std::string& json, const std::string& if_match, const std::string& request_id) {
  return WriteItem(*impl_, WriteKind::kReplace, db, container, id, json, if_match, request_id);
}

Result<Item> Client::ReadItem(const std::string& db, const std::string& container,
                              const std::string& partition_key_json, const std::string& id,
                              const ReadOptions& options) {
  v1::ReadItemRequest req;
  req.set_database(db);
  req.set_container(container);
  req.set_partition_key_json(partition_key_json);
  req.set_id(id);
  req.mutable_options()->set_consistency(ToProto(options.consistency));
  req.mutable_options()->set_session_token(options.session_token.empty() ? impl_->Session(db, container)
                                                                         : options.session_token);
  v1::ItemResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::ItemRef("get", db, container, id), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.documents->ReadItem(&ctx, req, &resp); },
      /*read=*/true));
  impl_->Remember(db, container, resp.session_token());
  return Item{resp.item_json(), resp.etag(), resp.ts(), resp.session_token()};
}

Status Client::DeleteItem(const std::string& db, const std::string& container, const std::string& partition_key_json,
                          const std::string& id, const std::string& if_match, const std::string& request_id) {
  v1::DeleteItemRequest req;
  req.set_database(db);
  req.set_container(container);
  req.set_partition_key_json(partition_key_json);
  req.set_id(id);
  req.set_if_match(if_match);
  req.set_request_id(RequestId(request_id));
  v1::DeleteResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::ItemRef("delete", db, container, id), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.documents->DeleteItem(&ctx, req, &resp); }));
  impl_->Remember(db, container, resp.session_token());
  return Status::Ok();
}

Result<ItemPage> Client::ListItems(const std::string& db, const std::string& container, const ListOptions& options) {
  v1::ListItemsRequest req;
  req.set_database(db);
  req.set_container(container);
  if (options.partition_key_json) req.set_partition_key_json(*options.partition_key_json);
  req.set_max_items(options.max_items);
  req.set_continuation(options.continuation);
  req.mutable_options()->set_consistency(ToProto(options.consistency));
  req.mutable_options()->set_session_token(impl_->Session(db, container));
  v1::ListItemsResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::ItemFeedRef("get", db, container), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.documents->ListItems(&ctx, req, &resp); },
      /*read=*/true));
  impl_->Remember(db, container, resp.session_token());
  ItemPage page;
  page.items.assign(resp.items_json().begin(), resp.items_json().end());
  page.continuation = resp.continuation();
  return page;
}

Result<NodeStatus> Client::GetStatus() {
  v1::StatusRequest req;
  v1::StatusResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("get"), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->Status(&ctx, req, &resp); }));
  NodeStatus s;
  s.node_id = resp.node_id();
  s.region = resp.region();
  s.version = resp.version();
  s.uptime_s = resp.uptime_s();
  s.last_lsn = resp.last_lsn();
  s.default_consistency = static_cast<ConsistencyLevel>(resp.default_consistency());
  s.tls = resp.tls();
  s.live_data_bytes = resp.live_data_bytes();
  s.master_key_id = resp.master_key_id();
  s.replica_id = resp.replica_id();
  s.role = resp.role();
  s.term = resp.term();
  s.leader_id = resp.leader_id();
  s.commit_index = resp.commit_index();
  s.applied_index = resp.applied_index();
  s.peer_address = resp.peer_address();
  s.replica_error = resp.replica_error();
  s.data_key_versions = resp.data_key_versions();
  s.store_key_version = resp.store_key_version();
  s.firewall_ranges = resp.firewall_ranges();
  s.write_region = resp.write_region();
  s.glsn = resp.glsn();
  s.epoch = resp.epoch();
  for (const auto& r : resp.regions()) {
    s.regions.push_back({r.name(), r.priority(), r.connected(), r.in_quorum(), r.acked_glsn(), r.lag_writes(),
                         r.lag_seconds(), r.needs_image(), r.error()});
  }
  s.strong_quorum.assign(resp.strong_quorum().begin(), resp.strong_quorum().end());
  if (resp.has_last_failover()) {
    const auto& f = resp.last_failover();
    s.last_failover = {f.from_region(), f.to_region(), f.reason(), f.at_unix_ms(), f.epoch()};
  }
  for (const auto& m : resp.members()) s.members.push_back({m.id(), m.peer_address(), m.match_index(), m.lag()});
  if (resp.has_control()) {
    const auto& c = resp.control();
    s.control = {c.configured(),         c.automatic(),     c.automatic_off(), c.grace_ms(),
                 c.member_id(),          c.member_role(),   c.member_leader(), c.last_answer_from(),
                 c.last_answer_ms_ago(), c.lease_left_ms(), c.write_region(),  c.epoch()};
  }
  return s;
}

Result<uint64_t> Client::TransferLeader(uint64_t to) {
  v1::TransferLeaderRequest req;
  req.set_to(to);
  v1::TransferLeaderResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("post"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->TransferLeader(&ctx, req, &resp); }));
  return resp.leader_id();
}

Result<std::vector<uint64_t>> Client::AddNode(uint64_t id, const std::string& peer_address) {
  v1::AddNodeRequest req;
  req.set_id(id);
  req.set_peer_address(peer_address);
  v1::MembershipResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("post"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->AddNode(&ctx, req, &resp); }));
  return std::vector<uint64_t>(resp.voters().begin(), resp.voters().end());
}

Result<std::vector<uint64_t>> Client::RemoveNode(uint64_t id) {
  v1::RemoveNodeRequest req;
  req.set_id(id);
  v1::MembershipResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("post"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->RemoveNode(&ctx, req, &resp); }));
  return std::vector<uint64_t>(resp.voters().begin(), resp.voters().end());
}

Result<std::vector<AccountKeyInfo>> Client::ListKeys() {
  v1::ListKeysRequest req;
  v1::ListKeysResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("get"), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->ListKeys(&ctx, req, &resp); }));
  std::vector<AccountKeyInfo> out;
  for (const auto& k : resp.keys()) out.push_back({k.name(), k.created_ts(), k.read_only()});
  return out;
}

Result<KeyStatus> Client::GetKeyStatus() {
  v1::KeyStatusRequest req;
  v1::KeyStatusResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("get"), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->KeyStatus(&ctx, req, &resp); }));
  KeyStatus out;
  out.master_key_id = resp.master_key_id();
  for (const auto& u : resp.store_keys()) out.store_keys.push_back({u.version(), u.current(), u.files(), u.bytes()});
  out.rewrite_running = resp.rewrite_running();
  out.last_rewrite_error = resp.last_rewrite_error();
  for (const auto& p : resp.pending_shreds()) out.pending_shreds.push_back({p.rid(), p.purge_index()});
  out.last_shred_error = resp.last_shred_error();
  for (const auto& c : resp.containers()) {
    ContainerKeyUsage u{c.database(), c.container(), c.rid(), c.current_version(), {}, c.reseal_pending()};
    for (const auto& v : c.versions()) {
      u.versions.push_back({v.version(), v.current(), v.items(), v.change_log_records(), v.bytes()});
    }
    out.containers.push_back(std::move(u));
  }
  out.unflushed_values = resp.unflushed_values();
  out.reseal_failures = resp.reseal_failures();
  return out;
}

namespace {
BackupRecord ToBackup(const v1::BackupInfo& b) {
  return {b.id(), b.created_unix_ms(), b.applied_index(), b.glsn(), b.bytes(), b.location(), b.image_unix_ms()};
}
}  // namespace

Result<BackupRecord> Client::BackupNow() {
  v1::BackupNowRequest req;
  v1::BackupNowResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("post"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->BackupNow(&ctx, req, &resp); }));
  return ToBackup(resp.backup());
}

Result<std::vector<BackupRecord>> Client::ListBackups(BackupWindowRecord* window) {
  v1::ListBackupsRequest req;
  v1::ListBackupsResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("get"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->ListBackups(&ctx, req, &resp); }));
  std::vector<BackupRecord> out;
  for (const auto& b : resp.backups()) out.push_back(ToBackup(b));
  if (window) {
    window->continuous = resp.continuous();
    window->from_unix_ms = resp.restorable_from_unix_ms();
    window->to_unix_ms = resp.restorable_to_unix_ms();
    window->archive_segments = resp.archive_segments();
  }
  return out;
}

Result<BackupRecord> Client::VerifyBackup(const std::string& id) {
  v1::VerifyBackupRequest req;
  req.set_id(id);
  v1::VerifyBackupResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("get"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->VerifyBackup(&ctx, req, &resp); }));
  return ToBackup(resp.backup());
}

Result<ArchiveCheckRecord> Client::VerifyArchive() {
  v1::VerifyBackupRequest req;
  req.set_archive(true);
  v1::VerifyBackupResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("get"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->VerifyBackup(&ctx, req, &resp); }));
  ArchiveCheckRecord out;
  out.segments = resp.archive().segments();
  out.commands = resp.archive().commands();
  out.first_index = resp.archive().first_index();
  out.last_index = resp.archive().last_index();
  out.holes.assign(resp.archive().holes().begin(), resp.archive().holes().end());
  return out;
}

Result<uint32_t> Client::RotateStoreKey() {
  v1::RotateStoreKeyRequest req;
  v1::RotateStoreKeyResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("post"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->RotateStoreKey(&ctx, req, &resp); }));
  return resp.version();
}

Result<uint32_t> Client::RotateDataKey(const std::string& db, const std::string& container) {
  v1::RotateDataKeyRequest req;
  req.set_database(db);
  req.set_container(container);
  v1::RotateDataKeyResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::ContainerRef("put", db, container), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->RotateDataKey(&ctx, req, &resp); }));
  return resp.version();
}

Result<std::vector<std::string>> Client::FirewallList() {
  v1::FirewallListRequest req;
  v1::FirewallResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("get"), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->FirewallList(&ctx, req, &resp); }));
  return std::vector<std::string>(resp.ranges().begin(), resp.ranges().end());
}

Result<std::vector<std::string>> Client::FirewallAllow(const std::string& range) {
  return FirewallChange(/*allow=*/true, range);
}

Result<std::vector<std::string>> Client::FirewallDeny(const std::string& range) {
  return FirewallChange(/*allow=*/false, range);
}

Result<std::vector<std::string>> Client::FirewallChange(bool allow, const std::string& range) {
  v1::FirewallChangeRequest req;
  req.set_range(range);
  v1::FirewallResponse resp;
  BULWARK_RETURN_IF_ERROR(
      impl_->Invoke(security::AccountRef("post"), false, [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) {
        return allow ? stubs.admin->FirewallAllow(&ctx, req, &resp) : stubs.admin->FirewallDeny(&ctx, req, &resp);
      }));
  return std::vector<std::string>(resp.ranges().begin(), resp.ranges().end());
}

namespace {
ConflictInfo FromProto(const v1::ConflictInfo& c) {
  return {c.id(),      c.database(), c.container(), c.partition_key(), c.item_id(),         c.etag(),
          c.deleted(), c.ts(),       c.glsn(),      c.epoch(),         c.captured_unix_ms()};
}
}  // namespace

Result<std::pair<std::string, std::vector<ConflictInfo>>> Client::ListConflicts(const std::string& db,
                                                                                const std::string& container) {
  v1::ConflictsRequest req;
  req.set_database(db);
  req.set_container(container);
  v1::ConflictsResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("get"), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->ListConflicts(&ctx, req, &resp); },
      /*read=*/true));
  std::vector<ConflictInfo> out;
  for (const auto& c : resp.conflicts()) out.push_back(FromProto(c));
  return std::make_pair(resp.region(), std::move(out));
}

Result<std::pair<ConflictInfo, std::string>> Client::GetConflict(const std::string& db, const std::string& container,
                                                                 const std::string& id) {
  v1::ConflictRequest req;
  req.set_database(db);
  req.set_container(container);
  req.set_id(id);
  v1::ConflictResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("get"), true,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->GetConflict(&ctx, req, &resp); },
      /*read=*/true));
  return std::make_pair(FromProto(resp.conflict()), resp.item_json());
}

Status Client::DiscardConflict(const std::string& db, const std::string& container, const std::string& id) {
  v1::ConflictRequest req;
  req.set_database(db);
  req.set_container(container);
  req.set_id(id);
  v1::DiscardConflictResponse resp;
  // In the preferred region (the feed is that region's), not the write region.
  return impl_->Invoke(
      security::AccountRef("post"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->DiscardConflict(&ctx, req, &resp); },
      /*read=*/true);
}

Result<Topology> Client::ChangeRegions(const v1::ChangeRegionsRequest& req) {
  v1::TopologyResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("post"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->ChangeRegions(&ctx, req, &resp); }));
  // Later requests route by the new topology.
  if (impl_->WantsTopology()) impl_->RefreshTopology(true);
  return ToTopology(resp);
}

Result<Topology> Client::AddRegion(const RegionSpec& region) {
  v1::ChangeRegionsRequest req;
  v1::RegionSpec* add = req.mutable_add();
  add->set_name(region.name);
  for (const auto& p : region.peers) add->add_peers(p);
  for (const auto& e : region.endpoints) add->add_endpoints(e);
  add->set_priority(region.priority);
  add->set_strong(region.strong);
  return ChangeRegions(req);
}

Result<Topology> Client::Failover(const std::string& to, std::chrono::milliseconds wait) {
  v1::ChangeRegionsRequest req;
  req.set_failover_to(to);
  BULWARK_RETURN_IF_ERROR(ChangeRegions(req).status());
  const auto until = std::chrono::steady_clock::now() + wait;
  Status last = Status::Ok();
  for (;;) {
    // The write route follows the topology: once any node names `to`, this
    // asks `to`'s own nodes, which say so only once they have the change.
    auto t = GetTopology();
    if (t.ok() && t->write_region == to && t->self_region == to) return t;
    if (!t.ok()) last = t.status();
    if (std::chrono::steady_clock::now() >= until) {
      return Status::DeadlineExceeded("the failover to " + to + " is committed, but " + to +
                                      " has not taken over yet (it does once it has applied the change)" +
                                      (last.ok() ? std::string() : ": " + last.ToString()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<Topology> Client::RemoveRegion(const std::string& name) {
  v1::ChangeRegionsRequest req;
  req.set_remove(name);
  return ChangeRegions(req);
}

Result<Topology> Client::SetRegionPriority(const std::string& name, uint32_t priority) {
  v1::ChangeRegionsRequest req;
  req.mutable_set_priority()->set_name(name);
  req.mutable_set_priority()->set_priority(priority);
  return ChangeRegions(req);
}

Result<PurgeResult> Client::PurgeContainer(const std::string& db, const std::string& container) {
  v1::PurgeContainerRequest req;
  req.set_database(db);
  req.set_container(container);
  v1::PurgeContainerResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::ContainerRef("delete", db, container), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->PurgeContainer(&ctx, req, &resp); }));
  PurgeResult out;
  out.rids.assign(resp.rids().begin(), resp.rids().end());
  out.shredded_here = resp.shredded_here();
  return out;
}

Result<std::string> Client::RotateMasterKey(const std::string& new_key_uri) {
  v1::RotateMasterKeyRequest req;
  req.set_new_key_uri(new_key_uri);
  v1::RotateMasterKeyResponse resp;
  BULWARK_RETURN_IF_ERROR(impl_->Invoke(
      security::AccountRef("post"), false,
      [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) { return stubs.admin->RotateMasterKey(&ctx, req, &resp); }));
  return resp.master_key_id();
}

std::string Client::SessionToken(const std::string& db, const std::string& container) const {
  return impl_->Session(db, container);
}

std::string Client::CurrentEndpoint() const {
  const std::vector<size_t> route = impl_->Route(false);
  std::lock_guard lock(impl_->stubs_mu);
  return impl_->targets[route[impl_->current.load() % route.size()]];
}

std::string PartitionKeyArgToJson(const std::string& arg) {
  const nlohmann::json v = nlohmann::json::parse(arg, nullptr, false);
  if (!v.is_discarded() && (v.is_number() || v.is_boolean() || v.is_null() || v.is_string())) return v.dump();
  return nlohmann::json(arg).dump();
}

Status Client::CallAccess(const std::string& method, const ResourceRef& ref, const google::protobuf::Message& request,
                          google::protobuf::Message* response) {
  // Reads retry on UNAVAILABLE; changes do not (they carry no request id).
  const bool read = ref.verb == "get";
  return impl_->Invoke(ref, read, [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) -> grpc::Status {
    auto& a = *stubs.access;
#define BULWARK_ACCESS_CALL(name, Req, Resp) \
  if (method == #name) return a.name(&ctx, static_cast<const v1::Req&>(request), static_cast<v1::Resp*>(response));
    BULWARK_ACCESS_CALL(RegenerateKey, RegenerateKeyRequest, RegenerateKeyResponse)
    BULWARK_ACCESS_CALL(ShowKey, ShowKeyRequest, ShowKeyResponse)
    BULWARK_ACCESS_CALL(CreateUser, UserRequest, UserResponse)
    BULWARK_ACCESS_CALL(ListUsers, ListUsersRequest, ListUsersResponse)
    BULWARK_ACCESS_CALL(DeleteUser, UserRequest, UserResponse)
    BULWARK_ACCESS_CALL(CreatePermission, CreatePermissionRequest, PermissionResponse)
    BULWARK_ACCESS_CALL(ListPermissions, ListPermissionsRequest, ListPermissionsResponse)
    BULWARK_ACCESS_CALL(ReadPermission, PermissionRequest, PermissionResponse)
    BULWARK_ACCESS_CALL(DeletePermission, PermissionRequest, PermissionResponse)
    BULWARK_ACCESS_CALL(CreateRole, CreateRoleRequest, RoleResponse)
    BULWARK_ACCESS_CALL(ListRoles, ListRolesRequest, ListRolesResponse)
    BULWARK_ACCESS_CALL(DeleteRole, RoleRequest, RoleResponse)
    BULWARK_ACCESS_CALL(AssignRole, AssignRoleRequest, RoleAssignmentResponse)
    BULWARK_ACCESS_CALL(ListAssignments, ListAssignmentsRequest, ListAssignmentsResponse)
    BULWARK_ACCESS_CALL(UnassignRole, UnassignRoleRequest, RoleAssignmentResponse)
    BULWARK_ACCESS_CALL(GetAccessSettings, AccessSettingsRequest, AccessSettingsResponse)
    BULWARK_ACCESS_CALL(SetAccessSettings, SetAccessSettingsRequest, AccessSettingsResponse)
    BULWARK_ACCESS_CALL(AddIssuer, AddIssuerRequest, AccessSettingsResponse)
    BULWARK_ACCESS_CALL(RemoveIssuer, RemoveIssuerRequest, AccessSettingsResponse)
    BULWARK_ACCESS_CALL(SetLockdown, LockdownRequest, AccessSettingsResponse)
#undef BULWARK_ACCESS_CALL
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unknown access method '" + method + "'");
  });
}

Status Client::CallAdmin(const std::string& method, const google::protobuf::Message& request,
                         google::protobuf::Message* response) {
  return impl_->Invoke(security::AccountRef("get"), true, [&](grpc::ClientContext& ctx, Impl::Stubs& stubs) {
    auto& a = *stubs.admin;
    if (method == "ListAlerts") {
      return a.ListAlerts(&ctx, static_cast<const v1::AlertsRequest&>(request),
                          static_cast<v1::AlertsResponse*>(response));
    }
    if (method == "AuditVerify") {
      return a.AuditVerify(&ctx, static_cast<const v1::AuditVerifyRequest&>(request),
                           static_cast<v1::AuditVerifyResponse*>(response));
    }
    if (method == "AuditQuery") {
      return a.AuditQuery(&ctx, static_cast<const v1::AuditQueryRequest&>(request),
                          static_cast<v1::AuditQueryResponse*>(response));
    }
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unknown admin method '" + method + "'");
  });
}

}  // namespace bulwark::client
