#include "agent/runner/process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <grp.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/child_signals.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {
namespace {
// The child's steps before exec, as reported through the error pipe.
enum : int { kStepCgroup = 1, kStepSetgroups, kStepSetresgid, kStepSetresuid, kStepExecve };
}  // namespace

absl::StatusOr<Subprocess> Subprocess::Spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty() || options.argv[0][0] != '/') {
    return absl::InvalidArgumentError("Spawn: argv[0] must be an absolute path");
  }
  // Everything the child needs is prepared before fork (only async-signal-safe calls after).
  std::vector<char*> argv, envp;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : options.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return PosixError(errno, "open", "/dev/null");
  int out_w = -1, out_r = -1;
  if (!options.log_path.empty()) {
    out_w = open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (out_w < 0) {
      int e = errno;
      close(devnull);
      return PosixError(e, "open", options.log_path);
    }
  } else if (options.pipe_output) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
      int e = errno;
      close(devnull);
      return PosixError(e, "pipe2");
    }
    out_r = p[0];
    out_w = p[1];
  }
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    close(devnull);
    if (out_w >= 0) close(out_w);
    if (out_r >= 0) close(out_r);
    return PosixError(e, "pipe2");
  }
  const char* cgroup_procs =
      options.cgroup_procs.empty() ? nullptr : options.cgroup_procs.c_str();
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    ResetSignalsInChild();
    dup2(devnull, 0);
    if (out_w >= 0) {
      dup2(out_w, 1);
      dup2(out_w, 2);
    }
    // Each failure before exec reports {step, errno} to the parent.
    auto fail = [&](int step) {
      int report[2] = {step, errno};
      (void)!write(err_pipe[1], report, sizeof(report));
      _exit(127);
    };
    if (cgroup_procs != nullptr) {
      int fd = open(cgroup_procs, O_WRONLY | O_CLOEXEC);
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
    execve(argv[0], argv.data(), envp.data());
    fail(kStepExecve);
  }
  int fork_errno = errno;
  close(devnull);
  close(err_pipe[1]);
  if (out_w >= 0) close(out_w);
  if (pid < 0) {
    close(err_pipe[0]);
    if (out_r >= 0) close(out_r);
    return PosixError(fork_errno, "fork");
  }
  Subprocess proc(pid, out_r);
  int report[2] = {0, 0};
  ssize_t n;
  do {
    n = read(err_pipe[0], report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (n == sizeof(report)) {
    proc.Wait(absl::InfiniteFuture()).IgnoreError();
    switch (report[0]) {
      case kStepCgroup:
        return PosixError(report[1], "write", options.cgroup_procs);
      case kStepSetgroups:
        return PosixError(report[1], "setgroups");
      case kStepSetresgid:
        return PosixError(report[1], "setresgid",
                          absl::StrCat(options.credentials->gid));
      case kStepSetresuid:
        return PosixError(report[1], "setresuid",
                          absl::StrCat(options.credentials->uid));
      default:
        return PosixError(report[1], "execve", options.argv[0]);
    }
  }
  return proc;
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      out_fd_(std::exchange(other.out_fd_, -1)),
      status_(std::exchange(other.status_, std::nullopt)) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    this->~Subprocess();
    pid_ = std::exchange(other.pid_, -1);
    out_fd_ = std::exchange(other.out_fd_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !status_.has_value()) Stop(absl::ZeroDuration());
  if (out_fd_ >= 0) close(out_fd_);
  out_fd_ = -1;
}

std::optional<int> Subprocess::TryWait() {
  if (status_.has_value() || pid_ <= 0) return status_;
  int st = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &st, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) status_ = st;
  return status_;
}

absl::StatusOr<int> Subprocess::Wait(absl::Time deadline) {
  while (true) {
    if (std::optional<int> st = TryWait(); st.has_value()) return *st;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("process ", pid_, " still running"));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0 && !TryWait().has_value()) {
    if (kill(-pid_, sig) != 0) kill(pid_, sig);
  }
}

