#include "server/services.h"

#include "server/backup_worker.h"
#include "server/control.h"
#include "server/geo.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "common/consistency.h"
#include "crypto/master_key.h"
#include "replication/replica.h"
#include "security/audit_log.h"
#include "server/geo.h"
#include "storage/item_rules.h"

namespace bulwark::server {
namespace {

using security::ResourceRef;
using BStatus = ::bulwark::Status;
using Ctx = grpc::ServerContext;

void FillDatabase(const storage::DatabaseInfo& d, v1::Database* out) {
  out->set_id(d.id);
  out->set_etag(d.etag);
  out->set_ts(d.ts);
  for (const std::string& r : d.allowed_regions) out->add_allowed_regions(r);
}

void FillContainer(const storage::ContainerInfo& c, v1::Container* out) {
  out->set_database(c.database);
  out->set_id(c.id);
  out->set_partition_key_path(c.partition_key_path);
  out->set_rid(c.rid);
  out->set_etag(c.etag);
  out->set_ts(c.ts);
  for (const std::string& r : c.allowed_regions) out->add_allowed_regions(r);
}

}  // namespace

using Ctx = grpc::ServerContext;

// ---- DocumentService -------------------------------------------------------

namespace {

// Item writes: the partition key is in the item, under the container's path.
Operation ItemWriteOp(const char* name, std::string_view action, const v1::WriteItemRequest& req,
                      storage::DocumentStore* store) {
  Operation op = DataOp(name, action, req.database(), req.container());
  op.partition_key = [&req, store]() -> Result<std::string> {
    BULWARK_ASSIGN_OR_RETURN(auto c, store->ReadContainer(req.database(), req.container()));
    nlohmann::json item;
    BULWARK_RETURN_IF_ERROR(storage::ParseItemJson(req.item_json(), item));
    BULWARK_ASSIGN_OR_RETURN(auto identity, storage::ExtractIdentity(item, c.partition_key_path));
    return identity.partition_key;
  };
  return op;
}

template <typename Req>
Operation PointOp(const char* name, std::string_view action, const Req& req) {
  Operation op = DataOp(name, action, req.database(), req.container());
  op.partition_key = [&req]() { return storage::CanonicalPartitionKey(req.partition_key_json()); };
  return op;
}

std::string LevelLabel(const v1::ReadOptions& options);

// The level a read asked for, as a metrics label ("default": the account's).
std::string LevelLabel(const v1::ReadOptions& options) {
  const auto level = options.consistency();
  if (level < v1::STRONG || level > v1::EVENTUAL) return "default";
  return std::string(ConsistencyName(static_cast<ConsistencyLevel>(level)));
}

Operation ListOp(const v1::ListItemsRequest& req) {
  Operation op = DataOp("ListItems", security::action::kExecuteQuery, req.database(), req.container());
  op.consistency = LevelLabel(req.options());
  if (!req.partition_key_json().empty()) {
    op.partition_key = [&req]() { return storage::CanonicalPartitionKey(req.partition_key_json()); };
  }
  return op;
}

}  // namespace

BStatus DocumentService::PrepareRead(Ctx* ctx, const v1::ReadOptions& options) {
  return node_->writes->PrepareRead(options, RequestDeadline(ctx, *node_->config));
}

grpc::Status DocumentService::CreateDatabase(Ctx* ctx, const v1::CreateDatabaseRequest* req,
                                             v1::DatabaseResponse* resp) {
  return runner_.RunAs(ctx, "CreateDatabase", security::DatabaseFeedRef("post"), [&](const Principal& who) -> BStatus {
    return node_->writes->Write("CreateDatabase", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id);
  });
}

grpc::Status DocumentService::ReadDatabase(Ctx* ctx, const v1::ReadDatabaseRequest* req, v1::DatabaseResponse* resp) {
  return runner_.Run(ctx, DataOp("ReadDatabase", security::action::kReadMetadata, req->database(), ""),
                     security::DatabaseRef("get", req->database()), [&]() -> BStatus {
                       BULWARK_ASSIGN_OR_RETURN(auto d, node_->store->ReadDatabase(req->database()));
                       FillDatabase(d, resp->mutable_database());
                       return BStatus::Ok();
                     });
}

grpc::Status DocumentService::ListDatabases(Ctx* ctx, const v1::ListDatabasesRequest*,
                                            v1::ListDatabasesResponse* resp) {
  return runner_.Run(ctx, DataOp("ListDatabases", security::action::kReadMetadata, "", ""),
                     security::DatabaseFeedRef("get"), [&]() -> BStatus {
                       BULWARK_ASSIGN_OR_RETURN(auto list, node_->store->ListDatabases());
                       for (const auto& d : list) FillDatabase(d, resp->add_databases());
                       return BStatus::Ok();
                     });
}

grpc::Status DocumentService::DeleteDatabase(Ctx* ctx, const v1::DeleteDatabaseRequest* req, v1::DeleteResponse* resp) {
  return runner_.RunAs(
      ctx, "DeleteDatabase", security::DatabaseRef("delete", req->database()), [&](const Principal& who) -> BStatus {
        return node_->writes->Write("DeleteDatabase", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id);
      });
}

grpc::Status DocumentService::CreateContainer(Ctx* ctx, const v1::CreateContainerRequest* req,
                                              v1::ContainerResponse* resp) {
  return runner_.RunAs(ctx, "CreateContainer", security::ContainerFeedRef("post", req->database()),
                       [&](const Principal& who) -> BStatus {
                         return node_->writes->Write("CreateContainer", *req, resp,
                                                     RequestDeadline(ctx, *node_->config), who.replay_id);
                       });
}

grpc::Status DocumentService::ReadContainer(Ctx* ctx, const v1::ReadContainerRequest* req,
                                            v1::ContainerResponse* resp) {
  return runner_.Run(ctx, DataOp("ReadContainer", security::action::kReadMetadata, req->database(), req->container()),
                     security::ContainerRef("get", req->database(), req->container()), [&]() -> BStatus {
                       BULWARK_ASSIGN_OR_RETURN(auto c, node_->store->ReadContainer(req->database(), req->container()));
                       FillContainer(c, resp->mutable_container());
                       return BStatus::Ok();
                     });
}

grpc::Status DocumentService::ListContainers(Ctx* ctx, const v1::ListContainersRequest* req,
                                             v1::ListContainersResponse* resp) {
  return runner_.Run(ctx, DataOp("ListContainers", security::action::kReadMetadata, req->database(), ""),
                     security::ContainerFeedRef("get", req->database()), [&]() -> BStatus {
                       BULWARK_ASSIGN_OR_RETURN(auto list, node_->store->ListContainers(req->database()));
                       for (const auto& c : list) FillContainer(c, resp->add_containers());
                       return BStatus::Ok();
                     });
}

grpc::Status DocumentService::DeleteContainer(Ctx* ctx, const v1::DeleteContainerRequest* req,
                                              v1::DeleteResponse* resp) {
  return runner_.RunAs(ctx, "DeleteContainer", security::ContainerRef("delete", req->database(), req->container()),
                       [&](const Principal& who) -> BStatus {
                         return node_->writes->Write("DeleteContainer", *req, resp,
                                                     RequestDeadline(ctx, *node_->config), who.replay_id);
                       });
}

namespace {
void FillItem(const storage::ItemResult& r, std::string session_token, v1::ItemResponse* resp) {
  resp->set_item_json(r.json);
  resp->set_etag(r.etag);
  resp->set_ts(r.ts);
  resp->set_session_token(std::move(session_token));
}
}  // namespace

grpc::Status DocumentService::CreateItem(Ctx* ctx, const v1::WriteItemRequest* req, v1::ItemResponse* resp) {
  return runner_.RunAs(
      ctx, ItemWriteOp("CreateItem", security::action::kItemsCreate, *req, node_->store),
      security::ItemFeedRef("post", req->database(), req->container()), [&](const Principal& who) -> BStatus {
        return node_->writes->Write("CreateItem", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id);
      });
}

grpc::Status DocumentService::UpsertItem(Ctx* ctx, const v1::WriteItemRequest* req, v1::ItemResponse* resp) {
  // Cosmos DB signs an upsert as a POST to the item feed.
  return runner_.RunAs(
      ctx, ItemWriteOp("UpsertItem", security::action::kItemsUpsert, *req, node_->store),
      security::ItemFeedRef("post", req->database(), req->container()), [&](const Principal& who) -> BStatus {
        return node_->writes->Write("UpsertItem", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id);
      });
}

grpc::Status DocumentService::ReplaceItem(Ctx* ctx, const v1::WriteItemRequest* req, v1::ItemResponse* resp) {
  return runner_.RunAs(
      ctx, ItemWriteOp("ReplaceItem", security::action::kItemsReplace, *req, node_->store),
      security::ItemRef("put", req->database(), req->container(), req->id()), [&](const Principal& who) -> BStatus {
        return node_->writes->Write("ReplaceItem", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id);
      });
}

grpc::Status DocumentService::ReadItem(Ctx* ctx, const v1::ReadItemRequest* req, v1::ItemResponse* resp) {
  Operation op = PointOp("ReadItem", security::action::kItemsRead, *req);
  op.consistency = LevelLabel(req->options());
  return runner_.Run(ctx, op, security::ItemRef("get", req->database(), req->container(), req->id()), [&]() -> BStatus {
    BULWARK_RETURN_IF_ERROR(PrepareRead(ctx, req->options()));
    auto r = node_->store->ReadItem(req->database(), req->container(), req->partition_key_json(), req->id());
    // Taken after the read: it covers whatever the read saw (monotonic reads).
    std::string token = node_->writes->ReadSessionToken();
    // Strong: what was read (or found missing) must be committed in every
    // region of the quorum set before it is shown.
    BULWARK_RETURN_IF_ERROR(node_->writes->FinishRead(req->options(), RequestDeadline(ctx, *node_->config)));
    BULWARK_RETURN_IF_ERROR(r.status());
    FillItem(*r, std::move(token), resp);
    return BStatus::Ok();
  });
}

grpc::Status DocumentService::DeleteItem(Ctx* ctx, const v1::DeleteItemRequest* req, v1::DeleteResponse* resp) {
  return runner_.RunAs(
      ctx, PointOp("DeleteItem", security::action::kItemsDelete, *req),
      security::ItemRef("delete", req->database(), req->container(), req->id()), [&](const Principal& who) -> BStatus {
        return node_->writes->Write("DeleteItem", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id);
      });
}

grpc::Status DocumentService::ListItems(Ctx* ctx, const v1::ListItemsRequest* req, v1::ListItemsResponse* resp) {
  return runner_.Run(
      ctx, ListOp(*req), security::ItemFeedRef("get", req->database(), req->container()), [&]() -> BStatus {
        BULWARK_RETURN_IF_ERROR(PrepareRead(ctx, req->options()));
        storage::ListOptions options;
        if (!req->partition_key_json().empty()) options.partition_key = req->partition_key_json();
        if (req->max_items() != 0) options.max_items = req->max_items();
        options.continuation = req->continuation();
        auto page = node_->store->ListItems(req->database(), req->container(), options);
        std::string token = node_->writes->ReadSessionToken();
        BULWARK_RETURN_IF_ERROR(node_->writes->FinishRead(req->options(), RequestDeadline(ctx, *node_->config)));
        BULWARK_RETURN_IF_ERROR(page.status());
        for (auto& item : page->items) resp->add_items_json(std::move(item));
        resp->set_continuation(page->continuation);
        resp->set_session_token(std::move(token));
        return BStatus::Ok();
      });
}

// ---- AdminService ----------------------------------------------------------

grpc::Status AdminService::Status(Ctx* ctx, const v1::StatusRequest*, v1::StatusResponse* resp) {
  return runner_.Run(ctx, "Status", security::AccountRef("get"), [&]() -> BStatus {
    const NodeConfig& c = *node_->config;
    resp->set_node_id(c.node_id);
    resp->set_region(c.region);
    resp->set_version(BULWARK_VERSION);
    resp->set_uptime_s(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - node_->started).count());
    resp->set_last_lsn(node_->store->last_lsn());
    if (auto ranges = node_->store->ClientAllowlist(); ranges.ok()) {
      resp->set_firewall_ranges(static_cast<uint32_t>(ranges->size()));
    }
    resp->set_default_consistency(static_cast<v1::ConsistencyLevel>(c.default_consistency));
    resp->set_tls(!c.insecure);
    resp->set_live_data_bytes(node_->store->ApproximateDiskBytes());
    resp->set_master_key_id(node_->store->master_key_id());
    const replication::ReplicaStatus r = node_->replica->status();
    resp->set_replica_id(r.node_id);
    resp->set_role(r.role);
    resp->set_term(r.term);
    resp->set_leader_id(r.leader);
    resp->set_commit_index(r.commit_index);
    resp->set_applied_index(r.applied_index);
    resp->set_peer_address(c.replica.peer_address);
    resp->set_replica_error(r.error);
    auto members = ParseMembers(c.replica);
    uint64_t last = 0;
    for (const auto& [id, m] : r.match) last = std::max(last, m);
    for (uint64_t id : r.voters) {
      auto* m = resp->add_members();
      m->set_id(id);
      if (members.ok() && members->count(id) != 0) m->set_peer_address(members->at(id));
      auto it = r.match.find(id);
      if (it != r.match.end()) {
        m->set_match_index(it->second);
        m->set_lag(last - it->second);
      }
    }
    resp->set_data_key_versions(node_->store->DataKeyVersionCount());
    resp->set_store_key_version(node_->store->current_store_key_version());
    node_->geo->FillStatus(resp);
    if (node_->control) {
      resp->mutable_control()->set_configured(true);
      node_->control->FillStatus(resp->mutable_control());
    }
    return BStatus::Ok();
  });
}

