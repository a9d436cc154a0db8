// The `bulwark` CLI's identity and access commands: account keys, users,
// permissions, roles and assignments, access settings, identity issuers and
// development identity tokens (docs/security.md).
#include <sodium.h>
#include <sys/stat.h>

#include <ctime>
#include <fstream>
#include <iostream>

#include <google/protobuf/util/json_util.h>

#include "bulwark/v1/access.pb.h"
#include "client/cli.h"
#include "crypto/secret.h"
#include "security/jwt.h"
#include "security/request_signing.h"

namespace bulwark::cli {
namespace {

namespace v1 = ::bulwark::v1;
using security::AccountRef;

std::string Age(int64_t created) {
  if (created <= 0) return "-";
  const int64_t s = std::time(nullptr) - created;
  if (s < 120) return std::to_string(s) + " s";
  if (s < 7200) return std::to_string(s / 60) + " min";
  if (s < 172800) return std::to_string(s / 3600) + " h";
  return std::to_string(s / 86400) + " d";
}

void PrintJsonOr(bool json, const google::protobuf::Message& m, const std::function<void()>& table) {
  if (!json) return table();
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out);
  std::cout << out << "\n";
}

void PrintSettings(const v1::AccessSettings& s) {
  std::cout << "disable_local_auth: " << (s.disable_local_auth() ? "true" : "false")
            << (s.disable_local_auth() ? "  (account keys and resource tokens are refused for data)" : "") << "\n"
            << "audience:           " << s.audience() << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : s.issuers()) rows.push_back({i.key_id(), i.issuer(), Clip(i.public_key(), 20)});
  if (rows.empty()) {
    std::cout << "no identity-token issuers are trusted\n";
  } else {
    PrintTable({"KEY ID", "ISSUER", "PUBLIC KEY"}, rows);
  }
}

Status WriteSecretFile(const std::string& path, std::string_view content) {
  const mode_t old_mask = ::umask(077);  // created 0600, never readable by others for a moment
  std::ofstream out(path, std::ios::trunc);
  ::umask(old_mask);
  if (!out) return Status::IOError("cannot write '" + path + "'");
  chmod(path.c_str(), 0600);
  out << content;
  return out ? Status::Ok() : Status::IOError("cannot write '" + path + "'");
}

void AddAccountKeyCommands(CLI::App* keys, Globals& g, int& rc) {
  keys->add_subcommand("list", "the four account keys: names and ages (never the keys)")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      BULWARK_ASSIGN_OR_RETURN(auto list, c.ListKeys());
      std::vector<std::vector<std::string>> rows;
      for (const auto& k : list) rows.push_back({k.name, k.read_only ? "read-only" : "read-write", Age(k.created_ts)});
      PrintTable({"KEY", "ACCESS", "AGE"}, rows);
      return Status::Ok();
    });
  });
  static std::string name;
  static bool show = false;
  auto* regen =
      keys->add_subcommand("regenerate", "replace one account key online (clients of the others go on)")->callback([&] {
        rc = WithClient(g, [&](Client& c) -> Status {
          // Which key the profile holds is not known by name: compare.
          v1::ShowKeyRequest show_req;
          show_req.set_name(name);
          v1::ShowKeyResponse before;
          (void)c.CallAccess("ShowKey", AccountRef("get"), show_req, &before);
          v1::RegenerateKeyRequest req;
          req.set_name(name);
          v1::RegenerateKeyResponse resp;
          BULWARK_RETURN_IF_ERROR(c.CallAccess("RegenerateKey", AccountRef("post"), req, &resp));
          std::cout << "the " << name << " key was regenerated; tokens it signed are revoked\n";
          // If the profile held the key just replaced, it gets the new one, so the CLI keeps working.
          auto profile = client::LoadProfile(g.profile_dir);
          if (g.key.empty() && profile.ok() && !before.key_base64().empty() && profile->key == before.key_base64()) {
            profile->key = resp.key_base64();
            BULWARK_RETURN_IF_ERROR(client::WriteProfile(g.profile_dir, *profile));
            std::cout << "the profile in " << g.profile_dir << " now holds the new key\n";
            // A local cluster's launcher signs with account.key: it follows too.
            const std::string launcher_key = g.profile_dir + "/account.key";
            std::ifstream in(launcher_key);
            std::string held;
            std::getline(in, held);
            if (in && held == before.key_base64()) {
              BULWARK_RETURN_IF_ERROR(WriteSecretFile(launcher_key, resp.key_base64() + "\n"));
            }
          }
          if (show) std::cout << resp.key_base64() << "\n";
          return Status::Ok();
        });
      });
  regen->add_option("NAME", name, "primary, secondary, primary-readonly or secondary-readonly")->required();
  regen->add_flag("--show", show, "print the new key (base64) on standard output");
  auto* show_cmd =
      keys->add_subcommand("show", "print one account key (base64); needs a read-write key")->callback([&] {
        rc = WithClient(g, [&](Client& c) -> Status {
          v1::ShowKeyRequest req;
          req.set_name(name);
          v1::ShowKeyResponse resp;
          BULWARK_RETURN_IF_ERROR(c.CallAccess("ShowKey", AccountRef("get"), req, &resp));
          std::cout << resp.key_base64() << "\n";
          return Status::Ok();
        });
      });
  show_cmd->add_option("NAME", name)->required();
}

