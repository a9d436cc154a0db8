// Identity and access records: the four account keys and the "ac/" records
// (users, permissions, roles, assignments, issuer keys, access settings).
//
// Storage keeps these dumb on purpose: the server validates and builds every
// record before it proposes it, and Apply checks only what depends on the
// state at that point of the log (exists / does not exist). Every change bumps
// settings_generation so the server's access cache reloads.
#include <algorithm>

#include "common/coding.h"
#include "storage/store_impl.h"

namespace bulwark::storage {
namespace {

constexpr size_t kAccountKeyBytes = 64;  // security::kAccountKeyBytes (storage does not depend on security)
constexpr size_t kMaxAccessKeyBytes = 512;
constexpr size_t kMaxAccessValueBytes = 16 << 10;
constexpr std::string_view kOnlyIfAbsent = "absent";
constexpr std::string_view kCreateOnly = "create";

std::string AccountKeyMetaKey(std::string_view name) { return std::string(kAccountKeyMetaPrefix) + std::string(name); }

bool ValidKeyName(std::string_view name) {
  return std::find(kAccountKeyNames.begin(), kAccountKeyNames.end(), name) != kAccountKeyNames.end();
}

std::string RangeEnd(std::string_view prefix) {
  std::string end(prefix);
  end.back() = static_cast<char>(end.back() + 1);  // prefixes end in '/'
  return end;
}

Status ValidAccessKey(std::string_view key) {
  if (key.size() <= kAccessMetaPrefix.size() || key.substr(0, kAccessMetaPrefix.size()) != kAccessMetaPrefix ||
      key.size() > kMaxAccessKeyBytes || key.back() == '/') {
    return Status::InvalidArgument("an access record key is \"ac/...\" of at most " +
                                   std::to_string(kMaxAccessKeyBytes) + " bytes");
  }
  return Status::Ok();
}

// The geo-fence of the database whose users (and permissions) `key` is
// under ("ac/u/<db>/..."), so regions outside it get placeholders; empty
// for any other key or an unfenced database.
Result<std::string> AccessKeyFence(const DocumentStore& store, std::string_view key) {
  const std::string users = std::string(kAccessMetaPrefix) + "u/";
  if (key.substr(0, users.size()) != users) return std::string();
  std::string_view rest = key.substr(users.size());
  const std::string db(rest.substr(0, rest.find('/')));
  auto d = store.ReadDatabase(db);
  if (d.status().code() == Code::kNotFound) return std::string();
  BULWARK_RETURN_IF_ERROR(d.status());
  return JoinFence(d->allowed_regions);
}

}  // namespace

std::string AccountKeyContext(std::string_view name) { return "bulwark.account-key.v1|" + std::string(name); }

std::string EncodeAccountKeyValue(uint64_t version, int64_t created, std::string_view payload) {
  std::string out;
  PutFixed64(out, version);
  PutFixed64(out, static_cast<uint64_t>(created));
  out += payload;
  return out;
}

bool DecodeAccountKeyValue(std::string_view value, uint64_t& version, int64_t& created, std::string_view& payload) {
  uint64_t c = 0;
  if (!GetFixed64(value, version) || !GetFixed64(value, c)) return false;
  created = static_cast<int64_t>(c);
  payload = value;
  return true;
}

Result<CommandEffect> SetAccountKeyEffect(DocumentStore::Impl& s, const WriteCommand& cmd, uint64_t index) {
  CommandEffect e;
  const std::string key = AccountKeyMetaKey(cmd.setting);
  auto existing = s.Get(s.meta, key);
  if (!existing.ok() && existing.status().code() != Code::kNotFound) return existing.status();
  uint64_t version = index;
  if (existing.ok()) {
    if (cmd.if_match == kOnlyIfAbsent) {
      e.outcome.status = Status::AlreadyExists("account key " + cmd.setting + " is already set");
      return e;
    }
    uint64_t old_version = 0;
    int64_t created = 0;
    std::string_view payload;
    if (!DecodeAccountKeyValue(*existing, old_version, created, payload)) {
      return Status::Corruption("account key record " + cmd.setting + " is malformed");
    }
    version = std::max(version, old_version + 1);
  }
  if (version == 0) version = 1;
  e.mutations.push_back(
      {Mutation::Kind::kPut, s.meta, key,
       EncodeAccountKeyValue(version, cmd.ts, s.keyring.WrapSecret(cmd.data_key, AccountKeyContext(cmd.setting)))});
  e.outcome.ts = cmd.ts;
  e.settings_changed = true;
  return e;
}

Result<CommandEffect> AccessEffect(DocumentStore::Impl& s, const WriteCommand& cmd) {
  CommandEffect e;
  auto existing = s.Get(s.meta, cmd.setting);
  if (!existing.ok() && existing.status().code() != Code::kNotFound) return existing.status();
  if (cmd.kind == WriteCommand::Kind::kAccessPut) {
    if (existing.ok() && cmd.if_match == kCreateOnly) {
      e.outcome.status = Status::AlreadyExists("it already exists");
      return e;
    }
    e.mutations.push_back({Mutation::Kind::kPut, s.meta, cmd.setting, cmd.sealed});
  } else {
    if (!existing.ok()) {
      e.outcome.status = Status::NotFound("it does not exist");
      return e;
    }
    e.mutations.push_back({Mutation::Kind::kDelete, s.meta, cmd.setting, {}});
    const std::string children = cmd.setting + "/";
    e.mutations.push_back({Mutation::Kind::kDeleteRange, s.meta, children, RangeEnd(children)});
  }
  e.outcome.ts = cmd.ts;
  e.settings_changed = true;
  return e;
}

Result<WriteCommand> DocumentStore::PrepareSetAccountKey(std::string_view name, std::string_view key,
                                                         bool only_if_absent) const {
  if (!ValidKeyName(name)) {
    return Status::InvalidArgument(
        "an account key is primary, secondary, primary-readonly or secondary-readonly, not '" + std::string(name) +
        "'");
  }
  if (key.size() != kAccountKeyBytes) return Status::InvalidArgument("an account key has 64 bytes");
  WriteCommand c;
  c.kind = WriteCommand::Kind::kSetAccountKey;
  c.setting = name;
  c.data_key = key;
  c.if_match = only_if_absent ? kOnlyIfAbsent : "";
  c.ts = NowUnixSeconds();
  return c;
}

Result<WriteCommand> DocumentStore::PrepareAccessPut(std::string_view key, std::string_view value,
                                                     bool create_only) const {
  BULWARK_RETURN_IF_ERROR(ValidAccessKey(key));
  if (value.size() > kMaxAccessValueBytes) {
    return Status::InvalidArgument("an access record holds at most " + std::to_string(kMaxAccessValueBytes) + " bytes");
  }
  WriteCommand c;
  c.kind = WriteCommand::Kind::kAccessPut;
  c.setting = key;
  BULWARK_ASSIGN_OR_RETURN(c.fence, AccessKeyFence(*this, key));
  c.sealed = value;
  c.if_match = create_only ? kCreateOnly : "";
  c.ts = NowUnixSeconds();
  return c;
}

Result<WriteCommand> DocumentStore::PrepareAccessDelete(std::string_view key) const {
  BULWARK_RETURN_IF_ERROR(ValidAccessKey(key));
  WriteCommand c;
  c.kind = WriteCommand::Kind::kAccessDelete;
  c.setting = key;
  BULWARK_ASSIGN_OR_RETURN(c.fence, AccessKeyFence(*this, key));
  c.ts = NowUnixSeconds();
  return c;
}

Result<std::vector<AccountKeyRecord>> DocumentStore::AccountKeys() const {
  std::vector<AccountKeyRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
  const std::string prefix(kAccountKeyMetaPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    AccountKeyRecord r;
    r.name = it->key().ToString().substr(prefix.size());
    std::string_view wrapped;
    if (!DecodeAccountKeyValue(it->value().ToStringView(), r.version, r.created_unix_s, wrapped)) {
      return Status::Corruption("account key record " + r.name + " is malformed");
    }
    BULWARK_ASSIGN_OR_RETURN(r.key, impl_->keyring.UnwrapSecret(wrapped, AccountKeyContext(r.name)));
    out.push_back(std::move(r));
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read account keys"));
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> DocumentStore::AccessRecords(std::string_view prefix) const {
  if (prefix.substr(0, kAccessMetaPrefix.size()) != kAccessMetaPrefix) {
    return Status::InvalidArgument("access records live under \"ac/\"");
  }
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
  const std::string p(prefix);
  for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
    out.emplace_back(it->key().ToString(), it->value().ToString());
  }
  BULWARK_RETURN_IF_ERROR(FromRocks(it->status(), "cannot read access records"));
  return out;
}

}  // namespace bulwark::storage
