#include "agent/runner/process.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent::runner {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

TEST(SubprocessTest, ExitStatusAndPipedOutput) {
  ASSERT_OK_AND_ASSIGN(Subprocess p,
                       Subprocess::Spawn({{"/bin/sh", "-c", "echo out; echo err >&2; exit 7"},
                                          {"PATH=/bin"}, "", true}));
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(p.output_fd(), buf, sizeof(buf))) > 0) out.append(buf, n);
  ASSERT_OK_AND_ASSIGN(int st, p.Wait(Soon()));
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 7);
  EXPECT_EQ(out, "out\nerr\n");
  EXPECT_EQ(DescribeWaitStatus(st), "exit status 7");
}

TEST(SubprocessTest, EnvironmentIsExactlyWhatWasGiven) {
  ASSERT_OK_AND_ASSIGN(Subprocess p, Subprocess::Spawn({{"/bin/sh", "-c", "echo \"[$HOME][$X]\""},
                                                        {"X=1"}, "", true}));
  char buf[64] = {};
  ASSERT_GT(read(p.output_fd(), buf, sizeof(buf) - 1), 0);
  EXPECT_EQ(std::string(buf), "[][1]\n");
  EXPECT_THAT(p.Wait(Soon()), IsOk());
}

TEST(SubprocessTest, BadProgram) {
  EXPECT_THAT(Subprocess::Spawn({{"sh"}, {}, "", false}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute")));
  EXPECT_THAT(Subprocess::Spawn({{"/nonexistent/dockerd"}, {}, "", false}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/dockerd")));
}

TEST(SubprocessTest, StopEscalatesAndWaitTimesOut) {
  // A child that ignores SIGTERM: Stop must SIGKILL it after the grace.
  ASSERT_OK_AND_ASSIGN(Subprocess p, Subprocess::Spawn({{"/bin/sh", "-c", "trap '' TERM; sleep 30"},
                                                        {"PATH=/bin"}, "", false}));
  EXPECT_THAT(p.Wait(absl::Now() + absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  absl::Time start = absl::Now();
  int st = p.Stop(absl::Milliseconds(200));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGKILL);
  EXPECT_EQ(p.Stop(absl::Seconds(1)), st);  // idempotent
}

// The agent ignores SIGPIPE (a host that goes away must not kill it); containerd and dockerd
// must not inherit that, nor anything else ignored or blocked.
TEST(SubprocessTest, ChildStartsWithDefaultSignalDispositionsAndAnEmptyMask) {
  struct sigaction ign, old_pipe, old_usr1;
  memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old_pipe);
  sigaction(SIGUSR1, &ign, &old_usr1);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  absl::StatusOr<Subprocess> p =
      Subprocess::Spawn({{"/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"}, {}, "", true});
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGPIPE, &old_pipe, nullptr);
  sigaction(SIGUSR1, &old_usr1, nullptr);
  ASSERT_OK(p);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(p->output_fd(), buf, sizeof(buf))) > 0) out.append(buf, n);
  EXPECT_THAT(p->Wait(Soon()), IsOk());
  EXPECT_EQ(out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

// The agent shields itself from the OOM killer (-1000); its children must not inherit that.
// Shown with +500 (a process may raise its own value without privileges, and lower it back to
// where it started): the child still starts at 0.
TEST(SubprocessTest, ChildDoesNotInheritTheAgentsOomScoreAdj) {
  std::string before;
  std::ifstream("/proc/self/oom_score_adj") >> before;
  if (before != "0") GTEST_SKIP() << "oom_score_adj is " << before << " here, not 0";
  { std::ofstream("/proc/self/oom_score_adj") << "500"; }
  std::string now;
  std::ifstream("/proc/self/oom_score_adj") >> now;
  ASSERT_EQ(now, "500");
  absl::StatusOr<Subprocess> p =
      Subprocess::Spawn({{"/bin/cat", "/proc/self/oom_score_adj"}, {}, "", true});
  std::ofstream("/proc/self/oom_score_adj") << before;
  ASSERT_OK(p);
  std::string out;
  char buf[64];
  ssize_t n;
  while ((n = read(p->output_fd(), buf, sizeof(buf))) > 0) out.append(buf, n);
  EXPECT_THAT(p->Wait(Soon()), IsOk());
  EXPECT_EQ(out, "0\n");
}

// Records as /dev/kmsg gives them (5.x and 4.x wording, a memory cgroup kill, continuation
// lines, the oom_reaper's line which must not count twice).
constexpr char kKmsg[] =
    "6,100,1000000,-;eth0: link up\n"
    "4,101,5000000,-;dockerd invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE)\n"
    " SUBSYSTEM=memory\n"
    "3,102,5000100,-;Out of memory: Killed process 4321 (dockerd) total-vm:812345kB, "
    "anon-rss:51234kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:400kB oom_score_adj:-500\n"
    "6,103,5000200,-;oom_reaper: reaped process 4321 (dockerd), now anon-rss:0kB\n"
    "3,104,6000000,-;Memory cgroup out of memory: Killed process 77 (containerd) total-vm:1kB\n"
    "3,105,7000000,-;Killed process 99 (runc:[2:INIT]) total-vm:1kB, anon-rss:1kB\n";

TEST(OomTest, ParsesTheKernelsOomKills) {
  std::vector<OomKill> k = ParseOomKills(kKmsg);
  ASSERT_EQ(k.size(), 3u);
  EXPECT_EQ(k[0].pid, 4321);
  EXPECT_EQ(k[0].name, "dockerd");
  EXPECT_EQ(k[0].time_us, 5000100);
  EXPECT_EQ(k[1].name, "containerd");
  EXPECT_EQ(k[2].name, "runc:[2:INIT]");
  EXPECT_TRUE(ParseOomKills("6,1,1,-;nothing here\ngarbage\n").empty());
}

TEST(OomTest, ReportNamesTheKilledProcessesAndTheGuestsMemory) {
  const std::string dir = std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp";
  std::ofstream(dir + "/kmsg") << kKmsg;
  std::ofstream(dir + "/meminfo") << "MemTotal:          81920 kB\nMemFree: 100 kB\n";
  EXPECT_EQ(OomReport(5500000, dir + "/kmsg", dir + "/meminfo"),
            "the kernel's OOM killer killed containerd (pid 77), runc:[2:INIT] (pid 99) -- the "
            "guest has 80 MiB of memory; give the builder VM more memory");
  EXPECT_EQ(OomReport(8000000, dir + "/kmsg", dir + "/meminfo"), "");  // before this build
  EXPECT_EQ(OomReport(0, dir + "/absent", dir + "/meminfo"), "");
  EXPECT_EQ(OomHint(dir + "/meminfo"), "likely the kernel's OOM killer: the guest has 80 MiB of memory");
  EXPECT_EQ(MemTotalMiB(dir + "/absent"), -1);
}

}  // namespace
}  // namespace kiln::agent::runner
