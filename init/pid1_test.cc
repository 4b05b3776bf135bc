// File: init/pid1_test.cc
// The whole PID 1 flow against FakeSys: console lines, order of steps, fatal paths.
#include "init/pid1.h"

#include <errno.h>
#include <signal.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "init/fake_sys.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::init {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

// Lines: the console text split into lines.
std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// Count: how many console lines start with `prefix`.
int Count(const std::string& console, absl::string_view prefix) {
  int n = 0;
  for (const std::string& l : Lines(console)) n += absl::StartsWith(l, prefix);
  return n;
}

// CallIndex: the index of the first recorded call containing `text`; calls.size() if none.
size_t CallIndex(const FakeSys& sys, absl::string_view text) {
  for (size_t i = 0; i < sys.calls.size(); ++i) {
    if (absl::StrContains(sys.calls[i], text)) return i;
  }
  return sys.calls.size();
}

FakeSys WithCmdline(const std::string& cmdline) {
  FakeSys sys;
  sys.files["/proc/cmdline"] = cmdline + "\n";
  return sys;
}

TEST(RunPid1Test, NoExecPrintsReadyAndPowersOff) {
  FakeSys sys = WithCmdline("console=ttyS0 panic=-1");
  sys.now_ms = 812;
  RunPid1(sys, {});
  EXPECT_TRUE(sys.signals_blocked);
  EXPECT_THAT(Lines(sys.console), Contains("KILN-INIT: ready uptime_ms=812"));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: exit"), 0);
  EXPECT_EQ(Count(sys.console, "KILN-INIT: fatal"), 0);
  EXPECT_EQ(sys.power_offs, 1);
  EXPECT_EQ(sys.syncs, 1);
  EXPECT_TRUE(sys.spawned.empty());
  EXPECT_THAT(sys.calls, Contains(HasSubstr("mount cgroup2 cgroup2 /sys/fs/cgroup")));
  EXPECT_THAT(sys.calls, Contains("open-console /dev/console"));
  EXPECT_EQ(sys.calls.back(), "power-off");
}

TEST(RunPid1Test, BadConfigIsFatalAndPowersOff) {
  FakeSys sys = WithCmdline("console=ttyS0 kiln.cgroup=xx kiln.exec=/bin/true");
  RunPid1(sys, {});
  EXPECT_THAT(sys.console,
              HasSubstr("KILN-INIT: fatal step=config errno=0 (Success): kiln.cgroup=\"xx\": "
                        "bad value; allowed: rw|ro|off\n"));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: fatal"), 1);
  EXPECT_EQ(Count(sys.console, "KILN-INIT: ready"), 0);
  EXPECT_TRUE(sys.spawned.empty());
  EXPECT_EQ(sys.power_offs, 1);
}

TEST(RunPid1Test, MissingCmdlineIsFatal) {
  FakeSys sys;
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: fatal step=config errno=2 "));
  EXPECT_EQ(sys.power_offs, 1);
}

TEST(RunPid1Test, BaseMountFailureIsFatal) {
  FakeSys sys = WithCmdline("");
  sys.mount_errors["/proc"] = PosixError(EPERM, "mount proc proc", "/proc");
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: fatal step=mount errno=1 (Operation not "
                                     "permitted): mount proc proc /proc: Operation not "
                                     "permitted\n"));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: ready"), 0);
  EXPECT_EQ(sys.power_offs, 1);
}

TEST(RunPid1Test, CgroupFailureIsAWarningAndBootGoesOn) {
  FakeSys sys = WithCmdline("kiln.cgroup=ro");
  sys.mount_errors["/sys/fs/cgroup"] =
      PosixError(ENODEV, "mount cgroup2 cgroup2", "/sys/fs/cgroup");
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: warning step=cgroup errno=19 "));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: ready"), 1);
  EXPECT_EQ(Count(sys.console, "KILN-INIT: fatal"), 0);
}

TEST(RunPid1Test, CgroupOffMountsNoCgroup) {
  FakeSys sys = WithCmdline("kiln.cgroup=off");
  RunPid1(sys, {});
  EXPECT_THAT(sys.calls, Not(Contains(HasSubstr("cgroup2"))));
  EXPECT_THAT(sys.console, HasSubstr("step=cgroup policy=off mounted=no"));
}

TEST(RunPid1Test, ModuleFailureIsFatal) {
  FakeSys sys = WithCmdline("");
  sys.files["/etc/kiln/modules.load"] = "/m/virtio_blk.ko\n";
  sys.module_errors["/m/virtio_blk.ko"] = PosixError(ENOEXEC, "finit_module", "/m/virtio_blk.ko");
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: fatal step=modules errno=8 "));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: ready"), 0);
}

