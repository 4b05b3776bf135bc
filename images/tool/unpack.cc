// File: images/tool/unpack.cc (see unpack.h)
#include "images/tool/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/file/file.h"
#include "images/oci/digest.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::images {
namespace {

constexpr size_t kMaxPathBytes = 4096;
constexpr absl::string_view kWhiteoutPrefix = ".wh.";
constexpr absl::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr absl::string_view kOpaqueName = ".wh..wh..opq";

std::string Quote(absl::string_view s) { return absl::StrCat("\"", absl::CHexEscape(s), "\""); }

std::string Join(const std::string& root, absl::string_view rel) {
  return rel.empty() ? root : absl::StrCat(root, "/", rel);
}

// Source: a layer blob read through libarchive's callback, hashed as it is read.
struct Source {
  int fd = -1;
  oci::Sha256Hasher* hasher = nullptr;  // pass 1 only
  std::string buf = std::string(1 << 20, '\0');
  int64_t bytes = 0;
};

la_ssize_t ReadCallback(struct archive* a, void* user, const void** out) {
  auto* s = static_cast<Source*>(user);
  ssize_t n;
  do {
    n = read(s->fd, s->buf.data(), s->buf.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    archive_set_error(a, errno, "read");
    return -1;
  }
  if (s->hasher != nullptr) s->hasher->Update(s->buf.data(), static_cast<size_t>(n));
  s->bytes += n;
  *out = s->buf.data();
  return n;
}

using ArchivePtr = std::unique_ptr<struct archive, int (*)(struct archive*)>;

absl::StatusOr<ArchivePtr> OpenReader(Source* src) {
  ArchivePtr a(archive_read_new(), archive_read_free);
  if (a == nullptr) return absl::ResourceExhaustedError("archive_read_new failed");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open(a.get(), src, nullptr, ReadCallback, nullptr) != ARCHIVE_OK) {
    return absl::DataLossError(absl::StrCat("not a tar layer: ", archive_error_string(a.get())));
  }
  return a;
}

// Decompressed: a layer's uncompressed tar stream (libarchive's raw format over the blob with
// every filter: gzip, zstd, xz, or none), hashed as the tar reader of pass 1 consumes it: the
// sha256 of exactly these bytes is the layer's diff_id (image-spec config.md, rootfs).
struct Decompressed {
  ArchivePtr raw{nullptr, archive_read_free};
  oci::Sha256Hasher hasher;
  int64_t bytes = 0;
  std::string error;
};

la_ssize_t DecompressedRead(struct archive* a, void* user, const void** out) {
  auto* d = static_cast<Decompressed*>(user);
  const void* buf = nullptr;
  size_t size = 0;
  la_int64_t offset = 0;
  int r = archive_read_data_block(d->raw.get(), &buf, &size, &offset);
  if (r == ARCHIVE_EOF) return 0;
  if (r < ARCHIVE_WARN) {
    d->error = archive_error_string(d->raw.get()) ? archive_error_string(d->raw.get()) : "read";
    archive_set_error(a, EIO, "%s", d->error.c_str());
    return -1;
  }
  d->hasher.Update(static_cast<const char*>(buf), size);
  d->bytes += static_cast<int64_t>(size);
  *out = buf;
  return static_cast<la_ssize_t>(size);
}

absl::Status OpenDecompressed(Source* src, Decompressed* d) {
  d->raw.reset(archive_read_new());
  if (d->raw == nullptr) return absl::ResourceExhaustedError("archive_read_new failed");
  archive_read_support_filter_all(d->raw.get());
  archive_read_support_format_raw(d->raw.get());
  struct archive_entry* e;
  if (archive_read_open(d->raw.get(), src, nullptr, ReadCallback, nullptr) != ARCHIVE_OK ||
      archive_read_next_header(d->raw.get(), &e) != ARCHIVE_OK) {
    return absl::DataLossError(
        absl::StrCat("not a layer: ", archive_error_string(d->raw.get())));
  }
  return absl::OkStatus();
}

// OpenTarOver(d): a tar reader of the decompressed stream (no filters: d already decompressed).
absl::StatusOr<ArchivePtr> OpenTarOver(Decompressed* d) {
  ArchivePtr a(archive_read_new(), archive_read_free);
  if (a == nullptr) return absl::ResourceExhaustedError("archive_read_new failed");
  archive_read_support_format_tar(a.get());
  if (archive_read_open(a.get(), d, nullptr, DecompressedRead, nullptr) != ARCHIVE_OK) {
    return absl::DataLossError(absl::StrCat("not a tar layer: ", archive_error_string(a.get())));
  }
  return a;
}

bool IsBelow(absl::string_view path, absl::string_view dir) {
  return dir.empty() || path == dir ||
         (absl::StartsWith(path, dir) && path.size() > dir.size() && path[dir.size()] == '/');
}

// CheckRealParents(root, rel): every existing ancestor of root/rel below root is a real
// directory (not a symlink, not a file). Missing ancestors are fine (they will be created).
absl::Status CheckRealParents(const std::string& root, absl::string_view rel) {
  std::vector<absl::string_view> parts = absl::StrSplit(rel, '/');
  std::string p = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    absl::StrAppend(&p, "/", parts[i]);
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) {
      if (errno == ENOENT) return absl::OkStatus();
      return PosixError(errno, "lstat", p);
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::PermissionDeniedError(absl::StrCat(
          Quote(rel), ": its parent ", Quote(p.substr(root.size() + 1)), " is ",
          S_ISLNK(st.st_mode) ? "a symlink" : "not a directory",
          " in the tree (nothing is written or deleted through it)"));
    }
  }
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);  // does not follow symlinks
  if (ec) return PosixError(ec.value(), "remove", path);
  return absl::OkStatus();
}

