// oci_benchmark: micro benchmarks of publish/oci.h (benchmarks/micro/micro.h): SHA-256 content
// digests of a blob, and parsing / annotating an image manifest of 32 layers (what the
// publisher does for every push).
//
//   bazel run //publish:oci_benchmark -- --benchmark_filter=sha256
#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/micro/micro.h"
#include "publish/oci.h"

namespace kiln::publish {
namespace {

constexpr int kLayers = 32;
constexpr size_t kBlobBytes = 4u << 20;

const std::string& Blob() {
  static const std::string* b = [] {
    auto* s = new std::string(kBlobBytes, '\0');
    uint32_t x = 7;
    for (char& c : *s) {
      x = x * 1664525u + 1013904223u;
      c = static_cast<char>(x >> 24);
    }
    return s;
  }();
  return *b;
}

const std::string& Manifest() {
  static const std::string* m = [] {
    auto digest = [](int i) { return Sha256Digest(absl::StrCat("layer ", i)); };
    std::string j = absl::StrCat(
        "{\"schemaVersion\":2,\"mediaType\":\"", oci::kMediaTypeImageManifest, "\",\"config\":{\"mediaType\":\"",
        oci::kMediaTypeImageConfig, "\",\"digest\":\"", Sha256Digest("config"), "\",\"size\":1234},\"layers\":[");
    for (int i = 0; i < kLayers; ++i) {
      absl::StrAppend(&j, i ? "," : "",
                      "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"",
                      digest(i), "\",\"size\":", 1000000 + i, "}");
    }
    j += "]}";
    return new std::string(j);
  }();
  return *m;
}

KILN_MICRO("oci/sha256/bytes:4MiB", []() -> absl::StatusOr<int64_t> {
  std::string d = Sha256Digest(Blob());
  if (d.size() != 71) return absl::InternalError("bad digest length");
  return static_cast<int64_t>(Blob().size());
});
KILN_MICRO("oci/parse_manifest/layers:32", []() -> absl::StatusOr<int64_t> {
  absl::StatusOr<oci::Manifest> m = oci::ParseManifest(Manifest());
  if (!m.ok()) return m.status();
  return static_cast<int64_t>(Manifest().size());
});
KILN_MICRO("oci/annotate_manifest/layers:32", []() -> absl::StatusOr<int64_t> {
  absl::StatusOr<std::string> out =
      AnnotateManifest(Manifest(), {{std::string(oci::kAnnotationVersion), "1.2.3"},
                                    {std::string(oci::kAnnotationRevision), "0123456789abcdef"},
                                    {std::string(oci::kAnnotationCreated), Rfc3339FromEpoch(0)}});
  if (!out.ok()) return out.status();
  std::string digest = Sha256Digest(*out);
  return static_cast<int64_t>(out->size());
});

}  // namespace
}  // namespace kiln::publish
