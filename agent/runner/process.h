// File: agent/runner/process.h
// -----------------------------------------------------------------------------
//
// Subprocess: the runner's one thin executor for child processes (containerd, dockerd, the
// docker CLI). fork + execve of an absolute path with an explicit environment (PATH is never
// searched for the program), stdin from /dev/null, stdout+stderr either appended to a log file
// or sent to a pipe the caller reads. Each child leads its own process group, so Kill()
// reaches its helpers too, and starts with default signal dispositions and an empty signal
// mask (ResetSignalsInChild), whatever the agent ignores or blocks. The destructor kills (SIGKILL) and reaps a child still running.
//
// Example:
//
//   ASSIGN_OR_RETURN(Subprocess p, Subprocess::Spawn({.argv = {"/usr/bin/true"}}));
//   ASSIGN_OR_RETURN(int status, p.Wait(absl::Now() + absl::Seconds(5)));
#ifndef KILN_AGENT_RUNNER_PROCESS_H_
#define KILN_AGENT_RUNNER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kiln::agent::runner {

// SpawnOptions: what to run.
struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is an absolute path
  std::vector<std::string> env;   // "KEY=VALUE", the complete environment
  std::string log_path;           // if set: stdout+stderr appended here
  bool pipe_output = false;       // if set (and no log_path): stdout+stderr to output_fd()
  // cgroup_procs: if set, the child writes its own pid ("0") to this cgroup v2 `cgroup.procs`
  // file before it drops privileges (moving a process out of the root cgroup needs root).
  std::string cgroup_procs;
  // credentials: if set, the child calls setgroups(0) (no supplementary groups), setresgid
  // and setresuid to these ids before execve (the rootless daemon runs as uid/gid 1000).
  struct Credentials {
    uid_t uid;
    gid_t gid;
  };
  std::optional<Credentials> credentials;
};

class Subprocess {
 public:
  // Spawn(options): starts the child. InvalidArgument for an empty/relative argv[0]; the
  // errno-derived status when the log file, pipe or fork fails; the errno-derived status
  // naming the step ("write <cgroup_procs>", "setgroups", "setresgid", "setresuid", "execve")
  // when the child fails before exec (reported back through a close-on-exec pipe).
  static absl::StatusOr<Subprocess> Spawn(const SpawnOptions& options);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  // output_fd(): read end of the output pipe (-1 unless pipe_output). Owned by this object.
  int output_fd() const { return out_fd_; }

  // TryWait(): the wait status if the child has exited (reaped now or before), else nullopt.
  std::optional<int> TryWait();
  // Wait(deadline): waits for exit; returns the raw wait status (see WEXITSTATUS), or
  // DeadlineExceeded (the child keeps running).
  absl::StatusOr<int> Wait(absl::Time deadline);
  // Signal(sig): sends `sig` to the child's process group (no-op once reaped).
  void Signal(int sig);
  // Stop(grace): SIGTERM, waits up to `grace`, then SIGKILL and reap. Returns the wait
  // status. Idempotent.
  int Stop(absl::Duration grace);

 private:
  Subprocess(pid_t pid, int out_fd) : pid_(pid), out_fd_(out_fd) {}
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::optional<int> status_;
};

// ResetSignalsInChild(): for a child between fork and exec (async-signal-safe calls only):
// every signal's disposition back to SIG_DFL (an ignored signal, e.g. the agent's SIG_IGN of
// SIGPIPE, would otherwise stay ignored across exec) and an empty signal mask. Also sets the
// child's /proc/self/oom_score_adj to 0: the agent protects itself from the OOM killer (-1000,
// so that it survives to report the OOM), its children must not inherit that.
void ResetSignalsInChild();

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

// MonotonicMicros(): CLOCK_MONOTONIC now, microseconds (the kernel log's clock).
int64_t MonotonicMicros();

// DescribeWaitStatus(status): "exit status 1", "killed by signal 9".
std::string DescribeWaitStatus(int status);

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_PROCESS_H_
