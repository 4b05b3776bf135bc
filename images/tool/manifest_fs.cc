// File: images/tool/manifest_fs.cc (see manifest_fs.h)
#include "images/tool/manifest_fs.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::images {
namespace {

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return kiln::PosixError(errno, "opendir", dir);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* de = readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  int e = errno;
  closedir(d);
  if (e != 0) return kiln::PosixError(e, "readdir", dir);
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status Walk(const std::string& host, const std::string& guest, Manifest& out) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(host));
  for (const std::string& n : names) {
    std::string h = absl::StrCat(host, "/", n);
    std::string g = guest.empty() ? n : absl::StrCat(guest, "/", n);
    struct stat st;
    if (stat(h.c_str(), &st) != 0) return kiln::PosixError(errno, "stat", h);
    ManifestEntry e;
    e.path = g;
    if (S_ISDIR(st.st_mode)) {
      e.type = EntryType::kDir;
      e.mode = 0755;
      out.entries.push_back(e);
      RETURN_IF_ERROR(Walk(h, g, out));
    } else if (S_ISREG(st.st_mode)) {
      e.type = EntryType::kFile;
      e.mode = 0644;  // not from st_mode: Bazel marks its outputs r-xr-xr-x
      e.source = h;
      out.entries.push_back(e);
    } else {
      return absl::FailedPreconditionError(
          absl::StrCat("tree: ", h, " is neither a directory nor a regular file"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Manifest> ExpandTrees(const Manifest& manifest) {
  Manifest out;
  for (const ManifestEntry& e : manifest.entries) {
    if (e.type != EntryType::kTree) {
      out.entries.push_back(e);
      continue;
    }
    struct stat st;
    if (stat(e.source.c_str(), &st) != 0) return kiln::PosixError(errno, "stat", e.source);
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("tree source ", e.source, " is not a directory"));
    }
    RETURN_IF_ERROR(Walk(e.source, e.path, out));
  }
  return out;
}

}  // namespace kiln::images