// kiln.delegate: after the cgroup2 mount and before the modules, the subtree is delegated,
// reading the root's cgroup.controllers; the program then runs.
TEST(RunPid1Test, DelegateAfterCgroupMountBeforeModules) {
  FakeSys sys = WithCmdline("kiln.delegate=1000 kiln.exec=/bin/true");
  sys.files["/sys/fs/cgroup/cgroup.controllers"] = "cpuset cpu io memory hugetlb pids rdma misc\n";
  sys.files["/etc/kiln/modules.load"] = "/m/tun.ko\n";
  sys.events.push_back({0, SIGCHLD, 100, ExitedStatus(0)});
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr(" delegate=1000:1000\n"));
  EXPECT_THAT(sys.console,
              HasSubstr("KILN-INIT: step=delegate path=/sys/fs/cgroup/kiln-builder uid=1000 "
                        "gid=1000 controllers=cpu,cpuset,io,memory,pids\n"));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: fatal"), 0);
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: exit status=0"));
  size_t cgroup_mount = CallIndex(sys, "mount cgroup2 ");
  size_t write =
      CallIndex(sys, "write /sys/fs/cgroup/cgroup.subtree_control +cpu +cpuset +io +memory +pids");
  size_t chown = CallIndex(sys, "chown /sys/fs/cgroup/kiln-builder/cgroup.threads 1000:1000");
  size_t module = CallIndex(sys, "finit_module /m/tun.ko");
  ASSERT_LT(module, sys.calls.size());
  EXPECT_LT(cgroup_mount, write);
  EXPECT_LT(write, chown);
  EXPECT_LT(chown, module);
}

// kiln.delegate without a cgroup2 to delegate from (the mount failed: only a warning by
// itself) is fatal: step=delegate, no program.
TEST(RunPid1Test, DelegateWithoutCgroupIsFatal) {
  FakeSys sys = WithCmdline("kiln.delegate=1000 kiln.exec=/bin/true");
  sys.mount_errors["/sys/fs/cgroup"] = PosixError(ENODEV, "mount cgroup2 cgroup2", "/sys/fs/cgroup");
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: warning step=cgroup errno=19 "));
  EXPECT_THAT(sys.console,
              HasSubstr("KILN-INIT: fatal step=delegate errno=2 (No such file or directory): "
                        "kiln.delegate needs cgroup2 at /sys/fs/cgroup: open "
                        "/sys/fs/cgroup/cgroup.controllers"));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: fatal"), 1);
  EXPECT_EQ(Count(sys.console, "KILN-INIT: ready"), 0);
  EXPECT_TRUE(sys.spawned.empty());
  EXPECT_EQ(sys.power_offs, 1);
}

TEST(RunPid1Test, DelegateFailureIsFatal) {
  FakeSys sys = WithCmdline("kiln.delegate=1000:100 kiln.exec=/bin/true");
  sys.files["/sys/fs/cgroup/cgroup.controllers"] = "memory pids\n";
  sys.chown_errors["/sys/fs/cgroup/kiln-builder"] =
      PosixError(EPERM, "chown 1000:100", "/sys/fs/cgroup/kiln-builder");
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: fatal step=delegate errno=1 (Operation not "
                                     "permitted): chown 1000:100 /sys/fs/cgroup/kiln-builder"));
  EXPECT_TRUE(sys.spawned.empty());
  EXPECT_EQ(sys.power_offs, 1);
}

// kiln.delegate with kiln.cgroup=ro is a config error: one fatal line, nothing mounted or
// delegated.
TEST(RunPid1Test, DelegateWithReadOnlyCgroupIsAConfigError) {
  FakeSys sys = WithCmdline("kiln.cgroup=ro kiln.delegate=1000 kiln.exec=/bin/true");
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: fatal step=config errno=0 (Success): "
                                     "kiln.delegate=\"1000:1000\" with kiln.cgroup=ro"));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: fatal"), 1);
  EXPECT_THAT(sys.calls, Not(Contains(HasSubstr("cgroup2"))));
  EXPECT_TRUE(sys.written.empty());
  EXPECT_EQ(sys.power_offs, 1);
}

