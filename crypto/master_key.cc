#include "crypto/master_key.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

extern char** environ;

namespace bulwark::crypto {
namespace {

constexpr uint8_t kWrapFormatV1 = 1;
constexpr size_t kWrapNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kWrapTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr std::string_view kKeyIdContext = "bulwark.master-key-id.v1";

std::string ComputeKeyId(const SecretBytes& key) {
  unsigned char out[8];
  crypto_generichash(out, sizeof(out), reinterpret_cast<const unsigned char*>(kKeyIdContext.data()),
                     kKeyIdContext.size(), key.data(), key.size());
  return HexEncode(std::string_view(reinterpret_cast<const char*>(out), sizeof(out)));
}

std::string_view TrimSpace(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

Result<MasterKey> LoadFromFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound("master key file '" + path + "' does not exist");
    return Status::IOError("cannot open master key file '" + path + "': " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("master key file '" + path + "' is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::PermissionDenied("master key file '" + path + "' is readable or writable by group or others (mode " +
                                    mode + "); run: chmod 600 '" + path + "'");
  }
  if (static_cast<size_t>(st.st_size) > kMaxKeyMaterialBytes) {
    ::close(fd);
    return Status::InvalidArgument("master key file '" + path + "' is too large to be a key");
  }
  SecretBytes buf(kMaxKeyMaterialBytes);
  size_t used = 0;
  while (used < buf.size()) {
    const ssize_t n = ::read(fd, buf.data() + used, buf.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status::IOError("cannot read master key file '" + path + "': " + std::strerror(err));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  ::close(fd);
  BULWARK_ASSIGN_OR_RETURN(SecretBytes key, ParseKeyMaterial(buf.view().substr(0, used), "file:" + path));
  return MasterKey::FromBytes(std::move(key));
}

Result<MasterKey> LoadFromEnv(const std::string& var) {
  if (var.empty()) return Status::InvalidArgument("master key URI 'env:' names no variable");
  const char* value = std::getenv(var.c_str());
  if (value == nullptr) return Status::NotFound("environment variable '" + var + "' (master key) is not set");
  BULWARK_ASSIGN_OR_RETURN(SecretBytes key, ParseKeyMaterial(value, "env:" + var));
  return MasterKey::FromBytes(std::move(key));
}

std::vector<std::string> SplitArgs(std::string_view command) {
  std::vector<std::string> args;
  std::string current;
  for (char c : command) {
    if (c == ' ' || c == '\t') {
      if (!current.empty()) args.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) args.push_back(std::move(current));
  return args;
}

// Reads the child's stdout until EOF, the byte bound, or the deadline.
Status ReadChildOutput(int fd, SecretBytes& buf, size_t& used, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::DeadlineExceeded("timed out");
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return Status::IOError(std::string("poll failed: ") + std::strerror(errno));
    if (ready == 0) return Status::DeadlineExceeded("timed out");
    if (used == buf.size()) return Status::InvalidArgument("printed more than a key");
    const ssize_t n = ::read(fd, buf.data() + used, buf.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError(std::string("read failed: ") + std::strerror(errno));
    if (n == 0) return Status::Ok();
    used += static_cast<size_t>(n);
  }
}

Result<MasterKey> LoadFromCommand(std::string_view command, const KeyProviderOptions& options) {
  std::vector<std::string> args = SplitArgs(command);
  if (args.empty()) return Status::InvalidArgument("master key URI 'command:' names no program");
  const std::string what = "master key command '" + args[0] + "'";
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::IOError(what + ": pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);  // dup2 clears CLOEXEC
  pid_t pid = 0;
  const int spawn_err = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (spawn_err != 0) {
    ::close(fds[0]);
    return Status::Unavailable(what + " could not be started: " + std::strerror(spawn_err));
  }
  SecretBytes buf(kMaxKeyMaterialBytes);
  size_t used = 0;
  const auto deadline = std::chrono::steady_clock::now() + options.command_timeout;
  Status read_status = ReadChildOutput(fds[0], buf, used, deadline);
  ::close(fds[0]);
  if (!read_status.ok()) ::kill(pid, SIGKILL);  // never leave a hung helper behind
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (read_status.code() == Code::kDeadlineExceeded) {
    return Status::DeadlineExceeded(what + " did not finish within " + std::to_string(options.command_timeout.count()) +
                                    " ms");
  }
  if (!read_status.ok()) return Status(read_status).WithContext(what);
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    const std::string how = WIFEXITED(wstatus) ? "exited with status " + std::to_string(WEXITSTATUS(wstatus))
                                               : "was killed by signal " + std::to_string(WTERMSIG(wstatus));
    return Status::Unavailable(what + " failed: it " + how);
  }
  BULWARK_ASSIGN_OR_RETURN(SecretBytes key, ParseKeyMaterial(buf.view().substr(0, used), what));
  return MasterKey::FromBytes(std::move(key));
}

}  // namespace

Result<SecretBytes> ParseKeyMaterial(std::string_view material, std::string_view source) {
  if (material.size() == kMasterKeyBytes) return SecretBytes::CopyFrom(material);
  const std::string_view trimmed = TrimSpace(material);
  auto decoded = Base64DecodeSecret(trimmed);
  if (!decoded.ok() || decoded->size() != kMasterKeyBytes) {
    return Status::InvalidArgument("master key from " + std::string(source) +
                                   " must be 32 raw bytes or base64 of 32 bytes");
  }
  return std::move(decoded).value();
}

Result<MasterKey> MasterKey::FromBytes(SecretBytes key) {
  BULWARK_RETURN_IF_ERROR(InitSodium());
  if (key.size() != kMasterKeyBytes) return Status::InvalidArgument("a master key must be 32 bytes");
  std::string id = ComputeKeyId(key);
  return MasterKey(std::move(key), std::move(id));
}

MasterKey MasterKey::Generate() {
  auto key = FromBytes(SecretBytes::Random(kMasterKeyBytes));
  assert(key.ok());
  return std::move(key).value();
}

MasterKey MasterKey::Clone() const { return MasterKey(key_.Clone(), id_); }

std::string MasterKey::Wrap(std::string_view secret, std::string_view context) const {
  std::string out(1 + kWrapNonceBytes + secret.size() + kWrapTagBytes, '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = kWrapFormatV1;
  randombytes_buf(p + 1, kWrapNonceBytes);
  unsigned long long ct_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      p + 1 + kWrapNonceBytes, &ct_len, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
      reinterpret_cast<const unsigned char*>(context.data()), context.size(), nullptr, p + 1, key_.data());
  return out;
}

Result<SecretBytes> MasterKey::Unwrap(std::string_view wrapped, std::string_view context) const {
  if (wrapped.size() < 1 + kWrapNonceBytes + kWrapTagBytes || static_cast<uint8_t>(wrapped[0]) != kWrapFormatV1) {
    return Status::Corruption("wrapped key has an unknown format");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(wrapped.data());
  const size_t ct_len = wrapped.size() - 1 - kWrapNonceBytes;
  SecretBytes out(ct_len - kWrapTagBytes);
  unsigned long long out_len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), &out_len, nullptr, p + 1 + kWrapNonceBytes, ct_len,
                                                 reinterpret_cast<const unsigned char*>(context.data()), context.size(),
                                                 p + 1, key_.data()) != 0) {
    return Status::Corruption("wrapped key failed authentication (changed bytes or another master key)");
  }
  return out;
}

Result<MasterKey> LoadMasterKey(std::string_view uri, const KeyProviderOptions& options) {
  BULWARK_RETURN_IF_ERROR(InitSodium());
  const size_t colon = uri.find(':');
  if (colon == std::string_view::npos) {
    return Status::InvalidArgument("master key URI must start with file:, env: or command:");
  }
  const std::string_view scheme = uri.substr(0, colon);
  const std::string rest(uri.substr(colon + 1));
  if (scheme == "file") {
    if (rest.empty()) return Status::InvalidArgument("master key URI 'file:' names no path");
    return LoadFromFile(rest);
  }
  if (scheme == "env") return LoadFromEnv(rest);
  if (scheme == "command") return LoadFromCommand(rest, options);
  return Status::InvalidArgument("unknown master key provider '" + std::string(scheme) +
                                 "' (expected file:, env: or command:)");
}

}  // namespace bulwark::crypto
