// File: agent/protocol/internal/endian.h
// Big-endian (network order) loads and stores for the frame header and message fields.
// Internal to //agent:protocol.
#ifndef KILN_AGENT_PROTOCOL_INTERNAL_ENDIAN_H_
#define KILN_AGENT_PROTOCOL_INTERNAL_ENDIAN_H_

#include <cstdint>

namespace kiln::agent::internal {

inline void PutU16(char* p, uint16_t v) {
  p[0] = static_cast<char>(v >> 8);
  p[1] = static_cast<char>(v);
}
inline void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (24 - 8 * i));
}
inline void PutU64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (56 - 8 * i));
}
inline uint16_t GetU16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>((u[0] << 8) | u[1]);
}
inline uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}
inline uint64_t GetU64(const char* p) {
  return (uint64_t{GetU32(p)} << 32) | GetU32(p + 4);
}

}  // namespace kiln::agent::internal

#endif  // KILN_AGENT_PROTOCOL_INTERNAL_ENDIAN_H_
