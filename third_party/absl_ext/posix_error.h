// File: third_party/absl_ext/posix_error.h
// -----------------------------------------------------------------------------
//
// PosixError: the one place where an errno becomes an absl::Status. Built on
// absl::ErrnoToStatus (which picks the canonical code: ENOENT -> NotFound, EEXIST ->
// AlreadyExists, EACCES -> PermissionDenied, ...), with a message that names the operation and
// its argument, as LevelDB's util/env_posix.cc PosixError does.
//
//   if (mount(src, dst, "cgroup2", flags, nullptr) != 0)
//     return PosixError(errno, "mount cgroup2", dst);
//   // -> NOT_FOUND: mount cgroup2 /sys/fs/cgroup: No such file or directory [errno 2]
#ifndef KILN_THIRD_PARTY_ABSL_EXT_POSIX_ERROR_H_
#define KILN_THIRD_PARTY_ABSL_EXT_POSIX_ERROR_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kiln {

// PosixError(errnum, op, arg): Status with the canonical code for `errnum` and the message
// "<op> <arg>: <strerror> [errno N]" ("<op>: ..." when `arg` is empty).
// REQUIRES: errnum != 0.
inline absl::Status PosixError(int errnum, absl::string_view op, absl::string_view arg = "") {
  std::string context = arg.empty() ? std::string(op) : absl::StrCat(op, " ", arg);
  absl::Status s = absl::ErrnoToStatus(errnum, context);
  return absl::Status(s.code(), absl::StrCat(s.message(), " [errno ", errnum, "]"));
}

}  // namespace kiln

#endif  // KILN_THIRD_PARTY_ABSL_EXT_POSIX_ERROR_H_
