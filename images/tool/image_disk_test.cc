// Tests of images/tool/image_disk.h: a real OCI layout -> a real ext4 disk (mkext4.sh), read
// back with debugfs (nothing is mounted).
#include "images/tool/image_disk.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "images/oci/digest.h"
#include "images/tool/layer_testing.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

namespace fs = std::filesystem;
using ::kiln::images::testing::E;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

// Debugfs(disk, request): what `debugfs -R request disk` prints on stdout.
std::string Debugfs(const std::string& disk, const std::string& request) {
  std::string out;
  const std::string cmd = absl::StrCat("PATH=/usr/sbin:/sbin:/usr/bin:/bin debugfs -R '", request,
                                       "' '", disk, "' 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

class ImageDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(std::getenv("TEST_TMPDIR")) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string runfiles =
        absl::StrCat(std::getenv("TEST_SRCDIR"), "/", std::getenv("TEST_WORKSPACE"));
    options_.mkext4 = runfiles + "/images/rootfs/mkext4";
    options_.mke2fs_conf = runfiles + "/images/rootfs/mke2fs.conf";
    options_.uuid = "6b696c6e-7465-4374-8f6f-740000000099";
    options_.label = "kiln-test";
    options_.unpack.device_dirs = {"dev"};
    options_.work_dir = dir_.string();
  }
  std::string Layout(const std::vector<std::vector<E>>& layers) {
    const std::string layout = (dir_ / "layout").string();
    EXPECT_OK(testing::WriteTestImage(layout, dir_.string(), layers).status());
    return layout;
  }
  fs::path dir_;
  DiskOptions options_;
};

const std::vector<std::vector<E>> kLayers = {
    {{"./", 'd', "", 0755},
     {"etc", 'd', "", 0755},
     {"etc/os-release", 'f', "ID=lower\n"},
     {"etc/old", 'f', "deleted above\n"},
     {"etc/shadow", 'f', "root:*:1::::::\n", 0640, 0, 42},
     {"dev", 'd', "", 0755},
     {"dev/null", 'c', "", 0666, 0, 0, {}, 1, 3},
     {"opt", 'd', "", 0755},
     {"opt/gone", 'f', "x"},
     {"usr/bin/tool", 'f', "#!/bin/sh\n", 04755},
     {"usr/bin/tool2", 'h', "usr/bin/tool"},
     {"home/builder", 'd', "", 0750, 1000, 1000}},
    {{"etc/.wh.old", 'f', ""},
     {"etc/os-release", 'f', "ID=upper\n"},
     {"opt/.wh..wh..opq", 'f', ""},
     {"opt/new", 'f', "n"}},
};

// The disk holds exactly what the layers make (a file deleted in an upper layer is absent),
// with modes, owners, devices and hard links, and two runs give the same bytes.
TEST_F(ImageDiskTest, DiskHoldsTheUnpackedImageAndIsDeterministic) {
  const std::string layout = Layout(kLayers);
  const std::string a = (dir_ / "a.ext4").string(), b = (dir_ / "b.ext4").string();
  ASSERT_OK_AND_ASSIGN(DiskStats s, ImageToDisk(layout, "", a, options_));
  EXPECT_EQ(s.unpack.layers, 2);
  EXPECT_EQ(s.unpack.whiteouts, 1);
  EXPECT_EQ(s.unpack.opaque_dirs, 1);
  ASSERT_OK(ImageToDisk(layout, "", b, options_).status());
  ASSERT_OK_AND_ASSIGN(std::string da, oci::Sha256FileDigest(a));
  ASSERT_OK_AND_ASSIGN(std::string db, oci::Sha256FileDigest(b));
  EXPECT_EQ(da, db);

  EXPECT_THAT(Debugfs(a, "ls /etc"), Not(HasSubstr("old")));
  EXPECT_THAT(Debugfs(a, "ls /etc"), HasSubstr("os-release"));
  EXPECT_EQ(Debugfs(a, "cat /etc/os-release"), "ID=upper\n");
  EXPECT_THAT(Debugfs(a, "ls /opt"), Not(HasSubstr("gone")));
  EXPECT_THAT(Debugfs(a, "ls /opt"), HasSubstr("new"));
  EXPECT_THAT(Debugfs(a, "stat /etc/shadow"), HasSubstr("Mode:  0640"));
  EXPECT_THAT(Debugfs(a, "stat /etc/shadow"), HasSubstr("Group:    42"));
  EXPECT_THAT(Debugfs(a, "stat /usr/bin/tool"), HasSubstr("Mode:  04755"));
  EXPECT_THAT(Debugfs(a, "stat /usr/bin/tool"), HasSubstr("Links: 2"));
  EXPECT_THAT(Debugfs(a, "stat /home/builder"), HasSubstr("User:  1000"));
  EXPECT_THAT(Debugfs(a, "stat /dev/null"), HasSubstr("Type: character special"));
  EXPECT_THAT(Debugfs(a, "stat /dev/null"), HasSubstr("Device major/minor number: 01:03"));
  // The unpacked tree is gone.
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_FALSE(e.path().filename().string().rfind("kiln-image-disk.", 0) == 0) << e.path();
  }
}

TEST_F(ImageDiskTest, HostileImageOrBadOptionsMakeNoDisk) {
  const std::string out = (dir_ / "out.ext4").string();
  std::vector<std::vector<E>> hostile = kLayers;
  hostile[1].push_back({"etc/passwd-link", 'l', "../../../etc/passwd"});
  const std::string layout = Layout(hostile);
  EXPECT_THAT(ImageToDisk(layout, "", out, options_),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("layer 2 of 2 sha256:")));
  EXPECT_FALSE(fs::exists(out));

  DiskOptions bad = options_;
  bad.uuid = "not-a-uuid";
  EXPECT_THAT(ImageToDisk(layout, "", out, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a lower-case")));
  bad = options_;
  bad.label = "a-label-longer-than-16";
  EXPECT_THAT(ImageToDisk(layout, "", out, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 16 bytes")));
  EXPECT_THAT(ImageToDisk((dir_ / "no-such-layout").string(), "", out, options_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("")));
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(ImageDiskTest, AFailingOrMissingMkext4IsAClearErrorAndMakesNoDisk) {
  const std::string out = (dir_ / "out.ext4").string();
  const std::string layout = Layout(kLayers);
  DiskOptions failing = options_;
  failing.mkext4 = "/bin/false";
  EXPECT_THAT(ImageToDisk(layout, "", out, failing),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("/bin/false: exit status 1")));
  EXPECT_FALSE(fs::exists(out));
  DiskOptions missing = options_;
  missing.mkext4 = (dir_ / "no-such-mkext4").string();
  EXPECT_THAT(ImageToDisk(layout, "", out, missing),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-mkext4")));
  EXPECT_FALSE(fs::exists(out));
  // The unpacked tree is gone after a failure too.
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_FALSE(e.path().filename().string().rfind("kiln-image-disk.", 0) == 0) << e.path();
  }
}

}  // namespace
}  // namespace kiln::images
