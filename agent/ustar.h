// File: agent/runner/ustar.h
// -----------------------------------------------------------------------------
//
// UstarWriter: a minimal, deterministic POSIX ustar (tar) writer used for the OCI archive and
// the test base image. Every entry has mtime 0, uid/gid 0, owner "root", mode 0644 (files,
// symlinks 0777) or 0755 (directories); names and link targets are at most 100 bytes.
// libarchive's tar writers are not used because, linked statically, they drag in every format
// (xar -> libxml2 -> ICU, ~30 MB) into the static agent binary.
//
// Example:
//
//   UstarWriter w;
//   RETURN_IF_ERROR(w.Open("/tmp/x.tar"));
//   RETURN_IF_ERROR(w.Bytes("hello.txt", "hi\n"));
//   RETURN_IF_ERROR(w.Finish());
#ifndef KILN_AGENT_RUNNER_USTAR_H_
#define KILN_AGENT_RUNNER_USTAR_H_

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {

// UstarWriter: see the file comment. Open() once, entries, then Finish(). Errors: the
// errno-derived status of a failed write, Internal for a name longer than 100 bytes.
class UstarWriter {
 public:
  ~UstarWriter() {
    if (fd_ >= 0) close(fd_);
  }
  // Open(path): creates/truncates the output file.
  absl::Status Open(const std::string& path) {
    path_ = path;
    fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return PosixError(errno, "create", path);
    return absl::OkStatus();
  }
  absl::Status Header(const std::string& name, char typeflag, int64_t size,
                      const std::string& link = "", int mode = -1) {
    if (name.size() > 100 || link.size() > 100) {
      return absl::InternalError("ustar name or link too long: " + name);
    }
    char h[512];
    memset(h, 0, sizeof(h));
    memcpy(h, name.data(), name.size());
    if (mode < 0) mode = typeflag == '5' ? 0755 : typeflag == '2' ? 0777 : 0644;
    snprintf(h + 100, 8, "%07o", static_cast<unsigned>(mode));
    snprintf(h + 108, 8, "%07o", 0);
    snprintf(h + 116, 8, "%07o", 0);
    snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(size));
    snprintf(h + 136, 12, "%011o", 0);
    memset(h + 148, ' ', 8);
    h[156] = typeflag;
    memcpy(h + 157, link.data(), link.size());
    memcpy(h + 257, "ustar\0" "00", 8);
    memcpy(h + 265, "root", 4);
    memcpy(h + 297, "root", 4);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
    return Write(absl::string_view(h, sizeof(h)));
  }
  absl::Status Dir(const std::string& name) { return Header(name, '5', 0); }
  // Symlink(name, target): a symlink entry (target <= 100 bytes).
  absl::Status Symlink(const std::string& name, const std::string& target) {
    return Header(name, '2', 0, target);
  }
  absl::Status Bytes(const std::string& name, absl::string_view data) {
    if (absl::Status s = Header(name, '0', static_cast<int64_t>(data.size())); !s.ok()) return s;
    if (absl::Status s = Write(data); !s.ok()) return s;
    return Pad(static_cast<int64_t>(data.size()));
  }
  // File(name, path, size, mode): an entry with the content of file `path` (size bytes).
  absl::Status File(const std::string& name, const std::string& path, int64_t size,
                    int mode = 0644) {
    if (absl::Status s = Header(name, '0', size, "", mode); !s.ok()) return s;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return PosixError(errno, "open", path);
    std::vector<char> buf(1 << 20);
    int64_t total = 0;
    while (total < size) {
      ssize_t n = read(fd, buf.data(), static_cast<size_t>(std::min<int64_t>(buf.size(), size - total)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int e = n < 0 ? errno : EIO;
        close(fd);
        return n < 0 ? PosixError(e, "read", path)
                     : absl::DataLossError(absl::StrCat(path, " shrank while archiving"));
      }
      if (absl::Status s = Write(absl::string_view(buf.data(), static_cast<size_t>(n))); !s.ok()) {
        close(fd);
        return s;
      }
      total += n;
    }
    close(fd);
    return Pad(size);
  }
  // Finish(): writes the two zero end blocks, fsyncs and closes.
  absl::Status Finish() {
    std::string zeros(1024, '\0');
    if (absl::Status s = Write(zeros); !s.ok()) return s;
    if (fsync(fd_) != 0) return PosixError(errno, "fsync", path_);
    if (close(fd_) != 0) {
      fd_ = -1;
      return PosixError(errno, "close", path_);
    }
    fd_ = -1;
    return absl::OkStatus();
  }

 private:
  absl::Status Pad(int64_t size) {
    size_t pad = static_cast<size_t>((512 - size % 512) % 512);
    return pad == 0 ? absl::OkStatus() : Write(std::string(pad, '\0'));
  }
  absl::Status Write(absl::string_view data) {
    while (!data.empty()) {
      ssize_t n = write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError(errno, "write", path_);
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  std::string path_;
  int fd_ = -1;
};

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_USTAR_H_
