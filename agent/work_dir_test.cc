// Tests of the work dir's marker and of mount-safe removal (work_dir.h). The mount test runs
// in a child process in its own mount namespace (root only; skipped, with the reason, where
// mounting is not allowed).
#include "agent/work_dir.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

std::string TempDir() {
  std::string t = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") +
                  "/workdir_XXXXXX";
  return mkdtemp(t.data());
}

bool Exists(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

TEST(WorkDirTest, CreatedWithItsMarkerAndClearedButTheMarker) {
  const std::string w = TempDir() + "/work";
  ASSERT_THAT(PrepareWorkDir(w), IsOk());
  EXPECT_TRUE(Exists(w + "/" + kWorkDirMarker));
  mkdir((w + "/job1").c_str(), 0700);
  mkdir((w + "/job1/deep").c_str(), 0700);
  std::ofstream(w + "/job1/deep/f") << "x";
  symlink("/etc", (w + "/job1/etc").c_str());  // removed as a link, never followed
  ASSERT_THAT(ClearWorkDir(w), IsOk());
  EXPECT_FALSE(Exists(w + "/job1"));
  EXPECT_TRUE(Exists(w + "/" + kWorkDirMarker));
  EXPECT_TRUE(Exists("/etc/passwd"));
  ASSERT_THAT(PrepareWorkDir(w), IsOk());  // again: fine
}

TEST(WorkDirTest, ADirWithoutTheMarkerIsNeverCleared) {
  const std::string w = TempDir();
  std::ofstream(w + "/precious") << "data";
  EXPECT_THAT(PrepareWorkDir(w), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("holds files but no marker file")));
  EXPECT_THAT(ClearWorkDir(w), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("has no marker file")));
  EXPECT_TRUE(Exists(w + "/precious"));
  const std::string empty = TempDir();
  EXPECT_THAT(PrepareWorkDir(empty), IsOk());  // an empty dir is adopted
  EXPECT_TRUE(Exists(empty + "/" + kWorkDirMarker));
  symlink(empty.c_str(), (w + "/link").c_str());
  EXPECT_THAT(PrepareWorkDir(w + "/link"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a directory")));
}

// Something mounted below a job dir (a bind mount, an overlay a crashed dockerd left, here a
// tmpfs and a bind mount of the same file system) survives the clear with all it holds.
TEST(WorkDirTest, ClearingNeverCrossesAMountPoint) {
  const std::string w = TempDir() + "/work";
  ASSERT_THAT(PrepareWorkDir(w), IsOk());
  const std::string outside = TempDir();
  std::ofstream(outside + "/host-file") << "keep me";
  const pid_t pid = fork();
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      _exit(77);
    }
    mkdir((w + "/job").c_str(), 0700);
    mkdir((w + "/job/tmpfs").c_str(), 0700);
    mkdir((w + "/job/bind").c_str(), 0700);
    if (mount("tmpfs", (w + "/job/tmpfs").c_str(), "tmpfs", 0, "size=1m") != 0) _exit(77);
    if (mount(outside.c_str(), (w + "/job/bind").c_str(), nullptr, MS_BIND, nullptr) != 0) _exit(77);
    std::ofstream(w + "/job/tmpfs/in-tmpfs") << "keep me too";
    std::ofstream(w + "/job/plain") << "remove me";
    const absl::Status s = ClearWorkDir(w);
    const bool ok = absl::IsFailedPrecondition(s) &&
                    s.message().find("job/tmpfs") != absl::string_view::npos &&
                    s.message().find("job/bind") != absl::string_view::npos &&
                    Exists(w + "/job/tmpfs/in-tmpfs") && Exists(outside + "/host-file") &&
                    !Exists(w + "/job/plain");
    if (!ok) fprintf(stderr, "ClearWorkDir: %s\n", s.ToString().c_str());
    umount2((w + "/job/tmpfs").c_str(), MNT_DETACH);
    umount2((w + "/job/bind").c_str(), MNT_DETACH);
    _exit(ok ? 0 : 1);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  if (WEXITSTATUS(st) == 77) GTEST_SKIP() << "cannot mount here (needs root and CAP_SYS_ADMIN)";
  EXPECT_EQ(WEXITSTATUS(st), 0);
  EXPECT_TRUE(Exists(outside + "/host-file"));
  ASSERT_THAT(ClearWorkDir(w), IsOk());  // unmounted now: all goes
  EXPECT_FALSE(Exists(w + "/job"));
}

TEST(WorkDirTest, RemoveTreeOfAMissingPathIsOk) {
  EXPECT_THAT(RemoveTree(TempDir() + "/absent"), IsOk());
}

}  // namespace
}  // namespace kiln::agent
