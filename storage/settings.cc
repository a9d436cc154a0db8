// The account's replicated settings. For now the IP firewall's client
// allowlist: ranges arrive canonical (the server parses them before it
// proposes), and a change applies to the list as it stands at its place in
// the log, so concurrent allow and deny commands never lose each other.

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include <sodium.h>
#include <nlohmann/json.hpp>

#include "common/coding.h"
#include "crypto/secret.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

// Entries the list may hold (security::kMaxAllowlistEntries, repeated here so
// storage does not depend on the security library).
constexpr size_t kMaxAllowlistEntries = 1000;
constexpr size_t kMaxRangeBytes = 64;

std::vector<std::string> SplitLines(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

}  // namespace

Result<CommandEffect> FirewallEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  auto current = s.Get(s.meta, kClientAllowlistKey);
  if (!current.ok() && current.status().code() != Code::kNotFound) return current.status();
  std::vector<std::string> list = current.ok() ? SplitLines(*current) : std::vector<std::string>{};
  const auto it = std::find(list.begin(), list.end(), cmd.setting);
  if (cmd.kind == WriteCommand::Kind::kFirewallAllow) {
    if (it != list.end()) {
      e.outcome.status = Status::AlreadyExists(cmd.setting + " is already on the allowlist");
      return e;
    }
    if (list.size() >= kMaxAllowlistEntries) {
      e.outcome.status =
          Status::ResourceExhausted("the allowlist holds at most " + std::to_string(kMaxAllowlistEntries) + " entries");
      return e;
    }
    list.push_back(cmd.setting);
  } else {
    if (it == list.end()) {
      e.outcome.status = Status::NotFound(cmd.setting + " is not on the allowlist");
      return e;
    }
    list.erase(it);
  }
  std::string joined;
  for (const auto& r : list) joined += r + "\n";
  if (list.empty()) {
    e.mutations.push_back({Mutation::Kind::kDelete, s.meta, std::string(kClientAllowlistKey), {}});
  } else {
    e.mutations.push_back({Mutation::Kind::kPut, s.meta, std::string(kClientAllowlistKey), std::move(joined)});
  }
  e.settings_changed = true;
  return e;
}

Result<WriteCommand> DocumentStore::PrepareFirewallChange(bool allow, std::string_view range) const {
  if (range.empty() || range.size() > kMaxRangeBytes || range.find('\n') != std::string_view::npos) {
    return Status::InvalidArgument("a firewall range is an address or CIDR range of at most " +
                                   std::to_string(kMaxRangeBytes) + " bytes");
  }
  WriteCommand c;
  c.kind = allow ? WriteCommand::Kind::kFirewallAllow : WriteCommand::Kind::kFirewallDeny;
  c.setting = range;
  c.ts = NowUnixSeconds();
  return c;
}

Result<std::vector<std::string>> DocumentStore::ClientAllowlist() const {
  auto current = impl_->Get(impl_->meta, kClientAllowlistKey);
  if (current.status().code() == Code::kNotFound) return std::vector<std::string>{};
  BULWARK_RETURN_IF_ERROR(current.status());
  return SplitLines(*current);
}

std::string DocumentStore::RegionsVersion(std::string_view record) {
  unsigned char h[16];
  crypto_generichash(h, sizeof(h), reinterpret_cast<const unsigned char*>(record.data()), record.size(), nullptr, 0);
  return crypto::HexEncode(std::string_view(reinterpret_cast<const char*>(h), sizeof(h)));
}

Result<std::set<std::string>> DocumentStore::RegionNames(std::string_view record) {
  const nlohmann::json j = nlohmann::json::parse(record, nullptr, false);
  if (!j.is_object() || !j.contains("regions") || !j["regions"].is_array()) {
    return Status::InvalidArgument("the regions record lists no regions");
  }
  std::set<std::string> names;
  for (const auto& r : j["regions"]) {
    if (!r.is_object() || !r.contains("name") || !r["name"].is_string()) {
      return Status::InvalidArgument("a region of the regions record has no name");
    }
    names.insert(r["name"].get<std::string>());
  }
  return names;
}

DocumentStore::RegionsWriter DocumentStore::RegionsWriterOf(std::string_view record) {
  const nlohmann::json j = nlohmann::json::parse(record, nullptr, false);
  RegionsWriter w;
  if (!j.is_object()) return w;
  if (j.contains("write") && j["write"].is_string()) w.write = j["write"].get<std::string>();
  if (j.contains("epoch") && j["epoch"].is_number_unsigned() && j["epoch"].get<uint64_t>() > 0) {
    w.epoch = j["epoch"].get<uint64_t>();
  }
  return w;
}

