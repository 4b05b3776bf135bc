// Tests of images/tool/unpack.h with real tar layers written by libarchive (raw and gzip).
#include "images/tool/unpack.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "images/oci/digest.h"
#include "images/oci/image.h"
#include "images/oci/layout.h"
#include "images/tool/layer_testing.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

namespace fs = std::filesystem;
using ::kiln_testing::StatusIs;
using ::kiln::images::testing::E;
using ::kiln::images::testing::ReadAll;
using ::kiln::images::testing::WriteTar;
using ::testing::HasSubstr;

class UnpackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(std::getenv("TEST_TMPDIR")) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "root");
    root_ = (dir_ / "root").string();
  }
  // Layer(entries, gzip): writes layer N and returns its path and descriptor.
  std::pair<std::string, oci::Descriptor> Layer(const std::vector<E>& entries, bool gzip = false) {
    fs::path p = dir_ / absl::StrCat("layer", n_++, gzip ? ".tar.gz" : ".tar");
    return {p.string(), WriteTar(p.string(), entries, gzip)};
  }
  absl::Status Apply(const std::vector<E>& entries, const UnpackOptions& o = {}, bool gzip = false) {
    auto [path, desc] = Layer(entries, gzip);
    return UnpackLayer(path, desc, root_, o, &stats_);
  }
  bool Exists(const std::string& rel) {
    struct stat st;
    return lstat((root_ + "/" + rel).c_str(), &st) == 0;
  }
  bool RootIsEmpty() { return fs::is_empty(root_); }

  fs::path dir_;
  std::string root_;
  UnpackStats stats_;
  int n_ = 0;
};

