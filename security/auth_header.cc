#include "security/auth_header.h"

#include <optional>

#include "security/request_signing.h"

namespace bulwark::security {
namespace {

constexpr std::string_view kVersion = "1.0";

Status Malformed(std::string_view what) {
  return Status::Unauthenticated("authorization header is malformed: " + std::string(what));
}

std::optional<AuthType> AuthTypeFromName(std::string_view name) {
  for (AuthType type : {AuthType::kMaster, AuthType::kResource, AuthType::kAad}) {
    if (AuthTypeName(type) == name) return type;
  }
  return std::nullopt;
}

// All three credential kinds (base64, base64url, "." and "=") are printable
// ASCII, so a control byte, a space or a non-ASCII byte can only be an attempt
// to smuggle something into a log line or a downstream parser.
bool IsPrintableAscii(std::string_view text) {
  for (unsigned char c : text) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

std::string_view AuthTypeName(AuthType type) {
  switch (type) {
    case AuthType::kMaster:
      return "master";
    case AuthType::kResource:
      return "resource";
    case AuthType::kAad:
      return "aad";
  }
  return "unknown";
}

Result<Authorization> ParseAuthorization(std::string_view header) {
  if (header.empty()) return Status::Unauthenticated("the request has no authorization header");
  // Checked before decoding, so an oversized header costs nothing to refuse.
  if (header.size() > kMaxAuthorizationHeaderBytes) return Status::Unauthenticated("authorization header too long");
  auto decoded = UrlDecode(header);
  if (!decoded.ok()) return Malformed("bad percent-encoding");
  // Decoding never lengthens, but the limit is the contract on both sides.
  if (decoded->size() > kMaxAuthorizationHeaderBytes) return Status::Unauthenticated("authorization header too long");
  if (!IsPrintableAscii(*decoded)) return Malformed("a byte that is not printable ASCII");

  std::optional<std::string_view> type, version, sig;
  std::string_view rest = *decoded;
  // Each iteration consumes one '&'-separated field; a header has at most
  // header.size() of them, so the loop is bounded by the length limit.
  while (true) {
    const size_t amp = rest.find('&');
    const std::string_view field = rest.substr(0, amp);
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) return Malformed("a field without '='");
    // The value is everything after the first '=': base64 padding has more.
    const std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
    std::optional<std::string_view>* slot = nullptr;
    if (name == "type") slot = &type;
    if (name == "ver") slot = &version;
    if (name == "sig") slot = &sig;
    if (slot == nullptr) return Malformed("an unknown field");
    if (slot->has_value()) return Malformed("a repeated field");
    *slot = value;
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  if (!type || !version || !sig) return Malformed("it must have type, ver and sig");
  if (*version != kVersion) return Malformed("ver must be 1.0");
  const std::optional<AuthType> auth_type = AuthTypeFromName(*type);
  if (!auth_type) return Malformed("type must be master, resource or aad");
  if (sig->empty()) return Malformed("sig is empty");
  return Authorization{*auth_type, std::string(*sig)};
}

std::string FormatAuthorization(AuthType type, std::string_view credential) {
  std::string plain = "type=";
  plain += AuthTypeName(type);
  plain += "&ver=";
  plain += kVersion;
  plain += "&sig=";
  plain += credential;
  return UrlEncode(plain);
}

}  // namespace bulwark::security
