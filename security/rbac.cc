#include "security/rbac.h"

#include <algorithm>
#include <array>

namespace bulwark::security {
namespace {

constexpr std::string_view kFullPrefix = "Microsoft.DocumentDB/databaseAccounts/";
// Cosmos DB's full names put containers under SQL databases; the short form
// drops that level, since Bulwark has only one API.
constexpr std::string_view kFullContainers = "sqlDatabases/containers/";
constexpr std::string_view kShortContainers = "containers/";
constexpr std::string_view kItems = "items/";
constexpr std::string_view kAll = "*";
constexpr std::string_view kContainersAll = "containers/*";
constexpr std::string_view kItemsAll = "items/*";
// Cosmos DB's limit on a resource id, applied to database and container names.
constexpr size_t kMaxNameBytes = 255;

constexpr std::array<std::string_view, 8> kConcreteActions = {
    action::kReadMetadata, action::kItemsCreate, action::kItemsRead,    action::kItemsReplace,
    action::kItemsUpsert,  action::kItemsDelete, action::kExecuteQuery, action::kReadChangeFeed,
};
constexpr std::array<std::string_view, 3> kWildcards = {kAll, kContainersAll, kItemsAll};

bool IsConcrete(std::string_view action) {
  return std::find(kConcreteActions.begin(), kConcreteActions.end(), action) != kConcreteActions.end();
}

bool IsShortForm(std::string_view action) {
  return IsConcrete(action) || std::find(kWildcards.begin(), kWildcards.end(), action) != kWildcards.end();
}

bool IsPrintableAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

// The value for an error message: these are names, not secrets, but a log
// line must not carry control bytes or megabytes.
std::string Quoted(std::string_view text) {
  constexpr size_t kMaxQuotedBytes = 100;
  if (text.size() > kMaxQuotedBytes || !IsPrintableAscii(text)) return "(too long or not printable)";
  return "'" + std::string(text) + "'";
}

// A database or container name inside a scope.
bool NameValid(std::string_view name) {
  return !name.empty() && name.size() <= kMaxNameBytes && name.find('/') == std::string_view::npos;
}

}  // namespace

Result<std::string> NormalizeAction(std::string_view text) {
  std::string_view rest = text;
  if (rest.substr(0, kFullPrefix.size()) == kFullPrefix) {
    rest.remove_prefix(kFullPrefix.size());
    // Full names say "sqlDatabases/containers/..." where short ones say
    // "containers/..." or "items/..."; "*" and "readMetadata" are the same.
    if (rest.substr(0, kFullContainers.size()) == kFullContainers) {
      rest.remove_prefix(kFullContainers.size());
      const bool items = rest.substr(0, kItems.size()) == kItems;
      const std::string short_form = items ? std::string(rest) : std::string(kShortContainers) + std::string(rest);
      if (IsShortForm(short_form)) return short_form;
    } else if (rest == kAll || rest == action::kReadMetadata) {
      return std::string(rest);
    }
  } else if (IsShortForm(rest)) {
    return std::string(rest);
  }
  return Status::InvalidArgument("unknown data action " + Quoted(text));
}

bool ActionGranted(std::string_view pattern, std::string_view action) {
  if (!IsConcrete(action)) return false;
  if (pattern == kAll || pattern == action) return true;
  const bool on_items = action.substr(0, kItems.size()) == kItems;
  if (pattern == kItemsAll) return on_items;
  // Everything on containers: the items in them too, but not account metadata.
  if (pattern == kContainersAll) return on_items || action.substr(0, kShortContainers.size()) == kShortContainers;
  return false;
}

const std::vector<RoleDefinition>& BuiltInRoles() {
  static const std::vector<RoleDefinition> kRoles = {
      {"00000000-0000-0000-0000-000000000001",
       "Data Reader",
       {std::string(action::kReadMetadata), std::string(action::kItemsRead), std::string(action::kExecuteQuery),
        std::string(action::kReadChangeFeed)},
       true},
      {"00000000-0000-0000-0000-000000000002",
       "Data Contributor",
       {std::string(action::kReadMetadata), std::string(kContainersAll), std::string(kItemsAll)},
       true},
  };
  return kRoles;
}

Result<RoleDefinition> MakeCustomRole(std::string_view name, const std::vector<std::string>& actions) {
  if (name.empty() || name.size() > kMaxRoleNameBytes || !IsPrintableAscii(name)) {
    return Status::InvalidArgument("role name must be 1 to 128 printable characters");
  }
  for (const RoleDefinition& built_in : BuiltInRoles()) {
    // A custom role's id is its name; neither may pass for a built-in.
    if (name == built_in.name || name == built_in.id) {
      return Status::InvalidArgument("role name " + Quoted(name) + " is a built-in role's");
    }
  }
  if (actions.empty() || actions.size() > kMaxRoleActions) {
    return Status::InvalidArgument("role " + Quoted(name) + " must have 1 to 64 data actions");
  }
  RoleDefinition role{std::string(name), std::string(name), {}, false};
  for (const std::string& text : actions) {
    auto normalized = NormalizeAction(text);
    if (!normalized.ok()) return normalized.status().WithContext("role " + Quoted(name));
    // The same action in two spellings is kept once.
    if (std::find(role.actions.begin(), role.actions.end(), *normalized) == role.actions.end()) {
      role.actions.push_back(std::move(*normalized));
    }
  }
  return role;
}

bool RoleGrants(const RoleDefinition& role, std::string_view action) {
  return std::any_of(role.actions.begin(), role.actions.end(),
                     [&](const std::string& pattern) { return ActionGranted(pattern, action); });
}

std::string Scope::ToString() const {
  if (database.empty()) return "/";
  std::string out = "/dbs/" + database;
  if (!container.empty()) out += "/colls/" + container;
  return out;
}

Result<Scope> ParseScope(std::string_view text) {
  if (text == "/") return Scope{};
  const auto bad = [original = text] {
    return Status::InvalidArgument("scope " + Quoted(original) + " must be /, /dbs/D or /dbs/D/colls/C");
  };
  constexpr std::string_view kDbs = "/dbs/", kColls = "/colls/";
  if (text.substr(0, kDbs.size()) != kDbs) return bad();
  text.remove_prefix(kDbs.size());
  const size_t slash = text.find('/');
  Scope scope;
  scope.database = std::string(text.substr(0, slash));
  if (!NameValid(scope.database)) return bad();
  if (slash == std::string_view::npos) return scope;
  text.remove_prefix(slash);
  if (text.substr(0, kColls.size()) != kColls) return bad();
  text.remove_prefix(kColls.size());
  if (!NameValid(text)) return bad();  // also refuses a trailing '/' and anything after the container
  scope.container = std::string(text);
  return scope;
}

bool ScopeCovers(const Scope& scope, std::string_view database, std::string_view container) {
  if (scope.database.empty()) return true;  // the account covers everything
  if (database != scope.database) return false;
  if (scope.container.empty()) return true;
  return container == scope.container;
}

}  // namespace bulwark::security
