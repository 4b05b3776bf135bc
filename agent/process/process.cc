// File: agent/process/process.cc
// kiln's only fork/exec/wait for child processes (see process.h).
#include "agent/process/process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/child_signals.h"
#include "third_party/absl_ext/monotonic_deadline.h"
#include "third_party/absl_ext/posix_error.h"

extern char** environ;

namespace kiln::process {
namespace {

// The child's steps before exec, as reported through the error pipe ({step, errno}).
enum : int {
  kStepStdio = 1,
  kStepDeathSignal,
  kStepCgroup,
  kStepSetgroups,
  kStepSetresgid,
  kStepSetresuid,
  kStepChdir,
  kStepExec,
};

ProcessExit ExitFrom(int status, const struct rusage& usage) {
  ProcessExit e;
  e.wait_status = status;
  if (WIFSIGNALED(status)) {
    e.signaled = true;
    e.signal = WTERMSIG(status);
  } else {
    e.exit_code = WEXITSTATUS(status);
  }
  e.max_rss_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  return e;
}

void CloseAll(std::vector<int>& fds) {
  for (int& fd : fds) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
}

// ResetSignalsInChild: between fork and exec (async-signal-safe calls only): every signal's
// disposition back to SIG_DFL and an empty mask (agent/child_signals.h), and oom_score_adj 0
// (the agent protects itself from the OOM killer with -1000; its children must not inherit
// that; raising one's own value needs no privilege, so this never fails where it matters).
void ResetSignalsInChild() {
  agent::ResetSignalStateForExec();
  const int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)!write(fd, "0", 1);
    close(fd);
  }
}

}  // namespace

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

std::string ProcessExit::Describe() const {
  return signaled ? absl::StrCat("killed by signal ", signal)
                  : absl::StrCat("exit status ", exit_code);
}

