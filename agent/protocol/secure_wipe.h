// File: agent/protocol/secure_wipe.h
// -----------------------------------------------------------------------------
//
// SecureWipe: overwrites bytes that held a secret with zeros before the memory is freed or
// reused, with glibc's explicit_bzero (a call the compiler may not remove as a dead store,
// unlike memset before free). Used for the agent's copies of build secret values: the frame
// decoder's buffer, the decoded Secret message, the session's and the runner's maps.
//
// Example:
//
//   std::string value = ...;
//   ... use it ...
//   SecureWipe(value);  // value is now empty; its old bytes are zero
#ifndef KILN_AGENT_PROTOCOL_SECURE_WIPE_H_
#define KILN_AGENT_PROTOCOL_SECURE_WIPE_H_

#include <string.h>

#include <cstddef>
#include <map>
#include <string>

namespace kiln::agent {

// SecureWipe(data, size): zeroes [data, data + size). A null `data` with size 0 is allowed.
inline void SecureWipe(void* data, size_t size) {
  if (size > 0) explicit_bzero(data, size);
}

// SecureWipe(s): zeroes every byte of s's buffer (its whole capacity: bytes past size() may
// hold an older, longer value), then clears s (its capacity is kept, not freed).
inline void SecureWipe(std::string& s) {
  s.resize(s.capacity());
  SecureWipe(s.data(), s.size());
  s.clear();
}

// SecureWipe(map): SecureWipe of every value, then the map is cleared.
inline void SecureWipe(std::map<std::string, std::string>& m) {
  for (auto& [key, value] : m) SecureWipe(value);
  m.clear();
}

}  // namespace kiln::agent

#endif  // KILN_AGENT_PROTOCOL_SECURE_WIPE_H_
