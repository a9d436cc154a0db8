// make_seeds: writes the seed corpora under fuzz/corpus/ that need keys:
// tokens signed with the fuzz targets' fixed keys (fuzz_target.h), valid at
// their fixed "now", and near-misses of them. Rerun it, and commit the
// result, if those keys or the token formats change:
//
//   ninja make_seeds && bin/make_seeds fuzz/corpus

#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "crypto/secret.h"
#include "fuzz/fuzz_target.h"
#include "security/auth_header.h"
#include "security/jwt.h"
#include "security/resource_token.h"

using namespace bulwark;
using namespace bulwark::security;

namespace {

void Write(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  std::printf("%s (%zu bytes)\n", path.c_str(), bytes.size());
}

ResourceTokenClaims TokenClaims() {
  ResourceTokenClaims c;
  c.key_name = "primary";
  c.key_version = 3;
  c.database = "Shop";
  c.user = "alice";
  c.permission = "orders";
  c.permission_rid = "9f86d081";
  c.mode = PermissionMode::kAll;
  c.resource_link = "dbs/Shop/colls/Orders";
  c.partition_key_json = "\"eu\"";
  c.issued_unix_s = fuzz::kNow_s - 60;
  c.expires_unix_s = fuzz::kNow_s + 3600;
  return c;
}

JwtClaims IdentityClaims() {
  JwtClaims c;
  c.issuer = fuzz::kJwtIssuer;
  c.subject = "alice@example";
  c.audiences = {std::string(fuzz::kJwtAudience)};
  c.key_id = fuzz::kJwtKeyId;
  c.expires_unix_s = fuzz::kNow_s + 3600;
  c.not_before_unix_s = fuzz::kNow_s - 60;
  c.issued_unix_s = fuzz::kNow_s - 60;
  return c;
}

std::string MustSign(std::string_view secret_key, const JwtClaims& claims) {
  auto jwt = SignJwt(secret_key, claims);
  if (!jwt.ok()) std::abort();
  return *jwt;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || !crypto::InitSodium().ok()) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path root = argv[1];
  const auto key = crypto::SecretBytes::CopyFrom(fuzz::AccountKeyBytes());

  const std::string token = IssueResourceToken(key, TokenClaims());
  Write(root / "resource_token" / "valid_container", token);
  ResourceTokenClaims database_wide = TokenClaims();
  database_wide.resource_link = "dbs/Shop";
  database_wide.mode = PermissionMode::kRead;
  database_wide.partition_key_json.clear();
  Write(root / "resource_token" / "valid_database", IssueResourceToken(key, database_wide));
  ResourceTokenClaims expired = TokenClaims();
  expired.issued_unix_s = fuzz::kNow_s - 7200;
  expired.expires_unix_s = fuzz::kNow_s - 3600;
  Write(root / "resource_token" / "expired", IssueResourceToken(key, expired));
  const auto other_key = crypto::SecretBytes::Random(fuzz::kAccountKeyBytes);
  Write(root / "resource_token" / "wrong_key", IssueResourceToken(other_key, TokenClaims()));

  unsigned char seed[crypto_sign_SEEDBYTES], public_key[crypto_sign_PUBLICKEYBYTES];
  std::fill(std::begin(seed), std::end(seed), fuzz::kJwtSeedByte);
  std::string secret_key(crypto_sign_SECRETKEYBYTES, '\0');
  crypto_sign_seed_keypair(public_key, reinterpret_cast<unsigned char*>(secret_key.data()), seed);
  const std::string jwt = MustSign(secret_key, IdentityClaims());
  Write(root / "jwt" / "valid", jwt);
  JwtClaims several = IdentityClaims();
  several.audiences = {"https://other.example", std::string(fuzz::kJwtAudience)};
  several.key_id.clear();
  several.not_before_unix_s = 0;
  Write(root / "jwt" / "valid_array_audience_no_kid", MustSign(secret_key, several));
  JwtClaims stale = IdentityClaims();
  stale.expires_unix_s = fuzz::kNow_s - 3600;
  Write(root / "jwt" / "expired", MustSign(secret_key, stale));
  JwtClaims stranger = IdentityClaims();
  stranger.issuer = "https://stranger.example";
  Write(root / "jwt" / "unknown_issuer", MustSign(secret_key, stranger));

  Write(root / "auth_header" / "resource", FormatAuthorization(AuthType::kResource, token));
  Write(root / "auth_header" / "aad", FormatAuthorization(AuthType::kAad, jwt));
  return 0;
}
