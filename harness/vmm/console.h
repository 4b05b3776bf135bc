// File: harness/vmm/console.h
// -----------------------------------------------------------------------------
//
// Parsing the guest serial console (docs/interfaces.md, "Console lines" and "Check lines")
// into pure data: the `KILN-INIT: ...` lines of kiln's init (ready, exit status/signal, fatal,
// warning, progress steps), the `KILN-CHECK <name> <value...>` lines of guest check programs,
// the kernel version, signs that the guest kernel got stuck (soft lockup, panic), and the
// kernel's out-of-memory kills (`Out of memory: Killed process <pid> (<name>)`, `oom-kill:`).
//
// The serial log is kernel noise interleaved with our lines: a marker is recognized anywhere
// in a line (kernel output may precede it on the same line), "\r\n" line ends are accepted,
// malformed marker lines are counted (never fatal), and an unterminated last line (the guest
// may still be writing it) is ignored so that a half-written "status=1" of "status=12" is never
// read.
//
// A guest controls what it prints, so the parse is bounded: ConsoleParser takes the log in
// pieces, holds at most one partial line (lines longer than kMaxConsoleLineBytes are cut and
// counted), and keeps at most kMaxConsoleRecords entries per list. SerialLogFollower reads a
// growing serial log file from where it stopped (never the whole file at once) and keeps only
// its head and tail: its memory is bounded whatever the guest prints (see its comment).
//
// Example:
//
//   ConsoleResult r = ParseConsole(serial_log_text);
//   if (r.HasEndMarker() && r.exit_status == 0) { ... r.Check("runc_exit") ... }
//
//   SerialLogFollower f(vm.serial_log_path());
//   while (...) { (void)f.Poll(); if (f.console().GuestOutOfMemory()) ...; }
#ifndef KILN_HARNESS_CONSOLE_H_
#define KILN_HARNESS_CONSOLE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
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

// kMaxConsoleLineBytes: longer console lines are cut to this many bytes (the rest of the line
// is skipped) before they are parsed or stored.
inline constexpr size_t kMaxConsoleLineBytes = 4096;
// kMaxConsoleRecords: at most this many entries are kept in each list of ConsoleResult (steps,
// warnings, checks, malformed_lines, oom_kills); later ones are counted in dropped_records.
inline constexpr size_t kMaxConsoleRecords = 256;

// OomKill: one process the guest kernel's OOM killer killed (mm/oom_kill.c), from
//   `Out of memory: Killed process <pid> (<name>) total-vm:...`             (the VM's RAM)
//   `Memory cgroup out of memory: Killed process <pid> (<name>) ...`        (a cgroup's limit)
//   `oom-kill:constraint=...,task=<name>,pid=<pid>,uid=<uid>`               (the summary line)
//   `Out of memory and no killable processes...`                            (then a panic)
// The summary and the Killed line of one kill are merged into one OomKill.
struct OomKill {
  int pid = 0;          // 0 if the line has none
  std::string process;  // the killed task's name ("" for "no killable processes")
  bool memcg = false;   // a memory cgroup's limit was hit, not the VM's memory
  std::string line;     // the `Killed process` line (else the summary line), from the kernel
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
  // oom_kills: every OOM kill, in order (see OomKill).
  std::vector<OomKill> oom_kills;
  // malformed_lines: marker lines that did not parse (kept, for the failure message).
  std::vector<std::string> malformed_lines;
  // long_lines: lines cut at kMaxConsoleLineBytes; dropped_records: entries not kept because a
  // list was full (kMaxConsoleRecords).
  uint64_t long_lines = 0;
  uint64_t dropped_records = 0;

  // HasEndMarker(): init printed `exit` or `fatal` (after which it powers off).
  bool HasEndMarker() const { return exit_status || exit_signal || fatal; }
  // Stuck(): soft_lockup || kernel_panic.
  bool Stuck() const { return soft_lockup || kernel_panic; }
  // GuestOutOfMemory(): the OOM killer killed a process because the VM ran out of memory (an
  // OomKill with !memcg). A guest that then locks up or goes silent is out of memory, not
  // stuck: it would run out again on a retry.
  bool GuestOutOfMemory() const;
  // OomKilledProcesses(memcg): "containerd (pid 290), dockerd (pid 301)": the kills with that
  // memcg value, in order ("no killable process" for the kill that found none).
  std::string OomKilledProcesses(bool memcg = false) const;
  // Check(name): the value of the last KILN-CHECK line named `name`; nullopt if none.
  std::optional<std::string> Check(absl::string_view name) const;
  // CheckAll(name): the values of every KILN-CHECK line named `name`, in order.
  std::vector<std::string> CheckAll(absl::string_view name) const;
};

