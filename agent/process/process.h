// File: agent/process/process.h
// -----------------------------------------------------------------------------
//
// Process: kiln's one executor for child processes, in the guest and on the host: the agent's
// runner (containerd, dockerd, the docker CLI) and Exec, the agent's prewarm and the vsock
// check, the harness's VMM backends (QEMU, Cloud Hypervisor) and tools, and the benchmarks.
// It is linkable into the static agent (no dependency but absl and //agent:child_signals).
//
// What every child gets:
//   - its own process group (setpgid; or its own session with new_session, setsid), so that
//     SignalGroup()/Kill() reach whatever it started too;
//   - default signal dispositions, an empty signal mask and oom_score_adj 0, whatever the
//     parent ignores, blocks or is protected by (agent/child_signals.h);
//   - each of stdin, stdout and stderr as /dev/null (the default), the parent's, a file
//     (truncated or appended), a pipe the caller reads or writes, a given parent fd, or (stderr)
//     the same as stdout;
//   - with die_with_parent (the default), PR_SET_PDEATHSIG(SIGKILL): it dies when the thread
//     that spawned it exits, so spawn long-lived children from a thread that lives as long;
//   - optionally: an exact environment, a working directory, a cgroup v2 `cgroup.procs` to
//     join, and credentials to drop to (setgroups(0), setresgid, setresuid) before exec.
// Failures before exec (open, chdir, cgroup, credentials, exec itself) come back from Spawn
// as a Status naming the step, through a close-on-exec pipe, never as a mysterious exit 127.
// Waiting is bounded by an absl::Time deadline; Kill(grace) signals the group (SIGTERM, grace,
// SIGKILL) and reaps; the destructor kills (after SpawnOptions::destroy_grace) a child that is
// still running, unless it was Release()d.
//
// Example:
//
//   ASSIGN_OR_RETURN(process::Process p,
//                    process::Process::Spawn({.argv = {"qemu-system-x86_64", ...},
//                                             .out = process::Stdio::File("/tmp/vm/qemu.log"),
//                                             .err = process::Stdio::SameAsStdout()}));
//   absl::StatusOr<process::ProcessExit> exit = p.Wait(absl::Now() + absl::Seconds(30));
//   if (!exit.ok()) p.Kill(absl::Seconds(2));   // group SIGTERM, 2 s grace, group SIGKILL
#ifndef KILN_AGENT_PROCESS_PROCESS_H_
#define KILN_AGENT_PROCESS_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::process {

// Stdio: where one of the child's standard streams (0, 1, 2) goes.
struct Stdio {
  enum class Kind {
    kNull,          // /dev/null
    kInherit,       // the parent's own stream
    kFile,          // `path`, opened by the parent (errors come from Spawn)
    kPipe,          // a pipe; the parent's end is Process::pipe_fd(n)
    kParentFd,      // the parent's `fd` (the parent keeps it open)
    kSameAsStdout,  // stderr only: the same open file as stdout
  };
  Kind kind = Kind::kNull;
  std::string path;     // kFile
  bool append = false;  // kFile: O_APPEND; else truncated
  mode_t mode = 0644;   // kFile: the mode of a file it creates
  int fd = -1;          // kParentFd

  static Stdio Null() { return {}; }
  static Stdio Inherit() { return {Kind::kInherit}; }
  static Stdio File(std::string path, bool append = false, mode_t mode = 0644) {
    return {Kind::kFile, std::move(path), append, mode};
  }
  static Stdio Pipe() { return {Kind::kPipe}; }
  static Stdio ParentFd(int fd) { return {Kind::kParentFd, "", false, 0644, fd}; }
  static Stdio SameAsStdout() { return {Kind::kSameAsStdout}; }
};

// Credentials: the ids a child drops to before exec.
struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
};

// SpawnOptions: what to run and how. Pure data.
struct SpawnOptions {
  // argv: argv[0] is the program: a path with a '/', or (search_path) a name looked up in PATH.
  std::vector<std::string> argv;
  // search_path: look a '/'-less argv[0] up in the parent's PATH (execvp). false: argv[0] must
  // be an absolute path (InvalidArgument otherwise), and PATH is never searched.
  bool search_path = true;
  // env: the complete environment ("KEY=VALUE"); unset: the parent's.
  std::optional<std::vector<std::string>> env;
  // cwd: the child's working directory ("" = the parent's).
  std::string cwd;
  Stdio in;                             // stdin
  Stdio out;                            // stdout
  Stdio err;                            // stderr
  // new_session: setsid() (a new session and process group) instead of setpgid(0, 0).
  bool new_session = false;
  // die_with_parent: PR_SET_PDEATHSIG(SIGKILL) in the child (it dies with the spawning thread).
  // false for a child that must be able to outlive this process (a kept builder VM's VMM),
  // or that the agent's children keep running across jobs.
  bool die_with_parent = true;
  // kill_group_on_exit: when Poll() sees the child exit, SIGKILL what is left of its group
  // before reaping (a VMM's helpers must not outlive it).
  bool kill_group_on_exit = false;
  // destroy_grace: the grace of the destructor's Kill() (ZeroDuration: SIGKILL at once).
  absl::Duration destroy_grace = absl::ZeroDuration();
  // cgroup_procs: if set, the child writes its own pid ("0") to this cgroup v2 `cgroup.procs`
  // file before it drops privileges (moving a process out of the root cgroup needs root).
  std::string cgroup_procs;
  // credentials: if set, the child calls setgroups(0) (no supplementary groups), setresgid and
  // setresuid to these ids before exec (the rootless daemon runs as uid/gid 1000).
  std::optional<Credentials> credentials;
};

