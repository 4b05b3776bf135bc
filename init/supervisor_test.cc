// File: init/supervisor_test.cc
// The supervisor loop against a scripted FakeSys (see supervisor_process_test.cc for real
// processes).
#include "init/supervisor.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "init/fake_sys.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::init {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

SpawnSpec Spec() {
  Config c;
  c.exec = {"/usr/lib/kiln/check", "cgroup"};
  return SpawnSpecFor(c);
}

TEST(SpawnSpecForTest, EnvAndCredentials) {
  Config c;
  c.exec = {"agent", "--x"};
  c.uid = 1000;
  c.gid = 1001;
  SpawnSpec s = SpawnSpecFor(c);
  EXPECT_THAT(s.argv, ElementsAre("agent", "--x"));
  EXPECT_EQ(s.uid, 1000u);
  EXPECT_EQ(s.gid, 1001u);
  EXPECT_THAT(s.env, ElementsAre(absl::StrCat("PATH=", kDefaultPath), "HOME=/", "TERM=linux"));
  EXPECT_EQ(s.console, "/dev/console");
  c.uid = 0;
  EXPECT_THAT(SpawnSpecFor(c).env, Contains("HOME=/root"));
}

TEST(IsForwardedSignalTest, Table) {
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGPWR}) {
    EXPECT_TRUE(IsForwardedSignal(sig)) << sig;
  }
  for (int sig : {0, SIGCHLD, SIGKILL, SIGSTOP}) EXPECT_FALSE(IsForwardedSignal(sig)) << sig;
}

TEST(SuperviseTest, ReturnsExitStatus) {
  FakeSys sys;
  sys.events = {{50, SIGCHLD, 100, ExitedStatus(3)}};
  Console console(sys);
  ASSERT_OK_AND_ASSIGN(ProgramExit e, Supervise(sys, console, Spec(), {}));
  EXPECT_TRUE(WIFEXITED(e.wait_status));
  EXPECT_EQ(WEXITSTATUS(e.wait_status), 3);
  EXPECT_FALSE(e.deadline_hit);
  ASSERT_EQ(sys.spawned.size(), 1u);
  EXPECT_THAT(sys.spawned[0].argv, ElementsAre("/usr/lib/kiln/check", "cgroup"));
}

TEST(SuperviseTest, ReapsOrphansWhileWaiting) {
  FakeSys sys;
  sys.live = {200, 201};  // orphans reparented to PID 1
  sys.events = {{10, SIGCHLD, 200, ExitedStatus(0)},
                {10, SIGCHLD, 201, SignaledStatus(SIGSEGV)},
                {10, SIGCHLD, 100, SignaledStatus(SIGABRT)}};
  Console console(sys);
  ASSERT_OK_AND_ASSIGN(ProgramExit e, Supervise(sys, console, Spec(), {}));
  EXPECT_TRUE(WIFSIGNALED(e.wait_status));
  EXPECT_EQ(WTERMSIG(e.wait_status), SIGABRT);
  EXPECT_TRUE(sys.live.empty());
}

TEST(SuperviseTest, ForwardsSignalsButNotSigchld) {
  FakeSys sys;
  sys.events = {{0, SIGTERM, 0, 0},
                {0, SIGHUP, 0, 0},
                {0, SIGINT, 0, 0},
                {0, SIGCHLD, 0, 0},
                {0, SIGCHLD, 100, SignaledStatus(SIGTERM)}};
  Console console(sys);
  ASSERT_OK_AND_ASSIGN(ProgramExit e, Supervise(sys, console, Spec(), {}));
  EXPECT_EQ(WTERMSIG(e.wait_status), SIGTERM);
  EXPECT_THAT(sys.calls, ElementsAre(absl::StrCat("kill 100 ", SIGTERM),
                                     absl::StrCat("kill 100 ", SIGHUP),
                                     absl::StrCat("kill 100 ", SIGINT)));
}

TEST(SuperviseTest, DeadlineSendsSigterm) {
  FakeSys sys;
  sys.fatal_signals = {SIGTERM, SIGKILL};
  Console console(sys);
  ASSERT_OK_AND_ASSIGN(ProgramExit e, Supervise(sys, console, Spec(), {1000, 2000}));
  EXPECT_TRUE(e.deadline_hit);
  EXPECT_EQ(WTERMSIG(e.wait_status), SIGTERM);
  EXPECT_EQ(sys.now_ms, 1000);
  EXPECT_THAT(sys.console, HasSubstr("KILN-INIT: step=deadline deadline_ms=1000 pid=100 "
                                     "signal=15\n"));
  EXPECT_THAT(sys.calls, Not(Contains(absl::StrCat("kill 100 ", SIGKILL))));
}

TEST(SuperviseTest, DeadlineEscalatesToSigkill) {
  FakeSys sys;
  sys.fatal_signals = {SIGKILL};  // the program ignores SIGTERM
  Console console(sys);
  ASSERT_OK_AND_ASSIGN(ProgramExit e, Supervise(sys, console, Spec(), {1000, 2000}));
  EXPECT_TRUE(e.deadline_hit);
  EXPECT_EQ(WTERMSIG(e.wait_status), SIGKILL);
  EXPECT_EQ(sys.now_ms, 3000);
  EXPECT_THAT(sys.calls, ElementsAre(absl::StrCat("kill 100 ", SIGTERM),
                                     absl::StrCat("kill 100 ", SIGKILL)));
}

TEST(SuperviseTest, NoDeadlineWaitsForever) {
  FakeSys sys;  // no events: the loop must ask for an unbounded wait (-1)
  Console console(sys);
  EXPECT_THAT(Supervise(sys, console, Spec(), {}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("would hang")));
}

TEST(SuperviseTest, SpawnFailureIsReturned) {
  FakeSys sys;
  sys.spawn_error = PosixError(ENOENT, "execve", "/usr/lib/kiln/check");
  Console console(sys);
  EXPECT_THAT(Supervise(sys, console, Spec(), {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("execve /usr/lib/kiln/check")));
}

TEST(KillRemainingTest, TermThenKillBounded) {
  FakeSys sys;
  sys.live = {200, 300};
  sys.fatal_signals = {SIGKILL};  // both ignore SIGTERM
  Console console(sys);
  EXPECT_EQ(KillRemaining(sys, console, 1000), 2);
  EXPECT_THAT(sys.calls, ElementsAre(absl::StrCat("kill-all ", SIGTERM),
                                     absl::StrCat("kill-all ", SIGKILL)));
  EXPECT_GE(sys.now_ms, 1000);
  EXPECT_LE(sys.now_ms, 1100);
  EXPECT_TRUE(sys.live.empty());
}

TEST(KillRemainingTest, TermSuffices) {
  FakeSys sys;
  sys.live = {200};
  sys.fatal_signals = {SIGTERM, SIGKILL};
  Console console(sys);
  EXPECT_EQ(KillRemaining(sys, console, 1000), 1);
  EXPECT_THAT(sys.calls, ElementsAre(absl::StrCat("kill-all ", SIGTERM)));
  EXPECT_EQ(sys.now_ms, 0);
}

TEST(KillRemainingTest, NothingLeft) {
  FakeSys sys;
  Console console(sys);
  EXPECT_EQ(KillRemaining(sys, console, 1000), 0);
  EXPECT_EQ(sys.now_ms, 0);
}

}  // namespace
}  // namespace kiln::init
