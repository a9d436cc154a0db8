#include "server/write_path.h"

#include <memory>
#include <thread>

#include <sodium.h>
#include <spdlog/spdlog.h>

#include "bulwark/v1/admin.pb.h"
#include "bulwark/v1/document.pb.h"
#include "crypto/secret.h"
#include "replication/replica.h"
#include "security/ip_allowlist.h"
#include "server/access_service.h"
#include "server/geo.h"
#include "server/regions.h"
#include "server/services.h"

namespace bulwark::server {
namespace {

namespace pb = google::protobuf;
using replication::Committed;

constexpr std::string_view kNotLeader = "this node is not the leader";
constexpr std::chrono::milliseconds kLeaderPoll{20};

// Request and response types per forwardable method.
struct MethodTypes {
  std::unique_ptr<pb::Message> request;
  std::unique_ptr<pb::Message> response;
};

std::optional<MethodTypes> TypesOf(std::string_view method) {
  auto make = [](auto req, auto resp) {
    return MethodTypes{std::make_unique<decltype(req)>(), std::make_unique<decltype(resp)>()};
  };
  if (method == "CreateDatabase") return make(v1::CreateDatabaseRequest{}, v1::DatabaseResponse{});
  if (method == "DeleteDatabase") return make(v1::DeleteDatabaseRequest{}, v1::DeleteResponse{});
  if (method == "CreateContainer") return make(v1::CreateContainerRequest{}, v1::ContainerResponse{});
  if (method == "DeleteContainer") return make(v1::DeleteContainerRequest{}, v1::DeleteResponse{});
  if (method == "CreateItem" || method == "UpsertItem" || method == "ReplaceItem") {
    return make(v1::WriteItemRequest{}, v1::ItemResponse{});
  }
  if (method == "DeleteItem") return make(v1::DeleteItemRequest{}, v1::DeleteResponse{});
  if (method == "RotateDataKey") return make(v1::RotateDataKeyRequest{}, v1::RotateDataKeyResponse{});
  if (method == "PurgeContainer") return make(v1::PurgeContainerRequest{}, v1::PurgeContainerResponse{});
  if (method == "FirewallAllow" || method == "FirewallDeny") {
    return make(v1::FirewallChangeRequest{}, v1::FirewallResponse{});
  }
  if (auto access = AccessWriteTypes(method)) return MethodTypes{std::move(access->first), std::move(access->second)};
  if (method == "ChangeRegions") return make(v1::ChangeRegionsRequest{}, v1::TopologyResponse{});
  if (method == "DiscardConflict") return make(v1::ConflictRequest{}, v1::DiscardConflictResponse{});
  if (method == "AddNode") return make(v1::AddNodeRequest{}, v1::MembershipResponse{});
  if (method == "RemoveNode") return make(v1::RemoveNodeRequest{}, v1::MembershipResponse{});
  return std::nullopt;
}

int64_t ToUnixMs(Deadline d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d.time_since_epoch()).count();
}

}  // namespace

std::string SessionToken(uint64_t epoch, uint64_t glsn) {
  return "0:" + std::to_string(epoch) + "#" + std::to_string(glsn);
}

