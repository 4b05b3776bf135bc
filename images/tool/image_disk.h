// File: images/tool/image_disk.h
// -----------------------------------------------------------------------------
//
// ImageToDisk(): an OCI image layout -> a deterministic ext4 root disk, the one path by which
// kiln turns an image into what a VM boots. It reads the image with the OCI library
// (images/oci/layout.h: index, manifest digest, blob sizes), unpacks its layers in manifest
// order with whiteouts into a fresh tree (unpack.h: config and every layer digest verified,
// hostile layers refused), and hands the tree to kiln's one disk tool,
// images/rootfs/mkext4.sh (BASE = the tree): `mkfs.ext4 -d` with fixed UUID, hash seed,
// label, E2FSPROGS_FAKE_TIME and a size computed from the tree, inode times normalized with
// debugfs, checked with `e2fsck -fn`. The same image and options give the same disk bytes.
//
// REQUIRES: root (owners, device nodes, security xattrs); mkfs.ext4, debugfs, e2fsck.
//
// Example:
//
//   DiskOptions o{.mkext4 = "images/rootfs/mkext4.sh", .mke2fs_conf = "images/rootfs/mke2fs.conf",
//                 .uuid = "6b696c6e-...", .label = "kiln-builder"};
//   o.unpack.device_dirs = {"dev"};
//   ASSIGN_OR_RETURN(DiskStats s, ImageToDisk("bazel-bin/images/builder", "", "out.ext4", o));
#ifndef KILN_IMAGES_TOOL_IMAGE_DISK_H_
#define KILN_IMAGES_TOOL_IMAGE_DISK_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "images/tool/unpack.h"

namespace kiln::images {

// DiskOptions: how the disk is made (the arguments of mkext4.sh, which documents them).
struct DiskOptions {
  std::string mkext4;        // path to images/rootfs/mkext4.sh
  std::string mke2fs_conf;   // path to images/rootfs/mke2fs.conf
  int64_t epoch = 1700000000;  // SOURCE_DATE_EPOCH: seconds
  std::string uuid;          // file system UUID, lower-case 8-4-4-4-12
  std::string hash_seed;     // directory hash seed UUID ("" = uuid)
  std::string label = "kiln-root";  // volume label, at most 16 bytes
  int64_t headroom_percent = 10;
  int64_t extra_mib = 16;
  std::string work_dir;      // where the tree is unpacked ("" = $TMPDIR, else /tmp); removed after
  UnpackOptions unpack;
};

// DiskStats: what was made and how long it took (milliseconds, wall clock).
struct DiskStats {
  std::string manifest_digest;  // the image's manifest digest
  UnpackStats unpack;
  int64_t unpack_ms = 0;        // verify + unpack the layers
  int64_t mkfs_ms = 0;          // mkext4.sh on the unpacked tree
};

// ImageToDisk(layout_dir, ref, out, options): writes the disk image to `out`. `ref` picks the
// manifest by its org.opencontainers.image.ref.name ("" = the layout's only manifest).
// Returns ReadImageLayout's and UnpackImage's errors (naming the layer and entry);
// InvalidArgument for bad options (uuid, label); Internal when mkext4.sh fails (its stderr is
// passed through).
absl::StatusOr<DiskStats> ImageToDisk(const std::string& layout_dir, absl::string_view ref,
                                      const std::string& out, const DiskOptions& options);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_IMAGE_DISK_H_
