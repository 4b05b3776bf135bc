#include "publish/oci.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include <archive.h>
#include <archive_entry.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::publish {
namespace {

using json = nlohmann::json;

std::string Hex(const unsigned char* d, unsigned n) {
  static const char* kHex = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (unsigned i = 0; i < n; ++i) {
    s[2 * i] = kHex[d[i] >> 4];
    s[2 * i + 1] = kHex[d[i] & 15];
  }
  return s;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return PosixError(errno ? errno : ENOENT, "open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<Descriptor> ParseDescriptor(const json& j, absl::string_view where) {
  if (!j.is_object() || !j.contains("digest") || !j["digest"].is_string() ||
      !j.contains("size") || !j["size"].is_number_integer() || !j.contains("mediaType") ||
      !j["mediaType"].is_string())
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": descriptor needs string mediaType, string digest, integer size"));
  Descriptor d;
  d.media_type = j["mediaType"].get<std::string>();
  d.digest = j["digest"].get<std::string>();
  d.size = j["size"].get<int64_t>();
  if (d.size < 0) return absl::InvalidArgumentError(absl::StrCat(where, ": negative size"));
  RETURN_IF_ERROR(ValidateDigest(d.digest));
  if (j.contains("annotations") && j["annotations"].is_object())
    for (auto& [k, v] : j["annotations"].items())
      if (v.is_string()) d.annotations[k] = v.get<std::string>();
  return d;
}

}  // namespace

std::string Sha256Digest(absl::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &n, EVP_sha256(), nullptr);
  return absl::StrCat("sha256:", Hex(md, n));
}

absl::StatusOr<std::string> Sha256FileDigest(const std::string& path, int64_t* size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  absl::Cleanup close_fd = [fd] { close(fd); };
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  absl::Cleanup free_ctx = [ctx] { EVP_MD_CTX_free(ctx); };
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::string buf(1 << 20, '\0');
  int64_t total = 0;
  for (;;) {
    ssize_t r = read(fd, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      return PosixError(errno, "read", path);
    }
    if (r == 0) break;
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(r));
    total += r;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestFinal_ex(ctx, md, &n);
  if (size) *size = total;
  return absl::StrCat("sha256:", Hex(md, n));
}

absl::Status ValidateDigest(absl::string_view digest) {
  if (!absl::StartsWith(digest, "sha256:"))
    return absl::InvalidArgumentError(
        absl::StrCat("digest \"", digest, "\": only sha256 digests are supported"));
  absl::string_view hex = digest.substr(7);
  bool ok = hex.size() == 64;
  for (char c : hex) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!ok)
    return absl::InvalidArgumentError(
        absl::StrCat("digest \"", digest, "\": expected sha256:<64 lowercase hex>"));
  return absl::OkStatus();
}

std::string OciImage::BlobPath(absl::string_view digest) const {
  size_t colon = digest.find(':');
  return absl::StrCat(layout_dir, "/blobs/", digest.substr(0, colon), "/",
                      digest.substr(colon + 1));
}

absl::Status ParseManifest(absl::string_view bytes, OciImage* out) {
  json m = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (!m.is_object()) return absl::InvalidArgumentError("image manifest is not a JSON object");
  std::string mt = m.value("mediaType", std::string(kOciManifestType));
  if (mt == kOciIndexType || m.contains("manifests"))
    return absl::InvalidArgumentError(
        "the layout holds an image index (multi-platform image): not supported, publish a "
        "single image manifest");
  if (mt != kOciManifestType && mt != kDockerManifestType)
    return absl::InvalidArgumentError(absl::StrCat("unsupported manifest mediaType ", mt));
  if (m.value("schemaVersion", 0) != 2)
    return absl::InvalidArgumentError("image manifest schemaVersion is not 2");
  if (!m.contains("config") || !m.contains("layers") || !m["layers"].is_array())
    return absl::InvalidArgumentError("image manifest needs config and layers");
  out->media_type = mt;
  ASSIGN_OR_RETURN(out->config, ParseDescriptor(m["config"], "manifest config"));
  out->layers.clear();
  for (size_t i = 0; i < m["layers"].size(); ++i) {
    ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(m["layers"][i], absl::StrCat("layer ", i)));
    out->layers.push_back(std::move(d));
  }
  return absl::OkStatus();
}

