// File: harness/vmm/console_test.cc
#include "harness/vmm/console.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::harness {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Testdata(const std::string& name) {
  const std::string path = absl::StrCat(std::getenv("TEST_SRCDIR"), "/",
                                        std::getenv("TEST_WORKSPACE"), "/harness/vmm/testdata/", name);
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string TmpFile(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return absl::StrCat(t ? t : "/tmp", "/", name);
}

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

// A builder VM with 80 MiB (testdata/builder-oom-dockerd.serial.log): the kernel's OOM report
// (invoked oom-killer, the stack, Mem-Info, the task table, the oom-kill summary, the Killed
// line, oom_reaper) ends with dockerd killed; init then exits normally.
TEST(ParseConsoleTest, OomKillOfDockerd) {
  ConsoleResult r = ParseConsole(Testdata("builder-oom-dockerd.serial.log"));
  ASSERT_EQ(r.oom_kills.size(), 1u);  // summary + Killed line are one kill
  EXPECT_EQ(r.oom_kills[0].pid, 244);
  EXPECT_EQ(r.oom_kills[0].process, "dockerd");
  EXPECT_FALSE(r.oom_kills[0].memcg);
  EXPECT_THAT(r.oom_kills[0].line, HasSubstr("Out of memory: Killed process 244 (dockerd)"));
  EXPECT_TRUE(r.GuestOutOfMemory());
  EXPECT_FALSE(r.Stuck());
  EXPECT_TRUE(r.HasEndMarker());
  EXPECT_EQ(r.OomKilledProcesses(), "dockerd (pid 244)");
  EXPECT_EQ(GuestOomMessage(r, 80, "--builder_memory_mib"),
            "guest out of memory (OOM killer killed dockerd (pid 244)); the VM had 80 MiB; "
            "raise --builder_memory_mib");
}

// The other way 80 MiB ends: containerd is killed, the guest thrashes, a soft lockup and the
// softlockup panic follow. Stuck() is true, but GuestOutOfMemory() says what it really is.
TEST(ParseConsoleTest, OomKillThenSoftLockup) {
  ConsoleResult r = ParseConsole(Testdata("builder-oom-lockup.serial.log"));
  ASSERT_EQ(r.oom_kills.size(), 1u);
  EXPECT_EQ(r.oom_kills[0].process, "containerd");
  EXPECT_EQ(r.oom_kills[0].pid, 231);
  EXPECT_TRUE(r.GuestOutOfMemory());
  EXPECT_TRUE(r.Stuck());
  EXPECT_FALSE(r.HasEndMarker());
  EXPECT_THAT(GuestOomMessage(r, 80, "--memory_mib"),
              HasSubstr("OOM killer killed containerd (pid 231)); the VM had 80 MiB; raise "
                        "--memory_mib"));
}

// The real thing (verify --builder_memory_mib=80): containerd killed, nothing after it.
TEST(ParseConsoleTest, RealOomLogFromAnEightyMiBBuilder) {
  ConsoleResult r = ParseConsole(Testdata("builder-oom-real.serial.log"));
  ASSERT_EQ(r.oom_kills.size(), 1u);
  EXPECT_EQ(r.oom_kills[0].process, "containerd");
  EXPECT_EQ(r.oom_kills[0].pid, 87);
  EXPECT_TRUE(r.GuestOutOfMemory());
  EXPECT_FALSE(r.Stuck());
  EXPECT_TRUE(r.ready);
  EXPECT_FALSE(r.HasEndMarker());
  EXPECT_EQ(GuestOomMessage(r, 80, "--builder_memory_mib"),
            "guest out of memory (OOM killer killed containerd (pid 87)); the VM had 80 MiB; "
            "raise --builder_memory_mib");
}

TEST(ParseConsoleTest, NoOomOnAHealthyLog) {
  ConsoleResult r = ParseConsole(Testdata("agent-vsock.serial.log"));
  EXPECT_TRUE(r.oom_kills.empty());
  EXPECT_FALSE(r.GuestOutOfMemory());
  EXPECT_EQ(GuestOomMessage(r, 1024, "--x"), "");
}

TEST(ParseConsoleTest, MemcgOomIsNotTheVmsMemory) {
  ConsoleResult r = ParseConsole(
      "[   30.1] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
      "oom_memcg=/buildkit/x,task_memcg=/buildkit/x,task=python3,pid=901,uid=0\n"
      "[   30.2] Memory cgroup out of memory: Killed process 901 (python3) total-vm:9000kB, "
      "anon-rss:8000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:60kB oom_score_adj:0\n");
  ASSERT_EQ(r.oom_kills.size(), 1u);
  EXPECT_TRUE(r.oom_kills[0].memcg);
  EXPECT_FALSE(r.GuestOutOfMemory());
  EXPECT_THAT(GuestOomMessage(r, 512, "--m"),
              AllOf(HasSubstr("memory cgroup limit"), HasSubstr("python3 (pid 901)"),
                    Not(HasSubstr("raise"))));
}

TEST(ParseConsoleTest, OomSummaryWithoutItsKilledLineAndNoKillableProcess) {
  ConsoleResult r = ParseConsole(
      "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),global_oom,task_memcg=/,"
      "task=kiln-agent,pid=188,uid=0\n"
      "Out of memory: Killed process 300 (sh) total-vm:1kB\n"
      "Kernel panic - not syncing: Out of memory and no killable processes...\n");
  ASSERT_EQ(r.oom_kills.size(), 3u);
  EXPECT_EQ(r.oom_kills[0].process, "kiln-agent");
  EXPECT_EQ(r.oom_kills[1].process, "sh");
  EXPECT_EQ(r.OomKilledProcesses(),
            "kiln-agent (pid 188), sh (pid 300), no killable process");
}

