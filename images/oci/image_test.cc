#include "images/oci/image.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "images/oci/digest.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::oci {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

const std::string kA = "sha256:" + std::string(64, 'a');
const std::string kB = "sha256:" + std::string(64, 'b');

TEST(ImageJsonTest, ManifestIndexAndConfigShapes) {
  Manifest mf;
  mf.config = {std::string(kMediaTypeImageConfig), kA, 10, {}};
  mf.layers = {{std::string(kMediaTypeLayerTarGzip), kB, 20, {}}};
  mf.annotations = {{std::string(kAnnotationVersion), "1.0.0"}};
  const std::string bytes = ManifestJson(mf);
  // Compact, keys sorted, no empty annotations on descriptors: the bytes are the digest.
  EXPECT_EQ(bytes,
            "{\"annotations\":{\"org.opencontainers.image.version\":\"1.0.0\"},\"config\":{"
            "\"digest\":\"" + kA + "\",\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
            "\"size\":10},\"layers\":[{\"digest\":\"" + kB + "\",\"mediaType\":"
            "\"application/vnd.oci.image.layer.v1.tar+gzip\",\"size\":20}],\"mediaType\":"
            "\"application/vnd.oci.image.manifest.v1+json\",\"schemaVersion\":2}");

  Descriptor listed{std::string(kMediaTypeImageManifest), kA, 5,
                    {{std::string(kAnnotationRefName), "latest"}}};
  auto i = nlohmann::json::parse(IndexJson({listed}));
  EXPECT_EQ(i["schemaVersion"], 2);
  EXPECT_EQ(i["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "latest");

  ImageConfig c;
  c.entrypoint = {"/agent"};
  c.diff_ids = {kA};
  c.history = {{"1970-01-01T00:00:00Z", "kiln"}};
  EXPECT_EQ(ImageConfigJson(c),
            "{\"architecture\":\"amd64\",\"config\":{\"Entrypoint\":[\"/agent\"]},\"created\":"
            "\"1970-01-01T00:00:00Z\",\"history\":[{\"created\":\"1970-01-01T00:00:00Z\","
            "\"created_by\":\"kiln\"}],\"os\":\"linux\",\"rootfs\":{\"diff_ids\":[\"" + kA +
            "\"],\"type\":\"layers\"}}");
}

TEST(ImageJsonTest, RoundTrips) {
  Manifest mf;
  mf.config = {std::string(kMediaTypeImageConfig), kA, 10, {}};
  mf.layers = {{std::string(kMediaTypeLayerTar), kB, 20, {{"k", "v"}}}};
  ASSERT_OK_AND_ASSIGN(Manifest back, ParseManifest(ManifestJson(mf)));
  EXPECT_EQ(back.media_type, kMediaTypeImageManifest);
  EXPECT_EQ(back.config.digest, kA);
  ASSERT_EQ(back.layers.size(), 1u);
  EXPECT_EQ(back.layers[0].size, 20);
  EXPECT_EQ(back.layers[0].annotations.at("k"), "v");

  ASSERT_OK_AND_ASSIGN(std::vector<Descriptor> idx, ParseIndex(IndexJson({mf.config})));
  ASSERT_EQ(idx.size(), 1u);
  EXPECT_EQ(idx[0].digest, kA);

  ImageConfig c;
  c.diff_ids = {kA, kB};
  c.history = {{"1970-01-01T00:00:00Z", "one"}};
  ASSERT_OK_AND_ASSIGN(ImageConfig cb, ParseImageConfig(ImageConfigJson(c)));
  EXPECT_EQ(cb.diff_ids, c.diff_ids);
  EXPECT_EQ(cb.history[0].created_by, "one");
  EXPECT_EQ(cb.os, "linux");
}

TEST(ImageParseTest, BadDescriptorsNameTheField) {
  const std::string cfg = "{\"mediaType\":\"t\",\"digest\":\"" + kA + "\",\"size\":1}";
  auto manifest = [&](const std::string& layer) {
    return "{\"schemaVersion\":2,\"config\":" + cfg + ",\"layers\":[" + layer + "]}";
  };
  EXPECT_THAT(ParseManifest(manifest("{\"mediaType\":\"t\",\"digest\":\"" + kA + "\"}")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layer 0: descriptor needs")));
  EXPECT_THAT(ParseManifest(manifest("{\"mediaType\":\"t\",\"digest\":\"" + kA + "\",\"size\":-1}")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layer 0: negative size")));
  EXPECT_THAT(ParseManifest(manifest("{\"mediaType\":\"t\",\"digest\":\"md5:ab\",\"size\":1}")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layer 0: digest \"md5:ab\"")));
  EXPECT_THAT(ParseManifest("{\"schemaVersion\":2,\"config\":{},\"layers\":[]}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("manifest config")));
}

TEST(ImageParseTest, RefusesWhatIsNotAnImageManifest) {
  EXPECT_THAT(ParseManifest("[]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(ParseManifest("{not json"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(ParseManifest("{\"schemaVersion\":2,\"manifests\":[]}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multi-platform")));
  EXPECT_THAT(ParseManifest("{\"schemaVersion\":2,\"mediaType\":\"text/plain\"}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsupported manifest mediaType")));
  EXPECT_THAT(ParseManifest("{\"schemaVersion\":1,\"config\":{},\"layers\":[]}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("schemaVersion is not 2")));
  EXPECT_THAT(ParseManifest("{\"schemaVersion\":\"2\",\"config\":{},\"layers\":[]}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("schemaVersion is not 2")));
  EXPECT_THAT(ParseManifest("{\"schemaVersion\":2,\"mediaType\":7}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mediaType is not a string")));
  EXPECT_THAT(ParseManifest("{\"schemaVersion\":2}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs config and layers")));
  EXPECT_THAT(ParseIndex("{\"manifests\":{}}", "x/index.json"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x/index.json: no manifests")));
  EXPECT_THAT(ParseIndex("{\"manifests\":[{}]}", "x/index.json"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x/index.json manifest 0")));
}

TEST(ImageParseTest, ConfigNeedsValidDiffIds) {
  EXPECT_THAT(ParseImageConfig("\"x\""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(ParseImageConfig("{\"rootfs\":{}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rootfs.diff_ids")));
  EXPECT_THAT(ParseImageConfig("{\"rootfs\":{\"diff_ids\":[\"" + kA + "\",\"sha256:x\"]}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rootfs.diff_ids[1]")));
  EXPECT_THAT(ParseImageConfig("{\"rootfs\":{\"diff_ids\":[3]}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rootfs.diff_ids[0]")));
}

}  // namespace
}  // namespace kiln::oci