namespace {
void FillBackup(const storage::BackupInfo& b, const std::string& location, v1::BackupInfo* out) {
  out->set_id(b.id);
  out->set_created_unix_ms(b.created_unix_ms);
  out->set_applied_index(b.applied_index);
  out->set_glsn(b.glsn);
  out->set_bytes(b.bytes);
  out->set_location(location);
  out->set_image_unix_ms(b.image_unix_ms);
}
}  // namespace

grpc::Status AdminService::BackupNow(Ctx* ctx, const v1::BackupNowRequest*, v1::BackupNowResponse* resp) {
  return runner_.Run(ctx, "BackupNow", security::AccountRef("post"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(storage::BackupInfo b, node_->backups->BackupNow());
    FillBackup(b, "primary", resp->mutable_backup());
    return BStatus::Ok();
  });
}

grpc::Status AdminService::ListBackups(Ctx* ctx, const v1::ListBackupsRequest*, v1::ListBackupsResponse* resp) {
  return runner_.Run(ctx, "ListBackups", security::AccountRef("get"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(auto all, node_->backups->List());
    for (const auto& [location, b] : all) FillBackup(b, location, resp->add_backups());
    BULWARK_ASSIGN_OR_RETURN(auto window, node_->backups->Window());
    if (window) {
      resp->set_restorable_from_unix_ms(window->from_unix_ms);
      resp->set_restorable_to_unix_ms(window->to_unix_ms);
    }
    resp->set_continuous(node_->config->backup.continuous);
    BULWARK_ASSIGN_OR_RETURN(auto segments, storage::ListArchive(node_->backups->dir()));
    resp->set_archive_segments(segments.size());
    return BStatus::Ok();
  });
}

