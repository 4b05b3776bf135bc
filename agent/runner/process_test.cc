#include "agent/runner/process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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

}  // namespace
}  // namespace kiln::agent::runner
