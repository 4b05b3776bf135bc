// File: init/console_test.cc
#include "init/console.h"

#include <errno.h>
#include <signal.h>

#include "gtest/gtest.h"
#include "init/fake_sys.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::init {
namespace {

TEST(ConsoleFormatTest, Lines) {
  struct Row {
    std::string got;
    std::string want;
  };
  const Row rows[] = {
      {FormatReady(812), "KILN-INIT: ready uptime_ms=812\n"},
      {FormatExit(ExitedStatus(0), 1500), "KILN-INIT: exit status=0 uptime_ms=1500\n"},
      {FormatExit(ExitedStatus(3), 7), "KILN-INIT: exit status=3 uptime_ms=7\n"},
      {FormatExit(SignaledStatus(SIGKILL), 9), "KILN-INIT: exit signal=9 uptime_ms=9\n"},
      {FormatStep("mount", "target=/proc"), "KILN-INIT: step=mount target=/proc\n"},
      {FormatStep("root", ""), "KILN-INIT: step=root\n"},
      {FormatFatal("root", PosixError(ENOENT, "mount ext4 /dev/vda", "/kiln/ro")),
       "KILN-INIT: fatal step=root errno=2 (No such file or directory): mount ext4 /dev/vda "
       "/kiln/ro: No such file or directory\n"},
      {FormatWarning("cgroup", PosixError(ENODEV, "mount cgroup2 cgroup2", "/sys/fs/cgroup")),
       "KILN-INIT: warning step=cgroup errno=19 (No such device): mount cgroup2 cgroup2 "
       "/sys/fs/cgroup: No such device\n"},
      {FormatFatal("config", absl::InvalidArgumentError(
                                 "kiln.cgroup=\"xx\": bad value; allowed: rw|ro|off")),
       "KILN-INIT: fatal step=config errno=0 (Success): kiln.cgroup=\"xx\": bad value; "
       "allowed: rw|ro|off\n"},
      // A multi-line detail stays one console record.
      {FormatFatal("x", absl::InternalError("a\nb")),
       "KILN-INIT: fatal step=x errno=0 (Success): a b\n"},
  };
  for (const Row& row : rows) EXPECT_EQ(row.got, row.want);
}

TEST(ConsoleFormatTest, ErrnoOfAndDetailOf) {
  absl::Status s = PosixError(EACCES, "open", "/x");
  EXPECT_EQ(ErrnoOf(s), EACCES);
  EXPECT_EQ(DetailOf(s), "open /x: Permission denied");
  EXPECT_EQ(ErrnoOf(absl::OkStatus()), 0);
  EXPECT_EQ(ErrnoOf(absl::InternalError("no errno here")), 0);
  EXPECT_EQ(ErrnoOf(absl::InternalError("odd [errno x]")), 0);
  EXPECT_EQ(DetailOf(absl::InternalError("odd [errno x]")), "odd [errno x]");
}

TEST(ConsoleTest, WritesThroughSys) {
  FakeSys sys;
  Console console(sys);
  console.Ready(5);
  console.Exit(ExitedStatus(1), 6);
  EXPECT_EQ(sys.console,
            "KILN-INIT: ready uptime_ms=5\nKILN-INIT: exit status=1 uptime_ms=6\n");
}

}  // namespace
}  // namespace kiln::init