// RemoveChildren(dir): deletes every entry in `dir` (not following symlinks).
absl::Status RemoveChildren(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> children;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    children.push_back(it->path().string());
  }
  if (ec) return PosixError(ec.value(), "readdir", dir);
  for (const std::string& c : children) RETURN_IF_ERROR(RemoveTree(c));
  return absl::OkStatus();
}

// EntryKind: what pass 1 learned of one header.
struct Checked {
  std::string path;  // normalized
  Whiteout whiteout;
};

bool IsLayerMediaType(absl::string_view mt) {
  return absl::StrContains(mt, ".tar") || absl::StrContains(mt, "tar.gzip") ||
         absl::StrContains(mt, "rootfs.diff.tar");
}

std::string TypeName(mode_t type) {
  switch (type) {
    case AE_IFREG: return "file";
    case AE_IFDIR: return "directory";
    case AE_IFLNK: return "symlink";
    case AE_IFCHR: return "character device";
    case AE_IFBLK: return "block device";
    case AE_IFIFO: return "FIFO";
    case AE_IFSOCK: return "socket";
    default: return "unknown entry type";
  }
}

// CheckEntry: pass 1's checks of one header (normalized path `path`).
absl::Status CheckEntry(struct archive_entry* e, const std::string& path,
                        const UnpackOptions& options) {
  const char* hardlink = archive_entry_hardlink(e);
  if (hardlink != nullptr) {
    absl::StatusOr<std::string> t = NormalizeLayerPath(hardlink);
    if (!t.ok() || t->empty()) {
      return absl::PermissionDeniedError(absl::StrCat(
          "hard link ", Quote(path), " -> ", Quote(hardlink), " points outside the root"));
    }
    if (path.empty()) return absl::InvalidArgumentError("the root entry is a hard link");
    return absl::OkStatus();
  }
  const mode_t type = archive_entry_filetype(e);
  if (path.empty() && type != AE_IFDIR) {
    return absl::InvalidArgumentError(
        absl::StrCat("the root entry is a ", TypeName(type), ", not a directory"));
  }
  switch (type) {
    case AE_IFREG:
    case AE_IFDIR:
    case AE_IFIFO:
      return absl::OkStatus();
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      return CheckSymlinkTarget(path, target == nullptr ? "" : target);
    }
    case AE_IFCHR:
    case AE_IFBLK:
      for (const std::string& d : options.device_dirs)
        if (!d.empty() && IsBelow(path, d) && path != d) return absl::OkStatus();
      return absl::PermissionDeniedError(absl::StrCat(
          TypeName(type), " ", Quote(path), " (", archive_entry_rdevmajor(e), ":",
          archive_entry_rdevminor(e), ") is not allowed here",
          options.device_dirs.empty()
              ? " (device nodes are not allowed in this image)"
              : absl::StrCat(" (only below ", absl::StrJoin(options.device_dirs, ", "), ")")));
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(Quote(path), " is a ", TypeName(type),
                       ": layers may hold files, directories, links, FIFOs and devices"));
  }
}