void AddUserCommands(CLI::App& app, Globals& g, int& rc) {
  auto* user = app.add_subcommand("user", "a database's users (they hold permissions)")->require_subcommand(1);
  static std::string db, id;
  for (const char* verb : {"create", "delete"}) {
    const bool create = std::string_view(verb) == "create";
    auto* sub =
        user->add_subcommand(verb, create ? "create a user"
                                          : "delete a user and its permissions (revokes "
                                            "their tokens)")
            ->callback([&, create] {
              rc = WithClient(g, [&](Client& c) -> Status {
                v1::UserRequest req;
                req.set_database(db);
                req.set_user(id);
                v1::UserResponse resp;
                BULWARK_RETURN_IF_ERROR(c.CallAccess(
                    create ? "CreateUser" : "DeleteUser",
                    create ? security::UserFeedRef("post", db) : security::UserRef("delete", db, id), req, &resp));
                std::cout << (create ? "created" : "deleted") << " user " << id << " in " << db << "\n";
                return Status::Ok();
              });
            });
    sub->add_option("DB", db)->required();
    sub->add_option("USER", id)->required();
  }
  auto* list = user->add_subcommand("list", "list a database's users")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::ListUsersRequest req;
      req.set_database(db);
      v1::ListUsersResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("ListUsers", security::UserFeedRef("get", db), req, &resp));
      PrintJsonOr(g.json_output, resp, [&] {
        std::vector<std::vector<std::string>> rows;
        for (const auto& u : resp.users()) rows.push_back({u.id(), u.rid(), Age(u.ts())});
        PrintTable({"USER", "RID", "AGE"}, rows);
      });
      return Status::Ok();
    });
  });
  list->add_option("DB", db)->required();
  list->add_flag("--json", g.json_output);
}

