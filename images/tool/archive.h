// File: images/tool/archive.h
// -----------------------------------------------------------------------------
//
// The deterministic archive writer (libarchive): the same plan and contents give the same
// bytes, on any machine, at any time.
//
// What is fixed: entry order (the plan's, sorted by path), mtime (ArchiveOptions.mtime, from
// SOURCE_DATE_EPOCH or 0; atime/ctime/birthtime unset), uid/gid 0, uname/gname empty, inode
// numbers (the plan's), nlink (1; 2 for directories), device of the archive (0), modes (the
// plan's permission bits + the entry type). gzip output is written with libarchive's gzip
// `timestamp` option unset, so the gzip header holds no time (MTIME = 0) and no file name.
//
// Formats: `newc` cpio (the Linux initramfs format), ustar tar, and pax tar (libarchive's
// pax_restricted: pax extended headers only where ustar cannot hold a value, e.g. long
// paths). Entry types: directories, regular files, symlinks, character devices.
//
// Example:
//   ASSIGN_OR_RETURN(std::vector<ArchiveEntry> plan, PlanArchive(manifest));
//   ArchiveOptions opt{.format = ArchiveFormat::kCpioNewc, .gzip = true, .mtime = 0};
//   ASSIGN_OR_RETURN(std::string bytes, WriteArchive(plan, opt, ReadFile));
#ifndef KILN_IMAGES_TOOL_ARCHIVE_H_
#define KILN_IMAGES_TOOL_ARCHIVE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "images/tool/manifest.h"

namespace kiln::images {

// ArchiveFormat: the container format.
enum class ArchiveFormat { kCpioNewc, kTarUstar, kTarPax };

// ParseArchiveFormat(name): "cpio" / "newc" -> kCpioNewc, "ustar", "pax"; INVALID_ARGUMENT
// otherwise.
absl::StatusOr<ArchiveFormat> ParseArchiveFormat(absl::string_view name);

// ArchiveOptions: how to write. `mtime` is seconds since the epoch, applied to every entry.
struct ArchiveOptions {
  ArchiveFormat format = ArchiveFormat::kCpioNewc;
  bool gzip = false;
  int64_t mtime = 0;
};

// ContentReader: returns the bytes of a kFile entry's `source` (the real one is
// file_io.h's ReadFile; tests pass an in-memory map).
using ContentReader = std::function<absl::StatusOr<std::string>(const std::string& source)>;

// WriteArchive(plan, options, read): the archive bytes (gzip-compressed if options.gzip).
// REQUIRES: `plan` comes from PlanArchive (sorted, no kTree). Returns the reader's error for
// a file, INVALID_ARGUMENT for a kTree entry, a ustar path or link target too long for
// ustar (use pax), or a device number a format cannot hold; INTERNAL for a libarchive
// failure (with libarchive's message).
absl::StatusOr<std::string> WriteArchive(const std::vector<ArchiveEntry>& plan,
                                         const ArchiveOptions& options,
                                         const ContentReader& read);

// ListedEntry: one member of an existing archive, as read back by ListArchive.
struct ListedEntry {
  EntryType type = EntryType::kFile;
  std::string path;
  uint32_t mode = 0;  // permission bits
  int64_t uid = 0, gid = 0, mtime = 0;
  std::string uname, gname;
  uint64_t inode = 0;
  std::string target;         // symlinks
  uint32_t major = 0, minor = 0;  // character devices
  std::string content;        // regular files
};

// ListArchive(bytes): reads any archive libarchive understands (cpio, tar; raw or gzip) and
// returns its members in archive order. INVALID_ARGUMENT for data that is not an archive or
// holds an entry type other than dir/file/symlink/chardev; DATA_LOSS for a truncated one.
absl::StatusOr<std::vector<ListedEntry>> ListArchive(absl::string_view bytes);

// MtimeFromEnv(value): the archive mtime for a SOURCE_DATE_EPOCH value: 0 if `value` is
// empty, else its decimal seconds. INVALID_ARGUMENT if it is not a non-negative integer.
absl::StatusOr<int64_t> MtimeFromEnv(absl::string_view value);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_ARCHIVE_H_
