// File: harness/vmm/cloud_hypervisor_fake_api.cc
#include "harness/vmm/cloud_hypervisor_fake_api.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::harness {
namespace {

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 500:
      return "Internal Server Error";
    default:
      return "Status";
  }
}

void WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<FakeHttpServer>> FakeHttpServer::Start(std::string socket_path,
                                                                      FakeHttpHandler handler) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path too long: ", socket_path));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  ::unlink(socket_path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return PosixError(errno, "socket", socket_path);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    return PosixError(err, "bind/listen", socket_path);
  }
  return std::unique_ptr<FakeHttpServer>(
      new FakeHttpServer(fd, std::move(socket_path), std::move(handler)));
}

FakeHttpServer::FakeHttpServer(int fd, std::string path, FakeHttpHandler handler)
    : fd_(fd), path_(std::move(path)), handler_(std::move(handler)) {
  thread_ = std::thread([this] { Serve(); });
}

FakeHttpServer::~FakeHttpServer() {
  stop_ = true;
  thread_.join();
  ::close(fd_);
  ::unlink(path_.c_str());
}

std::vector<FakeHttpRequest> FakeHttpServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

void FakeHttpServer::Serve() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    HandleConnection(c);
  }
}

void FakeHttpServer::HandleConnection(int fd) {
  std::string in;
  size_t header_end = std::string::npos;
  size_t content_length = 0;
  char buf[4096];
  // Read the head, then Content-Length bytes of body (bounded by a 5 s idle poll).
  while (true) {
    if (header_end != std::string::npos && in.size() >= header_end + 4 + content_length) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos && (header_end = in.find("\r\n\r\n")) != std::string::npos) {
      for (absl::string_view line : absl::StrSplit(in.substr(0, header_end), "\r\n")) {
        std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
        if (absl::EqualsIgnoreCase(kv.first, "content-length")) {
          (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(kv.second), &content_length);
        }
      }
    }
  }
  if (header_end == std::string::npos) {
    ::close(fd);
    return;
  }
  FakeHttpRequest req;
  std::vector<std::string> first = absl::StrSplit(in.substr(0, in.find("\r\n")), ' ');
  if (first.size() >= 2) {
    req.method = first[0];
    req.path = first[1];
  }
  req.body = in.substr(header_end + 4, content_length);
  {
    absl::MutexLock lock(&mu_);
    requests_.push_back(req);
  }
  FakeHttpResponse resp = handler_(req);
  if (resp.delay > absl::ZeroDuration()) absl::SleepFor(resp.delay);
  if (!resp.close_without_reply) {
    std::string out = absl::StrCat("HTTP/1.1 ", resp.status, " ", Reason(resp.status), "\r\n");
    if (!resp.body.empty()) absl::StrAppend(&out, "Content-Type: application/json\r\n");
    absl::StrAppend(&out, "Content-Length: ", resp.body.size(), "\r\nConnection: close\r\n\r\n",
                    resp.body);
    WriteAll(fd, out);
  }
  ::close(fd);
  if (resp.after_reply) resp.after_reply();
}

}  // namespace kiln::harness
