// Fuzzes ParseResourceToken and VerifyResourceToken under a fixed key.
// Invariants: every refusal keeps CheckRefusal's rules; whatever parses is
// claims the issuer could have written, and re-issuing them reproduces the
// input's payload byte for byte (one encoding per claims); whatever verifies
// is exactly the token the key would issue, so only a genuine token passes.
#include "crypto/secret.h"
#include "fuzz/fuzz_target.h"
#include "security/resource_token.h"

using namespace bulwark;
using namespace bulwark::security;

BULWARK_FUZZ_TARGET(ResourceToken) {
  static const crypto::SecretBytes key = crypto::SecretBytes::CopyFrom(fuzz::AccountKeyBytes());
  static const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(fuzz::kNow_s));
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  auto parsed = ParseResourceToken(input);
  auto verified = VerifyResourceToken(key, input, now);
  if (!parsed.ok()) {
    fuzz::CheckRefusal(parsed.status(), input);
    BULWARK_FUZZ_CHECK(!verified.ok());
  } else {
    BULWARK_FUZZ_CHECK(input.size() <= kMaxResourceTokenBytes);
    BULWARK_FUZZ_CHECK(ValidateResourceTokenClaims(*parsed).ok());
    const std::string reissued = IssueResourceToken(key, *parsed);
    const std::string_view signed_part = input.substr(0, input.rfind('.'));
    BULWARK_FUZZ_CHECK(std::string_view(reissued).substr(0, reissued.rfind('.')) == signed_part);
  }
  if (!verified.ok()) {
    fuzz::CheckRefusal(verified.status(), input);
    return 0;
  }
  BULWARK_FUZZ_CHECK(IssueResourceToken(key, *verified) == input);
  BULWARK_FUZZ_CHECK(verified->expires_unix_s > fuzz::kNow_s);
  return 0;
}