// ProcessExit: how a child ended (from wait4).
struct ProcessExit {
  int wait_status = 0;  // raw, as wait4 gives it (WIFEXITED, ...)
  bool signaled = false;
  int exit_code = 0;  // valid if !signaled
  int signal = 0;     // valid if signaled
  // max_rss_bytes: the child's peak RSS (wait4 rusage ru_maxrss, KiB -> bytes).
  int64_t max_rss_bytes = 0;

  // Describe(): "exit status 1", "killed by signal 9".
  std::string Describe() const;
};

// DescribeWaitStatus(status): "exit status 1", "killed by signal 9" for a raw wait status.
std::string DescribeWaitStatus(int status);

// Process: a child process and its process group. Move-only; not thread-safe.
class Process {
 public:
  // Spawn(options): fork + exec. Errors: InvalidArgument for an empty argv, a relative argv[0]
  // without search_path, or kSameAsStdout on stdin/stdout; the errno-derived status naming the
  // step and its argument for what fails before exec: "open <file>", "pipe2", "fork",
  // "chdir <cwd>", "write <cgroup_procs>", "setgroups", "setresgid <gid>", "setresuid <uid>",
  // "exec <argv[0]>" (NotFound / PermissionDenied from exec's errno; with a cwd, "exec <argv[0]>
  // (cwd <cwd>)").
  static absl::StatusOr<Process> Spawn(const SpawnOptions& options);

  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // ~Process: Kill(destroy_grace) unless reaped or released; closes the pipes.
  ~Process();

  pid_t pid() const { return pid_; }

  // pipe_fd(n): the parent's end of stream n (0, 1, 2) when it is a kPipe (the write end for
  // stdin, the read end for stdout/stderr), else -1. Owned by this object.
  int pipe_fd(int n) const { return (n >= 0 && n < 3) ? pipes_[n] : -1; }
  // TakePipe(n): pipe_fd(n), now owned by the caller (this object forgets it).
  int TakePipe(int n);

  // Poll(): non-blocking; the ProcessExit once the child has exited (reaped now or before;
  // with kill_group_on_exit, what is left of its group gets SIGKILL first); nullopt while it
  // runs, and for a released child.
  std::optional<ProcessExit> Poll();

  // Wait(deadline): Poll() every 5 ms until the child exits (its ProcessExit) or `deadline`
  // passes (the time left is read once, at the call, and counted on CLOCK_MONOTONIC: a step
  // of the wall clock during the wait does not move it) (DeadlineExceeded "process <pid> (<argv[0]>) still running"; the child keeps
  // running). FailedPrecondition for a released child.
  absl::StatusOr<ProcessExit> Wait(absl::Time deadline);

  // SignalGroup(sig): sends `sig` to the child's process group (to the child alone if the
  // group cannot be signalled); a no-op once reaped or released.
  void SignalGroup(int sig);

  // Kill(grace): SIGTERM to the group, up to `grace` for the child to exit, then SIGKILL to the
  // group, then reap (no SIGTERM when grace is zero). Idempotent: returns the ProcessExit (the
  // same one on later calls); a released child is left alone (returns ProcessExit{}).
  ProcessExit Kill(absl::Duration grace);

  // Release(): forgets the child without signalling it: later Kill()/SignalGroup() and the
  // destructor leave it running. A child spawned with die_with_parent = false then outlives
  // this process. Idempotent.
  void Release() { released_ = true; }
  bool released() const { return released_; }

  // exit(): the ProcessExit once reaped.
  const std::optional<ProcessExit>& exit() const { return exit_; }

 private:
  Process() = default;
  void Close();

  pid_t pid_ = -1;
  std::string name_;  // argv[0], for messages
  int pipes_[3] = {-1, -1, -1};
  bool kill_group_on_exit_ = false;
  absl::Duration destroy_grace_ = absl::ZeroDuration();
  std::optional<ProcessExit> exit_;
  bool released_ = false;
};

}  // namespace kiln::process

#endif  // KILN_AGENT_PROCESS_PROCESS_H_
