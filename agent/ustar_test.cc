// ustar_test: UstarWriter's archives read back by libarchive (names, types, modes, sizes,
// contents), its fixed header fields (mtime 0, uid/gid 0, "root", a valid checksum) and its
// errors (a name over 100 bytes, a file that shrank, an unwritable path).
#include "agent/ustar.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

std::string TempDir() {
  const char* t = getenv("TEST_TMPDIR");
  std::string templ = std::string(t ? t : "/tmp") + "/ustar-XXXXXX";
  EXPECT_NE(mkdtemp(templ.data()), nullptr);
  return templ;
}

std::string Contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Entry {
  int type = 0;  // AE_IFREG, AE_IFDIR, AE_IFLNK
  int mode = 0;
  std::string data;
  std::string link;
};

// ReadBack(path): every entry of the tar at `path` as libarchive sees it.
std::map<std::string, Entry> ReadBack(const std::string& path) {
  std::map<std::string, Entry> out;
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  EXPECT_EQ(archive_read_open_filename(a, path.c_str(), 10240), ARCHIVE_OK)
      << archive_error_string(a);
  struct archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    Entry entry;
    entry.type = archive_entry_filetype(e);
    entry.mode = archive_entry_perm(e);
    if (archive_entry_symlink(e) != nullptr) entry.link = archive_entry_symlink(e);
    char buf[4096];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) entry.data.append(buf, n);
    EXPECT_EQ(archive_entry_mtime(e), 0);
    EXPECT_EQ(archive_entry_uid(e), 0);
    EXPECT_EQ(archive_entry_gid(e), 0);
    EXPECT_STREQ(archive_entry_uname(e), "root");
    out[archive_entry_pathname(e)] = entry;
  }
  archive_read_free(a);
  return out;
}

TEST(UstarWriterTest, EntriesReadBackWithTheirTypesModesAndContents) {
  const std::string dir = TempDir();
  std::ofstream(dir + "/src") << std::string(1000, 'x');
  UstarWriter w;
  ASSERT_THAT(w.Open(dir + "/out.tar"), IsOk());
  ASSERT_THAT(w.Dir("etc/"), IsOk());
  ASSERT_THAT(w.Bytes("etc/hello", "hi\n"), IsOk());
  ASSERT_THAT(w.Symlink("etc/link", "hello"), IsOk());
  ASSERT_THAT(w.File("bin/tool", dir + "/src", 1000, 0755), IsOk());
  ASSERT_THAT(w.Bytes("empty", ""), IsOk());
  ASSERT_THAT(w.Finish(), IsOk());

  const std::string bytes = Contents(dir + "/out.tar");
  // Headers and data in 512-byte blocks, then two zero blocks.
  EXPECT_EQ(bytes.size() % 512, 0u);
  EXPECT_EQ(bytes.substr(bytes.size() - 1024), std::string(1024, '\0'));
  EXPECT_EQ(bytes.substr(257, 8), std::string("ustar\0" "00", 8));

  std::map<std::string, Entry> got = ReadBack(dir + "/out.tar");
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got["etc/"].type, AE_IFDIR);
  EXPECT_EQ(got["etc/"].mode, 0755);
  EXPECT_EQ(got["etc/hello"].type, AE_IFREG);
  EXPECT_EQ(got["etc/hello"].mode, 0644);
  EXPECT_EQ(got["etc/hello"].data, "hi\n");
  EXPECT_EQ(got["etc/link"].type, AE_IFLNK);
  EXPECT_EQ(got["etc/link"].mode, 0777);
  EXPECT_EQ(got["etc/link"].link, "hello");
  EXPECT_EQ(got["bin/tool"].mode, 0755);
  EXPECT_EQ(got["bin/tool"].data, std::string(1000, 'x'));
  EXPECT_EQ(got["empty"].data, "");
}

TEST(UstarWriterTest, SameEntriesGiveTheSameBytes) {
  const std::string dir = TempDir();
  for (const char* name : {"/a.tar", "/b.tar"}) {
    UstarWriter w;
    ASSERT_THAT(w.Open(dir + name), IsOk());
    ASSERT_THAT(w.Bytes("f", "data"), IsOk());
    ASSERT_THAT(w.Finish(), IsOk());
  }
  EXPECT_EQ(Contents(dir + "/a.tar"), Contents(dir + "/b.tar"));
}

TEST(UstarWriterTest, HeaderChecksumIsTheSumOfItsBytes) {
  const std::string dir = TempDir();
  UstarWriter w;
  ASSERT_THAT(w.Open(dir + "/c.tar"), IsOk());
  ASSERT_THAT(w.Bytes("f", "data"), IsOk());
  ASSERT_THAT(w.Finish(), IsOk());
  std::string h = Contents(dir + "/c.tar").substr(0, 512);
  unsigned stored = static_cast<unsigned>(std::strtoul(h.substr(148, 6).c_str(), nullptr, 8));
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  EXPECT_EQ(stored, sum);
}

TEST(UstarWriterTest, NameOrLinkOver100BytesIsRefused) {
  const std::string dir = TempDir();
  UstarWriter w;
  ASSERT_THAT(w.Open(dir + "/long.tar"), IsOk());
  EXPECT_THAT(w.Bytes(std::string(101, 'n'), "x"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("too long")));
  EXPECT_THAT(w.Symlink("l", std::string(101, 't')),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("too long")));
  EXPECT_THAT(w.Bytes(std::string(100, 'n'), "x"), IsOk());
}

TEST(UstarWriterTest, FileThatShrankIsDataLoss) {
  const std::string dir = TempDir();
  std::ofstream(dir + "/short") << "abc";
  UstarWriter w;
  ASSERT_THAT(w.Open(dir + "/s.tar"), IsOk());
  EXPECT_THAT(w.File("short", dir + "/short", 10),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shrank")));
  EXPECT_THAT(w.File("missing", dir + "/missing", 1),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir + "/missing")));
}

TEST(UstarWriterTest, UnwritablePathIsNamed) {
  UstarWriter w;
  EXPECT_THAT(w.Open("/nonexistent-dir/x.tar"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent-dir/x.tar")));
}

}  // namespace
}  // namespace kiln::agent
