// step_procs.h on real /proc samples: a rootless RUN step's `sh -c` seen from the guest's root
// (ROOTLESS.md: Uid 1000 1000 1000 1000 in 0::/kiln-builder/<id>), a rootful one (Uid 0 ...
// in 0::/docker/buildkit/<id>), and this process's own /proc.
#include "agent/runner/step_procs.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::agent::runner {
namespace {


constexpr char kRootlessStatus[] =
    "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t812\nNgid:\t0\nPid:\t812\n"
    "PPid:\t797\nTracerPid:\t0\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n"
    "FDSize:\t64\nGroups:\t \nNStgid:\t812\t1\n";
constexpr char kRootfulStatus[] =
    "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n";

TEST(StepProcsTest, ParsesRealStatus) {
  std::optional<ProcIds> u = ParseStatusIds(kRootlessStatus, "Uid");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->ids, (std::array<long, 4>{1000, 1000, 1000, 1000}));
  EXPECT_EQ(ParseStatusName(kRootlessStatus), "sh");
  EXPECT_EQ(ParseStatusIds(kRootfulStatus, "Gid")->ids, (std::array<long, 4>{0, 0, 0, 0}));
  EXPECT_EQ(ParseStatusName(kRootfulStatus), "sleep");
}

TEST(StepProcsTest, MalformedStatus) {
  EXPECT_FALSE(ParseStatusIds("", "Uid").has_value());
  EXPECT_FALSE(ParseStatusIds("Uid:\t1000\t1000\n", "Uid").has_value());
  EXPECT_FALSE(ParseStatusIds("Uid:\t1000\tx\t1000\t1000\n", "Uid").has_value());
  EXPECT_FALSE(ParseStatusIds("Uid:\t-1\t0\t0\t0\n", "Uid").has_value());
  EXPECT_FALSE(ParseStatusIds("Uids:\t0\t0\t0\t0\n", "Uid").has_value());
  EXPECT_EQ(ParseStatusName("Umask:\t0022\n"), "");
}

TEST(StepProcsTest, CgroupLines) {
  EXPECT_EQ(UnifiedCgroupPath("0::/kiln-builder/x7q2\n"), "/kiln-builder/x7q2");
  // A v1 + v2 host (this Debian 12 machine's shape).
  EXPECT_EQ(UnifiedCgroupPath("9:name=systemd:/\n4:memory:/a\n0::/\n"), "/");
  EXPECT_FALSE(UnifiedCgroupPath("4:memory:/a\n").has_value());
  const std::vector<std::string> prefix = {"/kiln-builder/"};
  const std::vector<std::string> daemon = {"/kiln-builder/daemon"};
  EXPECT_TRUE(IsStepCgroup("/kiln-builder/x7q2", prefix, daemon));
  EXPECT_TRUE(IsStepCgroup("/kiln-builder/buildkit/x7q2", prefix, daemon));
  EXPECT_FALSE(IsStepCgroup("/kiln-builder/daemon", prefix, daemon));
  EXPECT_FALSE(IsStepCgroup("/", prefix, daemon));
  EXPECT_TRUE(IsStepCgroup("/docker/buildkit/x", {"/docker/"}, {}));
}

TEST(StepProcsTest, LineFormat) {
  EXPECT_EQ(StepLine(812, "sh", *ParseStatusIds(kRootlessStatus, "Uid"), "/kiln-builder/x7q2"),
            "kiln: RUN step process 812 (sh): Uid 1000 1000 1000 1000 in cgroup "
            "/kiln-builder/x7q2");
}

TEST(StepWatcherTest, FindsThisProcessOnceByItsCgroup) {
  std::ifstream in("/proc/self/cgroup");
  std::stringstream s;
  s << in.rdbuf();
  std::optional<std::string> mine = UnifiedCgroupPath(s.str());
  if (!mine.has_value()) GTEST_SKIP() << "no cgroup v2 line in /proc/self/cgroup";
  StepWatcher w("/proc", {*mine}, {});
  std::vector<std::string> lines = w.Poll();
  bool found = false;
  const std::string want = "kiln: RUN step process " + std::to_string(getpid()) + " (";
  for (const std::string& l : lines) found = found || l.rfind(want, 0) == 0;
  EXPECT_TRUE(found) << "no line for pid " << getpid() << " among " << lines.size();
  for (const std::string& l : w.Poll()) EXPECT_EQ(l.rfind(want, 0), std::string::npos) << l;
  EXPECT_TRUE(StepWatcher("/nonexistent", {"/"}, {}).Poll().empty());
}

}  // namespace
}  // namespace kiln::agent::runner
