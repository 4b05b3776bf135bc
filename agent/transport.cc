#include "agent/file/file.h"
#include "agent/transport.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "third_party/absl_ext/monotonic_deadline.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::agent {
namespace {

// NowMs(): CLOCK_MONOTONIC in ms (deadlines are not moved by wall-clock steps).
int64_t NowMs() { return MonotonicMicros() / 1000; }

// Remaining(deadline): ms left until the absolute deadline (-1: none), at least 0.
int Remaining(int64_t deadline) {
  if (deadline < 0) return -1;
  return static_cast<int>(std::max<int64_t>(0, deadline - NowMs()));
}

int64_t DeadlineFrom(int timeout_ms) { return timeout_ms < 0 ? -1 : NowMs() + timeout_ms; }

// WaitFd: polls fd for `events` until the deadline. OK when ready (or on HUP/ERR, which the
// following read/write reports); DeadlineExceeded otherwise.
absl::Status WaitFd(int fd, short events, int64_t deadline, absl::string_view what,
                    absl::string_view name) {
  while (true) {
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, Remaining(deadline));
    if (r > 0) return absl::OkStatus();
    if (r == 0) {
      return absl::DeadlineExceededError(absl::StrCat(what, " ", name, ": deadline exceeded"));
    }
    if (errno != EINTR) return PosixError(errno, absl::StrCat("poll for ", what), name);
  }
}

}  // namespace

FdStream::FdStream(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}

FdStream::~FdStream() { (void)Close(); }

absl::StatusOr<size_t> FdStream::Read(char* buf, size_t n, int timeout_ms) {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("read ", name_, ": closed"));
  const int64_t deadline = DeadlineFrom(timeout_ms);
  while (true) {
    RETURN_IF_ERROR(WaitFd(fd_, POLLIN, deadline, "read", name_));
    ssize_t r = ::read(fd_, buf, n);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno == EINTR || errno == EAGAIN) continue;
    return PosixError(errno, "read", name_);
  }
}

absl::Status FdStream::Write(absl::string_view data, int timeout_ms) {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("write ", name_, ": closed"));
  const int64_t deadline = DeadlineFrom(timeout_ms);
  while (!data.empty()) {
    RETURN_IF_ERROR(WaitFd(fd_, POLLOUT, deadline, "write", name_));
    ssize_t r = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r < 0 && errno == ENOTSOCK) r = ::write(fd_, data.data(), data.size());  // char dev
    if (r >= 0) {
      data.remove_prefix(static_cast<size_t>(r));
      continue;
    }
    if (errno == EINTR || errno == EAGAIN) continue;
    if (errno == EPIPE || errno == ECONNRESET) {
      return absl::UnavailableError(absl::StrCat("write ", name_, ": peer closed the channel"));
    }
    return PosixError(errno, "write", name_);
  }
  return absl::OkStatus();
}

absl::Status FdStream::Close() {
  if (fd_ < 0) return absl::OkStatus();
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0 && errno != EINTR) return PosixError(errno, "close", name_);
  return absl::OkStatus();
}

// ---- guest side -------------------------------------------------------------------------

absl::StatusOr<std::string> FindVirtioPort(absl::string_view sysfs_root, absl::string_view name,
                                           absl::string_view dev_root) {
  if (name.empty()) return absl::InvalidArgumentError("virtio-serial port name is empty");
  const std::string dir = absl::StrCat(sysfs_root, "/class/virtio-ports");
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat("no virtio-serial ports: cannot open ", dir, ": ",
                                            std::strerror(errno),
                                            " (is virtio_console loaded?)"));
  }
  std::vector<std::string> entries;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') entries.emplace_back(e->d_name);
  }
  closedir(d);
  std::sort(entries.begin(), entries.end());
  std::vector<std::string> seen;
  for (const std::string& entry : entries) {
    std::string port_name(absl::StripAsciiWhitespace(
        file::ReadFileOrEmpty(absl::StrCat(dir, "/", entry, "/name"))));
    if (port_name == name) return absl::StrCat(dev_root, "/", entry);
    seen.push_back(absl::StrCat(entry, "=", port_name.empty() ? "(unnamed)" : port_name));
  }
  return absl::NotFoundError(absl::StrCat("no virtio-serial port named \"", name, "\" in ", dir,
                                          "; ports: [", absl::StrJoin(seen, ", "), "]"));
}

