// Pure tests of the rootless plan (rootless.h): mountinfo, preconditions and their texts,
// argv/env, the cgroup plan.
#include "agent/runner/rootless.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent::runner {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Real mountinfo lines: a kiln builder guest (cgroup2 rw, as init mounts it), the same
// read-only, and this Debian 12 host (cgroup v1 with a tmpfs at /sys/fs/cgroup).
constexpr char kGuestRw[] =
    "22 1 254:0 / / ro,relatime - ext4 /dev/vda ro\n"
    "35 22 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n";
constexpr char kGuestRo[] =
    "35 22 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n";
constexpr char kHostV1[] =
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
constexpr char kSystemd[] =
    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

TEST(Cgroup2MountAtTest, RealMountinfo) {
  EXPECT_EQ(Cgroup2MountAt(kGuestRw, "/sys/fs/cgroup"), Cgroup2Mount::kReadWrite);
  EXPECT_EQ(Cgroup2MountAt(kGuestRo, "/sys/fs/cgroup"), Cgroup2Mount::kReadOnly);
  EXPECT_EQ(Cgroup2MountAt(kHostV1, "/sys/fs/cgroup"), Cgroup2Mount::kNotMounted);
  EXPECT_EQ(Cgroup2MountAt(kHostV1, "/sys/fs/cgroup/unified"), Cgroup2Mount::kReadWrite);
  EXPECT_EQ(Cgroup2MountAt(kSystemd, "/sys/fs/cgroup"), Cgroup2Mount::kReadWrite);
  EXPECT_EQ(Cgroup2MountAt("", "/sys/fs/cgroup"), Cgroup2Mount::kNotMounted);
  EXPECT_EQ(Cgroup2MountAt("garbage\n1 2\n", "/sys/fs/cgroup"), Cgroup2Mount::kNotMounted);
  // A tmpfs mounted over the cgroup2 hides it.
  EXPECT_EQ(Cgroup2MountAt(std::string(kGuestRw) +
                               "50 35 0:40 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n",
                           "/sys/fs/cgroup"),
            Cgroup2Mount::kNotMounted);
}

RootlessFacts Delegated() {
  RootlessFacts f;
  f.tun_present = true;
  f.cgroup2 = Cgroup2Mount::kReadWrite;
  f.delegated_exists = true;
  f.delegated_owner = 1000;
  f.delegated_procs_owner = 1000;
  return f;
}

TEST(CheckRootlessPreconditionsTest, DelegatedIsOk) {
  EXPECT_THAT(CheckRootlessPreconditions(RootlessConfig{}, Delegated()), IsOk());
}

TEST(CheckRootlessPreconditionsTest, StackMissingNamesTheFileAndTheFix) {
  RootlessFacts f = Delegated();
  f.missing_stack = {"/usr/share/docker.io/contrib/dockerd-rootless.sh"};
  EXPECT_THAT(
      CheckRootlessPreconditions(RootlessConfig{}, f),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("rootless builder: /usr/share/docker.io/contrib/dockerd-rootless.sh"
                               " is missing"),
                     HasSubstr("use the Debian 13 builder disk or --builder_mode=rootful"))));
  f.missing_stack.push_back("/usr/bin/rootlesskit");
  EXPECT_THAT(CheckRootlessPreconditions(RootlessConfig{}, f),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("dockerd-rootless.sh, /usr/bin/rootlesskit are missing")));
}

TEST(CheckRootlessPreconditionsTest, NoTun) {
  RootlessFacts f = Delegated();
  f.tun_present = false;
  EXPECT_THAT(CheckRootlessPreconditions(RootlessConfig{}, f),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("rootless builder: /dev/net/tun is missing")));
}

TEST(CheckRootlessPreconditionsTest, NotDelegated) {
  RootlessFacts f = Delegated();
  f.delegated_exists = false;
  EXPECT_THAT(CheckRootlessPreconditions(RootlessConfig{}, f),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("rootless builder: cgroup v2 is mounted but no subtree is "
                                 "delegated to uid 1000 (/sys/fs/cgroup/kiln-builder missing; "
                                 "boot with kiln.delegate=1000)")));
  f = Delegated();
  f.delegated_owner = 0;
  f.delegated_procs_owner = 0;
  EXPECT_THAT(CheckRootlessPreconditions(RootlessConfig{}, f),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("/sys/fs/cgroup/kiln-builder is owned by uid 0")));
}

