// File: init/fake_sys.h
// -----------------------------------------------------------------------------
//
// FakeSys: an in-memory Sys for unit tests (testonly; the LevelDB memenv/ErrorEnv pattern).
// It records every call as a line in `calls`, collects the console text in `console`, keeps
// a fake clock (`now_ms`, advanced by SleepMs and by WaitSignal timeouts), and injects errors
// per path. Processes are scripted: Spawn adds `spawn_pid` to `live`; WaitSignal pops
// `events` (each may advance the clock, make a child reapable and/or deliver a signal); Kill
// and KillAll with a signal in `fatal_signals` make the target(s) reapable as killed by it
// and queue a SIGCHLD as the next event.
//
// Example:
//
//   FakeSys sys;
//   sys.mount_errors["/sys/fs/cgroup"] = kiln::PosixError(ENODEV, "mount cgroup2", "...");
//   Console console(sys);
//   EXPECT_OK(ApplyMounts(sys, console, InitMountPlan(Config{})));
//   EXPECT_THAT(sys.console, HasSubstr("warning step=cgroup errno=19"));
#ifndef KILN_INIT_FAKE_SYS_H_
#define KILN_INIT_FAKE_SYS_H_

#include <errno.h>
#include <signal.h>

#include <cstdio>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "init/syscalls.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::init {

// ExitedStatus / SignaledStatus: waitpid statuses for "exited with n" / "killed by sig".
inline int ExitedStatus(int n) { return (n & 0xff) << 8; }
inline int SignaledStatus(int sig) { return sig & 0x7f; }

class FakeSys : public Sys {
 public:
  // One scripted happening, consumed by one WaitSignal call.
  struct Event {
    int64_t advance_ms = 0;  // the fake clock moves on this much first
    int signal = 0;          // returned by WaitSignal (0: "timeout")
    pid_t reap_pid = 0;      // if != 0: this child becomes reapable ...
    int wait_status = 0;     // ... with this status
  };

  // ---- State and injected errors (set by tests) ----
  std::set<std::string> mount_points;              // IsMountPoint() true
  std::set<std::string> existing;                  // Exists() true
  std::map<std::string, int64_t> appears_at_ms;    // Exists() true once now_ms >= value
  std::map<std::string, std::string> files;        // ReadFile() contents
  std::map<std::string, absl::Status> mount_errors;   // by mount target
  std::map<std::string, absl::Status> mkdir_errors;   // by path
  std::map<std::string, absl::Status> module_errors;  // by module path
  std::map<std::string, absl::Status> write_errors;   // WriteFile, by path
  std::map<std::string, absl::Status> mknod_errors;   // MknodChar, by path
  std::map<std::string, absl::Status> chmod_errors;   // by path
  std::map<std::string, absl::Status> chown_errors;   // by path
  std::map<std::string, FileInfo> nodes;           // Stat() results; MknodChar, Chmod, Chown
                                                   // and MkdirAll update them
  absl::Status delete_tree_error;
  absl::Status spawn_error;
  pid_t spawn_pid = 100;
  std::deque<Event> events;
  std::set<int> fatal_signals = {SIGKILL};
  std::set<pid_t> live;                            // children not yet reaped
  std::deque<ReapResult> reapable;
  pid_t pid = 1;

  // ---- Observations ----
  std::vector<std::string> calls;  // e.g. "mount cgroup2 cgroup2 /sys/fs/cgroup flags=14 data="
  std::map<std::string, std::vector<std::string>> written;  // WriteFile contents, by path
  std::string console;
  std::vector<SpawnSpec> spawned;
  int64_t now_ms = 0;
  bool signals_blocked = false;
  int syncs = 0;
  int power_offs = 0;

