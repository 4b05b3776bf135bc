// File: init/syscalls.h
// -----------------------------------------------------------------------------
//
// Sys: every operating-system call that kiln's init makes, behind one small interface (the
// LevelDB `Env` pattern). The plans (mount_plan.h, root_switch.h) and the executors that carry
// them out (ApplyMounts, LoadModules, ExecuteRootSwitch, Supervise) take a `Sys&`, so unit
// tests run them against a fake (init/fake_sys.h) without root, a VM or real processes.
// `LinuxSys` (syscalls.cc) is the only code in init/ that makes raw syscalls.
//
// Every failing call returns kiln::PosixError(errno, op, arg): the canonical code for the
// errno and the message "<op> <arg>: <strerror> [errno N]" (see ErrnoOf() in console.h to
// get N back).
//
// Example:
//
//   kiln::init::LinuxSys sys;
//   absl::Status s = sys.Mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
//   if (!s.ok()) ...   // e.g. NOT_FOUND: mount proc /proc: No such file or directory [errno 2]
#ifndef KILN_INIT_SYSCALLS_H_
#define KILN_INIT_SYSCALLS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::init {

// SpawnSpec: what Sys::Spawn starts.
struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] is the program; searched in PATH if not absolute.
  std::vector<std::string> env;   // "KEY=value" entries, the program's whole environment.
  uint32_t uid = 0;               // credentials of the program: if they differ from the
                                  // caller's: setgroups({}), setgid, setuid.
  uint32_t gid = 0;
  std::string console = "/dev/console";  // opened as stdin/stdout/stderr of the program.
  std::string cwd = "/";                 // working directory of the program.
};

// FileInfo: what Sys::Stat reports about a path (lstat(2): a symlink is not followed).
struct FileInfo {
  uint32_t mode = 0;   // st_mode: type (S_IFCHR, S_IFDIR, ...) and permission bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t rdev_major = 0;  // of a device node; 0 otherwise
  uint32_t rdev_minor = 0;
};

// ReapResult: one result of Sys::ReapAny.
struct ReapResult {
  enum Kind {
    kReaped,      // `pid` ended with wait status `wait_status` (use WIFEXITED etc.).
    kNoneReady,   // children exist, none has ended yet.
    kNoChildren,  // no children at all (ECHILD).
  };
  Kind kind = kNoChildren;
  pid_t pid = 0;
  int wait_status = 0;
};

// Sys: the operating system as init sees it. Not thread-safe (init is single-threaded).
class Sys {
 public:
  virtual ~Sys() = default;

  // ---- Files and mounts ----------------------------------------------------------------

  // Mount: mount(2) with these arguments (empty strings are passed as NULL). Returns OK or
  // PosixError (e.g. NOT_FOUND for a missing target or device, PERMISSION_DENIED).
  virtual absl::Status Mount(absl::string_view source, absl::string_view target,
                             absl::string_view fstype, unsigned long flags,
                             absl::string_view data) = 0;

  // IsMountPoint: whether `path` is the root of a mount (st_dev differs from its parent's,
  // or it is "/"). Returns NOT_FOUND if `path` does not exist.
  virtual absl::StatusOr<bool> IsMountPoint(absl::string_view path) = 0;

  // MkdirAll: creates `path` and missing parents with `mode`; an existing directory is OK.
  virtual absl::Status MkdirAll(absl::string_view path, uint32_t mode) = 0;

  // Exists: whether `path` exists (stat(2) succeeds).
  virtual bool Exists(absl::string_view path) = 0;

  // ReadFile: the whole contents of `path`. NOT_FOUND if it does not exist.
  virtual absl::StatusOr<std::string> ReadFile(absl::string_view path) = 0;

  // WriteFile: opens the existing file `path` for writing (O_WRONLY, no O_CREAT, no O_TRUNC)
  // and writes `content` with a single write(2), as cgroupfs interface files require (each
  // write is one command, e.g. "+cpu +pids" to cgroup.subtree_control). Returns NOT_FOUND for
  // a missing file, or the PosixError of open/write (a short write is EIO).
  virtual absl::Status WriteFile(absl::string_view path, absl::string_view content) = 0;

  // MknodChar: mknod(2) of a character device node `path` (major:minor) with permission bits
  // `mode` (the umask applies; follow with Chmod for exact bits). ALREADY_EXISTS (EEXIST) if
  // `path` exists, whatever it is.
  virtual absl::Status MknodChar(absl::string_view path, uint32_t major, uint32_t minor,
                                 uint32_t mode) = 0;

  // Chmod: chmod(2) of `path` to permission bits `mode` (e.g. 0666).
  virtual absl::Status Chmod(absl::string_view path, uint32_t mode) = 0;

  // Chown: lchown(2) of `path` to `uid`:`gid` (a symlink itself, not its target).
  virtual absl::Status Chown(absl::string_view path, uint32_t uid, uint32_t gid) = 0;

  // Stat: lstat(2) of `path`. NOT_FOUND if it does not exist.
  virtual absl::StatusOr<FileInfo> Stat(absl::string_view path) = 0;

  // FinitModule: loads the kernel module file `path` with finit_module(2) and no parameters.
  // Returns OK, ALREADY_EXISTS (EEXIST: already loaded) or another PosixError.
  virtual absl::Status FinitModule(absl::string_view path) = 0;

