// File: images/tool/file_io.h
// -----------------------------------------------------------------------------
//
// The thin file-system executor of kiln-image: whole-file reads and writes, with errors as
// absl::Status (kiln::PosixError: the operation, the path and errno). Everything else in the
// tool is pure data in, bytes out.
//
// Example:
//   ASSIGN_OR_RETURN(std::string data, ReadFile("in.bin"));
//   RETURN_IF_ERROR(WriteFile("out.bin", data, 0644));
#ifndef KILN_IMAGES_TOOL_FILE_IO_H_
#define KILN_IMAGES_TOOL_FILE_IO_H_

#include <string>
#include <sys/types.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::images {

// ReadFile(path): the whole content of `path` (follows symlinks). NOT_FOUND, PERMISSION_DENIED,
// ... from errno on failure.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// WriteFile(path, data, mode): creates or truncates `path` (permission bits `mode`, subject to
// the umask) and writes `data` fully. Errors from errno (open, write, close).
absl::Status WriteFile(const std::string& path, absl::string_view data, mode_t mode = 0644);

// MakeDirs(path): mkdir -p `path` (mode 0755). Errors from errno.
absl::Status MakeDirs(const std::string& path);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_FILE_IO_H_
