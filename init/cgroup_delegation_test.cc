// File: init/cgroup_delegation_test.cc
// The delegation plan (pure) per root cgroup.controllers, and its executor against FakeSys.
#include "init/cgroup_delegation.h"

#include <errno.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "init/cgroup_names.h"
#include "init/fake_sys.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::init {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The root's cgroup.controllers of the Debian 12 cloud 6.1 kernel, as read in a kiln VM.
constexpr absl::string_view kCloudKernelControllers =
    "cpuset cpu io memory hugetlb pids rdma misc\n";

std::vector<std::string> OpStrings(const DelegationPlan& plan) {
  std::vector<std::string> out;
  for (const CgroupOp& op : plan.ops) out.push_back(CgroupOpString(op));
  return out;
}

TEST(CgroupNamesTest, PathIsMountPointPlusName) {
  EXPECT_EQ(cgroup::kDelegatedPath, absl::StrCat(cgroup::kMountPoint, "/", cgroup::kDelegatedName));
}

// The whole plan on the real kernel's controllers: enable top-down in the root, mkdir, then
// chown the directory and exactly cgroup.procs, cgroup.subtree_control, cgroup.threads.
TEST(PlanDelegationTest, CloudKernelPlan) {
  ASSERT_OK_AND_ASSIGN(DelegationPlan plan,
                       PlanDelegation(CgroupDelegate{1000, 1000}, kCloudKernelControllers));
  EXPECT_EQ(plan.path, "/sys/fs/cgroup/kiln-builder");
  EXPECT_THAT(plan.controllers, ElementsAre("cpu", "cpuset", "io", "memory", "pids"));
  EXPECT_THAT(plan.missing, IsEmpty());
  EXPECT_THAT(OpStrings(plan),
              ElementsAre("write /sys/fs/cgroup/cgroup.subtree_control +cpu +cpuset +io +memory +pids",
                          "mkdir /sys/fs/cgroup/kiln-builder 0755",
                          "chown /sys/fs/cgroup/kiln-builder 1000:1000",
                          "chown /sys/fs/cgroup/kiln-builder/cgroup.procs 1000:1000",
                          "chown /sys/fs/cgroup/kiln-builder/cgroup.subtree_control 1000:1000",
                          "chown /sys/fs/cgroup/kiln-builder/cgroup.threads 1000:1000"));
}

// Only controllers the root offers are enabled (writing an absent one fails the whole write
// with EINVAL); the absent ones are reported; the gid is passed through; the mount point too.
TEST(PlanDelegationTest, ControllersPerRootController) {
  struct Row {
    const char* root_controllers;
    std::vector<std::string> enabled;
    std::vector<std::string> missing;
    const char* write;  // "" = no write op
  };
  const Row rows[] = {
      {"memory pids\n", {"memory", "pids"}, {"cpu", "cpuset", "io"},
       "write /m/cgroup.subtree_control +memory +pids"},
      {"pids hugetlb", {"pids"}, {"cpu", "cpuset", "io", "memory"},
       "write /m/cgroup.subtree_control +pids"},
      {"", {}, {"cpu", "cpuset", "io", "memory", "pids"}, ""},
      {"\n", {}, {"cpu", "cpuset", "io", "memory", "pids"}, ""},
      {"misc rdma", {}, {"cpu", "cpuset", "io", "memory", "pids"}, ""},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.root_controllers);
    ASSERT_OK_AND_ASSIGN(DelegationPlan plan,
                         PlanDelegation(CgroupDelegate{1000, 100}, row.root_controllers, "/m"));
    EXPECT_EQ(plan.controllers, row.enabled);
    EXPECT_EQ(plan.missing, row.missing);
    std::vector<std::string> ops = OpStrings(plan);
    ASSERT_FALSE(ops.empty());
    if (*row.write) {
      EXPECT_EQ(ops.front(), row.write);
      EXPECT_EQ(ops.size(), 6u);
    } else {
      EXPECT_EQ(ops.front(), "mkdir /m/kiln-builder 0755");
      EXPECT_EQ(ops.size(), 5u);
    }
    EXPECT_EQ(ops.back(), "chown /m/kiln-builder/cgroup.threads 1000:100");
  }
}

