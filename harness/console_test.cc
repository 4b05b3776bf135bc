// File: harness/console_test.cc
#include "harness/console.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::harness {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A serial log as the real kernel + init print it (abridged), CRLF line ends included.
constexpr char kGoodLog[] =
    "[    0.000000] Linux version 6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) "
    "(gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3\r\n"
    "[    0.000000] Command line: console=ttyS0 panic=-1 kiln.cgroup=rw\r\n"
    "[    1.802113] Run /init as init process\r\n"
    "KILN-INIT: step=mounts\r\n"
    "KILN-INIT: step=modules count=6\r\n"
    "[    2.011000] virtio_blk virtio1: [vda] 409600 512-byte logical blocks\r\n"
    "KILN-INIT: warning step=modules errno=17 (File exists): crc32c already loaded\r\n"
    "KILN-INIT: step=root dev=/dev/vda\r\n"
    "KILN-INIT: ready uptime_ms=2345\r\n"
    "KILN-CHECK mountinfo_cgroup2 35 30 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\r\n"
    "KILN-CHECK runc_exit 0\r\n"
    "KILN-CHECK container_cgroup 0::/kiln-check\r\n"
    "KILN-CHECK empty_value\r\n"
    "KILN-INIT: exit status=0 uptime_ms=4567\r\n"
    "[    4.600000] reboot: Power down\r\n";

TEST(ParseConsoleTest, RealLog) {
  ConsoleResult r = ParseConsole(kGoodLog);
  EXPECT_EQ(r.kernel_version, "6.1.0-57-cloud-amd64");
  EXPECT_THAT(r.steps, ElementsAre("mounts", "modules", "root"));
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].step, "modules");
  EXPECT_EQ(r.warnings[0].errnum, 17);
  EXPECT_EQ(r.warnings[0].detail, "crc32c already loaded");
  EXPECT_TRUE(r.ready);
  EXPECT_EQ(r.ready_uptime_ms, 2345);
  ASSERT_TRUE(r.exit_status.has_value());
  EXPECT_EQ(*r.exit_status, 0);
  EXPECT_FALSE(r.exit_signal.has_value());
  EXPECT_EQ(r.exit_uptime_ms, 4567);
  EXPECT_FALSE(r.fatal.has_value());
  EXPECT_TRUE(r.HasEndMarker());
  EXPECT_FALSE(r.Stuck());
  EXPECT_EQ(r.Check("runc_exit"), "0");
  EXPECT_EQ(r.Check("container_cgroup"), "0::/kiln-check");
  EXPECT_EQ(r.Check("mountinfo_cgroup2"),
            "35 30 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw");
  EXPECT_EQ(r.Check("empty_value"), "");
  EXPECT_EQ(r.Check("absent"), std::nullopt);
  EXPECT_TRUE(r.malformed_lines.empty());
}

TEST(ParseConsoleTest, FatalConfigError) {
  ConsoleResult r = ParseConsole(
      "Run /init as init process\n"
      "KILN-INIT: fatal step=cmdline errno=0 (Success): kiln.cgroup: bad value \"maybe\" "
      "(expected rw, ro or off)\n"
      "reboot: Power down\n");
  ASSERT_TRUE(r.fatal.has_value());
  EXPECT_EQ(r.fatal->step, "cmdline");
  EXPECT_EQ(r.fatal->errnum, 0);
  EXPECT_THAT(r.fatal->detail, HasSubstr("kiln.cgroup: bad value \"maybe\""));
  EXPECT_THAT(r.fatal->line, HasSubstr("KILN-INIT: fatal step=cmdline"));
  EXPECT_TRUE(r.HasEndMarker());
  EXPECT_FALSE(r.ready);
}

TEST(ParseConsoleTest, FatalWithoutErrno) {
  ConsoleResult r = ParseConsole("KILN-INIT: fatal step=exec: no such program /x\n");
  ASSERT_TRUE(r.fatal.has_value());
  EXPECT_EQ(r.fatal->step, "exec");
  EXPECT_EQ(r.fatal->detail, "no such program /x");
}