grpc::Status AdminService::VerifyBackup(Ctx* ctx, const v1::VerifyBackupRequest* req, v1::VerifyBackupResponse* resp) {
  return runner_.Run(ctx, "VerifyBackup", security::AccountRef("get"), [&]() -> BStatus {
    if (req->archive()) {
      BULWARK_ASSIGN_OR_RETURN(storage::ArchiveCheck c, node_->backups->VerifyArchive());
      v1::ArchiveCheckInfo* out = resp->mutable_archive();
      out->set_segments(c.segments);
      out->set_commands(c.commands);
      out->set_first_index(c.first_index);
      out->set_last_index(c.last_index);
      for (const auto& h : c.holes) out->add_holes(h);
      return BStatus::Ok();
    }
    BULWARK_ASSIGN_OR_RETURN(storage::BackupInfo b, node_->backups->Verify(req->id()));
    FillBackup(b, "primary", resp->mutable_backup());
    return BStatus::Ok();
  });
}

grpc::Status AdminService::GetTopology(Ctx* ctx, const v1::TopologyRequest*, v1::TopologyResponse* resp) {
  return runner_.Run(ctx, DataOp("GetTopology", security::action::kReadMetadata, "", ""), security::AccountRef("get"),
                     [&]() -> BStatus {
                       node_->geo->FillTopology(resp);
                       return BStatus::Ok();
                     });
}

