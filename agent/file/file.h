// File: agent/file/file.h
// -----------------------------------------------------------------------------
//
// kiln's file helpers: read a whole file, write one atomically. One place for what the agent,
// init, the image tools, kilnctl and the benchmarks each wrote for themselves. Plain POSIX
// (open/read/write/fsync/rename), no other dependency than absl: links into the static agent
// and init as into host tools.
//
// Where a test needs a fake file system, the code under test takes an interface (LevelDB's
// `Env` idea: init's `Sys`, the rootless runner's `RootlessOps`) whose real implementation
// calls these functions; the functions themselves have no global state to swap.
//
// Example:
//
//   ASSIGN_OR_RETURN(std::string index, file::ReadFile(dir + "/index.json"));
//   RETURN_IF_ERROR(file::WriteFileAtomically(dir + "/index.json", updated));
#ifndef KILN_AGENT_FILE_FILE_H_
#define KILN_AGENT_FILE_FILE_H_

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::file {

// ReadFile(path): the whole contents of `path`, read until end of file (so /proc and /sys
// files, whose size says 0, read fully). Errors: the errno of open/read as a status naming
// the path (NotFound, PermissionDenied, FailedPrecondition for a directory (EISDIR), ...).
absl::StatusOr<std::string> ReadFile(absl::string_view path);

// ReadFile(path, max_bytes): the same, for a file that must not be larger than `max_bytes`
// (reads at most max_bytes + 1 bytes). OutOfRange "<path> is larger than <max_bytes> bytes"
// for a larger file.
absl::StatusOr<std::string> ReadFile(absl::string_view path, size_t max_bytes);

// ReadFileOrEmpty(path): ReadFile(path), or "" on any error: for best-effort reads whose
// caller treats a missing file as empty (a process that has exited, an optional /sys entry).
std::string ReadFileOrEmpty(absl::string_view path);

// WriteFileAtomically(path, data, mode): writes `data` to a temporary file in the same
// directory (".<name>.tmp.<pid>", created with `mode`), fsyncs it, renames it over `path` and
// fsyncs the directory, so a reader sees the old file or the new one, never a part, and the
// new one survives a crash once this returns. On error the temporary file is removed and the
// status names the failed step and path (errno codes: NotFound for a missing directory, ...).
absl::Status WriteFileAtomically(absl::string_view path, absl::string_view data,
                                 mode_t mode = 0644);

}  // namespace kiln::file

#endif  // KILN_AGENT_FILE_FILE_H_
