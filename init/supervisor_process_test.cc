// File: init/supervisor_process_test.cc
// The real supervisor (LinuxSys) over real processes (/bin/sh), without root: the test
// process makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so orphans are
// reparented to it as they would be to PID 1. KillAll is narrowed to the program's process
// group (the real one is kill(-1), which only PID 1 may use safely).
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "init/supervisor.h"
#include "init/syscalls.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::init {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

class TestSys : public LinuxSys {
 public:
  absl::StatusOr<pid_t> Spawn(const SpawnSpec& spec) override {
    absl::StatusOr<pid_t> pid = LinuxSys::Spawn(spec);
    if (pid.ok()) group_ = *pid;  // Spawn makes the program a session (and group) leader
    return pid;
  }
  absl::Status KillAll(int sig) override {
    return group_ > 0 ? Kill(-group_, sig) : absl::OkStatus();
  }
  void WriteConsole(absl::string_view text) override { absl::StrAppend(&console, text); }
  std::string console;

 private:
  pid_t group_ = 0;
};

class SupervisorProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    ASSERT_OK(sys_.BlockSignals());
  }
  void TearDown() override {
    KillRemaining(sys_, console_, 500);
    absl::StatusOr<ReapResult> r = sys_.ReapAny();
    ASSERT_OK(r.status());
    EXPECT_EQ(r->kind, ReapResult::kNoChildren) << "a child was left behind";
  }
  SpawnSpec Sh(const std::string& script) {
    Config c;
    c.exec = {"sh", "-c", script};  // found through PATH
    SpawnSpec spec = SpawnSpecFor(c);
    spec.uid = getuid();
    spec.gid = getgid();
    spec.console = "/dev/null";
    return spec;
  }
  TestSys sys_;
  Console console_{sys_};
};

TEST_F(SupervisorProcessTest, ExitStatus) {
  ASSERT_OK_AND_ASSIGN(ProgramExit e, Supervise(sys_, console_, Sh("exit 3"), {}));
  ASSERT_TRUE(WIFEXITED(e.wait_status));
  EXPECT_EQ(WEXITSTATUS(e.wait_status), 3);
  EXPECT_EQ(FormatExit(e.wait_status, 1), "KILN-INIT: exit status=3 uptime_ms=1\n");
}

TEST_F(SupervisorProcessTest, KilledBySignal) {
  ASSERT_OK_AND_ASSIGN(ProgramExit e, Supervise(sys_, console_, Sh("kill -9 $$"), {}));
  ASSERT_TRUE(WIFSIGNALED(e.wait_status));
  EXPECT_EQ(WTERMSIG(e.wait_status), SIGKILL);
}

TEST_F(SupervisorProcessTest, EnvironmentAndCwd) {
  ASSERT_OK_AND_ASSIGN(
      ProgramExit e,
      Supervise(sys_, console_,
                Sh("test \"$TERM\" = linux && test -n \"$HOME\" && test \"$(pwd)\" = / && "
                   "test \"$PATH\" = /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
                {}));
  EXPECT_EQ(WEXITSTATUS(e.wait_status), 0);
}

TEST_F(SupervisorProcessTest, OrphansAreReaped) {
  // The program exits at once and leaves a grandchild, reparented to us (the subreaper).
  ASSERT_OK_AND_ASSIGN(ProgramExit e,
                       Supervise(sys_, console_, Sh("sleep 5 & exit 4"), {}));
  EXPECT_EQ(WEXITSTATUS(e.wait_status), 4);
  EXPECT_EQ(KillRemaining(sys_, console_, 2000), 1);
}

TEST_F(SupervisorProcessTest, ZombiesReapedWhileProgramRuns) {
  // Three short-lived orphans end while the program still runs; none is left.
  ASSERT_OK_AND_ASSIGN(
      ProgramExit e,
      Supervise(sys_, console_, Sh("(true &) ; (true &) ; (true &) ; sleep 1; exit 0"), {}));
  EXPECT_EQ(WEXITSTATUS(e.wait_status), 0);
  EXPECT_EQ(KillRemaining(sys_, console_, 500), 0);
}

TEST_F(SupervisorProcessTest, DeadlineKillsTheProgram) {
  ASSERT_OK_AND_ASSIGN(ProgramExit e,
                       Supervise(sys_, console_, Sh("exec sleep 30"), {200, 2000}));
  EXPECT_TRUE(e.deadline_hit);
  ASSERT_TRUE(WIFSIGNALED(e.wait_status));
  EXPECT_EQ(WTERMSIG(e.wait_status), SIGTERM);
  EXPECT_THAT(sys_.console, HasSubstr("step=deadline deadline_ms=200"));
}

TEST_F(SupervisorProcessTest, DeadlineEscalatesWhenSigtermIsIgnored) {
  const int64_t start = sys_.BoottimeMs();
  ASSERT_OK_AND_ASSIGN(
      ProgramExit e,
      Supervise(sys_, console_, Sh("trap '' TERM; while :; do sleep 0.05; done"), {100, 300}));
  EXPECT_TRUE(e.deadline_hit);
  EXPECT_EQ(WTERMSIG(e.wait_status), SIGKILL);
  EXPECT_GE(sys_.BoottimeMs() - start, 400);
}

TEST_F(SupervisorProcessTest, ForwardsSigtermToTheProgram) {
  // The program signals its parent (the supervisor), which forwards it back.
  ASSERT_OK_AND_ASSIGN(ProgramExit e,
                       Supervise(sys_, console_, Sh("kill -TERM $PPID; sleep 10; exit 0"),
                                 {10000, 1000}));
  EXPECT_FALSE(e.deadline_hit);
  ASSERT_TRUE(WIFSIGNALED(e.wait_status));
  EXPECT_EQ(WTERMSIG(e.wait_status), SIGTERM);
}

TEST_F(SupervisorProcessTest, ExecFailureIsAnError) {
  SpawnSpec spec = Sh("");
  spec.argv = {"/nonexistent/kiln-program"};
  EXPECT_THAT(Supervise(sys_, console_, spec, {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("execve /nonexistent")));
  spec.argv = {"kiln-no-such-program-in-path"};
  EXPECT_THAT(Supervise(sys_, console_, spec, {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("execve kiln-no-such")));
}

}  // namespace
}  // namespace kiln::init
