#include "agent/ustar.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent {

UstarWriter::~UstarWriter() {
  if (fd_ >= 0) close(fd_);
}

absl::Status UstarWriter::Open(const std::string& path) {
  path_ = path;
  fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return PosixError(errno, "create", path);
  return absl::OkStatus();
}

absl::Status UstarWriter::Header(const std::string& name, char typeflag, int64_t size,
                                 const std::string& link, int mode) {
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

absl::Status UstarWriter::Dir(const std::string& name) { return Header(name, '5', 0); }

absl::Status UstarWriter::Symlink(const std::string& name, const std::string& target) {
  return Header(name, '2', 0, target);
}

absl::Status UstarWriter::Bytes(const std::string& name, absl::string_view data) {
  if (absl::Status s = Header(name, '0', static_cast<int64_t>(data.size())); !s.ok()) return s;
  if (absl::Status s = Write(data); !s.ok()) return s;
  return Pad(static_cast<int64_t>(data.size()));
}

absl::Status UstarWriter::File(const std::string& name, const std::string& path, int64_t size,
                               int mode) {
  if (absl::Status s = Header(name, '0', size, "", mode); !s.ok()) return s;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError(errno, "open", path);
  std::vector<char> buf(1 << 20);
  int64_t total = 0;
  while (total < size) {
    ssize_t n = read(fd, buf.data(),
                     static_cast<size_t>(std::min<int64_t>(buf.size(), size - total)));
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

absl::Status UstarWriter::Finish() {
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

absl::Status UstarWriter::Pad(int64_t size) {
  size_t pad = static_cast<size_t>((512 - size % 512) % 512);
  return pad == 0 ? absl::OkStatus() : Write(std::string(pad, '\0'));
}

absl::Status UstarWriter::Write(absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd_, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PosixError(errno, "write", path_);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace kiln::agent
