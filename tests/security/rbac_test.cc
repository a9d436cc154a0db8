// Proves RBAC's action names (short and Cosmos DB full forms), the wildcard
// rules as a table, the built-in roles, custom-role validation and scopes.
#include "security/rbac.h"

#include <catch2/catch.hpp>
#include <string>

using namespace bulwark;
using namespace bulwark::security;

namespace {
const std::string kFull = "Microsoft.DocumentDB/databaseAccounts/";
const std::vector<std::string_view> kAllActions = {
    action::kReadMetadata, action::kItemsCreate, action::kItemsRead,    action::kItemsReplace,
    action::kItemsUpsert,  action::kItemsDelete, action::kExecuteQuery, action::kReadChangeFeed,
};
}  // namespace

TEST_CASE("Full Cosmos DB names and short forms normalize to the short form", "[security][rbac]") {
  const std::pair<std::string, std::string> cases[] = {
      {kFull + "sqlDatabases/containers/items/*", "items/*"},
      {kFull + "sqlDatabases/containers/items/read", "items/read"},
      {kFull + "sqlDatabases/containers/items/upsert", "items/upsert"},
      {kFull + "sqlDatabases/containers/*", "containers/*"},
      {kFull + "sqlDatabases/containers/executeQuery", "containers/executeQuery"},
      {kFull + "sqlDatabases/containers/readChangeFeed", "containers/readChangeFeed"},
      {kFull + "readMetadata", "readMetadata"},
      {kFull + "*", "*"},
      {"*", "*"},
      {"readMetadata", "readMetadata"},
      {"items/delete", "items/delete"},
      {"containers/*", "containers/*"},
      {"containers/executeQuery", "containers/executeQuery"},
  };
  for (const auto& [text, expected] : cases) {
    INFO(text);
    auto normalized = NormalizeAction(text);
    REQUIRE(normalized.ok());
    CHECK(*normalized == expected);
  }
}

TEST_CASE("Unknown actions are refused, naming the action", "[security][rbac]") {
  for (const std::string& text : std::vector<std::string>{
           "", "items/patch", "items", "items/", "readmetadata", "containers/readMetadata", "sqlDatabases/containers/*",
           kFull, kFull + "sqlDatabases/*", kFull + "sqlDatabases/containers/readMetadata",
           kFull + "sqlDatabases/containers/containers/*", "microsoft.documentdb/databaseAccounts/*", "*/*"}) {
    INFO(text);
    auto normalized = NormalizeAction(text);
    REQUIRE_FALSE(normalized.ok());
    CHECK(normalized.status().code() == Code::kInvalidArgument);
    if (!text.empty()) CHECK(normalized.status().message().find("'" + text + "'") != std::string::npos);
  }
}

TEST_CASE("Wildcards grant exactly their actions", "[security][rbac]") {
  struct Row {
    std::string_view pattern, action;
    bool granted;
  };
  const Row table[] = {
      {"*", action::kReadMetadata, true},
      {"containers/*", action::kReadMetadata, false},
      {"containers/*", action::kItemsCreate, true},
      {"containers/*", action::kItemsDelete, true},
      {"containers/*", action::kExecuteQuery, true},
      {"containers/*", action::kReadChangeFeed, true},
      {"items/*", action::kItemsRead, true},
      {"items/*", action::kItemsUpsert, true},
      {"items/*", action::kExecuteQuery, false},
      {"items/*", action::kReadMetadata, false},
      {"items/read", action::kItemsRead, true},
      {"items/read", action::kItemsReplace, false},
      {"readMetadata", action::kReadMetadata, true},
      {"readMetadata", action::kItemsRead, false},
      {"containers/executeQuery", action::kReadChangeFeed, false},
      // A pattern or action that is not normalized grants nothing.
      {kFull + "*", action::kItemsRead, false},
      {"*", "items/patch", false},
      {"*", "*", false},
      {"items/*", "items/*", false},
  };
  for (const Row& row : table) {
    INFO(row.pattern << " -> " << row.action);
    CHECK(ActionGranted(row.pattern, row.action) == row.granted);
  }
  size_t by_star = 0, by_containers = 0, by_items = 0;
  for (std::string_view a : kAllActions) {
    by_star += ActionGranted("*", a);
    by_containers += ActionGranted("containers/*", a);
    by_items += ActionGranted("items/*", a);
  }
  CHECK(by_star == 8);
  CHECK(by_containers == 7);
  CHECK(by_items == 5);
}