// Pass 1: every header checked, whiteouts collected, the blob hashed (src->hasher) and its
// uncompressed stream hashed (*diff_id).
absl::StatusOr<std::vector<Whiteout>> ScanLayer(Source* src, const UnpackOptions& options,
                                                std::string* diff_id) {
  Decompressed d;
  RETURN_IF_ERROR(OpenDecompressed(src, &d));
  ASSIGN_OR_RETURN(ArchivePtr a, OpenTarOver(&d));
  std::vector<Whiteout> whiteouts;
  for (;;) {
    struct archive_entry* e;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      return absl::DataLossError(absl::StrCat("corrupt layer: ", archive_error_string(a.get())));
    }
    const char* raw = archive_entry_pathname(e);
    absl::StatusOr<std::string> path = NormalizeLayerPath(raw == nullptr ? "" : raw);
    if (!path.ok()) return path.status();
    ASSIGN_OR_RETURN(Whiteout w, ClassifyWhiteout(*path));
    if (w.kind == Whiteout::Kind::kFile || w.kind == Whiteout::Kind::kOpaque) {
      whiteouts.push_back(std::move(w));
    } else if (w.kind == Whiteout::Kind::kNone) {
      absl::Status s = CheckEntry(e, *path, options);
      if (!s.ok()) return absl::Status(s.code(), absl::StrCat("entry ", s.message()));
    }
    if (archive_read_data_skip(a.get()) < ARCHIVE_WARN) {
      return absl::DataLossError(absl::StrCat("corrupt layer: ", archive_error_string(a.get())));
    }
  }
  // The diff_id covers the whole uncompressed stream and the digest the whole blob, also
  // what follows the tar's end-of-archive blocks.
  const void* ignored;
  while (true) {
    la_ssize_t n = DecompressedRead(a.get(), &d, &ignored);
    if (n < 0) return absl::DataLossError(absl::StrCat("corrupt layer: ", d.error));
    if (n == 0) break;
  }
  *diff_id = d.hasher.Digest();
  while (true) {
    la_ssize_t n = ReadCallback(a.get(), src, &ignored);
    if (n < 0) return PosixError(errno, "read", "layer");
    if (n == 0) break;
  }
  return whiteouts;
}

absl::Status ApplyWhiteouts(const std::vector<Whiteout>& whiteouts, const std::string& root,
                            UnpackStats* stats) {
  for (const Whiteout& w : whiteouts) {
    const std::string p = Join(root, w.target);
    if (!w.target.empty()) RETURN_IF_ERROR(CheckRealParents(root, w.target));
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) {
      if (errno != ENOENT) return PosixError(errno, "lstat", p);
    } else if (w.kind == Whiteout::Kind::kFile) {
      RETURN_IF_ERROR(RemoveTree(p));
    } else if (S_ISDIR(st.st_mode)) {
      RETURN_IF_ERROR(RemoveChildren(p));
    }
    if (w.kind == Whiteout::Kind::kFile) ++stats->whiteouts; else ++stats->opaque_dirs;
  }
  return absl::OkStatus();
}