absl::StatusOr<Process> Process::Spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("Process::Spawn: empty argv");
  }
  const std::string& program = options.argv[0];
  if (!options.search_path && program[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("Process::Spawn: argv[0] must be an absolute path, got ", program));
  }
  if (options.in.kind == Stdio::Kind::kSameAsStdout ||
      options.out.kind == Stdio::Kind::kSameAsStdout) {
    return absl::InvalidArgumentError("Process::Spawn: SameAsStdout is for stderr only");
  }
  // Everything the child needs is prepared before fork (only async-signal-safe calls after).
  std::vector<char*> argv, envp;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  if (options.env) {
    for (const std::string& e : *options.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  char** const env = options.env ? envp.data() : environ;

  // child_fds[n]: what becomes fd n in the child (-1: leave it; -2: dup of stdout).
  // parent_fds[n]: the parent's pipe end. owned: every fd this call opened (closed on return).
  int child_fds[3] = {-1, -1, -1};
  int parent_fds[3] = {-1, -1, -1};
  std::vector<int> owned;
  auto fail_parent = [&](absl::Status s) {
    CloseAll(owned);
    for (int& fd : parent_fds) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
    return s;
  };
  const Stdio* streams[3] = {&options.in, &options.out, &options.err};
  int devnull = -1;
  for (int n = 0; n < 3; ++n) {
    const Stdio& s = *streams[n];
    switch (s.kind) {
      case Stdio::Kind::kNull:
        if (devnull < 0) {
          devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
          if (devnull < 0) return fail_parent(PosixError(errno, "open", "/dev/null"));
          owned.push_back(devnull);
        }
        child_fds[n] = devnull;
        break;
      case Stdio::Kind::kInherit:
        child_fds[n] = -1;
        break;
      case Stdio::Kind::kFile: {
        const int flags = n == 0 ? O_RDONLY
                                 : O_WRONLY | O_CREAT | (s.append ? O_APPEND : O_TRUNC);
        const int fd = open(s.path.c_str(), flags | O_CLOEXEC, s.mode);
        if (fd < 0) return fail_parent(PosixError(errno, "open", s.path));
        owned.push_back(fd);
        child_fds[n] = fd;
        break;
      }
      case Stdio::Kind::kPipe: {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) return fail_parent(PosixError(errno, "pipe2"));
        // stdin: the child reads p[0]; stdout/stderr: the child writes p[1].
        const int child_end = n == 0 ? p[0] : p[1];
        parent_fds[n] = n == 0 ? p[1] : p[0];
        owned.push_back(child_end);
        child_fds[n] = child_end;
        break;
      }
      case Stdio::Kind::kParentFd:
        if (s.fd < 0) {
          return fail_parent(absl::InvalidArgumentError("Process::Spawn: ParentFd(-1)"));
        }
        child_fds[n] = s.fd;
        break;
      case Stdio::Kind::kSameAsStdout:
        child_fds[n] = -2;
        break;
    }
  }
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return fail_parent(PosixError(errno, "pipe2"));
  const char* cgroup_procs = options.cgroup_procs.empty() ? nullptr : options.cgroup_procs.c_str();
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  const bool search = options.search_path && program.find('/') == std::string::npos;
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid == 0) {
    auto fail = [&](int step) {
      int report[2] = {step, errno};
      (void)!write(err_pipe[1], report, sizeof(report));
      _exit(127);
    };
    if (options.new_session) {
      setsid();
    } else {
      setpgid(0, 0);
    }
    if (options.die_with_parent) {
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(kStepDeathSignal);
      if (getppid() != parent) _exit(127);  // the parent died before prctl
    }
    // Move the sources out of 0..2 first, so that no dup2 below overwrites a later source.
    int src[3];
    for (int n = 0; n < 3; ++n) {
      src[n] = child_fds[n];
      if (src[n] >= 0 && src[n] <= 2) {
        src[n] = fcntl(src[n], F_DUPFD_CLOEXEC, 3);
        if (src[n] < 0) fail(kStepStdio);
      }
    }
    for (int n = 0; n < 3; ++n) {
      if (src[n] >= 0 && dup2(src[n], n) < 0) fail(kStepStdio);
    }
    if (src[2] == -2 && dup2(1, 2) < 0) fail(kStepStdio);
    ResetSignalsInChild();
    if (cgroup_procs != nullptr) {
      const int fd = open(cgroup_procs, O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, "0", 1) != 1) fail(kStepCgroup);
      close(fd);
    }
    if (options.credentials.has_value()) {
      if (setgroups(0, nullptr) != 0) fail(kStepSetgroups);
      const gid_t g = options.credentials->gid;
      const uid_t u = options.credentials->uid;
      if (setresgid(g, g, g) != 0) fail(kStepSetresgid);
      if (setresuid(u, u, u) != 0) fail(kStepSetresuid);
    }
    if (cwd != nullptr && chdir(cwd) != 0) fail(kStepChdir);
    if (search) {
      execvpe(argv[0], argv.data(), env);
    } else {
      execve(argv[0], argv.data(), env);
    }
    fail(kStepExec);
  }
  const int fork_errno = errno;
  close(err_pipe[1]);
  CloseAll(owned);  // the child's ends (the child has its copies)
  if (pid < 0) {
    close(err_pipe[0]);
    return fail_parent(PosixError(fork_errno, "fork", program));
  }
  // Also set the group from the parent side, so that SignalGroup works even before the child
  // has run (EACCES after exec, or ESRCH, are harmless). Not with new_session: setsid fails
  // in a process group leader.
  if (!options.new_session) setpgid(pid, pid);

  Process proc;
  proc.pid_ = pid;
  proc.name_ = program;
  for (int n = 0; n < 3; ++n) proc.pipes_[n] = parent_fds[n];
  proc.kill_group_on_exit_ = options.kill_group_on_exit;
  proc.destroy_grace_ = options.destroy_grace;

  int report[2] = {0, 0};
  ssize_t got;
  do {
    got = read(err_pipe[0], report, sizeof(report));
  } while (got < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (got != sizeof(report)) return proc;
  proc.Kill(absl::ZeroDuration());  // it has _exit()ed or is about to: reap it
  const int e = report[1];
  const std::string where = options.cwd.empty() ? program
                                                : absl::StrCat(program, " (cwd ", options.cwd, ")");
  switch (report[0]) {
    case kStepStdio:
      return PosixError(e, "dup2 stdio for", program);
    case kStepDeathSignal:
      return PosixError(e, "prctl PR_SET_PDEATHSIG for", program);
    case kStepCgroup:
      return PosixError(e, "write", options.cgroup_procs);
    case kStepSetgroups:
      return PosixError(e, "setgroups");
    case kStepSetresgid:
      return PosixError(e, "setresgid", absl::StrCat(options.credentials->gid));
    case kStepSetresuid:
      return PosixError(e, "setresuid", absl::StrCat(options.credentials->uid));
    case kStepChdir:
      return PosixError(e, "chdir", options.cwd);
    default:
      return PosixError(e, "exec", where);
  }
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      name_(std::move(other.name_)),
      kill_group_on_exit_(other.kill_group_on_exit_),
      destroy_grace_(other.destroy_grace_),
      exit_(std::exchange(other.exit_, std::nullopt)),
      released_(std::exchange(other.released_, false)) {
  for (int n = 0; n < 3; ++n) pipes_[n] = std::exchange(other.pipes_[n], -1);
}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    Close();
    pid_ = std::exchange(other.pid_, -1);
    name_ = std::move(other.name_);
    kill_group_on_exit_ = other.kill_group_on_exit_;
    destroy_grace_ = other.destroy_grace_;
    exit_ = std::exchange(other.exit_, std::nullopt);
    released_ = std::exchange(other.released_, false);
    for (int n = 0; n < 3; ++n) pipes_[n] = std::exchange(other.pipes_[n], -1);
  }
  return *this;
}