namespace {
// The most conflicts one ListConflicts answers.
constexpr uint32_t kMaxConflictsListed = 1000;

void FillConflict(const storage::DocumentStore::Conflict& c, v1::ConflictInfo* out) {
  out->set_id(c.id);
  out->set_database(c.database);
  out->set_container(c.container);
  out->set_partition_key(c.partition_key);
  out->set_item_id(c.item_id);
  out->set_etag(c.etag);
  out->set_deleted(c.deleted);
  out->set_ts(c.ts);
  out->set_glsn(c.glsn);
  out->set_epoch(c.epoch);
  out->set_captured_unix_ms(c.captured_unix_ms);
}
}  // namespace

grpc::Status AdminService::ListConflicts(Ctx* ctx, const v1::ConflictsRequest* req, v1::ConflictsResponse* resp) {
  return runner_.Run(ctx, "ListConflicts", security::AccountRef("get"), [&]() -> BStatus {
    const uint32_t max = req->max() == 0 ? kMaxConflictsListed : std::min(req->max(), kMaxConflictsListed);
    BULWARK_ASSIGN_OR_RETURN(auto list, node_->store->ListConflicts(req->database(), req->container(), max));
    for (const auto& c : list) FillConflict(c, resp->add_conflicts());
    resp->set_region(node_->config->region);
    return BStatus::Ok();
  });
}