absl::Status WriteFailure(struct archive* w, const std::string& path) {
  int e = archive_errno(w);
  std::string msg = absl::StrCat("writing ", Quote(path), ": ", archive_error_string(w));
  if (e == EPERM || e == EACCES) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

// Pass 2: entries written.
absl::Status WriteLayer(Source* src, const std::string& root, const UnpackOptions& options,
                        UnpackStats* stats) {
  ASSIGN_OR_RETURN(ArchivePtr a, OpenReader(src));
  ArchivePtr w(archive_write_disk_new(), archive_write_free);
  int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
              ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
              ARCHIVE_EXTRACT_UNLINK;  // paths are root's real path + a normalized name
  if (options.same_owner) flags |= ARCHIVE_EXTRACT_OWNER;
  archive_write_disk_set_options(w.get(), flags);
  // No user/group name lookup: the layer's numeric ids are kept, not the host's names.
  for (;;) {
    struct archive_entry* e;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      return absl::DataLossError(absl::StrCat("corrupt layer: ", archive_error_string(a.get())));
    }
    ASSIGN_OR_RETURN(std::string path, NormalizeLayerPath(archive_entry_pathname(e)));
    ASSIGN_OR_RETURN(Whiteout wh, ClassifyWhiteout(path));
    if (wh.kind != Whiteout::Kind::kNone) continue;
    if (path.empty()) {  // the root directory itself: its mode and owner
      if (chmod(root.c_str(), archive_entry_perm(e)) != 0) return PosixError(errno, "chmod", root);
      if (options.same_owner &&
          chown(root.c_str(), archive_entry_uid(e), archive_entry_gid(e)) != 0) {
        return PosixError(errno, "chown", root);
      }
      continue;
    }
    RETURN_IF_ERROR(CheckRealParents(root, path));
    const std::string dest = Join(root, path);
    const bool is_dir = archive_entry_hardlink(e) == nullptr && archive_entry_filetype(e) == AE_IFDIR;
    struct stat st;
    if (lstat(dest.c_str(), &st) == 0) {
      if (!(is_dir && S_ISDIR(st.st_mode))) RETURN_IF_ERROR(RemoveTree(dest));
    } else if (errno != ENOENT) {
      return PosixError(errno, "lstat", dest);
    }
    archive_entry_set_pathname(e, dest.c_str());
    if (const char* hl = archive_entry_hardlink(e); hl != nullptr) {
      ASSIGN_OR_RETURN(std::string target, NormalizeLayerPath(hl));
      RETURN_IF_ERROR(CheckRealParents(root, target));
      const std::string t = Join(root, target);
      if (lstat(t.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "hard link ", Quote(path), " -> ", Quote(target),
            ": the target is not an existing non-directory entry of this or a lower layer"));
      }
      archive_entry_set_hardlink(e, t.c_str());
    }
    if (archive_write_header(w.get(), e) < ARCHIVE_WARN) return WriteFailure(w.get(), path);
    if (archive_entry_size(e) > 0 && archive_entry_hardlink(e) == nullptr) {
      const void* buf;
      size_t len;
      la_int64_t off;
      for (;;) {
        int rr = archive_read_data_block(a.get(), &buf, &len, &off);
        if (rr == ARCHIVE_EOF) break;
        if (rr < ARCHIVE_WARN) {
          return absl::DataLossError(
              absl::StrCat("corrupt layer at ", Quote(path), ": ", archive_error_string(a.get())));
        }
        if (archive_write_data_block(w.get(), buf, len, off) < ARCHIVE_WARN) {
          return WriteFailure(w.get(), path);
        }
        stats->file_bytes += static_cast<int64_t>(len);
      }
    }
    if (archive_write_finish_entry(w.get()) < ARCHIVE_WARN) return WriteFailure(w.get(), path);
    ++stats->entries;
  }
  if (archive_write_close(w.get()) < ARCHIVE_WARN) return WriteFailure(w.get(), root);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> NormalizeLayerPath(absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("entry with an empty name");
  if (path.size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("entry ", Quote(path.substr(0, 80)), "... is longer than 4096 bytes"));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("entry ", Quote(path), " contains a NUL byte"));
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat("entry ", Quote(path), " has an absolute path"));
  }
  std::vector<absl::string_view> kept;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("entry ", Quote(path), " has a \"..\" component (escapes the root)"));
    }
    kept.push_back(part);
  }
  return absl::StrJoin(kept, "/");
}

absl::StatusOr<Whiteout> ClassifyWhiteout(absl::string_view path) {
  Whiteout w;
  size_t slash = path.rfind('/');
  absl::string_view dir = slash == absl::string_view::npos ? "" : path.substr(0, slash);
  absl::string_view base = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  if (!absl::StartsWith(base, kWhiteoutPrefix)) return w;
  if (base == kOpaqueName) {
    w.kind = Whiteout::Kind::kOpaque;
    w.target = std::string(dir);
    return w;
  }
  if (absl::StartsWith(base, kWhiteoutMetaPrefix)) {
    w.kind = Whiteout::Kind::kMetadata;
    return w;
  }
  absl::string_view name = base.substr(kWhiteoutPrefix.size());
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("whiteout ", Quote(path), " names no file (", Quote(name), ")"));
  }
  w.kind = Whiteout::Kind::kFile;
  w.target = dir.empty() ? std::string(name) : absl::StrCat(dir, "/", name);
  return w;
}