// /dev/net/tun is made 0666 after the modules (tun.ko) and before the root switch binds /dev.
TEST(RunPid1Test, TunNodeAfterModulesBeforeRootSwitch) {
  FakeSys sys = WithCmdline("kiln.root=/dev/vda");
  sys.existing = {"/dev/vda"};
  sys.files["/etc/kiln/modules.load"] = "/m/tun.ko\n";
  RunPid1(sys, {});
  EXPECT_EQ(Count(sys.console, "KILN-INIT: fatal"), 0);
  EXPECT_THAT(sys.console,
              HasSubstr("KILN-INIT: step=devices node=/dev/net/tun char=10:200 mode=0666\n"));
  size_t module = CallIndex(sys, "finit_module /m/tun.ko");
  size_t chmod = CallIndex(sys, "chmod /dev/net/tun 0666");
  size_t bind_dev = CallIndex(sys, " /newroot/dev ");
  ASSERT_LT(bind_dev, sys.calls.size());
  EXPECT_LT(module, chmod);
  EXPECT_LT(chmod, bind_dev);
}

TEST(RunPid1Test, DeviceNodeFailureIsFatal) {
  FakeSys sys = WithCmdline("kiln.exec=/bin/true");
  sys.mknod_errors["/dev/net/tun"] = PosixError(EROFS, "mknod c 10:200", "/dev/net/tun");
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: fatal step=devices errno=30 "));
  EXPECT_TRUE(sys.spawned.empty());
  EXPECT_EQ(sys.power_offs, 1);
}

TEST(RunPid1Test, RootMountFailureIsFatal) {
  FakeSys sys = WithCmdline("kiln.root=/dev/vda kiln.exec=/sbin/agent");
  sys.existing = {"/dev/vda"};
  sys.mount_errors["/kiln/ro"] = PosixError(EINVAL, "mount ext4 /dev/vda", "/kiln/ro");
  RunPid1(sys, {});
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: fatal step=root errno=22 (Invalid argument): "
                                     "mount ext4 /dev/vda /kiln/ro: Invalid argument\n"));
  EXPECT_TRUE(sys.spawned.empty());
  EXPECT_EQ(sys.power_offs, 1);
}

TEST(RunPid1Test, RootSwitchThenProgramThenExitLine) {
  FakeSys sys = WithCmdline(
      "console=ttyS0 kiln.root=/dev/vda kiln.exec=\"/usr/lib/kiln/cgroup-check --x\" "
      "kiln.uid=1000");
  sys.existing = {"/dev/vda"};
  sys.events = {{250, SIGCHLD, 100, ExitedStatus(0)}};
  sys.now_ms = 1000;
  RunPid1(sys, {});
  ASSERT_EQ(sys.spawned.size(), 1u);
  EXPECT_EQ(sys.spawned[0].uid, 1000u);
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: step=root switched=/dev/vda overlay=tmpfs\n"));
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: ready uptime_ms=1000\n"));
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: exit status=0 uptime_ms=1250\n"));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: exit"), 1);
  // ready comes after the root switch, exit after ready.
  EXPECT_LT(sys.console.find("switched="), sys.console.find("ready"));
  EXPECT_LT(sys.console.find("ready"), sys.console.find("exit"));
  // The chroot happened before the spawn, the power off last.
  EXPECT_THAT(sys.calls, Contains("chroot ."));
  EXPECT_EQ(sys.calls.back(), "power-off");
}

TEST(RunPid1Test, ProgramKilledBySignal) {
  FakeSys sys = WithCmdline("kiln.exec=/bin/x");
  sys.events = {{10, SIGCHLD, 100, SignaledStatus(SIGSEGV)}};
  RunPid1(sys, {});
  EXPECT_THAT(Lines(sys.console), Contains(MatchesRegex("KILN-INIT: exit signal=11 uptime_ms=[0-9]+")));
}

TEST(RunPid1Test, ExecFailureIsFatal) {
  FakeSys sys = WithCmdline("kiln.exec=/nonexistent");
  sys.spawn_error = PosixError(ENOENT, "execve", "/nonexistent");
  RunPid1(sys, {});
  EXPECT_EQ(Count(sys.console, "KILN-INIT: ready"), 1);
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: fatal step=exec errno=2 (No such file or "
                                     "directory): execve /nonexistent"));
  EXPECT_EQ(Count(sys.console, "KILN-INIT: exit"), 0);
  EXPECT_EQ(sys.power_offs, 1);
}

TEST(RunPid1Test, RemainingProcessesAreKilledBeforePowerOff) {
  FakeSys sys = WithCmdline("kiln.exec=/bin/x");
  sys.live = {300};  // e.g. a daemon the program started
  sys.events = {{10, SIGCHLD, 100, ExitedStatus(0)}};
  sys.fatal_signals = {SIGTERM, SIGKILL};
  RunPid1(sys, {});
  EXPECT_THAT(sys.calls, Contains(absl::StrCat("kill-all ", SIGTERM)));
  EXPECT_TRUE(sys.live.empty());
  EXPECT_EQ(sys.calls.back(), "power-off");
}

}  // namespace
}  // namespace kiln::init
