// File: harness/process_test.cc
// The process executor against real, tiny processes (sh, sleep).
#include "harness/process.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

std::string TmpFile(const char* name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ProcessTest, ExitCodeAndOutputFile) {
  std::string out = TmpFile("out.txt");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Process> p,
                       Process::Spawn({{"sh", "-c", "echo hello; echo err >&2; exit 7"}, out}));
  ASSERT_OK_AND_ASSIGN(ProcessExit e, p->Wait(absl::Seconds(10)));
  EXPECT_FALSE(e.signaled);
  EXPECT_EQ(e.exit_code, 7);
  EXPECT_GT(e.max_rss_bytes, 0);
  EXPECT_EQ(Slurp(out), "hello\nerr\n");
  // Kill after exit is a no-op returning the same exit.
  EXPECT_EQ(p->Kill(absl::Seconds(1)).exit_code, 7);
}

// A VMM (or any tool the harness runs) must not inherit what the harness or its test runner
// ignores (SIGPIPE, SIGINT, SIGHUP, SIGUSR1 here) or blocks.
TEST(ProcessTest, ChildStartsWithDefaultSignalDispositionsAndAnEmptyMask) {
  std::string out = TmpFile("sig.txt");
  struct sigaction ign, old[4];
  memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  const int sigs[4] = {SIGPIPE, SIGINT, SIGHUP, SIGUSR1};
  for (int i = 0; i < 4; ++i) sigaction(sigs[i], &ign, &old[i]);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  absl::StatusOr<std::unique_ptr<Process>> p =
      Process::Spawn({{"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"}, out});
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  for (int i = 0; i < 4; ++i) sigaction(sigs[i], &old[i], nullptr);
  ASSERT_OK(p);
  ASSERT_OK_AND_ASSIGN(ProcessExit e, (*p)->Wait(absl::Seconds(10)));
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_EQ(Slurp(out), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST(ProcessTest, MissingProgramIsNotFound) {
  EXPECT_THAT(Process::Spawn({{"/nonexistent/kiln-no-such-binary"}, ""}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("kiln-no-such-binary")));
  EXPECT_THAT(Process::Spawn({{}, ""}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST(ProcessTest, ReleasedChildOutlivesKillAndDestructor) {
  pid_t pid = 0;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Process> p,
                         Process::Spawn({{"sleep", "300"}, "", /*die_with_parent=*/false}));
    pid = p->pid();
    p->Release();
    EXPECT_TRUE(p->released());
    p->Kill(absl::Seconds(1));  // no-op
    EXPECT_THAT(p->Wait(absl::Milliseconds(10)),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("released")));
  }  // the destructor leaves it running too
  EXPECT_EQ(kill(pid, 0), 0);
  kill(-pid, SIGKILL);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
}

TEST(ProcessTest, WaitTimesOutThenKillTakesTheWholeGroup) {
  std::string pidfile = TmpFile("grandchild.pid");
  unlink(pidfile.c_str());
  // The shell starts a grandchild (sleep) in the same group, records its pid, and waits.
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Process> p,
      Process::Spawn({{"sh", "-c", "trap '' TERM; sleep 300 & echo $! > " + pidfile + "; wait"}, ""}));
  EXPECT_THAT(p->Wait(absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("still running")));
  pid_t grandchild = 0;
  for (int i = 0; i < 200 && grandchild == 0; ++i) {
    std::istringstream(Slurp(pidfile)) >> grandchild;
    if (grandchild == 0) usleep(10000);
  }
  ASSERT_GT(grandchild, 0);
  EXPECT_EQ(getpgid(grandchild), p->pid());
  // sh ignores TERM: Kill must fall back to SIGKILL after the grace period.
  ProcessExit e = p->Kill(absl::Milliseconds(200));
  EXPECT_TRUE(e.signaled);
  EXPECT_EQ(e.signal, SIGKILL);
  // The grandchild got SIGKILL too (it is gone or a zombie of init soon).
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = kill(grandchild, 0) != 0 ||
           Slurp("/proc/" + std::to_string(grandchild) + "/stat").find(") Z") != std::string::npos;
    if (!gone) usleep(10000);
  }
  EXPECT_TRUE(gone) << "grandchild " << grandchild << " survived";
}

TEST(ProcessTest, DestructorKills) {
  pid_t pid;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Process> p, Process::Spawn({{"sleep", "300"}, ""}));
    pid = p->pid();
    EXPECT_EQ(kill(pid, 0), 0);
  }
  EXPECT_NE(kill(pid, 0), 0);  // reaped: no such process
}

}  // namespace
}  // namespace kiln::harness
