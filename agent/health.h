// File: agent/health.h
// -----------------------------------------------------------------------------
//
// Health: the Pong the agent sends for a Ping, read from /proc (PROTOCOL.md "Ping/Pong").
// Parsing is separated from reading, so tests feed text.
//
// Example:
//
//   ASSIGN_OR_RETURN(Pong pong, ReadHealth("/proc", ping.nonce));
#ifndef KILN_AGENT_HEALTH_H_
#define KILN_AGENT_HEALTH_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/protocol/messages.h"

namespace kiln::agent {

// ParseHealth(uptime, loadavg, meminfo, pong): fills pong's uptime_ms (from /proc/uptime's
// first field, seconds), load*_milli (/proc/loadavg's first three fields x 1000) and
// mem_total_bytes / mem_available_bytes (/proc/meminfo MemTotal / MemAvailable, kB x 1024).
// Errors: InvalidArgument naming the file and the field that does not parse.
absl::Status ParseHealth(absl::string_view uptime, absl::string_view loadavg,
                         absl::string_view meminfo, Pong* pong);

// ReadHealth(proc_root, nonce): reads <proc_root>/{uptime,loadavg,meminfo} and parses them.
// Errors: NotFound/PermissionDenied if a file cannot be read; ParseHealth's.
absl::StatusOr<Pong> ReadHealth(absl::string_view proc_root, uint64_t nonce);

}  // namespace kiln::agent

#endif  // KILN_AGENT_HEALTH_H_