void AddPermissionCommands(CLI::App& app, Globals& g, int& rc) {
  auto* perm = app.add_subcommand("permission", "a user's permissions; reading one issues a resource token")
                   ->require_subcommand(1);
  static std::string db, user, id, mode = "Read", resource, pk;
  static uint32_t ttl = 0;
  auto* create = perm->add_subcommand("create", "grant a user All or Read on a database or container")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::CreatePermissionRequest req;
      auto* p = req.mutable_permission();
      p->set_database(db);
      p->set_user(user);
      p->set_id(id);
      p->set_mode(mode);
      p->set_resource(resource);
      p->set_partition_key_json(pk);
      v1::PermissionResponse resp;
      BULWARK_RETURN_IF_ERROR(
          c.CallAccess("CreatePermission", security::PermissionFeedRef("post", db, user), req, &resp));
      std::cout << "permission " << id << ": " << resp.permission().mode() << " on " << resp.permission().resource()
                << (pk.empty() ? "" : " partition key " + resp.permission().partition_key_json()) << "\n";
      return Status::Ok();
    });
  });
  create->add_option("DB", db)->required();
  create->add_option("USER", user)->required();
  create->add_option("ID", id)->required();
  create->add_option("--mode", mode, "All or Read (default Read)");
  create->add_option("--resource", resource, "dbs/D or dbs/D/colls/C")->required();
  create->add_option("--partition-key", pk, "limit it to one partition key value, as JSON (e.g. '\"acme\"')");

  auto* get = perm->add_subcommand("get", "read a permission and print a fresh resource token for it")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::PermissionRequest req;
      req.set_database(db);
      req.set_user(user);
      req.set_permission(id);
      req.set_ttl_s(ttl);
      v1::PermissionResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("ReadPermission", security::PermissionRef("get", db, user, id), req, &resp));
      PrintJsonOr(g.json_output, resp, [&] { std::cout << resp.permission().token() << "\n"; });
      return Status::Ok();
    });
  });
  get->add_option("DB", db)->required();
  get->add_option("USER", user)->required();
  get->add_option("ID", id)->required();
  get->add_option("--ttl", ttl, "token lifetime in seconds (default 3600, at most 18000)");
  get->add_flag("--json", g.json_output, "print the permission with its token as JSON");

  auto* del = perm->add_subcommand("delete", "delete a permission (revokes its tokens)")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::PermissionRequest req;
      req.set_database(db);
      req.set_user(user);
      req.set_permission(id);
      v1::PermissionResponse resp;
      BULWARK_RETURN_IF_ERROR(
          c.CallAccess("DeletePermission", security::PermissionRef("delete", db, user, id), req, &resp));
      std::cout << "deleted permission " << id << "\n";
      return Status::Ok();
    });
  });
  del->add_option("DB", db)->required();
  del->add_option("USER", user)->required();
  del->add_option("ID", id)->required();

  auto* list = perm->add_subcommand("list", "list a user's permissions (without tokens)")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::ListPermissionsRequest req;
      req.set_database(db);
      req.set_user(user);
      v1::ListPermissionsResponse resp;
      BULWARK_RETURN_IF_ERROR(
          c.CallAccess("ListPermissions", security::PermissionFeedRef("get", db, user), req, &resp));
      PrintJsonOr(g.json_output, resp, [&] {
        std::vector<std::vector<std::string>> rows;
        for (const auto& p : resp.permissions()) {
          rows.push_back(
              {p.id(), p.mode(), p.resource(), p.partition_key_json().empty() ? "-" : p.partition_key_json()});
        }
        PrintTable({"PERMISSION", "MODE", "RESOURCE", "PARTITION KEY"}, rows);
      });
      return Status::Ok();
    });
  });
  list->add_option("DB", db)->required();
  list->add_option("USER", user)->required();
  list->add_flag("--json", g.json_output);
}

