// File: init/root_switch_test.cc
#include "init/root_switch.h"

#include <errno.h>
#include <sys/mount.h>

#include <algorithm>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "init/fake_sys.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::init {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::vector<std::string> Strings(const std::vector<RootOp>& plan) {
  std::vector<std::string> out;
  for (const RootOp& op : plan) out.push_back(RootOpString(op));
  return out;
}

Config RootConfig(CgroupPolicy cgroup, const std::string& overlay = "tmpfs") {
  Config c;
  c.root = "/dev/vda";
  c.cgroup = cgroup;
  c.overlay = overlay;
  return c;
}

TEST(RootSwitchPlanTest, TmpfsOverlayCgroupRw) {
  EXPECT_THAT(
      Strings(RootSwitchPlan(RootConfig(CgroupPolicy::kReadWrite), RootSwitchOptions{})),
      ElementsAreArray({
          "wait-device /dev/vda timeout_ms=10000",
          "mkdir /kiln/ro",
          "mount ext4 /dev/vda on /kiln/ro flags=ro",
          "mkdir /kiln/rw",
          "mount tmpfs kiln-rw on /kiln/rw flags=0x400 data=mode=0755",
          "mkdir /kiln/rw/upper",
          "mkdir /kiln/rw/work",
          "mkdir /newroot",
          "mount overlay overlay on /newroot flags=none "
          "data=lowerdir=/kiln/ro,upperdir=/kiln/rw/upper,workdir=/kiln/rw/work",
          "mkdir /newroot/proc",
          "mount - /proc on /newroot/proc flags=bind",
          "mkdir /newroot/sys",
          "mount - /sys on /newroot/sys flags=bind",
          "mkdir /newroot/sys/fs/cgroup",
          "mount - /sys/fs/cgroup on /newroot/sys/fs/cgroup flags=bind",
          "mkdir /newroot/dev",
          "mount - /dev on /newroot/dev flags=bind",
          "mkdir /newroot/dev/pts",
          "mount - /dev/pts on /newroot/dev/pts flags=bind",
          "mkdir /newroot/dev/shm",
          "mount - /dev/shm on /newroot/dev/shm flags=bind",
          "mkdir /newroot/run",
          "mount - /run on /newroot/run flags=bind",
          "chdir /newroot",
          "free-initramfs /",
          "mount - . on / flags=move",
          "chroot .",
          "chdir /",
      }));
}

TEST(RootSwitchPlanTest, CgroupPolicies) {
  struct Row {
    CgroupPolicy policy;
    bool bind;
    bool remount_ro;
  };
  const Row rows[] = {{CgroupPolicy::kReadWrite, true, false},
                      {CgroupPolicy::kReadOnly, true, true},
                      {CgroupPolicy::kOff, false, false}};
  for (const Row& row : rows) {
    SCOPED_TRACE(CgroupPolicyName(row.policy));
    std::vector<RootOp> plan = RootSwitchPlan(RootConfig(row.policy), RootSwitchOptions{});
    auto has = [&](const RootOp& want) {
      return std::find(plan.begin(), plan.end(), want) != plan.end();
    };
    RootOp bind;
    bind.kind = RootOp::kMount;
    bind.source = "/sys/fs/cgroup";
    bind.path = "/newroot/sys/fs/cgroup";
    bind.flags = MS_BIND;
    bind.required = false;
    EXPECT_EQ(has(bind), row.bind);
    RootOp ro;
    ro.kind = RootOp::kMount;
    ro.path = "/newroot/sys/fs/cgroup";
    ro.flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
    ro.required = true;
    EXPECT_EQ(has(ro), row.remount_ro);
    if (row.remount_ro) {
      // The remount comes right after its bind.
      auto it = std::find(plan.begin(), plan.end(), bind);
      ASSERT_NE(it, plan.end());
      EXPECT_EQ(*(it + 1), ro);
    }
  }
}

TEST(RootSwitchPlanTest, OverlayOnDiskAndOptions) {
  Config c = RootConfig(CgroupPolicy::kReadWrite, "/dev/vdb");
  c.rootfstype = "erofs";
  RootSwitchOptions o;
  o.device_wait_ms = 500;
  o.free_initramfs = false;
  std::vector<std::string> plan = Strings(RootSwitchPlan(c, o));
  EXPECT_EQ(plan[0], "wait-device /dev/vda timeout_ms=500");
  EXPECT_EQ(plan[1], "wait-device /dev/vdb timeout_ms=500");
  EXPECT_EQ(plan[3], "mount erofs /dev/vda on /kiln/ro flags=ro");
  EXPECT_EQ(plan[5], "mount ext4 /dev/vdb on /kiln/rw flags=0x400");
  EXPECT_EQ(std::count(plan.begin(), plan.end(), "free-initramfs /"), 0);
}