uint64_t DocumentStore::write_epoch() const { return impl_->write_epoch.load(); }

bool DocumentStore::HasRegionImagePosition(const GeoPosition& image) const {
  return geo_position().glsn >= image.glsn && image.epoch <= write_epoch();
}

std::string EpochStartKey(uint64_t epoch) {
  std::string k(kEpochStartMetaPrefix);
  PutBigEndian64(k, epoch);
  return k;
}

Result<std::optional<DocumentStore::EpochStart>> DocumentStore::EpochStartOf(uint64_t epoch) const {
  auto v = impl_->Get(impl_->meta, EpochStartKey(epoch));
  if (v.status().code() == Code::kNotFound) return std::optional<EpochStart>();
  BULWARK_RETURN_IF_ERROR(v.status());
  std::string_view in = *v;
  EpochStart e;
  if (!GetFixed64(in, e.glsn) || !GetFixed64(in, e.index) || in.size() > 1) {
    return Status::Corruption("the epoch-start record of epoch " + std::to_string(epoch) + " is malformed");
  }
  e.takeover = !in.empty() && in[0] == 1;
  return std::optional<EpochStart>(e);
}

Status LoadWriteEpoch(DocumentStore::Impl& s) {
  auto current = s.Get(s.meta, kRegionsKey);
  if (current.status().code() == Code::kNotFound) {
    s.write_epoch.store(1);
    return Status::Ok();
  }
  BULWARK_RETURN_IF_ERROR(current.status());
  s.write_epoch.store(DocumentStore::RegionsWriterOf(*current).epoch);
  return Status::Ok();
}

Result<CommandEffect> SetRegionsEffect(DocumentStore::Impl& s, const WriteCommand& cmd, uint64_t glsn, uint64_t index) {
  CommandEffect e;
  auto current = s.Get(s.meta, kRegionsKey);
  if (!current.ok() && current.status().code() != Code::kNotFound) return current.status();
  const std::string version = current.ok() ? DocumentStore::RegionsVersion(*current) : std::string(kNoRegionsVersion);
  if (cmd.if_match != version) {
    e.outcome.status = Status::FailedPrecondition("the account's regions changed meanwhile; read them again and retry");
    return e;
  }
  const nlohmann::json j = nlohmann::json::parse(cmd.setting, nullptr, false);
  auto names = DocumentStore::RegionNames(cmd.setting);
  if (!j.is_object() || cmd.setting.size() > kMaxRegionsBytes || !names.ok()) {
    e.outcome.status = Status::InvalidArgument("the regions record is not a JSON object of at most " +
                                               std::to_string(kMaxRegionsBytes) + " bytes naming its regions");
    return e;
  }
  // Where each removed region's stream ends: the change that removed it
  // (the record's "removed" names it), forgotten if it is added back.
  auto before = s.Get(s.meta, kRegionsRemovedKey);
  if (!before.ok() && before.status().code() != Code::kNotFound) return before.status();
  nlohmann::json removed = before.ok() ? nlohmann::json::parse(*before, nullptr, false) : nlohmann::json::object();
  if (!removed.is_object()) return Status::Corruption("the removed-regions record is malformed");
  if (j.contains("removed") && j["removed"].is_array()) {
    for (const auto& name : j["removed"]) {
      if (name.is_string()) removed[name.get<std::string>()] = glsn;
    }
  }
  for (const auto& name : *names) removed.erase(name);
  while (removed.size() > kMaxRemovedRegions) {
    auto oldest = removed.begin();
    for (auto it = removed.begin(); it != removed.end(); ++it) {
      if (it.value().get<uint64_t>() < oldest.value().get<uint64_t>()) oldest = it;
    }
    removed.erase(oldest);
  }
  std::string glsn_bytes;
  PutFixed64(glsn_bytes, glsn);
  e.mutations.push_back({Mutation::Kind::kPut, s.meta, std::string(kRegionsKey), cmd.setting});
  e.mutations.push_back({Mutation::Kind::kPut, s.meta, std::string(kRegionsGlsnKey), std::move(glsn_bytes)});
  e.mutations.push_back({Mutation::Kind::kPut, s.meta, std::string(kRegionsRemovedKey), removed.dump()});
  // The epoch only grows: a change names the one it keeps or the next
  // (a failover). Where a new one begins in this log is what a new write
  // region's stream resumes from (replication/region_stream.cc).
  const uint64_t epoch = DocumentStore::RegionsWriterOf(cmd.setting).epoch;
  const uint64_t before_epoch = s.write_epoch.load();
  // A record no region stamped (the control group's store, which follows
  // the regions and may have missed epochs, or started on an account past
  // epoch 1) may raise the epoch by more than one; never lower it.
  const bool unstamped = cmd.geo_epoch == 0 && cmd.geo_glsn == 0;
  if (epoch != before_epoch && epoch != before_epoch + 1 && !(unstamped && epoch > before_epoch)) {
    e.mutations.clear();
    e.outcome.status = Status::FailedPrecondition("the regions record names epoch " + std::to_string(epoch) +
                                                  ": the account is at epoch " + std::to_string(before_epoch) +
                                                  " (a change keeps it or raises it by one)");
    return e;
  }
  if (epoch > before_epoch) {
    // A takeover: written at the epoch it begins (a planned failover's
    // switch is written at the epoch it ends), here or shipped.
    const bool takeover = cmd.geo_epoch == epoch;
    std::string at;
    PutFixed64(at, glsn);
    PutFixed64(at, index);
    at.push_back(static_cast<char>(takeover ? 1 : 0));
    e.mutations.push_back({Mutation::Kind::kPut, s.meta, EpochStartKey(epoch), std::move(at)});
    std::string account_wide;
    PutFixed64(account_wide, glsn);
    account_wide.push_back(static_cast<char>(takeover ? 1 : 0));
    std::string key(kAccountEpochStartPrefix);
    PutBigEndian64(key, epoch);
    e.mutations.push_back({Mutation::Kind::kPut, s.meta, std::move(key), std::move(account_wide)});
  }
  e.write_epoch = epoch;
  e.settings_changed = true;
  return e;
}