absl::StatusOr<OciImage> ReadOciLayout(const std::string& dir, absl::string_view ref) {
  OciImage img;
  img.layout_dir = dir;
  ASSIGN_OR_RETURN(std::string marker, ReadFile(dir + "/oci-layout"));
  json mj = json::parse(marker, nullptr, false);
  if (!mj.is_object() || !mj.contains("imageLayoutVersion"))
    return absl::InvalidArgumentError(absl::StrCat(dir, "/oci-layout: not an OCI layout marker"));
  ASSIGN_OR_RETURN(std::string index_bytes, ReadFile(dir + "/index.json"));
  json index = json::parse(index_bytes, nullptr, false);
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
    return absl::InvalidArgumentError(absl::StrCat(dir, "/index.json: no manifests array"));
  std::vector<Descriptor> candidates;
  for (size_t i = 0; i < index["manifests"].size(); ++i) {
    ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(index["manifests"][i],
                                                   absl::StrCat(dir, "/index.json manifest ", i)));
    if (ref.empty()) {
      candidates.push_back(d);
    } else {
      auto it = d.annotations.find(std::string(kAnnotationRefName));
      if (it != d.annotations.end() && it->second == ref) candidates.push_back(d);
    }
  }
  if (candidates.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/index.json: ", ref.empty() ? "no manifest" : absl::StrCat("no manifest named ", ref)));
  if (candidates.size() > 1)
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/index.json: ", candidates.size(), " manifests; pick one with --ref NAME"));
  const Descriptor& md = candidates[0];
  ASSIGN_OR_RETURN(img.manifest_bytes, ReadFile(img.BlobPath(md.digest)));
  img.manifest_digest = Sha256Digest(img.manifest_bytes);
  if (img.manifest_digest != md.digest)
    return absl::InvalidArgumentError(absl::StrCat("manifest blob ", md.digest,
                                                   " has digest ", img.manifest_digest));
  RETURN_IF_ERROR(ParseManifest(img.manifest_bytes, &img));
  std::vector<const Descriptor*> blobs = {&img.config};
  for (const Descriptor& l : img.layers) blobs.push_back(&l);
  for (const Descriptor* d : blobs) {
    struct stat st;
    std::string p = img.BlobPath(d->digest);
    if (stat(p.c_str(), &st) != 0) return PosixError(errno, "stat blob", p);
    if (st.st_size != d->size)
      return absl::InvalidArgumentError(absl::StrCat("blob ", p, " is ", st.st_size,
                                                     " bytes, its descriptor says ", d->size));
  }
  return img;
}

absl::StatusOr<std::string> AnnotateManifest(
    absl::string_view bytes, const std::map<std::string, std::string>& annotations) {
  json m = json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (!m.is_object()) return absl::InvalidArgumentError("manifest is not a JSON object");
  json& a = m["annotations"];
  if (!a.is_object()) a = json::object();
  for (const auto& [k, v] : annotations) a[k] = v;
  return m.dump();  // nlohmann::json objects are std::map: keys sorted, compact
}

absl::Status ExtractLayoutArchive(const std::string& archive_path, const std::string& dest_dir) {
  struct archive* a = archive_read_new();
  absl::Cleanup free_a = [a] { archive_read_free(a); };
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  if (archive_read_open_filename(a, archive_path.c_str(), 1 << 16) != ARCHIVE_OK)
    return absl::InvalidArgumentError(
        absl::StrCat("open archive ", archive_path, ": ", archive_error_string(a)));
  struct archive_entry* e;
  int rc;
  while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    std::string name = archive_entry_pathname(e);
    while (absl::StartsWith(name, "./")) name = name.substr(2);
    if (name.empty() || name == ".") continue;
    if (name[0] == '/' || name == ".." || absl::StartsWith(name, "../") ||
        absl::StrContains(name, "/../") || absl::EndsWith(name, "/.."))
      return absl::InvalidArgumentError(
          absl::StrCat(archive_path, ": unsafe path \"", name, "\" in archive"));
    std::string path = absl::StrCat(dest_dir, "/", name);
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFDIR) {
      if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return PosixError(errno, "mkdir", path);
      continue;
    }
    if (type != AE_IFREG)
      return absl::InvalidArgumentError(absl::StrCat(
          archive_path, ": \"", name, "\" is not a regular file or directory"));
    // Parent directories may be implicit in the archive.
    for (size_t i = dest_dir.size() + 1; i < path.size(); ++i)
      if (path[i] == '/') {
        std::string dir = path.substr(0, i);
        if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return PosixError(errno, "mkdir", dir);
      }
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return PosixError(errno, "create", path);
    absl::Cleanup close_fd = [fd] { close(fd); };
    if (archive_read_data_into_fd(a, fd) != ARCHIVE_OK)
      return absl::InvalidArgumentError(
          absl::StrCat(archive_path, ": reading \"", name, "\": ", archive_error_string(a)));
  }
  if (rc != ARCHIVE_EOF)
    return absl::InvalidArgumentError(
        absl::StrCat(archive_path, ": ", archive_error_string(a)));
  return absl::OkStatus();
}

std::string Rfc3339FromEpoch(int64_t seconds) {
  time_t t = static_cast<time_t>(seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace kiln::publish
