#include "security/request_signing.h"

#include "security/auth_header.h"

#include <sodium.h>

#include <cctype>
#include <ctime>

namespace bulwark::security {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string HmacSha256(const crypto::SecretBytes& key, std::string_view message) {
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, key.data(), key.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(message.data()), message.size());
  crypto_auth_hmacsha256_final(&state, mac);
  sodium_memzero(&state, sizeof(state));
  return std::string(reinterpret_cast<const char*>(mac), sizeof(mac));
}

constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

}  // namespace

ResourceRef AccountRef(std::string_view verb) { return {std::string(verb), "", ""}; }
ResourceRef DatabaseFeedRef(std::string_view verb) { return {std::string(verb), "dbs", ""}; }
ResourceRef DatabaseRef(std::string_view verb, std::string_view db) {
  return {std::string(verb), "dbs", "dbs/" + std::string(db)};
}
ResourceRef ContainerFeedRef(std::string_view verb, std::string_view db) {
  return {std::string(verb), "colls", "dbs/" + std::string(db)};
}
ResourceRef ContainerRef(std::string_view verb, std::string_view db, std::string_view container) {
  return {std::string(verb), "colls", "dbs/" + std::string(db) + "/colls/" + std::string(container)};
}
ResourceRef ItemFeedRef(std::string_view verb, std::string_view db, std::string_view container) {
  return {std::string(verb), "docs", "dbs/" + std::string(db) + "/colls/" + std::string(container)};
}
ResourceRef ItemRef(std::string_view verb, std::string_view db, std::string_view container, std::string_view id) {
  return {std::string(verb), "docs",
          "dbs/" + std::string(db) + "/colls/" + std::string(container) + "/docs/" + std::string(id)};
}

ResourceRef UserFeedRef(std::string_view verb, std::string_view db) {
  return {std::string(verb), "users", "dbs/" + std::string(db)};
}
ResourceRef UserRef(std::string_view verb, std::string_view db, std::string_view user) {
  return {std::string(verb), "users", "dbs/" + std::string(db) + "/users/" + std::string(user)};
}
ResourceRef PermissionFeedRef(std::string_view verb, std::string_view db, std::string_view user) {
  return {std::string(verb), "permissions", "dbs/" + std::string(db) + "/users/" + std::string(user)};
}
ResourceRef PermissionRef(std::string_view verb, std::string_view db, std::string_view user,
                          std::string_view permission) {
  return {std::string(verb), "permissions",
          "dbs/" + std::string(db) + "/users/" + std::string(user) + "/permissions/" + std::string(permission)};
}

std::string StringToSign(const ResourceRef& ref, std::string_view date) {
  return Lower(ref.verb) + "\n" + Lower(ref.type) + "\n" + ref.link + "\n" + Lower(date) + "\n" + "" + "\n";
}

std::string SignWithMasterKey(const crypto::SecretBytes& key, const ResourceRef& ref, std::string_view date) {
  return FormatAuthorization(AuthType::kMaster, crypto::Base64Encode(HmacSha256(key, StringToSign(ref, date))));
}

Status VerifyMasterSignature(const crypto::SecretBytes& key, const ResourceRef& ref, std::string_view date,
                             std::string_view authorization, std::chrono::system_clock::time_point now) {
  if (authorization.empty()) return Status::Unauthenticated("the request is not signed (no authorization header)");
  BULWARK_RETURN_IF_ERROR(CheckRequestDate(date, now));
  BULWARK_ASSIGN_OR_RETURN(Authorization auth, ParseAuthorization(authorization));
  if (auth.type != AuthType::kMaster) {
    return Status::Unauthenticated("authorization header must be type=master&ver=1.0&sig=...");
  }
  if (!MasterSignatureMatches(key, ref, date, auth.credential)) {
    return Status::Unauthenticated("the request's signature does not match (wrong key, or a different resource)");
  }
  return Status::Ok();
}

Status CheckRequestDate(std::string_view date, std::chrono::system_clock::time_point now) {
  if (date.empty()) return Status::Unauthenticated("the request has no x-ms-date header");
  auto when = ParseHttpDate(date);
  if (!when.ok()) return Status::Unauthenticated("x-ms-date is not an RFC 1123 date");
  const auto skew = now > *when ? now - *when : *when - now;
  if (skew > kMaxClockSkew) {
    return Status::Unauthenticated(
        "x-ms-date is more than 15 minutes from the server's clock; check the client's clock");
  }
  return Status::Ok();
}

bool MasterSignatureMatches(const crypto::SecretBytes& key, const ResourceRef& ref, std::string_view date,
                            std::string_view signature_base64) {
  auto given = crypto::Base64Decode(signature_base64);
  const std::string expected = HmacSha256(key, StringToSign(ref, date));
  return given.ok() && given->size() == expected.size() &&
         sodium_memcmp(given->data(), expected.data(), expected.size()) == 0;
}

std::string FormatHttpDate(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

Result<std::chrono::system_clock::time_point> ParseHttpDate(std::string_view date) {
  // "Tue, 01 Nov 1994 08:12:31 GMT": fixed layout, so parse it by hand rather
  // than through the locale-dependent strptime.
  const Status bad = Status::InvalidArgument("not an RFC 1123 date");
  if (date.size() != 29 || date.substr(3, 2) != ", " || date.substr(25) != " GMT") return bad;
  auto num = [&](size_t pos, size_t len, int& out) {
    out = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(date[i]))) return false;
      out = out * 10 + (date[i] - '0');
    }
    return true;
  };
  std::tm tm{};
  int month = -1;
  for (int m = 0; m < 12; ++m) {
    if (date.substr(8, 3) == kMonths[m]) month = m;
  }
  int day = 0, year = 0, hour = 0, minute = 0, second = 0;
  if (month < 0 || !num(5, 2, day) || !num(12, 4, year) || !num(17, 2, hour) || !num(20, 2, minute) ||
      !num(23, 2, second) || date[16] != ' ' || date[19] != ':' || date[22] != ':') {
    return bad;
  }
  if (day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60 || year < 1970) return bad;
  tm.tm_mday = day;
  tm.tm_mon = month;
  tm.tm_year = year - 1900;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

Result<std::string> UrlDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
          !std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
        return Status::InvalidArgument("malformed percent-encoding");
      }
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {  // '+' stays '+': base64 signatures contain it
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace bulwark::security