  // Chdir / Chroot: chdir(2) / chroot(2).
  virtual absl::Status Chdir(absl::string_view path) = 0;
  virtual absl::Status Chroot(absl::string_view path) = 0;

  // DeleteTreeSameDevice: removes everything below `path` that is on the same device as
  // `path` itself, not crossing into other mounts (busybox switch_root's delete_contents);
  // used to free the initramfs. Returns FAILED_PRECONDITION (and deletes nothing) unless
  // `path` is on ramfs or tmpfs; else the first PosixError met (it continues past it).
  virtual absl::Status DeleteTreeSameDevice(absl::string_view path) = 0;

  // ---- Console and time ----------------------------------------------------------------

  // WriteConsole: writes `text` to the console (best effort; never fails).
  virtual void WriteConsole(absl::string_view text) = 0;

  // OpenConsole: opens `path` (a tty) and makes it init's fds 0, 1 and 2.
  virtual absl::Status OpenConsole(absl::string_view path) = 0;

  // BoottimeMs: CLOCK_BOOTTIME in ms (time since boot, including suspend).
  virtual int64_t BoottimeMs() = 0;

  // SleepMs: sleeps `ms` milliseconds.
  virtual void SleepMs(int64_t ms) = 0;

  // ---- Processes and signals -----------------------------------------------------------

  // BlockSignals: blocks the signals init handles (SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT,
  // SIGUSR1, SIGUSR2, SIGPWR, SIGWINCH) and routes them to WaitSignal (signalfd). Call it
  // before Spawn so that no SIGCHLD is lost.
  virtual absl::Status BlockSignals() = 0;

  // WaitSignal: waits up to `timeout_ms` (-1: forever) for one of the blocked signals.
  // Returns its number, or 0 on timeout. REQUIRES: BlockSignals() succeeded.
  virtual absl::StatusOr<int> WaitSignal(int64_t timeout_ms) = 0;

  // Spawn: fork + exec of `spec` in a new session, with default signal dispositions and an
  // empty signal mask. Returns the child's pid once exec has succeeded; if the exec (or a
  // step before it: console, credentials, cwd) fails, returns that step's PosixError.
  virtual absl::StatusOr<pid_t> Spawn(const SpawnSpec& spec) = 0;

  // ReapAny: waitpid(-1, WNOHANG): reaps one ended child (any child, including orphans
  // reparented to init).
  virtual absl::StatusOr<ReapResult> ReapAny() = 0;

  // Kill: kill(2) of `pid` with `sig`. ESRCH is OK (already gone).
  virtual absl::Status Kill(pid_t pid, int sig) = 0;

  // KillAll: sends `sig` to every process but init itself (kill(-1, sig)). ESRCH is OK.
  virtual absl::Status KillAll(int sig) = 0;

  // GetPid: getpid(2); 1 when running as PID 1.
  virtual pid_t GetPid() = 0;

  // ---- Shutdown ------------------------------------------------------------------------

  // Sync: sync(2).
  virtual void Sync() = 0;

  // PowerOff: reboot(RB_POWER_OFF); if that returns (not PID 1, no CAP_SYS_BOOT), _exit(1).
  // Never returns in LinuxSys; fakes record the call and return.
  virtual void PowerOff() = 0;
};

// LinuxSys: the real Sys (syscalls.cc).
class LinuxSys : public Sys {
 public:
  LinuxSys() = default;
  ~LinuxSys() override;
  LinuxSys(const LinuxSys&) = delete;
  LinuxSys& operator=(const LinuxSys&) = delete;

  absl::Status Mount(absl::string_view source, absl::string_view target,
                     absl::string_view fstype, unsigned long flags,
                     absl::string_view data) override;
  absl::StatusOr<bool> IsMountPoint(absl::string_view path) override;
  absl::Status MkdirAll(absl::string_view path, uint32_t mode) override;
  bool Exists(absl::string_view path) override;
  absl::StatusOr<std::string> ReadFile(absl::string_view path) override;
  absl::Status WriteFile(absl::string_view path, absl::string_view content) override;
  absl::Status MknodChar(absl::string_view path, uint32_t major, uint32_t minor,
                         uint32_t mode) override;
  absl::Status Chmod(absl::string_view path, uint32_t mode) override;
  absl::Status Chown(absl::string_view path, uint32_t uid, uint32_t gid) override;
  absl::StatusOr<FileInfo> Stat(absl::string_view path) override;
  absl::Status FinitModule(absl::string_view path) override;
  absl::Status Chdir(absl::string_view path) override;
  absl::Status Chroot(absl::string_view path) override;
  absl::Status DeleteTreeSameDevice(absl::string_view path) override;
  void WriteConsole(absl::string_view text) override;
  absl::Status OpenConsole(absl::string_view path) override;
  int64_t BoottimeMs() override;
  void SleepMs(int64_t ms) override;
  absl::Status BlockSignals() override;
  absl::StatusOr<int> WaitSignal(int64_t timeout_ms) override;
  absl::StatusOr<pid_t> Spawn(const SpawnSpec& spec) override;
  absl::StatusOr<ReapResult> ReapAny() override;
  absl::Status Kill(pid_t pid, int sig) override;
  absl::Status KillAll(int sig) override;
  pid_t GetPid() override;
  void Sync() override;
  void PowerOff() override;

 private:
  int signal_fd_ = -1;
};

}  // namespace kiln::init

#endif  // KILN_INIT_SYSCALLS_H_