absl::StatusOr<std::unique_ptr<FdStream>> OpenVirtioSerial(absl::string_view sysfs_root,
                                                           absl::string_view name,
                                                           absl::string_view dev_root) {
  ASSIGN_OR_RETURN(std::string path, FindVirtioPort(sysfs_root, name, dev_root));
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return PosixError(errno, "open virtio-serial port", path);
  return std::make_unique<FdStream>(fd, path);
}

absl::StatusOr<std::unique_ptr<VsockListener>> VsockListener::Listen(uint32_t port,
                                                                     uint32_t cid) {
  int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const std::string what = absl::StrCat("vsock port ", port);
  if (fd < 0) return PosixError(errno, "socket(AF_VSOCK)", what);
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_port = port;
  addr.svm_cid = cid;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    absl::Status s = PosixError(errno, "bind", what);
    ::close(fd);
    return s;
  }
  if (::listen(fd, 4) != 0) {
    absl::Status s = PosixError(errno, "listen", what);
    ::close(fd);
    return s;
  }
  return std::unique_ptr<VsockListener>(new VsockListener(fd, port));
}

VsockListener::~VsockListener() { ::close(fd_); }

absl::StatusOr<std::unique_ptr<FdStream>> VsockListener::Accept(int timeout_ms) {
  const std::string what = absl::StrCat("vsock port ", port_);
  RETURN_IF_ERROR(WaitFd(fd_, POLLIN, DeadlineFrom(timeout_ms), "accept on", what));
  sockaddr_vm peer{};
  socklen_t len = sizeof(peer);
  int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
  if (fd < 0) return PosixError(errno, "accept", what);
  return std::make_unique<FdStream>(
      fd, absl::StrCat("vsock cid ", peer.svm_cid, " port ", peer.svm_port, " -> ", port_));
}

// ---- host side --------------------------------------------------------------------------

namespace {

absl::StatusOr<sockaddr_un> UnixAddress(absl::string_view path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path \"", path,
                                                   "\" must be 1..", sizeof(addr.sun_path) - 1,
                                                   " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FdStream>> ConnectUnix(absl::string_view path, int timeout_ms) {
  ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  const std::string p(path);
  const int64_t deadline = DeadlineFrom(timeout_ms);
  while (true) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return PosixError(errno, "socket(AF_UNIX)", p);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return std::make_unique<FdStream>(fd, p);
    }
    const int err = errno;
    ::close(fd);
    if (err != ENOENT && err != ECONNREFUSED && err != EINTR) {
      return PosixError(err, "connect", p);
    }
    if (deadline >= 0 && NowMs() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("connect ", p, ": not connectable within ",
                                                      timeout_ms, " ms (last error: ",
                                                      std::strerror(err), ")"));
    }
    ::usleep(20 * 1000);
  }
}

absl::StatusOr<std::unique_ptr<FdStream>> ConnectVsock(uint32_t cid, uint32_t port,
                                                       int timeout_ms) {
  const std::string what = absl::StrCat("vsock cid ", cid, " port ", port);
  const int64_t deadline = DeadlineFrom(timeout_ms);
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  while (true) {
    int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return PosixError(errno, "socket(AF_VSOCK)", what);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return std::make_unique<FdStream>(fd, what);
    }
    const int err = errno;
    ::close(fd);
    // ECONNRESET: the peer's transport refuses (no listener yet on virtio/loopback vsock).
    if (err != ECONNREFUSED && err != ECONNRESET && err != EINTR) {
      return PosixError(err, "connect", what);
    }
    if (deadline >= 0 && NowMs() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("connect ", what, ": no listener within ",
                                                      timeout_ms, " ms (last error: ",
                                                      std::strerror(err), ")"));
    }
    ::usleep(20 * 1000);
  }
}

