// File: agent/runner/context_tar.h
// -----------------------------------------------------------------------------
//
// Safe extraction of a build context tar (validate-then-extract). The context comes from the
// host and is untrusted: a hostile tar must not write outside the destination, create device
// nodes, or exhaust the disk. Pass 1 reads every header (no data) and refuses, naming the
// entry:
//   - absolute paths, ".." components, empty/NUL names, paths longer than 4096 bytes;
//   - duplicate paths (a later entry would replace an earlier one, e.g. a dir by a symlink);
//   - symlinks whose target is absolute or longer than kMaxSymlinkTarget (1024) bytes, or that
//     resolve outside the root (resolved through the other symlinks of the archive, as the
//     kernel would, up to 40 expansions per path); resolving all of the archive's symlinks may
//     take at most limits.max_resolve_steps path components in total (a few hostile symlinks
//     could otherwise make each resolution expand 40 times 500 components);
//   - hard links whose target is not an earlier regular-file entry of the archive;
//   - character/block devices, FIFOs, sockets and any other non file/dir/link type;
//   - entries larger than limits.max_entry_bytes, more than limits.max_entries entries, or a
//     sum larger than limits.max_total_bytes. These caps are lowered to what the file system
//     of dest_dir can take (statvfs: the bytes and inodes free to unprivileged users, file
//     sizes counted in whole blocks), so that a context that cannot fit the guest's tmpfs is
//     refused before a byte is written instead of filling the guest's RAM.
// Pass 2 extracts with libarchive's disk writer (ARCHIVE_EXTRACT_SECURE_SYMLINKS |
// SECURE_NODOTDOT, no owner, no setuid/setgid bits, no ACLs/xattrs/fflags), each path prefixed
// with the destination's real path. gzip/bzip2/xz/zstd-compressed tars are accepted.
//
// Example:
//
//   ASSIGN_OR_RETURN(ContextTarStats stats,
//                    ExtractContextTar("/run/job/context.tar", "/var/lib/kiln/ctx", {}));
#ifndef KILN_AGENT_RUNNER_CONTEXT_TAR_H_
#define KILN_AGENT_RUNNER_CONTEXT_TAR_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::agent::runner {

// kMaxSymlinkTarget: the longest symlink target a context may hold, bytes.
inline constexpr size_t kMaxSymlinkTarget = 1024;

// ContextTarLimits: bounds of one context tar (ExtractContextTar lowers the first three to the
// free space of the destination's file system).
struct ContextTarLimits {
  int64_t max_entry_bytes = int64_t{1} << 30;   // 1 GiB per file
  int64_t max_total_bytes = int64_t{4} << 30;   // 4 GiB of file data
  int64_t max_entries = 200000;
  int64_t max_resolve_steps = int64_t{1} << 22;  // path components visited, all symlinks
};

// TarEntryType: the entry kinds a context may hold, and kOther for everything refused.
enum class TarEntryType { kFile, kDir, kSymlink, kHardlink, kOther };

// TarEntryInfo: one tar header as the validator sees it.
struct TarEntryInfo {
  std::string path;         // as stored in the archive
  TarEntryType type = TarEntryType::kOther;
  std::string type_name;    // for messages: "file", "directory", "character device", ...
  int64_t size = 0;         // bytes of data (files)
  std::string link_target;  // symlink target or hard-link target path
};

// ContextTarStats: what ExtractContextTar wrote.
struct ContextTarStats {
  int64_t entries = 0;
  int64_t file_bytes = 0;
};

// NormalizeEntryPath(path): "./a//b/" -> "a/b". InvalidArgument when the path is empty,
// absolute, has a ".." component or a NUL, or is longer than 4096 bytes. "." alone -> "".
absl::StatusOr<std::string> NormalizeEntryPath(absl::string_view path);

// CheckTarEntry(entry, limits): the per-entry checks of pass 1 (type, path, size). Returns
// InvalidArgument (bad path/type) or ResourceExhausted (size), naming the entry.
absl::Status CheckTarEntry(const TarEntryInfo& entry, const ContextTarLimits& limits);

// ResolveInArchive(path, symlinks, steps_left): resolves normalized `path` against the
// archive's own symlinks (normalized link path -> target), as path resolution would inside the
// extracted root. Returns the resolved normalized path, or PermissionDenied if resolution
// leaves the root (".." above it, an absolute target), InvalidArgument after 40 expansions (a
// loop), ResourceExhausted when it visits more path components than *steps_left (which is
// decremented by the components visited; nullptr: no bound).
absl::StatusOr<std::string> ResolveInArchive(absl::string_view path,
                                             const std::map<std::string, std::string>& symlinks,
                                             int64_t* steps_left = nullptr);

// CapToFreeSpace(limits, dir): `limits` with max_entry_bytes / max_total_bytes lowered to the
// bytes free for unprivileged users on dir's file system and max_entries to its free inodes
// (when it counts them). The errno-derived status when statvfs fails.
absl::StatusOr<ContextTarLimits> CapToFreeSpace(const ContextTarLimits& limits,
                                                const std::string& dir);

// ExtractContextTar(tar_path, dest_dir, limits): validates the whole tar, then extracts it
// into dest_dir (which must exist). Returns InvalidArgument / PermissionDenied /
// ResourceExhausted naming the first bad entry (nothing is extracted then), DataLoss for a
// corrupt archive, or the errno-derived code of a failed file operation.
absl::StatusOr<ContextTarStats> ExtractContextTar(const std::string& tar_path,
                                                  const std::string& dest_dir,
                                                  const ContextTarLimits& limits);

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_CONTEXT_TAR_H_
