#include "security/certificates.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace bulwark::security {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

Status OpensslError(std::string_view what) { return Status::Internal("OpenSSL failed to " + std::string(what)); }

std::string BioString(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<std::string> KeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpensslError("encode a key");
  }
  return BioString(bio.get());
}

Result<std::string> CertPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return OpensslError("encode a certificate");
  return BioString(bio.get());
}

bool AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate with a fresh key, not yet signed. `issuer` null means self.
Result<X509Ptr> NewCertificate(EVP_PKEY* key, std::string_view cn, int days) {
  X509Ptr cert(X509_new());
  if (!cert) return OpensslError("allocate a certificate");
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;  // a positive serial number
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  ASN1_INTEGER* asn = BN_to_ASN1_INTEGER(bn, nullptr);
  const bool ok = X509_set_version(cert.get(), 2) == 1 && X509_set_serialNumber(cert.get(), asn) == 1 &&
                  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
                  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * days) != nullptr &&
                  X509_set_pubkey(cert.get(), key) == 1;
  ASN1_INTEGER_free(asn);
  BN_free(bn);
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!ok || X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Bulwark"),
                                        -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(std::string(cn).c_str()),
                                 -1, -1, 0) != 1) {
    return OpensslError("fill a certificate");
  }
  return cert;
}

Result<PkeyPtr> ParseKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return Status::InvalidArgument("the CA private key is not valid PEM");
  return key;
}

Result<X509Ptr> ParseCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return Status::InvalidArgument("the CA certificate is not valid PEM");
  return cert;
}

}  // namespace

Result<PemPair> GenerateCa(std::string_view common_name, int days) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return OpensslError("generate a key");
  BULWARK_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), common_name, days));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  if (!AddExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !AddExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash") ||
      X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return OpensslError("sign the CA certificate");
  }
  BULWARK_ASSIGN_OR_RETURN(std::string cert_pem, CertPem(cert.get()));
  BULWARK_ASSIGN_OR_RETURN(std::string key_pem, KeyPem(key.get()));
  return PemPair{std::move(cert_pem), std::move(key_pem)};
}

Result<PemPair> IssueCertificate(const PemPair& ca, std::string_view common_name,
                                 const std::vector<std::string>& ip_sans, const std::vector<std::string>& dns_sans,
                                 int days) {
  BULWARK_ASSIGN_OR_RETURN(PkeyPtr ca_key, ParseKey(ca.private_key));
  BULWARK_ASSIGN_OR_RETURN(X509Ptr ca_cert, ParseCert(ca.certificate));
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return OpensslError("generate a key");
  BULWARK_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.get(), common_name, days));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  std::string san;
  for (const auto& ip : ip_sans) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  for (const auto& dns : dns_sans) san += (san.empty() ? "" : ",") + std::string("DNS:") + dns;
  if (!AddExtension(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExtension(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature,keyAgreement") ||
      !AddExtension(cert.get(), ca_cert.get(), NID_ext_key_usage, "serverAuth,clientAuth") ||
      (!san.empty() && !AddExtension(cert.get(), ca_cert.get(), NID_subject_alt_name, san)) ||
      X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) {
    return OpensslError("issue a certificate");
  }
  BULWARK_ASSIGN_OR_RETURN(std::string cert_pem, CertPem(cert.get()));
  BULWARK_ASSIGN_OR_RETURN(std::string key_pem, KeyPem(key.get()));
  return PemPair{std::move(cert_pem), std::move(key_pem)};
}

}  // namespace bulwark::security
