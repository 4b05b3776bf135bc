// File: agent/protocol/crc32c.h
// -----------------------------------------------------------------------------
//
// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the checksum of every
// kiln agent protocol frame (agent/PROTOCOL.md "Frame layout"). Uses the SSE4.2 `crc32`
// instruction where the CPU has it (checked once at run time), else a slicing-by-8 table.
//
// Example:
//
//   uint32_t crc = kiln::agent::Crc32c("123456789");        // 0xE3069283
//   crc = kiln::agent::Crc32cExtend(crc, more_bytes);         // continue over more data
#ifndef KILN_AGENT_PROTOCOL_CRC32C_H_
#define KILN_AGENT_PROTOCOL_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace kiln::agent {

// Crc32cExtend(crc, data): the CRC-32C of (the bytes whose CRC-32C is `crc`) followed by
// `data`. Crc32cExtend(0, data) == Crc32c(data).
uint32_t Crc32cExtend(uint32_t crc, absl::string_view data);

// Crc32c(data): the CRC-32C of `data` (standard init/xor-out 0xFFFFFFFF; "123456789" ->
// 0xE3069283, as in RFC 3720 B.4).
inline uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data); }

}  // namespace kiln::agent

#endif  // KILN_AGENT_PROTOCOL_CRC32C_H_
