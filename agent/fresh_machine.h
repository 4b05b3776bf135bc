// File: agent/fresh_machine.h
// -----------------------------------------------------------------------------
//
// Making a restored builder VM its own machine (issue 12, warm builders). Every VM restored
// from one snapshot starts with the same guest RAM: the same kernel CRNG state and the same
// wall clock (the one of the moment it was saved). Before a job the host runs, through the
// agent's Exec,
//
//   kiln-agent --fresh_machine      (stdin: FreshMachineInput's text)
//
// which (ApplyFreshMachine) sets CLOCK_REALTIME to the host's time, adds the host's seed bytes
// to the kernel's input pool (ioctl RNDADDENTROPY, credited as 8 bits per byte) and forces the
// CRNG to reseed from it (ioctl RNDRESEEDCRNG; Linux >= 4.17), so /dev/urandom and
// getrandom(2) diverge between restored VMs at once. (QEMU's vmgenid device would make the
// kernel reseed by itself, but kiln's guest kernel, Debian's cloud 6.1, is built without
// CONFIG_VIRT_DRIVERS, so there is no vmgenid driver to notice it.) Processes that keep their
// own PRNG state in memory (e.g. a Go runtime's) are not reseeded: the warm snapshot holds no
// job process, only the agent and the daemon.
//
// The input text (one "key=value" per line, in this order):
//
//   kiln-fresh-machine 1
//   unix_ns=<host CLOCK_REALTIME in ns, decimal>
//   seed=<32..512 bytes, lowercase hex>
//
// Example (host):
//   std::string in = FormatFreshMachineInput(absl::ToUnixNanos(absl::Now()), RandomBytes(64));
#ifndef KILN_AGENT_FRESH_MACHINE_H_
#define KILN_AGENT_FRESH_MACHINE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::agent {

// kFreshMachineFlag: the agent flag that runs ApplyFreshMachine on stdin and exits.
inline constexpr char kFreshMachineFlag[] = "--fresh_machine";
inline constexpr size_t kMinSeedBytes = 32;
inline constexpr size_t kMaxSeedBytes = 512;

// FreshMachineInput: what the host sends.
struct FreshMachineInput {
  int64_t unix_ns = 0;  // host wall clock, ns since the epoch
  std::string seed;     // raw bytes
};

// FormatFreshMachineInput(unix_ns, seed): the text above. Pure.
std::string FormatFreshMachineInput(int64_t unix_ns, absl::string_view seed);

// ParseFreshMachineInput(text): InvalidArgument naming the problem for anything but the text
// above (wrong header or version, a missing/extra/out-of-order key, a non-decimal or
// non-positive unix_ns, seed not lowercase hex or outside 32..512 bytes). Pure.
absl::StatusOr<FreshMachineInput> ParseFreshMachineInput(absl::string_view text);

// ProcessAgeNs(stat_text, boottime_ns, ticks_per_second): how long ago the process whose
// /proc/<pid>/stat is `stat_text` was started (its field 22, starttime, in clock ticks since
// boot) at CLOCK_BOOTTIME `boottime_ns`; InvalidArgument if the text does not parse. Pure.
// --fresh_machine adds its own age to the host's time: the agent forks it only after the
// whole request arrived, and a static binary's start under TCG takes ~0.2 s.
absl::StatusOr<int64_t> ProcessAgeNs(absl::string_view stat_text, int64_t boottime_ns,
                                     int64_t ticks_per_second);

// FreshMachineReport: what ApplyFreshMachine did.
struct FreshMachineReport {
  int64_t clock_step_ms = 0;  // new wall clock - old wall clock
  size_t seed_bytes = 0;
  bool reseeded = false;      // RNDRESEEDCRNG succeeded
};

// ApplyFreshMachine(input, late_ns, random_dev): executor (needs CAP_SYS_TIME and
// CAP_SYS_ADMIN: the agent is the guest's root). clock_settime(CLOCK_REALTIME) to
// input.unix_ns + late_ns (how long after the request arrived this runs), then RNDADDENTROPY and
// RNDRESEEDCRNG on `random_dev` (/dev/urandom). Errors: errno-derived, naming the step.
absl::StatusOr<FreshMachineReport> ApplyFreshMachine(const FreshMachineInput& input,
                                                     int64_t late_ns = 0,
                                                     const std::string& random_dev =
                                                         "/dev/urandom");

}  // namespace kiln::agent

#endif  // KILN_AGENT_FRESH_MACHINE_H_