TEST(CheckRootlessPreconditionsTest, ReadOnlyRefused) {
  RootlessFacts f = Delegated();
  f.cgroup2 = Cgroup2Mount::kReadOnly;
  EXPECT_THAT(CheckRootlessPreconditions(RootlessConfig{}, f),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("rootless builder: read-only cgroup2 at /sys/fs/cgroup")));
}

TEST(CheckRootlessPreconditionsTest, NotMountedIsLetThroughForRuncToReport) {
  RootlessFacts f = Delegated();
  f.cgroup2 = Cgroup2Mount::kNotMounted;
  f.delegated_exists = false;
  EXPECT_THAT(CheckRootlessPreconditions(RootlessConfig{}, f), IsOk());
}

TEST(RootlessPlanTest, ArgvEnvLayout) {
  RootlessConfig c;
  RootlessLayout l = MakeRootlessLayout(c);
  EXPECT_EQ(l.socket, "/run/user/1000/docker.sock");
  EXPECT_EQ(l.daemon_leaf, "/sys/fs/cgroup/kiln-builder/daemon");
  EXPECT_EQ(l.cgroup_prefix, "/kiln-builder/");
  EXPECT_EQ(l.daemon_cgroup, "/kiln-builder/daemon");
  EXPECT_THAT(RootlessDockerdArgv(c, l),
              ElementsAre("/usr/share/docker.io/contrib/dockerd-rootless.sh", "--iptables=false",
                          "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                          "--cgroup-parent=/kiln-builder/buildkit", "--shutdown-timeout=2",
                          "--data-root=/home/builder/.local/share/docker",
                          "--exec-root=/run/user/1000/docker",
                          "--pidfile=/run/user/1000/docker.pid",
                          "--host=unix:///run/user/1000/docker.sock"));
  EXPECT_THAT(RootlessDaemonEnv(c),
              ElementsAre("HOME=/home/builder", "XDG_RUNTIME_DIR=/run/user/1000",
                          "PATH=/usr/sbin:/usr/bin:/sbin:/bin"));
}

TEST(RootlessPlanTest, CgroupPlanEnablesOfferedControllersOnly) {
  RootlessLayout l = MakeRootlessLayout(RootlessConfig{});
  // The 6.1 cloud kernel's root offers these (ROOTLESS.md); the delegated cgroup offers what
  // init enabled.
  RootlessCgroupPlan p = MakeRootlessCgroupPlan(l, "cpuset cpu io memory pids\n");
  EXPECT_EQ(p.leaf, "/sys/fs/cgroup/kiln-builder/daemon");
  EXPECT_THAT(p.chown_paths, ElementsAre("/sys/fs/cgroup/kiln-builder/daemon",
                                         "/sys/fs/cgroup/kiln-builder/daemon/cgroup.procs",
                                         "/sys/fs/cgroup/kiln-builder/daemon/cgroup.subtree_control",
                                         "/sys/fs/cgroup/kiln-builder/daemon/cgroup.threads"));
  ASSERT_EQ(p.writes.size(), 1u);
  EXPECT_EQ(p.writes[0].path, "/sys/fs/cgroup/kiln-builder/cgroup.subtree_control");
  EXPECT_EQ(p.writes[0].contents, "+cpu +cpuset +io +memory +pids");
  EXPECT_EQ(p.leaf_procs, "/sys/fs/cgroup/kiln-builder/daemon/cgroup.procs");
  EXPECT_EQ(MakeRootlessCgroupPlan(l, "memory pids hugetlb").writes[0].contents,
            "+memory +pids");
  EXPECT_TRUE(MakeRootlessCgroupPlan(l, "").writes.empty());
}

}  // namespace
}  // namespace kiln::agent::runner
