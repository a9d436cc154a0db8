// Fuzzes ParseAuthorization. Invariants: a refusal keeps the rules of
// CheckRefusal; an accepted header formats back to one that parses to the
// same type and credential (or, if URL-encoding made it too long, is refused
// as too long, never misread).
#include "fuzz/fuzz_target.h"
#include "security/auth_header.h"

using namespace bulwark;
using namespace bulwark::security;

BULWARK_FUZZ_TARGET(AuthHeader) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto parsed = ParseAuthorization(input);
  if (!parsed.ok()) {
    fuzz::CheckRefusal(parsed.status(), input);
    return 0;
  }
  BULWARK_FUZZ_CHECK(!parsed->credential.empty());
  BULWARK_FUZZ_CHECK(input.size() <= kMaxAuthorizationHeaderBytes);
  const std::string formatted = FormatAuthorization(parsed->type, parsed->credential);
  auto reparsed = ParseAuthorization(formatted);
  if (formatted.size() > kMaxAuthorizationHeaderBytes) {
    BULWARK_FUZZ_CHECK(!reparsed.ok());
    BULWARK_FUZZ_CHECK(reparsed.status().message().find("too long") != std::string::npos);
    return 0;
  }
  BULWARK_FUZZ_CHECK(reparsed.ok());
  BULWARK_FUZZ_CHECK(reparsed->type == parsed->type);
  BULWARK_FUZZ_CHECK(reparsed->credential == parsed->credential);
  // Formatting is a function of the parsed value: a second round is a fixpoint.
  BULWARK_FUZZ_CHECK(FormatAuthorization(reparsed->type, reparsed->credential) == formatted);
  return 0;
}
