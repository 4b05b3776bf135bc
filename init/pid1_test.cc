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
