#include "images/oci/oci_layout.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "images/oci/digest.h"
#include "images/oci/image.h"
#include "images/oci/layout.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::images {
namespace {

constexpr size_t kBuf = 1 << 20;

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};
using File = std::unique_ptr<FILE, FileCloser>;

absl::Status WriteAll(FILE* f, const void* data, size_t n, const std::string& path) {
  if (n > 0 && std::fwrite(data, 1, n, f) != n) return PosixError(errno, "write", path);
  return absl::OkStatus();
}

// CompressLayer gzips the tar at `path` into blobs/sha256/, hashing both sides in one pass.
// Returns the blob descriptor and sets *diff_id.
absl::StatusOr<Descriptor> CompressLayer(const std::string& path, const std::string& out_dir,
                                         int level, std::string* diff_id) {
  File in(std::fopen(path.c_str(), "rb"));
  if (!in) return PosixError(errno, "open layer", path);
  std::string tmp = absl::StrCat(out_dir, "/blobs/sha256/.layer.tmp");
  File out(std::fopen(tmp.c_str(), "wb"));
  if (!out) return PosixError(errno, "open", tmp);

  z_stream zs{};
  // windowBits 15 + 16: a gzip wrapper; with no gz_header set, zlib writes mtime 0, no name.
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError("deflateInit2 failed");
  }
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, deflateEnd);
  oci::Sha256Hasher raw_hash, gz_hash;
  std::vector<unsigned char> ibuf(kBuf), obuf(kBuf);
  int64_t raw_size = 0, gz_size = 0;
  bool first = true;
  for (;;) {
    size_t n = std::fread(ibuf.data(), 1, ibuf.size(), in.get());
    if (n == 0 && std::ferror(in.get())) return PosixError(errno, "read layer", path);
    if (first) {
      first = false;
      if (n >= 2 && ibuf[0] == 0x1f && ibuf[1] == 0x8b) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", path, " is gzip-compressed; give the uncompressed tar (its sha256 is the diff_id)"));
      }
      // A tar has "ustar" at offset 257 of its first header (ustar, pax and GNU formats).
      if (n < 512 || std::memcmp(ibuf.data() + 257, "ustar", 5) != 0) {
        return absl::InvalidArgumentError(absl::StrCat("layer ", path, " is not a tar archive (no ustar magic at offset 257)"));
      }
    }
    raw_hash.Update(ibuf.data(), n);
    raw_size += static_cast<int64_t>(n);
    bool eof = n < ibuf.size();
    zs.next_in = ibuf.data();
    zs.avail_in = static_cast<uInt>(n);
    do {
      zs.next_out = obuf.data();
      zs.avail_out = static_cast<uInt>(obuf.size());
      int rc = deflate(&zs, eof ? Z_FINISH : Z_NO_FLUSH);
      if (rc == Z_STREAM_ERROR) return absl::InternalError("deflate failed");
      size_t have = obuf.size() - zs.avail_out;
      gz_hash.Update(obuf.data(), have);
      gz_size += static_cast<int64_t>(have);
      RETURN_IF_ERROR(WriteAll(out.get(), obuf.data(), have, tmp));
    } while (zs.avail_out == 0);
    if (eof) break;
  }
  if (std::fclose(out.release()) != 0) return PosixError(errno, "close", tmp);
  *diff_id = raw_hash.Digest();
  Descriptor d{std::string(oci::kMediaTypeLayerTarGzip), gz_hash.Digest(), gz_size, {}};
  std::string final_path = oci::BlobPath(out_dir, d.digest);
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0) return PosixError(errno, "rename", final_path);
  (void)raw_size;
  return d;
}

absl::Status CheckEmptyDir(const std::string& path) {
  DIR* d = opendir(path.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return absl::OkStatus();
    return PosixError(errno, "opendir", path);
  }
  bool empty = true;
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
  }
  closedir(d);
  if (!empty) return absl::FailedPreconditionError(absl::StrCat("output directory ", path, " is not empty"));
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateImageSpec(const ImageSpec& spec) {
  for (const std::string& e : spec.env) {
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("env entry \"", e, "\": want KEY=value"));
    }
  }
  static const std::regex kCreated(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$)");
  if (!std::regex_match(spec.created, kCreated)) {
    return absl::InvalidArgumentError(absl::StrCat("created \"", spec.created, "\": want RFC 3339 UTC, e.g. 1970-01-01T00:00:00Z"));
  }
  if (spec.gzip_level < 1 || spec.gzip_level > 9) {
    return absl::InvalidArgumentError(absl::StrCat("gzip_level ", spec.gzip_level, ": want 1..9"));
  }
  for (const std::string& a : spec.entrypoint) {
    if (a.empty()) return absl::InvalidArgumentError("entrypoint has an empty element");
  }
  for (const auto* m : {&spec.labels, &spec.annotations}) {
    for (const auto& [k, v] : *m) {
      if (k.empty()) return absl::InvalidArgumentError("label/annotation with an empty key");
    }
  }
  static const std::regex kRef(R"(^[A-Za-z0-9._:/-]*$)");
  if (!std::regex_match(spec.ref_name, kRef)) {
    return absl::InvalidArgumentError(absl::StrCat("ref_name \"", spec.ref_name, "\": allowed characters are [A-Za-z0-9._:/-]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LayoutResult> WriteOciLayout(const std::vector<LayerInput>& layers,
                                            const ImageSpec& spec, const std::string& out_dir) {
  RETURN_IF_ERROR(ValidateImageSpec(spec));
  if (layers.empty()) return absl::InvalidArgumentError("an image needs at least one layer");
  for (const LayerInput& l : layers) {
    struct stat st;
    if (stat(l.path.c_str(), &st) != 0) return PosixError(errno, "stat layer", l.path);
  }
  RETURN_IF_ERROR(CheckEmptyDir(out_dir));
  RETURN_IF_ERROR(oci::CreateLayoutDirs(out_dir));

  LayoutResult r;
  oci::ImageConfig config;
  config.created = spec.created;
  config.entrypoint = spec.entrypoint;
  config.cmd = spec.cmd;
  config.env = spec.env;
  config.working_dir = spec.working_dir;
  config.user = spec.user;
  config.labels = spec.labels;
  for (const LayerInput& l : layers) {
    std::string diff_id;
    ASSIGN_OR_RETURN(Descriptor d, CompressLayer(l.path, out_dir, spec.gzip_level, &diff_id));
    r.layers.push_back(d);
    r.diff_ids.push_back(diff_id);
    config.history.push_back({spec.created, l.created_by.empty() ? "kiln: layer" : l.created_by});
  }
  config.diff_ids = r.diff_ids;
  ASSIGN_OR_RETURN(r.config, oci::WriteBlob(out_dir, oci::ImageConfigJson(config),
                                            oci::kMediaTypeImageConfig));
  oci::Manifest manifest;
  manifest.config = r.config;
  manifest.layers = r.layers;
  manifest.annotations = spec.annotations;
  ASSIGN_OR_RETURN(r.manifest, oci::WriteBlob(out_dir, oci::ManifestJson(manifest),
                                              oci::kMediaTypeImageManifest));
  Descriptor listed = r.manifest;
  if (!spec.ref_name.empty()) listed.annotations[std::string(oci::kAnnotationRefName)] = spec.ref_name;
  RETURN_IF_ERROR(oci::WriteLayoutFiles(out_dir, {listed}));
  return r;
}

}  // namespace kiln::images