TEST(PlanDelegationTest, RefusesRootAndMalformedControllers) {
  EXPECT_THAT(PlanDelegation(CgroupDelegate{0, 0}, kCloudKernelControllers),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uid 0")));
  EXPECT_THAT(PlanDelegation(CgroupDelegate{1000, 1000}, "cpu +memory"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"+memory\"")));
  EXPECT_THAT(PlanDelegation(CgroupDelegate{1000, 1000}, "cpu Memory"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a controller name")));
}

TEST(ParseControllersTest, SpaceSeparatedNames) {
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> c, ParseControllers(kCloudKernelControllers));
  EXPECT_THAT(c, ElementsAre("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"));
  ASSERT_OK_AND_ASSIGN(c, ParseControllers(""));
  EXPECT_THAT(c, IsEmpty());
}

TEST(ApplyDelegationTest, RunsTheOpsInOrderAndReports) {
  FakeSys sys;
  Console console(sys);
  ASSERT_OK_AND_ASSIGN(DelegationPlan plan,
                       PlanDelegation(CgroupDelegate{1000, 1000}, kCloudKernelControllers));
  ASSERT_OK(ApplyDelegation(sys, console, plan));
  EXPECT_THAT(sys.calls,
              ElementsAre("write /sys/fs/cgroup/cgroup.subtree_control +cpu +cpuset +io +memory +pids",
                          "mkdir /sys/fs/cgroup/kiln-builder",
                          "chown /sys/fs/cgroup/kiln-builder 1000:1000",
                          "chown /sys/fs/cgroup/kiln-builder/cgroup.procs 1000:1000",
                          "chown /sys/fs/cgroup/kiln-builder/cgroup.subtree_control 1000:1000",
                          "chown /sys/fs/cgroup/kiln-builder/cgroup.threads 1000:1000"));
  EXPECT_EQ(sys.console,
            "KILN-INIT: step=delegate path=/sys/fs/cgroup/kiln-builder uid=1000 gid=1000 "
            "controllers=cpu,cpuset,io,memory,pids\n");
  // Nothing else in the directory was chowned (the resource knobs stay root's).
  for (const auto& [path, info] : sys.nodes) {
    if (path.rfind("/sys/fs/cgroup/kiln-builder", 0) == 0) {
      EXPECT_EQ(info.uid, 1000u) << path;
    }
  }
  EXPECT_EQ(sys.nodes.count("/sys/fs/cgroup/kiln-builder/memory.max"), 0u);
}

TEST(ApplyDelegationTest, ReportsMissingControllers) {
  FakeSys sys;
  Console console(sys);
  ASSERT_OK_AND_ASSIGN(DelegationPlan plan, PlanDelegation(CgroupDelegate{1000, 5}, "pids\n"));
  ASSERT_OK(ApplyDelegation(sys, console, plan));
  EXPECT_EQ(sys.console,
            "KILN-INIT: step=delegate path=/sys/fs/cgroup/kiln-builder uid=1000 gid=5 "
            "controllers=pids missing=cpu,cpuset,io,memory\n");
}

// The first failing op stops the plan and is returned as is; nothing is printed.
TEST(ApplyDelegationTest, FirstFailureStops) {
  FakeSys sys;
  Console console(sys);
  sys.write_errors["/sys/fs/cgroup/cgroup.subtree_control"] =
      PosixError(EBUSY, "write \"+cpu\" to", "/sys/fs/cgroup/cgroup.subtree_control");
  ASSERT_OK_AND_ASSIGN(DelegationPlan plan,
                       PlanDelegation(CgroupDelegate{1000, 1000}, kCloudKernelControllers));
  EXPECT_THAT(ApplyDelegation(sys, console, plan),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cgroup.subtree_control: Device or resource busy")));
  EXPECT_EQ(sys.calls.size(), 1u);
  EXPECT_EQ(sys.console, "");

  FakeSys sys2;
  Console console2(sys2);
  sys2.chown_errors["/sys/fs/cgroup/kiln-builder/cgroup.procs"] =
      PosixError(EPERM, "chown 1000:1000", "/sys/fs/cgroup/kiln-builder/cgroup.procs");
  EXPECT_THAT(ApplyDelegation(sys2, console2, plan),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("cgroup.procs")));
  EXPECT_EQ(sys2.calls.back(), "chown /sys/fs/cgroup/kiln-builder/cgroup.procs 1000:1000");
}

}  // namespace
}  // namespace kiln::init