grpc::Status AdminService::GetConflict(Ctx* ctx, const v1::ConflictRequest* req, v1::ConflictResponse* resp) {
  return runner_.Run(ctx, "GetConflict", security::AccountRef("get"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(auto got, node_->store->GetConflict(req->database(), req->container(), req->id()));
    FillConflict(got.first, resp->mutable_conflict());
    resp->set_item_json(std::move(got.second));
    return BStatus::Ok();
  });
}

grpc::Status AdminService::DiscardConflict(Ctx* ctx, const v1::ConflictRequest* req,
                                           v1::DiscardConflictResponse* resp) {
  return runner_.RunAs(ctx, "DiscardConflict", security::AccountRef("post"), [&](const Principal& who) -> BStatus {
    BULWARK_RETURN_IF_ERROR(
        node_->writes->Write("DiscardConflict", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id));
    spdlog::info("event=conflict_discarded database={} container={} id={}", req->database(), req->container(),
                 req->id());
    return BStatus::Ok();
  });
}

grpc::Status AdminService::ChangeRegions(Ctx* ctx, const v1::ChangeRegionsRequest* req, v1::TopologyResponse* resp) {
  return runner_.RunAs(ctx, "ChangeRegions", security::AccountRef("post"), [&](const Principal& who) -> BStatus {
    BULWARK_RETURN_IF_ERROR(
        node_->writes->Write("ChangeRegions", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id));
    spdlog::warn("event=regions_changed change={} regions={}", req->ShortDebugString(), resp->regions_size());
    return BStatus::Ok();
  });
}