TEST_CASE("Built-in roles are Cosmos DB's Data Reader and Data Contributor", "[security][rbac]") {
  const auto& roles = BuiltInRoles();
  REQUIRE(roles.size() == 2);
  const RoleDefinition& reader = roles[0];
  const RoleDefinition& contributor = roles[1];
  CHECK(reader.id == "00000000-0000-0000-0000-000000000001");
  CHECK(reader.name == "Data Reader");
  CHECK(contributor.id == "00000000-0000-0000-0000-000000000002");
  CHECK(contributor.name == "Data Contributor");
  CHECK(reader.built_in);
  CHECK(contributor.built_in);
  for (std::string_view a : kAllActions) {
    INFO(a);
    const bool read_only = a == action::kReadMetadata || a == action::kItemsRead || a == action::kExecuteQuery ||
                           a == action::kReadChangeFeed;
    CHECK(RoleGrants(reader, a) == read_only);
    CHECK(RoleGrants(contributor, a));
  }
}

TEST_CASE("Custom roles are validated and normalized", "[security][rbac]") {
  auto role =
      MakeCustomRole("Writers", {kFull + "sqlDatabases/containers/items/create", "items/create", "readMetadata"});
  REQUIRE(role.ok());
  CHECK(role->id == "Writers");
  CHECK_FALSE(role->built_in);
  CHECK(role->actions == std::vector<std::string>{"items/create", "readMetadata"});
  CHECK(RoleGrants(*role, action::kItemsCreate));
  CHECK_FALSE(RoleGrants(*role, action::kItemsDelete));

  CHECK_FALSE(MakeCustomRole("", {"*"}).ok());
  CHECK_FALSE(MakeCustomRole(std::string(kMaxRoleNameBytes + 1, 'r'), {"*"}).ok());
  CHECK(MakeCustomRole(std::string(kMaxRoleNameBytes, 'r'), {"*"}).ok());
  CHECK_FALSE(MakeCustomRole("tab\there", {"*"}).ok());
  CHECK_FALSE(MakeCustomRole("Data Reader", {"*"}).ok());
  CHECK_FALSE(MakeCustomRole("00000000-0000-0000-0000-000000000002", {"*"}).ok());
  CHECK_FALSE(MakeCustomRole("Empty", {}).ok());
  CHECK_FALSE(MakeCustomRole("Many", std::vector<std::string>(kMaxRoleActions + 1, "*")).ok());
  auto bad = MakeCustomRole("Typo", {"items/raed"});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK(bad.status().message().find("'items/raed'") != std::string::npos);
}

TEST_CASE("Scopes parse from their three forms and print back", "[security][rbac]") {
  for (const std::string& text : std::vector<std::string>{"/", "/dbs/Shop", "/dbs/Shop/colls/Orders"}) {
    auto scope = ParseScope(text);
    REQUIRE(scope.ok());
    CHECK(scope->ToString() == text);
  }
  auto scope = ParseScope("/dbs/Shop/colls/Orders");
  REQUIRE(scope.ok());
  CHECK(scope->database == "Shop");
  CHECK(scope->container == "Orders");
  for (const std::string& text :
       std::vector<std::string>{"", "//", "/dbs", "/dbs/", "/dbs/Shop/", "/dbs/Shop/colls", "/dbs/Shop/colls/",
                                "/dbs/Shop/colls/Orders/", "/dbs/Shop/colls/Orders/docs/1", "dbs/Shop",
                                "/dbs//colls/Orders", "/DBS/Shop", "/dbs/Shop/containers/Orders"}) {
    INFO(text);
    auto parsed = ParseScope(text);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("A scope covers requests inside it and nothing above or beside it", "[security][rbac]") {
  const Scope account{};
  const Scope database{"Shop", ""};
  const Scope container{"Shop", "Orders"};
  CHECK(ScopeCovers(account, "", ""));
  CHECK(ScopeCovers(account, "Other", "X"));
  CHECK(ScopeCovers(database, "Shop", ""));
  CHECK(ScopeCovers(database, "Shop", "Anything"));
  CHECK_FALSE(ScopeCovers(database, "", ""));  // listing databases is account-level
  CHECK_FALSE(ScopeCovers(database, "Other", ""));
  CHECK(ScopeCovers(container, "Shop", "Orders"));
  CHECK_FALSE(ScopeCovers(container, "Shop", ""));
  CHECK_FALSE(ScopeCovers(container, "Shop", "Carts"));
  CHECK_FALSE(ScopeCovers(container, "Other", "Orders"));
  CHECK_FALSE(ScopeCovers(container, "", ""));
}
