#include "security/tls_server.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

namespace bulwark::security {
namespace {

// gRPC reads this once, when it first builds a TLS context, and hands it to
// SSL_CTX_set_cipher_list, which governs TLS 1.2 and below only (TLS 1.3
// suites are a separate list gRPC leaves at OpenSSL's default).
constexpr const char* kCipherSuitesVariable = "GRPC_SSL_CIPHER_SUITES";
// One TLS 1.2 suite that can never be agreed: a pre-shared-key suite, and
// Bulwark configures no pre-shared keys. A client that offers only TLS 1.2
// finds no cipher in common and the handshake fails; TLS 1.3 is unaffected.
constexpr const char* kNoTls12CipherSuites = "PSK-AES128-GCM-SHA256";

struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  bool operator==(const FileStamp& o) const {
    return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

FileStamp Stamp(const std::string& path) {
  struct stat st {};
  FileStamp s;
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return s;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime = st.st_mtim;
  return s;
}

Result<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument(std::string("cannot read the TLS ") + what + " file '" + path + "'");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The key must belong to the certificate, and the CA (if any) must parse:
// catching a half-written rotation here keeps the previous certificate.
Status CheckPem(const std::string& cert, const std::string& key, const std::string& ca) {
  std::unique_ptr<BIO, decltype(&BIO_free)> cert_bio(BIO_new_mem_buf(cert.data(), static_cast<int>(cert.size())),
                                                     BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> x509(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr),
                                                   X509_free);
  if (!x509) return Status::InvalidArgument("the TLS certificate is not PEM");
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(BIO_new_mem_buf(key.data(), static_cast<int>(key.size())),
                                                    BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!pkey) return Status::InvalidArgument("the TLS private key is not PEM");
  if (X509_check_private_key(x509.get(), pkey.get()) != 1) {
    return Status::InvalidArgument("the TLS private key does not belong to the certificate");
  }
  if (!ca.empty()) {
    std::unique_ptr<BIO, decltype(&BIO_free)> ca_bio(BIO_new_mem_buf(ca.data(), static_cast<int>(ca.size())), BIO_free);
    std::unique_ptr<X509, decltype(&X509_free)> ca_x509(PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr),
                                                        X509_free);
    if (!ca_x509) return Status::InvalidArgument("the TLS CA certificate is not PEM");
  }
  return Status::Ok();
}

grpc_ssl_server_certificate_config* CoreConfig(const std::string& cert, const std::string& key, const std::string& ca) {
  grpc_ssl_pem_key_cert_pair pair{key.c_str(), cert.c_str()};
  return grpc_ssl_server_certificate_config_create(ca.empty() ? nullptr : ca.c_str(), &pair, 1);
}

// What the fetcher watches. gRPC keeps the raw pointer for as long as the
// core credentials live, and gives no hook when they die; so each Watch lives
// for the rest of the process (one per listening port: a handful).
struct Watch {
  TlsServerConfig config;
  std::mutex mu;
  bool loaded = false;                                 // GUARDED_BY(mu)
  std::chrono::steady_clock::time_point next_check{};  // GUARDED_BY(mu)
  FileStamp cert, key, ca;                             // GUARDED_BY(mu)
};

std::mutex watches_mu;
std::vector<std::unique_ptr<Watch>>& Watches() {
  static auto* watches = new std::vector<std::unique_ptr<Watch>>();  // never freed: see Watch
  return *watches;
}

grpc_ssl_certificate_config_reload_status Fetch(void* user_data, grpc_ssl_server_certificate_config** out) {
  auto* w = static_cast<Watch*>(user_data);
  std::lock_guard lock(w->mu);
  const auto now = std::chrono::steady_clock::now();
  if (w->loaded && now < w->next_check) return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
  w->next_check = now + kTlsReloadCheckInterval;
  const FileStamp cert = Stamp(w->config.cert_file), key = Stamp(w->config.key_file), ca = Stamp(w->config.ca_file);
  if (w->loaded && cert == w->cert && key == w->key && ca == w->ca) return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
  auto cert_pem = ReadPem(w->config.cert_file, "certificate");
  auto key_pem = ReadPem(w->config.key_file, "key");
  auto ca_pem = w->config.ca_file.empty() ? Result<std::string>(std::string()) : ReadPem(w->config.ca_file, "CA");
  Status s = !cert_pem.ok()  ? cert_pem.status()
             : !key_pem.ok() ? key_pem.status()
             : !ca_pem.ok()  ? ca_pem.status()
                             : CheckPem(*cert_pem, *key_pem, *ca_pem);
  if (!s.ok()) {
    // Keep serving with what we have (a rotation may be half-written); the
    // next check tries again.
    spdlog::error("event=tls_reload_failed port=\"{}\" error=\"{}\" note=\"keeping the previous certificate\"",
                  w->config.name, s.message());
    return w->loaded ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
  }
  *out = CoreConfig(*cert_pem, *key_pem, *ca_pem);
  if (w->loaded) spdlog::info("event=tls_reloaded port=\"{}\" cert={}", w->config.name, w->config.cert_file);
  w->loaded = true;
  w->cert = cert;
  w->key = key;
  w->ca = ca;
  return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

// Hands core server credentials to grpc::ServerBuilder. Overriding the
// private virtual AddPortToServer is the extension point gRPC's own
// credential kinds use; Server calls it from AddListeningPort.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  explicit CoreServerCredentials(grpc_server_credentials* creds) : creds_(creds) {}
  ~CoreServerCredentials() override { grpc_server_credentials_release(creds_); }
  // Bulwark authenticates inside its handlers, not with a metadata processor.
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {}

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }
  grpc_server_credentials* creds_;
};

grpc_ssl_client_certificate_request_type RequestType(ClientCertificates c) {
  switch (c) {
    case ClientCertificates::kNone:
      return GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    case ClientCertificates::kOptional:
      return GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    case ClientCertificates::kRequired:
      return GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
}

}  // namespace

Result<TlsVersion> ParseTlsVersion(std::string_view text) {
  if (text == "1.2") return TlsVersion::kTls12;
  if (text == "1.3") return TlsVersion::kTls13;
  return Status::InvalidArgument("tls_min_version is \"1.2\" or \"1.3\", not \"" + std::string(text) + "\"");
}

std::string_view TlsVersionName(TlsVersion version) { return version == TlsVersion::kTls13 ? "1.3" : "1.2"; }

void RequireTls13ProcessWide() { ::setenv(kCipherSuitesVariable, kNoTls12CipherSuites, 1); }

Result<std::shared_ptr<grpc::ServerCredentials>> MakeTlsServerCredentials(const TlsServerConfig& config) {
  if (config.min_version == TlsVersion::kTls13) {
    const char* set = std::getenv(kCipherSuitesVariable);
    if (set == nullptr || std::string_view(set) != kNoTls12CipherSuites) {
      return Status::FailedPrecondition("a TLS 1.3 minimum needs RequireTls13ProcessWide() before any TLS is set up");
    }
  }
  if (config.client_certificates != ClientCertificates::kNone && config.ca_file.empty() && config.ca_pem.empty()) {
    return Status::InvalidArgument("client certificates need a CA to verify them");
  }
  grpc_ssl_server_credentials_options* options = nullptr;
  if (!config.cert_file.empty()) {
    // Fail now, clearly, rather than at the first handshake.
    BULWARK_ASSIGN_OR_RETURN(auto cert, ReadPem(config.cert_file, "certificate"));
    BULWARK_ASSIGN_OR_RETURN(auto key, ReadPem(config.key_file, "key"));
    std::string ca;
    if (!config.ca_file.empty()) {
      BULWARK_ASSIGN_OR_RETURN(ca, ReadPem(config.ca_file, "CA"));
    }
    BULWARK_RETURN_IF_ERROR(CheckPem(cert, key, ca));
    auto watch = std::make_unique<Watch>();
    watch->config = config;
    std::lock_guard lock(watches_mu);
    Watches().push_back(std::move(watch));
    options = grpc_ssl_server_credentials_create_options_using_config_fetcher(RequestType(config.client_certificates),
                                                                              Fetch, Watches().back().get());
  } else {
    BULWARK_RETURN_IF_ERROR(CheckPem(config.cert_pem, config.key_pem, config.ca_pem));
    options = grpc_ssl_server_credentials_create_options_using_config(
        RequestType(config.client_certificates), CoreConfig(config.cert_pem, config.key_pem, config.ca_pem));
  }
  grpc_server_credentials* creds = grpc_ssl_server_credentials_create_with_options(options);
  if (creds == nullptr) return Status::Internal("gRPC refused the TLS server credentials");
  spdlog::info("event=tls_configured port=\"{}\" min_version={} client_certificates={} reload={}", config.name,
               TlsVersionName(config.min_version), static_cast<int>(config.client_certificates),
               !config.cert_file.empty());
  return std::shared_ptr<grpc::ServerCredentials>(std::make_shared<CoreServerCredentials>(creds));
}

}  // namespace bulwark::security
