// File: third_party/absl_ext/monotonic_deadline.cc
#include "third_party/absl_ext/monotonic_deadline.h"

#include <time.h>

#include <algorithm>

#include "absl/time/clock.h"

namespace kiln {

int64_t MonotonicMicros() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

namespace {

// AtAfter(d): the monotonic microsecond d from now, saturating at kNever - 1 for huge d.
int64_t AtAfter(absl::Duration d, int64_t never) {
  const int64_t now = MonotonicMicros();
  if (d <= absl::ZeroDuration()) return now;
  const int64_t us = absl::ToInt64Microseconds(d);
  if (us >= never - 1 - now) return never - 1;
  return now + us;
}

}  // namespace

MonotonicDeadline MonotonicDeadline::After(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return Never();
  return MonotonicDeadline(AtAfter(d, kNever));
}

MonotonicDeadline MonotonicDeadline::FromWallDeadline(absl::Time t) {
  if (t == absl::InfiniteFuture()) return Never();
  if (t == absl::InfinitePast()) return MonotonicDeadline(MonotonicMicros());
  return After(t - absl::Now());
}

absl::Duration MonotonicDeadline::Remaining() const {
  if (at_us_ == kNever) return absl::InfiniteDuration();
  return absl::Microseconds(at_us_ - MonotonicMicros());
}

int MonotonicDeadline::RemainingMsForPoll(int cap_ms) const {
  const absl::Duration left = Remaining();
  if (left <= absl::ZeroDuration()) return 0;
  if (left >= absl::Milliseconds(cap_ms)) return cap_ms;
  return static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
}

absl::Time MonotonicDeadline::AsWallDeadline() const {
  if (at_us_ == kNever) return absl::InfiniteFuture();
  return absl::Now() + Remaining();
}

}  // namespace kiln
