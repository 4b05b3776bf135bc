// File: init/console.h
// -----------------------------------------------------------------------------
//
// The console lines of kiln's init (docs/interfaces.md "Console lines"): one line each, prefix
// "KILN-INIT: ", machine-parseable key=value fields. The Format* functions are pure (unit
// tested); `Console` writes them through Sys::WriteConsole.
//
//   KILN-INIT: step=<step> ...                                        progress
//   KILN-INIT: warning step=<step> errno=<n> (<strerror>): <detail>   non-fatal
//   KILN-INIT: ready uptime_ms=<ms>                                   about to exec the program
//   KILN-INIT: exit status=<n> uptime_ms=<ms>                         program exited with n
//   KILN-INIT: exit signal=<n> uptime_ms=<ms>                         program killed by signal n
//   KILN-INIT: fatal step=<step> errno=<n> (<strerror>): <detail>     then power off
//
// Example:
//
//   Console console(sys);
//   console.Ready(sys.BoottimeMs());        // "KILN-INIT: ready uptime_ms=812\n"
//   console.Fatal("root", status);          // errno and detail taken from a PosixError status
#ifndef KILN_INIT_CONSOLE_H_
#define KILN_INIT_CONSOLE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "init/syscalls.h"

namespace kiln::init {

// kConsolePrefix: the prefix of every line init prints.
inline constexpr absl::string_view kConsolePrefix = "KILN-INIT: ";

// ErrnoOf: the errno of a kiln::PosixError status (its "[errno N]" suffix), or 0 if `status`
// carries none (e.g. a config error, or OK).
int ErrnoOf(const absl::Status& status);

// DetailOf: the message of `status` without the "[errno N]" suffix PosixError appends.
std::string DetailOf(const absl::Status& status);

// FormatStep: "KILN-INIT: step=<step> <fields>\n" (no trailing space if `fields` is empty).
std::string FormatStep(absl::string_view step, absl::string_view fields);

// FormatWarning / FormatFatal: "KILN-INIT: warning|fatal step=<step> errno=<n> (<strerror>):
// <detail>\n" with n = ErrnoOf(status) and detail = DetailOf(status). Newlines in the detail
// become spaces so that the record stays one line.
std::string FormatWarning(absl::string_view step, const absl::Status& status);
std::string FormatFatal(absl::string_view step, const absl::Status& status);

// FormatReady: "KILN-INIT: ready uptime_ms=<ms>\n".
std::string FormatReady(int64_t uptime_ms);

// FormatExit: "KILN-INIT: exit status=<n> uptime_ms=<ms>\n" if `wait_status` (as from
// waitpid) says the program exited, "KILN-INIT: exit signal=<n> uptime_ms=<ms>\n" if a
// signal killed it.
std::string FormatExit(int wait_status, int64_t uptime_ms);

// Console: writes the lines above to the console through `sys`.
class Console {
 public:
  explicit Console(Sys& sys) : sys_(sys) {}
  void Step(absl::string_view step, absl::string_view fields) {
    sys_.WriteConsole(FormatStep(step, fields));
  }
  void Warning(absl::string_view step, const absl::Status& s) {
    sys_.WriteConsole(FormatWarning(step, s));
  }
  void Fatal(absl::string_view step, const absl::Status& s) {
    sys_.WriteConsole(FormatFatal(step, s));
  }
  void Ready(int64_t uptime_ms) { sys_.WriteConsole(FormatReady(uptime_ms)); }
  void Exit(int wait_status, int64_t uptime_ms) {
    sys_.WriteConsole(FormatExit(wait_status, uptime_ms));
  }

 private:
  Sys& sys_;
};

}  // namespace kiln::init

#endif  // KILN_INIT_CONSOLE_H_
