// File: harness/process.h
// -----------------------------------------------------------------------------
//
// Process: the harness's one executor for child processes (the VMM). A child runs in its own
// process group, with PR_SET_PDEATHSIG(SIGKILL) so that it dies if the harness dies, with
// stdout and stderr to a file. Waiting is bounded; killing signals the whole group and reaps;
// the destructor kills. Exec failures come back as a Status from Spawn (CLOEXEC pipe), not
// as a mysterious exit code.
//
// Example:
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Process> p,
//                    Process::Spawn({.argv = {"qemu-system-x86_64", ...},
//                                    .output_path = "/tmp/vm/qemu.log"}));
//   absl::StatusOr<ProcessExit> exit = p->Wait(absl::Seconds(30));
//   if (!exit.ok()) p->Kill(absl::Seconds(2));   // group SIGTERM, 2 s grace, group SIGKILL
//
// Note: PR_SET_PDEATHSIG fires when the *thread* that spawned the child exits; spawn VMs from a
// thread that lives as long as they do (the main thread, in tests and //harness:verify).
#ifndef KILN_HARNESS_PROCESS_H_
#define KILN_HARNESS_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::harness {

// SpawnOptions: what to run. argv[0] is looked up in PATH if it has no '/'.
struct SpawnOptions {
  std::vector<std::string> argv;
  // output_path: file (created/truncated, 0644) for the child's stdout and stderr; empty:
  // /dev/null. stdin is always /dev/null.
  std::string output_path;
  // die_with_parent: PR_SET_PDEATHSIG(SIGKILL) in the child (it dies with the spawning
  // thread). false for a VMM that must be able to outlive the harness (a kept builder VM,
  // VmConfig::detachable); such a child is only cleaned up by Kill() or by whoever adopts it.
  bool die_with_parent = true;
};

// ProcessExit: how a child ended (from wait4).
struct ProcessExit {
  bool signaled = false;
  int exit_code = 0;  // valid if !signaled
  int signal = 0;     // valid if signaled
  // max_rss_bytes: the child's peak RSS (wait4 rusage ru_maxrss, KiB -> bytes).
  int64_t max_rss_bytes = 0;
};

// Process: a running child process and its process group. Not thread-safe.
class Process {
 public:
  // Spawn(options): fork + exec. InvalidArgument for an empty argv; NotFound /
  // PermissionDenied (from exec's errno) if the program cannot be executed; errno codes for
  // fork/pipe/open failures.
  static absl::StatusOr<std::unique_ptr<Process>> Spawn(const SpawnOptions& options);

  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }

  // Poll(): non-blocking; if the child has exited, kills what is left of its process group,
  // reaps it, and returns its ProcessExit; nullopt while it runs.
  std::optional<ProcessExit> Poll();

  // Wait(timeout): Poll() every 10 ms until the child exits (returns its ProcessExit) or
  // `timeout` passes (DeadlineExceeded; the child keeps running).
  absl::StatusOr<ProcessExit> Wait(absl::Duration timeout);

  // SignalGroup(sig): sends `sig` to the child's process group while it is not reaped.
  void SignalGroup(int sig);

  // Kill(grace): SIGTERM to the group, up to `grace` for it to exit, then SIGKILL to the
  // group, then reap. Idempotent; returns the ProcessExit (the same one on later calls).
  ProcessExit Kill(absl::Duration grace);

  // Release(): forgets the child without signalling it: later Kill()/SignalGroup() and the
  // destructor leave it running, Poll() returns nullopt (or the exit already seen). For a
  // child spawned with die_with_parent = false, it then outlives this process. Idempotent.
  void Release() { released_ = true; }
  bool released() const { return released_; }

  // exit(): the ProcessExit once reaped.
  const std::optional<ProcessExit>& exit() const { return exit_; }

 private:
  explicit Process(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  std::optional<ProcessExit> exit_;
  bool released_ = false;
};

}  // namespace kiln::harness

#endif  // KILN_HARNESS_PROCESS_H_
