// File: harness/leak_scan_test.cc
// The leak scanners on hand-made OCI archives and logs.
#include "harness/leak_scan.h"

#include <stdlib.h>
#include <zlib.h>

#include <fstream>
#include <sstream>

#include "agent/runner/ustar.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::testing::HasSubstr;

constexpr char kSecret[] = "kiln-secret-0123456789abcdef";

std::string TmpDir() {
  const char* t = getenv("TEST_TMPDIR");
  std::string templ = std::string(t ? t : "/tmp") + "/bs-XXXXXX";
  EXPECT_NE(mkdtemp(templ.data()), nullptr);
  return templ;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A layer tar holding `file_data` at etc/x.
std::string LayerTar(const std::string& dir, const std::string& file_data) {
  agent::runner::UstarWriter w;
  EXPECT_THAT(w.Open(dir + "/layer.tar"), IsOk());
  EXPECT_THAT(w.Dir("etc/"), IsOk());
  EXPECT_THAT(w.Bytes("etc/x", file_data), IsOk());
  EXPECT_THAT(w.Dir("run/secrets/"), IsOk());
  EXPECT_THAT(w.Finish(), IsOk());
  return ReadFile(dir + "/layer.tar");
}

std::string Gzip(const std::string& data) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
  std::string out(compressBound(data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = data.size();
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = out.size();
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// An OCI-archive-shaped tar: index.json, a config blob with history, one layer blob.
std::string Archive(const std::string& dir, const std::string& layer_blob,
                    const std::string& history_text) {
  agent::runner::UstarWriter w;
  const std::string path = dir + "/image.oci.tar";
  EXPECT_THAT(w.Open(path), IsOk());
  EXPECT_THAT(w.Bytes("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"), IsOk());
  EXPECT_THAT(w.Bytes("index.json", "{\"schemaVersion\":2,\"manifests\":[]}"), IsOk());
  EXPECT_THAT(w.Dir("blobs/"), IsOk());
  EXPECT_THAT(w.Dir("blobs/sha256/"), IsOk());
  EXPECT_THAT(w.Bytes("blobs/sha256/aaaa", layer_blob), IsOk());
  EXPECT_THAT(w.Bytes("blobs/sha256/cccc",
                      "{\"architecture\":\"amd64\",\"rootfs\":{\"type\":\"layers\"},"
                      "\"history\":[{\"created_by\":\"" + history_text + "\"},"
                      "{\"created_by\":\"RUN echo\"}]}"),
              IsOk());
  EXPECT_THAT(w.Finish(), IsOk());
  return path;
}

TEST(LeakScanTest, CleanArchive) {
  const std::string d = TmpDir();
  const std::string path = Archive(d, LayerTar(d, "nothing here"), "RUN sha256sum");
  ASSERT_OK_AND_ASSIGN(LeakReport r, ScanOciArchiveForSecret(path, kSecret));
  EXPECT_EQ(r.hits, 0);
  EXPECT_EQ(r.layers, 1);
  EXPECT_EQ(r.layer_entries, 3);
  EXPECT_TRUE(r.config_scanned);
  EXPECT_EQ(r.history_entries, 2);
  EXPECT_GE(r.blobs, 6);
}

TEST(LeakScanTest, SecretInACompressedLayerIsFound) {
  const std::string d = TmpDir();
  // Compressed: the raw archive bytes do not contain the secret, the decompressed layer does.
  const std::string layer = Gzip(LayerTar(d, std::string("x=") + kSecret + "\n"));
  ASSERT_EQ(layer.find(kSecret), std::string::npos);
  const std::string path = Archive(d, layer, "RUN x");
  ASSERT_OK_AND_ASSIGN(LeakReport r, ScanOciArchiveForSecret(path, kSecret));
  EXPECT_EQ(r.hits, 1);
  ASSERT_EQ(r.where.size(), 1u);
  EXPECT_THAT(r.where[0], HasSubstr("blobs/sha256/aaaa:etc/x"));
}

TEST(LeakScanTest, SecretInHistoryIsFound) {
  const std::string d = TmpDir();
  const std::string path = Archive(d, LayerTar(d, "ok"), std::string("RUN echo ") + kSecret);
  ASSERT_OK_AND_ASSIGN(LeakReport r, ScanOciArchiveForSecret(path, kSecret));
  EXPECT_GE(r.hits, 2);  // raw archive bytes + the config blob + its history entry
  bool history = false;
  for (const std::string& w : r.where) history |= w.find("(history)") != std::string::npos;
  EXPECT_TRUE(history);
}

TEST(LeakScanTest, MissingArchiveIsAnError) {
  EXPECT_FALSE(ScanOciArchiveForSecret("/nonexistent.tar", kSecret).ok());
}

TEST(LeakScanTest, LogsRawHexBase64) {
  std::vector<agent::Log> logs = {{agent::LogStream::kStderr, 1, "fine"},
                                  {agent::LogStream::kStderr, 2, "***"}};
  EXPECT_EQ(ScanLogsForSecret(logs, kSecret).hits, 0);
  EXPECT_EQ(ScanLogsForSecret(logs, kSecret).blobs, 2);
  logs.push_back({agent::LogStream::kStderr, 3, std::string("leak ") + kSecret});
  logs.push_back({agent::LogStream::kStderr, 4, "a2lsbi1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg=="});
  logs.push_back({agent::LogStream::kStderr, 5,
                  "6b696c6e2d7365637265742d30313233343536373839616263646566"});
  LeakReport r = ScanLogsForSecret(logs, kSecret);
  EXPECT_EQ(r.hits, 3);
  EXPECT_THAT(r.where[1], HasSubstr("base64"));
  EXPECT_THAT(r.where[2], HasSubstr("hex"));
}

}  // namespace
}  // namespace kiln::harness
