// File: images/tool/archive.cc (see archive.h)
#include "images/tool/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kiln::images {
namespace {

struct ArchiveDeleter {
  void operator()(struct archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(struct archive_entry* e) const { archive_entry_free(e); }
};

la_ssize_t AppendToString(struct archive*, void* client, const void* buf, size_t n) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

absl::Status LibarchiveError(struct archive* a, absl::string_view what) {
  const char* msg = archive_error_string(a);
  return absl::InternalError(absl::StrCat("libarchive: ", what, ": ", msg ? msg : "(no message)"));
}

}  // namespace

absl::StatusOr<ArchiveFormat> ParseArchiveFormat(absl::string_view name) {
  if (name == "cpio" || name == "newc") return ArchiveFormat::kCpioNewc;
  if (name == "ustar") return ArchiveFormat::kTarUstar;
  if (name == "pax" || name == "tar") return ArchiveFormat::kTarPax;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown archive format \"", name, "\" (want cpio, ustar or pax)"));
}

absl::StatusOr<int64_t> MtimeFromEnv(absl::string_view value) {
  if (value.empty()) return 0;
  int64_t v = 0;
  if (!absl::SimpleAtoi(value, &v) || v < 0 || value[0] == '+' || value[0] == '-') {
    return absl::InvalidArgumentError(
        absl::StrCat("SOURCE_DATE_EPOCH=\"", value, "\" is not a non-negative integer"));
  }
  return v;
}

absl::StatusOr<std::string> WriteArchive(const std::vector<ArchiveEntry>& plan,
                                         const ArchiveOptions& options,
                                         const ContentReader& read) {
  // ustar's limits, checked here for a clear message (libarchive would only warn and skip).
  constexpr size_t kUstarMaxLink = 100, kUstarMaxPath = 255;
  constexpr uint32_t kUstarMaxDev = 07777777;
  // `out` is declared before the archive: on an early return the archive's deleter
  // (archive_write_free) still flushes into it, so it must be destroyed after the archive.
  std::string out;
  std::unique_ptr<struct archive, ArchiveDeleter> a(archive_write_new());
  if (!a) return absl::ResourceExhaustedError("libarchive: archive_write_new failed");
  int r = ARCHIVE_OK;
  switch (options.format) {
    case ArchiveFormat::kCpioNewc:
      r = archive_write_set_format_cpio_newc(a.get());
      break;
    case ArchiveFormat::kTarUstar:
      r = archive_write_set_format_ustar(a.get());
      break;
    case ArchiveFormat::kTarPax:
      r = archive_write_set_format_pax_restricted(a.get());
      break;
  }
  if (r != ARCHIVE_OK) return LibarchiveError(a.get(), "set format");
  if (options.gzip) {
    if (archive_write_add_filter_gzip(a.get()) != ARCHIVE_OK) {
      return LibarchiveError(a.get(), "add gzip filter");
    }
    // Unset (NULL value) = "!timestamp": the gzip header's MTIME is 0 instead of now.
    if (archive_write_set_filter_option(a.get(), "gzip", "timestamp", nullptr) != ARCHIVE_OK) {
      return LibarchiveError(a.get(), "gzip:!timestamp");
    }
  }
  if (archive_write_open(a.get(), &out, nullptr, AppendToString, nullptr) !=
      ARCHIVE_OK) {
    return LibarchiveError(a.get(), "open");
  }
  for (const ArchiveEntry& p : plan) {
    std::unique_ptr<struct archive_entry, EntryDeleter> e(archive_entry_new());
    archive_entry_set_pathname(e.get(), p.path.c_str());
    archive_entry_set_mtime(e.get(), options.mtime, 0);
    archive_entry_set_uid(e.get(), 0);
    archive_entry_set_gid(e.get(), 0);
    archive_entry_set_ino64(e.get(), static_cast<la_int64_t>(p.inode));
    archive_entry_set_dev(e.get(), 0);
    archive_entry_set_nlink(e.get(), p.type == EntryType::kDir ? 2 : 1);
    archive_entry_set_size(e.get(), 0);  // libarchive wants a size on every entry
    if (options.format == ArchiveFormat::kTarUstar) {
      if (p.path.size() > kUstarMaxPath) {
        return absl::InvalidArgumentError(
            absl::StrCat("ustar: path \"", p.path, "\" is too long; use pax"));
      }
      if (p.target.size() > kUstarMaxLink) {
        return absl::InvalidArgumentError(
            absl::StrCat("ustar: link target of \"", p.path, "\" is too long; use pax"));
      }
    }
    std::string content;
    switch (p.type) {
      case EntryType::kDir:
        archive_entry_set_filetype(e.get(), AE_IFDIR);
        break;
      case EntryType::kFile: {
        absl::StatusOr<std::string> c = read(p.source);
        if (!c.ok()) return c.status();
        content = std::move(*c);
        archive_entry_set_filetype(e.get(), AE_IFREG);
        archive_entry_set_size(e.get(), static_cast<la_int64_t>(content.size()));
        break;
      }
      case EntryType::kSymlink:
        archive_entry_set_filetype(e.get(), AE_IFLNK);
        archive_entry_set_symlink(e.get(), p.target.c_str());
        break;
      case EntryType::kCharDev:
        if (options.format != ArchiveFormat::kCpioNewc &&
            (p.major > kUstarMaxDev || p.minor > kUstarMaxDev)) {
          return absl::InvalidArgumentError(
              absl::StrCat("tar: device numbers of \"", p.path, "\" too large"));
        }
        archive_entry_set_filetype(e.get(), AE_IFCHR);
        archive_entry_set_rdevmajor(e.get(), p.major);
        archive_entry_set_rdevminor(e.get(), p.minor);
        break;
      case EntryType::kTree:
        return absl::InvalidArgumentError(
            absl::StrCat("tree entry \"", p.path, "\" in an archive plan"));
    }
    archive_entry_set_perm(e.get(), p.mode & 07777);
    if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK) {
      return LibarchiveError(a.get(), absl::StrCat("header of ", p.path));
    }
    if (!content.empty()) {
      la_ssize_t n = archive_write_data(a.get(), content.data(), content.size());
      if (n < 0 || static_cast<size_t>(n) != content.size()) {
        return LibarchiveError(a.get(), absl::StrCat("data of ", p.path));
      }
    }
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return LibarchiveError(a.get(), "close");
  return out;
}

