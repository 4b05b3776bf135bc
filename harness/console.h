// File: harness/console.h
// -----------------------------------------------------------------------------
//
// Parsing the guest serial console (docs/interfaces.md, "Console lines" and "Check lines")
// into pure data: the `KILN-INIT: ...` lines of kiln's init (ready, exit status/signal, fatal,
// warning, progress steps), the `KILN-CHECK <name> <value...>` lines of guest check programs,
// the kernel version, and signs that the guest kernel got stuck (soft lockup, panic).
//
// The serial log is kernel noise interleaved with our lines: a marker is recognized anywhere
// in a line (kernel output may precede it on the same line), "\r\n" line ends are accepted,
// malformed marker lines are counted (never fatal), and an unterminated last line (the guest
// may still be writing it) is ignored so that a half-written "status=1" of "status=12" is never
// read.
//
// Example:
//
//   ConsoleResult r = ParseConsole(serial_log_text);
//   if (r.HasEndMarker() && r.exit_status == 0) { ... r.Check("runc_exit") ... }
#ifndef KILN_HARNESS_CONSOLE_H_
#define KILN_HARNESS_CONSOLE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace kiln::harness {

// kInitPrefix, kCheckPrefix: the two markers of docs/interfaces.md.
inline constexpr absl::string_view kInitPrefix = "KILN-INIT: ";
inline constexpr absl::string_view kCheckPrefix = "KILN-CHECK ";

// InitProblem: a `fatal` or `warning` line: `<kind> step=<step> errno=<n> (<strerror>): <detail>`.
struct InitProblem {
  std::string step;
  int errnum = 0;
  std::string detail;  // the text after "): " (or after the fields, if there is no errno)
  std::string line;    // the whole marker line, from "KILN-INIT: "
};

// CheckLine: one `KILN-CHECK <name> <value...>` line. `value` may be empty or hold spaces.
struct CheckLine {
  std::string name;
  std::string value;
};

// ConsoleResult: everything the harness reads from one serial log. Pure data.
struct ConsoleResult {
  // kernel_version: from "Linux version <v> ..." (e.g. "6.1.0-57-cloud-amd64"); empty if absent.
  std::string kernel_version;
  // steps: the `step=` value of each progress line, in order.
  std::vector<std::string> steps;
  std::vector<InitProblem> warnings;
  std::optional<InitProblem> fatal;
  bool ready = false;
  std::optional<int64_t> ready_uptime_ms;
  // exit_status / exit_signal: from `exit status=<n>` / `exit signal=<n>`.
  std::optional<int> exit_status;
  std::optional<int> exit_signal;
  std::optional<int64_t> exit_uptime_ms;
  std::vector<CheckLine> checks;
  // soft_lockup / kernel_panic: the guest kernel hit "watchdog: BUG: soft lockup" /
  // "Kernel panic"; stuck_line is the first such line.
  bool soft_lockup = false;
  bool kernel_panic = false;
  std::string stuck_line;
  // malformed_lines: marker lines that did not parse (kept, for the failure message).
  std::vector<std::string> malformed_lines;

  // HasEndMarker(): init printed `exit` or `fatal` (after which it powers off).
  bool HasEndMarker() const { return exit_status || exit_signal || fatal; }
  // Stuck(): soft_lockup || kernel_panic.
  bool Stuck() const { return soft_lockup || kernel_panic; }
  // Check(name): the value of the last KILN-CHECK line named `name`; nullopt if none.
  std::optional<std::string> Check(absl::string_view name) const;
  // CheckAll(name): the values of every KILN-CHECK line named `name`, in order.
  std::vector<std::string> CheckAll(absl::string_view name) const;
};

// ParseConsole(log): parses a whole serial log (see the file comment). Never fails.
ConsoleResult ParseConsole(absl::string_view log);

// LogTail(log, max_lines): the last `max_lines` lines of `log` (for failure messages), with
// control characters other than '\n' and '\t' replaced by '?'.
std::string LogTail(absl::string_view log, int max_lines);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_CONSOLE_H_
