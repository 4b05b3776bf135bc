#include "agent/runner/context_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <limits.h>
#include <stdlib.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {
namespace {

constexpr size_t kMaxPathBytes = 4096;
constexpr int kMaxSymlinkExpansions = 40;

struct ReadArchiveDeleter {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
struct WriteArchiveDeleter {
  void operator()(struct archive* a) const { archive_write_free(a); }
};
using ReadArchive = std::unique_ptr<struct archive, ReadArchiveDeleter>;
using WriteArchive = std::unique_ptr<struct archive, WriteArchiveDeleter>;

std::string Quote(absl::string_view s) { return absl::StrCat("\"", absl::CHexEscape(s), "\""); }

absl::StatusOr<ReadArchive> OpenTar(const std::string& path) {
  ReadArchive a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_support_filter_all(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 64 * 1024) != ARCHIVE_OK) {
    int e = archive_errno(a.get());
    if (e > 0 && e != EILSEQ)  // EILSEQ: libarchive's ARCHIVE_ERRNO_FILE_FORMAT
      return PosixError(e, "open context tar", path);
    return absl::DataLossError(
        absl::StrCat("context tar ", path, ": ", archive_error_string(a.get())));
  }
  return a;
}

TarEntryInfo Describe(struct archive_entry* e) {
  TarEntryInfo info;
  const char* p = archive_entry_pathname(e);
  info.path = p ? p : "";
  info.size = archive_entry_size(e);
  if (const char* hl = archive_entry_hardlink(e); hl != nullptr) {
    info.type = TarEntryType::kHardlink;
    info.type_name = "hard link";
    info.link_target = hl;
    return info;
  }
  switch (archive_entry_filetype(e)) {
    case AE_IFREG:
      info.type = TarEntryType::kFile;
      info.type_name = "file";
      break;
    case AE_IFDIR:
      info.type = TarEntryType::kDir;
      info.type_name = "directory";
      break;
    case AE_IFLNK:
      info.type = TarEntryType::kSymlink;
      info.type_name = "symlink";
      info.link_target = archive_entry_symlink(e) ? archive_entry_symlink(e) : "";
      break;
    case AE_IFCHR:
      info.type_name = "character device";
      break;
    case AE_IFBLK:
      info.type_name = "block device";
      break;
    case AE_IFIFO:
      info.type_name = "FIFO";
      break;
    case AE_IFSOCK:
      info.type_name = "socket";
      break;
    default:
      info.type_name = "unknown entry type";
      break;
  }
  return info;
}

}  // namespace

absl::StatusOr<std::string> NormalizeEntryPath(absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("context tar entry has an empty name");
  if (path.size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(absl::StrCat("context tar entry ", Quote(path.substr(0, 80)),
                                                   "... is longer than 4096 bytes"));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("context tar entry ", Quote(path), " contains a NUL byte"));
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("context tar entry ", Quote(path), " has an absolute path"));
  }
  std::vector<absl::string_view> kept;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("context tar entry ", Quote(path), " has a \"..\" component"));
    }
    kept.push_back(part);
  }
  return absl::StrJoin(kept, "/");
}

absl::Status CheckTarEntry(const TarEntryInfo& entry, const ContextTarLimits& limits) {
  absl::StatusOr<std::string> norm = NormalizeEntryPath(entry.path);
  if (!norm.ok()) return norm.status();
  if (entry.type == TarEntryType::kOther) {
    return absl::InvalidArgumentError(absl::StrCat("context tar entry ", Quote(entry.path),
                                                   " is a ", entry.type_name,
                                                   ": only files, directories and links allowed"));
  }
  if (entry.size < 0 || entry.size > limits.max_entry_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "context tar entry ", Quote(entry.path), " is ", entry.size, " bytes (limit ",
        limits.max_entry_bytes, ", at most the free space where the context is extracted)"));
  }
  if (entry.type == TarEntryType::kSymlink) {
    if (entry.link_target.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("context tar symlink ", Quote(entry.path), " has an empty target"));
    }
    if (entry.link_target.size() > kMaxSymlinkTarget) {
      return absl::InvalidArgumentError(absl::StrCat(
          "context tar symlink ", Quote(entry.path), " has a target of ",
          entry.link_target.size(), " bytes (limit ", kMaxSymlinkTarget, ")"));
    }
    if (entry.link_target.front() == '/') {
      return absl::PermissionDeniedError(
          absl::StrCat("context tar symlink ", Quote(entry.path), " -> ",
                       Quote(entry.link_target), " has an absolute target (escapes the context)"));
    }
  }
  if (entry.type == TarEntryType::kHardlink) {
    absl::StatusOr<std::string> t = NormalizeEntryPath(entry.link_target);
    if (!t.ok()) {
      return absl::PermissionDeniedError(absl::StrCat("context tar hard link ", Quote(entry.path),
                                                      " -> ", Quote(entry.link_target),
                                                      " escapes the context"));
    }
  }
  if (norm->empty() && entry.type != TarEntryType::kDir) {
    return absl::InvalidArgumentError(
        absl::StrCat("context tar entry ", Quote(entry.path), " names the root but is a ",
                     entry.type_name));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveInArchive(absl::string_view path,
                                             const std::map<std::string, std::string>& symlinks,
                                             int64_t* steps_left) {
  std::deque<std::string> todo;
  for (absl::string_view p : absl::StrSplit(path, '/')) todo.emplace_back(p);
  std::string joined;          // the components resolved so far, "a/b/c"
  std::vector<size_t> starts;  // where each component of `joined` starts
  int expansions = 0;
  while (!todo.empty()) {
    if (steps_left != nullptr && --*steps_left < 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          Quote(path), ": resolving the archive's symlinks takes too many steps"));
    }
    std::string comp = std::move(todo.front());
    todo.pop_front();
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") {
      if (starts.empty()) {
        return absl::PermissionDeniedError(
            absl::StrCat(Quote(path), " resolves above the context root"));
      }
      joined.resize(starts.back() == 0 ? 0 : starts.back() - 1);
      starts.pop_back();
      continue;
    }
    starts.push_back(joined.empty() ? 0 : joined.size() + 1);
    if (!joined.empty()) joined += '/';
    joined += comp;
    auto it = symlinks.find(joined);
    if (it == symlinks.end()) continue;
    if (++expansions > kMaxSymlinkExpansions) {
      return absl::InvalidArgumentError(
          absl::StrCat(Quote(path), ": too many levels of symbolic links"));
    }
    if (!it->second.empty() && it->second.front() == '/') {
      return absl::PermissionDeniedError(absl::StrCat(Quote(path), " goes through symlink ",
                                                      Quote(it->first),
                                                      " with an absolute target"));
    }
    joined.resize(starts.back() == 0 ? 0 : starts.back() - 1);
    starts.pop_back();
    std::vector<std::string> parts = absl::StrSplit(it->second, '/');
    todo.insert(todo.begin(), parts.begin(), parts.end());
  }
  return joined;
}

