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
#include "nlohmann/json.hpp"
#include "openssl/evp.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::images {
namespace {

constexpr char kLayerMediaType[] = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr char kConfigMediaType[] = "application/vnd.oci.image.config.v1+json";
constexpr char kManifestMediaType[] = "application/vnd.oci.image.manifest.v1+json";
constexpr size_t kBuf = 1 << 20;

// Sha256: incremental SHA-256 over OpenSSL's EVP interface.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t n) { EVP_DigestUpdate(ctx_, data, n); }
  std::string HexDigest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    std::string hex;
    for (unsigned int i = 0; i < len; ++i) absl::StrAppendFormat(&hex, "%02x", md[i]);
    return hex;
  }

 private:
  EVP_MD_CTX* ctx_;
};

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

// WriteBlob stores `bytes` under blobs/sha256/ and returns its descriptor.
absl::StatusOr<Descriptor> WriteBlob(const std::string& out_dir, const std::string& bytes,
                                     const std::string& media_type) {
  Sha256 h;
  h.Update(bytes.data(), bytes.size());
  Descriptor d{media_type, absl::StrCat("sha256:", h.HexDigest()),
               static_cast<int64_t>(bytes.size())};
  std::string path = absl::StrCat(out_dir, "/blobs/sha256/", d.digest.substr(7));
  File f(std::fopen(path.c_str(), "wb"));
  if (!f) return PosixError(errno, "open", path);
  RETURN_IF_ERROR(WriteAll(f.get(), bytes.data(), bytes.size(), path));
  if (std::fclose(f.release()) != 0) return PosixError(errno, "close", path);
  return d;
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  File f(std::fopen(path.c_str(), "wb"));
  if (!f) return PosixError(errno, "open", path);
  RETURN_IF_ERROR(WriteAll(f.get(), text.data(), text.size(), path));
  if (std::fclose(f.release()) != 0) return PosixError(errno, "close", path);
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
  Sha256 raw_hash, gz_hash;
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
  *diff_id = absl::StrCat("sha256:", raw_hash.HexDigest());
  Descriptor d{kLayerMediaType, absl::StrCat("sha256:", gz_hash.HexDigest()), gz_size};
  std::string final_path = absl::StrCat(out_dir, "/blobs/sha256/", d.digest.substr(7));
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0) return PosixError(errno, "rename", final_path);
  (void)raw_size;
  return d;
}

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return PosixError(errno, "mkdir", path);
  return absl::OkStatus();
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

nlohmann::json DescriptorJson(const Descriptor& d) {
  return {{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
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

std::string ConfigJson(const ImageSpec& spec, const std::vector<std::string>& diff_ids,
                       const std::vector<std::string>& history) {
  nlohmann::json config = nlohmann::json::object();
  if (!spec.entrypoint.empty()) config["Entrypoint"] = spec.entrypoint;
  if (!spec.cmd.empty()) config["Cmd"] = spec.cmd;
  if (!spec.env.empty()) config["Env"] = spec.env;
  if (!spec.working_dir.empty()) config["WorkingDir"] = spec.working_dir;
  if (!spec.user.empty()) config["User"] = spec.user;
  if (!spec.labels.empty()) config["Labels"] = spec.labels;
  nlohmann::json hist = nlohmann::json::array();
  for (const std::string& h : history) hist.push_back({{"created", spec.created}, {"created_by", h}});
  nlohmann::json j = {
      {"architecture", "amd64"},
      {"os", "linux"},
      {"created", spec.created},
      {"config", config},
      {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
      {"history", hist},
  };
  return j.dump();
}

std::string ManifestJson(const Descriptor& config, const std::vector<Descriptor>& layers,
                         const std::map<std::string, std::string>& annotations) {
  nlohmann::json ls = nlohmann::json::array();
  for (const Descriptor& l : layers) ls.push_back(DescriptorJson(l));
  nlohmann::json j = {
      {"schemaVersion", 2},
      {"mediaType", kManifestMediaType},
      {"config", DescriptorJson(config)},
      {"layers", ls},
  };
  if (!annotations.empty()) j["annotations"] = annotations;
  return j.dump();
}

std::string IndexJson(const Descriptor& manifest, const std::string& ref_name) {
  nlohmann::json m = DescriptorJson(manifest);
  if (!ref_name.empty()) m["annotations"] = {{"org.opencontainers.image.ref.name", ref_name}};
  nlohmann::json j = {{"schemaVersion", 2}, {"manifests", nlohmann::json::array({m})}};
  return j.dump();
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
  RETURN_IF_ERROR(MakeDir(out_dir));
  RETURN_IF_ERROR(MakeDir(out_dir + "/blobs"));
  RETURN_IF_ERROR(MakeDir(out_dir + "/blobs/sha256"));

  LayoutResult r;
  std::vector<std::string> history;
  for (const LayerInput& l : layers) {
    std::string diff_id;
    ASSIGN_OR_RETURN(Descriptor d, CompressLayer(l.path, out_dir, spec.gzip_level, &diff_id));
    r.layers.push_back(d);
    r.diff_ids.push_back(diff_id);
    history.push_back(l.created_by.empty() ? "kiln: layer" : l.created_by);
  }
  ASSIGN_OR_RETURN(r.config, WriteBlob(out_dir, ConfigJson(spec, r.diff_ids, history), kConfigMediaType));
  ASSIGN_OR_RETURN(r.manifest, WriteBlob(out_dir, ManifestJson(r.config, r.layers, spec.annotations),
                                         kManifestMediaType));
  RETURN_IF_ERROR(WriteText(out_dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  RETURN_IF_ERROR(WriteText(out_dir + "/index.json", IndexJson(r.manifest, spec.ref_name)));
  return r;
}

}  // namespace kiln::images
