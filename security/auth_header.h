#pragma once
// The `authorization` header, in the Cosmos DB REST format:
//
//   url-encode("type=<master|resource|aad>&ver=1.0&sig=<credential>")
//
//   master:   the base64 HMAC-SHA256 signature of the request (request_signing.h)
//   resource: a resource token issued by reading a permission (resource_token.h)
//   aad:      a signed identity token, a JWT (jwt.h)
//
// Pure functions; thread-safe. Errors are Unauthenticated, say which part is
// wrong, and never quote the credential.

#include <string>
#include <string_view>

#include "common/status.h"

namespace bulwark::security {

// The header's limit, before and after URL decoding. A JWT with a few claims
// is well under it.
constexpr size_t kMaxAuthorizationHeaderBytes = 4096;

enum class AuthType { kMaster, kResource, kAad };

std::string_view AuthTypeName(AuthType type);  // "master", "resource", "aad"

struct Authorization {
  AuthType type = AuthType::kMaster;
  std::string credential;  // the `sig` value, URL-decoded once
};

// Parses a header value. The three fields may come in any order, each once;
// `ver` must be "1.0"; unknown fields are refused.
Result<Authorization> ParseAuthorization(std::string_view header);

// The header value for `type` and `credential` (URL-encoded).
std::string FormatAuthorization(AuthType type, std::string_view credential);

}  // namespace bulwark::security
