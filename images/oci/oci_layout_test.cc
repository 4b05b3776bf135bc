#include "agent/file/file.h"
#include "images/oci/oci_layout.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "openssl/sha.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  std::string base = std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp";
  return base + "/" + name;
}

std::string Sha256Hex(const std::string& bytes) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  std::string hex;
  char buf[3];
  for (unsigned char c : md) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    hex += buf;
  }
  return hex;
}

// A minimal one-file ustar archive (header + data block + two zero blocks).
std::string MakeTar(const std::string& name, const std::string& content) {
  std::string h(512, '\0');
  name.copy(&h[0], name.size());
  std::snprintf(&h[100], 8, "%07o", 0644);
  std::snprintf(&h[108], 8, "%07o", 0);
  std::snprintf(&h[116], 8, "%07o", 0);
  std::snprintf(&h[124], 12, "%011o", static_cast<unsigned>(content.size()));
  std::snprintf(&h[136], 12, "%011o", 0);
  h[156] = '0';
  std::memcpy(&h[257], "ustar\0" "00", 8);
  std::memset(&h[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(&h[148], 8, "%06o", sum);
  std::string data = content;
  data.resize((content.size() + 511) / 512 * 512, '\0');
  return h + data + std::string(1024, '\0');
}

std::string WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(ValidateImageSpec, RejectsEachBadField) {
  struct Case {
    const char* what;
    void (*mutate)(ImageSpec&);
    const char* message;
  } cases[] = {
      {"env without =", [](ImageSpec& s) { s.env = {"PATH"}; }, "want KEY=value"},
      {"env empty key", [](ImageSpec& s) { s.env = {"=x"}; }, "want KEY=value"},
      {"created not rfc3339", [](ImageSpec& s) { s.created = "yesterday"; }, "RFC 3339"},
      {"created with offset", [](ImageSpec& s) { s.created = "2026-01-01T00:00:00+01:00"; }, "RFC 3339"},
      {"gzip level 0", [](ImageSpec& s) { s.gzip_level = 0; }, "gzip_level"},
      {"gzip level 10", [](ImageSpec& s) { s.gzip_level = 10; }, "gzip_level"},
      {"empty entrypoint arg", [](ImageSpec& s) { s.entrypoint = {"/bin/x", ""}; }, "empty element"},
      {"empty label key", [](ImageSpec& s) { s.labels[""] = "x"; }, "empty key"},
      {"bad ref name", [](ImageSpec& s) { s.ref_name = "a b"; }, "ref_name"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ImageSpec spec;
    c.mutate(spec);
    EXPECT_THAT(ValidateImageSpec(spec), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
  EXPECT_THAT(ValidateImageSpec(ImageSpec()), IsOk());
}

TEST(WriteOciLayout, DigestsMatchContentAndRepeatIdentically) {
  std::string dir = TempDir("oci1");
  std::string tar1 = WriteFile(TempDir("l1.tar"), MakeTar("etc/hello", "hello\n"));
  std::string tar2 = WriteFile(TempDir("l2.tar"), MakeTar("usr/local/bin/agent", "#!/bin/sh\n"));
  ImageSpec spec;
  spec.entrypoint = {"/usr/local/bin/agent"};
  spec.ref_name = "latest";
  ASSERT_OK_AND_ASSIGN(LayoutResult r, WriteOciLayout({{tar1, "base"}, {tar2, "kiln"}}, spec, dir));
  ASSERT_EQ(r.layers.size(), 2u);
  // Every blob's name and descriptor digest is the sha256 of its bytes.
  for (const Descriptor& d : {r.manifest, r.config, r.layers[0], r.layers[1]}) {
    std::string blob = file::ReadFileOrEmpty(dir + "/blobs/sha256/" + d.digest.substr(7));
    EXPECT_EQ("sha256:" + Sha256Hex(blob), d.digest);
    EXPECT_EQ(static_cast<int64_t>(blob.size()), d.size);
  }
  EXPECT_EQ(r.diff_ids[0], "sha256:" + Sha256Hex(file::ReadFileOrEmpty(tar1)));
  auto index = nlohmann::json::parse(file::ReadFileOrEmpty(dir + "/index.json"));
  EXPECT_EQ(index["manifests"][0]["digest"], r.manifest.digest);
  EXPECT_EQ(file::ReadFileOrEmpty(dir + "/oci-layout"), R"({"imageLayoutVersion":"1.0.0"})");
  // Same inputs, new directory: same manifest digest.
  ASSERT_OK_AND_ASSIGN(LayoutResult again, WriteOciLayout({{tar1, "base"}, {tar2, "kiln"}}, spec, TempDir("oci2")));
  EXPECT_EQ(again.manifest.digest, r.manifest.digest);
  // A different layer changes it.
  std::string tar3 = WriteFile(TempDir("l3.tar"), MakeTar("etc/hello", "bye\n"));
  ASSERT_OK_AND_ASSIGN(LayoutResult other, WriteOciLayout({{tar3, "base"}, {tar2, "kiln"}}, spec, TempDir("oci3")));
  EXPECT_NE(other.manifest.digest, r.manifest.digest);
  EXPECT_EQ(other.layers[1].digest, r.layers[1].digest);
}

TEST(WriteOciLayout, BadInputsGiveClearErrorsAndWriteNoIndex) {
  std::string tar = WriteFile(TempDir("ok.tar"), MakeTar("a", "b"));
  EXPECT_THAT(WriteOciLayout({}, ImageSpec(), TempDir("e1")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least one layer")));
  EXPECT_THAT(WriteOciLayout({{TempDir("missing.tar"), ""}}, ImageSpec(), TempDir("e2")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.tar")));
  std::string gz = WriteFile(TempDir("x.tar.gz"), std::string("\x1f\x8b\x08\x00", 4) + std::string(600, 'x'));
  EXPECT_THAT(WriteOciLayout({{gz, ""}}, ImageSpec(), TempDir("e3")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gzip-compressed")));
  std::string junk = WriteFile(TempDir("junk.tar"), std::string(2048, 'j'));
  EXPECT_THAT(WriteOciLayout({{junk, ""}}, ImageSpec(), TempDir("e4")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a tar")));
  struct stat st;
  EXPECT_NE(stat((TempDir("e4") + "/index.json").c_str(), &st), 0);
  std::string full = TempDir("full");
  ASSERT_OK(WriteOciLayout({{tar, ""}}, ImageSpec(), full).status());
  EXPECT_THAT(WriteOciLayout({{tar, ""}}, ImageSpec(), full),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not empty")));
  ImageSpec bad;
  bad.created = "now";
  EXPECT_THAT(WriteOciLayout({{tar, ""}}, bad, TempDir("e5")), StatusIs(absl::StatusCode::kInvalidArgument, testing::_));
}

}  // namespace
}  // namespace kiln::images
