// File: agent/runner/oci_archive.h
// -----------------------------------------------------------------------------
//
// Conversion of a docker-archive (what `GET /images/{name}/get`, i.e. `docker save`, returns
// from dockerd 20.10: manifest.json, <config-hex>.json, <id>/layer.tar, where a repeated layer
// is a symlink to the first copy) into an OCI archive: a tar of an OCI image layout
// (image-spec v1.0 "OCI Image Layout": oci-layout, index.json, blobs/sha256/<hex>).
//
// The output also carries a docker-compatible manifest.json pointing at the blobs, so the same
// file can be loaded back by `docker load` / POST /images/load of dockerd 20.10 (which reads
// only manifest.json); OCI tools ignore that extra file.
//
// The OCI formats (digests, descriptors, manifest/index JSON, blob paths) come from the OCI
// library in images/oci/; this file is the docker-archive conversion.
//
// Layers are kept as they are (uncompressed tar, media type
// application/vnd.oci.image.layer.v1.tar; a gzip layer keeps +gzip): no recompression cost
// under TCG, and each layer digest equals its config rootfs.diff_id, which is verified. The
// archive is deterministic for a given image: fixed mtime 0, uid/gid 0, mode 0644/0755, fixed
// entry order, compact JSON with sorted keys. The manifest digest is the sha256 of the manifest
// blob, the image's identity in a registry.
//
// Example:
//
//   ASSIGN_OR_RETURN(OciImage img, ConvertDockerArchiveToOci("/w/image.docker.tar", "/w/x",
//                                                           "/w/image.oci.tar", "app:1"));
//   // img.manifest_digest == "sha256:..."
#ifndef KILN_AGENT_RUNNER_OCI_ARCHIVE_H_
#define KILN_AGENT_RUNNER_OCI_ARCHIVE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "images/oci/digest.h"
#include "images/oci/image.h"

namespace kiln::agent::runner {

// OciDescriptor: an OCI content descriptor (images/oci/image.h).
using OciDescriptor = ::kiln::oci::Descriptor;

// Sha256Hex(bytes): lowercase hex SHA-256 (images/oci/digest.h), re-exported for the runner's
// users that check what a step printed with `sha256sum`.
using ::kiln::oci::Sha256Hex;

// OciImage: what the conversion wrote.
struct OciImage {
  OciDescriptor manifest;
  OciDescriptor config;
  std::vector<OciDescriptor> layers;
  std::string manifest_digest;  // == manifest.digest
  int64_t archive_bytes = 0;    // size of the OCI archive file
};

// OciIndexJson(manifest, tag): index.json with one manifest whose annotations name the image
// (org.opencontainers.image.ref.name = the tag part, io.containerd.image.name = full tag).
std::string OciIndexJson(const OciDescriptor& manifest, absl::string_view tag);

// ConvertDockerArchiveToOci(docker_archive, scratch_dir, out_path, tag): unpacks the
// docker-archive below scratch_dir (created; safe extraction, see context_tar.h), checks it
// holds exactly one image whose layers match the config's diff_ids, and writes the OCI archive
// to out_path (replaced atomically). DataLoss for a malformed or inconsistent archive,
// errno-derived codes for file errors.
absl::StatusOr<OciImage> ConvertDockerArchiveToOci(const std::string& docker_archive,
                                                   const std::string& scratch_dir,
                                                   const std::string& out_path,
                                                   absl::string_view tag);

// ArchiveKind: what an image archive holds, from its top-level entries.
enum class ArchiveKind {
  kDockerArchive,  // has manifest.json (docker save; also this runner's OCI archives)
  kOciArchive,     // has index.json and oci-layout but no manifest.json
  kUnknown,
};

// DetectArchiveKind(path): reads only the tar headers. DataLoss for an unreadable tar.
absl::StatusOr<ArchiveKind> DetectArchiveKind(const std::string& path);

// OciArchiveToDockerArchive(oci_archive, scratch_dir, out_path): makes an OCI archive loadable
// by dockerd 20.10 (whose /images/load reads only manifest.json): unpacks it below scratch_dir
// (safe extraction), follows index.json (exactly one manifest) to the manifest, config and
// layers, and writes a docker-archive (manifest.json + those blobs) to out_path. The RepoTags
// come from the index's io.containerd.image.name annotation, or from
// org.opencontainers.image.ref.name when that is a full reference (has ':' or '/').
// Returns that tag. FailedPrecondition when no name is found; DataLoss when the layout is
// malformed or a blob's digest does not match.
absl::StatusOr<std::string> OciArchiveToDockerArchive(const std::string& oci_archive,
                                                      const std::string& scratch_dir,
                                                      const std::string& out_path);

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_OCI_ARCHIVE_H_
