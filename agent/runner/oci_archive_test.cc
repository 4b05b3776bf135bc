#include "agent/runner/oci_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent::runner {
namespace {

using json = nlohmann::json;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

// TarBytes: an in-memory tar of name -> content (files only) or name -> "->target" (symlink).
std::string TarBytes(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_open(
      a, &out, nullptr,
      [](struct archive*, void* cd, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(cd)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const auto& [name, data] : files) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    if (data.rfind("->", 0) == 0) {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, data.substr(2).c_str());
      archive_entry_set_size(e, 0);
    } else {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_size(e, data.size());
    }
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    if (data.rfind("->", 0) != 0) archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

std::map<std::string, std::string> ReadTar(const std::string& path) {
  std::map<std::string, std::string> out;
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  EXPECT_EQ(archive_read_open_filename(a, path.c_str(), 65536), ARCHIVE_OK);
  struct archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    std::string data(archive_entry_size(e), '\0');
    if (!data.empty()) archive_read_data(a, data.data(), data.size());
    out[archive_entry_pathname(e)] = data;
  }
  archive_read_free(a);
  return out;
}

class OciArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-oci-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }

  // WriteDockerArchive: a docker-archive shaped like dockerd 20.10's `docker save`.
  std::string WriteDockerArchive(bool bad_diff_id) {
    layer1_ = TarBytes({{"bin/hello", "hello world\n"}});
    layer2_ = TarBytes({{"tmp/one", "step-one\n"}});
    json cfg = {{"architecture", "amd64"},
                {"os", "linux"},
                {"history", json::array({json{{"created_by", "RUN echo"}}})},
                {"rootfs",
                 {{"type", "layers"},
                  {"diff_ids", json::array({"sha256:" + Sha256Hex(layer1_),
                                            bad_diff_id ? "sha256:" + std::string(64, '0')
                                                        : "sha256:" + Sha256Hex(layer2_),
                                            "sha256:" + Sha256Hex(layer1_)})}}}};
    config_ = cfg.dump();
    std::string cfg_name = Sha256Hex(config_) + ".json";
    json manifest = json::array({json{{"Config", cfg_name},
                                      {"RepoTags", json::array({"app:1"})},
                                      {"Layers", json::array({"aaa/layer.tar", "bbb/layer.tar",
                                                              "ccc/layer.tar"})}}});
    std::string tar = TarBytes({{"aaa/layer.tar", layer1_},
                                {"bbb/layer.tar", layer2_},
                                {"ccc/layer.tar", "->../aaa/layer.tar"},
                                {cfg_name, config_},
                                {"manifest.json", manifest.dump()}});
    std::string path = root_ + "/docker.tar";
    std::ofstream(path, std::ios::binary) << tar;
    return path;
  }
  std::string root_, layer1_, layer2_, config_;
};

