// File: third_party/absl_ext/monotonic_deadline.h
// -----------------------------------------------------------------------------
//
// Deadlines and elapsed times on CLOCK_MONOTONIC, for code that must not be fooled when the
// wall clock steps (settimeofday, clock_settime, a VM restored from a snapshot whose clock the
// host sets later). absl::Time is wall-clock time: `deadline - absl::Now()` shrinks or grows
// by the size of any step. APIs that take an absl::Time deadline convert it once, at the call,
// with MonotonicDeadline::FromWallDeadline, and wait on the monotonic clock from then on.
//
// Example:
//
//   MonotonicDeadline d = MonotonicDeadline::After(absl::Seconds(30));
//   while (!d.Passed()) { ... poll(fd, ..., d.RemainingMsForPoll(1000)) ... }
//   client.Get("/_ping", d.AsWallDeadline());  // an API that takes absl::Time
#ifndef KILN_THIRD_PARTY_ABSL_EXT_MONOTONIC_DEADLINE_H_
#define KILN_THIRD_PARTY_ABSL_EXT_MONOTONIC_DEADLINE_H_

#include <cstdint>

#include "absl/time/time.h"

namespace kiln {

// MonotonicMicros(): CLOCK_MONOTONIC now, in microseconds (also the kernel log's clock).
int64_t MonotonicMicros();

// MonotonicDeadline: a point on CLOCK_MONOTONIC, or never. Copyable value.
class MonotonicDeadline {
 public:
  // After(d): d from now; an infinite d is Never(); a zero or negative d has already passed.
  static MonotonicDeadline After(absl::Duration d);
  // Never(): never passes; Remaining() is absl::InfiniteDuration().
  static MonotonicDeadline Never() { return MonotonicDeadline(kNever); }
  // FromWallDeadline(t): the deadline `t - absl::Now()` from now, read once at this call
  // (absl::InfiniteFuture(): Never(); a past t: passed).
  static MonotonicDeadline FromWallDeadline(absl::Time t);

  // Remaining(): the time left (<= 0 once passed; InfiniteDuration for Never()).
  absl::Duration Remaining() const;
  bool Passed() const { return Remaining() <= absl::ZeroDuration(); }
  // RemainingMsForPoll(cap_ms): the time left in whole ms, rounded up, clamped to [0, cap_ms]
  // (cap_ms >= 0): a poll(2)/epoll_wait timeout that wakes up at the deadline.
  int RemainingMsForPoll(int cap_ms) const;
  // AsWallDeadline(): absl::Now() + Remaining() (InfiniteFuture for Never()), for APIs that
  // take an absl::Time; computed at this call.
  absl::Time AsWallDeadline() const;
  // Earlier(other): the earlier of the two.
  MonotonicDeadline Earlier(const MonotonicDeadline& other) const {
    return at_us_ <= other.at_us_ ? *this : other;
  }

 private:
  static constexpr int64_t kNever = INT64_MAX;
  explicit MonotonicDeadline(int64_t at_us) : at_us_(at_us) {}
  int64_t at_us_;  // CLOCK_MONOTONIC microseconds, or kNever
};

}  // namespace kiln

#endif  // KILN_THIRD_PARTY_ABSL_EXT_MONOTONIC_DEADLINE_H_
