// Identity and access, end to end: four real bulwarkd processes over TLS,
// and a table of principal x operation x scope with the expected answer.
// Every case goes through a real node: account keys (read-write and
// read-only), resource tokens (container, partition key, database scope,
// expired, forged, revoked), identity tokens (JWT EdDSA: good, wrong key,
// wrong audience, expired, unknown issuer), client certificates, and
// disable_local_auth.
#include <sodium.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include <grpcpp/grpcpp.h>

#include "bulwark/v1/access.pb.h"
#include "bulwark/v1/document.grpc.pb.h"
#include "chaos/local_cluster.h"
#include "client/client.h"
#include "crypto/secret.h"
#include "security/certificates.h"
#include "security/jwt.h"
#include "security/request_signing.h"
#include "tests/test_util.h"

using namespace bulwark;
using bulwark::testing::FreePort;
using bulwark::testing::TempDir;

namespace {

namespace v1 = ::bulwark::v1;
using security::AccountRef;

constexpr auto kConverge = std::chrono::seconds(15);
constexpr const char* kIssuer = "https://idp.test";
constexpr const char* kAudience = "bulwark";

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Ed25519 {
  std::string public_key, secret_key;
  Ed25519() {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    public_key.assign(reinterpret_cast<char*>(pk), sizeof(pk));
    secret_key.assign(reinterpret_cast<char*>(sk), sizeof(sk));
  }
};

std::string Jwt(const Ed25519& key, const std::string& subject, const std::string& issuer = kIssuer,
                const std::string& audience = kAudience, int64_t ttl = 600) {
  security::JwtClaims c;
  c.issuer = issuer;
  c.subject = subject;
  c.audiences = {audience};
  c.key_id = "k1";
  c.issued_unix_s = std::time(nullptr);
  c.expires_unix_s = c.issued_unix_s + ttl;
  auto jwt = security::SignJwt(key.secret_key, c);
  REQUIRE(jwt.ok());
  return *jwt;
}

// One cluster for the whole table (starting four nodes costs seconds).
struct AccessFixture {
  TempDir dir;
  std::unique_ptr<chaos::LocalCluster> cluster;
  std::unique_ptr<client::Client> admin;  // primary key
  std::map<std::string, std::string> keys;
  Ed25519 issuer_key, rogue_key;
  std::string cert_file, cert_key_file;

