// File: agent/work_dir.cc
#include "agent/work_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent {
namespace {

constexpr int kMaxDepth = 4096;  // a path of 4096 bytes has at most 2048 components

// Removal state: the file system we stay on, what could not be removed.
struct Remover {
  dev_t dev = 0;
  std::vector<std::string> mounts;  // mount points left in place
  absl::Status error;               // the first other failure
  void Fail(absl::Status s) {
    if (error.ok()) error = std::move(s);
  }
};

// IsMountRoot(dirfd, name, st): whether dirfd/name is on another file system than the
// remover's or is the root of a mount (a bind mount of the same file system).
bool IsMountPoint(int dirfd, const char* name, const struct stat& st, dev_t dev) {
  if (st.st_dev != dev) return true;
#ifdef STATX_ATTR_MOUNT_ROOT
  struct statx sx;
  if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &sx) == 0 &&
      (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
      (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
    return true;
  }
#endif
  return false;
}

// RemoveEntries(dirfd, path, r, depth, skip_marker): removes the entries of the open dir
// `dirfd` (named `path` in messages). Takes ownership of dirfd.
void RemoveEntries(int dirfd, const std::string& path, Remover& r, int depth, bool skip_marker);

// RemoveAt(dirfd, name, path, r, depth): removes dirfd/name (named `path`).
void RemoveAt(int dirfd, const char* name, const std::string& path, Remover& r, int depth) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) r.Fail(PosixError(errno, "stat", path));
    return;
  }
  if (IsMountPoint(dirfd, name, st, r.dev)) {
    r.mounts.push_back(path);
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) r.Fail(PosixError(errno, "unlink", path));
    return;
  }
  if (depth >= kMaxDepth) {
    r.Fail(absl::FailedPreconditionError(absl::StrCat(path, ": deeper than ", kMaxDepth)));
    return;
  }
  const int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    r.Fail(PosixError(errno, "open", path));
    return;
  }
  const size_t mounts_before = r.mounts.size();
  RemoveEntries(fd, path, r, depth + 1, /*skip_marker=*/false);
  if (r.mounts.size() != mounts_before) return;  // holds a mount point: stays
  if (unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    r.Fail(PosixError(errno, "rmdir", path));
  }
}

void RemoveEntries(int dirfd, const std::string& path, Remover& r, int depth, bool skip_marker) {
  DIR* d = fdopendir(dirfd);
  if (d == nullptr) {
    r.Fail(PosixError(errno, "opendir", path));
    close(dirfd);
    return;
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == ".." || (skip_marker && n == kWorkDirMarker)) continue;
    names.push_back(n);
  }
  for (const std::string& n : names) RemoveAt(dirfd, n.c_str(), path + "/" + n, r, depth);
  closedir(d);  // closes dirfd
}

absl::Status Result(const Remover& r) {
  if (!r.error.ok()) return r.error;
  if (!r.mounts.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("not removed (mount points, or dirs holding one): ",
                     absl::StrJoin(r.mounts, ", ")));
  }
  return absl::OkStatus();
}

bool HasMarker(const std::string& dir) {
  struct stat st;
  return lstat((dir + "/" + kWorkDirMarker).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::Status WriteMarker(const std::string& dir) {
  const std::string path = dir + "/" + kWorkDirMarker;
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError(errno, "create", path);
  static constexpr char kText[] = "kiln-agent work dir: cleared by the agent before each job\n";
  (void)!write(fd, kText, sizeof(kText) - 1);
  close(fd);
  return absl::OkStatus();
}

}  // namespace

absl::Status PrepareWorkDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) == 0) return WriteMarker(dir);
  if (errno != EEXIST) return PosixError(errno, "mkdir", dir);
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) return PosixError(errno, "stat", dir);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("work dir ", dir, " exists but is not a directory (symlinks are refused)"));
  }
  if (HasMarker(dir)) return absl::OkStatus();
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return PosixError(errno, "opendir", dir);
  bool empty = true;
  while (struct dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") empty = false;
  }
  closedir(d);
  if (!empty) {
    return absl::FailedPreconditionError(absl::StrCat(
        "work dir ", dir, " holds files but no marker file ", kWorkDirMarker,
        ": the agent did not create it and will not clear it; use an empty or new dir"));
  }
  return WriteMarker(dir);
}

absl::Status ClearWorkDir(const std::string& dir) {
  if (!HasMarker(dir)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "work dir ", dir, " has no marker file ", kWorkDirMarker, ": not clearing it"));
  }
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", dir);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    return PosixError(e, "stat", dir);
  }
  Remover r;
  r.dev = st.st_dev;
  RemoveEntries(fd, dir, r, 0, /*skip_marker=*/true);
  return Result(r);
}

absl::Status RemoveTree(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const int fd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? absl::OkStatus() : PosixError(errno, "open", parent);
  struct stat st;
  Remover r;
  if (fstat(fd, &st) == 0) r.dev = st.st_dev;
  RemoveAt(fd, name.c_str(), path, r, 0);
  close(fd);
  return Result(r);
}

}  // namespace kiln::agent
