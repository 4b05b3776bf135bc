// archive_benchmark: micro benchmarks of kiln-image's library (benchmarks/micro/micro.h): manifest
// parsing and planning, and deterministic archive writing (newc cpio as in an initrd, with and
// without gzip; ustar as in an OCI layer). Inputs are synthetic but shaped like an initrd:
// a directory tree of 512 files of 128 B .. 8 KiB (~1 MiB) of compressible, deterministic content, read
// from memory (no disk I/O in the measurement).
//
//   bazel run //images/tool:archive_benchmark -- --benchmark_filter=cpio
//   valgrind --tool=callgrind --collect-atstart=no .../archive_benchmark --kiln_counts
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/micro/micro.h"
#include "images/tool/archive.h"
#include "images/tool/manifest.h"

namespace kiln::images {
namespace {

constexpr int kDirs = 32;
constexpr int kFiles = 512;

// Content(seed, size): deterministic, text-like (compressible) bytes.
std::string Content(uint32_t seed, size_t size) {
  static const char* kWords[] = {"kiln ", "module ", "virtio ", "cgroup ", "init ", "\n",
                                 "0x7f ", "overlay ", "ext4 ", "vsock "};
  std::string out;
  out.reserve(size + 16);
  uint32_t x = seed * 2654435761u + 1;
  while (out.size() < size) {
    x = x * 1664525u + 1013904223u;
    out += kWords[(x >> 24) % 10];
  }
  out.resize(size);
  return out;
}

struct Fixture {
  Manifest manifest;
  std::vector<ArchiveEntry> plan;
  std::map<std::string, std::string> contents;  // source -> bytes
  std::string manifest_json;
};

const Fixture& Get() {
  static const Fixture* f = [] {
    auto* fx = new Fixture;
    std::string json = "{\"entries\": [";
    for (int d = 0; d < kDirs; ++d) {
      fx->manifest.entries.push_back({.type = EntryType::kDir,
                                      .path = absl::StrCat("lib/modules/kernel/d", d),
                                      .mode = 0755});
    }
    for (int i = 0; i < kFiles; ++i) {
      std::string path = absl::StrCat("lib/modules/kernel/d", i % kDirs, "/m", i, ".ko");
      std::string source = absl::StrCat("mem/", i);
      size_t size = 128u << (i % 7);  // 128 B .. 8 KiB, ~1 MiB in all
      fx->contents[source] = Content(i, size);
      fx->manifest.entries.push_back(
          {.type = EntryType::kFile, .path = path, .mode = 0644, .source = source});
      absl::StrAppend(&json, i ? "," : "", "{\"type\":\"file\",\"path\":\"", path,
                      "\",\"mode\":\"0644\",\"source\":\"", source, "\"}");
    }
    fx->manifest.entries.push_back(
        {.type = EntryType::kCharDev, .path = "dev/console", .mode = 0600, .major = 5, .minor = 1});
    fx->manifest.entries.push_back(
        {.type = EntryType::kSymlink, .path = "bin/sh", .target = "busybox"});
    json += "]}";
    fx->manifest_json = json;
    absl::StatusOr<std::vector<ArchiveEntry>> plan = PlanArchive(fx->manifest);
    if (plan.ok()) fx->plan = *plan;  // a failure shows up in the "plan" benchmark
    return fx;
  }();
  return *f;
}

absl::StatusOr<std::string> ReadMem(const std::string& source) {
  auto it = Get().contents.find(source);
  if (it == Get().contents.end()) return absl::NotFoundError(source);
  return it->second;
}

absl::StatusOr<int64_t> Write(ArchiveFormat format, bool gzip) {
  absl::StatusOr<std::string> bytes =
      WriteArchive(Get().plan, ArchiveOptions{.format = format, .gzip = gzip, .mtime = 0}, ReadMem);
  if (!bytes.ok()) return bytes.status();
  return static_cast<int64_t>(bytes->size());
}

KILN_MICRO("archive/manifest_parse/files:512", []() -> absl::StatusOr<int64_t> {
  absl::StatusOr<Manifest> m = ParseManifestJson(Get().manifest_json);
  if (!m.ok()) return m.status();
  return int64_t{0};
});
KILN_MICRO("archive/plan/files:512", []() -> absl::StatusOr<int64_t> {
  absl::StatusOr<std::vector<ArchiveEntry>> plan = PlanArchive(Get().manifest);
  if (!plan.ok()) return plan.status();
  return int64_t{0};
});
KILN_MICRO("archive/cpio_newc/files:512", [] { return Write(ArchiveFormat::kCpioNewc, false); });
KILN_MICRO("archive/cpio_newc_gzip/files:512", [] { return Write(ArchiveFormat::kCpioNewc, true); });
KILN_MICRO("archive/ustar/files:512", [] { return Write(ArchiveFormat::kTarUstar, false); });

}  // namespace
}  // namespace kiln::images
