// File: images/oci/layout.h
// -----------------------------------------------------------------------------
//
// Reading and writing an OCI image layout directory (OCI image-spec v1.0.2, "OCI Image
// Layout": the `oci-layout` marker file {"imageLayoutVersion":"1.0.0"}, `index.json` (an image
// index), and content-addressed blobs under `blobs/sha256/<hex>`, see digest.h BlobPath).
//
// Errors: InvalidArgument for a malformed layout (the message names the file and field),
// NotFound for a missing file, other errno-derived codes for I/O errors.
//
// Example:
//
//   RETURN_IF_ERROR(CreateLayoutDirs("out"));
//   ASSIGN_OR_RETURN(Descriptor cfg, WriteBlob("out", config_json, kMediaTypeImageConfig));
//   ...
//   RETURN_IF_ERROR(WriteLayoutFiles("out", {manifest}));
//   ASSIGN_OR_RETURN(LayoutImage img, ReadImageLayout("out"));
#ifndef KILN_IMAGES_OCI_LAYOUT_H_
#define KILN_IMAGES_OCI_LAYOUT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "images/oci/image.h"

namespace kiln::oci {

// The layout's fixed file names and the marker's content (image-layout "oci-layout file").
inline constexpr absl::string_view kLayoutMarkerFile = "oci-layout";
inline constexpr absl::string_view kLayoutIndexFile = "index.json";
inline constexpr absl::string_view kLayoutMarkerJson = R"({"imageLayoutVersion":"1.0.0"})";

// CreateLayoutDirs(dir): mkdir `dir`, `dir`/blobs and `dir`/blobs/sha256 (mode 0755; existing
// ones are fine; the parent of `dir` must exist). errno-derived codes.
absl::Status CreateLayoutDirs(const std::string& dir);

// WriteBlob(dir, bytes, media_type): writes `bytes` to BlobPath(dir, Sha256Digest(bytes))
// (replacing it) and returns its descriptor (size in bytes). errno-derived codes.
absl::StatusOr<Descriptor> WriteBlob(const std::string& dir, absl::string_view bytes,
                                     absl::string_view media_type);

// WriteLayoutFiles(dir, manifests): writes `dir`/oci-layout (kLayoutMarkerJson) and
// `dir`/index.json (IndexJson(manifests)), replacing them. errno-derived codes.
absl::Status WriteLayoutFiles(const std::string& dir, const std::vector<Descriptor>& manifests);

// ReadLayoutIndex(dir): checks `dir`/oci-layout is a marker (a JSON object with
// imageLayoutVersion) and returns the manifests of `dir`/index.json (ParseIndex).
// InvalidArgument naming the file for a malformed one; NotFound when either is missing.
absl::StatusOr<std::vector<Descriptor>> ReadLayoutIndex(const std::string& dir);

// LayoutImage: one image manifest read from a layout.
struct LayoutImage {
  std::string layout_dir;       // the layout directory it came from
  Descriptor manifest_descriptor;  // as index.json lists it (with its annotations)
  std::string manifest_bytes;   // exact bytes of the manifest blob
  std::string manifest_digest;  // Sha256Digest(manifest_bytes) == manifest_descriptor.digest
  std::string media_type;       // kMediaTypeImageManifest or kMediaTypeDockerManifest
  Descriptor config;
  std::vector<Descriptor> layers;

  // BlobPath(digest): <layout_dir>/blobs/sha256/<hex>.
  std::string BlobPath(absl::string_view digest) const;
};

// ReadImageLayout(dir, ref): reads the layout's index and the image manifest it names: the
// manifest whose org.opencontainers.image.ref.name annotation is `ref`, or, when `ref` is
// empty, the only manifest in the index. Checks the manifest blob's digest and that the config
// and every layer blob exist with the size their descriptors state (their content is not
// hashed: a layer may be GiBs). InvalidArgument for a malformed layout or manifest, an image
// index as the manifest (multi-platform images are not supported), a missing or ambiguous
// ref, a digest or size mismatch; NotFound for missing files.
absl::StatusOr<LayoutImage> ReadImageLayout(const std::string& dir, absl::string_view ref = "");

}  // namespace kiln::oci

#endif  // KILN_IMAGES_OCI_LAYOUT_H_
