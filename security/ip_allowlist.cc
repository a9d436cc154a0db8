#include "security/ip_allowlist.h"

#include <arpa/inet.h>

#include <cstring>

namespace bulwark::security {
namespace {

// Parses a bare IPv4 or IPv6 address.
bool ParseAddress(std::string_view text, CidrRange& out) {
  if (text.empty() || text.size() > 64) return false;
  const std::string s(text);
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out.v6 = false;
    out.address = {};
    std::memcpy(out.address.data(), &v4, 4);
    return true;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    out.v6 = true;
    std::memcpy(out.address.data(), &v6, 16);
    return true;
  }
  return false;
}

bool PrefixMatches(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int bits) {
  const int whole = bits / 8;
  if (std::memcmp(a.data(), b.data(), static_cast<size_t>(whole)) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

Result<CidrRange> ParseCidr(std::string_view text) {
  const std::string shown(text.substr(0, 64));
  CidrRange r;
  const size_t slash = text.find('/');
  if (!ParseAddress(text.substr(0, slash), r)) {
    return Status::InvalidArgument("'" + shown + "' is not an IPv4 or IPv6 address or CIDR range");
  }
  const int max = r.v6 ? 128 : 32;
  r.prefix = max;
  if (slash != std::string_view::npos) {
    const std::string_view bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string_view::npos) {
      return Status::InvalidArgument("'" + shown + "' has a malformed prefix length");
    }
    r.prefix = std::stoi(std::string(bits));
    if (r.prefix > max) {
      return Status::InvalidArgument("'" + shown + "': the prefix length is at most " + std::to_string(max));
    }
  }
  CidrRange network = r;
  for (int bit = r.prefix; bit < max; ++bit) network.address[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  if (network.address != r.address) {
    return Status::InvalidArgument("'" + shown + "' has bits set below its prefix; write " + FormatCidr(network));
  }
  return r;
}

std::string FormatCidr(const CidrRange& range) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(range.v6 ? AF_INET6 : AF_INET, range.address.data(), buf, sizeof(buf));
  return std::string(buf) + "/" + std::to_string(range.prefix);
}

Result<IpAllowlist> IpAllowlist::Parse(const std::vector<std::string>& entries) {
  if (entries.size() > kMaxAllowlistEntries) {
    return Status::InvalidArgument("an allowlist holds at most " + std::to_string(kMaxAllowlistEntries) + " entries");
  }
  IpAllowlist list;
  for (const auto& e : entries) {
    BULWARK_ASSIGN_OR_RETURN(CidrRange r, ParseCidr(e));
    list.ranges_.push_back(r);
  }
  return list;
}

std::string_view PeerHost(std::string_view peer) {
  std::string_view host = peer;
  if (host.substr(0, 5) == "ipv4:") {
    host.remove_prefix(5);
    host = host.substr(0, host.rfind(':'));
  } else if (host.substr(0, 5) == "ipv6:") {
    host.remove_prefix(5);
    if (!host.empty() && host.front() == '[') {
      const size_t close = host.find(']');
      if (close == std::string_view::npos) return {};
      host = host.substr(1, close - 1);
    } else if (host.substr(0, 3) == "%5B" || host.substr(0, 3) == "%5b") {
      // gRPC's server side writes the brackets URI-escaped: "ipv6:%5B::1%5D:5000".
      size_t close = host.find("%5D");
      if (close == std::string_view::npos) close = host.find("%5d");
      if (close == std::string_view::npos) return {};
      host = host.substr(3, close - 3);
    }
    // gRPC writes a scope as %25 (URI-escaped); a scoped address never
    // matches a rule.
    if (host.find('%') != std::string_view::npos) return {};
  }
  return host;
}

bool IpAllowlist::Allows(std::string_view peer) const {
  if (ranges_.empty()) return true;
  const std::string_view host = PeerHost(peer);
  if (host.empty()) return false;
  CidrRange addr;
  if (!ParseAddress(host, addr)) return false;
  // An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is IPv4.
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (addr.v6 && std::memcmp(addr.address.data(), kMapped, 12) == 0) {
    std::array<uint8_t, 16> v4{};
    std::memcpy(v4.data(), addr.address.data() + 12, 4);
    addr.address = v4;
    addr.v6 = false;
  }
  for (const CidrRange& r : ranges_) {
    if (r.v6 == addr.v6 && PrefixMatches(r.address, addr.address, r.prefix)) return true;
  }
  return false;
}

}  // namespace bulwark::security