void AddRoleCommands(CLI::App& app, Globals& g, int& rc) {
  auto* role = app.add_subcommand("role", "RBAC: role definitions and assignments")->require_subcommand(1);
  static std::string name, principal, scope = "/", id;
  static std::vector<std::string> actions;
  auto* create = role->add_subcommand("create", "define a custom role from data actions")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::CreateRoleRequest req;
      req.mutable_role()->set_name(name);
      for (const auto& a : actions) req.mutable_role()->add_actions(a);
      v1::RoleResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("CreateRole", AccountRef("post"), req, &resp));
      std::cout << "role " << resp.role().id() << " defined\n";
      return Status::Ok();
    });
  });
  create->add_option("NAME", name)->required();
  create->add_option("--action", actions, "a data action, e.g. items/read, containers/*, readMetadata (repeat)")
      ->required();
  role->add_subcommand("list", "built-in and custom roles")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::ListRolesRequest req;
      v1::ListRolesResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("ListRoles", AccountRef("get"), req, &resp));
      std::vector<std::vector<std::string>> rows;
      for (const auto& r : resp.roles()) {
        std::string acts;
        for (const auto& a : r.actions()) acts += (acts.empty() ? "" : ", ") + a;
        rows.push_back({r.id(), r.name(), r.built_in() ? "built-in" : "custom", acts});
      }
      PrintTable({"ID", "NAME", "KIND", "ACTIONS"}, rows);
      return Status::Ok();
    });
  });
  auto* del = role->add_subcommand("delete", "delete a custom role (unassign it first)")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::RoleRequest req;
      req.set_id(id);
      v1::RoleResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("DeleteRole", AccountRef("delete"), req, &resp));
      std::cout << "deleted role " << id << "\n";
      return Status::Ok();
    });
  });
  del->add_option("ID", id)->required();
  auto* assign = role->add_subcommand("assign", "give a principal a role at a scope")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::AssignRoleRequest req;
      req.mutable_assignment()->set_principal(principal);
      req.mutable_assignment()->set_role(name);
      req.mutable_assignment()->set_scope(scope);
      v1::RoleAssignmentResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("AssignRole", AccountRef("post"), req, &resp));
      std::cout << "assignment " << resp.assignment().id() << ": " << principal << " has " << resp.assignment().role()
                << " at " << resp.assignment().scope() << "\n";
      return Status::Ok();
    });
  });
  assign->add_option("--principal", principal, "a JWT subject, or a client certificate's SAN")->required();
  assign->add_option("--role", name, "a role id or name (e.g. \"Data Reader\")")->required();
  assign->add_option("--scope", scope, "/, /dbs/D or /dbs/D/colls/C (default /)");
  auto* unassign = role->add_subcommand("unassign", "remove a role assignment")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::UnassignRoleRequest req;
      req.set_id(id);
      v1::RoleAssignmentResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("UnassignRole", AccountRef("delete"), req, &resp));
      std::cout << "removed assignment " << id << "\n";
      return Status::Ok();
    });
  });
  unassign->add_option("ID", id)->required();
  role->add_subcommand("assignments", "list role assignments")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::ListAssignmentsRequest req;
      v1::ListAssignmentsResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("ListAssignments", AccountRef("get"), req, &resp));
      std::vector<std::vector<std::string>> rows;
      for (const auto& a : resp.assignments()) rows.push_back({a.id(), a.principal(), a.role(), a.scope()});
      PrintTable({"ID", "PRINCIPAL", "ROLE", "SCOPE"}, rows);
      return Status::Ok();
    });
  });
}

void AddAccountCommands(CLI::App& app, Globals& g, int& rc) {
  auto* account = app.add_subcommand("account", "the account's access settings")->require_subcommand(1);
  account->add_subcommand("show", "disable_local_auth, the identity-token audience and trusted issuers")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::AccessSettingsRequest req;
      v1::AccessSettingsResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("GetAccessSettings", AccountRef("get"), req, &resp));
      PrintSettings(resp.settings());
      return Status::Ok();
    });
  });
  static std::string setting, value;
  auto* set = account->add_subcommand("set", "change one setting")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::SetAccessSettingsRequest req;
      if (setting == "disable-local-auth" || setting == "disable_local_auth") {
        if (value != "true" && value != "false") return Status::InvalidArgument("disable-local-auth is true or false");
        req.add_set("disable_local_auth");
        req.set_disable_local_auth(value == "true");
      } else if (setting == "audience") {
        req.add_set("audience");
        req.set_audience(value);
      } else {
        return Status::InvalidArgument("unknown setting '" + setting + "' (disable-local-auth, audience)");
      }
      v1::AccessSettingsResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("SetAccessSettings", AccountRef("put"), req, &resp));
      PrintSettings(resp.settings());
      return Status::Ok();
    });
  });
  set->add_option("SETTING", setting, "disable-local-auth or audience")->required();
  set->add_option("VALUE", value)->required();
}