Process::~Process() { Close(); }

void Process::Close() {
  if (pid_ > 0 && !released_ && !exit_) Kill(destroy_grace_);
  for (int& fd : pipes_) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  pid_ = -1;
}

int Process::TakePipe(int n) {
  if (n < 0 || n > 2) return -1;
  return std::exchange(pipes_[n], -1);
}

std::optional<ProcessExit> Process::Poll() {
  if (exit_ || released_ || pid_ <= 0) return exit_;
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  // WNOWAIT: leave the leader a zombie so that its pid (= the group id) cannot be reused while
  // the rest of its group is killed.
  int r;
  do {
    r = waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT);
  } while (r != 0 && errno == EINTR);
  if (r != 0 || info.si_pid == 0) return std::nullopt;
  if (kill_group_on_exit_) kill(-pid_, SIGKILL);
  int status = 0;
  struct rusage usage;
  std::memset(&usage, 0, sizeof(usage));
  pid_t w;
  do {
    w = wait4(pid_, &status, 0, &usage);
  } while (w < 0 && errno == EINTR);
  exit_ = ExitFrom(status, usage);
  return exit_;
}

absl::StatusOr<ProcessExit> Process::Wait(absl::Time deadline) {
  if (released_ && !exit_) {
    return absl::FailedPreconditionError(absl::StrCat("process ", pid_, " was released"));
  }
  // Read the wall clock once: a step of it while we wait must not move the deadline.
  const MonotonicDeadline end = MonotonicDeadline::FromWallDeadline(deadline);
  while (true) {
    if (std::optional<ProcessExit> e = Poll()) return *e;
    if (end.Passed()) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " (", name_, ") still running"));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

void Process::SignalGroup(int sig) {
  if (exit_ || released_ || pid_ <= 0) return;
  if (kill(-pid_, sig) != 0) kill(pid_, sig);
}

ProcessExit Process::Kill(absl::Duration grace) {
  if (exit_) return *exit_;
  if (released_ || pid_ <= 0) return ProcessExit{};
  if (grace > absl::ZeroDuration()) {
    SignalGroup(SIGTERM);
    if (absl::StatusOr<ProcessExit> e = Wait(absl::Now() + grace); e.ok()) return *e;
  }
  SignalGroup(SIGKILL);
  while (true) {
    if (std::optional<ProcessExit> e = Poll()) return *e;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

}  // namespace kiln::process
