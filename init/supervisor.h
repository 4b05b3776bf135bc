// File: init/supervisor.h
// -----------------------------------------------------------------------------
//
// The supervisor of kiln's init (PID 1): starts the program (kiln.exec) and waits for it,
// reaping every child that ends meanwhile (including orphans reparented to PID 1),
// forwarding SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2/SIGWINCH/SIGPWR to the program, and
// enforcing kiln.deadline_ms (SIGTERM at the deadline, SIGKILL `term_grace_ms` later). When
// the program has ended, KillRemaining ends everything else in bounded time.
//
// All process and signal calls go through Sys, so the loop runs against a scripted fake in
// unit tests and against LinuxSys (as a child subreaper) in supervisor_process_test.
//
// Example (init/main.cc):
//
//   RETURN_IF_ERROR(sys.BlockSignals());                    // before any fork
//   console.Ready(sys.BoottimeMs());
//   ASSIGN_OR_RETURN(ProgramExit done, Supervise(sys, console, SpawnSpecFor(config),
//                                                SuperviseOptions{config.deadline_ms}));
//   console.Exit(done.wait_status, sys.BoottimeMs());
//   KillRemaining(sys, console, 1000);
#ifndef KILN_INIT_SUPERVISOR_H_
#define KILN_INIT_SUPERVISOR_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "init/config.h"
#include "init/console.h"
#include "init/syscalls.h"

namespace kiln::init {

// kDefaultPath: PATH of the program's environment.
inline constexpr absl::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// SpawnSpecFor: the SpawnSpec of `config.exec`: argv = config.exec, uid/gid from the config,
// env = {PATH=kDefaultPath, HOME=/root (uid 0) or / (other uids), TERM=linux}, stdio on
// /dev/console, cwd "/".
SpawnSpec SpawnSpecFor(const Config& config);

// SuperviseOptions: bounds of Supervise.
struct SuperviseOptions {
  uint64_t deadline_ms = 0;     // 0: none; else SIGTERM the program this many ms after start
  int64_t term_grace_ms = 2000; // after the deadline's SIGTERM, SIGKILL this many ms later
};

// ProgramExit: how the program ended.
struct ProgramExit {
  int wait_status = 0;         // as from waitpid: WIFEXITED/WEXITSTATUS, WIFSIGNALED/WTERMSIG
  bool deadline_hit = false;   // init signalled it because kiln.deadline_ms passed
};

// IsForwardedSignal: whether init forwards `sig` to the program (every handled signal but
// SIGCHLD).
bool IsForwardedSignal(int sig);

// Supervise: spawns `spec` and runs the wait loop above until the program has been reaped.
// Returns its ProgramExit; the PosixError of Spawn (the exec failed: nothing runs); or
// INTERNAL if init has no children left without having seen the program end.
// REQUIRES: sys.BlockSignals() succeeded (else SIGCHLD can be lost).
absl::StatusOr<ProgramExit> Supervise(Sys& sys, Console& console, const SpawnSpec& spec,
                                      const SuperviseOptions& options);

// KillRemaining: sends SIGTERM to every other process, reaps until none is left or
// `grace_ms` passed, then SIGKILL and reaps for up to another `grace_ms`. Returns the number
// of processes reaped. Never blocks longer than about 2 * grace_ms.
int KillRemaining(Sys& sys, Console& console, int64_t grace_ms);

}  // namespace kiln::init

#endif  // KILN_INIT_SUPERVISOR_H_
