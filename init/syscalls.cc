// File: init/syscalls.cc
// LinuxSys: the only file in init/ that makes raw syscalls. Every failure goes through
// kiln::PosixError (third_party/absl_ext/posix_error.h).
#include "agent/file/file.h"
#include "init/syscalls.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::init {
namespace {

// CStr: a NUL-terminated copy of `s` (string_view need not be terminated).
std::string CStr(absl::string_view s) { return std::string(s); }

const char* OrNull(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

// The signals init routes to its signalfd.
constexpr int kHandledSignals[] = {SIGCHLD, SIGTERM, SIGINT,  SIGHUP,  SIGQUIT,
                                   SIGUSR1, SIGUSR2, SIGPWR, SIGWINCH};

// Spawn's child reports a failed step over a CLOEXEC pipe as {step, errno}.
enum ChildStep : int { kStepConsole = 1, kStepSetsid, kStepCreds, kStepCwd, kStepExec };

const char* ChildStepName(int step) {
  switch (step) {
    case kStepConsole: return "open console";
    case kStepSetsid: return "setsid";
    case kStepCreds: return "set credentials";
    case kStepCwd: return "chdir";
    case kStepExec: return "execve";
    default: return "spawn";
  }
}

// DeleteContents: busybox switch_root's delete_contents over an open directory fd; does not
// descend into other devices. Records the first errno in *first_errno.
void DeleteContents(int dir_fd, dev_t root_dev, int* first_errno) {
  DIR* dir = fdopendir(dir_fd);
  if (dir == nullptr) {
    if (*first_errno == 0) *first_errno = errno;
    close(dir_fd);
    return;
  }
  while (struct dirent* e = readdir(dir)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (st.st_dev != root_dev) continue;  // a mount point: leave it alone
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd(dir), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
      if (sub >= 0) DeleteContents(sub, root_dev, first_errno);
      // A directory that holds a mount point stays (ENOTEMPTY/EBUSY): expected.
      if (unlinkat(dirfd(dir), e->d_name, AT_REMOVEDIR) != 0 && *first_errno == 0 &&
          errno != EBUSY && errno != ENOTEMPTY) {
        *first_errno = errno;
      }
    } else if (unlinkat(dirfd(dir), e->d_name, 0) != 0 && *first_errno == 0) {
      *first_errno = errno;
    }
  }
  closedir(dir);
}

}  // namespace

LinuxSys::~LinuxSys() {
  if (signal_fd_ >= 0) close(signal_fd_);
}

absl::Status LinuxSys::Mount(absl::string_view source, absl::string_view target,
                             absl::string_view fstype, unsigned long flags,
                             absl::string_view data) {
  std::string src = CStr(source), dst = CStr(target), type = CStr(fstype), opts = CStr(data);
  if (mount(OrNull(src), dst.c_str(), OrNull(type), flags, OrNull(opts)) != 0) {
    return PosixError(errno, absl::StrCat("mount ", type.empty() ? "-" : type, " ",
                                          src.empty() ? "-" : src),
                      dst);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> LinuxSys::IsMountPoint(absl::string_view path) {
  std::string p = CStr(path);
  if (p == "/") return true;
  struct stat st, parent;
  if (stat(p.c_str(), &st) != 0) return PosixError(errno, "stat", p);
  std::string up = p + "/..";
  if (stat(up.c_str(), &parent) != 0) return PosixError(errno, "stat", up);
  return st.st_dev != parent.st_dev || st.st_ino == parent.st_ino;
}

absl::Status LinuxSys::MkdirAll(absl::string_view path, uint32_t mode) {
  std::string prefix;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    absl::StrAppend(&prefix, "/", part);
    if (mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
      return PosixError(errno, "mkdir", prefix);
    }
  }
  struct stat st;
  if (stat(CStr(path).c_str(), &st) != 0) return PosixError(errno, "stat", path);
  if (!S_ISDIR(st.st_mode)) return PosixError(ENOTDIR, "mkdir", path);
  return absl::OkStatus();
}

bool LinuxSys::Exists(absl::string_view path) {
  struct stat st;
  return stat(CStr(path).c_str(), &st) == 0;
}

absl::StatusOr<std::string> LinuxSys::ReadFile(absl::string_view path) {
  return file::ReadFile(path);
}

absl::Status LinuxSys::WriteFile(absl::string_view path, absl::string_view content) {
  std::string p = CStr(path);
  int fd = open(p.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", p);
  ssize_t n;
  do {
    n = write(fd, content.data(), content.size());
  } while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) return PosixError(err, absl::StrCat("write \"", content, "\" to"), p);
  if (static_cast<size_t>(n) != content.size()) {
    return PosixError(EIO, absl::StrCat("short write (", n, " of ", content.size(), " bytes) to"),
                      p);
  }
  return absl::OkStatus();
}

absl::Status LinuxSys::MknodChar(absl::string_view path, uint32_t major, uint32_t minor,
                                 uint32_t mode) {
  if (mknod(CStr(path).c_str(), S_IFCHR | (mode & 07777), makedev(major, minor)) != 0) {
    return PosixError(errno, absl::StrCat("mknod c ", major, ":", minor), path);
  }
  return absl::OkStatus();
}

absl::Status LinuxSys::Chmod(absl::string_view path, uint32_t mode) {
  if (chmod(CStr(path).c_str(), mode & 07777) != 0) {
    int err = errno;
    char octal[8];
    snprintf(octal, sizeof(octal), "%04o", mode & 07777);
    return PosixError(err, absl::StrCat("chmod ", octal), path);
  }
  return absl::OkStatus();
}

absl::Status LinuxSys::Chown(absl::string_view path, uint32_t uid, uint32_t gid) {
  if (lchown(CStr(path).c_str(), uid, gid) != 0) {
    return PosixError(errno, absl::StrCat("chown ", uid, ":", gid), path);
  }
  return absl::OkStatus();
}

absl::StatusOr<FileInfo> LinuxSys::Stat(absl::string_view path) {
  struct stat st;
  if (lstat(CStr(path).c_str(), &st) != 0) return PosixError(errno, "stat", path);
  FileInfo info;
  info.mode = st.st_mode;
  info.uid = st.st_uid;
  info.gid = st.st_gid;
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    info.rdev_major = major(st.st_rdev);
    info.rdev_minor = minor(st.st_rdev);
  }
  return info;
}

