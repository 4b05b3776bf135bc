// File: init/mount_plan_test.cc
#include "init/mount_plan.h"

#include <errno.h>
#include <sys/mount.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "init/fake_sys.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::init {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr unsigned long kNoSuidDevExec = MS_NOSUID | MS_NODEV | MS_NOEXEC;

TEST(MountPlanTest, BasePlanRows) {
  const std::vector<MountRow> want = {
      {"proc", "proc", "/proc", kNoSuidDevExec, "", "mount", true},
      {"sysfs", "sysfs", "/sys", kNoSuidDevExec, "", "mount", true},
      {"devtmpfs", "devtmpfs", "/dev", MS_NOSUID, "mode=0755", "mount", true},
      {"devpts", "devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666",
       "mount", true},
      {"tmpfs", "shm", "/dev/shm", MS_NOSUID | MS_NODEV, "mode=1777", "mount", true},
      {"tmpfs", "tmpfs", "/run", MS_NOSUID | MS_NODEV, "mode=0755", "mount", true},
  };
  EXPECT_EQ(BaseMountPlan(), want);
}

TEST(MountPlanTest, CgroupRowPerPolicy) {
  struct Row {
    CgroupPolicy policy;
    bool mounted;
    unsigned long flags;
  };
  const Row rows[] = {
      {CgroupPolicy::kReadWrite, true, kNoSuidDevExec},
      {CgroupPolicy::kReadOnly, true, kNoSuidDevExec | MS_RDONLY},
      {CgroupPolicy::kOff, false, 0},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(CgroupPolicyName(row.policy));
    std::optional<MountRow> got = CgroupMountFor(row.policy);
    ASSERT_EQ(got.has_value(), row.mounted);
    Config config;
    config.cgroup = row.policy;
    std::vector<MountRow> plan = InitMountPlan(config);
    EXPECT_EQ(plan.size(), BaseMountPlan().size() + (row.mounted ? 1 : 0));
    if (!row.mounted) continue;
    EXPECT_EQ(*got, (MountRow{"cgroup2", "cgroup2", "/sys/fs/cgroup", row.flags, "", "cgroup",
                              false}));
    EXPECT_EQ(plan.back(), *got);
  }
}

TEST(MountPlanTest, FlagsString) {
  EXPECT_EQ(FlagsString(0), "none");
  EXPECT_EQ(FlagsString(MS_RDONLY | MS_NOSUID), "ro,nosuid");
  EXPECT_EQ(FlagsString(MS_BIND | MS_REMOUNT | MS_RDONLY), "ro,remount,bind");
  EXPECT_EQ(FlagsString(MS_MOVE | MS_SYNCHRONOUS), "move,0x10");
}

TEST(ApplyMountsTest, MountsEveryRowInOrder) {
  FakeSys sys;
  Console console(sys);
  ASSERT_OK(ApplyMounts(sys, console, InitMountPlan(Config{})));
  std::vector<std::string> mounts;
  for (const std::string& c : sys.calls) {
    if (c.rfind("mount ", 0) == 0) mounts.push_back(c);
  }
  ASSERT_EQ(mounts.size(), 7u);
  EXPECT_THAT(mounts[0], HasSubstr("mount proc proc /proc"));
  EXPECT_THAT(mounts[6], HasSubstr("mount cgroup2 cgroup2 /sys/fs/cgroup"));
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: step=cgroup fstype=cgroup2 "
                                     "target=/sys/fs/cgroup flags=nosuid,nodev,noexec\n"));
}

TEST(ApplyMountsTest, SkipsTargetsAlreadyMounted) {
  FakeSys sys;
  sys.mount_points = {"/dev"};
  Console console(sys);
  ASSERT_OK(ApplyMounts(sys, console, BaseMountPlan()));
  for (const std::string& c : sys.calls) EXPECT_THAT(c, Not(HasSubstr(" /dev flags")));
  EXPECT_THAT(sys.console, HasSubstr("step=mount target=/dev skipped=already-mounted"));
}

TEST(ApplyMountsTest, CgroupFailureIsAWarningAndContinues) {
  FakeSys sys;
  sys.mount_errors["/sys/fs/cgroup"] =
      PosixError(ENODEV, "mount cgroup2 cgroup2", "/sys/fs/cgroup");
  Console console(sys);
  std::vector<MountRow> rows = InitMountPlan(Config{});
  rows.push_back({"tmpfs", "tmpfs", "/after", 0, "", "mount", true});
  ASSERT_OK(ApplyMounts(sys, console, rows));
  EXPECT_THAT(sys.console,
              HasSubstr("KILN-INIT: warning step=cgroup errno=19 (No such device): mount "
                        "cgroup2 cgroup2 /sys/fs/cgroup: No such device\n"));
  EXPECT_EQ(sys.calls.back(), "mount tmpfs tmpfs /after flags=0 data=");
}

TEST(ApplyMountsTest, RequiredFailureStops) {
  FakeSys sys;
  sys.mount_errors["/sys"] = PosixError(EPERM, "mount sysfs sysfs", "/sys");
  Console console(sys);
  EXPECT_THAT(ApplyMounts(sys, console, BaseMountPlan()),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("/sys")));
  for (const std::string& c : sys.calls) EXPECT_THAT(c, Not(HasSubstr("/dev")));
}

TEST(ApplyMountsTest, MkdirFailureOfRequiredRowStops) {
  FakeSys sys;
  sys.mkdir_errors["/proc"] = PosixError(EACCES, "mkdir", "/proc");
  Console console(sys);
  EXPECT_THAT(ApplyMounts(sys, console, BaseMountPlan()),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("mkdir /proc")));
}

}  // namespace
}  // namespace kiln::init