  absl::Status Mount(absl::string_view source, absl::string_view target,
                     absl::string_view fstype, unsigned long flags,
                     absl::string_view data) override {
    calls.push_back(absl::StrCat("mount ", fstype, " ", source, " ", target, " flags=", flags,
                                 " data=", data));
    if (auto it = mount_errors.find(std::string(target)); it != mount_errors.end()) {
      return it->second;
    }
    mount_points.insert(std::string(target));
    return absl::OkStatus();
  }
  absl::StatusOr<bool> IsMountPoint(absl::string_view path) override {
    return mount_points.count(std::string(path)) > 0;
  }
  absl::Status MkdirAll(absl::string_view path, uint32_t mode) override {
    calls.push_back(absl::StrCat("mkdir ", path));
    if (auto it = mkdir_errors.find(std::string(path)); it != mkdir_errors.end()) {
      return it->second;
    }
    nodes.try_emplace(std::string(path), FileInfo{0040000u | mode, 0, 0, 0, 0});
    return absl::OkStatus();
  }
  bool Exists(absl::string_view path) override {
    std::string p(path);
    if (existing.count(p)) return true;
    auto it = appears_at_ms.find(p);
    return it != appears_at_ms.end() && now_ms >= it->second;
  }
  absl::StatusOr<std::string> ReadFile(absl::string_view path) override {
    auto it = files.find(std::string(path));
    if (it == files.end()) return PosixError(ENOENT, "open", path);
    return it->second;
  }
  absl::Status WriteFile(absl::string_view path, absl::string_view content) override {
    calls.push_back(absl::StrCat("write ", path, " ", content));
    if (auto it = write_errors.find(std::string(path)); it != write_errors.end()) {
      return it->second;
    }
    written[std::string(path)].push_back(std::string(content));
    return absl::OkStatus();
  }
  absl::Status MknodChar(absl::string_view path, uint32_t major, uint32_t minor,
                         uint32_t mode) override {
    calls.push_back(absl::StrCat("mknod ", path, " c ", major, ":", minor));
    if (auto it = mknod_errors.find(std::string(path)); it != mknod_errors.end()) {
      return it->second;
    }
    if (nodes.count(std::string(path))) return PosixError(EEXIST, "mknod", path);
    // The umask of init (022) applies, as for the real call.
    nodes[std::string(path)] = FileInfo{0020000u | (mode & 0755), 0, 0, major, minor};
    return absl::OkStatus();
  }
  absl::Status Chmod(absl::string_view path, uint32_t mode) override {
    char octal[8];
    snprintf(octal, sizeof(octal), "%04o", mode & 07777u);
    calls.push_back(absl::StrCat("chmod ", path, " ", octal));  // e.g. "chmod /dev/net/tun 0666"
    if (auto it = chmod_errors.find(std::string(path)); it != chmod_errors.end()) {
      return it->second;
    }
    auto it = nodes.find(std::string(path));
    if (it == nodes.end()) return PosixError(ENOENT, "chmod", path);
    it->second.mode = (it->second.mode & ~07777u) | (mode & 07777u);
    return absl::OkStatus();
  }
  absl::Status Chown(absl::string_view path, uint32_t uid, uint32_t gid) override {
    calls.push_back(absl::StrCat("chown ", path, " ", uid, ":", gid));
    if (auto it = chown_errors.find(std::string(path)); it != chown_errors.end()) {
      return it->second;
    }
    FileInfo& info = nodes[std::string(path)];  // cgroupfs files need not be set up first
    info.uid = uid;
    info.gid = gid;
    return absl::OkStatus();
  }
  absl::StatusOr<FileInfo> Stat(absl::string_view path) override {
    auto it = nodes.find(std::string(path));
    if (it == nodes.end()) return PosixError(ENOENT, "stat", path);
    return it->second;
  }
  absl::Status FinitModule(absl::string_view path) override {
    calls.push_back(absl::StrCat("finit_module ", path));
    if (auto it = module_errors.find(std::string(path)); it != module_errors.end()) {
      return it->second;
    }
    return absl::OkStatus();
  }
  absl::Status Chdir(absl::string_view path) override {
    calls.push_back(absl::StrCat("chdir ", path));
    return absl::OkStatus();
  }
  absl::Status Chroot(absl::string_view path) override {
    calls.push_back(absl::StrCat("chroot ", path));
    return absl::OkStatus();
  }
  absl::Status DeleteTreeSameDevice(absl::string_view path) override {
    calls.push_back(absl::StrCat("delete-tree ", path));
    return delete_tree_error;
  }
  void WriteConsole(absl::string_view text) override { absl::StrAppend(&console, text); }
  absl::Status OpenConsole(absl::string_view path) override {
    calls.push_back(absl::StrCat("open-console ", path));
    return absl::OkStatus();
  }
  int64_t BoottimeMs() override { return now_ms; }
  void SleepMs(int64_t ms) override { now_ms += ms; }
  absl::Status BlockSignals() override {
    signals_blocked = true;
    return absl::OkStatus();
  }
  absl::StatusOr<int> WaitSignal(int64_t timeout_ms) override {
    if (!events.empty()) {
      Event e = events.front();
      events.pop_front();
      now_ms += e.advance_ms;
      if (e.reap_pid != 0) reapable.push_back({ReapResult::kReaped, e.reap_pid, e.wait_status});
      return e.signal;
    }
    if (timeout_ms < 0) {
      return absl::FailedPreconditionError("FakeSys: WaitSignal(-1) with no events would hang");
    }
    now_ms += timeout_ms;
    return 0;
  }
  absl::StatusOr<pid_t> Spawn(const SpawnSpec& spec) override {
    spawned.push_back(spec);
    if (!spawn_error.ok()) return spawn_error;
    live.insert(spawn_pid);
    return spawn_pid;
  }
  absl::StatusOr<ReapResult> ReapAny() override {
    if (!reapable.empty()) {
      ReapResult r = reapable.front();
      reapable.pop_front();
      live.erase(r.pid);
      return r;
    }
    ReapResult r;
    r.kind = live.empty() ? ReapResult::kNoChildren : ReapResult::kNoneReady;
    return r;
  }
  absl::Status Kill(pid_t target, int sig) override {
    calls.push_back(absl::StrCat("kill ", target, " ", sig));
    if (fatal_signals.count(sig) && live.count(target)) {
      reapable.push_back({ReapResult::kReaped, target, SignaledStatus(sig)});
      events.push_front({0, SIGCHLD, 0, 0});
    }
    return absl::OkStatus();
  }
  absl::Status KillAll(int sig) override {
    calls.push_back(absl::StrCat("kill-all ", sig));
    if (fatal_signals.count(sig)) {
      for (pid_t p : live) reapable.push_back({ReapResult::kReaped, p, SignaledStatus(sig)});
      if (!live.empty()) events.push_front({0, SIGCHLD, 0, 0});
    }
    return absl::OkStatus();
  }
  pid_t GetPid() override { return pid; }
  void Sync() override { ++syncs; }
  void PowerOff() override {
    calls.push_back("power-off");
    ++power_offs;
  }
};

}  // namespace kiln::init

#endif  // KILN_INIT_FAKE_SYS_H_
