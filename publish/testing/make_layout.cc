// make_layout: writes a small, deterministic OCI image layout for publish tests and the
// benchmark: N uncompressed tar layers (libarchive; fixed mtime/uid/gid, one file of
// pseudo-random, incompressible bytes each), an OCI config whose rootfs.diff_ids match,
// an image manifest and index.json (ref name "builder").
//
// usage: make_layout OUT_DIR [--layers N] [--layer-bytes BYTES] [--seed S] [--change K]
//   --change K   layer K (0-based) gets different content (same size): a one-layer change
//   --gzip 1     gzip the layers (tar+gzip media type; deterministic, no gzip timestamp)
#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "images/oci/digest.h"
#include "images/oci/image.h"
#include "images/oci/layout.h"

namespace {

namespace oci = ::kiln::oci;
namespace fs = std::filesystem;

std::string Bytes(uint64_t seed, int64_t n) {
  std::string s(static_cast<size_t>(n), '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (int k = 0; k < 8 && i + k < n; ++k) s[i + k] = static_cast<char>(x >> (8 * k));
  }
  return s;
}

std::string Tar(const std::string& name, const std::string& data, bool gzip = false) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (gzip) {
    archive_write_add_filter_gzip(a);
    archive_write_set_filter_option(a, "gzip", "timestamp", nullptr);  // deterministic
  }
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](struct archive*, void* ud, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(ud)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
  archive_entry_set_mtime(e, 0, 0);
  archive_entry_set_uid(e, 0);
  archive_entry_set_gid(e, 0);
  archive_write_header(a, e);
  archive_write_data(a, data.data(), data.size());
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: make_layout OUT_DIR [--layers N] [--layer-bytes B] [--seed S] "
                 "[--change K] [--gzip 1]\n";
    return 2;
  }
  fs::path out = argv[1];
  int64_t layers = 3, layer_bytes = 4096, seed = 1, change = -1, gzip = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string f = argv[i];
    int64_t v;
    if (!absl::SimpleAtoi(argv[i + 1], &v)) {
      std::cerr << "make_layout: bad number " << argv[i + 1] << "\n";
      return 2;
    }
    if (f == "--layers") layers = v;
    else if (f == "--layer-bytes") layer_bytes = v;
    else if (f == "--seed") seed = v;
    else if (f == "--change") change = v;
    else if (f == "--gzip") gzip = v;
    else {
      std::cerr << "make_layout: unknown flag " << f << "\n";
      return 2;
    }
  }
  fs::remove_all(out);
  auto check = [](const absl::Status& s) {
    if (!s.ok()) {
      std::cerr << "make_layout: " << s << "\n";
      std::exit(1);
    }
  };
  fs::create_directories(out);  // its parents too; CreateLayoutDirs makes only the last level
  check(oci::CreateLayoutDirs(out.string()));
  oci::ImageConfig config;
  config.cmd = {"/bin/sh"};
  oci::Manifest manifest;
  for (int64_t i = 0; i < layers; ++i) {
    uint64_t s = static_cast<uint64_t>(seed) * 1000 + static_cast<uint64_t>(i) +
                 (i == change ? 500 : 0);
    std::string name = absl::StrCat("layer", i, "/data.bin"), payload = Bytes(s, layer_bytes);
    std::string tar = Tar(name, payload);
    config.diff_ids.push_back(oci::Sha256Digest(tar));
    config.history.push_back({config.created, absl::StrCat("make_layout: layer ", i)});
    if (gzip) tar = Tar(name, payload, /*gzip=*/true);
    absl::StatusOr<oci::Descriptor> d =
        oci::WriteBlob(out.string(), tar, gzip ? oci::kMediaTypeLayerTarGzip : oci::kMediaTypeLayerTar);
    check(d.status());
    manifest.layers.push_back(*d);
  }
  absl::StatusOr<oci::Descriptor> cfg =
      oci::WriteBlob(out.string(), oci::ImageConfigJson(config), oci::kMediaTypeImageConfig);
  check(cfg.status());
  manifest.config = *cfg;
  absl::StatusOr<oci::Descriptor> m =
      oci::WriteBlob(out.string(), oci::ManifestJson(manifest), oci::kMediaTypeImageManifest);
  check(m.status());
  oci::Descriptor listed = *m;
  listed.annotations[std::string(oci::kAnnotationRefName)] = "builder";
  check(oci::WriteLayoutFiles(out.string(), {listed}));
  const std::string md = m->digest;
  std::cout << md << "\n";
  return 0;
}
