#include "agent/runner/context_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent::runner {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

// E: one entry of a tar made by the test.
struct E {
  std::string path;
  mode_t type = AE_IFREG;
  std::string data;
  std::string link;      // symlink target
  std::string hardlink;  // hard link target
  mode_t perm = 0644;
};

void WriteTar(const std::string& file, const std::vector<E>& entries) {
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_filename(a, file.c_str()), ARCHIVE_OK);
  for (const E& e : entries) {
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    archive_entry_set_filetype(ae, e.type);
    archive_entry_set_perm(ae, e.perm);
    if (!e.link.empty()) archive_entry_set_symlink(ae, e.link.c_str());
    if (!e.hardlink.empty()) archive_entry_set_hardlink(ae, e.hardlink.c_str());
    if (e.type == AE_IFCHR) archive_entry_set_rdev(ae, makedev(1, 3));
    archive_entry_set_size(ae, e.type == AE_IFREG && e.hardlink.empty() ? e.data.size() : 0);
    ASSERT_EQ(archive_write_header(a, ae), ARCHIVE_OK) << archive_error_string(a);
    if (!e.data.empty()) archive_write_data(a, e.data.data(), e.data.size());
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
}

E Dir(std::string p) { return E{std::move(p), AE_IFDIR, "", "", "", 0755}; }
E File(std::string p, std::string data) { return E{std::move(p), AE_IFREG, std::move(data)}; }
E Sym(std::string p, std::string target) { return E{std::move(p), AE_IFLNK, "", std::move(target)}; }
E Hard(std::string p, std::string target) {
  return E{std::move(p), AE_IFREG, "", "", std::move(target)};
}

class ContextTarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-ctxtar-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dest_ = root_ + "/dest";
    ASSERT_EQ(mkdir(dest_.c_str(), 0755), 0);
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }

  absl::StatusOr<ContextTarStats> Extract(const std::vector<E>& entries,
                                          ContextTarLimits limits = {}) {
    std::string tar = root_ + "/ctx.tar";
    WriteTar(tar, entries);
    return ExtractContextTar(tar, dest_, limits);
  }
  bool DestIsEmpty() {
    DIR* d = opendir(dest_.c_str());
    int n = 0;
    while (struct dirent* de = readdir(d)) {
      if (std::string(de->d_name) != "." && std::string(de->d_name) != "..") ++n;
    }
    closedir(d);
    return n == 0;
  }
  std::string Read(const std::string& rel) {
    std::ifstream in(dest_ + "/" + rel);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string root_, dest_;
};

TEST_F(ContextTarTest, ExtractsAGoodContext) {
  E suid = File("bin/tool", "#!/bin/sh\n");
  suid.perm = 04755;
  ASSERT_OK_AND_ASSIGN(
      ContextTarStats stats,
      Extract({Dir("./"), File("./Dockerfile", "FROM x\n"), Dir("sub"), File("sub/a.txt", "aaa"),
               Sym("sub/link", "../Dockerfile"), Sym("sub/dirlink", "."),
               Hard("sub/hard", "sub/a.txt"), Dir("bin"), suid}));
  EXPECT_EQ(stats.entries, 9);
  EXPECT_EQ(stats.file_bytes, 7 + 3 + 10);
  EXPECT_EQ(Read("Dockerfile"), "FROM x\n");
  EXPECT_EQ(Read("sub/link"), "FROM x\n");
  EXPECT_EQ(Read("sub/hard"), "aaa");
  struct stat a, h, t;
  ASSERT_EQ(stat((dest_ + "/sub/a.txt").c_str(), &a), 0);
  ASSERT_EQ(stat((dest_ + "/sub/hard").c_str(), &h), 0);
  EXPECT_EQ(a.st_ino, h.st_ino);
  ASSERT_EQ(stat((dest_ + "/bin/tool").c_str(), &t), 0);
  EXPECT_EQ(t.st_mode & 07000, 0u) << "setuid bit must be dropped";
}

