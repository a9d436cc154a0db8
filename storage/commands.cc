#include "storage/commands.h"

#include <sodium.h>

#include "common/coding.h"

namespace bulwark::storage {
namespace {

// Format 1 ends with member_address; format 2 adds `setting` after it. Only
// the commands that need the field are written as 2, so a node that knows
// only format 1 still reads every other command.
constexpr uint8_t kCommandFormat = 1;
constexpr uint8_t kCommandFormatWithSetting = 2;
// Format 3 adds the geo stamp (glsn, epoch, source index) after `setting`:
// commands shipped between regions, and account commands a write region
// stamps with its epoch (glsn 0).
constexpr uint8_t kCommandFormatWithGeo = 3;
// Format 4 adds the geo-fence after the geo stamp: only commands of a fenced
// database or container (and placeholders) are written as 4.
constexpr uint8_t kCommandFormatWithFence = 4;
// No field of a valid command comes near this; it bounds what a corrupt
// length prefix can make Decode allocate.
constexpr size_t kMaxFieldBytes = 4 << 20;

bool ValidKind(uint8_t k) { return k >= 1 && k <= static_cast<uint8_t>(WriteCommand::Kind::kFencedOut); }

}  // namespace

std::string WriteCommand::Encode() const {
  std::string out;
  out.reserve(64 + sealed.size() + database.size() + container.size() + partition_key.size() + item_id.size());
  const bool with_setting = kind == Kind::kFirewallAllow || kind == Kind::kFirewallDeny ||
                            kind == Kind::kSetAccountKey || kind == Kind::kAccessPut || kind == Kind::kAccessDelete ||
                            kind == Kind::kSetRegions || !setting.empty();
  const bool with_fence = !fence.empty();
  const bool with_geo = geo_glsn != 0 || geo_epoch != 0 || with_fence;
  out.push_back(static_cast<char>(with_fence     ? kCommandFormatWithFence
                                  : with_geo     ? kCommandFormatWithGeo
                                  : with_setting ? kCommandFormatWithSetting
                                                 : kCommandFormat));
  out.push_back(static_cast<char>(kind));
  PutFixed64(out, static_cast<uint64_t>(proposed_unix_ms));
  PutFixed64(out, static_cast<uint64_t>(ts));
  for (std::string_view f : {std::string_view(request_id), std::string_view(database), std::string_view(container),
                             std::string_view(partition_key_path), std::string_view(rid), std::string_view(data_key),
                             std::string_view(etag), std::string_view(partition_key), std::string_view(item_id),
                             std::string_view(sealed), std::string_view(if_match)}) {
    PutLengthPrefixed(out, f);
  }
  PutFixed64(out, member_id);
  PutLengthPrefixed(out, member_address);
  if (with_setting || with_geo) PutLengthPrefixed(out, setting);
  if (with_geo) {
    PutFixed64(out, geo_glsn);
    PutFixed64(out, geo_epoch);
    PutFixed64(out, geo_source_index);
  }
  if (with_fence) PutLengthPrefixed(out, fence);
  return out;
}

Result<WriteCommand> WriteCommand::Decode(std::string_view in) {
  if (in.size() < 2) return Status::Corruption("write command is truncated");
  const auto format = static_cast<uint8_t>(in[0]);
  if (format < kCommandFormat || format > kCommandFormatWithFence) {
    return Status::Corruption("unknown write command format " + std::to_string(static_cast<uint8_t>(in[0])));
  }
  if (!ValidKind(static_cast<uint8_t>(in[1]))) return Status::Corruption("unknown write command kind");
  WriteCommand c;
  c.kind = static_cast<Kind>(in[1]);
  in.remove_prefix(2);
  uint64_t proposed = 0, ts = 0;
  if (!GetFixed64(in, proposed) || !GetFixed64(in, ts)) return Status::Corruption("write command is truncated");
  c.proposed_unix_ms = static_cast<int64_t>(proposed);
  c.ts = static_cast<int64_t>(ts);
  for (std::string* f : {&c.request_id, &c.database, &c.container, &c.partition_key_path, &c.rid, &c.data_key, &c.etag,
                         &c.partition_key, &c.item_id, &c.sealed, &c.if_match}) {
    std::string_view v;
    if (!GetLengthPrefixed(in, v, kMaxFieldBytes)) return Status::Corruption("write command is truncated");
    f->assign(v);
  }
  std::string_view address;
  if (!GetFixed64(in, c.member_id) || !GetLengthPrefixed(in, address, kMaxFieldBytes)) {
    return Status::Corruption("write command is truncated");
  }
  c.member_address = address;
  if (format >= kCommandFormatWithSetting) {
    std::string_view setting;
    if (!GetLengthPrefixed(in, setting, kMaxFieldBytes)) return Status::Corruption("write command is truncated");
    c.setting = setting;
  }
  if (format >= kCommandFormatWithGeo) {
    if (!GetFixed64(in, c.geo_glsn) || !GetFixed64(in, c.geo_epoch) || !GetFixed64(in, c.geo_source_index)) {
      return Status::Corruption("write command is truncated");
    }
    // Format 3 is written only with a stamp; format 4 also for a fence alone.
    if (c.geo_glsn == 0 && c.geo_source_index != 0) return Status::Corruption("a shipped write command has GLSN 0");
    if (format == kCommandFormatWithGeo && c.geo_glsn == 0 && c.geo_epoch == 0) {
      return Status::Corruption("a geo-stamped write command has no stamp");
    }
  }
  if (format == kCommandFormatWithFence) {
    std::string_view fence;
    if (!GetLengthPrefixed(in, fence, kMaxFieldBytes)) return Status::Corruption("write command is truncated");
    if (fence.empty()) return Status::Corruption("a fenced write command has no fence");
    c.fence = fence;
  }
  if (!in.empty()) return Status::Corruption("write command has trailing bytes");
  if (c.kind == Kind::kFencedOut && c.fence.empty()) return Status::Corruption("a fence placeholder has no fence");
  return c;
}

void WriteCommand::WipeKey() {
  if (!data_key.empty()) sodium_memzero(data_key.data(), data_key.size());
  data_key.clear();
}

std::string_view CommandKindName(WriteCommand::Kind k) {
  switch (k) {
    case WriteCommand::Kind::kCreateDatabase:
      return "CreateDatabase";
    case WriteCommand::Kind::kDeleteDatabase:
      return "DeleteDatabase";
    case WriteCommand::Kind::kCreateContainer:
      return "CreateContainer";
    case WriteCommand::Kind::kDeleteContainer:
      return "DeleteContainer";
    case WriteCommand::Kind::kCreateItem:
      return "CreateItem";
    case WriteCommand::Kind::kUpsertItem:
      return "UpsertItem";
    case WriteCommand::Kind::kReplaceItem:
      return "ReplaceItem";
    case WriteCommand::Kind::kDeleteItem:
      return "DeleteItem";
    case WriteCommand::Kind::kRotateDataKey:
      return "RotateDataKey";
    case WriteCommand::Kind::kSetMember:
      return "SetMember";
    case WriteCommand::Kind::kPurgeContainer:
      return "PurgeContainer";
    case WriteCommand::Kind::kFirewallAllow:
      return "FirewallAllow";
    case WriteCommand::Kind::kFirewallDeny:
      return "FirewallDeny";
    case WriteCommand::Kind::kSetAccountKey:
      return "SetAccountKey";
    case WriteCommand::Kind::kAccessPut:
      return "AccessPut";
    case WriteCommand::Kind::kAccessDelete:
      return "AccessDelete";
    case WriteCommand::Kind::kInstallRegionImage:
      return "InstallRegionImage";
    case WriteCommand::Kind::kSetRegions:
      return "SetRegions";
    case WriteCommand::Kind::kDiscardConflict:
      return "DiscardConflict";
    case WriteCommand::Kind::kFencedOut:
      return "FencedOut";
  }
  return "Unknown";
}

}  // namespace bulwark::storage