int Subprocess::Stop(absl::Duration grace) {
  if (pid_ <= 0) return 0;
  if (!TryWait().has_value()) {
    if (grace > absl::ZeroDuration()) {
      Signal(SIGTERM);
      if (Wait(absl::Now() + grace).ok()) return *status_;
    }
    Signal(SIGKILL);
    Wait(absl::InfiniteFuture()).IgnoreError();
  }
  return status_.value_or(0);
}

void ResetSignalsInChild() {
  ResetSignalStateForExec();
  const int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)!write(fd, "0", 1);
    close(fd);
  }
}

std::vector<OomKill> ParseOomKills(absl::string_view kmsg) {
  std::vector<OomKill> kills;
  for (absl::string_view line : absl::StrSplit(kmsg, '\n')) {
    if (line.empty() || line[0] == ' ') continue;
    const size_t semi = line.find(';');
    if (semi == absl::string_view::npos) continue;
    std::vector<absl::string_view> head = absl::StrSplit(line.substr(0, semi), ',');
    absl::string_view text = line.substr(semi + 1);
    const size_t at = text.find("Killed process ");
    if (head.size() < 3 || at == absl::string_view::npos) continue;
    OomKill k;
    if (!absl::SimpleAtoi(head[2], &k.time_us)) continue;
    absl::string_view rest = text.substr(at + 15);
    const size_t sp = rest.find(' ');
    if (!absl::SimpleAtoi(rest.substr(0, sp), &k.pid) || sp == absl::string_view::npos) continue;
    rest = rest.substr(sp + 1);
    if (absl::ConsumePrefix(&rest, "(")) k.name = std::string(rest.substr(0, rest.find(')')));
    bool seen = false;
    for (const OomKill& o : kills) seen = seen || o.pid == k.pid;
    if (!seen) kills.push_back(std::move(k));
  }
  return kills;
}

absl::StatusOr<std::string> ReadKernelLog(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  std::string out;
  std::string rec(8192, '\0');
  while (true) {
    const ssize_t n = read(fd, rec.data(), rec.size());  // one record per read
    if (n < 0 && (errno == EINTR || errno == EPIPE)) continue;  // EPIPE: records overwritten
    if (n < 0 && errno == EAGAIN) break;                         // the end of the buffer
    if (n < 0) {
      const int e = errno;
      close(fd);
      return PosixError(e, "read", path);
    }
    if (n == 0) break;  // a regular file (tests)
    out.append(rec.data(), static_cast<size_t>(n));
    if (out.back() != '\n') out += '\n';
  }
  close(fd);
  return out;
}

int64_t MemTotalMiB(const std::string& meminfo_path) {
  std::ifstream in(meminfo_path);
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemTotal:") return kb / 1024;
  }
  return -1;
}

int64_t MonotonicMicros() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

std::string OomReport(int64_t since_us, const std::string& kmsg_path,
                      const std::string& meminfo_path) {
  absl::StatusOr<std::string> log = ReadKernelLog(kmsg_path);
  if (!log.ok()) return "";
  std::vector<std::string> killed;
  for (const OomKill& k : ParseOomKills(*log)) {
    if (k.time_us >= since_us) killed.push_back(absl::StrCat(k.name, " (pid ", k.pid, ")"));
  }
  if (killed.empty()) return "";
  const int64_t mib = MemTotalMiB(meminfo_path);
  return absl::StrCat("the kernel's OOM killer killed ", absl::StrJoin(killed, ", "),
                      mib > 0 ? absl::StrCat(" -- the guest has ", mib, " MiB of memory") : "",
                      "; give the builder VM more memory");
}

std::string OomHint(const std::string& meminfo_path) {
  const int64_t mib = MemTotalMiB(meminfo_path);
  return absl::StrCat("likely the kernel's OOM killer",
                      mib > 0 ? absl::StrCat(": the guest has ", mib, " MiB of memory") : "");
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

}  // namespace kiln::agent::runner
