// File: publish/oci.h
// -----------------------------------------------------------------------------
//
// What publish adds to the OCI library (images/oci/: digests, descriptors, media types,
// manifests, reading an image layout): unpacking a layout archive, stamping OCI annotations
// onto an image manifest, and the RFC 3339 form of org.opencontainers.image.created. The
// library's names publish uses everywhere are brought into kiln::publish here.
//
// Example:
//
//   ASSIGN_OR_RETURN(oci::LayoutImage img, oci::ReadImageLayout("/tmp/layout"));
//   ASSIGN_OR_RETURN(std::string m, AnnotateManifest(img.manifest_bytes,
//       {{std::string(oci::kAnnotationVersion), "1.2.3"}}));
//   std::string digest = Sha256Digest(m);                             // "sha256:<64 hex>"
#ifndef KILN_PUBLISH_OCI_H_
#define KILN_PUBLISH_OCI_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "images/oci/digest.h"
#include "images/oci/image.h"
#include "images/oci/layout.h"

namespace kiln::publish {

using ::kiln::oci::Descriptor;
using ::kiln::oci::Sha256Digest;
using ::kiln::oci::Sha256FileDigest;
using ::kiln::oci::ValidateDigest;

// The annotation key kiln adds to published images (the OCI ones are in images/oci/image.h).
inline constexpr absl::string_view kAnnotationPackageLock = "dev.kiln.package-lock.digest";

// ExtractLayoutArchive(archive_path, dest_dir): unpacks an OCI image layout archive (tar,
// optionally gzip/zstd-compressed; what `skopeo copy ... oci-archive:` writes) into the
// existing directory `dest_dir` with libarchive. Only regular files and directories are
// accepted; absolute paths, ".." components and links are refused (InvalidArgumentError);
// read failures give InvalidArgumentError naming the archive.
absl::Status ExtractLayoutArchive(const std::string& archive_path, const std::string& dest_dir);

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