grpc::Status AdminService::TransferLeader(Ctx* ctx, const v1::TransferLeaderRequest* req,
                                          v1::TransferLeaderResponse* resp) {
  return runner_.Run(ctx, "TransferLeader", security::AccountRef("post"), [&]() -> BStatus {
    replication::Replica& replica = *node_->replica;
    const auto voters = replica.status().voters;
    if (std::find(voters.begin(), voters.end(), req->to()) == voters.end()) {
      return BStatus::InvalidArgument("node " + std::to_string(req->to()) + " is not a voting member");
    }
    BULWARK_RETURN_IF_ERROR(replica.TransferLeadership(req->to()));
    // The transfer is asynchronous in Raft: wait to report where it landed.
    const Deadline deadline = RequestDeadline(ctx, *node_->config);
    const auto give_up = std::min(deadline, std::chrono::system_clock::now() + std::chrono::seconds(5));
    while (replica.leader() != req->to() && std::chrono::system_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    resp->set_leader_id(replica.leader());
    if (replica.leader() != req->to()) {
      return BStatus::Unavailable("leadership did not move to node " + std::to_string(req->to()) +
                                  " in time (is it caught up and reachable?)");
    }
    spdlog::info("event=leader_transferred to={}", req->to());
    return BStatus::Ok();
  });
}

grpc::Status AdminService::ListKeys(Ctx* ctx, const v1::ListKeysRequest*, v1::ListKeysResponse* resp) {
  return runner_.Run(ctx, "ListKeys", security::AccountRef("get"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(auto snap, node_->access->Snapshot());
    for (const auto& k : snap->keys) {
      auto* key = resp->add_keys();
      key->set_name(k.name);
      key->set_created_ts(k.created_unix_s);
      key->set_read_only(k.read_only);
    }
    return BStatus::Ok();
  });
}

grpc::Status AdminService::KeyStatus(Ctx* ctx, const v1::KeyStatusRequest*, v1::KeyStatusResponse* resp) {
  return runner_.Run(ctx, "KeyStatus", security::AccountRef("get"), [&]() -> BStatus {
    resp->set_master_key_id(node_->store->master_key_id());
    BULWARK_ASSIGN_OR_RETURN(auto usage, node_->store->StoreKeyUsageReport());
    for (const auto& u : usage) {
      auto* out = resp->add_store_keys();
      out->set_version(u.version);
      out->set_current(u.current);
      out->set_files(u.files);
      out->set_bytes(u.bytes);
    }
    BULWARK_ASSIGN_OR_RETURN(auto dek_usage, node_->store->DataKeyUsageReport());
    for (const auto& c : dek_usage.containers) {
      auto* out = resp->add_containers();
      out->set_database(c.database);
      out->set_container(c.container);
      out->set_rid(c.rid);
      out->set_current_version(c.current_version);
      out->set_reseal_pending(c.reseal_pending);
      for (const auto& v : c.versions) {
        auto* version = out->add_versions();
        version->set_version(v.version);
        version->set_current(v.current);
        version->set_items(v.items);
        version->set_change_log_records(v.change_log_records);
        version->set_bytes(v.bytes);
      }
    }
    resp->set_unflushed_values(dek_usage.unflushed_values);
    resp->set_reseal_failures(dek_usage.reseal_failures);
    resp->set_rewrite_running(node_->rewrite_running);
    BULWARK_ASSIGN_OR_RETURN(auto pending, node_->store->PendingShreds());
    for (const auto& p : pending) {
      auto* out = resp->add_pending_shreds();
      out->set_rid(p.rid);
      out->set_purge_index(p.purge_index);
    }
    if (node_->shred != nullptr) resp->set_last_shred_error(node_->shred->last_error());
    std::lock_guard lock(node_->rewrite_mu);
    resp->set_last_rewrite_error(node_->last_rewrite_error);
    return BStatus::Ok();
  });
}

void StartStoreKeyRewriteLocked(NodeContext* node) {
  if (node->rewrite_thread.joinable()) node->rewrite_thread.join();
  node->rewrite_running = true;
  node->last_rewrite_error.clear();
  // Reads and writes go on during the rewrite: compaction runs beside them.
  // Then the older store-key versions are destroyed; until that step has
  // run, a restart starts the rewrite again (bulwarkd's start-up).
  node->rewrite_thread = std::thread([node] {
    BStatus s = node->store->Compact();
    if (s.ok()) s = node->store->RetireOldStoreKeys();
    std::lock_guard inner(node->rewrite_mu);
    if (!s.ok()) node->last_rewrite_error = s.ToString();
    node->rewrite_running = false;
    spdlog::info("event=store_key_rewrite_done version={} ok={} versions_held={}",
                 node->store->current_store_key_version(), s.ok(), node->store->store_key_versions_held());
  });
}

grpc::Status AdminService::RotateStoreKey(Ctx* ctx, const v1::RotateStoreKeyRequest*,
                                          v1::RotateStoreKeyResponse* resp) {
  return runner_.Run(ctx, "RotateStoreKey", security::AccountRef("post"), [&]() -> BStatus {
    std::lock_guard lock(node_->rewrite_mu);
    if (node_->rewrite_running)
      return BStatus::Unavailable("a rewrite is still running; retry when KeyStatus says done");
    BULWARK_ASSIGN_OR_RETURN(uint32_t version, node_->store->RotateStoreKey());
    resp->set_version(version);
    StartStoreKeyRewriteLocked(node_);
    spdlog::info("event=store_key_rotated version={}", version);
    return BStatus::Ok();
  });
}

grpc::Status AdminService::RotateDataKey(Ctx* ctx, const v1::RotateDataKeyRequest* req,
                                         v1::RotateDataKeyResponse* resp) {
  // Signed as a write to the container: the key belongs to it.
  return runner_.RunAs(ctx, "RotateDataKey", security::ContainerRef("put", req->database(), req->container()),
                       [&](const Principal& who) -> BStatus {
                         BULWARK_RETURN_IF_ERROR(node_->writes->Write(
                             "RotateDataKey", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id));
                         spdlog::info("event=data_key_rotated container=dbs/{}/colls/{} version={}", req->database(),
                                      req->container(), resp->version());
                         return BStatus::Ok();
                       });
}

grpc::Status AdminService::PurgeContainer(Ctx* ctx, const v1::PurgeContainerRequest* req,
                                          v1::PurgeContainerResponse* resp) {
  // Signed as a delete of the container.
  return runner_.RunAs(
      ctx, "PurgeContainer", security::ContainerRef("delete", req->database(), req->container()),
      [&](const Principal& who) -> BStatus {
        const Deadline deadline = RequestDeadline(ctx, *node_->config);
        BULWARK_RETURN_IF_ERROR(node_->writes->Write("PurgeContainer", *req, resp, deadline, who.replay_id));
        spdlog::info("event=container_purged container=dbs/{}/colls/{} rids={} index={}", req->database(),
                     req->container(), resp->rids_size(), resp->index());
        // Wait, within the deadline, for this node to apply it and shred its
        // files. Not finishing in time is not an error: the shred goes on,
        // and KeyStatus shows it.
        const Deadline wait = deadline - kShredAnswerMargin;
        if (!node_->replica->WaitApplied(resp->index(), wait).ok()) return BStatus::Ok();
        if (node_->shred != nullptr) node_->shred->Poke();
        while (std::chrono::system_clock::now() < wait) {
          auto pending = node_->store->PendingShreds();
          if (!pending.ok()) return BStatus::Ok();
          bool mine = false;
          for (const auto& p : *pending) {
            for (const auto& rid : resp->rids()) mine = mine || p.rid == rid;
          }
          if (!mine) {
            resp->set_shredded_here(true);
            break;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return BStatus::Ok();
      });
}

grpc::Status AdminService::FirewallList(Ctx* ctx, const v1::FirewallListRequest*, v1::FirewallResponse* resp) {
  return runner_.Run(ctx, "FirewallList", security::AccountRef("get"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(auto ranges, node_->store->ClientAllowlist());
    for (const auto& r : ranges) resp->add_ranges(r);
    return BStatus::Ok();
  });
}

grpc::Status AdminService::FirewallAllow(Ctx* ctx, const v1::FirewallChangeRequest* req, v1::FirewallResponse* resp) {
  return FirewallChange(ctx, "FirewallAllow", *req, resp);
}

grpc::Status AdminService::FirewallDeny(Ctx* ctx, const v1::FirewallChangeRequest* req, v1::FirewallResponse* resp) {
  return FirewallChange(ctx, "FirewallDeny", *req, resp);
}

grpc::Status AdminService::FirewallChange(Ctx* ctx, const char* method, const v1::FirewallChangeRequest& req,
                                          v1::FirewallResponse* resp) {
  return runner_.RunAs(ctx, method, security::AccountRef("post"), [&](const Principal& who) -> BStatus {
    BULWARK_RETURN_IF_ERROR(
        node_->writes->Write(method, req, resp, RequestDeadline(ctx, *node_->config), who.replay_id));
    spdlog::info("event=firewall_changed op={} range={} ranges={}", method, req.range(), resp->ranges_size());
    return BStatus::Ok();
  });
}

grpc::Status AdminService::RotateMasterKey(Ctx* ctx, const v1::RotateMasterKeyRequest* req,
                                           v1::RotateMasterKeyResponse* resp) {
  return runner_.Run(ctx, "RotateMasterKey", security::AccountRef("post"), [&]() -> BStatus {
    BULWARK_ASSIGN_OR_RETURN(auto next, crypto::LoadMasterKey(req->new_key_uri()));
    const std::string id = next.id();
    crypto::MasterKey for_backups = next.Clone();
    crypto::MasterKey for_control = next.Clone();
    BULWARK_RETURN_IF_ERROR(node_->store->RotateMasterKey(std::move(next)));
    // A control group voter's own store (<data_dir>/control) is under the
    // same master key: without this the node would not start again.
    if (node_->control != nullptr) BULWARK_RETURN_IF_ERROR(node_->control->RotateMasterKey(std::move(for_control)));
    BULWARK_RETURN_IF_ERROR(node_->backups->RotateMasterKey(std::move(for_backups)));
    resp->set_master_key_id(id);
    spdlog::warn("event=master_key_rotated master_key={} note=\"restart this node with the new master key URI\"", id);
    return BStatus::Ok();
  });
}

grpc::Status AdminService::AddNode(Ctx* ctx, const v1::AddNodeRequest* req, v1::MembershipResponse* resp) {
  return runner_.RunAs(ctx, "AddNode", security::AccountRef("post"), [&](const Principal& who) -> BStatus {
    return node_->writes->Write("AddNode", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id);
  });
}

grpc::Status AdminService::RemoveNode(Ctx* ctx, const v1::RemoveNodeRequest* req, v1::MembershipResponse* resp) {
  return runner_.RunAs(ctx, "RemoveNode", security::AccountRef("post"), [&](const Principal& who) -> BStatus {
    return node_->writes->Write("RemoveNode", *req, resp, RequestDeadline(ctx, *node_->config), who.replay_id);
  });
}

grpc::Status AdminService::ListAlerts(Ctx* ctx, const v1::AlertsRequest*, v1::AlertsResponse* resp) {
  return runner_.Run(ctx, "ListAlerts", security::AccountRef("get"), [&]() -> BStatus {
    for (const auto& a : node_->alerts->Recent()) {
      auto* out = resp->add_alerts();
      out->set_time_unix_ms(a.time_unix_ms);
      out->set_kind(a.kind);
      out->set_message(a.message);
    }
    const auto now = std::chrono::steady_clock::now();
    resp->set_auth_failures_last_minute(node_->guard->FailuresLastMinute(now));
    resp->set_blocked_addresses(static_cast<uint32_t>(node_->guard->blocked_now(now)));
    return BStatus::Ok();
  });
}

grpc::Status AdminService::AuditVerify(Ctx* ctx, const v1::AuditVerifyRequest*, v1::AuditVerifyResponse* resp) {
  return runner_.Run(ctx, "AuditVerify", security::AccountRef("get"), [&]() -> BStatus {
    if (node_->audit == nullptr)
      return BStatus::FailedPrecondition("the audit log is off on this node (audit.enabled)");
    // Whatever was appended before this call is on disk, so the report covers it.
    BULWARK_RETURN_IF_ERROR(node_->audit->Flush());
    BULWARK_ASSIGN_OR_RETURN(auto report, security::VerifyAuditLog(node_->audit_dir, *node_->audit_keys));
    resp->set_ok(report.ok);
    resp->set_segments(report.segments);
    resp->set_records(report.records);
    resp->set_first_index(report.first_index);
    resp->set_last_index(report.last_index);
    resp->set_problem(report.problem);
    resp->set_public_key(node_->audit->public_key_base64());
    resp->set_unclean_stops(report.unclean_stops);
    if (!report.ok) spdlog::error("event=audit_verify_failed problem=\"{}\"", report.problem);
    return BStatus::Ok();
  });
}

grpc::Status AdminService::AuditQuery(Ctx* ctx, const v1::AuditQueryRequest* req, v1::AuditQueryResponse* resp) {
  return runner_.Run(ctx, "AuditQuery", security::AccountRef("get"), [&]() -> BStatus {
    if (node_->audit == nullptr)
      return BStatus::FailedPrecondition("the audit log is off on this node (audit.enabled)");
    if (req->limit() > kMaxAuditQueryRecords) {
      return BStatus::InvalidArgument("an audit query returns at most " + std::to_string(kMaxAuditQueryRecords) +
                                      " records");
    }
    BULWARK_RETURN_IF_ERROR(node_->audit->Flush());
    security::AuditQuery q;
    if (req->since_unix_ms() != 0) q.since_unix_ms = req->since_unix_ms();
    if (req->until_unix_ms() != 0) q.until_unix_ms = req->until_unix_ms();
    q.principal = req->principal();
    q.operation = req->operation();
    q.resource = req->resource();
    q.limit = req->limit() == 0 ? 1000 : req->limit();
    BULWARK_ASSIGN_OR_RETURN(auto records, security::QueryAuditLog(node_->audit_dir, *node_->audit_keys, q));
    for (const auto& r : records) {
      auto* out = resp->add_records();
      out->set_index(r.index);
      out->set_time_unix_ms(r.time_unix_ms);
      out->set_node(r.node);
      out->set_principal(r.principal);
      out->set_source(r.source);
      out->set_operation(r.operation);
      out->set_resource(r.resource);
      out->set_code(r.code);
      out->set_latency_us(r.latency_us);
      out->set_detail(r.detail);
    }
    return BStatus::Ok();
  });
}

}  // namespace bulwark::server
