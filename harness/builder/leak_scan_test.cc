// File: harness/builder/leak_scan_test.cc
// The leak scanners on hand-made OCI archives (with layers written by `base64`) and logs: each
// form is found where it is, and an archive that cannot be read to its end is an error.
#include "harness/builder/leak_scan.h"

#include <stdlib.h>
#include <zlib.h>

#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/ustar.h"
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
  agent::UstarWriter w;
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
// With `index` given, index.json is that text and a manifest blob "mmmm" lists the layer.
std::string Archive(const std::string& dir, const std::string& layer_blob,
                    const std::string& history_text, const std::string* index = nullptr) {
  agent::UstarWriter w;
  const std::string path = dir + "/image.oci.tar";
  EXPECT_THAT(w.Open(path), IsOk());
  EXPECT_THAT(w.Bytes("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"), IsOk());
  EXPECT_THAT(w.Bytes("index.json", index ? *index : "{\"schemaVersion\":2,\"manifests\":[]}"),
              IsOk());
  if (index) {
    EXPECT_THAT(w.Bytes("blobs/sha256/mmmm",
                        "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:cccc\"},"
                        "\"layers\":[{\"digest\":\"sha256:aaaa\"}]}"),
                IsOk());
  }
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
  for (const std::string& w : r.where) history |= w.find("(history[0])") != std::string::npos;
  EXPECT_TRUE(history);
}

