// File: images/tool/unpack.h
// -----------------------------------------------------------------------------
//
// Unpacking an OCI image into a root directory: its layers in manifest order, with the OCI
// image-spec's whiteouts applied (layer.md, "Whiteouts"), keeping what a root file system
// needs: modes (setuid/setgid/sticky bits too), numeric owners, xattrs (e.g.
// security.capability), hard links, symlinks, FIFOs, mtimes, and character/block devices
// where the caller allows them. libarchive reads each layer (tar, raw or gzip/zstd/xz) and
// writes the entries under the root's real path (archive_write_disk with
// ARCHIVE_EXTRACT_SECURE_SYMLINKS | SECURE_NODOTDOT: nothing is written through a symlink).
//
// Layer semantics (image-spec layer.md):
//   - `DIR/.wh.NAME` deletes DIR/NAME (and everything below it) of the lower layers;
//   - `DIR/.wh..wh..opq` deletes every child of DIR of the lower layers;
//   - whiteouts apply to lower layers only: an entry of the same layer is kept, whatever the
//     order of the tar (each layer is read twice: pass 1 reads headers, checks them and
//     collects whiteouts; the whiteouts are applied; pass 2 writes the entries);
//   - an entry replaces what the lower layers have at its path, except that a directory onto
//     a directory merges (the new one's mode, owner and times win);
//   - other `.wh..wh.*` names (aufs metadata such as .wh..wh.plnk) are not written;
//   - an opaque marker whose directory is missing, or is not a directory in the tree (e.g. a
//     lower layer's symlink), deletes nothing: there are no lower children to hide.
//
// Hostile layers are refused, naming the layer and the entry, before the layer writes
// anything (pass 1): an absolute path, a ".." component, an empty or NUL name
// (InvalidArgument); a relative symlink target that climbs above the root from the link's
// directory, a hard link whose target is outside the root (PermissionDenied); a character or
// block device outside UnpackOptions::device_dirs, a socket or unknown type
// (PermissionDenied / InvalidArgument); a whiteout of the root itself or of "." / ".."
// (InvalidArgument). Absolute symlink targets are allowed: they are root-relative in the
// guest that boots the tree, and they are never followed here. While writing (pass 2), an
// entry, hard-link target or whiteout whose parent path in the tree holds a symlink or a
// non-directory is refused (PermissionDenied), so a lower layer's symlink cannot redirect a
// write or a deletion outside the root. A layer whose bytes do not hash to its descriptor's
// digest is DataLoss, checked at the end of pass 1 (before the layer writes anything).
//
// REQUIRES: root privileges (CAP_CHOWN, CAP_MKNOD, CAP_FOWNER, CAP_SETFCAP) for
// UnpackOptions::same_owner, devices and security.* xattrs.
//
// Example:
//
//   ASSIGN_OR_RETURN(oci::LayoutImage img, oci::ReadImageLayout("bazel-bin/images/builder"));
//   ASSIGN_OR_RETURN(UnpackStats s, UnpackImage(img, "/tmp/root", {.device_dirs = {"dev"}}));
#ifndef KILN_IMAGES_TOOL_UNPACK_H_
#define KILN_IMAGES_TOOL_UNPACK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "images/oci/image.h"
#include "images/oci/layout.h"

namespace kiln::images {

// UnpackOptions: what the layers may do.
struct UnpackOptions {
  // device_dirs: root-relative directories ("dev") below which character and block devices
  // may be created; anywhere else a device entry is refused. Empty: no device nodes at all.
  std::vector<std::string> device_dirs;
  // same_owner: chown every entry to its numeric uid/gid from the layer (names are ignored);
  // false: everything belongs to the caller (tests without root).
  bool same_owner = true;
};

// UnpackStats: what was done (counts; bytes are file contents written).
struct UnpackStats {
  int64_t layers = 0;
  int64_t entries = 0;        // entries written (directories, files, links, devices, FIFOs)
  int64_t whiteouts = 0;      // `.wh.NAME` entries applied
  int64_t opaque_dirs = 0;    // `.wh..wh..opq` entries applied
  int64_t file_bytes = 0;     // bytes of regular-file data written
  int64_t layer_bytes = 0;    // bytes of the layer blobs read (compressed, once per layer)
};

// NormalizeLayerPath(path): a layer entry's name as a root-relative path: "./a//b/" ->
// "a/b", "." or "./" -> "" (the root). InvalidArgument for an empty name, a NUL byte, an
// absolute path, a ".." component, or more than 4096 bytes.
absl::StatusOr<std::string> NormalizeLayerPath(absl::string_view path);

// Whiteout: what a normalized entry path means as a whiteout (layer.md).
struct Whiteout {
  enum class Kind { kNone, kFile, kOpaque, kMetadata };
  Kind kind = Kind::kNone;
  std::string target;  // kFile: the path it deletes; kOpaque: the directory it empties
};

// ClassifyWhiteout(path): kNone for an ordinary entry; kFile for "DIR/.wh.NAME" (target
// "DIR/NAME"), kOpaque for "DIR/.wh..wh..opq" (target "DIR", "" for the root), kMetadata for
// other "DIR/.wh..wh.*" names. InvalidArgument for ".wh." with an empty, "." or ".." NAME.
// REQUIRES: `path` is normalized (NormalizeLayerPath).
absl::StatusOr<Whiteout> ClassifyWhiteout(absl::string_view path);

// CheckSymlinkTarget(link_path, target): OkStatus when the symlink at normalized `link_path`
// pointing at `target` stays inside the root: an absolute target (root-relative in the image),
// or a relative one whose ".." components never climb above the root from the link's
// directory. PermissionDenied otherwise; InvalidArgument for an empty target.
absl::Status CheckSymlinkTarget(absl::string_view link_path, absl::string_view target);

// UnpackLayer(blob_path, desc, root, options, stats, diff_id): applies one layer blob (its
// bytes must hash to desc.digest; desc.media_type must be a tar layer type) onto `root`, an
// existing directory. When `diff_id` is not empty, the layer's uncompressed tar stream must
// hash to it (DataLoss otherwise, checked in pass 1 with the digest, before anything is
// written). Codes as in the file comment; the errno-derived code of a failed file operation;
// DataLoss for a corrupt archive. `stats` is added to.
absl::Status UnpackLayer(const std::string& blob_path, const oci::Descriptor& desc,
                         const std::string& root, const UnpackOptions& options,
                         UnpackStats* stats, absl::string_view diff_id = "");

// UnpackImage(image, root, options): UnpackLayer for each of image.layers in manifest order,
// after checking the config blob's digest and reading its rootfs.diff_ids: one per layer
// (InvalidArgument for an unparsable config or another count), each layer's uncompressed
// stream checked against its diff_id (DataLoss). Errors name the layer ("layer 2 of 3
// sha256:...").
absl::StatusOr<UnpackStats> UnpackImage(const oci::LayoutImage& image, const std::string& root,
                                        const UnpackOptions& options);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_UNPACK_H_
