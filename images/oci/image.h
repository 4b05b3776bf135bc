// File: images/oci/image.h
// -----------------------------------------------------------------------------
//
// The OCI image-spec v1.0.2 documents kiln writes and reads, as structs with their JSON form:
//   - Descriptor ("Descriptor" section "Properties": mediaType, digest, size, annotations);
//   - image Manifest ("Image Manifest" section "Image Manifest Property Descriptions":
//     schemaVersion 2, mediaType, config, layers, annotations);
//   - image Index ("Image Index": schemaVersion 2, manifests) as index.json uses it;
//   - image Config ("Image Configuration" section "Properties": architecture, os, created,
//     config, rootfs.diff_ids, history).
// Media types and annotation keys ("Media Types", "Annotations" sections "Pre-Defined
// Annotation Keys") are constants here, nowhere else.
//
// Serialisation is deterministic: compact JSON with object keys sorted (nlohmann::json's
// std::map), optional members left out when empty, so equal structs give equal bytes and
// therefore equal digests. Parsing is strict about what kiln relies on and names the field
// it refuses: InvalidArgument("<where>: ...") for every malformed input; nothing else.
// Units: sizes are bytes; times are RFC 3339 strings in UTC.
//
// Example:
//
//   Manifest m;
//   m.config = {std::string(kMediaTypeImageConfig), Sha256Digest(cfg), int64_t(cfg.size())};
//   std::string bytes = ManifestJson(m);
//   ASSIGN_OR_RETURN(Manifest again, ParseManifest(bytes));
#ifndef KILN_IMAGES_OCI_IMAGE_H_
#define KILN_IMAGES_OCI_IMAGE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace kiln::oci {

// Media types (image-spec "Media Types"; the Docker v2 manifest is accepted when reading).
inline constexpr absl::string_view kMediaTypeImageManifest =
    "application/vnd.oci.image.manifest.v1+json";
inline constexpr absl::string_view kMediaTypeImageIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr absl::string_view kMediaTypeImageConfig =
    "application/vnd.oci.image.config.v1+json";
inline constexpr absl::string_view kMediaTypeLayerTar = "application/vnd.oci.image.layer.v1.tar";
inline constexpr absl::string_view kMediaTypeLayerTarGzip =
    "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr absl::string_view kMediaTypeDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";

// Annotation keys (image-spec "Annotations"; the containerd one is what `ctr`/docker export
// write to name an image in an index).
inline constexpr absl::string_view kAnnotationRefName = "org.opencontainers.image.ref.name";
inline constexpr absl::string_view kAnnotationVersion = "org.opencontainers.image.version";
inline constexpr absl::string_view kAnnotationRevision = "org.opencontainers.image.revision";
inline constexpr absl::string_view kAnnotationCreated = "org.opencontainers.image.created";
inline constexpr absl::string_view kAnnotationContainerdImageName = "io.containerd.image.name";

// Descriptor: an OCI content descriptor.
struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<64 lowercase hex>"
  int64_t size = 0;    // bytes
  std::map<std::string, std::string> annotations;
};

// DescriptorToJson(d): {"digest","mediaType","size"} plus "annotations" when not empty. Pure.
nlohmann::json DescriptorToJson(const Descriptor& d);

// DescriptorFromJson(j, where): InvalidArgument("<where>: ...") unless j is an object with a
// string mediaType, a valid sha256 digest (digest.h ValidateDigest) and a non-negative integer
// size; string-valued annotations are kept, others ignored. Pure.
absl::StatusOr<Descriptor> DescriptorFromJson(const nlohmann::json& j, absl::string_view where);

// Manifest: an image manifest.
struct Manifest {
  std::string media_type = std::string(kMediaTypeImageManifest);
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
};

// ManifestJson(m): schemaVersion 2, mediaType, config, layers, annotations (when not empty);
// compact, keys sorted. Pure.
std::string ManifestJson(const Manifest& m);

// ParseManifest(bytes): InvalidArgument for: not a JSON object; an image index (has
// "manifests" or the index media type: multi-platform images are not supported); a mediaType
// other than the OCI or Docker v2 image manifest (a missing one counts as OCI); schemaVersion
// not 2; no config or no layers array; a malformed config or layer descriptor (named
// "manifest config" / "layer <i>"). Pure.
absl::StatusOr<Manifest> ParseManifest(absl::string_view bytes);

// IndexJson(manifests): {"manifests":[...],"schemaVersion":2}, compact, keys sorted (the
// index.json of an image layout). Pure.
std::string IndexJson(const std::vector<Descriptor>& manifests);

// ParseIndex(bytes, where): the manifests of an image index. InvalidArgument("<where>: ...")
// when it is not an object with a manifests array, or a descriptor in it is malformed. Pure.
absl::StatusOr<std::vector<Descriptor>> ParseIndex(absl::string_view bytes,
                                                   absl::string_view where = "index");

// HistoryEntry: one config history item.
struct HistoryEntry {
  std::string created;  // RFC 3339 UTC
  std::string created_by;
};

// ImageConfig: the image configuration kiln writes and reads.
struct ImageConfig {
  std::string architecture = "amd64";
  std::string os = "linux";
  std::string created = "1970-01-01T00:00:00Z";  // RFC 3339 UTC
  // config.* (execution parameters); empty ones are left out of the JSON.
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "KEY=value"
  std::string working_dir;
  std::string user;
  std::map<std::string, std::string> labels;
  std::vector<std::string> diff_ids;  // rootfs.diff_ids: "sha256:<hex>" of each uncompressed layer
  std::vector<HistoryEntry> history;
};

// ImageConfigJson(c): architecture, os, created, config, rootfs {type "layers", diff_ids},
// history; compact, keys sorted. Pure.
std::string ImageConfigJson(const ImageConfig& c);

// ParseImageConfig(bytes): architecture, os, created (when strings), diff_ids and history
// (config.* is not read back). InvalidArgument for: not a JSON object; no rootfs.diff_ids
// array; a diff_id that is not a valid sha256 digest (named "rootfs.diff_ids[<i>]"). Pure.
absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view bytes);

}  // namespace kiln::oci

#endif  // KILN_IMAGES_OCI_IMAGE_H_
