// File: agent/process/process_clock_step_test.cc
//
// Waiting survives a step of the wall clock: the test re-executes itself with
// testdata/clock_step_shim.so preloaded, which moves CLOCK_REALTIME one hour ahead while a file
// exists. A VM restored from a
// warm snapshot has its wall clock set by the host after it resumes; a job's deadline must not
// be cut short by that.
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "agent/process/process.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/monotonic_deadline.h"

namespace kiln::process {
namespace {

class ClockStepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* preload = getenv("LD_PRELOAD");
    ASSERT_TRUE(preload != nullptr && strstr(preload, "clock_step_shim") != nullptr)
        << "main() did not preload testdata/clock_step_shim.so";
    step_file_ = std::string(getenv("TEST_TMPDIR")) + "/step";
    unlink(step_file_.c_str());
    setenv("KILN_CLOCK_STEP_FILE", step_file_.c_str(), 1);
  }
  void TearDown() override { unlink(step_file_.c_str()); }

  // StepTheClockIn(d): a thread that makes the wall clock jump one hour ahead after d.
  std::thread StepTheClockIn(absl::Duration d) {
    return std::thread([this, d] {
      absl::SleepFor(d);
      int fd = open(step_file_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
      if (fd >= 0) close(fd);
    });
  }

  std::string step_file_;
};

TEST_F(ClockStepTest, WaitIsNotCutShortByAWallClockStepForward) {
  SpawnOptions o;
  o.argv = {"/bin/sleep", "1.5"};
  absl::StatusOr<Process> p = Process::Spawn(o);
  ASSERT_TRUE(p.ok()) << p.status();
  const absl::Time before = absl::Now();
  std::thread stepper = StepTheClockIn(absl::Milliseconds(300));
  absl::StatusOr<ProcessExit> e = p->Wait(absl::Now() + absl::Seconds(30));
  stepper.join();
  // The step happened as the code under test sees the wall clock (else this proves nothing).
  EXPECT_GT(absl::Now() - before, absl::Minutes(59));
  ASSERT_TRUE(e.ok()) << "a wall-clock step cut the 30 s wait of a 1.5 s child: " << e.status();
  EXPECT_EQ(e->exit_code, 0);
}

TEST_F(ClockStepTest, WaitStillEndsAtItsDeadline) {
  SpawnOptions o;
  o.argv = {"/bin/sleep", "30"};
  absl::StatusOr<Process> p = Process::Spawn(o);
  ASSERT_TRUE(p.ok()) << p.status();
  const int64_t t0 = MonotonicMicros();
  std::thread stepper = StepTheClockIn(absl::Milliseconds(100));
  absl::StatusOr<ProcessExit> e = p->Wait(absl::Now() + absl::Seconds(1));
  stepper.join();
  const int64_t waited_ms = (MonotonicMicros() - t0) / 1000;
  EXPECT_EQ(e.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(waited_ms, 950);
  EXPECT_LT(waited_ms, 5000);
  p->Kill(absl::ZeroDuration());
}

TEST_F(ClockStepTest, AMonotonicDeadlineIgnoresTheStep) {
  const MonotonicDeadline d = MonotonicDeadline::After(absl::Seconds(10));
  const absl::Time wall = d.AsWallDeadline();
  std::thread stepper = StepTheClockIn(absl::ZeroDuration());
  stepper.join();
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  EXPECT_GT(absl::TimeFromTimespec(ts), wall);  // by the wall clock the deadline has passed
  EXPECT_FALSE(d.Passed());
  EXPECT_GT(d.Remaining(), absl::Seconds(9));
}

}  // namespace
}  // namespace kiln::process

// main: re-executes this test with the shim preloaded by its absolute runfiles path (the
// dynamic loader resolves a relative LD_PRELOAD against the working directory of every process
// that inherits it).
int main(int argc, char** argv) {
  const char* preload = getenv("LD_PRELOAD");
  if (preload == nullptr || strstr(preload, "clock_step_shim") == nullptr) {
    const char* srcdir = getenv("TEST_SRCDIR");
    const char* workspace = getenv("TEST_WORKSPACE");
    if (srcdir != nullptr && workspace != nullptr) {
      const std::string shim = std::string(srcdir) + "/" + workspace +
                               "/agent/process/testdata/clock_step_shim.so";
      setenv("LD_PRELOAD", shim.c_str(), 1);
      execv("/proc/self/exe", argv);
      perror("execv /proc/self/exe");
      return 1;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
