#pragma once
// Item sealing: XChaCha20-Poly1305 under a container's data key (DEK).
//
// Sealed format, version 1 (all integers little-endian):
//   [0]      format version (1)
//   [1..5)   DEK version that sealed it
//   [5..29)  random 192-bit nonce
//   [29..)   ciphertext followed by the 16-byte Poly1305 tag
// The associated data binds the format version, the DEK version, the
// container's internal id, the partition-key value and the item id, so a
// sealed value copied to another item, partition or container fails to open.
// Sealing happens once, at the writer; the sealed bytes then travel unchanged.
//
// Thread safety: pure functions; safe from any thread.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "crypto/secret.h"

namespace bulwark::crypto {

constexpr uint8_t kSealFormatV1 = 1;
constexpr size_t kDataKeyBytes = 32;
constexpr size_t kSealHeaderBytes = 1 + 4 + 24;
constexpr size_t kSealOverheadBytes = kSealHeaderBytes + 16;

// One version of a container's data key. Owned by the Keyring; shared with
// readers through shared_ptr<const DataKey> so a rotation never pulls a key
// from under an in-flight operation.
struct DataKey {
  uint32_t version = 0;
  SecretBytes key;  // kDataKeyBytes
  int64_t created_unix_s = 0;
};

// Where a sealed item lives. Views must outlive the call.
struct ItemAddress {
  std::string_view container_rid;
  std::string_view partition_key;  // canonical JSON of the value
  std::string_view item_id;
};

std::string SealItem(const DataKey& dek, const ItemAddress& address, std::string_view plaintext);

// The DEK version a sealed value names, so the caller can fetch that key.
// Corruption if the header is malformed or of an unknown format.
Result<uint32_t> SealedKeyVersion(std::string_view sealed);

// Corruption if any byte was changed, the address differs, or the key is wrong.
Result<std::string> OpenItem(const DataKey& dek, const ItemAddress& address, std::string_view sealed);

}  // namespace bulwark::crypto