absl::StatusOr<uint32_t> ParseHybridVsockReply(absl::string_view line) {
  absl::string_view l = absl::StripTrailingAsciiWhitespace(line);
  uint32_t port = 0;
  if (l.size() > 3 && l.substr(0, 3) == "OK " && absl::SimpleAtoi(l.substr(3), &port)) {
    return port;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "hybrid vsock handshake: expected \"OK <port>\", got \"", absl::CEscape(line),
      "\" (not a hybrid vsock socket?)"));
}

absl::StatusOr<std::unique_ptr<FdStream>> ConnectHybridVsock(absl::string_view uds_path,
                                                             uint32_t port, int timeout_ms) {
  const int64_t deadline = DeadlineFrom(timeout_ms);
  ASSIGN_OR_RETURN(std::unique_ptr<FdStream> s, ConnectUnix(uds_path, timeout_ms));
  RETURN_IF_ERROR(s->Write(absl::StrCat("CONNECT ", port, "\n"), Remaining(deadline)));
  // Read the reply line without consuming a byte after it (the guest's first bytes may follow
  // at once): peek at what is there, consume up to the '\n' (or all of it if none yet).
  constexpr size_t kMaxLine = 64;
  std::string line;
  while (line.empty() || line.back() != '\n') {
    if (line.size() >= kMaxLine) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hybrid vsock handshake: reply line longer than 64 bytes: \"", absl::CEscape(line),
          "\""));
    }
    RETURN_IF_ERROR(WaitFd(s->fd(), POLLIN, deadline, "hybrid vsock reply on", uds_path));
    char buf[kMaxLine];
    const ssize_t peeked = ::recv(s->fd(), buf, kMaxLine - line.size(), MSG_PEEK);
    if (peeked < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return PosixError(errno, "recv", uds_path);
    }
    if (peeked == 0) {
      return absl::UnavailableError(absl::StrCat(
          "hybrid vsock handshake on ", uds_path, ": closed after \"", absl::CEscape(line),
          "\" (no guest listener on port ", port, "?)"));
    }
    const void* nl = std::memchr(buf, '\n', static_cast<size_t>(peeked));
    const size_t take =
        nl != nullptr ? static_cast<size_t>(static_cast<const char*>(nl) - buf) + 1
                      : static_cast<size_t>(peeked);
    ASSIGN_OR_RETURN(size_t n, s->Read(buf, take, Remaining(deadline)));
    line.append(buf, n);
  }
  RETURN_IF_ERROR(ParseHybridVsockReply(line).status());
  return s;
}

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Listen(absl::string_view path) {
  ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  const std::string p(path);
  ::unlink(p.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return PosixError(errno, "socket(AF_UNIX)", p);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 4) != 0) {
    absl::Status s = PosixError(errno, "bind/listen", p);
    ::close(fd);
    return s;
  }
  return std::unique_ptr<UnixListener>(new UnixListener(fd, p));
}

UnixListener::~UnixListener() {
  ::close(fd_);
  ::unlink(path_.c_str());
}

absl::StatusOr<std::unique_ptr<FdStream>> UnixListener::Accept(int timeout_ms) {
  RETURN_IF_ERROR(WaitFd(fd_, POLLIN, DeadlineFrom(timeout_ms), "accept on", path_));
  int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return PosixError(errno, "accept", path_);
  return std::make_unique<FdStream>(fd, absl::StrCat(path_, " (accepted)"));
}

absl::StatusOr<std::pair<std::unique_ptr<FdStream>, std::unique_ptr<FdStream>>> StreamPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return PosixError(errno, "socketpair");
  }
  return std::make_pair(std::make_unique<FdStream>(fds[0], "socketpair[0]"),
                        std::make_unique<FdStream>(fds[1], "socketpair[1]"));
}

}  // namespace kiln::agent