TEST_F(OciArchiveTest, ConvertsToAValidLayout) {
  std::string in = WriteDockerArchive(false);
  ASSERT_OK_AND_ASSIGN(OciImage img,
                       ConvertDockerArchiveToOci(in, root_ + "/x", root_ + "/out.tar", "app:1"));
  std::map<std::string, std::string> t = ReadTar(root_ + "/out.tar");
  EXPECT_EQ(t["oci-layout"], "{\"imageLayoutVersion\":\"1.0.0\"}");
  json index = json::parse(t["index.json"]);
  ASSERT_EQ(index["manifests"].size(), 1u);
  EXPECT_EQ(index["manifests"][0]["digest"], img.manifest_digest);
  EXPECT_EQ(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "1");
  const std::string mblob = t["blobs/sha256/" + img.manifest_digest.substr(7)];
  EXPECT_EQ("sha256:" + Sha256Hex(mblob), img.manifest_digest);
  EXPECT_EQ(static_cast<int64_t>(mblob.size()), img.manifest.size);
  json m = json::parse(mblob);
  EXPECT_EQ(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(m["config"]["digest"], "sha256:" + Sha256Hex(config_));
  EXPECT_EQ(t["blobs/sha256/" + Sha256Hex(config_)], config_);
  ASSERT_EQ(m["layers"].size(), 3u);
  EXPECT_EQ(m["layers"][0]["digest"], "sha256:" + Sha256Hex(layer1_));
  EXPECT_EQ(m["layers"][2]["digest"], "sha256:" + Sha256Hex(layer1_));  // repeated layer
  EXPECT_EQ(m["layers"][1]["mediaType"], "application/vnd.oci.image.layer.v1.tar");
  EXPECT_EQ(t["blobs/sha256/" + Sha256Hex(layer2_)], layer2_);
  // docker-compatible manifest.json for dockerd 20.10's docker load.
  json compat = json::parse(t["manifest.json"]);
  EXPECT_EQ(compat[0]["Config"], "blobs/sha256/" + Sha256Hex(config_));
  EXPECT_EQ(compat[0]["RepoTags"][0], "app:1");
  struct stat st;
  ASSERT_EQ(stat((root_ + "/out.tar").c_str(), &st), 0);
  EXPECT_EQ(img.archive_bytes, st.st_size);
  EXPECT_EQ(st.st_size % 512, 0);
}

TEST_F(OciArchiveTest, Deterministic) {
  std::string in = WriteDockerArchive(false);
  ASSERT_OK_AND_ASSIGN(OciImage a,
                       ConvertDockerArchiveToOci(in, root_ + "/x1", root_ + "/a.tar", "app:1"));
  ASSERT_OK_AND_ASSIGN(OciImage b,
                       ConvertDockerArchiveToOci(in, root_ + "/x2", root_ + "/b.tar", "app:1"));
  EXPECT_EQ(a.manifest_digest, b.manifest_digest);
  std::ifstream fa(root_ + "/a.tar", std::ios::binary), fb(root_ + "/b.tar", std::ios::binary);
  std::stringstream sa, sb;
  sa << fa.rdbuf();
  sb << fb.rdbuf();
  EXPECT_TRUE(sa.str() == sb.str());
}

TEST_F(OciArchiveTest, RefusesLayerThatDoesNotMatchDiffId) {
  std::string in = WriteDockerArchive(true);
  EXPECT_THAT(ConvertDockerArchiveToOci(in, root_ + "/x", root_ + "/out.tar", "app:1"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("diff_id")));
}

TEST_F(OciArchiveTest, RefusesArchiveWithoutManifest) {
  std::string path = root_ + "/empty.tar";
  std::ofstream(path, std::ios::binary) << TarBytes({{"x", "y"}});
  EXPECT_THAT(ConvertDockerArchiveToOci(path, root_ + "/x", root_ + "/out.tar", "app:1"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("manifest.json")));
}

TEST_F(OciArchiveTest, OciArchiveBackToDockerArchive) {
  std::string in = WriteDockerArchive(false);
  ASSERT_OK_AND_ASSIGN(OciImage img,
                       ConvertDockerArchiveToOci(in, root_ + "/x", root_ + "/oci.tar", "app:1"));
  EXPECT_EQ(*DetectArchiveKind(in), ArchiveKind::kDockerArchive);
  EXPECT_EQ(*DetectArchiveKind(root_ + "/oci.tar"), ArchiveKind::kDockerArchive);  // has both
  // A pure OCI archive (as skopeo writes it): drop manifest.json.
  std::map<std::string, std::string> t = ReadTar(root_ + "/oci.tar");
  t.erase("manifest.json");
  std::vector<std::pair<std::string, std::string>> files(t.begin(), t.end());
  files.erase(std::remove_if(files.begin(), files.end(),
                             [](const auto& f) { return f.first.back() == '/'; }),
              files.end());
  std::ofstream(root_ + "/pure.tar", std::ios::binary) << TarBytes(files);
  EXPECT_EQ(*DetectArchiveKind(root_ + "/pure.tar"), ArchiveKind::kOciArchive);
  ASSERT_OK_AND_ASSIGN(std::string tag, OciArchiveToDockerArchive(root_ + "/pure.tar",
                                                                  root_ + "/y", root_ + "/d.tar"));
  EXPECT_EQ(tag, "app:1");
  std::map<std::string, std::string> d = ReadTar(root_ + "/d.tar");
  json compat = json::parse(d["manifest.json"]);
  EXPECT_EQ(compat[0]["RepoTags"][0], "app:1");
  EXPECT_EQ(compat[0]["Layers"].size(), 3u);
  EXPECT_EQ(d[compat[0]["Config"].get<std::string>()], config_);
  EXPECT_EQ(d[compat[0]["Layers"][1].get<std::string>()], layer2_);
  // Tampered blob: refused.
  for (auto& f : files) {
    if (f.first == "blobs/sha256/" + Sha256Hex(layer2_)) f.second[600] ^= 1;
  }
  std::ofstream(root_ + "/bad.tar", std::ios::binary) << TarBytes(files);
  EXPECT_THAT(OciArchiveToDockerArchive(root_ + "/bad.tar", root_ + "/z", root_ + "/e.tar"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not match")));
}

TEST(Sha256Test, KnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace kiln::agent::runner