absl::Status CheckSymlinkTarget(absl::string_view link_path, absl::string_view target) {
  if (target.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("symlink ", Quote(link_path), " has an empty target"));
  }
  if (target.front() == '/') return absl::OkStatus();  // root-relative in the image
  std::vector<absl::string_view> parts = absl::StrSplit(link_path, '/');
  int64_t depth = static_cast<int64_t>(parts.size()) - 1;  // components of the link's directory
  for (absl::string_view c : absl::StrSplit(target, '/')) {
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      if (--depth < 0) {
        return absl::PermissionDeniedError(absl::StrCat(
            "symlink ", Quote(link_path), " -> ", Quote(target), " points above the root"));
      }
    } else {
      ++depth;
    }
  }
  return absl::OkStatus();
}

absl::Status UnpackLayer(const std::string& blob_path, const oci::Descriptor& desc,
                         const std::string& root_dir, const UnpackOptions& options,
                         UnpackStats* stats, absl::string_view diff_id) {
  char* real = realpath(root_dir.c_str(), nullptr);
  if (real == nullptr) return PosixError(errno, "realpath", root_dir);
  const std::string root = real;
  free(real);
  if (!IsLayerMediaType(desc.media_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat("media type ", Quote(desc.media_type), " is not a tar layer"));
  }
  RETURN_IF_ERROR(oci::ValidateDigest(desc.digest));
  int fd = open(blob_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", blob_path);
  absl::Cleanup close_fd = [fd] { close(fd); };

  oci::Sha256Hasher hasher;
  Source scan{.fd = fd, .hasher = &hasher};
  std::string got_diff_id;
  ASSIGN_OR_RETURN(std::vector<Whiteout> whiteouts, ScanLayer(&scan, options, &got_diff_id));
  const std::string got = hasher.Digest();
  if (got != desc.digest) {
    return absl::DataLossError(absl::StrCat("blob ", blob_path, " hashes to ", got, " (", scan.bytes,
                                            " bytes), not its digest"));
  }
  if (!diff_id.empty() && got_diff_id != diff_id) {
    return absl::DataLossError(absl::StrCat(
        "its uncompressed tar hashes to ", got_diff_id, ", but the image config's "
        "rootfs.diff_ids says ", diff_id, " (the config does not describe this layer)"));
  }
  stats->layer_bytes += scan.bytes;
  RETURN_IF_ERROR(ApplyWhiteouts(whiteouts, root, stats));
  if (lseek(fd, 0, SEEK_SET) != 0) return PosixError(errno, "lseek", blob_path);
  Source write{.fd = fd};
  RETURN_IF_ERROR(WriteLayer(&write, root, options, stats));
  ++stats->layers;
  return absl::OkStatus();
}

absl::StatusOr<UnpackStats> UnpackImage(const oci::LayoutImage& image, const std::string& root,
                                        const UnpackOptions& options) {
  // The config: its digest, then its rootfs.diff_ids (4 MiB: a config is small JSON).
  ASSIGN_OR_RETURN(std::string config_bytes,
                   file::ReadFile(image.BlobPath(image.config.digest), 4 << 20));
  const std::string config_digest = oci::Sha256Digest(config_bytes);
  if (config_digest != image.config.digest) {
    return absl::DataLossError(absl::StrCat("config blob ", image.config.digest, " hashes to ",
                                            config_digest));
  }
  absl::StatusOr<oci::ImageConfig> config = oci::ParseImageConfig(config_bytes);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config blob ", image.config.digest, ": ",
                                                   config.status().message()));
  }
  if (config->diff_ids.size() != image.layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config blob ", image.config.digest, " lists ", config->diff_ids.size(),
        " rootfs.diff_ids for the manifest's ", image.layers.size(), " layers"));
  }
  UnpackStats stats;
  for (size_t i = 0; i < image.layers.size(); ++i) {
    const oci::Descriptor& d = image.layers[i];
    absl::Status s =
        UnpackLayer(image.BlobPath(d.digest), d, root, options, &stats, config->diff_ids[i]);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("layer ", i + 1, " of ", image.layers.size(),
                                                 " ", d.digest, ": ", s.message()));
    }
  }
  return stats;
}

}  // namespace kiln::images
