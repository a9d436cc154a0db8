#pragma once
// Server-side TLS for bulwarkd's ports: a minimum protocol version, client
// certificates as asked, and certificates that reload without a restart.
//
// gRPC 1.51 has no way to set a minimum TLS version on server credentials
// through its API: TlsCredentialsOptions gained set_min_tls_version only in a
// later release, and the C core's setter on SSL server credentials is
// internal (and, with a certificate fetcher, not consulted when the handshake
// factory is rebuilt). gRPC's own floor is TLS 1.2, so "1.2" needs nothing.
// For "1.3", RequireTls13ProcessWide() sets gRPC's documented
// GRPC_SSL_CIPHER_SUITES so that no TLS 1.2 cipher suite can be agreed: a
// client offering only TLS 1.2 fails the handshake, TLS 1.3 is unaffected.
// It is process-wide (both ports, and outgoing peer connections, which then
// speak TLS 1.3), which is what the setting means for a node.
// Certificates reload through the C core's certificate-config fetcher,
// consulted on every new handshake; MakeTlsServerCredentials builds the
// credentials through the C core and hands them to the C++ server builder.
// The TLS tests check the result with openssl s_client.
//
// Thread safety: the returned credentials are used by gRPC's threads; the
// reload check is serialized internally. Errors: InvalidArgument for
// unreadable or mismatched PEM at creation (a later reload that fails keeps
// the previous certificate and logs the error).

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <grpcpp/security/server_credentials.h>

#include "common/status.h"

namespace bulwark::security {

enum class TlsVersion { kTls12, kTls13 };

// "1.2" or "1.3"; InvalidArgument otherwise (TLS 1.0 and 1.1 are never
// offered: gRPC refuses them).
Result<TlsVersion> ParseTlsVersion(std::string_view text);
std::string_view TlsVersionName(TlsVersion version);

// How often, at most, the files are checked for a change (on a handshake).
constexpr std::chrono::milliseconds kTlsReloadCheckInterval{1000};

enum class ClientCertificates {
  kNone,      // never asked for
  kOptional,  // asked for; if sent, verified against the CA (client port: RBAC identities)
  kRequired,  // required and verified (the peer port: mutual TLS)
};

struct TlsServerConfig {
  // Either files (watched: a change to any of them is picked up on the next
  // handshake after kTlsReloadCheckInterval) ...
  std::string cert_file, key_file, ca_file;
  // ... or PEM text (fixed for the server's life). Files win when set.
  std::string cert_pem, key_pem, ca_pem;
  TlsVersion min_version = TlsVersion::kTls12;
  ClientCertificates client_certificates = ClientCertificates::kNone;
  std::string name;  // for logs: "client port", "peer port"
};

// Must run before this process builds any TLS credentials (client or
// server), and only in a process that wants TLS 1.3 everywhere.
void RequireTls13ProcessWide();

// FailedPrecondition if config.min_version is 1.3 and
// RequireTls13ProcessWide() did not run: never a silently weaker setting.
Result<std::shared_ptr<grpc::ServerCredentials>> MakeTlsServerCredentials(const TlsServerConfig& config);

}  // namespace bulwark::security
