// File: agent/runner/oom_test.cc
// The kernel log's OOM kills and the report built from them (files standing in for /dev/kmsg
// and /proc/meminfo).
#include "agent/runner/oom.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::agent::runner {
namespace {

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