TEST_F(ContextTarTest, RefusesHostileEntriesNamingThem) {
  struct Row {
    const char* name;
    std::vector<E> entries;
    absl::StatusCode code;
    const char* want;
  };
  E chr{"dev/null", AE_IFCHR};
  E fifo{"pipe", AE_IFIFO};
  const std::vector<Row> rows = {
      {"absolute path", {File("/etc/cron.d/x", "x")}, absl::StatusCode::kInvalidArgument,
       "\"/etc/cron.d/x\" has an absolute path"},
      {"dotdot", {File("../x", "x")}, absl::StatusCode::kInvalidArgument, "\"../x\" has a \"..\""},
      {"inner dotdot", {Dir("a"), File("a/../../x", "x")}, absl::StatusCode::kInvalidArgument,
       "a/../../x"},
      {"absolute symlink", {Sym("passwd", "/etc/passwd")}, absl::StatusCode::kPermissionDenied,
       "\"passwd\" -> \"/etc/passwd\""},
      {"escaping symlink", {Dir("a"), Sym("a/l", "../../x")}, absl::StatusCode::kPermissionDenied,
       "\"a/l\" -> \"../../x\" escapes"},
      {"symlink chain escape", {Dir("d"), Sym("d/up", ".."), Sym("d/up2", "up/..")},
       absl::StatusCode::kPermissionDenied, "\"d/up2\""},
      {"symlink loop", {Sym("a", "b"), Sym("b", "a")}, absl::StatusCode::kInvalidArgument,
       "too many levels"},
      {"entry below symlink", {Dir("sub"), Sym("l", "sub"), File("l/f", "x")},
       absl::StatusCode::kPermissionDenied, "\"l/f\" lies below symlink \"l\""},
      {"hardlink escape", {Hard("h", "../etc/shadow")}, absl::StatusCode::kPermissionDenied,
       "\"h\" -> \"../etc/shadow\""},
      {"hardlink to nothing", {Hard("h", "nothing")}, absl::StatusCode::kPermissionDenied,
       "earlier regular file"},
      {"hardlink to symlink", {Sym("s", "x"), Hard("h", "s")},
       absl::StatusCode::kPermissionDenied, "earlier regular file"},
      {"char device", {chr}, absl::StatusCode::kInvalidArgument,
       "\"dev/null\" is a character device"},
      {"fifo", {fifo}, absl::StatusCode::kInvalidArgument, "\"pipe\" is a FIFO"},
      {"duplicate", {File("a", "1"), File("./a", "2")}, absl::StatusCode::kInvalidArgument,
       "appears more than once"},
      {"dir replaced by symlink", {Dir("d"), Sym("d", "..")}, absl::StatusCode::kInvalidArgument,
       "appears more than once"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    EXPECT_THAT(Extract(r.entries), StatusIs(r.code, HasSubstr(r.want)));
    EXPECT_TRUE(DestIsEmpty()) << "nothing may be extracted from a refused tar";
  }
}

TEST_F(ContextTarTest, EnforcesLimits) {
  ContextTarLimits limits;
  limits.max_entry_bytes = 10;
  EXPECT_THAT(Extract({File("big", std::string(11, 'x'))}, limits),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("\"big\" is 11 bytes")));
  limits = {};
  limits.max_total_bytes = 15;
  EXPECT_THAT(Extract({File("a", std::string(10, 'x')), File("b", std::string(10, 'x'))}, limits),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("\"b\"")));
  limits = {};
  limits.max_entries = 2;
  EXPECT_THAT(Extract({File("a", "1"), File("b", "2"), File("c", "3")}, limits),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("more than 2 entries")));
  EXPECT_TRUE(DestIsEmpty());
}

TEST_F(ContextTarTest, CapsSymlinkTargetLength) {
  // 1024 bytes of "./" resolve to the root: accepted; one byte more is refused.
  std::string target;
  while (target.size() < kMaxSymlinkTarget) target += "./";
  target.resize(kMaxSymlinkTarget);
  EXPECT_THAT(Extract({Sym("ok", target)}), IsOk());
  std::system(("rm -rf " + dest_ + " && mkdir " + dest_).c_str());
  EXPECT_THAT(Extract({Sym("long", target + "/")}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("target of 1025 bytes")));
  EXPECT_TRUE(DestIsEmpty());
}