absl::StatusOr<std::vector<ListedEntry>> ListArchive(absl::string_view bytes) {
  struct ReadDeleter {
    void operator()(struct archive* a) const { archive_read_free(a); }
  };
  std::unique_ptr<struct archive, ReadDeleter> a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_cpio(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_memory(a.get(), bytes.data(), bytes.size()) != ARCHIVE_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an archive: ", archive_error_string(a.get()) ?: "(no message)"));
  }
  std::vector<ListedEntry> out;
  for (;;) {
    struct archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK) {
      const char* msg = archive_error_string(a.get());
      return absl::DataLossError(absl::StrCat("reading archive after ", out.size(),
                                              " entries: ", msg ? msg : "(no message)"));
    }
    ListedEntry l;
    l.path = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    if (!l.path.empty() && l.path.back() == '/') l.path.pop_back();  // tar directories
    l.mode = archive_entry_perm(e);
    l.uid = archive_entry_uid(e);
    l.gid = archive_entry_gid(e);
    l.mtime = archive_entry_mtime(e);
    l.uname = archive_entry_uname(e) ? archive_entry_uname(e) : "";
    l.gname = archive_entry_gname(e) ? archive_entry_gname(e) : "";
    l.inode = static_cast<uint64_t>(archive_entry_ino64(e));
    switch (archive_entry_filetype(e)) {
      case AE_IFDIR:
        l.type = EntryType::kDir;
        break;
      case AE_IFREG: {
        l.type = EntryType::kFile;
        char buf[1 << 16];
        la_ssize_t n;
        while ((n = archive_read_data(a.get(), buf, sizeof(buf))) > 0) l.content.append(buf, n);
        if (n < 0) {
          return absl::DataLossError(absl::StrCat("reading data of ", l.path, ": ",
                                                  archive_error_string(a.get()) ?: "?"));
        }
        break;
      }
      case AE_IFLNK:
        l.type = EntryType::kSymlink;
        l.target = archive_entry_symlink(e) ? archive_entry_symlink(e) : "";
        break;
      case AE_IFCHR:
        l.type = EntryType::kCharDev;
        l.major = archive_entry_rdevmajor(e);
        l.minor = archive_entry_rdevminor(e);
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat("unsupported entry type for ", l.path));
    }
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace kiln::images