TEST(ExecuteRootSwitchTest, HappyPathRunsEveryOp) {
  FakeSys sys;
  sys.appears_at_ms["/dev/vda"] = 40;  // the node appears 40 ms after virtio_blk loaded
  Console console(sys);
  std::vector<RootOp> plan = RootSwitchPlan(RootConfig(CgroupPolicy::kReadOnly), {});
  ASSERT_OK(ExecuteRootSwitch(sys, console, plan));
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: step=root device=/dev/vda waited_ms=40\n"));
  EXPECT_THAT(sys.console,
              HasSubstr("step=root mount - - on /newroot/sys/fs/cgroup "
                        "flags=ro,nosuid,nodev,noexec,remount,bind\n"));
  ASSERT_GE(sys.calls.size(), 4u);
  EXPECT_EQ(sys.calls[sys.calls.size() - 4], "delete-tree /");
  EXPECT_EQ(sys.calls[sys.calls.size() - 3],
            absl::StrCat("mount  . / flags=", MS_MOVE, " data="));
  EXPECT_EQ(sys.calls[sys.calls.size() - 2], "chroot .");
  EXPECT_EQ(sys.calls.back(), "chdir /");
}

TEST(ExecuteRootSwitchTest, DeviceNeverAppearsIsBoundedAndFatal) {
  FakeSys sys;
  Console console(sys);
  RootSwitchOptions o;
  o.device_wait_ms = 300;
  EXPECT_THAT(ExecuteRootSwitch(sys, console, RootSwitchPlan(RootConfig(CgroupPolicy::kOff), o)),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("wait for device /dev/vda (300 ms)")));
  EXPECT_GE(sys.now_ms, 300);
  EXPECT_LT(sys.now_ms, 320);
  EXPECT_TRUE(sys.calls.empty());
}

TEST(ExecuteRootSwitchTest, RootMountFailureStops) {
  FakeSys sys;
  sys.existing = {"/dev/vda"};
  sys.mount_errors["/kiln/ro"] = PosixError(EINVAL, "mount ext4 /dev/vda", "/kiln/ro");
  Console console(sys);
  EXPECT_THAT(ExecuteRootSwitch(sys, console,
                                RootSwitchPlan(RootConfig(CgroupPolicy::kReadWrite), {})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/kiln/ro")));
  EXPECT_EQ(sys.calls.back(), absl::StrCat("mount ext4 /dev/vda /kiln/ro flags=", MS_RDONLY,
                                           " data="));
}

TEST(ExecuteRootSwitchTest, OptionalFailuresAreWarnings) {
  FakeSys sys;
  sys.existing = {"/dev/vda"};
  sys.mount_errors["/newroot/sys/fs/cgroup"] =
      PosixError(ENOENT, "mount - /sys/fs/cgroup", "/newroot/sys/fs/cgroup");
  sys.delete_tree_error = PosixError(EBUSY, "delete contents of", "/");
  Console console(sys);
  ASSERT_OK(ExecuteRootSwitch(sys, console,
                              RootSwitchPlan(RootConfig(CgroupPolicy::kReadWrite), {})));
  EXPECT_THAT(sys.console, HasSubstr("warning step=root errno=2"));
  EXPECT_THAT(sys.console, HasSubstr("warning step=root errno=16"));
  EXPECT_EQ(sys.calls.back(), "chdir /");
}

TEST(ExecuteRootSwitchTest, ReadOnlyRemountFailureIsFatal) {
  std::vector<RootOp> plan = RootSwitchPlan(RootConfig(CgroupPolicy::kReadOnly), {});
  // Fail only the remount: the bind (same target) succeeds first, so inject via a wrapper.
  struct FailRemount : FakeSys {
    absl::Status Mount(absl::string_view s, absl::string_view t, absl::string_view f,
                       unsigned long flags, absl::string_view d) override {
      if (flags & MS_REMOUNT) return PosixError(EPERM, "mount - -", t);
      return FakeSys::Mount(s, t, f, flags, d);
    }
  } failing;
  failing.existing = {"/dev/vda"};
  Console failing_console(failing);
  EXPECT_THAT(ExecuteRootSwitch(failing, failing_console, plan),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("/newroot/sys/fs/cgroup")));
  for (const std::string& c : failing.calls) EXPECT_NE(c, "chroot .");
}

}  // namespace
}  // namespace kiln::init