absl::Status LinuxSys::FinitModule(absl::string_view path) {
  std::string p = CStr(path);
  int fd = open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", p);
  long rc = syscall(SYS_finit_module, fd, "", 0);
  int err = errno;
  close(fd);
  if (rc != 0) return PosixError(err, "finit_module", p);
  return absl::OkStatus();
}

absl::Status LinuxSys::Chdir(absl::string_view path) {
  if (chdir(CStr(path).c_str()) != 0) return PosixError(errno, "chdir", path);
  return absl::OkStatus();
}

absl::Status LinuxSys::Chroot(absl::string_view path) {
  if (chroot(CStr(path).c_str()) != 0) return PosixError(errno, "chroot", path);
  return absl::OkStatus();
}

absl::Status LinuxSys::DeleteTreeSameDevice(absl::string_view path) {
  std::string p = CStr(path);
  int fd = open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", p);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return PosixError(err, "stat", p);
  }
  // Safety: only ever empty an initramfs (ramfs or tmpfs), never a disk.
  struct statfs fs;
  if (fstatfs(fd, &fs) != 0 || (fs.f_type != RAMFS_MAGIC && fs.f_type != TMPFS_MAGIC)) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("delete contents of ", p, ": not a ramfs/tmpfs, refusing"));
  }
  int first_errno = 0;
  DeleteContents(fd, st.st_dev, &first_errno);  // closes fd
  if (first_errno != 0) return PosixError(first_errno, "delete contents of", p);
  return absl::OkStatus();
}

