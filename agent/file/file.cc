#include "agent/file/file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::file {
namespace {

// ReadUpTo: reads `fd` to end of file or until `limit` bytes, appending to `out`.
absl::Status ReadUpTo(int fd, const std::string& path, size_t limit, std::string* out) {
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    out->reserve(std::min(limit, static_cast<size_t>(st.st_size)));
  }
  char buf[64 * 1024];
  while (out->size() < limit) {
    ssize_t n = read(fd, buf, std::min(sizeof(buf), limit - out->size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError(errno, "read", path);
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Read(absl::string_view path_view, size_t limit) {
  const std::string path(path_view);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  std::string out;
  absl::Status s = ReadUpTo(fd, path, limit, &out);
  close(fd);
  if (!s.ok()) return s;
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadFile(absl::string_view path) {
  return Read(path, std::numeric_limits<size_t>::max());
}

absl::StatusOr<std::string> ReadFile(absl::string_view path, size_t max_bytes) {
  const size_t limit =
      max_bytes == std::numeric_limits<size_t>::max() ? max_bytes : max_bytes + 1;
  absl::StatusOr<std::string> text = Read(path, limit);
  if (text.ok() && text->size() > max_bytes) {
    return absl::OutOfRangeError(absl::StrCat(path, " is larger than ", max_bytes, " bytes"));
  }
  return text;
}

std::string ReadFileOrEmpty(absl::string_view path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  return text.ok() ? *std::move(text) : std::string();
}

absl::Status WriteFileAtomically(absl::string_view path_view, absl::string_view data,
                                 mode_t mode) {
  const std::string path(path_view);
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::string tmp = absl::StrCat(dir, "/.", name, ".tmp.", getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return PosixError(errno, "create", tmp);
  auto fail = [&](absl::string_view step, const std::string& what) {
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    return PosixError(e, step, what);
  };
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write", tmp);
    data.remove_prefix(static_cast<size_t>(n));
  }
  // open() applied the umask; the caller asked for `mode`.
  if (fchmod(fd, mode) != 0) return fail("chmod", tmp);
  if (fsync(fd) != 0) return fail("fsync", tmp);
  const int closed = close(fd);
  fd = -1;
  if (closed != 0) return fail("close", tmp);
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail("rename", path);
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return PosixError(errno, "open", dir);
  const int synced = fsync(dfd);
  const int e = errno;
  close(dfd);
  if (synced != 0) return PosixError(e, "fsync", dir);
  return absl::OkStatus();
}

}  // namespace kiln::file