void AddIdentityCommands(CLI::App& app, Globals& g, int& rc) {
  auto* identity = app.add_subcommand("identity", "identity tokens (JWT, EdDSA): trusted issuers, and dev tools")
                       ->require_subcommand(1);
  auto* issuer = identity->add_subcommand("issuer", "issuers the account trusts")->require_subcommand(1);
  static std::string kid, iss, public_key, secret_file, subject, audience = "bulwark";
  static int64_t ttl = 3600;
  auto* add = issuer->add_subcommand("add", "trust an issuer's Ed25519 key")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::AddIssuerRequest req;
      req.mutable_issuer()->set_key_id(kid);
      req.mutable_issuer()->set_issuer(iss);
      req.mutable_issuer()->set_public_key(public_key);
      v1::AccessSettingsResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("AddIssuer", AccountRef("post"), req, &resp));
      PrintSettings(resp.settings());
      return Status::Ok();
    });
  });
  add->add_option("KEY_ID", kid)->required();
  add->add_option("--issuer", iss, "the iss value its tokens carry")->required();
  add->add_option("--public-key", public_key, "Ed25519 public key, base64")->required();
  auto* remove = issuer->add_subcommand("remove", "stop trusting an issuer key")->callback([&] {
    rc = WithClient(g, [&](Client& c) -> Status {
      v1::RemoveIssuerRequest req;
      req.set_key_id(kid);
      v1::AccessSettingsResponse resp;
      BULWARK_RETURN_IF_ERROR(c.CallAccess("RemoveIssuer", AccountRef("delete"), req, &resp));
      PrintSettings(resp.settings());
      return Status::Ok();
    });
  });
  remove->add_option("KEY_ID", kid)->required();

  // Development aids: an issuer key pair and tokens signed with it, so RBAC
  // can be tried without an identity provider. Production tokens come from
  // the provider.
  auto* keygen = identity->add_subcommand("keygen", "make an Ed25519 issuer key pair (development)")->callback([&] {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    Status s = WriteSecretFile(
        secret_file, crypto::Base64Encode(std::string_view(reinterpret_cast<const char*>(sk), sizeof(sk))) + "\n");
    sodium_memzero(sk, sizeof(sk));
    if (!s.ok()) {
      rc = Fail(s);
      return;
    }
    std::cout << "secret key written to " << secret_file << " (0600)\npublic key: "
              << crypto::Base64Encode(std::string_view(reinterpret_cast<const char*>(pk), sizeof(pk))) << "\n";
  });
  keygen->add_option("--secret-key-file", secret_file)->required();
  auto* token = identity->add_subcommand("token", "sign an identity token (development)")->callback([&] {
    std::ifstream in(secret_file);
    std::string text;
    std::getline(in, text);
    auto sk = crypto::Base64DecodeSecret(text);
    if (!in || !sk.ok()) {
      rc = Fail(Status::InvalidArgument("cannot read a base64 secret key from '" + secret_file + "'"));
      return;
    }
    security::JwtClaims claims;
    claims.issuer = iss;
    claims.subject = subject;
    claims.audiences = {audience};
    claims.key_id = kid;
    claims.issued_unix_s = std::time(nullptr);
    claims.expires_unix_s = claims.issued_unix_s + ttl;
    auto jwt = security::SignJwt(sk->view(), claims);
    if (!jwt.ok()) {
      rc = Fail(jwt.status());
      return;
    }
    std::cout << *jwt << "\n";
  });
  token->add_option("--secret-key-file", secret_file)->required();
  token->add_option("--issuer", iss)->required();
  token->add_option("--subject", subject)->required();
  token->add_option("--key-id", kid, "the kid header (the issuer key's id)");
  token->add_option("--audience", audience, "default: bulwark");
  token->add_option("--ttl", ttl, "seconds (default 3600)");
  (void)g;
}

}  // namespace

void AddAccessCommands(CLI::App& app, CLI::App* keys, Globals& g, int& rc) {
  AddAccountKeyCommands(keys, g, rc);
  AddUserCommands(app, g, rc);
  AddPermissionCommands(app, g, rc);
  AddRoleCommands(app, g, rc);
  AddAccountCommands(app, g, rc);
  AddIdentityCommands(app, g, rc);
}

}  // namespace bulwark::cli