void LinuxSys::WriteConsole(absl::string_view text) {
  while (!text.empty()) {
    ssize_t n = write(STDERR_FILENO, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

absl::Status LinuxSys::OpenConsole(absl::string_view path) {
  std::string p = CStr(path);
  int fd = open(p.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", p);
  for (int target = 0; target <= 2; ++target) {
    if (dup2(fd, target) < 0) {
      int err = errno;
      close(fd);
      return PosixError(err, "dup2", p);
    }
  }
  if (fd > 2) close(fd);
  return absl::OkStatus();
}

int64_t LinuxSys::BoottimeMs() {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void LinuxSys::SleepMs(int64_t ms) {
  struct timespec ts = {static_cast<time_t>(ms / 1000), static_cast<long>((ms % 1000) * 1000000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

absl::Status LinuxSys::BlockSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kHandledSignals) sigaddset(&set, sig);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return PosixError(errno, "sigprocmask");
  if (signal_fd_ >= 0) close(signal_fd_);
  signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) return PosixError(errno, "signalfd");
  return absl::OkStatus();
}

absl::StatusOr<int> LinuxSys::WaitSignal(int64_t timeout_ms) {
  if (signal_fd_ < 0) return PosixError(EBADF, "WaitSignal", "(BlockSignals not called)");
  struct pollfd pfd = {signal_fd_, POLLIN, 0};
  int timeout = timeout_ms < 0 ? -1 : (timeout_ms > 1 << 30 ? 1 << 30 : int(timeout_ms));
  int rc = poll(&pfd, 1, timeout);
  if (rc < 0) {
    if (errno == EINTR) return 0;
    return PosixError(errno, "poll", "signalfd");
  }
  if (rc == 0) return 0;
  struct signalfd_siginfo info;
  ssize_t n = read(signal_fd_, &info, sizeof(info));
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return 0;
    return PosixError(errno, "read", "signalfd");
  }
  if (n != sizeof(info)) return PosixError(EIO, "read", "signalfd");
  return static_cast<int>(info.ssi_signo);
}

absl::StatusOr<pid_t> LinuxSys::Spawn(const SpawnSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return PosixError(EINVAL, "spawn", "(empty argv)");
  }
  // Everything the child needs is built before fork: the child only makes
  // async-signal-safe calls.
  std::vector<char*> argv, envp;
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::string path_var = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const std::string& e : spec.env) {
    envp.push_back(const_cast<char*>(e.c_str()));
    if (absl::StartsWith(e, "PATH=")) path_var = e.substr(5);
  }
  envp.push_back(nullptr);
  std::vector<std::string> candidates;
  if (spec.argv[0].find('/') != std::string::npos) {
    candidates.push_back(spec.argv[0]);
  } else {
    for (absl::string_view dir : absl::StrSplit(path_var, ':', absl::SkipEmpty())) {
      candidates.push_back(absl::StrCat(dir, "/", spec.argv[0]));
    }
  }
  std::string console = spec.console, cwd = spec.cwd;

  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return PosixError(errno, "pipe2");
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(pipefd[0]);
    close(pipefd[1]);
    return PosixError(err, "fork");
  }
  if (pid == 0) {
    auto fail = [&](int step, int err) {
      int msg[2] = {step, err};
      ssize_t ignored = write(pipefd[1], msg, sizeof(msg));
      (void)ignored;
      _exit(127);
    };
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : kHandledSignals) signal(sig, SIG_DFL);
    if (setsid() < 0) fail(kStepSetsid, errno);
    int fd = open(console.c_str(), O_RDWR | O_NOCTTY);
    if (fd < 0) fail(kStepConsole, errno);
    for (int t = 0; t <= 2; ++t) {
      if (dup2(fd, t) < 0) fail(kStepConsole, errno);
    }
    if (fd > 2) close(fd);
    // Credentials change only when asked for (an unprivileged caller, e.g. a test, can
    // still spawn as itself).
    if (getuid() != spec.uid || getgid() != spec.gid) {
      if (setgroups(0, nullptr) != 0) fail(kStepCreds, errno);
      if (setgid(spec.gid) != 0) fail(kStepCreds, errno);
      if (setuid(spec.uid) != 0) fail(kStepCreds, errno);
    }
    if (chdir(cwd.c_str()) != 0) fail(kStepCwd, errno);
    int exec_errno = ENOENT;
    for (const std::string& c : candidates) {
      execve(c.c_str(), argv.data(), envp.data());
      if (errno != ENOENT && errno != ENOTDIR) exec_errno = errno;
    }
    fail(kStepExec, exec_errno);
  }
  close(pipefd[1]);
  int msg[2] = {0, 0};
  ssize_t n;
  do {
    n = read(pipefd[0], msg, sizeof(msg));
  } while (n < 0 && errno == EINTR);
  close(pipefd[0]);
  if (n == sizeof(msg)) {
    // The child failed before exec and _exit(127)s; reap it here so the caller sees no
    // stray child.
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return PosixError(msg[1], ChildStepName(msg[0]), spec.argv[0]);
  }
  return pid;
}

absl::StatusOr<ReapResult> LinuxSys::ReapAny() {
  ReapResult r;
  int status = 0;
  pid_t pid;
  do {
    pid = waitpid(-1, &status, WNOHANG);
  } while (pid < 0 && errno == EINTR);
  if (pid < 0) {
    if (errno == ECHILD) return r;  // kNoChildren
    return PosixError(errno, "waitpid");
  }
  if (pid == 0) {
    r.kind = ReapResult::kNoneReady;
    return r;
  }
  r.kind = ReapResult::kReaped;
  r.pid = pid;
  r.wait_status = status;
  return r;
}

absl::Status LinuxSys::Kill(pid_t pid, int sig) {
  if (kill(pid, sig) != 0 && errno != ESRCH) {
    return PosixError(errno, absl::StrCat("kill -", sig), absl::StrCat(pid));
  }
  return absl::OkStatus();
}

absl::Status LinuxSys::KillAll(int sig) {
  if (kill(-1, sig) != 0 && errno != ESRCH) {
    return PosixError(errno, absl::StrCat("kill -", sig), "-1");
  }
  return absl::OkStatus();
}

pid_t LinuxSys::GetPid() { return getpid(); }

void LinuxSys::Sync() { sync(); }

void LinuxSys::PowerOff() {
  reboot(RB_POWER_OFF);
  // Not PID 1 or no CAP_SYS_BOOT. As PID 1, exiting panics the kernel, and with panic=-1
  // and QEMU's -no-reboot that also ends the VM.
  _exit(1);
}

}  // namespace kiln::init
