#include "images/oci/digest.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::oci {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Digest(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Digest("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, IncrementalEqualsOneShot) {
  Sha256Hasher h;
  h.Update("a");
  h.Update("", 0);
  h.Update("bc");
  EXPECT_EQ(h.Digest(), Sha256Digest("abc"));
}

TEST(Sha256Test, FileDigestStreamsAndReportsSize) {
  std::string path = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") +
                     "/digest_test_file";
  // Over one 1 MiB read, so the loop runs more than once.
  std::string data((1 << 20) + 7, 'x');
  std::ofstream(path, std::ios::binary) << data;
  int64_t size = -1;
  ASSERT_OK_AND_ASSIGN(std::string d, Sha256FileDigest(path, &size));
  EXPECT_EQ(d, Sha256Digest(data));
  EXPECT_EQ(size, static_cast<int64_t>(data.size()));
  EXPECT_THAT(Sha256FileDigest(path + ".missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("digest_test_file.missing")));
}

TEST(ValidateDigestTest, RefusesBadDigests) {
  EXPECT_OK(ValidateDigest(Sha256Digest("x")));
  EXPECT_THAT(ValidateDigest("sha512:ab"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only sha256")));
  EXPECT_THAT(ValidateDigest("sha256:" + std::string(64, 'A')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lowercase")));
  EXPECT_THAT(ValidateDigest("sha256:" + std::string(63, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 lowercase hex")));
  EXPECT_THAT(ValidateDigest("sha256:../../" + std::string(58, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("digest")));
  EXPECT_THAT(ValidateDigest(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("digest")));
}

TEST(BlobPathTest, LayoutPaths) {
  const std::string d = Sha256Digest("abc");
  EXPECT_EQ(DigestHex(d), d.substr(7));
  EXPECT_EQ(BlobRelPath(d), "blobs/sha256/" + d.substr(7));
  EXPECT_EQ(BlobPath("/l", d), "/l/blobs/sha256/" + d.substr(7));
}

}  // namespace
}  // namespace kiln::oci
