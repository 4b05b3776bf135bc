// File: init/config_test.cc
#include "init/config.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::init {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(SplitCmdlineTest, WhitespaceAndQuotes) {
  EXPECT_THAT(SplitCmdline("  a=1\tb=2\n"), ElementsAre("a=1", "b=2"));
  EXPECT_THAT(SplitCmdline("kiln.exec=\"/bin/x --y z\" console=ttyS0"),
              ElementsAre("kiln.exec=/bin/x --y z", "console=ttyS0"));
  EXPECT_THAT(SplitCmdline("\"kiln.exec=/a b\""), ElementsAre("kiln.exec=/a b"));
  EXPECT_THAT(SplitCmdline("a=\"\""), ElementsAre("a="));
  EXPECT_THAT(SplitCmdline("x=\"unterminated rest"), ElementsAre("x=unterminated rest"));
  EXPECT_THAT(SplitCmdline(""), ElementsAre());
}

TEST(SplitCommandTest, SpacesAndSingleQuotes) {
  ASSERT_OK_AND_ASSIGN(auto argv, SplitCommand("/usr/lib/kiln/cgroup-check  --x"));
  EXPECT_THAT(argv, ElementsAre("/usr/lib/kiln/cgroup-check", "--x"));
  ASSERT_OK_AND_ASSIGN(argv, SplitCommand("sh -c 'echo a  b' ''"));
  EXPECT_THAT(argv, ElementsAre("sh", "-c", "echo a  b", ""));
  EXPECT_THAT(SplitCommand("sh -c 'oops"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unterminated")));
}

TEST(ParseCmdlineTest, DefaultsWithoutKilnKeys) {
  ASSERT_OK_AND_ASSIGN(Config c, ParseCmdline("console=ttyS0 panic=-1 reboot=t quiet\n"));
  EXPECT_EQ(c.cgroup, CgroupPolicy::kReadWrite);
  EXPECT_EQ(c.root, "");
  EXPECT_EQ(c.rootfstype, "ext4");
  EXPECT_EQ(c.overlay, "tmpfs");
  EXPECT_TRUE(c.exec.empty());
  EXPECT_EQ(c.uid, 0u);
  EXPECT_EQ(c.gid, 0u);
  EXPECT_EQ(c.deadline_ms, 0u);
  EXPECT_FALSE(c.delegate.has_value());
}

TEST(ParseCmdlineTest, EveryKey) {
  ASSERT_OK_AND_ASSIGN(
      Config c,
      ParseCmdline("console=ttyS0 kiln.cgroup=ro kiln.root=/dev/vda kiln.rootfstype=erofs "
                   "kiln.overlay=/dev/vdb kiln.exec=\"/usr/lib/kiln/cgroup-check --x\" "
                   "kiln.uid=1000 kiln.gid=1001 kiln.deadline_ms=30000 notkiln.exec=ignored"));
  EXPECT_EQ(c.cgroup, CgroupPolicy::kReadOnly);
  EXPECT_EQ(c.root, "/dev/vda");
  EXPECT_EQ(c.rootfstype, "erofs");
  EXPECT_EQ(c.overlay, "/dev/vdb");
  EXPECT_THAT(c.exec, ElementsAre("/usr/lib/kiln/cgroup-check", "--x"));
  EXPECT_EQ(c.uid, 1000u);
  EXPECT_EQ(c.gid, 1001u);
  EXPECT_EQ(c.deadline_ms, 30000u);
}

TEST(ParseCmdlineTest, GoodValues) {
  struct Row {
    const char* cmdline;
    CgroupPolicy cgroup;
    const char* overlay;
  };
  const Row rows[] = {
      {"kiln.cgroup=rw", CgroupPolicy::kReadWrite, "tmpfs"},
      {"kiln.cgroup=ro", CgroupPolicy::kReadOnly, "tmpfs"},
      {"kiln.cgroup=off", CgroupPolicy::kOff, "tmpfs"},
      {"kiln.cgroup=ro kiln.cgroup=off", CgroupPolicy::kOff, "tmpfs"},  // last one wins
      {"kiln.overlay=tmpfs", CgroupPolicy::kReadWrite, "tmpfs"},
      {"kiln.overlay=/dev/vdb", CgroupPolicy::kReadWrite, "/dev/vdb"},
      {"kiln.overlay=\"/dev/disk/by-id/x\"", CgroupPolicy::kReadWrite, "/dev/disk/by-id/x"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.cmdline);
    ASSERT_OK_AND_ASSIGN(Config c, ParseCmdline(row.cmdline));
    EXPECT_EQ(c.cgroup, row.cgroup);
    EXPECT_EQ(c.overlay, row.overlay);
  }
  ASSERT_OK_AND_ASSIGN(Config c, ParseCmdline("kiln.uid=4294967294 kiln.deadline_ms=0"));
  EXPECT_EQ(c.uid, 4294967294u);
  ASSERT_OK_AND_ASSIGN(c, ParseCmdline("kiln.exec=\"sh -c 'echo a b'\""));
  EXPECT_THAT(c.exec, ElementsAre("sh", "-c", "echo a b"));
}

// Every bad value: INVALID_ARGUMENT whose message names the key, the value and what is
// allowed.
TEST(ParseCmdlineTest, BadValues) {
  struct Row {
    const char* cmdline;
    const char* want_key_value;
    const char* want_allowed;
  };
  const Row rows[] = {
      {"kiln.cgroup=xx", "kiln.cgroup=\"xx\"", "rw|ro|off"},
      {"kiln.cgroup=", "kiln.cgroup=\"\"", "rw|ro|off"},
      {"kiln.cgroup=RW", "kiln.cgroup=\"RW\"", "rw|ro|off"},
      {"kiln.root=vda", "kiln.root=\"vda\"", "absolute device path"},
      {"kiln.root=", "kiln.root=\"\"", "absolute device path"},
      {"kiln.root=/", "kiln.root=\"/\"", "absolute device path"},
      {"kiln.root=/dev/../etc/x", "kiln.root=\"/dev/../etc/x\"", "absolute device path"},
      {"kiln.rootfstype=", "kiln.rootfstype=\"\"", "file system type"},
      {"kiln.rootfstype=Ext4", "kiln.rootfstype=\"Ext4\"", "file system type"},
      {"kiln.rootfstype=ext4,x", "kiln.rootfstype=\"ext4,x\"", "file system type"},
      {"kiln.overlay=ramfs", "kiln.overlay=\"ramfs\"", "tmpfs|an absolute device path"},
      {"kiln.overlay=", "kiln.overlay=\"\"", "tmpfs|an absolute device path"},
      {"kiln.exec=", "kiln.exec=\"\"", "non-empty command"},
      {"kiln.exec=\"   \"", "kiln.exec=\"   \"", "non-empty command"},
      {"kiln.exec=\"sh -c 'x\"", "kiln.exec=\"sh -c 'x\"", "unterminated"},
      {"kiln.uid=-1", "kiln.uid=\"-1\"", "[0, 4294967294]"},
      {"kiln.uid=4294967295", "kiln.uid=\"4294967295\"", "[0, 4294967294]"},
      {"kiln.uid=1e3", "kiln.uid=\"1e3\"", "[0, 4294967294]"},
      {"kiln.uid=", "kiln.uid=\"\"", "[0, 4294967294]"},
      {"kiln.gid=+5", "kiln.gid=\"+5\"", "[0, 4294967294]"},
      {"kiln.gid=abc", "kiln.gid=\"abc\"", "[0, 4294967294]"},
      {"kiln.deadline_ms=-5", "kiln.deadline_ms=\"-5\"", "decimal integer of ms"},
      {"kiln.deadline_ms=10s", "kiln.deadline_ms=\"10s\"", "decimal integer of ms"},
      {"kiln.deadline_ms=99999999999999999999", "kiln.deadline_ms=\"99999999999999999999\"",
       "decimal integer of ms"},
      {"kiln.deadline_ms=1125899906842625", "kiln.deadline_ms=\"1125899906842625\"",
       "decimal integer of ms"},
      {"kiln.cgroups=rw", "unknown key kiln.cgroups=\"rw\"", "known keys: kiln.cgroup"},
      {"kiln.=x", "unknown key kiln.=\"x\"", "known keys"},
      {"kiln.root", "kiln.root: missing value", "kiln.root=<value>"},
      {"console=ttyS0 kiln.cgroup=rw kiln.bogus=1", "kiln.bogus=\"1\"", "known keys"},
      {"kiln.bogus=1", "kiln.bogus=\"1\"", "kiln.delegate"},
      {"kiln.delegate=0", "kiln.delegate=\"0\"", "uid in [1, 4294967294]"},
      {"kiln.delegate=0:1000", "kiln.delegate=\"0:1000\"", "uid 0"},
      {"kiln.delegate=builder", "kiln.delegate=\"builder\"", "<uid>[:<gid>]"},
      {"kiln.delegate=", "kiln.delegate=\"\"", "<uid>[:<gid>]"},
      {"kiln.delegate=1000:", "kiln.delegate=\"1000:\"", "<uid>[:<gid>]"},
      {"kiln.delegate=:1000", "kiln.delegate=\":1000\"", "<uid>[:<gid>]"},
      {"kiln.delegate=1000:abc", "kiln.delegate=\"1000:abc\"", "<uid>[:<gid>]"},
      {"kiln.delegate=1000:1000:1", "kiln.delegate=\"1000:1000:1\"", "<uid>[:<gid>]"},
      {"kiln.delegate=-1", "kiln.delegate=\"-1\"", "<uid>[:<gid>]"},
      {"kiln.delegate=4294967295", "kiln.delegate=\"4294967295\"", "uid in [1, 4294967294]"},
      {"kiln.delegate=1000:4294967295", "kiln.delegate=\"1000:4294967295\"",
       "gid in [0, 4294967294]"},
      {"kiln.delegate=99999999999999999999", "kiln.delegate=\"99999999999999999999\"",
       "<uid>[:<gid>]"},
      {"kiln.delegate=1000 kiln.cgroup=ro", "kiln.delegate=\"1000:1000\" with kiln.cgroup=ro",
       "kiln.delegate only with kiln.cgroup=rw"},
      {"kiln.cgroup=off kiln.delegate=1000:100", "kiln.delegate=\"1000:100\" with kiln.cgroup=off",
       "kiln.delegate only with kiln.cgroup=rw"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.cmdline);
    absl::StatusOr<Config> c = ParseCmdline(row.cmdline);
    EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(row.want_key_value)));
    EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(row.want_allowed)));
  }
}