// A file as a VM leaves it on the host: sparse (a 64 MiB hole first, as in a guest RAM file),
// then a 120-byte token as the shell prints it: wrapped base64 (`base64`, 76 columns) and a
// spaced hex dump (`od -An -tx1`). The same sparse file without them is clean.
TEST(LeakScanTest, FileScanFindsWrappedBase64AndHexDumpsAfterAHole) {
  const std::string dir = TmpDir();
  const std::string token =
      "ghp_" + std::string(58, 'k') + "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv";
  ASSERT_GT(token.size(), 57u);
  std::ofstream(dir + "/token") << token;
  const std::string clean = dir + "/clean.ram", dirty = dir + "/dirty.ram";
  ASSERT_EQ(std::system(("truncate -s 64M " + clean + " && printf 'unrelated bytes\\n' >> " +
                         clean + " && cp --sparse=always " + clean + " " + dirty + " && base64 " +
                         dir + "/token >> " + dirty + " && od -An -tx1 " + dir + "/token >> " +
                         dirty).c_str()),
            0);
  absl::StatusOr<LeakReport> c = ScanFileForSecret(clean, token);
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(c->hits, 0);
  EXPECT_EQ(c->blobs, 1);  // the hole is skipped: one data extent
  absl::StatusOr<LeakReport> d = ScanFileForSecret(dirty, token);
  ASSERT_THAT(d.status(), IsOk());
  EXPECT_GE(d->hits, 2);
  std::string where;
  for (const std::string& w : d->where) where += w + "\n";
  EXPECT_THAT(where, HasSubstr("(base64)"));
  EXPECT_THAT(where, HasSubstr("(hex)"));
  EXPECT_THAT(where, HasSubstr(dirty + "@"));
  EXPECT_EQ(ScanFileForSecret(dir + "/no-such-file", token).status().code(),
            absl::StatusCode::kNotFound);
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

// ---------------------------------------------------------------------------------------
// Every form, and failing closed.

constexpr char kIndex[] = "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"sha256:mmmm\"}]}";

// A 124-byte GitHub-style token.
std::string Token() {
  std::string raw(90, '\0');
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<char>(i * 37 + 11);
  return "ghp_" + absl::Base64Escape(raw).substr(0, 120);
}

// ToolOutput(cmd, secret): stdout of `cmd` run on a file holding `secret`.
std::string ToolOutput(const std::string& cmd, const std::string& dir, const std::string& secret) {
  const std::string file = dir + "/secret";
  std::ofstream(file, std::ios::binary) << secret;
  FILE* p = popen((cmd + " " + file).c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0);
  return out;
}

TEST(LeakScanFormsTest, SecretCopiedIntoALayerAsWrappedBase64IsFound) {
  const std::string d = TmpDir();
  const std::string token = Token();
  const std::string b64 = ToolOutput("base64", d, token);  // wrapped at 76
  ASSERT_NE(b64.find('\n'), b64.size() - 1);
  ASSERT_EQ(b64.find(absl::Base64Escape(token)), std::string::npos);  // not one unwrapped run
  const std::string index = kIndex;
  const std::string path = Archive(d, Gzip(LayerTar(d, "export T=" + b64)), "RUN x", &index);
  ASSERT_OK_AND_ASSIGN(LeakReport r, ScanOciArchiveForSecret(path, token));
  EXPECT_GE(r.hits, 1);
  ASSERT_FALSE(r.where.empty());
  EXPECT_THAT(r.where[0], HasSubstr("blobs/sha256/aaaa:etc/x (base64)"));
  EXPECT_EQ(r.layers, 1);
}

TEST(LeakScanFormsTest, SpacedHexInALayerIsFound) {
  const std::string d = TmpDir();
  const std::string token = Token();
  const std::string path =
      Archive(d, LayerTar(d, ToolOutput("od -An -tx1", d, token)), "RUN x");
  ASSERT_OK_AND_ASSIGN(LeakReport r, ScanOciArchiveForSecret(path, token));
  EXPECT_GE(r.hits, 1);
  bool hex = false;
  for (const std::string& w : r.where) hex |= absl::StrContains(w, "etc/x (hex)");
  EXPECT_TRUE(hex) << r.where.size();
}

TEST(LeakScanFormsTest, JsonEscapedSecretInHistoryIsFound) {
  const std::string d = TmpDir();
  const std::string secret = "tok<en>&\"quoted\"-and-more-chars";
  // As dockerd (Go encoding/json) writes it: \u003c \u003e \u0026 \"
  const std::string escaped = "tok\\u003cen\\u003e\\u0026\\\"quoted\\\"-and-more-chars";
  const std::string path = Archive(d, LayerTar(d, "ok"), "RUN echo " + escaped);
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  ASSERT_EQ(ss.str().find(secret), std::string::npos);  // the raw value is nowhere
  ASSERT_OK_AND_ASSIGN(LeakReport r, ScanOciArchiveForSecret(path, secret));
  bool json = false, history = false;
  for (const std::string& w : r.where) {
    json |= absl::StrContains(w, "(json)");
    history |= absl::StrContains(w, "(history[0]) (raw)");
  }
  EXPECT_TRUE(json);
  EXPECT_TRUE(history);
}

TEST(LeakScanFormsTest, TruncatedLayerIsAnError) {
  const std::string d = TmpDir();
  std::string layer = Gzip(LayerTar(d, std::string(100000, 'q')));
  layer.resize(layer.size() / 2);
  const std::string index = kIndex;
  EXPECT_THAT(ScanOciArchiveForSecret(Archive(d, layer, "RUN x", &index), kSecret).status(),
              testing::Not(IsOk()));
  // Also without a manifest naming it: a gzip blob is a layer by its magic.
  EXPECT_THAT(ScanOciArchiveForSecret(Archive(d, layer, "RUN x"), kSecret).status(),
              testing::Not(IsOk()));
  // A plain tar cut inside an entry.
  std::string tar = LayerTar(d, std::string(100000, 'q'));
  tar.resize(20000);
  EXPECT_THAT(ScanOciArchiveForSecret(Archive(d, tar, "RUN x", &index), kSecret).status(),
              testing::Not(IsOk()));
}

TEST(LeakScanFormsTest, UnreadableBlobOrIndexIsAnError) {
  const std::string d = TmpDir();
  const std::string index = kIndex;
  // The archive itself cut in the middle of a blob.
  const std::string path = Archive(d, LayerTar(d, std::string(50000, 'q')), "RUN x", &index);
  ASSERT_OK_AND_ASSIGN(LeakReport ok, ScanOciArchiveForSecret(path, kSecret));
  EXPECT_EQ(ok.layers, 1);
  EXPECT_TRUE(ok.config_scanned);
  std::string bytes = ReadFile(path);
  bytes.resize(bytes.size() / 2);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_THAT(ScanOciArchiveForSecret(path, kSecret).status(), testing::Not(IsOk()));
  // index.json that does not parse; an index naming a missing manifest.
  const std::string bad = "{\"manifests\": [";
  EXPECT_THAT(ScanOciArchiveForSecret(Archive(d, LayerTar(d, "x"), "RUN x", &bad), kSecret)
                  .status(),
              testing::Not(IsOk()));
  const std::string missing = "{\"manifests\":[{\"digest\":\"sha256:ffff\"}]}";
  EXPECT_THAT(ScanOciArchiveForSecret(Archive(d, LayerTar(d, "x"), "RUN x", &missing), kSecret)
                  .status(),
              testing::Not(IsOk()));
}

TEST(LeakScanFormsTest, LogsPerStepAcrossLines) {
  const std::string token = Token();
  const std::string b64 = absl::Base64Escape(token);
  // 10 characters per line of step #6, interleaved with step #7: no line holds a window.
  std::vector<agent::Log> logs;
  for (size_t i = 0; i < b64.size(); i += 10) {
    logs.push_back({agent::LogStream::kStderr, i, "#6 0.2 " + b64.substr(i, 10)});
    logs.push_back({agent::LogStream::kStderr, i, "#7 0.2 " + b64.substr(i, 10)});
  }
  LeakReport r = ScanLogsForSecret(logs, token);
  EXPECT_GE(r.hits, 10);
  ASSERT_FALSE(r.where.empty());
  EXPECT_THAT(r.where[0], HasSubstr("step #6 (base64)"));
  // The redacted form of the same log is clean.
  std::vector<agent::Log> redacted = {{agent::LogStream::kStderr, 1, "#6 0.2 [REDACTED:tok]"},
                                      {agent::LogStream::kStderr, 2, "#6 0.2 " + b64.substr(0, 15)}};
  EXPECT_EQ(ScanLogsForSecret(redacted, token).hits, 0);
}

}  // namespace
}  // namespace kiln::harness
