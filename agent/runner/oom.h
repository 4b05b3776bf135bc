// File: agent/runner/oom.h
// -----------------------------------------------------------------------------
//
// What the runner says when the kernel's OOM killer ended a build: the OOM kills recorded in
// the kernel log (/dev/kmsg) since the build started, and the guest's memory, so that a build
// killed by signal 9 says "give the builder VM more memory" instead of nothing.
//
// Example:
//
//   const int64_t start_us = MonotonicMicros();  // third_party/absl_ext/monotonic_deadline.h
//   ... the build fails ...
//   std::string oom = OomReport(start_us);   // "" when the OOM killer killed nothing since
#ifndef KILN_AGENT_RUNNER_OOM_H_
#define KILN_AGENT_RUNNER_OOM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::agent::runner {

// OomKill: one kill by the kernel's OOM killer, as the kernel log records it ("Out of memory:
// Killed process 1234 (dockerd) total-vm:...", also "Memory cgroup out of memory: ...").
struct OomKill {
  int64_t time_us = 0;  // the record's timestamp: CLOCK_MONOTONIC, microseconds
  int pid = 0;
  std::string name;     // the process's comm, e.g. "dockerd"
};

// ParseOomKills(kmsg): the OOM kills in /dev/kmsg records, one per line,
// "<prio>,<seq>,<usec>,<flags>;<text>" (continuation lines, which start with a space, are
// skipped), each pid once. Pure.
std::vector<OomKill> ParseOomKills(absl::string_view kmsg);

// ReadKernelLog(path): every record the kernel log buffer holds now, one per line (reads
// /dev/kmsg without blocking). The errno-derived status when it cannot be opened or read.
absl::StatusOr<std::string> ReadKernelLog(const std::string& path = "/dev/kmsg");

// MemTotalMiB(meminfo_path): MemTotal of /proc/meminfo, MiB; -1 when unreadable.
int64_t MemTotalMiB(const std::string& meminfo_path = "/proc/meminfo");

// OomReport(since_us, kmsg_path, meminfo_path): what to add to the error of a build that
// failed after CLOCK_MONOTONIC microsecond `since_us`: "" when the kernel log holds no OOM
// kill since then; else "the kernel's OOM killer killed dockerd (pid 12), runc (pid 40) --
// the guest has 80 MiB of memory; give the builder VM more". When the kernel log cannot be
// read: "" (the caller may still say "killed by signal 9", see OomHint).
std::string OomReport(int64_t since_us, const std::string& kmsg_path = "/dev/kmsg",
                      const std::string& meminfo_path = "/proc/meminfo");

// OomHint(meminfo_path): for a daemon killed by SIGKILL that nobody in the runner sent, when
// OomReport found nothing: "likely the kernel's OOM killer: the guest has N MiB of memory".
std::string OomHint(const std::string& meminfo_path = "/proc/meminfo");

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_OOM_H_