// kiln.delegate=<uid>[:<gid>]: gid defaults to uid; with the default kiln.cgroup (rw) or an
// explicit rw in any order; the last value wins.
TEST(ParseCmdlineTest, DelegateValues) {
  struct Row {
    const char* cmdline;
    uint32_t uid;
    uint32_t gid;
  };
  const Row rows[] = {
      {"kiln.delegate=1000", 1000, 1000},
      {"kiln.delegate=1000:100", 1000, 100},
      {"kiln.delegate=1000:0", 1000, 0},
      {"kiln.delegate=1", 1, 1},
      {"kiln.delegate=4294967294:4294967294", 4294967294u, 4294967294u},
      {"kiln.cgroup=rw kiln.delegate=1000", 1000, 1000},
      {"kiln.delegate=1000 kiln.cgroup=rw", 1000, 1000},
      {"kiln.cgroup=off kiln.delegate=1000 kiln.cgroup=rw", 1000, 1000},
      {"kiln.delegate=5 kiln.delegate=1000:1001", 1000, 1001},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.cmdline);
    ASSERT_OK_AND_ASSIGN(Config c, ParseCmdline(row.cmdline));
    ASSERT_TRUE(c.delegate.has_value());
    EXPECT_EQ(*c.delegate, (CgroupDelegate{row.uid, row.gid}));
    EXPECT_EQ(c.cgroup, CgroupPolicy::kReadWrite);
  }
}

TEST(CgroupPolicyNameTest, Names) {
  EXPECT_EQ(CgroupPolicyName(CgroupPolicy::kReadWrite), "rw");
  EXPECT_EQ(CgroupPolicyName(CgroupPolicy::kReadOnly), "ro");
  EXPECT_EQ(CgroupPolicyName(CgroupPolicy::kOff), "off");
}

}  // namespace
}  // namespace kiln::init
