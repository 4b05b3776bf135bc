// File: images/tool/layer_testing.h
// -----------------------------------------------------------------------------
//
// Test helpers (testonly): real tar layers written by libarchive from a list of entries, and
// an OCI image layout made of them with the OCI library, for unpack_test and image_disk_test.
//
// Example:
//
//   WriteTar("l.tar.gz", {{"etc", 'd', "", 0755}, {"etc/.wh.old", 'f', ""}}, /*gzip=*/true);
//   ASSIGN_OR_RETURN(oci::Manifest m, WriteTestImage("layout", "scratch", {lower, upper}));
#ifndef KILN_IMAGES_TOOL_LAYER_TESTING_H_
#define KILN_IMAGES_TOOL_LAYER_TESTING_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "images/oci/image.h"

namespace kiln::images::testing {

// E: one tar entry. type: 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'c' char device,
// 'b' block device, 'p' FIFO. mtime 1700000000.
struct E {
  std::string path;
  char type = 'f';
  std::string data;  // file content, or link target
  int mode = 0644;
  int64_t uid = 0, gid = 0;
  std::map<std::string, std::string> xattrs;
  int major = 0, minor = 0;
};

// ReadAll(path): the file's bytes ("" when unreadable).
std::string ReadAll(const std::string& path);

// WriteTar(path, entries, gzip): a pax tar layer (gzip-compressed when `gzip`) at `path`;
// returns its descriptor (layer media type, digest, size). Fails the current test on a
// libarchive error.
oci::Descriptor WriteTar(const std::string& path, const std::vector<E>& entries, bool gzip);

// WriteTestImage(layout_dir, scratch_dir, layers): an OCI image layout at `layout_dir` whose
// manifest lists one gzip layer per element of `layers` (in order) and a config whose
// rootfs.diff_ids are the layers' uncompressed digests (or `*diff_ids`, when given: a config
// that does not describe its layers); the layer tars are first written to `scratch_dir`.
// Returns the manifest.
absl::StatusOr<oci::Manifest> WriteTestImage(const std::string& layout_dir,
                                             const std::string& scratch_dir,
                                             const std::vector<std::vector<E>>& layers,
                                             const std::vector<std::string>* diff_ids = nullptr);

}  // namespace kiln::images::testing

#endif  // KILN_IMAGES_TOOL_LAYER_TESTING_H_