// layer.md: `.wh.NAME` removes NAME of the lower layers, `.wh..wh..opq` empties a directory of
// the lower layers; entries of the same layer stay, whatever their order in the tar.
TEST_F(UnpackTest, WhiteoutsAndOpaqueDirsApplyToLowerLayersOnly) {
  ASSERT_OK(Apply({{"a", 'd', "", 0755},
                   {"a/keep", 'f', "k"},
                   {"a/b", 'd', "", 0755},
                   {"a/b/f1", 'f', "1"},
                   {"o", 'd', "", 0755},
                   {"o/old", 'f', "old"},
                   {"o/sub", 'd', "", 0755},
                   {"o/sub/x", 'f', "x"},
                   {"x", 'f', "a file"},
                   {"same", 'f', "lower"},
                   {"gone", 'f', "g"}}));
  ASSERT_OK(Apply({{"o/new", 'f', "new"},         // before the opaque marker in the tar
                   {"o/.wh..wh..opq", 'f', ""},
                   {"a/.wh.b", 'f', ""},
                   {".wh.gone", 'f', ""},
                   {"x", 'd', "", 0750},          // a directory replaces a file
                   {"x/inner", 'f', "in"},
                   {"same", 'f', "upper"},
                   {".wh.same", 'f', ""},         // same layer: "same" stays
                   {"lnk", 'l', "/usr/bin/env"},  // absolute: root-relative, allowed
                   {"a/rel", 'l', "../x/inner"},
                   {".wh..wh.plnk", 'd', "", 0700}},  // aufs metadata: not written
                  {}, /*gzip=*/true));
  EXPECT_TRUE(Exists("a/keep"));
  EXPECT_FALSE(Exists("a/b"));
  EXPECT_TRUE(Exists("o/new"));
  EXPECT_FALSE(Exists("o/old"));
  EXPECT_FALSE(Exists("o/sub"));
  EXPECT_FALSE(Exists("gone"));
  EXPECT_TRUE(fs::is_directory(root_ + "/x"));
  EXPECT_EQ(ReadAll(root_ + "/x/inner"), "in");
  EXPECT_EQ(ReadAll(root_ + "/same"), "upper");
  EXPECT_EQ(fs::read_symlink(root_ + "/lnk").string(), "/usr/bin/env");
  EXPECT_EQ(fs::read_symlink(root_ + "/a/rel").string(), "../x/inner");
  EXPECT_FALSE(Exists(".wh..wh.plnk"));
  for (const char* wh : {"o/.wh..wh..opq", "a/.wh.b", ".wh.gone", ".wh.same"}) {
    EXPECT_FALSE(Exists(wh)) << wh;
  }
  EXPECT_EQ(stats_.layers, 2);
  EXPECT_EQ(stats_.whiteouts, 3);
  EXPECT_EQ(stats_.opaque_dirs, 1);
  struct stat st;
  ASSERT_EQ(stat((root_ + "/x").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
}

// Modes (setuid too), numeric owners, xattrs, hard links, devices below an allowed directory
// and FIFOs are kept (image-spec layer.md). Needs root for owners and mknod.
TEST_F(UnpackTest, KeepsModesOwnersXattrsHardLinksAndDevices) {
  if (geteuid() != 0) GTEST_SKIP() << "SKIPPED: needs root (chown, mknod)";
  UnpackOptions o{.device_dirs = {"dev"}};
  ASSERT_OK(Apply({{"./", 'd', "", 0751},
                   {"bin", 'd', "", 0755},
                   {"bin/suid", 'f', "#!/bin/sh\n", 04755, 0, 0, {{"user.kiln", "v1"}}},
                   {"bin/hl", 'h', "bin/suid"},
                   {"home/u", 'd', "", 0700, 1000, 1000},
                   {"home/u/secret", 'f', "s", 0640, 1000, 100},
                   {"dev", 'd', "", 0755},
                   {"dev/null", 'c', "", 0666, 0, 0, {}, 1, 3},
                   {"run/fifo", 'p', "", 0600}},
                  o));
  struct stat st, hl;
  ASSERT_EQ(stat(root_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0751u);  // the root entry's mode goes to the root
  ASSERT_EQ(stat((root_ + "/bin/suid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u);
  ASSERT_EQ(stat((root_ + "/bin/hl").c_str(), &hl), 0);
  EXPECT_EQ(hl.st_ino, st.st_ino);
  EXPECT_EQ(st.st_nlink, 2u);
  char buf[16] = {};
  ssize_t n = lgetxattr((root_ + "/bin/suid").c_str(), "user.kiln", buf, sizeof buf);
  if (n < 0 && errno == ENOTSUP) {
    ADD_FAILURE() << "user xattrs not supported on " << root_;
  } else {
    EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "v1");
  }
  ASSERT_EQ(stat((root_ + "/home/u/secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 100u);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  ASSERT_EQ(stat((root_ + "/home/u").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(lstat((root_ + "/dev/null").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(major(st.st_rdev), 1u);
  EXPECT_EQ(minor(st.st_rdev), 3u);
  ASSERT_EQ(lstat((root_ + "/run/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

// Each hostile entry is refused with a message naming it, before the layer writes anything.
TEST_F(UnpackTest, HostileLayersAreRefusedBeforeAnythingIsWritten) {
  struct Row {
    std::vector<E> entries;
    absl::StatusCode code;
    const char* why;
    UnpackOptions options;
  };
  const std::vector<Row> rows = {
      {{{"ok", 'f', "x"}, {"../evil", 'f', "x"}}, absl::StatusCode::kInvalidArgument,
       "\"../evil\" has a \"..\" component"},
      {{{"a/../../evil", 'f', "x"}}, absl::StatusCode::kInvalidArgument, "\"..\" component"},
      {{{"/etc/evil", 'f', "x"}}, absl::StatusCode::kInvalidArgument, "absolute path"},
      {{{"a/l", 'l', "../../etc/passwd"}}, absl::StatusCode::kPermissionDenied,
       "symlink \"a/l\" -> \"../../etc/passwd\" points above the root"},
      {{{"f", 'f', "x"}, {"h", 'h', "../outside"}}, absl::StatusCode::kPermissionDenied,
       "hard link \"h\" -> \"../outside\" points outside the root"},
      {{{"etc/tty", 'c', "", 0600, 0, 0, {}, 5, 0}}, absl::StatusCode::kPermissionDenied,
       "character device \"etc/tty\" (5:0) is not allowed here (only below dev)",
       {.device_dirs = {"dev"}}},
      {{{"dev/sda", 'c', "", 0600, 0, 0, {}, 8, 0}}, absl::StatusCode::kPermissionDenied,
       "device nodes are not allowed in this image"},
      {{{".wh..", 'f', ""}}, absl::StatusCode::kInvalidArgument, "names no file"},
      {{{"disk", 'b', "", 0600, 0, 0, {}, 8, 0}}, absl::StatusCode::kPermissionDenied,
       "block device \"disk\" (8:0) is not allowed here"},
      {{{"", 'f', "x"}}, absl::StatusCode::kInvalidArgument, "empty name"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.why);
    fs::remove_all(root_);
    fs::create_directories(root_);
    absl::Status s = Apply(r.entries, r.options);
    EXPECT_THAT(s, StatusIs(r.code, HasSubstr(r.why)));
    EXPECT_TRUE(RootIsEmpty());
  }
}

// A lower layer's symlink cannot redirect a later write, hard link or whiteout outside the
// root (pointing at a real directory on this host).
TEST_F(UnpackTest, LowerSymlinksCannotRedirectWritesLinksOrDeletions) {
  const fs::path outside = dir_ / "outside";
  fs::create_directories(outside);
  std::ofstream(outside / "victim") << "keep me";
  ASSERT_OK(Apply({{"l", 'l', outside.string()}}));
  EXPECT_THAT(Apply({{"l/evil", 'f', "x"}}),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("parent \"l\" is a symlink")));
  EXPECT_THAT(Apply({{"l/.wh.victim", 'f', ""}}),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is a symlink")));
  // An opaque marker on a path that is a symlink in the tree: the symlink has no children
  // from lower layers, so nothing is deleted (and nothing is followed).
  ASSERT_OK(Apply({{"l/.wh..wh..opq", 'f', ""}}));
  EXPECT_THAT(Apply({{"h", 'h', "l/victim"}}),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is a symlink")));
  EXPECT_FALSE(fs::exists(outside / "evil"));
  EXPECT_EQ(ReadAll((outside / "victim").string()), "keep me");
  // Replacing the symlink itself is fine: it is deleted, not followed.
  ASSERT_OK(Apply({{"l", 'd', "", 0755}, {"l/file", 'f', "in"}}));
  EXPECT_EQ(ReadAll(root_ + "/l/file"), "in");
  EXPECT_EQ(ReadAll((outside / "victim").string()), "keep me");
}

// A blob that does not hash to its descriptor's digest is DataLoss; nothing is written.
TEST_F(UnpackTest, DigestMismatchIsDataLossAndWritesNothing) {
  auto [path, desc] = Layer({{"f", 'f', "x"}});
  desc.digest = oci::Sha256Digest("something else");
  EXPECT_THAT(UnpackLayer(path, desc, root_, {}, &stats_),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not its digest")));
  EXPECT_TRUE(RootIsEmpty());
  desc.media_type = "application/vnd.oci.image.config.v1+json";
  EXPECT_THAT(UnpackLayer(path, desc, root_, {}, &stats_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not a tar layer")));
  std::ofstream((dir_ / "garbage").string()) << "not a tar at all, just some bytes";
  int64_t size = 0;
  oci::Descriptor g{std::string(oci::kMediaTypeLayerTar),
                    *oci::Sha256FileDigest((dir_ / "garbage").string(), &size), size, {}};
  EXPECT_THAT(UnpackLayer((dir_ / "garbage").string(), g, root_, {}, &stats_),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("layer")));
  EXPECT_TRUE(RootIsEmpty());
}

// UnpackImage reads the layers of a real OCI layout in manifest order, after the config's
// digest; a tampered blob is named by layer.
TEST_F(UnpackTest, UnpackImageAppliesLayersInManifestOrder) {
  const std::string layout = (dir_ / "layout").string();
  ASSERT_OK_AND_ASSIGN(
      oci::Manifest m,
      testing::WriteTestImage(
          layout, dir_.string(),
          {{{"etc", 'd', "", 0755}, {"etc/os", 'f', "lower"}, {"etc/old", 'f', "x"}},
           {{"etc/os", 'f', "upper"}, {"etc/.wh.old", 'f', ""}}}));
  ASSERT_OK_AND_ASSIGN(oci::LayoutImage img, oci::ReadImageLayout(layout));
  ASSERT_OK_AND_ASSIGN(UnpackStats s, UnpackImage(img, root_, {}));
  EXPECT_EQ(s.layers, 2);
  EXPECT_EQ(ReadAll(root_ + "/etc/os"), "upper");
  EXPECT_FALSE(Exists("etc/old"));

  // Same size, other bytes: the second layer's digest no longer matches.
  const std::string blob = img.BlobPath(m.layers[1].digest);
  std::string bytes = ReadAll(blob);
  bytes[bytes.size() / 2] ^= 0x55;
  std::ofstream(blob, std::ios::binary | std::ios::trunc) << bytes;
  fs::remove_all(root_);
  fs::create_directories(root_);
  EXPECT_THAT(UnpackImage(img, root_, {}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr(absl::StrCat("layer 2 of 2 ", m.layers[1].digest))));
}

// The config's rootfs.diff_ids must describe the layers: one per layer, each the sha256 of
// that layer's uncompressed tar. A config naming another diff_id (its layers swapped, as a
// mixed-up or tampered image would have), or too few, is refused before the layer writes.
TEST_F(UnpackTest, ConfigDiffIdsMustMatchTheUncompressedLayers) {
  const std::vector<std::vector<E>> layers = {{{"a", 'f', "first"}}, {{"b", 'f', "second"}}};
  const std::string good = (dir_ / "good").string();
  ASSERT_OK(testing::WriteTestImage(good, dir_.string(), layers).status());
  ASSERT_OK_AND_ASSIGN(oci::LayoutImage img, oci::ReadImageLayout(good));
  ASSERT_OK(UnpackImage(img, root_, {}).status());
  EXPECT_EQ(ReadAll(root_ + "/b"), "second");

  ASSERT_OK_AND_ASSIGN(oci::ImageConfig config,
                       oci::ParseImageConfig(ReadAll(img.BlobPath(img.config.digest))));
  ASSERT_EQ(config.diff_ids.size(), 2u);
  std::vector<std::string> swapped = {config.diff_ids[1], config.diff_ids[0]};
  const std::string bad = (dir_ / "bad").string();
  ASSERT_OK(testing::WriteTestImage(bad, dir_.string(), layers, &swapped).status());
  ASSERT_OK_AND_ASSIGN(oci::LayoutImage bad_img, oci::ReadImageLayout(bad));
  fs::remove_all(root_);
  fs::create_directories(root_);
  absl::Status s = UnpackImage(bad_img, root_, {}).status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDataLoss,
                          HasSubstr(absl::StrCat("layer 1 of 2 ", bad_img.layers[0].digest))));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("hashes to ", config.diff_ids[0], ", but the image config's "
                                     "rootfs.diff_ids says ", config.diff_ids[1])));
  EXPECT_TRUE(RootIsEmpty());

  std::vector<std::string> one = {config.diff_ids[0]};
  const std::string short_config = (dir_ / "short").string();
  ASSERT_OK(testing::WriteTestImage(short_config, dir_.string(), layers, &one).status());
  ASSERT_OK_AND_ASSIGN(oci::LayoutImage short_img, oci::ReadImageLayout(short_config));
  EXPECT_THAT(UnpackImage(short_img, root_, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("lists 1 rootfs.diff_ids for the manifest's 2 layers")));
  EXPECT_TRUE(RootIsEmpty());
}

TEST(UnpackPureTest, ClassifyWhiteoutAndSymlinkTargets) {
  ASSERT_OK_AND_ASSIGN(Whiteout w, ClassifyWhiteout("a/b/.wh.c"));
  EXPECT_EQ(w.kind, Whiteout::Kind::kFile);
  EXPECT_EQ(w.target, "a/b/c");
  ASSERT_OK_AND_ASSIGN(w, ClassifyWhiteout(".wh..wh..opq"));
  EXPECT_EQ(w.kind, Whiteout::Kind::kOpaque);
  EXPECT_EQ(w.target, "");
  ASSERT_OK_AND_ASSIGN(w, ClassifyWhiteout("x/.wh..wh.aufs"));
  EXPECT_EQ(w.kind, Whiteout::Kind::kMetadata);
  ASSERT_OK_AND_ASSIGN(w, ClassifyWhiteout("x/wh.y"));
  EXPECT_EQ(w.kind, Whiteout::Kind::kNone);
  EXPECT_THAT(ClassifyWhiteout("x/.wh."), StatusIs(absl::StatusCode::kInvalidArgument,
                                                   HasSubstr("names no file")));
  EXPECT_OK(CheckSymlinkTarget("usr/lib/x", "../../bin/y"));
  EXPECT_OK(CheckSymlinkTarget("lib", "usr/lib"));
  EXPECT_OK(CheckSymlinkTarget("etc/alternatives/z", "/usr/bin/z"));
  EXPECT_THAT(CheckSymlinkTarget("usr/x", "../../y"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("points above the root")));
  EXPECT_THAT(CheckSymlinkTarget("a", "b/../../c"), StatusIs(absl::StatusCode::kPermissionDenied,
                                                             HasSubstr("above the root")));
  ASSERT_OK_AND_ASSIGN(std::string p, NormalizeLayerPath("./a//b/"));
  EXPECT_EQ(p, "a/b");
  ASSERT_OK_AND_ASSIGN(p, NormalizeLayerPath("./"));
  EXPECT_EQ(p, "");
}

}  // namespace
}  // namespace kiln::images
