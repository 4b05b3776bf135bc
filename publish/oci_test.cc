#include "publish/oci.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::publish {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

TEST(AnnotateManifestTest, MergesSortedAndDeterministic) {
  std::string m = R"({"schemaVersion":2,"annotations":{"z":"1","a":"old"},"layers":[]})";
  ASSERT_OK_AND_ASSIGN(std::string out, AnnotateManifest(m, {{"a", "new"}, {"b", "2"}}));
  EXPECT_EQ(out, R"({"annotations":{"a":"new","b":"2","z":"1"},"layers":[],"schemaVersion":2})");
  ASSERT_OK_AND_ASSIGN(std::string again, AnnotateManifest(m, {{"b", "2"}, {"a", "new"}}));
  EXPECT_EQ(Sha256Digest(out), Sha256Digest(again));
  EXPECT_THAT(AnnotateManifest("[1]", {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                                    HasSubstr("not a JSON object")));
}

TEST(Rfc3339Test, Formats) {
  EXPECT_EQ(Rfc3339FromEpoch(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(Rfc3339FromEpoch(1700000000), "2023-11-14T22:13:20Z");
}

class LayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "blobs/sha256");
    Write("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  }
  void Write(const std::string& rel, const std::string& data) {
    std::ofstream(dir_ / rel, std::ios::binary) << data;
  }
  std::string Blob(const std::string& data) {
    std::string d = Sha256Digest(data);
    Write("blobs/sha256/" + d.substr(7), data);
    return d;
  }
  std::string Desc(const std::string& mt, const std::string& d, size_t size,
                   const std::string& extra = "") {
    return "{\"mediaType\":\"" + mt + "\",\"digest\":\"" + d +
           "\",\"size\":" + std::to_string(size) + extra + "}";
  }
  fs::path dir_;
};

TEST_F(LayoutTest, ExtractsLayoutArchiveAndRefusesUnsafeOnes) {
  std::string manifest = "{\"schemaVersion\":2,\"config\":" +
                         Desc(std::string(oci::kMediaTypeImageConfig), Blob("{}"), 2) + ",\"layers\":[]}";
  std::string md = Blob(manifest);
  Write("index.json", "{\"manifests\":[" +
                          Desc(std::string(oci::kMediaTypeImageManifest), md, manifest.size()) + "]}");
  fs::path tar = dir_.string() + ".tar";
  ASSERT_EQ(std::system(("tar -C " + dir_.string() + " -cf " + tar.string() + " .").c_str()), 0);
  fs::path out = dir_.string() + "-out";
  fs::remove_all(out);
  fs::create_directories(out);
  ASSERT_OK(ExtractLayoutArchive(tar.string(), out.string()));
  ASSERT_OK_AND_ASSIGN(oci::LayoutImage img, oci::ReadImageLayout(out.string()));
  EXPECT_EQ(img.manifest_digest, md);

  fs::path evil = dir_.string() + "-evil.tar";
  ASSERT_EQ(std::system(("tar -C " + dir_.string() + " -cf " + evil.string() +
                         " --transform='s,^\\./oci-layout,../escape,' ./oci-layout")
                            .c_str()),
            0);
  fs::path out2 = dir_.string() + "-out2";
  fs::create_directories(out2);
  EXPECT_THAT(ExtractLayoutArchive(evil.string(), out2.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsafe path")));
  EXPECT_THAT(ExtractLayoutArchive((dir_ / "index.json").string(), out2.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index.json")));
}

}  // namespace
}  // namespace kiln::publish
