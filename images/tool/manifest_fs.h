// File: images/tool/manifest_fs.h
// -----------------------------------------------------------------------------
//
// ExpandTrees: the file-system half of manifest handling (manifest.h is pure). A `tree`
// entry names a host directory, typically a Bazel tree artifact; it becomes one `dir` entry
// per subdirectory and one `file` entry per file, below the tree's guest path.
//
// Modes are fixed so that the host's umask and Bazel's output modes (r-xr-xr-x for every
// output) do not leak into images: directories 0755, files 0644 (put executables in their
// own `file` entries with mode 0755). Symlinks
// are followed (Bazel's sandbox presents inputs as symlinks), so a tree cannot carry a
// symlink; write a `symlink` entry instead.
//
// Example:
//   ASSIGN_OR_RETURN(Manifest expanded, ExpandTrees(manifest));
#ifndef KILN_IMAGES_TOOL_MANIFEST_FS_H_
#define KILN_IMAGES_TOOL_MANIFEST_FS_H_

#include "absl/status/statusor.h"
#include "images/tool/manifest.h"

namespace kiln::images {

// ExpandTrees(manifest): `manifest` with every kTree entry replaced by the directories and
// files under its source (sorted by name; entries without trees are copied unchanged).
// Returns NOT_FOUND / PERMISSION_DENIED ... from errno, FAILED_PRECONDITION if a tree source
// is not a directory or holds something other than directories and regular files.
absl::StatusOr<Manifest> ExpandTrees(const Manifest& manifest);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_MANIFEST_FS_H_