Result<uint64_t> ParseSessionToken(std::string_view token) {
  const size_t hash = token.rfind('#');
  if (hash == std::string_view::npos || hash + 1 == token.size() || token.size() > 64) {
    return Status::InvalidArgument("session token is malformed (expected partition:epoch#glsn)");
  }
  uint64_t v = 0;
  for (char c : token.substr(hash + 1)) {
    if (c < '0' || c > '9' || v > (UINT64_MAX - 9) / 10) {
      return Status::InvalidArgument("session token is malformed (expected partition:epoch#glsn)");
    }
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

Status WritePath::Write(std::string_view method, const pb::Message& request, pb::Message* response, Deadline deadline,
                        std::string_view signature_id) {
  // The Cosmos DB signature does not cover the body (two creates signed in
  // the same second carry the same signature), so the id that makes a write
  // apply once binds the signature to the request's bytes: an exact replay
  // is refused; a different request is a different write.
  std::string replay_id;
  if (!signature_id.empty()) {
    const std::string bytes =
        std::string(signature_id) + "\n" + std::string(method) + "\n" + request.SerializeAsString();
    unsigned char h[16];
    crypto_generichash(h, sizeof(h), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, 0);
    replay_id = "sig:" + crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(h), sizeof(h)));
  }
  replication::Replica& replica = *node_->replica;
  const bool account_write = IsAccountWrite(method);
  // A read region takes no account writes: say so before any hop.
  if (account_write && node_->geo->enabled() && !node_->geo->is_write_region()) {
    return node_->geo->BeforeWrite(deadline);
  }
  // A Strong account's write waits for the other regions on the leader:
  // the forwarded call then needs the client's whole deadline.
  const bool waits_for_regions = node_->geo->enabled() && account_write;
  const Deadline wait_until = std::min(deadline, std::chrono::system_clock::now() + kLeaderWait);
  // Set once a forwarded attempt failed in flight: the leader may have
  // applied it, so the final error may not say "nothing was written".
  bool outcome_unknown = false;
  Status last_error;
  while (true) {
    if (replica.is_leader()) {
      Status s = LeaderWrite(method, request, response, deadline, replay_id);
      // Leadership moved between the check and the proposal: go to the new one.
      if (s.code() != Code::kFailedPrecondition || s.message() != kNotLeader) return s;
    } else if (replica.leader() != 0) {
      v1::ForwardRequest fr;
      fr.set_method(std::string(method));
      fr.set_request(request.SerializeAsString());
      fr.set_replay_id(std::string(replay_id));
      // Bounded by the leader wait, so that a leader we cannot reach (we are
      // partitioned from it) does not hold the client until its deadline.
      fr.set_deadline_unix_ms(ToUnixMs(
          waits_for_regions ? deadline : std::max(wait_until, std::chrono::system_clock::now() + kLeaderPoll)));
      auto r = replica.ForwardToLeader(fr);
      if (r.ok()) {
        if (r->code() == 0) {
          if (!response->ParseFromString(r->response())) return Status::Internal("the leader's response did not parse");
          return Status::Ok();
        }
        Status s = FromGrpcStatus(static_cast<grpc::StatusCode>(r->code()), r->message());
        // The leader we knew stepped down before running it; look again.
        if (s.code() != Code::kFailedPrecondition || s.message() != kNotLeader) return s;
      } else if (r.status().code() == Code::kUnavailable || r.status().code() == Code::kDeadlineExceeded) {
        outcome_unknown = true;
        last_error = r.status();
      } else {
        return r.status();
      }
    }
    if (std::chrono::system_clock::now() + kLeaderPoll >= wait_until) {
      if (outcome_unknown) {
        return Status::Unavailable(
            "the leader could not be reached (this node may be cut off from a quorum: " + last_error.message() +
            "); the write's outcome is unknown: retry with the same request id");
      }
      return Status::Unavailable(
          "the region has no reachable leader (an election is running, or this node cannot "
          "reach a quorum); nothing was written; retry");
    }
    std::this_thread::sleep_for(kLeaderPoll);
  }
}

