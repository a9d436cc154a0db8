#pragma once
// Pieces of bulwarkd's start-up that main.cc would otherwise inline: the
// node's /metrics gauges, and its audit log.
//
// Ownership: RegisterNodeMetrics's gauges borrow `node`, which must outlive
// `metrics`' last Render. Thread safety: call before the server starts.

#include <memory>

#include "common/status.h"
#include "security/audit_log.h"
#include "server/metrics.h"
#include "server/services.h"

namespace bulwark::server {

// Every gauge the node exports: storage, raft (term, leader changes, lag,
// fsync time), the firewall and attack response, the audit log, key ages,
// disk usage. (Request counts and refusals are counted as requests run.)
void RegisterNodeMetrics(Metrics& metrics, NodeContext& node);

// The node's audit keys (node secrets, wrapped by the master key, created on
// first use) and its audit log in <data_dir>/audit.
Result<security::AuditKeys> LoadAuditKeys(storage::DocumentStore& store);
constexpr std::string_view kAuditSealedThrough = "audit-sealed-through";
Result<std::unique_ptr<security::AuditLog>> OpenAuditLog(const NodeConfig& config, security::AuditKeys keys,
                                                         storage::DocumentStore& store);
// Seals the log and records where, for the next OpenAuditLog.
Status CloseAuditLog(security::AuditLog& log, storage::DocumentStore& store);

}  // namespace bulwark::server
