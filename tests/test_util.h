#pragma once
// Helpers shared by the test executables.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace bulwark::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it
// when the object goes out of scope, unless BULWARK_KEEP_TEST_DIRS=1 (for
// reading a failed test's node logs).
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/bulwark-test-XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    if (const char* keep = std::getenv("BULWARK_KEEP_TEST_DIRS"); keep && std::string(keep) == "1") return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A TCP port free on `ip` (IPv4 or IPv6) right now (the kernel's choice); 0
// on failure.
inline int FreePort(const std::string& ip) {
  const bool v6 = ip.find(':') != std::string::npos;
  const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  sockaddr_storage storage{};
  socklen_t len = 0;
  if (v6) {
    auto* addr = reinterpret_cast<sockaddr_in6*>(&storage);
    addr->sin6_family = AF_INET6;
    ::inet_pton(AF_INET6, ip.c_str(), &addr->sin6_addr);
    len = sizeof(sockaddr_in6);
  } else {
    auto* addr = reinterpret_cast<sockaddr_in*>(&storage);
    addr->sin_family = AF_INET;
    ::inet_pton(AF_INET, ip.c_str(), &addr->sin_addr);
    len = sizeof(sockaddr_in);
  }
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), len) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len) == 0) {
    port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                    : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace bulwark::testing
