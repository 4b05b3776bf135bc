// File: images/oci/oci_layout.h
// -----------------------------------------------------------------------------
//
// Writes an OCI image layout (OCI image-spec v1.0.2, "OCI Image Layout": `oci-layout`,
// `index.json`, `blobs/sha256/<hex>`) for a single-platform image from layer tars and an image
// config, deterministically: the same layer bytes and ImageSpec give the same manifest digest.
//
// The formats themselves (digests, descriptors, manifest/config/index JSON, the layout's files)
// come from the OCI library (digest.h, image.h, layout.h); this file is the policy of
// kiln_oci_image. What kiln decides here (the image assembly policy):
//   - each layer is a tar (uncompressed input; gzip'd input is refused so that diff_ids are
//     exact); it is stored gzip-compressed (application/vnd.oci.image.layer.v1.tar+gzip) with
//     zlib at a fixed level and no gzip timestamp or file name, so its digest is stable;
//     rootfs.diff_ids carry the sha256 of the uncompressed tar;
//   - JSON documents (config, manifest, index) are compact with keys sorted;
//   - `created` comes from the caller (e.g. SOURCE_DATE_EPOCH), never from the clock.
//
// Example:
//
//   ImageSpec spec;
//   spec.entrypoint = {"/usr/local/bin/kiln-agent"};
//   spec.created = "1970-01-01T00:00:00Z";
//   ASSIGN_OR_RETURN(LayoutResult r,
//                    WriteOciLayout({{"rootfs.tar", "debian"}, {"kiln.tar", "kiln"}}, spec, "out/"));
//   // r.manifest.digest == "sha256:..."
#ifndef KILN_IMAGES_OCI_OCI_LAYOUT_H_
#define KILN_IMAGES_OCI_OCI_LAYOUT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "images/oci/image.h"

namespace kiln::images {

// Descriptor: an OCI content descriptor (images/oci/image.h).
using ::kiln::oci::Descriptor;

// LayerInput: one layer tar on the host, and a short note for the config history.
struct LayerInput {
  std::string path;
  std::string created_by;
};

// ImageSpec: the image config's execution parameters and metadata (image-spec config.md).
struct ImageSpec {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;          // "KEY=value"
  std::string working_dir;
  std::string user;
  std::map<std::string, std::string> labels;       // config.Labels
  std::map<std::string, std::string> annotations;  // manifest annotations
  std::string created = "1970-01-01T00:00:00Z";    // RFC 3339, UTC, "Z"
  std::string ref_name;                            // index.json org.opencontainers.image.ref.name
  int gzip_level = 6;                              // 1..9
};

// LayoutResult: what WriteOciLayout wrote.
struct LayoutResult {
  Descriptor manifest;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::vector<std::string> diff_ids;  // "sha256:<hex>" of each uncompressed layer
};

// ValidateImageSpec(spec): InvalidArgument naming the field for: an env entry without '=' or
// with an empty key; `created` not of the form YYYY-MM-DDTHH:MM:SSZ; gzip_level outside 1..9;
// an empty entrypoint element; a label/annotation with an empty key; a ref_name with characters
// outside [A-Za-z0-9._:/-] (image-spec annotations.md ref.name grammar, simplified). Pure.
absl::Status ValidateImageSpec(const ImageSpec& spec);

// WriteOciLayout(layers, spec, out_dir): writes the layout into `out_dir` (created if missing;
// must be empty or absent). Returns the descriptors. Errors: InvalidArgument for a bad spec, no
// layers, or a layer that is gzip'd or not a tar; NotFound for a missing layer file;
// FailedPrecondition if out_dir is not empty; errno-derived codes for I/O errors.
absl::StatusOr<LayoutResult> WriteOciLayout(const std::vector<LayerInput>& layers,
                                            const ImageSpec& spec, const std::string& out_dir);

}  // namespace kiln::images

#endif  // KILN_IMAGES_OCI_OCI_LAYOUT_H_
