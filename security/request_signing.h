#pragma once
// Signed requests, as the Cosmos DB REST API signs them with a master key.
//
//   string to sign = verb "\n" resourceType "\n" resourceLink "\n" date "\n" "" "\n"
//   (verb, resource type and date lower-cased; the link keeps its case)
//   signature      = base64(HMAC-SHA256(base64-decoded account key, string to sign))
//   authorization  = url-encode("type=master&ver=1.0&sig=" + signature)
//   x-ms-date      = RFC 1123 date, e.g. "Tue, 01 Nov 1994 08:12:31 GMT"
//
// The server derives verb, type and link from the request it received, never
// from what the client claims, so a signature covers the actual resource.
// Pure functions; thread-safe. Errors never include a key or a signature.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "crypto/secret.h"

namespace bulwark::security {

constexpr std::chrono::seconds kMaxClockSkew{15 * 60};
// Writes get a tighter window: the replica set remembers a signed write's id
// for 10 minutes (storage::kDedupWindowMs), and a replay must fall inside it.
constexpr std::chrono::seconds kMaxWriteClockSkew{4 * 60};
constexpr size_t kAccountKeyBytes = 64;
constexpr std::string_view kAuthorizationHeader = "authorization";
constexpr std::string_view kDateHeader = "x-ms-date";

// What a request acts on, in the Cosmos DB REST vocabulary.
struct ResourceRef {
  std::string verb;  // get, post, put, delete
  std::string type;  // "", dbs, colls, docs
  std::string link;  // "", dbs/D, dbs/D/colls/C, dbs/D/colls/C/docs/I
};

ResourceRef AccountRef(std::string_view verb);
ResourceRef DatabaseFeedRef(std::string_view verb);
ResourceRef DatabaseRef(std::string_view verb, std::string_view db);
ResourceRef ContainerFeedRef(std::string_view verb, std::string_view db);
ResourceRef ContainerRef(std::string_view verb, std::string_view db, std::string_view container);
ResourceRef ItemFeedRef(std::string_view verb, std::string_view db, std::string_view container);
ResourceRef ItemRef(std::string_view verb, std::string_view db, std::string_view container, std::string_view id);

// Users and permissions, as Cosmos DB names them.
ResourceRef UserFeedRef(std::string_view verb, std::string_view db);
ResourceRef UserRef(std::string_view verb, std::string_view db, std::string_view user);
ResourceRef PermissionFeedRef(std::string_view verb, std::string_view db, std::string_view user);
ResourceRef PermissionRef(std::string_view verb, std::string_view db, std::string_view user,
                          std::string_view permission);

std::string StringToSign(const ResourceRef& ref, std::string_view date);

// The full authorization header value for a master-key signature.
std::string SignWithMasterKey(const crypto::SecretBytes& key, const ResourceRef& ref, std::string_view date);

// Checks `authorization` against `key` for `ref` and `date`, and that `date`
// is within kMaxClockSkew of `now`. Unauthenticated, with a message that says
// which part failed (missing, malformed, stale date, bad signature).
Status VerifyMasterSignature(const crypto::SecretBytes& key, const ResourceRef& ref, std::string_view date,
                             std::string_view authorization, std::chrono::system_clock::time_point now);

// The two halves of VerifyMasterSignature, for a server that tries several
// keys: the date check (Unauthenticated if missing, malformed or outside
// kMaxClockSkew), and a constant-time comparison of a base64 signature.
Status CheckRequestDate(std::string_view date, std::chrono::system_clock::time_point now);
bool MasterSignatureMatches(const crypto::SecretBytes& key, const ResourceRef& ref, std::string_view date,
                            std::string_view signature_base64);

std::string FormatHttpDate(std::chrono::system_clock::time_point t);
// InvalidArgument unless `date` is an RFC 1123 GMT date.
Result<std::chrono::system_clock::time_point> ParseHttpDate(std::string_view date);

std::string UrlEncode(std::string_view s);
Result<std::string> UrlDecode(std::string_view s);

}  // namespace bulwark::security