// Any split of a log into Feed() calls parses like the whole.
TEST(ConsoleParserTest, EverySplitPointParsesTheSame) {
  const std::string log = std::string(kGoodLog) +
                          "oom-kill:constraint=CONSTRAINT_NONE,task=dockerd,pid=7,uid=0\n"
                          "Out of memory: Killed process 7 (dockerd) total-vm:1kB\n";
  const ConsoleResult whole = ParseConsole(log);
  ASSERT_EQ(whole.oom_kills.size(), 1u);
  for (size_t cut = 0; cut <= log.size(); ++cut) {
    ConsoleParser p;
    p.Feed(log.substr(0, cut));
    p.Feed(log.substr(cut));
    const ConsoleResult& r = p.result();
    ASSERT_EQ(r.steps, whole.steps) << cut;
    ASSERT_EQ(r.checks.size(), whole.checks.size()) << cut;
    ASSERT_EQ(r.exit_status, whole.exit_status) << cut;
    ASSERT_EQ(r.kernel_version, whole.kernel_version) << cut;
    ASSERT_EQ(r.oom_kills.size(), 1u) << cut;
    ASSERT_EQ(r.oom_kills[0].process, "dockerd") << cut;
  }
  ConsoleParser bytewise;
  for (char c : log) bytewise.Feed(std::string(1, c));
  EXPECT_EQ(bytewise.result().Check("runc_exit"), "0");
}

// A guest that prints one endless line or millions of marker lines cannot grow the parse.
TEST(ConsoleParserTest, LongLinesAreCutAndListsAreCapped) {
  ConsoleParser p;
  p.Feed("KILN-CHECK big ");
  p.Feed(std::string(10 << 20, 'x'));  // 10 MiB without a newline
  p.Feed("\nKILN-INIT: ready uptime_ms=5\n");
  const ConsoleResult& r = p.result();
  EXPECT_EQ(r.long_lines, 1u);
  ASSERT_TRUE(r.Check("big").has_value());
  EXPECT_LE(r.Check("big")->size(), kMaxConsoleLineBytes);
  EXPECT_TRUE(r.ready);  // the next line is parsed again
  ConsoleParser many;
  for (int i = 0; i < 5000; ++i) many.Feed(absl::StrCat("KILN-CHECK c", i, " v\n"));
  EXPECT_EQ(many.result().checks.size(), kMaxConsoleRecords);
  EXPECT_EQ(many.result().dropped_records, 5000 - kMaxConsoleRecords);
}

// The follower reads only what was appended, keeps head + tail, and says what it dropped.
TEST(SerialLogFollowerTest, IncrementalWithHeadAndTail) {
  const std::string path = TmpFile("follow.serial.log");
  unlink(path.c_str());
  SerialLogFollower f(path, {.head_bytes = 100, .tail_bytes = 100, .max_read_per_poll = 1000});
  EXPECT_TRUE(f.Poll().ok());  // not there yet: fine
  EXPECT_EQ(f.bytes_read(), 0u);
  std::ofstream out(path, std::ios::binary);
  out << "Linux version 6.1.0-t x\nKILN-INIT: ready uptime_ms=1\nKILN-INIT: exit sta" << std::flush;
  ASSERT_TRUE(f.Poll().ok());
  EXPECT_TRUE(f.console().ready);
  EXPECT_FALSE(f.console().HasEndMarker());  // half a line
  out << "tus=0 uptime_ms=2\n" << std::flush;
  ASSERT_TRUE(f.Poll().ok());
  EXPECT_EQ(f.console().exit_status, 0);
  EXPECT_EQ(f.console().kernel_version, "6.1.0-t");
  EXPECT_FALSE(f.truncated());
  EXPECT_EQ(f.Text(), "Linux version 6.1.0-t x\nKILN-INIT: ready uptime_ms=1\n"
                      "KILN-INIT: exit status=0 uptime_ms=2\n");
  // 5000 bytes more: only 1000 per poll; head (100) and tail (100) kept.
  for (int i = 0; i < 50; ++i) out << absl::StrCat("line ", 1000 + i, " ", std::string(89, 'y'), "\n");
  out << "oom-kill:constraint=CONSTRAINT_NONE,task=dockerd,pid=9,uid=0\n" << std::flush;
  ASSERT_TRUE(f.Poll().ok());
  EXPECT_EQ(f.bytes_read(), 90u + 1000u);  // the 90 bytes above + one poll's cap
  while (true) {
    const uint64_t before = f.bytes_read();
    ASSERT_TRUE(f.Poll().ok());
    if (f.bytes_read() == before) break;
  }
  EXPECT_TRUE(f.truncated());
  EXPECT_TRUE(f.console().GuestOutOfMemory());  // seen although not kept
  const std::string text = f.Text();
  EXPECT_THAT(text, HasSubstr("Linux version 6.1.0-t"));
  EXPECT_THAT(text, HasSubstr("bytes of the serial log not kept (host cap: first 100 + last 100"));
  EXPECT_THAT(text, HasSubstr("task=dockerd,pid=9"));
  EXPECT_THAT(text, Not(HasSubstr("line 1010")));
  EXPECT_LT(text.size(), 400u);
  EXPECT_THAT(f.Tail(1), HasSubstr("oom-kill:"));
}

TEST(LogTailTest, LastLinesSanitized) {
  EXPECT_EQ(LogTail("a\nb\r\nc\x01\n\n", 2), "b\nc?\n");
  EXPECT_EQ(LogTail("only", 5), "only\n");
  EXPECT_EQ(LogTail("", 5), "");
}

}  // namespace
}  // namespace kiln::harness
