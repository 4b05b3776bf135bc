// File: harness/process.cc
// The only file of the harness with fork/exec/wait/kill.
#include "harness/process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "agent/child_signals.h"
#include "absl/time/clock.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::harness {
namespace {

ProcessExit ExitFrom(int status, const struct rusage& usage) {
  ProcessExit e;
  if (WIFSIGNALED(status)) {
    e.signaled = true;
    e.signal = WTERMSIG(status);
  } else {
    e.exit_code = WEXITSTATUS(status);
  }
  e.max_rss_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  return e;
}

// Child side after fork: only async-signal-safe calls. Reports exec's errno on `err_fd`.
[[noreturn]] void ExecChild(char* const* argv, const char* output, int err_fd, pid_t parent,
                            bool die_with_parent) {
  setpgid(0, 0);
  if (die_with_parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
  }
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int out = output[0] ? open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                      : open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) {
    int e = errno;
    (void)!write(err_fd, &e, sizeof(e));
    _exit(127);
  }
  agent::ResetSignalStateForExec();  // an ignored SIGPIPE/SIGINT/SIGHUP survives exec
  execvp(argv[0], argv);
  int e = errno;
  (void)!write(err_fd, &e, sizeof(e));
  _exit(127);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Process>> Process::Spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("Process::Spawn: empty argv");
  }
  std::vector<char*> argv;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return PosixError(errno, "pipe2");
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return PosixError(e, "fork", options.argv[0]);
  }
  if (pid == 0) {
    close(pipe_fds[0]);
    ExecChild(argv.data(), options.output_path.c_str(), pipe_fds[1], parent,
              options.die_with_parent);
  }
  close(pipe_fds[1]);
  // Also set the group from the parent side, so that SignalGroup works even before the child
  // has run (EACCES after exec, or ESRCH, are harmless).
  setpgid(pid, pid);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(pipe_fds[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(pipe_fds[0]);
  auto process = std::unique_ptr<Process>(new Process(pid));
  if (n == sizeof(child_errno)) {
    process->Kill(absl::ZeroDuration());
    return PosixError(child_errno, "exec", options.argv[0]);
  }
  return process;
}

Process::~Process() {
  if (!released_) Kill(absl::Seconds(2));
}

std::optional<ProcessExit> Process::Poll() {
  if (exit_ || released_) return exit_;
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  // WNOWAIT: leave the leader a zombie so that its pid (= the group id) cannot be reused while
  // we kill the rest of its group.
  if (waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
    return std::nullopt;
  }
  kill(-pid_, SIGKILL);
  int status = 0;
  struct rusage usage;
  std::memset(&usage, 0, sizeof(usage));
  pid_t r;
  do {
    r = wait4(pid_, &status, 0, &usage);
  } while (r < 0 && errno == EINTR);
  exit_ = ExitFrom(status, usage);
  return exit_;
}

absl::StatusOr<ProcessExit> Process::Wait(absl::Duration timeout) {
  if (released_ && !exit_) {
    return absl::FailedPreconditionError(absl::StrCat("process ", pid_, " was released"));
  }
  absl::Time end = absl::Now() + timeout;
  while (true) {
    if (std::optional<ProcessExit> e = Poll()) return *e;
    if (absl::Now() >= end) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " still running after ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

void Process::SignalGroup(int sig) {
  if (!exit_ && !released_) kill(-pid_, sig);
}

ProcessExit Process::Kill(absl::Duration grace) {
  if (exit_) return *exit_;
  if (released_) return ProcessExit{};
  if (grace > absl::ZeroDuration()) {
    SignalGroup(SIGTERM);
    if (absl::StatusOr<ProcessExit> e = Wait(grace); e.ok()) return *e;
  }
  SignalGroup(SIGKILL);
  while (true) {
    if (std::optional<ProcessExit> e = Poll()) return *e;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

}  // namespace kiln::harness