Result<WriteCommand> DocumentStore::PrepareSetRegions(std::string_view record, std::string_view base_version) const {
  if (record.size() > kMaxRegionsBytes) {
    return Status::InvalidArgument("the regions record is over " + std::to_string(kMaxRegionsBytes) + " bytes");
  }
  WriteCommand c;
  c.kind = WriteCommand::Kind::kSetRegions;
  c.setting = record;
  c.if_match = base_version;
  c.ts = NowUnixSeconds();
  return c;
}

Result<std::optional<DocumentStore::RegionsRecord>> DocumentStore::Regions() const {
  // One snapshot: the record, its GLSN and the removal points are written together.
  const rocksdb::Snapshot* snap = impl_->db->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::string text, glsn_bytes, removed_text;
  const rocksdb::Status found = impl_->db->Get(ro, impl_->meta, std::string(kRegionsKey), &text);
  const rocksdb::Status found_glsn = impl_->db->Get(ro, impl_->meta, std::string(kRegionsGlsnKey), &glsn_bytes);
  const rocksdb::Status found_removed = impl_->db->Get(ro, impl_->meta, std::string(kRegionsRemovedKey), &removed_text);
  impl_->db->ReleaseSnapshot(snap);
  if (found.IsNotFound()) return std::optional<RegionsRecord>();
  BULWARK_RETURN_IF_ERROR(FromRocks(found, "cannot read the regions record"));
  RegionsRecord r;
  r.json = std::move(text);
  if (found_glsn.ok()) {
    std::string_view v = glsn_bytes;
    if (!GetFixed64(v, r.glsn)) return Status::Corruption("the regions record's GLSN is malformed");
  } else if (!found_glsn.IsNotFound()) {
    return FromRocks(found_glsn, "cannot read the regions record");
  }
  if (found_removed.ok()) {
    const nlohmann::json j = nlohmann::json::parse(removed_text, nullptr, false);
    if (!j.is_object()) return Status::Corruption("the removed-regions record is malformed");
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_number_unsigned()) return Status::Corruption("the removed-regions record is malformed");
      r.removed[it.key()] = it.value().get<uint64_t>();
    }
  } else if (!found_removed.IsNotFound()) {
    return FromRocks(found_removed, "cannot read the regions record");
  }
  return std::optional<RegionsRecord>(std::move(r));
}

uint64_t DocumentStore::settings_generation() const { return impl_->settings_generation.load(); }

}  // namespace bulwark::storage
