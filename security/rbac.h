#pragma once
// Role-based access control: data actions, role definitions and scopes, in
// the names Cosmos DB uses.
//
// Actions are written in short form ("readMetadata", "items/read",
// "containers/executeQuery") or in Cosmos DB's full form
// ("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read");
// NormalizeAction maps both to the short form. Wildcards: "*" (every data
// action), "containers/*" (everything on containers, items included),
// "items/*".
//
// Pure functions and immutable data; thread-safe. Errors: InvalidArgument
// naming the bad action, scope or role.

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bulwark::security {

constexpr size_t kMaxRoleActions = 64;
constexpr size_t kMaxRoleNameBytes = 128;

namespace action {
constexpr std::string_view kReadMetadata = "readMetadata";
constexpr std::string_view kItemsCreate = "items/create";
constexpr std::string_view kItemsRead = "items/read";
constexpr std::string_view kItemsReplace = "items/replace";
constexpr std::string_view kItemsUpsert = "items/upsert";
constexpr std::string_view kItemsDelete = "items/delete";
constexpr std::string_view kExecuteQuery = "containers/executeQuery";
constexpr std::string_view kReadChangeFeed = "containers/readChangeFeed";
}  // namespace action

// The short form of an action or wildcard; InvalidArgument if unknown.
Result<std::string> NormalizeAction(std::string_view action);

// True if `pattern` (normalized, possibly a wildcard) grants `action`
// (a concrete short-form action).
bool ActionGranted(std::string_view pattern, std::string_view action);

struct RoleDefinition {
  std::string id;    // built-ins: Cosmos DB's GUIDs; custom: the name given
  std::string name;  // "Data Reader", "Data Contributor", or custom
  std::vector<std::string> actions;  // normalized
  bool built_in = false;
};

// Data Reader (00000000-0000-0000-0000-000000000001) and Data Contributor
// (00000000-0000-0000-0000-000000000002).
const std::vector<RoleDefinition>& BuiltInRoles();

// Validates and normalizes a custom role: a name of 1..kMaxRoleNameBytes
// printable characters, 1..kMaxRoleActions known actions.
Result<RoleDefinition> MakeCustomRole(std::string_view name, const std::vector<std::string>& actions);

bool RoleGrants(const RoleDefinition& role, std::string_view action);

// "/", "/dbs/D" or "/dbs/D/colls/C".
struct Scope {
  std::string database;   // empty: the account
  std::string container;  // empty: the whole database
  std::string ToString() const;
};
Result<Scope> ParseScope(std::string_view text);

// True if an assignment at `scope` covers a request on `database` and
// `container` (either may be empty: an account-level or database-level
// request, e.g. listing databases or containers).
bool ScopeCovers(const Scope& scope, std::string_view database, std::string_view container);

}  // namespace bulwark::security