TEST(ParseConsoleTest, ExitSignal) {
  ConsoleResult r = ParseConsole("KILN-INIT: exit signal=9 uptime_ms=100\n");
  EXPECT_EQ(r.exit_signal, 9);
  EXPECT_FALSE(r.exit_status.has_value());
  EXPECT_TRUE(r.HasEndMarker());
}

TEST(ParseConsoleTest, MarkerAfterKernelNoiseOnTheSameLine) {
  ConsoleResult r = ParseConsole(
      "[    3.1] random: crng init doneKILN-INIT: exit status=3 uptime_ms=9\n");
  EXPECT_EQ(r.exit_status, 3);
}

TEST(ParseConsoleTest, UnterminatedLastLineIsIgnored) {
  // "status=12" cut after the "1": must not read as status 1.
  ConsoleResult r = ParseConsole("KILN-INIT: ready uptime_ms=5\nKILN-INIT: exit status=1");
  EXPECT_TRUE(r.ready);
  EXPECT_FALSE(r.HasEndMarker());
}

TEST(ParseConsoleTest, GarbageAndMalformedMarkers) {
  std::string log = "\x01\x02\xff\xfe garbage \x1b[0m\n";
  log += "KILN-INIT: exit status=abc uptime_ms=1\n";   // bad number
  log += "KILN-INIT: exit\n";                          // no fields
  log += "KILN-INIT: fatal errno=2 (x): no step\n";    // no step=
  log += "KILN-INIT: frobnicate now\n";                // unknown kind
  log += "KILN-INIT: \n";                              // empty
  log += "KILN-CHECK \n";                              // check without a name
  constexpr char kNuls[] = "KILN-INIT: ready uptime_ms=7\0\0\n";
  log.append(kNuls, sizeof(kNuls) - 1);
  ConsoleResult r = ParseConsole(log);
  EXPECT_FALSE(r.HasEndMarker());
  EXPECT_TRUE(r.ready);
  EXPECT_EQ(r.ready_uptime_ms, 7);
  EXPECT_EQ(r.malformed_lines.size(), 6u);
  EXPECT_TRUE(r.checks.empty());
}

TEST(ParseConsoleTest, SoftLockupAndPanic) {
  ConsoleResult r = ParseConsole(
      "KILN-INIT: ready uptime_ms=2000\n"
      "[   48.1] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [runc:[2:INIT]:231]\n"
      "[   48.2] Kernel panic - not syncing: softlockup: hung tasks\n");
  EXPECT_TRUE(r.soft_lockup);
  EXPECT_TRUE(r.kernel_panic);
  EXPECT_TRUE(r.Stuck());
  EXPECT_THAT(r.stuck_line, HasSubstr("soft lockup - CPU#1"));
  EXPECT_FALSE(r.HasEndMarker());
}

TEST(ParseConsoleTest, EmptyLog) {
  ConsoleResult r = ParseConsole("");
  EXPECT_FALSE(r.HasEndMarker());
  EXPECT_FALSE(r.Stuck());
  EXPECT_TRUE(r.kernel_version.empty());
}

TEST(ParseConsoleTest, LastCheckWins) {
  ConsoleResult r = ParseConsole("KILN-CHECK a 1\nKILN-CHECK a 2\n");
  EXPECT_EQ(r.checks.size(), 2u);
  EXPECT_EQ(r.Check("a"), "2");
  EXPECT_THAT(r.CheckAll("a"), ElementsAre("1", "2"));
  EXPECT_TRUE(r.CheckAll("b").empty());
}

TEST(LogTailTest, LastLinesSanitized) {
  EXPECT_EQ(LogTail("a\nb\r\nc\x01\n\n", 2), "b\nc?\n");
  EXPECT_EQ(LogTail("only", 5), "only\n");
  EXPECT_EQ(LogTail("", 5), "");
}

}  // namespace
}  // namespace kiln::harness
