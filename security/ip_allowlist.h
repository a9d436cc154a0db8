#pragma once
// The account's IP firewall: an allowlist of IPv4 and IPv6 addresses and
// CIDR ranges. An empty list allows every address (the account is open).
//
// Thread safety: an IpAllowlist is immutable after Parse; share it freely.
// Errors: Parse returns InvalidArgument naming the entry that is malformed.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bulwark::security {

// Entries a list may hold: the limit keeps the per-request check cheap and
// the replicated record small.
constexpr size_t kMaxAllowlistEntries = 1000;

struct CidrRange {
  bool v6 = false;
  std::array<uint8_t, 16> address{};  // network order; IPv4 uses the first 4 bytes
  int prefix = 0;                     // bits
};

// "10.0.0.0/8", "127.0.0.9", "::1", "2001:db8::/32". A bare address is a /32
// (/128). Host bits set below the prefix are refused (ambiguous intent).
Result<CidrRange> ParseCidr(std::string_view text);
// The canonical text of a range: "10.0.0.0/8", "::1/128".
std::string FormatCidr(const CidrRange& range);

// The address in gRPC's peer string: "127.0.0.1" from "ipv4:127.0.0.1:5000",
// "::1" from "ipv6:[::1]:5000"; a bare address as it is; empty for what is
// not an IP peer (a Unix socket, a scoped IPv6 address).
std::string_view PeerHost(std::string_view peer);

class IpAllowlist {
 public:
  // Each entry as ParseCidr takes it.
  static Result<IpAllowlist> Parse(const std::vector<std::string>& entries);
  bool empty() const { return ranges_.empty(); }
  // `peer` is gRPC's peer string ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000")
  // or a bare address. An unparsable peer (a Unix socket) is not allowed by a
  // non-empty list.
  bool Allows(std::string_view peer) const;

 private:
  std::vector<CidrRange> ranges_;
};

}  // namespace bulwark::security
