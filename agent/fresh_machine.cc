// File: agent/fresh_machine.cc
#include "agent/fresh_machine.h"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent {
namespace {

constexpr absl::string_view kHeader = "kiln-fresh-machine 1";

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

int64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace

std::string FormatFreshMachineInput(int64_t unix_ns, absl::string_view seed) {
  return absl::StrCat(kHeader, "\nunix_ns=", unix_ns, "\nseed=", absl::BytesToHexString(seed),
                      "\n");
}

absl::StatusOr<FreshMachineInput> ParseFreshMachineInput(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("fresh machine input: expected 3 lines, got ", lines.size()));
  }
  if (lines[0] != kHeader) {
    return absl::InvalidArgumentError(
        absl::StrCat("fresh machine input: first line must be \"", kHeader, "\""));
  }
  FreshMachineInput in;
  if (!absl::ConsumePrefix(&lines[1], "unix_ns=") || !absl::SimpleAtoi(lines[1], &in.unix_ns) ||
      in.unix_ns <= 0 || !IsLowerHex(lines[1]) /* digits only: no sign, no spaces */) {
    return absl::InvalidArgumentError(
        "fresh machine input: line 2 must be unix_ns=<positive decimal>");
  }
  absl::string_view hex = lines[2];
  if (!absl::ConsumePrefix(&hex, "seed=") || hex.size() % 2 != 0 || !IsLowerHex(hex)) {
    return absl::InvalidArgumentError("fresh machine input: line 3 must be seed=<lowercase hex>");
  }
  in.seed = absl::HexStringToBytes(hex);
  if (in.seed.size() < kMinSeedBytes || in.seed.size() > kMaxSeedBytes) {
    return absl::InvalidArgumentError(absl::StrCat("fresh machine input: seed of ",
                                                   in.seed.size(), " bytes, expected ",
                                                   kMinSeedBytes, "..", kMaxSeedBytes));
  }
  return in;
}

absl::StatusOr<int64_t> ProcessAgeNs(absl::string_view stat_text, int64_t boottime_ns,
                                     int64_t ticks_per_second) {
  // Field 2 (comm) is in parentheses and may hold spaces: count fields after the last ')'.
  const size_t paren = stat_text.rfind(')');
  if (paren == absl::string_view::npos || ticks_per_second <= 0) {
    return absl::InvalidArgumentError("/proc/self/stat: no ')' after comm");
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat_text.substr(paren + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state): starttime, field 22, is fields[19].
  int64_t start_ticks = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start_ticks) || start_ticks < 0) {
    return absl::InvalidArgumentError("/proc/self/stat: no starttime (field 22)");
  }
  const int64_t start_ns = start_ticks * (1000000000 / ticks_per_second);
  return boottime_ns > start_ns ? boottime_ns - start_ns : 0;
}

absl::StatusOr<FreshMachineReport> ApplyFreshMachine(const FreshMachineInput& input,
                                                     int64_t late_ns,
                                                     const std::string& random_dev) {
  FreshMachineReport report;
  const int64_t before = RealtimeNs();
  const int64_t target = input.unix_ns + std::max<int64_t>(late_ns, 0);
  timespec ts{static_cast<time_t>(target / 1000000000), static_cast<long>(target % 1000000000)};
  if (clock_settime(CLOCK_REALTIME, &ts) != 0) {
    return PosixError(errno, "clock_settime", "CLOCK_REALTIME");
  }
  report.clock_step_ms = (target - before) / 1000000;
  const int fd = open(random_dev.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", random_dev);
  // struct rand_pool_info ends in a flexible array: allocate it with the seed behind it.
  std::vector<char> buf(sizeof(rand_pool_info) + input.seed.size());
  auto* info = reinterpret_cast<rand_pool_info*>(buf.data());
  info->entropy_count = static_cast<int>(input.seed.size() * 8);
  info->buf_size = static_cast<int>(input.seed.size());
  std::memcpy(info->buf, input.seed.data(), input.seed.size());
  if (ioctl(fd, RNDADDENTROPY, info) != 0) {
    const int e = errno;
    close(fd);
    return PosixError(e, "ioctl RNDADDENTROPY", random_dev);
  }
  std::memset(info->buf, 0, input.seed.size());
  report.seed_bytes = input.seed.size();
  if (ioctl(fd, RNDRESEEDCRNG) != 0) {
    const int e = errno;
    close(fd);
    return PosixError(e, "ioctl RNDRESEEDCRNG", random_dev);
  }
  report.reseeded = true;
  close(fd);
  return report;
}

}  // namespace kiln::agent
