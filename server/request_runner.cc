// RequestRunner: what every request goes through before and after its
// handler (services.h): drain and deadline checks, the IP firewall, blocked
// sources, authentication and authorization, the per-principal rate limit,
// then metrics, the log and the audit log.
#include <set>

#include <spdlog/spdlog.h>

#include "common/clock.h"

#include "security/audit_log.h"
#include "security/ip_allowlist.h"
#include "server/services.h"

namespace bulwark::server {

using security::ResourceRef;
using BStatus = ::bulwark::Status;

Deadline RequestDeadline(const grpc::ServerContext* ctx, const NodeConfig& config) {
  return std::min(ctx->deadline(),
                  std::chrono::system_clock::now() + std::chrono::milliseconds(config.limits.request_deadline_ms));
}

// ---- RequestRunner ---------------------------------------------------------

void RequestRunner::WarnIfPlaintext(grpc::ServerContext* ctx) {
  if (!node_->config->insecure) return;
  const std::string peer = ctx->peer();
  std::lock_guard lock(node_->peers_mu);
  if (node_->plaintext_peers.size() >= kMaxTrackedPlaintextPeers) node_->plaintext_peers.clear();
  if (node_->plaintext_peers.insert(peer).second) {
    spdlog::warn("event=plaintext_connection peer={} note=\"--insecure: this connection is not encrypted\"", peer);
  }
}

bool RequestRunner::FirewallAllows(grpc::ServerContext* ctx, const AccessSnapshot& snap) {
  if (snap.firewall != nullptr && snap.firewall->Allows(ctx->peer())) return true;
  // Counted, not logged per request: a refused flood must not flood the log.
  ++node_->firewall_refused;
  spdlog::debug("event=firewall_refused peer={}", ctx->peer());
  return false;
}

Result<Principal> RequestRunner::CheckAccess(grpc::ServerContext* ctx, const ResourceRef& ref, const Operation& op,
                                             const AccessSnapshot& snap, std::string& principal) {
  BULWARK_ASSIGN_OR_RETURN(Principal who, node_->access->Authenticate(*ctx, ref, snap));
  // Known from here on, refused or not: the audit log says who was refused.
  principal = who.display;
  BULWARK_RETURN_IF_ERROR(node_->access->Authorize(who, op, snap));
  return who;
}

Operation ControlOp(const char* name, const ResourceRef& ref) {
  // What an operator may still do in lockdown: contain the incident.
  static const std::set<std::string_view> kIncidentResponse = {
      "RegenerateKey", "FirewallAllow",     "FirewallDeny", "DeleteUser",  "DeletePermission",
      "UnassignRole",  "SetAccessSettings", "RemoveIssuer", "SetLockdown", "TransferLeader"};
  Operation op;
  op.name = name;
  op.plane = Plane::kControl;
  op.write = ref.verb != "get";
  op.allowed_in_lockdown = kIncidentResponse.count(name) != 0;
  return op;
}

Operation DataOp(const char* name, std::string_view action, std::string_view db, std::string_view container) {
  Operation op;
  op.name = name;
  op.plane = Plane::kData;
  op.action = action;
  op.write = action != security::action::kReadMetadata && action != security::action::kItemsRead &&
             action != security::action::kExecuteQuery && action != security::action::kReadChangeFeed;
  op.database = db;
  op.container = container;
  return op;
}

grpc::Status RequestRunner::Run(grpc::ServerContext* ctx, const char* operation, const ResourceRef& ref, Handler fn) {
  return Run(ctx, ControlOp(operation, ref), ref, std::move(fn));
}

grpc::Status RequestRunner::RunAs(grpc::ServerContext* ctx, const char* operation, const ResourceRef& ref,
                                  PrincipalHandler fn) {
  return RunAs(ctx, ControlOp(operation, ref), ref, std::move(fn));
}

grpc::Status RequestRunner::Run(grpc::ServerContext* ctx, const Operation& op, const ResourceRef& ref, Handler fn) {
  return RunAs(ctx, op, ref, [&fn](const Principal&) { return fn(); });
}

namespace {
// Why a request was refused before it ran, for the refusal metric.
std::string_view RefusalReason(const BStatus& s) {
  const std::string& m = s.message();
  if (s.code() == Code::kPermissionDenied) return "forbidden";
  if (m.find("not signed") != std::string::npos) return "missing";
  if (m.find("x-ms-date") != std::string::npos) return "date";
  if (m.find("signature does not match") != std::string::npos) return "bad_signature";
  if (m.find("expired") != std::string::npos) return "expired";
  if (m.find("regenerated") != std::string::npos || m.find("deleted") != std::string::npos) return "revoked";
  if (m.find("identity token") != std::string::npos || m.find("JWT") != std::string::npos ||
      m.find("issuer") != std::string::npos || m.find("audience") != std::string::npos) {
    return "identity_token";
  }
  if (m.find("resource token") != std::string::npos) return "resource_token";
  return "malformed";
}
}  // namespace

grpc::Status RequestRunner::RunAs(grpc::ServerContext* ctx, const Operation& op, const ResourceRef& ref,
                                  PrincipalHandler fn) {
  const char* operation = op.name;
  const auto start = std::chrono::steady_clock::now();
  WarnIfPlaintext(ctx);
  // Counted before the draining check, so the drain never misses a request
  // that got past it.
  ++node_->in_flight;
  const std::string peer = ctx->peer();
  const std::string source(security::PeerHost(peer));
  std::string principal = "-";
  std::string refusal;  // set when the request was refused before it ran
  std::optional<std::chrono::milliseconds> retry_after;
  BStatus s;
  // One snapshot of the access state (firewall included) for the whole check.
  std::shared_ptr<const AccessSnapshot> snap;
  const auto load = [&]() -> BStatus {
    auto loaded = node_->access->Snapshot();
    if (!loaded.ok()) return loaded.status();
    snap = std::move(loaded).value();
    return BStatus::Ok();
  };
  if (node_->draining) {
    s = BStatus::Unavailable("the node is shutting down; retry against another node");
  } else if (ctx->deadline() < std::chrono::system_clock::now()) {
    s = BStatus::DeadlineExceeded("the request's deadline passed before it started");
  } else if (s = load(); !s.ok()) {
    // The access state cannot be read: nobody gets in (s says why).
  } else if (!FirewallAllows(ctx, *snap)) {
    // Counted by the firewall, not logged per request: a refused flood
    // must not flood the log.
    refusal = "firewall";
    s = BStatus::PermissionDenied("request refused");
  } else if (auto left = node_->guard->Blocked(source, start)) {
    refusal = "blocked";
    s = BStatus::PermissionDenied("this address is blocked after repeated failed authentication; retry in " +
                                  std::to_string(left->count() / 1000 + 1) + " s");
  } else {
    auto who = CheckAccess(ctx, ref, op, *snap, principal);
    if (!who.ok()) {
      s = who.status();
      refusal = RefusalReason(s);
      if (s.code() == Code::kUnauthenticated) OnAuthFailure(source, peer, start);
    } else {
      if ((retry_after = node_->limiter->Take(principal, start))) {
        refusal = "rate_limited";
        s = BStatus::ResourceExhausted("the request rate of " + principal + " is over its limit; retry after " +
                                       std::to_string(retry_after->count()) + " ms");
      } else if (node_->config->witness && std::string_view(operation) != "Status") {
        // A witness votes in the control group and holds nothing else.
        s = BStatus::FailedPrecondition(std::string(operation) +
                                        ": this node is a control group witness; it stores no documents (use a "
                                        "region's node)");
      } else {
        s = fn(*who);
      }
    }
  }
  const auto latency = std::chrono::steady_clock::now() - start;
  --node_->in_flight;
  const std::string code(CodeName(s.code()));
  node_->metrics->Record(operation, code, std::chrono::duration<double>(latency).count(), op.consistency);
  if (!refusal.empty()) {
    node_->metrics->Increment("bulwark_refusals_total",
                              "Requests refused before they ran, by reason (firewall, blocked, rate_limited, "
                              "forbidden, bad_signature, expired, revoked, ...).",
                              "reason=\"" + refusal + "\"");
  }
  if ((s.code() == Code::kUnauthenticated || s.code() == Code::kPermissionDenied) && refusal != "firewall") {
    spdlog::warn("event=auth_failed operation={} peer={} code={} reason=\"{}\"", operation, peer, code, s.message());
  } else if (s.code() == Code::kInternal || s.code() == Code::kIOError || s.code() == Code::kCorruption) {
    spdlog::error("event=request_failed operation={} code={} error=\"{}\"", operation, code, s.message());
  }
  // The audit log: every change, every control-plane call and every
  // refusal; data-plane reads only when configured.
  if (node_->audit != nullptr &&
      (op.write || op.plane == Plane::kControl || !refusal.empty() || node_->config->audit_reads)) {
    security::AuditRecord r;
    r.time_unix_ms = UnixNowMillis();
    r.principal = principal;
    r.source = peer;
    r.operation = operation;
    r.resource = ref.link;
    r.code = code;
    r.latency_us = std::chrono::duration_cast<std::chrono::microseconds>(latency).count();
    if (!refusal.empty()) r.detail = "refused: " + refusal;
    node_->audit->Append(std::move(r));
  }
  grpc::Status out = ToGrpcStatus(s);
  if (retry_after) {
    // Cosmos DB's header for a throttled request (429): how long to wait.
    ctx->AddTrailingMetadata("x-ms-retry-after-ms", std::to_string(retry_after->count()));
  }
  return out;
}

void RequestRunner::OnAuthFailure(const std::string& source, const std::string& peer, SteadyTime now) {
  if (auto block = node_->guard->RecordFailure(source, now)) {
    const std::string message = "address " + source + " blocked for " + std::to_string(block->duration.count() / 1000) +
                                " s after repeated failed authentication (block " + std::to_string(block->repeat) + ")";
    spdlog::warn("event=address_blocked source={} seconds={} repeat={}", source, block->duration.count() / 1000,
                 block->repeat);
    node_->alerts->Raise("address_blocked", message);
    if (node_->audit != nullptr) {
      security::AuditRecord r;
      r.time_unix_ms = UnixNowMillis();
      r.principal = "-";
      r.source = peer;
      r.operation = "AddressBlocked";
      r.code = "PermissionDenied";
      r.detail = message;
      node_->audit->Append(std::move(r));
    }
  }
  if (node_->guard->ShouldAlert(now)) {
    node_->alerts->Raise("auth_failure_rate", std::to_string(node_->guard->FailuresLastMinute(now)) +
                                                  " failed authentications in the last minute on this node");
  }
}

}  // namespace bulwark::server