// ConsoleParser: parses a serial log given in pieces of any size, line by line (see the file
// comment). Memory: one partial line (<= kMaxConsoleLineBytes) plus the bounded
// ConsoleResult. Not thread-safe.
class ConsoleParser {
 public:
  // Feed(bytes): parses every line `bytes` completes; holds an unterminated last line.
  void Feed(absl::string_view bytes);
  // result(): what the complete lines so far say (an unterminated last line is not parsed).
  const ConsoleResult& result() const { return result_; }

 private:
  void Line(absl::string_view line);
  ConsoleResult result_;
  std::string partial_;     // the current line so far, at most kMaxConsoleLineBytes
  bool skipping_ = false;   // the current line was cut: skip to its newline
  bool last_is_oom_summary_ = false;  // the last OOM line was an `oom-kill:` summary
};

// ParseConsole(log): parses a whole serial log (see the file comment). Never fails.
ConsoleResult ParseConsole(absl::string_view log);

// GuestOomMessage(console, memory_mib, memory_flag): the report of a guest that ran out of
// memory: "guest out of memory (OOM killer killed containerd (pid 290)); the VM had 80 MiB;
// raise <memory_flag>" (a memory cgroup kill is named as such: "... a memory cgroup limit
// (killed <p>) ..."). "" if console.oom_kills is empty.
std::string GuestOomMessage(const ConsoleResult& console, int memory_mib,
                            absl::string_view memory_flag);

// SerialLogLimits: what a SerialLogFollower keeps in memory.
struct SerialLogLimits {
  size_t head_bytes = 2 << 20;        // the first bytes of the log, kept
  size_t tail_bytes = 2 << 20;        // the last bytes, kept
  size_t max_read_per_poll = 16 << 20;  // one Poll() reads at most this much (the rest later)
};

// SerialLogFollower: follows a guest serial log file as the VMM appends to it. Each Poll()
// reads only the bytes added since the last one (64 KiB at a time), feeds them to a
// ConsoleParser, and keeps the first limits.head_bytes and the last limits.tail_bytes of the
// text. Memory bound: head_bytes + 2 * tail_bytes + 64 KiB + the parser's
// (kMaxConsoleLineBytes + 5 * kMaxConsoleRecords * kMaxConsoleLineBytes = ~5 MiB worst case),
// whatever the log's size. Not thread-safe.
class SerialLogFollower {
 public:
  explicit SerialLogFollower(std::string path, SerialLogLimits limits = SerialLogLimits());

  // Poll(): reads what was appended since the last Poll (at most max_read_per_poll). A
  // missing file is not an error (the VMM may not have created it yet). Errors: errno-derived
  // codes for open/read failures other than ENOENT (naming the path).
  absl::Status Poll();
  // PollToEnd(): Poll() until a poll reads nothing (for a VM that has stopped writing).
  absl::Status PollToEnd();

  // console(): the parse of every complete line read so far.
  const ConsoleResult& console() const { return parser_.result(); }
  // bytes_read(): bytes of the log read so far.
  uint64_t bytes_read() const { return offset_; }
  // truncated(): the log is longer than head_bytes + tail_bytes: Text() has a gap.
  bool truncated() const { return offset_ > limits_.head_bytes + limits_.tail_bytes; }
  // Text(): the kept text: the whole log if !truncated(), else its head, a line
  // "[kiln: <n> bytes of the serial log not kept (host cap: first <h> + last <t> bytes)]"
  // and its tail.
  std::string Text() const;
  // Tail(max_lines): LogTail of the kept tail.
  std::string Tail(int max_lines) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  SerialLogLimits limits_;
  uint64_t offset_ = 0;
  std::string head_;
  std::string tail_;  // <= 2 * tail_bytes; its last tail_bytes are kept
  ConsoleParser parser_;
};

// LogTail(log, max_lines): the last `max_lines` lines of `log` (for failure messages), with
// control characters other than '\n' and '\t' replaced by '?'.
std::string LogTail(absl::string_view log, int max_lines);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_CONSOLE_H_
