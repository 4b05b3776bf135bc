// file_test: ReadFile on regular, empty, /proc (size 0), missing and directory paths and with a
// size limit; WriteFileAtomically's result, mode, replacement of an existing file, no leftover
// temporary file, and its errors (missing directory, a directory in the way).
#include "agent/file/file.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::file {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

std::string TempDir() {
  const char* t = getenv("TEST_TMPDIR");
  std::string templ = std::string(t ? t : "/tmp") + "/file-XXXXXX";
  EXPECT_NE(mkdtemp(templ.data()), nullptr);
  return templ;
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d)) {
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
  }
  closedir(d);
  return out;
}

TEST(ReadFileTest, ReadsWholeFilesOfAnySize) {
  const std::string dir = TempDir();
  const std::string big(200 * 1024 + 7, 'x');
  std::ofstream(dir + "/big", std::ios::binary) << big;
  std::ofstream(dir + "/empty");
  std::string with_nul("a\0b", 3);
  std::ofstream(dir + "/nul", std::ios::binary) << with_nul;
  ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(dir + "/big"));
  EXPECT_EQ(got, big);
  ASSERT_OK_AND_ASSIGN(std::string empty, ReadFile(dir + "/empty"));
  EXPECT_EQ(empty, "");
  ASSERT_OK_AND_ASSIGN(std::string nul, ReadFile(dir + "/nul"));
  EXPECT_EQ(nul, with_nul);
}

TEST(ReadFileTest, ProcFilesWhoseSizeIsZeroReadFully) {
  ASSERT_OK_AND_ASSIGN(std::string status, ReadFile("/proc/self/status"));
  EXPECT_THAT(status, HasSubstr("Pid:"));
}

TEST(ReadFileTest, ErrorsNameThePath) {
  const std::string dir = TempDir();
  EXPECT_THAT(ReadFile(dir + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir + "/missing")));
  EXPECT_FALSE(ReadFile(dir).ok());  // a directory: read fails with EISDIR
  EXPECT_EQ(ReadFileOrEmpty(dir + "/missing"), "");
}

TEST(ReadFileTest, LimitRefusesALargerFile) {
  const std::string dir = TempDir();
  std::ofstream(dir + "/f") << "12345";
  ASSERT_OK_AND_ASSIGN(std::string exact, ReadFile(dir + "/f", 5));
  EXPECT_EQ(exact, "12345");
  EXPECT_THAT(ReadFile(dir + "/f", 4),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr(dir + "/f is larger than 4 bytes")));
  EXPECT_THAT(ReadFile(dir + "/none", 4), StatusIs(absl::StatusCode::kNotFound, HasSubstr("none")));
}

TEST(WriteFileAtomicallyTest, WritesReplacesAndLeavesNoTemporaryFile) {
  const std::string dir = TempDir();
  ASSERT_THAT(WriteFileAtomically(dir + "/f", "first"), IsOk());
  ASSERT_THAT(WriteFileAtomically(dir + "/f", std::string(100000, 'y'), 0600), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(dir + "/f"));
  EXPECT_EQ(got, std::string(100000, 'y'));
  struct stat st;
  ASSERT_EQ(stat((dir + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Entries(dir), std::vector<std::string>{"f"});
  ASSERT_THAT(WriteFileAtomically(dir + "/g", ""), IsOk());
  ASSERT_EQ(stat((dir + "/g").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(st.st_size, 0);
}

TEST(WriteFileAtomicallyTest, ErrorsNameTheStepAndLeaveNoTemporaryFile) {
  const std::string dir = TempDir();
  EXPECT_THAT(WriteFileAtomically(dir + "/no/such/dir/f", "x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("create " + dir + "/no/such/dir/")));
  ASSERT_EQ(mkdir((dir + "/d").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir + "/d/x").c_str(), 0755), 0);
  std::ofstream(dir + "/d/x/keep") << "k";  // a non-empty directory cannot be renamed over
  EXPECT_THAT(WriteFileAtomically(dir + "/d/x", "data"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                                  HasSubstr("rename " + dir + "/d/x")));
  EXPECT_EQ(Entries(dir + "/d"), std::vector<std::string>{"x"});
}

}  // namespace
}  // namespace kiln::file