v1::ForwardResponse WritePath::HandleForward(const v1::ForwardRequest& fr) {
  v1::ForwardResponse out;
  if (fr.method() == kRegionStateMethod) {
    if (!node_->replica->is_leader()) {
      out.set_code(static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
      out.set_message(std::string(kNotLeader));
    } else {
      out.set_response(node_->geo->LocalState().SerializeAsString());
    }
    return out;
  }
  auto types = TypesOf(fr.method());
  Status s;
  if (!types) {
    s = Status::InvalidArgument("unknown forwarded method '" + fr.method() + "'");
  } else if (!types->request->ParseFromString(fr.request())) {
    s = Status::InvalidArgument("forwarded request does not parse");
  } else {
    Deadline deadline =
        std::chrono::system_clock::now() + std::chrono::milliseconds(node_->config->limits.request_deadline_ms);
    if (fr.deadline_unix_ms() > 0) {
      deadline = std::min(deadline, Deadline(std::chrono::milliseconds(fr.deadline_unix_ms())));
    }
    if (!node_->replica->is_leader()) {
      s = Status::FailedPrecondition(std::string(kNotLeader));
    } else {
      s = LeaderWrite(fr.method(), *types->request, types->response.get(), deadline, fr.replay_id());
    }
  }
  out.set_code(static_cast<int>(ToGrpcStatus(s).error_code()));
  if (s.ok()) {
    out.set_response(types->response->SerializeAsString());
  } else {
    out.set_message(s.message());
  }
  return out;
}

Result<Committed> CommitCommand(replication::Replica& replica, Result<storage::WriteCommand> cmd,
                                std::string_view request_id, Deadline deadline) {
  BULWARK_RETURN_IF_ERROR(cmd.status());
  cmd->request_id = request_id;
  cmd->proposed_unix_ms = ToUnixMs(std::chrono::system_clock::now());
  auto committed = replica.Propose(std::move(cmd).value(), deadline);
  if (!committed.ok() && committed.status().code() == Code::kFailedPrecondition) {
    return Status::FailedPrecondition(std::string(kNotLeader));
  }
  BULWARK_RETURN_IF_ERROR(committed.status());
  BULWARK_RETURN_IF_ERROR(committed->outcome.status);
  return committed;
}

Result<Committed> CommitOnce(replication::Replica& replica, Result<storage::WriteCommand> cmd,
                             std::string_view replay_id, Deadline deadline) {
  BULWARK_ASSIGN_OR_RETURN(Committed c, CommitCommand(replica, std::move(cmd), replay_id, deadline));
  if (c.outcome.duplicate && !replay_id.empty()) {
    // The client library matches this text to re-sign and retry (kReplayRefused).
    return Status::AlreadyExists("this signed request was already applied; a replay is not applied again");
  }
  return c;
}

Status WritePath::LeaderWrite(std::string_view method, const pb::Message& request, pb::Message* response,
                              Deadline deadline, std::string_view replay_id) {
  const bool account = IsAccountWrite(method);
  if (account) BULWARK_RETURN_IF_ERROR(node_->geo->BeforeWrite(deadline));
  BULWARK_RETURN_IF_ERROR(LocalWrite(method, request, response, deadline, replay_id));
  // A region change restarts the stream it would wait on; it needs only to
  // be committed here (every region applies it in GLSN order).
  if (!account || method == "ChangeRegions") return Status::Ok();
  return node_->geo->AfterWrite(node_->store->geo_position().glsn, deadline);
}

Status WritePath::LocalWrite(std::string_view method, const pb::Message& request, pb::Message* response,
                             Deadline deadline, std::string_view replay_id) {
  storage::DocumentStore& st = *node_->store;
  replication::Replica& replica = *node_->replica;
  auto token = [&st](const Committed& c) { return SessionToken(st.geo_position().epoch, c.outcome.glsn); };
  std::unique_lock<std::mutex> ddl;
  if (method == "CreateDatabase" || method == "DeleteDatabase" || method == "CreateContainer" ||
      method == "DeleteContainer" || method == "PurgeContainer") {
    ddl = std::unique_lock(ddl_mu_);
  }
  if (method == "CreateDatabase") {
    const auto& r = static_cast<const v1::CreateDatabaseRequest&>(request);
    const std::string fence = storage::JoinFence({r.allowed_regions().begin(), r.allowed_regions().end()});
    BULWARK_RETURN_IF_ERROR(node_->geo->CheckNewFence("dbs/" + r.database(), fence));
    BULWARK_ASSIGN_OR_RETURN(Committed c,
                             CommitOnce(replica, st.PrepareCreateDatabase(r.database(), fence), replay_id, deadline));
    auto* d = static_cast<v1::DatabaseResponse*>(response)->mutable_database();
    d->set_id(r.database());
    d->set_etag(c.outcome.etag);
    d->set_ts(c.outcome.ts);
    for (std::string& region : storage::SplitFence(fence)) d->add_allowed_regions(std::move(region));
    return Status::Ok();
  }
  if (method == "DeleteDatabase") {
    const auto& r = static_cast<const v1::DeleteDatabaseRequest&>(request);
    BULWARK_ASSIGN_OR_RETURN(Committed c,
                             CommitOnce(replica, st.PrepareDeleteDatabase(r.database()), replay_id, deadline));
    static_cast<v1::DeleteResponse*>(response)->set_session_token(token(c));
    return Status::Ok();
  }
  if (method == "CreateContainer") {
    const auto& r = static_cast<const v1::CreateContainerRequest&>(request);
    auto cmd = st.PrepareCreateContainer(r.database(), r.container(), r.partition_key_path(),
                                         storage::JoinFence({r.allowed_regions().begin(), r.allowed_regions().end()}));
    if (cmd.ok()) {
      BULWARK_RETURN_IF_ERROR(node_->geo->CheckNewFence("dbs/" + r.database() + "/colls/" + r.container(), cmd->fence));
    }
    BULWARK_ASSIGN_OR_RETURN(Committed c, CommitOnce(replica, std::move(cmd), replay_id, deadline));
    auto* out = static_cast<v1::ContainerResponse*>(response)->mutable_container();
    const storage::ContainerInfo& info = c.outcome.container;
    out->set_database(info.database);
    out->set_id(info.id);
    out->set_partition_key_path(info.partition_key_path);
    out->set_rid(info.rid);
    out->set_etag(info.etag);
    out->set_ts(info.ts);
    for (const std::string& region : info.allowed_regions) out->add_allowed_regions(region);
    return Status::Ok();
  }
  if (method == "DeleteContainer") {
    const auto& r = static_cast<const v1::DeleteContainerRequest&>(request);
    BULWARK_ASSIGN_OR_RETURN(
        Committed c, CommitOnce(replica, st.PrepareDeleteContainer(r.database(), r.container()), replay_id, deadline));
    static_cast<v1::DeleteResponse*>(response)->set_session_token(token(c));
    return Status::Ok();
  }
  if (method == "CreateItem" || method == "UpsertItem" || method == "ReplaceItem") {
    const auto& r = static_cast<const v1::WriteItemRequest&>(request);
    const auto kind = method == "CreateItem"   ? storage::WriteCommand::Kind::kCreateItem
                      : method == "UpsertItem" ? storage::WriteCommand::Kind::kUpsertItem
                                               : storage::WriteCommand::Kind::kReplaceItem;
    std::string json;
    auto cmd = st.PrepareItemWrite(kind, r.database(), r.container(), r.item_json(), r.id(), r.if_match(), &json);
    std::string pk = cmd.ok() ? cmd->partition_key : std::string();
    std::string id = cmd.ok() ? cmd->item_id : std::string();
    BULWARK_ASSIGN_OR_RETURN(Committed c, r.request_id().empty()
                                              ? CommitOnce(replica, std::move(cmd), replay_id, deadline)
                                              : CommitCommand(replica, std::move(cmd), r.request_id(), deadline));
    auto* out = static_cast<v1::ItemResponse*>(response);
    if (c.outcome.duplicate) {
      // A retry of a write that already happened: answer with the item as
      // it is now (it may have changed since).
      auto current = st.ReadItem(r.database(), r.container(), pk, id);
      if (current.ok()) json = std::move(current->json);
    }
    out->set_item_json(std::move(json));
    out->set_etag(c.outcome.etag);
    out->set_ts(c.outcome.ts);
    out->set_session_token(token(c));
    return Status::Ok();
  }
  if (method == "DeleteItem") {
    const auto& r = static_cast<const v1::DeleteItemRequest&>(request);
    auto cmd = st.PrepareDeleteItem(r.database(), r.container(), r.partition_key_json(), r.id(), r.if_match());
    BULWARK_ASSIGN_OR_RETURN(Committed c, r.request_id().empty()
                                              ? CommitOnce(replica, std::move(cmd), replay_id, deadline)
                                              : CommitCommand(replica, std::move(cmd), r.request_id(), deadline));
    static_cast<v1::DeleteResponse*>(response)->set_session_token(token(c));
    return Status::Ok();
  }
  if (method == "RotateDataKey") {
    const auto& r = static_cast<const v1::RotateDataKeyRequest&>(request);
    BULWARK_ASSIGN_OR_RETURN(
        Committed c, CommitOnce(replica, st.PrepareRotateDataKey(r.database(), r.container()), replay_id, deadline));
    static_cast<v1::RotateDataKeyResponse*>(response)->set_version(c.outcome.key_version);
    return Status::Ok();
  }
  if (method == "PurgeContainer") {
    const auto& r = static_cast<const v1::PurgeContainerRequest&>(request);
    BULWARK_ASSIGN_OR_RETURN(
        Committed c, CommitOnce(replica, st.PreparePurgeContainer(r.database(), r.container()), replay_id, deadline));
    auto* out = static_cast<v1::PurgeContainerResponse*>(response);
    for (const auto& rid : c.outcome.purged_rids) out->add_rids(rid);
    out->set_index(c.index);
    return Status::Ok();
  }
  if (method == "FirewallAllow" || method == "FirewallDeny") {
    const auto& r = static_cast<const v1::FirewallChangeRequest&>(request);
    BULWARK_ASSIGN_OR_RETURN(security::CidrRange range, security::ParseCidr(r.range()));
    BULWARK_ASSIGN_OR_RETURN(
        Committed c,
        CommitOnce(replica, st.PrepareFirewallChange(method == "FirewallAllow", security::FormatCidr(range)), replay_id,
                   deadline));
    (void)c;
    BULWARK_ASSIGN_OR_RETURN(auto ranges, st.ClientAllowlist());
    for (const auto& x : ranges) static_cast<v1::FirewallResponse*>(response)->add_ranges(x);
    return Status::Ok();
  }
  if (method == "ChangeRegions") {
    const auto& r = static_cast<const v1::ChangeRegionsRequest&>(request);
    BULWARK_ASSIGN_OR_RETURN(auto change, node_->geo->PrepareRegionChange(r));
    BULWARK_ASSIGN_OR_RETURN(
        Committed c, CommitOnce(replica, st.PrepareSetRegions(change.first, change.second), replay_id, deadline));
    (void)c;
    BULWARK_ASSIGN_OR_RETURN(GeoConfig next, DecodeRegions(change.first, node_->config->geo));
    FillTopologyOf(*node_->config, next, next.epoch, static_cast<v1::TopologyResponse*>(response));
    return Status::Ok();
  }
  if (method == "DiscardConflict") {
    // The feed is the region's own: committed in its replica set, in any region.
    const auto& r = static_cast<const v1::ConflictRequest&>(request);
    BULWARK_ASSIGN_OR_RETURN(
        Committed c,
        CommitOnce(replica, st.PrepareDiscardConflict(r.database(), r.container(), r.id()), replay_id, deadline));
    (void)c;
    return Status::Ok();
  }
  if (method == "AddNode" || method == "RemoveNode") return ChangeMembership(method, request, response, deadline);
  if (IsAccessWrite(method)) return AccessWrite(*node_, method, request, response, deadline, replay_id);
  return Status::Internal("no write path for method '" + std::string(method) + "'");
}

Status WritePath::ChangeMembership(std::string_view method, const pb::Message& request, pb::Message* response,
                                   Deadline deadline) {
  replication::Replica& replica = *node_->replica;
  const auto voters = replica.status().voters;
  const auto is_voter = [&](uint64_t id) { return std::find(voters.begin(), voters.end(), id) != voters.end(); };
  storage::WriteCommand book;
  book.kind = storage::WriteCommand::Kind::kSetMember;
  raft::ConfChange cc;
  if (method == "AddNode") {
    const auto& r = static_cast<const v1::AddNodeRequest&>(request);
    if (r.id() == 0) return Status::InvalidArgument("a node id must be >= 1");
    if (r.peer_address().find(':') == std::string::npos) {
      return Status::InvalidArgument("the new node's peer address must be ip:port");
    }
    if (is_voter(r.id())) return Status::AlreadyExists("node " + std::to_string(r.id()) + " is already a member");
    // The address first, so every member can reach the node by the time it votes.
    book.member_id = r.id();
    book.member_address = r.peer_address();
    BULWARK_RETURN_IF_ERROR(CommitCommand(replica, std::move(book), {}, deadline).status());
    cc = {raft::ConfChangeType::kAddNode, r.id()};
    BULWARK_RETURN_IF_ERROR(replica.ChangeMembership(cc, deadline));
  } else {
    const auto& r = static_cast<const v1::RemoveNodeRequest&>(request);
    if (!is_voter(r.id())) return Status::NotFound("node " + std::to_string(r.id()) + " is not a member");
    if (voters.size() <= 1) return Status::FailedPrecondition("the last member cannot be removed");
    cc = {raft::ConfChangeType::kRemoveNode, r.id()};
    BULWARK_RETURN_IF_ERROR(replica.ChangeMembership(cc, deadline));
    book.member_id = r.id();
    BULWARK_RETURN_IF_ERROR(CommitCommand(replica, std::move(book), {}, deadline).status());
  }
  for (uint64_t v : replica.status().voters) static_cast<v1::MembershipResponse*>(response)->add_voters(v);
  spdlog::info("event=membership_change_done op={} voters={}", method, replica.status().voters.size());
  return Status::Ok();
}

Result<ConsistencyLevel> WritePath::Level(const v1::ReadOptions& options) const {
  const ConsistencyLevel account = node_->config->default_consistency;
  ConsistencyLevel level = account;
  if (options.consistency() != v1::CONSISTENCY_LEVEL_UNSPECIFIED) {
    if (options.consistency() < v1::STRONG || options.consistency() > v1::EVENTUAL) {
      return Status::InvalidArgument("unknown consistency level");
    }
    level = static_cast<ConsistencyLevel>(options.consistency());
  }
  if (!MayRelax(account, level)) {
    return Status::InvalidArgument("consistency " + std::string(ConsistencyName(level)) +
                                   " is stronger than the account default " + std::string(ConsistencyName(account)) +
                                   "; a request may only relax it");
  }
  return level;
}

Status WritePath::PrepareRead(const v1::ReadOptions& options, Deadline deadline) {
  BULWARK_ASSIGN_OR_RETURN(ConsistencyLevel level, Level(options));
  uint64_t session_glsn = 0;
  if (level == ConsistencyLevel::kSession && !options.session_token().empty()) {
    BULWARK_ASSIGN_OR_RETURN(session_glsn, ParseSessionToken(options.session_token()));
  }
  return node_->geo->PrepareRead(level, session_glsn, deadline);
}

Status WritePath::FinishRead(const v1::ReadOptions& options, Deadline deadline) {
  BULWARK_ASSIGN_OR_RETURN(ConsistencyLevel level, Level(options));
  return node_->geo->FinishRead(level, deadline);
}

std::string WritePath::ReadSessionToken() const {
  const storage::GeoPosition pos = node_->store->geo_position();
  return SessionToken(pos.epoch, pos.glsn);
}

bool IsAccountWrite(std::string_view method) {
  return method != "AddNode" && method != "RemoveNode" && method != "DiscardConflict";
}

}  // namespace bulwark::server
