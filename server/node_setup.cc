#include "server/node_setup.h"

#include <filesystem>

#include "common/clock.h"
#include "replication/replica.h"
#include "server/geo.h"

namespace bulwark::server {
namespace {

namespace fs = std::filesystem;

constexpr size_t kAuditKeyBytes = security::kAuditKeyBytes;

// Bytes of the regular files under `dir` (0 if it cannot be read).
double DirectoryBytes(const std::string& dir) {
  std::error_code ec;
  uintmax_t total = 0;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return static_cast<double>(total);
}

}  // namespace

void RegisterNodeMetrics(Metrics& metrics, NodeContext& node) {
  metrics.AddGauge("bulwark_firewall_refused_total", "Requests refused by the IP firewall since start.",
                   [&node] { return static_cast<double>(node.firewall_refused.load()); });
  metrics.AddGauge("bulwark_storage_live_bytes", "Bytes of live SST files.",
                   [&node] { return static_cast<double>(node.store->ApproximateDiskBytes()); });
  metrics.AddGauge("bulwark_raft_applied_index", "Raft index this node has applied.",
                   [&node] { return static_cast<double>(node.replica->applied_index()); });
  metrics.AddGauge("bulwark_raft_is_leader", "1 if this node leads its replica set.",
                   [&node] { return node.replica->is_leader() ? 1.0 : 0.0; });
  metrics.AddGauge("bulwark_raft_log_syncs_total", "Raft log writes with entries (each one fsync).",
                   [&node] { return static_cast<double>(node.replica->status().log_syncs); });
  metrics.AddGauge("bulwark_raft_entries_persisted_total", "Raft entries written to the log.",
                   [&node] { return static_cast<double>(node.replica->status().entries_persisted); });
  metrics.AddGauge("bulwark_raft_entries_applied_total", "Committed raft entries handed to the state machine.",
                   [&node] { return static_cast<double>(node.replica->status().entries_applied); });
  metrics.AddGauge("bulwark_raft_messages_sent_total", "Raft messages handed to the transport.",
                   [&node] { return static_cast<double>(node.replica->status().messages_sent); });
  metrics.AddGauge("bulwark_change_log_lsn", "Last LSN written to the change log.",
                   [&node] { return static_cast<double>(node.store->last_lsn()); });

  metrics.AddGauge("bulwark_raft_term", "This node's raft term.",
                   [&node] { return static_cast<double>(node.replica->status().term); });
  metrics.AddGauge("bulwark_raft_leader_changes_total", "Times this node saw a new leader.",
                   [&node] { return static_cast<double>(node.replica->status().leader_changes); });
  metrics.AddGauge("bulwark_raft_apply_lag_entries", "Committed entries this node has not applied yet.", [&node] {
    const auto s = node.replica->status();
    return static_cast<double>(s.commit_index > s.applied_index ? s.commit_index - s.applied_index : 0);
  });
  metrics.AddLabeledGauge("bulwark_replication_lag_entries",
                          "On the leader: entries each follower is behind the leader's log.", [&node] {
                            Metrics::Samples out;
                            const auto s = node.replica->status();
                            for (const auto& [id, match] : s.match) {
                              if (id == s.node_id) continue;
                              out.emplace_back("follower=\"" + std::to_string(id) + "\"",
                                               static_cast<double>(s.last_index > match ? s.last_index - match : 0));
                            }
                            return out;
                          });
  metrics.AddGauge("bulwark_geo_glsn", "The GLSN (position in the account's replication stream) applied here.",
                   [&node] { return static_cast<double>(node.store->geo_position().glsn); });
  for (const bool seconds : {false, true}) {
    metrics.AddLabeledGauge(seconds ? "bulwark_region_lag_seconds" : "bulwark_region_lag_writes",
                            seconds ? "On the write region's leader: seconds since each region last had every write."
                                    : "On the write region's leader: writes each region is behind.",
                            [&node, seconds] {
                              Metrics::Samples out;
                              if (node.geo == nullptr) return out;
                              for (const auto& lag : node.geo->RegionLags()) {
                                out.emplace_back("region=\"" + lag.region + "\"",
                                                 seconds ? lag.seconds : static_cast<double>(lag.writes));
                              }
                              return out;
                            });
  }
  metrics.AddGauge("bulwark_raft_fsyncs_total", "Raft log writes fsync'd.",
                   [&node] { return static_cast<double>(node.replica->status().fsyncs); });
  metrics.AddGauge("bulwark_raft_fsync_seconds_total", "Time spent in fsync'd raft log writes.",
                   [&node] { return node.replica->status().fsync_seconds; });
  metrics.AddGauge(
      "bulwark_auth_failures_last_minute", "Failed authentications on this node in the last minute.",
      [&node] { return static_cast<double>(node.guard->FailuresLastMinute(std::chrono::steady_clock::now())); });
  metrics.AddGauge("bulwark_blocked_addresses", "Source addresses blocked now after repeated failed authentication.",
                   [&node] { return static_cast<double>(node.guard->blocked_now(std::chrono::steady_clock::now())); });
  metrics.AddGauge("bulwark_address_blocks_total", "Blocks of source addresses since start.",
                   [&node] { return static_cast<double>(node.guard->blocks()); });
  metrics.AddGauge("bulwark_rate_limited_total", "Requests refused by the per-principal rate limit since start.",
                   [&node] { return static_cast<double>(node.limiter->limited()); });
  metrics.AddLabeledGauge("bulwark_alerts_total", "Alerts raised since start, by kind.", [&node] {
    Metrics::Samples out;
    for (const auto& [kind, n] : node.alerts->Counts())
      out.emplace_back("kind=\"" + kind + "\"", static_cast<double>(n));
    return out;
  });
  if (node.audit != nullptr) {
    metrics.AddGauge("bulwark_audit_records_total", "Audit records written since start.",
                     [&node] { return static_cast<double>(node.audit->appended()); });
    metrics.AddGauge("bulwark_audit_dropped_total",
                     "Audit records dropped by a full queue since start (each loss is "
                     "itself recorded).",
                     [&node] { return static_cast<double>(node.audit->dropped()); });
    metrics.AddGauge("bulwark_audit_bytes", "Bytes of this node's audit log on disk.",
                     [&node] { return DirectoryBytes(node.audit_dir); });
  }
  metrics.AddGauge("bulwark_firewall_ranges", "Ranges on the IP allowlist (0: the account is open to every address).",
                   [&node] {
                     auto ranges = node.store->ClientAllowlist();
                     return ranges.ok() ? static_cast<double>(ranges->size()) : -1.0;
                   });
  metrics.AddGauge("bulwark_lockdown", "1 while the account is in lockdown (read-only).", [&node] {
    auto snap = node.access->Snapshot();
    return snap.ok() && (*snap)->lockdown ? 1.0 : 0.0;
  });
  metrics.AddGauge("bulwark_data_dir_bytes", "Bytes of every file under the data directory (store, audit log).",
                   [&node] { return DirectoryBytes(node.config->data_dir); });
  metrics.AddLabeledGauge("bulwark_account_key_age_seconds", "Age of each account key.", [&node] {
    Metrics::Samples out;
    auto snap = node.access->Snapshot();
    if (!snap.ok()) return out;
    const int64_t now = UnixNowSeconds();
    for (const auto& k : (*snap)->keys) {
      if (k.created_unix_s > 0)
        out.emplace_back("name=\"" + k.name + "\"", static_cast<double>(now - k.created_unix_s));
    }
    return out;
  });
}

Result<security::AuditKeys> LoadAuditKeys(storage::DocumentStore& store) {
  BULWARK_ASSIGN_OR_RETURN(auto encryption, store.LoadOrCreateSecret("audit-encryption-key", kAuditKeyBytes));
  BULWARK_ASSIGN_OR_RETURN(auto seed, store.LoadOrCreateSecret("audit-signing-seed", security::kAuditSigningSeedBytes));
  return security::AuditKeys{std::move(encryption.value), std::move(seed.value)};
}

Result<std::unique_ptr<security::AuditLog>> OpenAuditLog(const NodeConfig& config, security::AuditKeys keys,
                                                         storage::DocumentStore& store) {
  security::AuditOptions options;
  options.dir = (fs::path(config.data_dir) / "audit").string();
  options.node = config.node_id;
  options.retention = std::chrono::seconds(static_cast<int64_t>(config.audit_retention_days) * 86400);
  options.sync = config.sync_writes;
  // Synced with each signed checkpoint (every second) rather than per batch:
  // see AuditOptions::sync_interval.
  options.sync_interval = options.checkpoint_interval;
  // Where the last clean stop sealed the log: kept in the store, which the
  // log's files cannot change, so a truncation is not taken for a crash.
  auto sealed = store.GetLocalValue(kAuditSealedThrough);
  if (sealed.ok()) {
    try {
      options.sealed_through = std::stoull(*sealed);
    } catch (const std::exception&) {
      return Status::Corruption("the audit log's recorded seal point is malformed");
    }
  } else if (sealed.status().code() != Code::kNotFound) {
    return sealed.status();
  }
  return security::AuditLog::Open(std::move(options), std::move(keys));
}

Status CloseAuditLog(security::AuditLog& log, storage::DocumentStore& store) {
  log.Close();
  if (log.sealed_through() == 0) return Status::Ok();
  return store.PutLocalValue(kAuditSealedThrough, std::to_string(log.sealed_through()));
}

}  // namespace bulwark::server