absl::StatusOr<ContextTarLimits> CapToFreeSpace(const ContextTarLimits& limits,
                                                const std::string& dir) {
  struct statvfs vfs;
  if (statvfs(dir.c_str(), &vfs) != 0) return PosixError(errno, "statvfs", dir);
  ContextTarLimits capped = limits;
  const int64_t free_bytes = static_cast<int64_t>(
      std::min<unsigned __int128>(static_cast<unsigned __int128>(vfs.f_bavail) * vfs.f_frsize,
                                  INT64_MAX));
  capped.max_entry_bytes = std::min(capped.max_entry_bytes, free_bytes);
  capped.max_total_bytes = std::min(capped.max_total_bytes, free_bytes);
  if (vfs.f_files != 0) {  // file systems without an inode count report 0
    capped.max_entries =
        std::min<int64_t>(capped.max_entries, static_cast<int64_t>(std::min<uint64_t>(
                                                  vfs.f_favail, INT64_MAX)));
  }
  return capped;
}

absl::StatusOr<ContextTarStats> ExtractContextTar(const std::string& tar_path,
                                                  const std::string& dest_dir,
                                                  const ContextTarLimits& requested) {
  absl::StatusOr<ContextTarLimits> capped = CapToFreeSpace(requested, dest_dir);
  if (!capped.ok()) return capped.status();
  const ContextTarLimits& limits = *capped;
  ContextTarLimits unlimited;
  unlimited.max_total_bytes = INT64_MAX;
  const int64_t free_bytes = CapToFreeSpace(unlimited, dest_dir)->max_total_bytes;
  struct statvfs vfs;
  const int64_t block = statvfs(dest_dir.c_str(), &vfs) == 0 && vfs.f_frsize > 0
                            ? static_cast<int64_t>(vfs.f_frsize)
                            : 4096;
  int64_t blocks_bytes = 0;  // file data in whole blocks of dest_dir's file system
  // Pass 1: headers only.
  std::map<std::string, std::string> symlinks;             // normalized path -> target
  std::map<std::string, TarEntryType> entries;             // normalized path -> type
  ContextTarStats stats;
  {
    absl::StatusOr<ReadArchive> a = OpenTar(tar_path);
    if (!a.ok()) return a.status();
    struct archive_entry* e = nullptr;
    while (true) {
      int r = archive_read_next_header(a->get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        return absl::DataLossError(absl::StrCat("context tar ", tar_path, " is corrupt after ",
                                                stats.entries, " entries: ",
                                                archive_error_string(a->get())));
      }
      TarEntryInfo info = Describe(e);
      if (absl::Status s = CheckTarEntry(info, limits); !s.ok()) return s;
      if (++stats.entries > limits.max_entries) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "context tar has more than ", limits.max_entries, " entries"));
      }
      if (info.type == TarEntryType::kFile) {
        stats.file_bytes += info.size;
        blocks_bytes += (info.size + block - 1) / block * block;
      }
      if (stats.file_bytes > limits.max_total_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "context tar holds more than ", limits.max_total_bytes, " bytes (at entry ",
            Quote(info.path), ")",
            limits.max_total_bytes < requested.max_total_bytes
                ? absl::StrCat(": the free space of ", dest_dir, "'s file system")
                : ""));
      }
      if (blocks_bytes > free_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "context tar needs more than the ", free_bytes, " bytes free in ", dest_dir,
            " (files counted in whole ", block, "-byte blocks; at entry ", Quote(info.path),
            ")"));
      }
      std::string norm = *NormalizeEntryPath(info.path);
      if (norm.empty()) continue;  // "./" root entry
      if (!entries.emplace(norm, info.type).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("context tar entry ", Quote(info.path), " appears more than once"));
      }
      if (info.type == TarEntryType::kSymlink) symlinks[norm] = info.link_target;
      if (info.type == TarEntryType::kHardlink) {
        std::string target = *NormalizeEntryPath(info.link_target);
        auto t = entries.find(target);
        if (t == entries.end() || t->second != TarEntryType::kFile) {
          return absl::PermissionDeniedError(absl::StrCat(
              "context tar hard link ", Quote(info.path), " -> ", Quote(info.link_target),
              " does not name an earlier regular file of the archive"));
        }
      }
      archive_read_data_skip(a->get());
    }
  }
  // Whole-archive checks: no entry below a symlink (entries are sorted, so those below
  // symlink s are the ones right after s + "/"); every symlink resolves inside, with a bound
  // on the total resolution work.
  for (const auto& [link, target] : symlinks) {
    const std::string below = link + "/";
    auto it = entries.lower_bound(below);
    if (it != entries.end() && it->first.compare(0, below.size(), below) == 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "context tar entry ", Quote(it->first), " lies below symlink ", Quote(link)));
    }
  }
  int64_t steps_left = limits.max_resolve_steps;
  for (const auto& [path, target] : symlinks) {
    absl::StatusOr<std::string> r = ResolveInArchive(path, symlinks, &steps_left);
    if (absl::IsResourceExhausted(r.status())) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "context tar: resolving its ", symlinks.size(), " symlinks takes more than ",
          limits.max_resolve_steps, " path components (at symlink ", Quote(path), ")"));
    }
    if (!r.ok()) {
      return absl::Status(r.status().code(),
                          absl::StrCat("context tar symlink ", Quote(path), " -> ", Quote(target),
                                       " escapes the context: ", r.status().message()));
    }
  }

  // Pass 2: extract below the real path of dest_dir.
  char real_buf[PATH_MAX];
  if (realpath(dest_dir.c_str(), real_buf) == nullptr) {
    return PosixError(errno, "realpath", dest_dir);
  }
  const std::string root = real_buf;
  absl::StatusOr<ReadArchive> a = OpenTar(tar_path);
  if (!a.ok()) return a.status();
  WriteArchive w(archive_write_disk_new());
  archive_write_disk_set_options(
      w.get(), ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                   ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_NO_OVERWRITE);
  struct archive_entry* e = nullptr;
  while (true) {
    int r = archive_read_next_header(a->get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      return absl::DataLossError(
          absl::StrCat("context tar ", tar_path, ": ", archive_error_string(a->get())));
    }
    std::string norm = *NormalizeEntryPath(archive_entry_pathname(e));
    const std::string out = norm.empty() ? root : absl::StrCat(root, "/", norm);
    archive_entry_set_pathname(e, out.c_str());
    if (const char* hl = archive_entry_hardlink(e); hl != nullptr) {
      std::string t = absl::StrCat(root, "/", *NormalizeEntryPath(hl));
      archive_entry_set_hardlink(e, t.c_str());
    }
    // No setuid/setgid/sticky bits; owner is never restored (no ARCHIVE_EXTRACT_OWNER).
    archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
    archive_entry_acl_clear(e);
    archive_entry_xattr_clear(e);
    archive_entry_set_fflags(e, 0, 0);
    if (archive_write_header(w.get(), e) != ARCHIVE_OK) {
      return absl::InternalError(absl::StrCat("extracting context tar entry ", Quote(norm), ": ",
                                              archive_error_string(w.get())));
    }
    if (archive_entry_size(e) > 0 && archive_entry_hardlink(e) == nullptr) {
      const void* buf;
      size_t size;
      la_int64_t offset;
      while (true) {
        int rr = archive_read_data_block(a->get(), &buf, &size, &offset);
        if (rr == ARCHIVE_EOF) break;
        if (rr != ARCHIVE_OK) {
          return absl::DataLossError(absl::StrCat("context tar entry ", Quote(norm), ": ",
                                                  archive_error_string(a->get())));
        }
        if (archive_write_data_block(w.get(), buf, size, offset) != ARCHIVE_OK) {
          return absl::InternalError(absl::StrCat("writing context tar entry ", Quote(norm),
                                                  ": ", archive_error_string(w.get())));
        }
      }
    }
    if (archive_write_finish_entry(w.get()) != ARCHIVE_OK) {
      return absl::InternalError(absl::StrCat("finishing context tar entry ", Quote(norm), ": ",
                                              archive_error_string(w.get())));
    }
  }
  if (archive_write_close(w.get()) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("closing context extraction: ", archive_error_string(w.get())));
  }
  return stats;
}

}  // namespace kiln::agent::runner
