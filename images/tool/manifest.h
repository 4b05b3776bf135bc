// File: images/tool/manifest.h
// -----------------------------------------------------------------------------
//
// The archive manifest: pure data describing what goes into an image archive (initrd cpio,
// tar layer), and the plan derived from it. The Starlark rules of images/defs.bzl write the
// manifest as JSON; kiln-image reads it, expands `tree` entries from the host file system
// (ExpandTrees, in manifest_fs.h), plans and writes the archive (archive.h).
//
// JSON format (one object; unknown keys are errors):
//
//   {"entries": [
//     {"type": "file",    "path": "init",        "mode": "0755", "source": "bazel-out/.../init"},
//     {"type": "dir",     "path": "etc/kiln",    "mode": "0755"},
//     {"type": "symlink", "path": "bin/sh",      "target": "busybox"},
//     {"type": "chardev", "path": "dev/console", "mode": "0600", "major": 5, "minor": 1},
//     {"type": "tree",    "path": "",            "source": "bazel-out/.../modules"}
//   ]}
//
// Guest paths are relative to the archive root ("init", never "/init"), with no "." or ".."
// component, no empty component and no NUL; a `tree` entry's path may be "" (the root): every
// file under `source` is added below it. Modes are octal strings of the permission bits
// (07777 at most); defaults: dir 0755, file 0644, chardev 0600, symlink 0777.
//
// Example:
//   ASSIGN_OR_RETURN(Manifest m, ParseManifestJson(text));
//   ASSIGN_OR_RETURN(m, ExpandTrees(m));            // manifest_fs.h, reads the file system
//   ASSIGN_OR_RETURN(std::vector<ArchiveEntry> plan, PlanArchive(m));
#ifndef KILN_IMAGES_TOOL_MANIFEST_H_
#define KILN_IMAGES_TOOL_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::images {

// EntryType: the kind of a manifest entry. kTree is expanded into kDir/kFile entries before
// planning.
enum class EntryType { kDir, kFile, kSymlink, kCharDev, kTree };

// EntryTypeName(type): "dir", "file", "symlink", "chardev" or "tree".
const char* EntryTypeName(EntryType type);

// ManifestEntry: one row of the manifest.
struct ManifestEntry {
  EntryType type = EntryType::kFile;
  std::string path;     // guest path, relative to the archive root
  uint32_t mode = 0;    // permission bits (<= 07777); the file type comes from `type`
  std::string source;   // kFile: host file to copy; kTree: host directory to expand
  std::string target;   // kSymlink: link target (may be absolute: it is resolved in the guest)
  uint32_t major = 0;   // kCharDev: device numbers
  uint32_t minor = 0;
};

// Manifest: the entries, in any order.
struct Manifest {
  std::vector<ManifestEntry> entries;
};

// ArchiveEntry: one planned archive member. Plans are sorted by path (bytewise), so parents
// precede children, and carry fixed inode numbers (1, 2, ... in that order).
struct ArchiveEntry {
  EntryType type = EntryType::kFile;  // never kTree
  std::string path;
  uint32_t mode = 0;
  std::string source;   // kFile: host path of the content
  std::string target;   // kSymlink
  uint32_t major = 0;   // kCharDev
  uint32_t minor = 0;
  uint64_t inode = 0;
};

// CheckGuestPath(path, allow_root): OK if `path` is a clean relative guest path (see the file
// comment); `allow_root` also accepts "" (only for `tree` entries). INVALID_ARGUMENT names the
// problem: absolute path, ".." component, "." or empty component, NUL byte, empty path.
absl::Status CheckGuestPath(absl::string_view path, bool allow_root = false);

// ParseManifestJson(text): parses the JSON format above and checks every entry (paths,
// modes, required fields per type). INVALID_ARGUMENT with the entry index on any error.
absl::StatusOr<Manifest> ParseManifestJson(absl::string_view text);

// PlanArchive(manifest): the archive plan: adds missing parent directories (mode 0755),
// sorts by path and numbers inodes. REQUIRES: no kTree entries (call ExpandTrees first).
// Returns ALREADY_EXISTS for two entries with the same path (an explicit `dir` may repeat
// an implied parent, but two explicit entries may not), FAILED_PRECONDITION if an entry
// lies below a non-directory (e.g. "init/x" next to file "init"), INVALID_ARGUMENT for a bad
// path or a leftover kTree entry.
absl::StatusOr<std::vector<ArchiveEntry>> PlanArchive(const Manifest& manifest);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_MANIFEST_H_
