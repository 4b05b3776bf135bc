// File: third_party/absl_ext/monotonic_deadline_test.cc
#include "third_party/absl_ext/monotonic_deadline.h"

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace kiln {
namespace {

TEST(MonotonicDeadlineTest, AfterCountsDownAndPasses) {
  const MonotonicDeadline d = MonotonicDeadline::After(absl::Milliseconds(50));
  EXPECT_FALSE(d.Passed());
  EXPECT_LE(d.Remaining(), absl::Milliseconds(50));
  EXPECT_GT(d.Remaining(), absl::Milliseconds(0));
  absl::SleepFor(absl::Milliseconds(60));
  EXPECT_TRUE(d.Passed());
  EXPECT_EQ(d.RemainingMsForPoll(1000), 0);
}

TEST(MonotonicDeadlineTest, ZeroAndNegativeHaveAlreadyPassed) {
  EXPECT_TRUE(MonotonicDeadline::After(absl::ZeroDuration()).Passed());
  EXPECT_TRUE(MonotonicDeadline::After(absl::Seconds(-5)).Passed());
  EXPECT_TRUE(MonotonicDeadline::FromWallDeadline(absl::Now() - absl::Seconds(1)).Passed());
  EXPECT_TRUE(MonotonicDeadline::FromWallDeadline(absl::InfinitePast()).Passed());
}

TEST(MonotonicDeadlineTest, NeverNeverPasses) {
  for (const MonotonicDeadline& d :
       {MonotonicDeadline::Never(), MonotonicDeadline::After(absl::InfiniteDuration()),
        MonotonicDeadline::FromWallDeadline(absl::InfiniteFuture())}) {
    EXPECT_FALSE(d.Passed());
    EXPECT_EQ(d.Remaining(), absl::InfiniteDuration());
    EXPECT_EQ(d.AsWallDeadline(), absl::InfiniteFuture());
    EXPECT_EQ(d.RemainingMsForPoll(1000), 1000);
  }
}

TEST(MonotonicDeadlineTest, HugeDurationsSaturateInsteadOfOverflowing) {
  const MonotonicDeadline d = MonotonicDeadline::After(absl::Hours(24 * 365 * 200000));
  EXPECT_FALSE(d.Passed());
  EXPECT_GT(d.Remaining(), absl::Hours(24 * 365));
}

TEST(MonotonicDeadlineTest, FromWallDeadlineReadsTheWallClockOnce) {
  const MonotonicDeadline d = MonotonicDeadline::FromWallDeadline(absl::Now() + absl::Seconds(10));
  EXPECT_GT(d.Remaining(), absl::Seconds(9));
  EXPECT_LE(d.Remaining(), absl::Seconds(10));
  const absl::Duration skew = d.AsWallDeadline() - (absl::Now() + absl::Seconds(10));
  EXPECT_LT(absl::AbsDuration(skew), absl::Milliseconds(100));
}

TEST(MonotonicDeadlineTest, RemainingMsForPollRoundsUpAndCaps) {
  const MonotonicDeadline d = MonotonicDeadline::After(absl::Seconds(5));
  EXPECT_EQ(d.RemainingMsForPoll(1000), 1000);
  const int ms = d.RemainingMsForPoll(10000);
  EXPECT_GT(ms, 4900);
  EXPECT_LE(ms, 5000);
  const MonotonicDeadline soon = MonotonicDeadline::After(absl::Microseconds(300));
  const int tiny = soon.RemainingMsForPoll(1000);
  EXPECT_GE(tiny, 0);
  EXPECT_LE(tiny, 1);
}

TEST(MonotonicDeadlineTest, EarlierPicksTheSoonerOne) {
  const MonotonicDeadline a = MonotonicDeadline::After(absl::Seconds(1));
  const MonotonicDeadline b = MonotonicDeadline::After(absl::Seconds(100));
  EXPECT_LE(a.Earlier(b).Remaining(), absl::Seconds(1));
  EXPECT_LE(b.Earlier(a).Remaining(), absl::Seconds(1));
  EXPECT_LE(MonotonicDeadline::Never().Earlier(a).Remaining(), absl::Seconds(1));
}

}  // namespace
}  // namespace kiln
