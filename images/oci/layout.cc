#include "agent/file/file.h"
#include "images/oci/layout.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "images/oci/digest.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::oci {
namespace {

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return PosixError(errno, "mkdir", path);
  return absl::OkStatus();
}

}  // namespace

absl::Status CreateLayoutDirs(const std::string& dir) {
  RETURN_IF_ERROR(MakeDir(dir));
  RETURN_IF_ERROR(MakeDir(dir + "/blobs"));
  return MakeDir(dir + "/blobs/sha256");
}

absl::StatusOr<Descriptor> WriteBlob(const std::string& dir, absl::string_view bytes,
                                     absl::string_view media_type) {
  Descriptor d{std::string(media_type), Sha256Digest(bytes), static_cast<int64_t>(bytes.size()), {}};
  RETURN_IF_ERROR(file::WriteFileAtomically(oci::BlobPath(dir, d.digest), bytes));
  return d;
}

absl::Status WriteLayoutFiles(const std::string& dir, const std::vector<Descriptor>& manifests) {
  RETURN_IF_ERROR(file::WriteFileAtomically(absl::StrCat(dir, "/", kLayoutMarkerFile), kLayoutMarkerJson));
  return file::WriteFileAtomically(absl::StrCat(dir, "/", kLayoutIndexFile), IndexJson(manifests));
}

absl::StatusOr<std::vector<Descriptor>> ReadLayoutIndex(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string marker, file::ReadFile(absl::StrCat(dir, "/", kLayoutMarkerFile)));
  nlohmann::json mj = nlohmann::json::parse(marker, nullptr, /*allow_exceptions=*/false);
  if (!mj.is_object() || !mj.contains("imageLayoutVersion")) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/oci-layout: not an OCI layout marker"));
  }
  const std::string index_path = absl::StrCat(dir, "/", kLayoutIndexFile);
  ASSIGN_OR_RETURN(std::string index, file::ReadFile(index_path));
  return ParseIndex(index, index_path);
}

std::string LayoutImage::BlobPath(absl::string_view digest) const {
  return oci::BlobPath(layout_dir, digest);
}

absl::StatusOr<LayoutImage> ReadImageLayout(const std::string& dir, absl::string_view ref) {
  ASSIGN_OR_RETURN(std::vector<Descriptor> manifests, ReadLayoutIndex(dir));
  std::vector<Descriptor> candidates;
  for (Descriptor& d : manifests) {
    if (ref.empty()) {
      candidates.push_back(std::move(d));
    } else {
      auto it = d.annotations.find(std::string(kAnnotationRefName));
      if (it != d.annotations.end() && it->second == ref) candidates.push_back(std::move(d));
    }
  }
  if (candidates.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/index.json: ", ref.empty() ? "no manifest" : absl::StrCat("no manifest named ", ref)));
  }
  if (candidates.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/index.json: ", candidates.size(), " manifests; pick one with --ref NAME"));
  }
  LayoutImage img;
  img.layout_dir = dir;
  img.manifest_descriptor = candidates[0];
  const std::string& want = img.manifest_descriptor.digest;
  ASSIGN_OR_RETURN(img.manifest_bytes, file::ReadFile(img.BlobPath(want)));
  img.manifest_digest = Sha256Digest(img.manifest_bytes);
  if (img.manifest_digest != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest blob ", want, " has digest ", img.manifest_digest));
  }
  ASSIGN_OR_RETURN(Manifest m, ParseManifest(img.manifest_bytes));
  img.media_type = m.media_type;
  img.config = m.config;
  img.layers = m.layers;
  std::vector<const Descriptor*> blobs = {&img.config};
  for (const Descriptor& l : img.layers) blobs.push_back(&l);
  for (const Descriptor* d : blobs) {
    struct stat st;
    std::string p = img.BlobPath(d->digest);
    if (stat(p.c_str(), &st) != 0) return PosixError(errno, "stat blob", p);
    if (st.st_size != d->size) {
      return absl::InvalidArgumentError(
          absl::StrCat("blob ", p, " is ", st.st_size, " bytes, its descriptor says ", d->size));
    }
  }
  return img;
}

}  // namespace kiln::oci