// A few chained symlinks of long targets, named by many short ones: each short one costs
// 40 expansions of ~500 components. Every link resolves inside the context, so only the bound
// on the total resolution work refuses it (quickly).
TEST_F(ContextTarTest, CapsTotalSymlinkResolutionWork) {
  std::vector<E> entries;
  std::string dots;
  while (dots.size() < 1000) dots += "./";
  for (int i = 0; i < 39; ++i) entries.push_back(Sym("c" + std::to_string(i), dots + "c" + std::to_string(i + 1)));
  entries.push_back(Dir("c39"));
  for (int i = 0; i < 2000; ++i) entries.push_back(Sym("n" + std::to_string(i), "c0"));
  const absl::Time t0 = absl::Now();
  EXPECT_THAT(Extract(entries), StatusIs(absl::StatusCode::kResourceExhausted,
                                         HasSubstr("path components")));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(10));
  EXPECT_TRUE(DestIsEmpty());
  ContextTarLimits small;
  small.max_resolve_steps = 10;
  EXPECT_THAT(Extract({Dir("d"), Sym("a", "d/./././././././././."), Sym("b", "a")}, small),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("more than 10")));
}

// A header that claims more bytes than the destination's file system has free is refused from
// the header, before anything is written, even with no configured limit. The tar is made by
// hand: a GNU base-256 size field holds any size, and no data follows.
TEST_F(ContextTarTest, SizeCapsComeFromTheFreeSpaceOfTheDestination) {
  struct statvfs vfs;
  ASSERT_EQ(statvfs(dest_.c_str(), &vfs), 0);
  const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  std::string h(512, '\0');
  h.replace(0, 4, "huge");
  h.replace(100, 7, "0000644");
  h.replace(108, 7, "0000000");
  h.replace(116, 7, "0000000");
  const uint64_t size = 2 * free_bytes + (uint64_t{1} << 30);  // free space moves meanwhile
  h[124] = static_cast<char>(0x80);  // base-256
  for (int i = 0; i < 8; ++i) h[135 - i] = static_cast<char>((size >> (8 * i)) & 0xff);
  h.replace(136, 11, "00000000000");
  h[156] = '0';
  h.replace(257, 8, std::string("ustar  \0", 8));
  h.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  char chk[8];
  std::snprintf(chk, sizeof(chk), "%06o", sum);
  h.replace(148, 7, std::string(chk, 6) + '\0');
  const std::string tar = root_ + "/huge.tar";
  std::ofstream(tar, std::ios::binary) << h << std::string(1024, '\0');
  ContextTarLimits unlimited;
  unlimited.max_entry_bytes = INT64_MAX;
  unlimited.max_total_bytes = INT64_MAX;
  EXPECT_THAT(ExtractContextTar(tar, dest_, unlimited),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr(absl::StrCat("is ", size, " bytes (limit "))));
  EXPECT_TRUE(DestIsEmpty());
  ASSERT_OK_AND_ASSIGN(ContextTarLimits capped, CapToFreeSpace(unlimited, dest_));
  EXPECT_LT(capped.max_total_bytes, INT64_MAX);
  EXPECT_NEAR(static_cast<double>(capped.max_total_bytes), static_cast<double>(free_bytes),
              1e9);
}

TEST_F(ContextTarTest, CorruptAndMissingTars) {
  std::string tar = root_ + "/junk.tar";
  std::ofstream(tar) << std::string(1024, 'j');
  EXPECT_THAT(ExtractContextTar(tar, dest_, {}), StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  EXPECT_THAT(ExtractContextTar(root_ + "/absent.tar", dest_, {}),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST(NormalizeEntryPathTest, Table) {
  EXPECT_EQ(*NormalizeEntryPath("./a//b/"), "a/b");
  EXPECT_EQ(*NormalizeEntryPath("./"), "");
  EXPECT_THAT(NormalizeEntryPath(""), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(NormalizeEntryPath(std::string(4097, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(ResolveInArchiveTest, Table) {
  std::map<std::string, std::string> links = {
      {"a/up", ".."}, {"a/self", "."}, {"abs", "/x"}, {"b", "a/up/a"}, {"esc", "a/up/.."}};
  EXPECT_EQ(*ResolveInArchive("a/up", links), "");
  EXPECT_EQ(*ResolveInArchive("a/self/self/f", links), "a/f");
  EXPECT_EQ(*ResolveInArchive("b", links), "a");
  EXPECT_THAT(ResolveInArchive("esc", links), StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(ResolveInArchive("abs", links), StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
}

}  // namespace
}  // namespace kiln::agent::runner
