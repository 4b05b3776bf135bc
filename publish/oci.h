// File: publish/oci.h
// -----------------------------------------------------------------------------
//
// OCI image-spec v1 pieces the publisher needs: content digests (sha256 via OpenSSL),
// descriptors, reading an image from an OCI image layout directory
// (https://github.com/opencontainers/image-spec/blob/v1.0.2/image-layout.md), and
// stamping OCI annotations onto an image manifest.
//
// Example:
//
//   ASSIGN_OR_RETURN(OciImage img, ReadOciLayout("/tmp/layout"));   // the one manifest in it
//   ASSIGN_OR_RETURN(std::string m, AnnotateManifest(img.manifest_bytes,
//       {{"org.opencontainers.image.version", "1.2.3"}}));
//   std::string digest = Sha256Digest(m);                             // "sha256:<64 hex>"
#ifndef KILN_PUBLISH_OCI_H_
#define KILN_PUBLISH_OCI_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::publish {

inline constexpr absl::string_view kOciManifestType = "application/vnd.oci.image.manifest.v1+json";
inline constexpr absl::string_view kOciIndexType = "application/vnd.oci.image.index.v1+json";
inline constexpr absl::string_view kOciConfigType = "application/vnd.oci.image.config.v1+json";
inline constexpr absl::string_view kDockerManifestType =
    "application/vnd.docker.distribution.manifest.v2+json";

// Annotation keys stamped on published images (OCI image-spec annotations.md, plus kiln's).
inline constexpr absl::string_view kAnnotationVersion = "org.opencontainers.image.version";
inline constexpr absl::string_view kAnnotationRevision = "org.opencontainers.image.revision";
inline constexpr absl::string_view kAnnotationCreated = "org.opencontainers.image.created";
inline constexpr absl::string_view kAnnotationRefName = "org.opencontainers.image.ref.name";
inline constexpr absl::string_view kAnnotationPackageLock = "dev.kiln.package-lock.digest";

// Descriptor: an OCI content descriptor (image-spec descriptor.md).
struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<64 lowercase hex>"
  int64_t size = 0;    // bytes
  std::map<std::string, std::string> annotations;
};

// Sha256Digest(bytes): "sha256:" + lowercase hex SHA-256 of `bytes`.
std::string Sha256Digest(absl::string_view bytes);

// Sha256FileDigest(path): streams the file at `path` through SHA-256; returns its digest and
// sets *size (bytes) when `size` is non-null. NotFound/PermissionDenied/... from open/read.
absl::StatusOr<std::string> Sha256FileDigest(const std::string& path, int64_t* size = nullptr);

// ValidateDigest(digest): ok for "sha256:<64 lowercase hex>"; InvalidArgumentError otherwise
// (other algorithms are not supported).
absl::Status ValidateDigest(absl::string_view digest);

// OciImage: one image manifest read from an OCI image layout.
struct OciImage {
  std::string layout_dir;       // the layout directory it came from
  std::string manifest_bytes;   // exact bytes of the manifest blob
  std::string manifest_digest;  // Sha256Digest(manifest_bytes)
  std::string media_type;       // kOciManifestType or kDockerManifestType
  Descriptor config;
  std::vector<Descriptor> layers;

  // BlobPath(digest): <layout_dir>/blobs/sha256/<hex>.
  std::string BlobPath(absl::string_view digest) const;
};

// ReadOciLayout(dir, ref): reads `dir`/oci-layout, `dir`/index.json and the image manifest
// it names: the manifest whose org.opencontainers.image.ref.name is `ref`, or, when `ref` is
// empty, the only manifest in the index. Checks that every referenced blob exists with the
// size its descriptor states. InvalidArgumentError for a malformed layout, a manifest index
// (multi-platform images are not supported), an ambiguous or missing ref, or a size
// mismatch; NotFound for missing files.
absl::StatusOr<OciImage> ReadOciLayout(const std::string& dir, absl::string_view ref = "");

// ExtractLayoutArchive(archive_path, dest_dir): unpacks an OCI image layout archive (tar,
// optionally gzip/zstd-compressed; what `skopeo copy ... oci-archive:` writes) into the
// existing directory `dest_dir` with libarchive. Only regular files and directories are
// accepted; absolute paths, ".." components and links are refused (InvalidArgumentError);
// read failures give InvalidArgumentError naming the archive.
absl::Status ExtractLayoutArchive(const std::string& archive_path, const std::string& dest_dir);

// ParseManifest(bytes, out): fills out->config/layers/media_type from an image manifest.
// InvalidArgumentError when it is not an OCI/Docker v2 image manifest.
absl::Status ParseManifest(absl::string_view bytes, OciImage* out);

// AnnotateManifest(bytes, annotations): the manifest re-serialized with `annotations` merged
// into its top-level "annotations" object (new keys win). Deterministic: keys are sorted,
// output is compact JSON, so equal inputs give equal digests. InvalidArgumentError when
// `bytes` is not a JSON object.
absl::StatusOr<std::string> AnnotateManifest(
    absl::string_view bytes, const std::map<std::string, std::string>& annotations);

// Rfc3339FromEpoch(seconds): "YYYY-MM-DDTHH:MM:SSZ" in UTC (for org.opencontainers.image.created).
std::string Rfc3339FromEpoch(int64_t seconds);

}  // namespace kiln::publish

#endif  // KILN_PUBLISH_OCI_H_
