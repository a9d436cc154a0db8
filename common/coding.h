#pragma once
// Fixed-width and length-prefixed binary encodings, in the LevelDB manner.
// Little-endian for values; big-endian (PutBigEndian*) for keys that must sort
// numerically. Decoders consume from a string_view and return false on short
// or oversized input, never reading past the end. Pure; thread-safe.

#include <cstdint>
#include <string>
#include <string_view>

namespace bulwark {

inline void PutFixed32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutFixed64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutBigEndian32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutBigEndian64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutLengthPrefixed(std::string& out, std::string_view field) {
  PutFixed32(out, static_cast<uint32_t>(field.size()));
  out.append(field);
}

inline bool GetFixed32(std::string_view& in, uint32_t& v) {
  if (in.size() < 4) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << (8 * i);
  in.remove_prefix(4);
  return true;
}
inline bool GetFixed64(std::string_view& in, uint64_t& v) {
  if (in.size() < 8) return false;
  v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in[i])) << (8 * i);
  in.remove_prefix(8);
  return true;
}
inline bool GetBigEndian32(std::string_view& in, uint32_t& v) {
  if (in.size() < 4) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  in.remove_prefix(4);
  return true;
}
inline bool GetBigEndian64(std::string_view& in, uint64_t& v) {
  if (in.size() < 8) return false;
  v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  in.remove_prefix(8);
  return true;
}
// `max_bytes` bounds what a corrupt length may claim.
inline bool GetLengthPrefixed(std::string_view& in, std::string_view& field, size_t max_bytes) {
  uint32_t n = 0;
  if (!GetFixed32(in, n) || n > in.size() || n > max_bytes) return false;
  field = in.substr(0, n);
  in.remove_prefix(n);
  return true;
}

}  // namespace bulwark
