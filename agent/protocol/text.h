// File: agent/protocol/text.h
// -----------------------------------------------------------------------------
//
// Text rules of the kiln agent protocol (PROTOCOL.md "Text and identifiers"): text fields
// are UTF-8 without NUL; identifiers (secret ids, job ids) are [A-Za-z0-9_.-]{1,128}.
//
// Example:
//
//   if (!IsValidUtf8(line)) line = SanitizeUtf8(line);   // before putting it in a Log
//   RETURN_IF_ERROR(CheckIdentifier("Secret.id", id));
#ifndef KILN_AGENT_PROTOCOL_TEXT_H_
#define KILN_AGENT_PROTOCOL_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kiln::agent {

// kMaxIdentifierLength: longest secret id / job id, in bytes.
inline constexpr size_t kMaxIdentifierLength = 128;

// IsValidUtf8(s): whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates U+D800..U+DFFF, nothing above U+10FFFF).
bool IsValidUtf8(absl::string_view s);

// SanitizeUtf8(s): `s` with each ill-formed byte replaced by U+FFFD and each NUL by U+FFFD;
// returns valid protocol text. Used by the agent on build output before it becomes a Log.
std::string SanitizeUtf8(absl::string_view s);

// CheckText(field, s): OK if `s` is valid UTF-8 without NUL bytes; else InvalidArgument
// "<field>: ..." naming the byte offset.
absl::Status CheckText(absl::string_view field, absl::string_view s);

// CheckIdentifier(field, s): OK if `s` matches [A-Za-z0-9_.-]{1,128} and is not "." or "..";
// else InvalidArgument naming the first bad byte.
absl::Status CheckIdentifier(absl::string_view field, absl::string_view s);

}  // namespace kiln::agent

#endif  // KILN_AGENT_PROTOCOL_TEXT_H_