  AccessFixture() {
    chaos::ClusterOptions o;
    o.dir = dir.sub("cluster");
    o.bin_dir = BULWARK_BIN_DIR;
    // Its own block, 127.0.R.201-204, apart from the other tests' blocks.
    o.ip = "127.0." + std::to_string(10 + (getpid() * 13) % 240) + ".201";
    o.nodes = 4;
    o.metrics_port = 0;
    // The table fails authentication on purpose, many times, from one
    // address: blocking it would hide what each case tests.
    o.extra_args = {"--set", "defense.failures_to_block=0"};
    do {
      o.port = FreePort(o.ip);
    } while (o.port == 0 || o.port > 65000);
    auto c = chaos::LocalCluster::Prepare(o);
    REQUIRE(c.ok());
    cluster = std::move(c).value();
    const Status s = cluster->Start();
    INFO(s.ToString());
    REQUIRE(s.ok());
    admin = Connect(cluster->client_options());
    WaitForKeys();
    for (const char* name : {"primary", "secondary", "primary-readonly", "secondary-readonly"}) {
      v1::ShowKeyRequest req;
      req.set_name(name);
      v1::ShowKeyResponse resp;
      REQUIRE(admin->CallAccess("ShowKey", AccountRef("get"), req, &resp).ok());
      keys[name] = resp.key_base64();
    }
    // The bootstrap keeps the key the cluster was started with as primary.
    REQUIRE(keys["primary"] == cluster->client_options().key);

    REQUIRE(admin->CreateDatabase("d1").ok());
    REQUIRE(admin->CreateDatabase("d2").ok());
    REQUIRE(admin->CreateContainer("d1", "a", "/tenant").ok());
    REQUIRE(admin->CreateContainer("d1", "b", "/tenant").ok());
    REQUIRE(admin->CreateContainer("d2", "c", "/tenant").ok());
    for (const auto& [db, coll] : {std::pair{"d1", "a"}, std::pair{"d1", "b"}, std::pair{"d2", "c"}}) {
      for (const char* t : {"x", "y"}) {
        REQUIRE(admin->CreateItem(db, coll, std::string(R"({"id":"i)") + t + R"(","tenant":")" + t + R"("})").ok());
      }
    }
    Access("CreateUser", security::UserFeedRef("post", "d1"), User("d1", "alice"));
    Permission("pa_all", "All", "dbs/d1/colls/a");
    Permission("pa_read", "Read", "dbs/d1/colls/a");
    Permission("pa_x", "All", "dbs/d1/colls/a", R"("x")");
    Permission("pdb", "Read", "dbs/d1");

    v1::AddIssuerRequest add;
    add.mutable_issuer()->set_key_id("k1");
    add.mutable_issuer()->set_issuer(kIssuer);
    add.mutable_issuer()->set_public_key(crypto::Base64Encode(issuer_key.public_key));
    Access("AddIssuer", AccountRef("post"), add);
    Assign("app-reader", "Data Reader", "/dbs/d1");
    Assign("app-writer", "Data Contributor", "/dbs/d1/colls/a");
    v1::CreateRoleRequest role;
    role.mutable_role()->set_name("item-creator");
    role.mutable_role()->add_actions("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/create");
    Access("CreateRole", AccountRef("post"), role);
    Assign("app-creator", "item-creator", "/");
    Assign("reporting-app", "Data Reader", "/");

    // A client certificate from the cluster CA, naming "reporting-app".
    security::PemPair ca{ReadText(o.dir + "/ca.pem"), ReadText(o.dir + "/ca.key")};
    auto cert = security::IssueCertificate(ca, "reporting", {}, {"reporting-app"});
    REQUIRE(cert.ok());
    cert_file = dir.sub("client.pem");
    cert_key_file = dir.sub("client.key");
    std::ofstream(cert_file) << cert->certificate;
    std::ofstream(cert_key_file) << cert->private_key;
  }

  static std::unique_ptr<client::Client> Connect(const client::ClientOptions& o) {
    auto c = client::Client::Connect(o);
    INFO(c.status().ToString());
    REQUIRE(c.ok());
    return std::move(c).value();
  }

  void WaitForKeys() const {
    const auto until = std::chrono::steady_clock::now() + kConverge;
    while (true) {
      auto list = admin->ListKeys();
      size_t created = 0;
      if (list.ok()) {
        for (const auto& k : *list) created += k.created_ts > 0 ? 1 : 0;
      }
      if (created == 4) return;
      REQUIRE(std::chrono::steady_clock::now() < until);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  void Access(const std::string& method, const security::ResourceRef& ref, const google::protobuf::Message& req) const {
    std::unique_ptr<google::protobuf::Message> resp;
    if (method == "CreateUser") resp = std::make_unique<v1::UserResponse>();
    if (method == "CreatePermission") resp = std::make_unique<v1::PermissionResponse>();
    if (method == "AddIssuer" || method == "SetAccessSettings") resp = std::make_unique<v1::AccessSettingsResponse>();
    if (method == "CreateRole") resp = std::make_unique<v1::RoleResponse>();
    if (method == "AssignRole") resp = std::make_unique<v1::RoleAssignmentResponse>();
    REQUIRE(resp != nullptr);
    const Status s = admin->CallAccess(method, ref, req, resp.get());
    INFO(method << ": " << s.ToString());
    REQUIRE(s.ok());
  }
  static v1::UserRequest User(const std::string& db, const std::string& user) {
    v1::UserRequest r;
    r.set_database(db);
    r.set_user(user);
    return r;
  }
  void Permission(const std::string& id, const std::string& mode, const std::string& resource,
                  const std::string& pk = {}) const {
    v1::CreatePermissionRequest r;
    auto* p = r.mutable_permission();
    p->set_database("d1");
    p->set_user("alice");
    p->set_id(id);
    p->set_mode(mode);
    p->set_resource(resource);
    p->set_partition_key_json(pk);
    Access("CreatePermission", security::PermissionFeedRef("post", "d1", "alice"), r);
  }
  void Assign(const std::string& principal, const std::string& role, const std::string& scope) const {
    v1::AssignRoleRequest r;
    r.mutable_assignment()->set_principal(principal);
    r.mutable_assignment()->set_role(role);
    r.mutable_assignment()->set_scope(scope);
    Access("AssignRole", AccountRef("post"), r);
  }
  // A resource token for one of alice's permissions, read with `key_name`.
  std::string Token(const std::string& permission, uint32_t ttl_s = 0, const std::string& key_name = "primary") const {
    auto o = cluster->client_options();
    o.key = keys.at(key_name);
    auto c = Connect(o);
    v1::PermissionRequest req;
    req.set_database("d1");
    req.set_user("alice");
    req.set_permission(permission);
    req.set_ttl_s(ttl_s);
    v1::PermissionResponse resp;
    const Status s =
        c->CallAccess("ReadPermission", security::PermissionRef("get", "d1", "alice", permission), req, &resp);
    INFO(s.ToString());
    REQUIRE(s.ok());
    REQUIRE(!resp.permission().token().empty());
    return resp.permission().token();
  }
  void SetDisableLocalAuth(bool on) const {
    v1::SetAccessSettingsRequest req;
    req.add_set("disable_local_auth");
    req.set_disable_local_auth(on);
    Access("SetAccessSettings", AccountRef("put"), req);
  }

  // Principals, as client options.
  client::ClientOptions WithKey(const std::string& name, int node = 1) const {
    auto o = cluster->node_client_options(node);
    o.key = keys.at(name);
    return o;
  }
  client::ClientOptions WithToken(const std::string& token) const {
    auto o = cluster->client_options();
    o.key.clear();
    o.resource_token = token;
    return o;
  }
  client::ClientOptions WithJwt(const std::string& jwt) const {
    auto o = cluster->client_options();
    o.key.clear();
    o.identity_token = jwt;
    return o;
  }
  client::ClientOptions WithCert() const {
    auto o = cluster->client_options();
    o.key.clear();
    o.cert_file = cert_file;
    o.key_file = cert_key_file;
    return o;
  }
};

// Requests signed in the right format with 64 random bytes: a forged
// master-key signature.
client::ClientOptions WithForgedKey(const AccessFixture& f) {
  auto o = f.cluster->client_options();
  o.key = crypto::Base64Encode(crypto::RandomBytes(64));
  return o;
}

using Op = std::function<Status(client::Client&)>;

Op ReadItem(const char* db, const char* coll, const char* tenant) {
  return [=](client::Client& c) {
    return c.ReadItem(db, coll, std::string("\"") + tenant + "\"", std::string("i") + tenant).status();
  };
}
Op WriteItem(const char* db, const char* coll, const char* tenant) {
  return [=](client::Client& c) {
    static int n = 0;
    const std::string json = std::string(R"({"id":"w)") + std::to_string(++n) + R"(","tenant":")" + tenant + R"("})";
    return c.CreateItem(db, coll, json).status();
  };
}
Op ListAll(const char* db, const char* coll) {
  return [=](client::Client& c) { return c.ListItems(db, coll).status(); };
}
Op ListDatabases() {
  return [](client::Client& c) { return c.ListDatabases().status(); };
}
Op CreateDatabase() {
  return [](client::Client& c) {
    static int n = 0;
    return c.CreateDatabase("made" + std::to_string(getpid()) + "_" + std::to_string(++n)).status();
  };
}

struct Case {
  std::string who;  // for the report
  client::ClientOptions options;
  std::string what;
  Op op;
  Code expected;
  std::string message_has;  // a part of the refusal's message, if any
};

void Check(const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    auto client = AccessFixture::Connect(c.options);
    const Status s = c.op(*client);
    INFO(c.who << " / " << c.what << " -> " << s.ToString());
    CHECK(s.code() == c.expected);
    if (!c.message_has.empty()) CHECK(s.message().find(c.message_has) != std::string::npos);
    // No refusal quotes a credential.
    for (const std::string& secret : {c.options.key, c.options.resource_token, c.options.identity_token}) {
      if (!secret.empty()) CHECK(s.message().find(secret) == std::string::npos);
    }
  }
}

}  // namespace

TEST_CASE("Access: principal x action x scope, through real nodes over TLS", "[access]") {
  REQUIRE(sodium_init() >= 0);
  AccessFixture f;
  const auto ok = Code::kOk, denied = Code::kPermissionDenied, unauth = Code::kUnauthenticated;

  const std::string pa_all = f.Token("pa_all"), pa_read = f.Token("pa_read"), pa_x = f.Token("pa_x"),
                    pdb = f.Token("pdb");
  const std::string reader = Jwt(f.issuer_key, "app-reader"), writer = Jwt(f.issuer_key, "app-writer"),
                    creator = Jwt(f.issuer_key, "app-creator");
  std::string forged = pa_read;
  forged[forged.size() - 3] = forged[forged.size() - 3] == 'A' ? 'B' : 'A';  // the signature's tail
  // Widening: pa_read's claims with pa_all's signature.
  std::string widened = pa_read.substr(0, pa_read.rfind('.')) + pa_all.substr(pa_all.rfind('.'));

  Check({
      {"primary", f.WithKey("primary"), "create item d1/a", WriteItem("d1", "a", "x"), ok, ""},
      {"secondary", f.WithKey("secondary", 3), "create item d1/a via node 3", WriteItem("d1", "a", "x"), ok, ""},
      {"primary-readonly", f.WithKey("primary-readonly"), "create item", WriteItem("d1", "a", "x"), denied,
       "read-only"},
      {"primary-readonly", f.WithKey("primary-readonly"), "read item", ReadItem("d1", "a", "x"), ok, ""},
      {"secondary-readonly", f.WithKey("secondary-readonly"), "list items", ListAll("d1", "b"), ok, ""},
      {"secondary-readonly", f.WithKey("secondary-readonly"), "create database", CreateDatabase(), denied, "read-only"},
      {"token All d1/a", f.WithToken(pa_all), "create item d1/a", WriteItem("d1", "a", "y"), ok, ""},
      {"token All d1/a", f.WithToken(pa_all), "read item d1/a", ReadItem("d1", "a", "y"), ok, ""},
      {"token All d1/a", f.WithToken(pa_all), "read item d1/b (container B)", ReadItem("d1", "b", "x"), denied,
       "covers /dbs/d1/colls/a"},
      {"token All d1/a", f.WithToken(pa_all), "read item d2/c", ReadItem("d2", "c", "x"), denied, ""},
      {"token All d1/a", f.WithToken(pa_all), "create database", CreateDatabase(), denied, "control-plane"},
      {"token Read d1/a", f.WithToken(pa_read), "create item", WriteItem("d1", "a", "x"), denied, "items/create"},
      {"token Read d1/a", f.WithToken(pa_read), "read item", ReadItem("d1", "a", "x"), ok, ""},
      {"token pk x", f.WithToken(pa_x), "read pk x", ReadItem("d1", "a", "x"), ok, ""},
      {"token pk x", f.WithToken(pa_x), "read pk y", ReadItem("d1", "a", "y"), denied, "partition key"},
      {"token pk x", f.WithToken(pa_x), "create pk x", WriteItem("d1", "a", "x"), ok, ""},
      {"token pk x", f.WithToken(pa_x), "create pk y", WriteItem("d1", "a", "y"), denied, "partition key"},
      {"token pk x", f.WithToken(pa_x), "list whole container", ListAll("d1", "a"), denied, "partition key"},
      {"token Read d1", f.WithToken(pdb), "read d1/b", ReadItem("d1", "b", "y"), ok, ""},
      {"token Read d1", f.WithToken(pdb), "write d1/b", WriteItem("d1", "b", "y"), denied, ""},
      {"token Read d1", f.WithToken(pdb), "list databases", ListDatabases(), denied, ""},
      {"a key the account never had", WithForgedKey(f), "read item", ReadItem("d1", "a", "x"), unauth,
       "signature does not match"},
      {"forged token", f.WithToken(forged), "read item", ReadItem("d1", "a", "x"), unauth, ""},
      {"widened token", f.WithToken(widened), "create item", WriteItem("d1", "a", "x"), unauth, ""},
      {"garbage token", f.WithToken("bwrt1.e30.AAAA"), "read item", ReadItem("d1", "a", "x"), unauth, ""},
      {"jwt Data Reader @d1", f.WithJwt(reader), "read d1/a", ReadItem("d1", "a", "x"), ok, ""},
      {"jwt Data Reader @d1", f.WithJwt(reader), "list d1/b", ListAll("d1", "b"), ok, ""},
      {"jwt Data Reader @d1", f.WithJwt(reader), "create d1/a", WriteItem("d1", "a", "x"), denied, "items/create"},
      {"jwt Data Reader @d1", f.WithJwt(reader), "read d2/c (other database)", ReadItem("d2", "c", "x"), denied,
       "/dbs/d2/colls/c"},
      {"jwt Data Reader @d1", f.WithJwt(reader), "list databases", ListDatabases(), denied, "readMetadata"},
      {"jwt Data Reader @d1", f.WithJwt(reader), "create database", CreateDatabase(), denied, "control-plane"},
      {"jwt Contributor @d1/a", f.WithJwt(writer), "create d1/a", WriteItem("d1", "a", "y"), ok, ""},
      {"jwt Contributor @d1/a", f.WithJwt(writer), "create d1/b", WriteItem("d1", "b", "y"), denied, ""},
      {"jwt custom items/create @/", f.WithJwt(creator), "create d2/c", WriteItem("d2", "c", "x"), ok, ""},
      {"jwt custom items/create @/", f.WithJwt(creator), "read d2/c", ReadItem("d2", "c", "x"), denied, "items/read"},
      {"jwt unassigned subject", f.WithJwt(Jwt(f.issuer_key, "nobody")), "read", ReadItem("d1", "a", "x"), denied, ""},
      {"jwt wrong issuer key", f.WithJwt(Jwt(f.rogue_key, "app-reader")), "read", ReadItem("d1", "a", "x"), unauth, ""},
      {"jwt unknown issuer", f.WithJwt(Jwt(f.issuer_key, "app-reader", "https://other.test")), "read",
       ReadItem("d1", "a", "x"), unauth, ""},
      {"jwt wrong audience", f.WithJwt(Jwt(f.issuer_key, "app-reader", kIssuer, "someone-else")), "read",
       ReadItem("d1", "a", "x"), unauth, ""},
      {"jwt expired", f.WithJwt(Jwt(f.issuer_key, "app-reader", kIssuer, kAudience, -3600)), "read",
       ReadItem("d1", "a", "x"), unauth, ""},
      {"client cert reporting-app", f.WithCert(), "read d2/c", ReadItem("d2", "c", "y"), ok, ""},
      {"client cert reporting-app", f.WithCert(), "write d2/c", WriteItem("d2", "c", "y"), denied, ""},
  });

  // No credential at all: a TLS client that sends no authorization header
  // and no certificate.
  {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadText(f.cluster->client_options().ca_file);
    auto stub = v1::DocumentService::NewStub(grpc::CreateChannel(f.cluster->endpoint(), grpc::SslCredentials(ssl)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListDatabasesRequest req;
    v1::ListDatabasesResponse resp;
    const grpc::Status s = stub->ListDatabases(&ctx, req, &resp);
    INFO(s.error_message());
    CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  }

  {  // Bad requests to the access API get a clear error and change nothing.
    auto expect = [&](const std::string& method, const security::ResourceRef& ref, const google::protobuf::Message& req,
                      google::protobuf::Message* resp, Code code) {
      const Status st = f.admin->CallAccess(method, ref, req, resp);
      INFO(method << ": " << st.ToString());
      CHECK(st.code() == code);
      CHECK(!st.message().empty());
    };
    v1::UserResponse user_resp;
    expect("CreateUser", security::UserFeedRef("post", "d1"), AccessFixture::User("d1", "a/b"), &user_resp,
           Code::kInvalidArgument);
    expect("CreateUser", security::UserFeedRef("post", "nodb"), AccessFixture::User("nodb", "bob"), &user_resp,
           Code::kNotFound);
    auto permission = [](const std::string& mode, const std::string& resource, const std::string& pk = {}) {
      v1::CreatePermissionRequest r;
      auto* p = r.mutable_permission();
      p->set_database("d1");
      p->set_user("alice");
      p->set_id("bad");
      p->set_mode(mode);
      p->set_resource(resource);
      p->set_partition_key_json(pk);
      return r;
    };
    v1::PermissionResponse perm_resp;
    const auto perm_ref = security::PermissionFeedRef("post", "d1", "alice");
    expect("CreatePermission", perm_ref, permission("Write", "dbs/d1/colls/a"), &perm_resp, Code::kInvalidArgument);
    expect("CreatePermission", perm_ref, permission("Read", "garbage"), &perm_resp, Code::kInvalidArgument);
    expect("CreatePermission", perm_ref, permission("Read", "dbs/d2/colls/c"), &perm_resp, Code::kInvalidArgument);
    expect("CreatePermission", perm_ref, permission("Read", "dbs/d1", R"("x")"), &perm_resp, Code::kInvalidArgument);
    expect("CreatePermission", perm_ref, permission("Read", "dbs/d1/colls/a", "{not json"), &perm_resp,
           Code::kInvalidArgument);
    expect("CreatePermission", perm_ref, permission("Read", "dbs/d1/colls/nope"), &perm_resp, Code::kNotFound);
    v1::PermissionRequest too_long;
    too_long.set_database("d1");
    too_long.set_user("alice");
    too_long.set_permission("pa_all");
    too_long.set_ttl_s(5 * 3600 + 1);
    expect("ReadPermission", security::PermissionRef("get", "d1", "alice", "pa_all"), too_long, &perm_resp,
           Code::kInvalidArgument);
    v1::AssignRoleRequest assign;
    assign.mutable_assignment()->set_principal("someone");
    assign.mutable_assignment()->set_role("Data Reader");
    assign.mutable_assignment()->set_scope("/dbs/");
    v1::RoleAssignmentResponse assign_resp;
    expect("AssignRole", AccountRef("post"), assign, &assign_resp, Code::kInvalidArgument);
    assign.mutable_assignment()->set_scope("/");
    assign.mutable_assignment()->set_role("No Such Role");
    expect("AssignRole", AccountRef("post"), assign, &assign_resp, Code::kNotFound);
    assign.mutable_assignment()->set_role("Data Reader");
    assign.mutable_assignment()->set_principal("");
    expect("AssignRole", AccountRef("post"), assign, &assign_resp, Code::kInvalidArgument);
    v1::CreateRoleRequest role;
    role.mutable_role()->set_name("bad-role");
    role.mutable_role()->add_actions("items/explode");
    v1::RoleResponse role_resp;
    expect("CreateRole", AccountRef("post"), role, &role_resp, Code::kInvalidArgument);
    v1::AddIssuerRequest issuer;
    issuer.mutable_issuer()->set_key_id("k2");
    issuer.mutable_issuer()->set_issuer(kIssuer);
    issuer.mutable_issuer()->set_public_key("not a key");
    v1::AccessSettingsResponse settings_resp;
    expect("AddIssuer", AccountRef("post"), issuer, &settings_resp, Code::kInvalidArgument);
    v1::SetAccessSettingsRequest settings;
    settings.add_set("make_everyone_admin");
    expect("SetAccessSettings", AccountRef("put"), settings, &settings_resp, Code::kInvalidArgument);
    v1::RegenerateKeyRequest regen;
    regen.set_name("tertiary");
    v1::RegenerateKeyResponse regen_resp;
    expect("RegenerateKey", AccountRef("post"), regen, &regen_resp, Code::kInvalidArgument);
    // Nothing changed: alice alone, her four permissions, the four assignments, the four keys.
    v1::ListUsersRequest lu;
    lu.set_database("d1");
    v1::ListUsersResponse users;
    REQUIRE(f.admin->CallAccess("ListUsers", security::UserFeedRef("get", "d1"), lu, &users).ok());
    CHECK(users.users_size() == 1);
    v1::ListPermissionsRequest lp;
    lp.set_database("d1");
    lp.set_user("alice");
    v1::ListPermissionsResponse perms;
    REQUIRE(f.admin->CallAccess("ListPermissions", security::PermissionFeedRef("get", "d1", "alice"), lp, &perms).ok());
    CHECK(perms.permissions_size() == 4);
    v1::ListAssignmentsRequest la;
    v1::ListAssignmentsResponse assignments;
    REQUIRE(f.admin->CallAccess("ListAssignments", AccountRef("get"), la, &assignments).ok());
    CHECK(assignments.assignments_size() == 4);
    CHECK(f.admin->ListKeys()->size() == 4);
  }

  {  // A replayed signed write is not applied again, on any node: delete,
     // re-create, then the captured delete sent again to another node.
    REQUIRE(f.admin->CreateDatabase("rp").ok());
    const std::string date = security::FormatHttpDate(std::chrono::system_clock::now());
    auto key = crypto::Base64DecodeSecret(f.keys["primary"]);
    REQUIRE(key.ok());
    const std::string auth = security::SignWithMasterKey(*key, security::DatabaseRef("delete", "rp"), date);
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadText(f.cluster->client_options().ca_file);
    auto send_delete = [&](int node) {
      auto stub =
          v1::DocumentService::NewStub(grpc::CreateChannel(f.cluster->node_endpoint(node), grpc::SslCredentials(ssl)));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      ctx.AddMetadata("x-ms-date", date);
      ctx.AddMetadata("authorization", auth);
      v1::DeleteDatabaseRequest req;
      req.set_database("rp");
      v1::DeleteResponse resp;
      return stub->DeleteDatabase(&ctx, req, &resp);
    };
    const grpc::Status first = send_delete(1);
    INFO(first.error_message());
    REQUIRE(first.ok());
    REQUIRE(f.admin->CreateDatabase("rp").ok());
    const grpc::Status replay = send_delete(2);
    INFO(replay.error_message());
    CHECK(replay.error_code() == grpc::StatusCode::ALREADY_EXISTS);
    CHECK(f.admin->ReadDatabase("rp").ok());
  }

  {  // an expired token is refused
    const std::string short_lived = f.Token("pa_all", 1);
    Check({{"token", f.WithToken(short_lived), "read before expiry", ReadItem("d1", "a", "x"), ok, ""}});
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    Check({{"token", f.WithToken(short_lived), "read after expiry", ReadItem("d1", "a", "x"), unauth, "expired"}});
  }

  {  // regenerating a key: its tokens die, the other key works throughout, every node learns it
    const std::string by_secondary = f.Token("pa_all", 0, "secondary");
    Check({{"token by secondary", f.WithToken(by_secondary), "read", ReadItem("d1", "a", "x"), ok, ""}});
    const std::string old_secondary = f.keys["secondary"];
    v1::RegenerateKeyRequest req;
    req.set_name("secondary");
    v1::RegenerateKeyResponse resp;
    REQUIRE(f.admin->CallAccess("RegenerateKey", AccountRef("post"), req, &resp).ok());
    REQUIRE(resp.key_base64() != old_secondary);
    f.keys["secondary"] = resp.key_base64();
    // Every node: the new key in, the old key out (within replication lag).
    for (int node = 1; node <= 4; ++node) {
      const auto until = std::chrono::steady_clock::now() + kConverge;
      Status s;
      do {
        s = AccessFixture::Connect(f.WithKey("secondary", node))->ReadItem("d1", "a", "\"x\"", "ix").status();
        if (!s.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      } while (!s.ok() && std::chrono::steady_clock::now() < until);
      INFO("node " << node << ": " << s.ToString());
      CHECK(s.ok());
      auto o = f.cluster->node_client_options(node);
      o.key = old_secondary;
      CHECK(AccessFixture::Connect(o)->ReadItem("d1", "a", "\"x\"", "ix").status().code() == unauth);
    }
    Check(
        {{"token by old secondary", f.WithToken(by_secondary), "read", ReadItem("d1", "a", "x"), unauth, "regenerated"},
         {"token by primary", f.WithToken(pa_all), "read", ReadItem("d1", "a", "x"), ok, ""},
         {"primary", f.WithKey("primary"), "write", WriteItem("d1", "a", "x"), ok, ""}});
  }

  {  // disable_local_auth: account keys and tokens are refused for data, RBAC still works
    f.SetDisableLocalAuth(true);
    Check({
        {"primary", f.WithKey("primary"), "read item", ReadItem("d1", "a", "x"), denied, "disable_local_auth"},
        {"primary", f.WithKey("primary"), "create item", WriteItem("d1", "a", "x"), denied, "disable_local_auth"},
        {"primary", f.WithKey("primary"), "create database (control plane)", CreateDatabase(), ok, ""},
        {"token All d1/a", f.WithToken(pa_all), "read item", ReadItem("d1", "a", "x"), denied, "disable_local_auth"},
        {"jwt Data Reader @d1", f.WithJwt(reader), "read d1/a", ReadItem("d1", "a", "x"), ok, ""},
    });
    f.SetDisableLocalAuth(false);
    Check({{"primary", f.WithKey("primary"), "read item", ReadItem("d1", "a", "x"), ok, ""}});
  }
  {  // deleting the permission revokes its tokens; deleting the user revokes all of them
    v1::PermissionRequest del;
    del.set_database("d1");
    del.set_user("alice");
    del.set_permission("pa_read");
    v1::PermissionResponse resp;
    REQUIRE(
        f.admin->CallAccess("DeletePermission", security::PermissionRef("delete", "d1", "alice", "pa_read"), del, &resp)
            .ok());
    Check({{"deleted permission", f.WithToken(pa_read), "read", ReadItem("d1", "a", "x"), unauth, "deleted"},
           {"other permission", f.WithToken(pa_all), "read", ReadItem("d1", "a", "x"), ok, ""}});
    v1::UserResponse uresp;
    REQUIRE(f.admin
                ->CallAccess("DeleteUser", security::UserRef("delete", "d1", "alice"),
                             AccessFixture::User("d1", "alice"), &uresp)
                .ok());
    Check({{"deleted user", f.WithToken(pa_all), "read", ReadItem("d1", "a", "x"), unauth, "deleted"}});
  }

  REQUIRE(f.cluster->Stop().ok());
}
