#include "images/oci/layout.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "images/oci/digest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::oci {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

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
  std::string Read(const std::string& rel) {
    std::ifstream in(dir_ / rel, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string Blob(const std::string& data) {
    std::string d = Sha256Digest(data);
    Write("blobs/sha256/" + d.substr(7), data);
    return d;
  }
  std::string Desc(absl::string_view mt, const std::string& d, size_t size) {
    return "{\"mediaType\":\"" + std::string(mt) + "\",\"digest\":\"" + d +
           "\",\"size\":" + std::to_string(size) + "}";
  }
  fs::path dir_;
};

TEST_F(LayoutTest, WritesWhatItReadsBack) {
  const std::string out = (dir_ / "out").string();
  ASSERT_OK(CreateLayoutDirs(out));
  ASSERT_OK(CreateLayoutDirs(out));  // existing directories are fine
  ASSERT_OK_AND_ASSIGN(Descriptor layer, WriteBlob(out, "layer-bytes", kMediaTypeLayerTar));
  ASSERT_OK_AND_ASSIGN(Descriptor cfg, WriteBlob(out, "{}", kMediaTypeImageConfig));
  Manifest m;
  m.config = cfg;
  m.layers = {layer};
  ASSERT_OK_AND_ASSIGN(Descriptor md, WriteBlob(out, ManifestJson(m), kMediaTypeImageManifest));
  md.annotations[std::string(kAnnotationRefName)] = "latest";
  ASSERT_OK(WriteLayoutFiles(out, {md}));
  EXPECT_EQ(Read("out/oci-layout"), R"({"imageLayoutVersion":"1.0.0"})");

  ASSERT_OK_AND_ASSIGN(LayoutImage img, ReadImageLayout(out, "latest"));
  EXPECT_EQ(img.manifest_digest, md.digest);
  EXPECT_EQ(img.manifest_descriptor.annotations.at(std::string(kAnnotationRefName)), "latest");
  EXPECT_EQ(img.config.digest, Sha256Digest("{}"));
  ASSERT_EQ(img.layers.size(), 1u);
  EXPECT_EQ(img.layers[0].size, 11);
  int64_t size = 0;
  ASSERT_OK_AND_ASSIGN(std::string fd, Sha256FileDigest(img.BlobPath(layer.digest), &size));
  EXPECT_EQ(fd, layer.digest);
  EXPECT_EQ(size, 11);
  EXPECT_THAT(WriteBlob((dir_ / "absent/x").string(), "b", kMediaTypeLayerTar),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent")));
}

TEST_F(LayoutTest, ReadsTheOnlyManifest) {
  std::string cfg = "{}", layer = "layer-bytes";
  std::string manifest = "{\"schemaVersion\":2,\"mediaType\":\"" +
                         std::string(kMediaTypeImageManifest) + "\",\"config\":" +
                         Desc(kMediaTypeImageConfig, Blob(cfg), 2) + ",\"layers\":[" +
                         Desc(kMediaTypeLayerTar, Blob(layer), layer.size()) + "]}";
  std::string md = Blob(manifest);
  Write("index.json", "{\"schemaVersion\":2,\"manifests\":[" +
                          Desc(kMediaTypeImageManifest, md, manifest.size()) + "]}");
  ASSERT_OK_AND_ASSIGN(LayoutImage img, ReadImageLayout(dir_.string()));
  EXPECT_EQ(img.manifest_digest, md);
  EXPECT_EQ(img.manifest_bytes, manifest);
  EXPECT_EQ(img.media_type, kMediaTypeImageManifest);
  EXPECT_EQ(img.layers.size(), 1u);
  EXPECT_EQ(img.layers[0].size, static_cast<int64_t>(layer.size()));
  EXPECT_EQ(img.config.digest, Sha256Digest(cfg));
}

TEST_F(LayoutTest, RefusesSizeMismatchIndexAndMissingFiles) {
  std::string layer = "abc";
  std::string manifest = "{\"schemaVersion\":2,\"config\":" +
                         Desc(kMediaTypeImageConfig, Blob("{}"), 2) + ",\"layers\":[" +
                         Desc("t", Blob(layer), 99) + "]}";
  std::string md = Blob(manifest);
  Write("index.json", "{\"manifests\":[" + Desc(kMediaTypeImageManifest, md, 1) + "]}");
  EXPECT_THAT(ReadImageLayout(dir_.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("descriptor says 99")));

  std::string index = "{\"schemaVersion\":2,\"manifests\":[]}";
  std::string id = Blob(index);
  Write("index.json", "{\"manifests\":[" + Desc(kMediaTypeImageIndex, id, index.size()) + "]}");
  EXPECT_THAT(ReadImageLayout(dir_.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multi-platform")));

  EXPECT_THAT(ReadImageLayout(dir_.string(), "nope"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no manifest named nope")));
  EXPECT_THAT(ReadImageLayout((dir_ / "missing").string()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("oci-layout")));
}

TEST_F(LayoutTest, RefusesTamperedManifestAmbiguityAndBadMarker) {
  std::string manifest = "{\"schemaVersion\":2,\"config\":" +
                         Desc(kMediaTypeImageConfig, Blob("{}"), 2) + ",\"layers\":[]}";
  std::string md = Blob(manifest);
  Write("blobs/sha256/" + md.substr(7), manifest + " ");
  Write("index.json", "{\"manifests\":[" + Desc(kMediaTypeImageManifest, md, 1) + "]}");
  EXPECT_THAT(ReadImageLayout(dir_.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has digest")));

  Write("index.json", "{\"manifests\":[" + Desc(kMediaTypeImageManifest, md, 1) + "," +
                          Desc(kMediaTypeImageManifest, md, 1) + "]}");
  EXPECT_THAT(ReadImageLayout(dir_.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 manifests")));

  Write("index.json", "{\"manifests\":[]}");
  EXPECT_THAT(ReadImageLayout(dir_.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no manifest")));

  Write("oci-layout", "[]");
  EXPECT_THAT(ReadLayoutIndex(dir_.string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an OCI layout marker")));
}

}  // namespace
}  // namespace kiln::oci
