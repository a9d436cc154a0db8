#pragma once
// Certificates for a local cluster: a self-signed CA and the node (and client)
// certificates it issues, ECDSA P-256, SHA-256, as PEM text. Used by
// `bulwark cluster up` and the tests; production brings its own PKI.
//
// The private keys are returned as PEM in ordinary strings: callers write them
// to 0600 files and drop them. Thread-safe (OpenSSL 3).

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bulwark::security {

constexpr int kDefaultCertificateDays = 825;

struct PemPair {
  std::string certificate;
  std::string private_key;
};

Result<PemPair> GenerateCa(std::string_view common_name, int days = kDefaultCertificateDays);

// A leaf certificate for both server and client authentication (nodes use it
// for mutual TLS with peers). `ip_sans` are IP addresses, `dns_sans` names.
Result<PemPair> IssueCertificate(const PemPair& ca, std::string_view common_name,
                                 const std::vector<std::string>& ip_sans, const std::vector<std::string>& dns_sans,
                                 int days = kDefaultCertificateDays);

}  // namespace bulwark::security
