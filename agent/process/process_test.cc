// File: agent/process/process_test.cc
// The process executor against real, tiny processes (sh, sleep, grep, cat): exit statuses,
// every stdio kind, environment, cwd, signal state, oom_score_adj, deadlines, group kill,
// release, destructor.
#include "agent/process/process.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "agent/file/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::process {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

std::string TmpFile(const char* name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

std::string Slurp(const std::string& path) { return file::ReadFileOrEmpty(path); }

// ReadAll(fd): everything until end of file.
std::string ReadAll(int fd) {
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  return out;
}

// Piped(argv): stdout and stderr to one pipe, the given environment, PATH never searched (the
// agent runner's daemons and docker CLI).
SpawnOptions Piped(std::vector<std::string> argv, std::vector<std::string> env = {}) {
  SpawnOptions o;
  o.argv = std::move(argv);
  o.search_path = false;
  o.env = std::move(env);
  o.out = Stdio::Pipe();
  o.err = Stdio::SameAsStdout();
  return o;
}

// ToFile(argv, path): stdout and stderr to a file (the harness's VMMs).
SpawnOptions ToFile(std::vector<std::string> argv, const std::string& path) {
  SpawnOptions o;
  o.argv = std::move(argv);
  if (!path.empty()) {
    o.out = Stdio::File(path);
    o.err = Stdio::SameAsStdout();
  }
  return o;
}

TEST(ProcessTest, ExitCodeAndOutputFile) {
  std::string out = TmpFile("out.txt");
  ASSERT_OK_AND_ASSIGN(Process p,
                       Process::Spawn(ToFile({"sh", "-c", "echo hello; echo err >&2; exit 7"}, out)));
  ASSERT_OK_AND_ASSIGN(ProcessExit e, p.Wait(Soon()));
  EXPECT_FALSE(e.signaled);
  EXPECT_EQ(e.exit_code, 7);
  EXPECT_GT(e.max_rss_bytes, 0);
  EXPECT_EQ(Slurp(out), "hello\nerr\n");
  // Kill after exit is a no-op returning the same exit.
  EXPECT_EQ(p.Kill(absl::Seconds(1)).exit_code, 7);
}

TEST(ProcessTest, ExitStatusAndPipedOutput) {
  ASSERT_OK_AND_ASSIGN(Process p, Process::Spawn(Piped(
                                      {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"},
                                      {"PATH=/bin"})));
  std::string out = ReadAll(p.pipe_fd(1));
  ASSERT_OK_AND_ASSIGN(ProcessExit e, p.Wait(Soon()));
  EXPECT_TRUE(WIFEXITED(e.wait_status));
  EXPECT_EQ(WEXITSTATUS(e.wait_status), 7);
  EXPECT_EQ(out, "out\nerr\n");
  EXPECT_EQ(DescribeWaitStatus(e.wait_status), "exit status 7");
  EXPECT_EQ(e.Describe(), "exit status 7");
}

TEST(ProcessTest, EnvironmentIsExactlyWhatWasGiven) {
  ASSERT_OK_AND_ASSIGN(Process p,
                       Process::Spawn(Piped({"/bin/sh", "-c", "echo \"[$HOME][$X]\""}, {"X=1"})));
  char buf[64] = {};
  ASSERT_GT(read(p.pipe_fd(1), buf, sizeof(buf) - 1), 0);
  EXPECT_EQ(std::string(buf), "[][1]\n");
  EXPECT_THAT(p.Wait(Soon()), IsOk());
}

// The agent's Exec shape: stdin, stdout and stderr as three pipes, a working directory, a
// session of its own, the program found in PATH.
TEST(ProcessTest, StdinPipeSeparateOutputsCwdAndSession) {
  SpawnOptions o;
  o.argv = {"sh", "-c", "cat; pwd >&2; exit 3"};
  o.cwd = "/tmp";
  o.new_session = true;
  o.in = Stdio::Pipe();
  o.out = Stdio::Pipe();
  o.err = Stdio::Pipe();
  ASSERT_OK_AND_ASSIGN(Process p, Process::Spawn(o));
  int in = p.TakePipe(0);
  EXPECT_EQ(p.pipe_fd(0), -1);
  ASSERT_EQ(write(in, "abc", 3), 3);
  close(in);
  EXPECT_EQ(ReadAll(p.pipe_fd(1)), "abc");
  EXPECT_EQ(ReadAll(p.pipe_fd(2)), "/tmp\n");
  EXPECT_EQ(getsid(p.pid()), p.pid());
  ASSERT_OK_AND_ASSIGN(ProcessExit e, p.Wait(Soon()));
  EXPECT_EQ(e.exit_code, 3);
}

TEST(ProcessTest, AppendedFileAndParentFd) {
  const std::string log = TmpFile("append.log");
  { std::ofstream(log) << "before\n"; }
  SpawnOptions o;
  o.argv = {"/bin/echo", "after"};
  o.out = Stdio::File(log, /*append=*/true, 0600);
  ASSERT_OK_AND_ASSIGN(Process p, Process::Spawn(o));
  ASSERT_OK(p.Wait(Soon()).status());
  EXPECT_EQ(Slurp(log), "before\nafter\n");

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  SpawnOptions q;
  q.argv = {"/bin/echo", "via fd"};
  q.out = Stdio::ParentFd(fds[1]);
  ASSERT_OK_AND_ASSIGN(Process r, Process::Spawn(q));
  ASSERT_OK(r.Wait(Soon()).status());
  close(fds[1]);
  EXPECT_EQ(ReadAll(fds[0]), "via fd\n");
  close(fds[0]);
}

TEST(ProcessTest, BadProgram) {
  SpawnOptions relative;
  relative.argv = {"sh"};
  relative.search_path = false;
  EXPECT_THAT(Process::Spawn(relative),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute")));
  EXPECT_THAT(Process::Spawn(Piped({"/nonexistent/dockerd"})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/dockerd")));
  SpawnOptions bad_cwd = ToFile({"true"}, "");
  bad_cwd.cwd = "/nonexistent-kiln-dir";
  EXPECT_THAT(Process::Spawn(bad_cwd),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("chdir /nonexistent-kiln-dir")));
  SpawnOptions bad_log = ToFile({"true"}, "/nonexistent-kiln-dir/log");
  EXPECT_THAT(Process::Spawn(bad_log),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("open /nonexistent-kiln-dir/log")));
  SpawnOptions bad_stdout = ToFile({"true"}, "");
  bad_stdout.out = Stdio::SameAsStdout();
  EXPECT_THAT(Process::Spawn(bad_stdout),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stderr only")));
}

TEST(ProcessTest, MissingProgramIsNotFound) {
  EXPECT_THAT(Process::Spawn(ToFile({"/nonexistent/kiln-no-such-binary"}, "")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("kiln-no-such-binary")));
  EXPECT_THAT(Process::Spawn(ToFile({"kiln-no-such-binary-in-path"}, "")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("kiln-no-such-binary-in-path")));
  EXPECT_THAT(Process::Spawn(ToFile({}, "")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST(ProcessTest, KillEscalatesAndWaitTimesOut) {
  // A child that ignores SIGTERM: Kill must SIGKILL it after the grace.
  ASSERT_OK_AND_ASSIGN(Process p, Process::Spawn(Piped({"/bin/sh", "-c", "trap '' TERM; sleep 30"},
                                                       {"PATH=/bin"})));
  EXPECT_THAT(p.Wait(absl::Now() + absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  absl::Time start = absl::Now();
  ProcessExit e = p.Kill(absl::Milliseconds(200));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(WIFSIGNALED(e.wait_status));
  EXPECT_EQ(WTERMSIG(e.wait_status), SIGKILL);
  EXPECT_EQ(p.Kill(absl::Seconds(1)).wait_status, e.wait_status);  // idempotent
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
  absl::StatusOr<Process> p =
      Process::Spawn(ToFile({"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"}, out));
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  for (int i = 0; i < 4; ++i) sigaction(sigs[i], &old[i], nullptr);
  ASSERT_OK(p);
  ASSERT_OK_AND_ASSIGN(ProcessExit e, p->Wait(Soon()));
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_EQ(Slurp(out), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

// The agent ignores SIGPIPE (a host that goes away must not kill it); containerd and dockerd
// must not inherit that, nor anything else ignored or blocked.
TEST(ProcessTest, PipedChildStartsWithDefaultSignalDispositionsAndAnEmptyMask) {
  struct sigaction ign, old_pipe, old_usr1;
  memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old_pipe);
  sigaction(SIGUSR1, &ign, &old_usr1);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  absl::StatusOr<Process> p =
      Process::Spawn(Piped({"/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"}));
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGPIPE, &old_pipe, nullptr);
  sigaction(SIGUSR1, &old_usr1, nullptr);
  ASSERT_OK(p);
  std::string out = ReadAll(p->pipe_fd(1));
  EXPECT_THAT(p->Wait(Soon()), IsOk());
  EXPECT_EQ(out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

// The agent shields itself from the OOM killer (-1000); its children must not inherit that.
// Shown with +500 (a process may raise its own value without privileges, and lower it back to
// where it started): the child still starts at 0.
TEST(ProcessTest, ChildDoesNotInheritTheAgentsOomScoreAdj) {
  std::string before;
  std::ifstream("/proc/self/oom_score_adj") >> before;
  if (before != "0") GTEST_SKIP() << "oom_score_adj is " << before << " here, not 0";
  { std::ofstream("/proc/self/oom_score_adj") << "500"; }
  std::string now;
  std::ifstream("/proc/self/oom_score_adj") >> now;
  ASSERT_EQ(now, "500");
  absl::StatusOr<Process> p = Process::Spawn(Piped({"/bin/cat", "/proc/self/oom_score_adj"}));
  std::ofstream("/proc/self/oom_score_adj") << before;
  ASSERT_OK(p);
  std::string out = ReadAll(p->pipe_fd(1));
  EXPECT_THAT(p->Wait(Soon()), IsOk());
  EXPECT_EQ(out, "0\n");
}

TEST(ProcessTest, ReleasedChildOutlivesKillAndDestructor) {
  pid_t pid = 0;
  {
    SpawnOptions o = ToFile({"sleep", "300"}, "");
    o.die_with_parent = false;
    ASSERT_OK_AND_ASSIGN(Process p, Process::Spawn(o));
    pid = p.pid();
    p.Release();
    EXPECT_TRUE(p.released());
    p.Kill(absl::Seconds(1));  // no-op
    EXPECT_THAT(p.Wait(absl::Now() + absl::Milliseconds(10)),
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
      Process p,
      Process::Spawn(ToFile({"sh", "-c", "trap '' TERM; sleep 300 & echo $! > " + pidfile + "; wait"}, "")));
  EXPECT_THAT(p.Wait(absl::Now() + absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("still running")));
  pid_t grandchild = 0;
  for (int i = 0; i < 200 && grandchild == 0; ++i) {
    std::istringstream(Slurp(pidfile)) >> grandchild;
    if (grandchild == 0) usleep(10000);
  }
  ASSERT_GT(grandchild, 0);
  EXPECT_EQ(getpgid(grandchild), p.pid());
  // sh ignores TERM: Kill must fall back to SIGKILL after the grace period.
  ProcessExit e = p.Kill(absl::Milliseconds(200));
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

// kill_group_on_exit: once the leader exits, what it left in its group is killed (a VMM's
// helpers must not outlive it).
TEST(ProcessTest, KillGroupOnExitTakesTheLeftovers) {
  std::string pidfile = TmpFile("leftover.pid");
  unlink(pidfile.c_str());
  SpawnOptions o = ToFile({"sh", "-c", "sleep 300 & echo $! > " + pidfile}, "");
  o.kill_group_on_exit = true;
  ASSERT_OK_AND_ASSIGN(Process p, Process::Spawn(o));
  ASSERT_OK_AND_ASSIGN(ProcessExit e, p.Wait(Soon()));
  EXPECT_EQ(e.exit_code, 0);
  pid_t leftover = 0;
  std::istringstream(Slurp(pidfile)) >> leftover;
  ASSERT_GT(leftover, 0);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = kill(leftover, 0) != 0 ||
           Slurp("/proc/" + std::to_string(leftover) + "/stat").find(") Z") != std::string::npos;
    if (!gone) usleep(10000);
  }
  EXPECT_TRUE(gone) << "leftover " << leftover << " survived";
}

TEST(ProcessTest, DestructorKills) {
  pid_t pid;
  {
    ASSERT_OK_AND_ASSIGN(Process p, Process::Spawn(ToFile({"sleep", "300"}, "")));
    pid = p.pid();
    EXPECT_EQ(kill(pid, 0), 0);
  }
  EXPECT_NE(kill(pid, 0), 0);  // reaped: no such process
}

TEST(ProcessTest, MovedFromProcessOwnsNothing) {
  ASSERT_OK_AND_ASSIGN(Process p, Process::Spawn(Piped({"/bin/sh", "-c", "exit 4"})));
  Process q = std::move(p);
  EXPECT_EQ(p.pid(), -1);
  EXPECT_EQ(p.pipe_fd(1), -1);
  ASSERT_OK_AND_ASSIGN(ProcessExit e, q.Wait(Soon()));
  EXPECT_EQ(e.exit_code, 4);
}

}  // namespace
}  // namespace kiln::process
