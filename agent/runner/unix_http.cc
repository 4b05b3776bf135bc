#include "agent/runner/unix_http.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "third_party/absl_ext/monotonic_deadline.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {
namespace {

constexpr size_t kMaxHeadBytes = 64 * 1024;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// WaitFd: poll for `events` until deadline. DeadlineExceeded when it passes.
absl::Status WaitFd(int fd, short events, const MonotonicDeadline& deadline,
                    absl::string_view what) {
  while (true) {
    if (deadline.Passed()) {
      return absl::DeadlineExceededError(absl::StrCat("HTTP ", what, ": deadline"));
    }
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, deadline.RemainingMsForPoll(1000));
    if (r > 0) return absl::OkStatus();
    if (r < 0 && errno != EINTR) return PosixError(errno, "poll", what);
  }
}

absl::Status SendAll(int fd, absl::string_view data, const MonotonicDeadline& deadline) {
  while (!data.empty()) {
    if (absl::Status s = WaitFd(fd, POLLOUT, deadline, "send"); !s.ok()) return s;
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return PosixError(errno, "send", "unix socket");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Recv: one read with deadline; 0 at EOF.
absl::StatusOr<size_t> Recv(int fd, char* buf, size_t len, const MonotonicDeadline& deadline) {
  while (true) {
    if (absl::Status s = WaitFd(fd, POLLIN, deadline, "receive"); !s.ok()) return s;
    ssize_t n = recv(fd, buf, len, 0);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR && errno != EAGAIN) return PosixError(errno, "recv", "unix socket");
  }
}

absl::Status WriteAllFd(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError(errno, "write", "HTTP body file");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string PercentEncodePath(absl::string_view path) {
  // Keep the request target as given but escape bytes that HTTP forbids in it.
  std::string out;
  for (unsigned char c : path) {
    if (c <= 0x20 || c >= 0x7f || c == '#' || c == '%') {
      absl::StrAppend(&out, "%", absl::AsciiStrToUpper(absl::StrCat(absl::Hex(c, absl::kZeroPad2))));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

}  // namespace

absl::Status ParseResponseHead(absl::string_view head, HttpResponse* response) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  if (lines.empty()) return absl::InvalidArgumentError("HTTP response: empty head");
  absl::string_view status_line = lines[0];
  if (!absl::StartsWith(status_line, "HTTP/1.") || status_line.size() < 12 ||
      status_line[8] != ' ') {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP response: bad status line \"", absl::CHexEscape(status_line.substr(0, 80)), "\""));
  }
  int code = 0;
  if (!absl::SimpleAtoi(status_line.substr(9, 3), &code) || code < 100 || code > 599) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP response: bad status code in \"", absl::CHexEscape(status_line), "\""));
  }
  response->status = code;
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("HTTP response: bad header line \"", absl::CHexEscape(lines[i].substr(0, 80)), "\""));
    }
    response->headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  return absl::OkStatus();
}

absl::Status ChunkedDecoder::Feed(absl::string_view in, std::string* out) {
  if (!error_.ok()) return error_;
  error_ = FeedSome(in, out);
  return error_;
}

absl::Status ChunkedDecoder::FeedSome(absl::string_view in, std::string* out) {
  while (!in.empty() && state_ != State::kDone) {
    switch (state_) {
      case State::kSize:
      case State::kTrailer:
      case State::kDataCrlf: {
        size_t nl = in.find('\n');
        absl::string_view part = in.substr(0, nl);
        line_.append(part.data(), part.size());
        if (line_.size() > 4096) return absl::InvalidArgumentError("chunked: line too long");
        if (nl == absl::string_view::npos) return absl::OkStatus();
        in.remove_prefix(nl + 1);
        absl::string_view line = absl::StripSuffix(line_, "\r");
        if (state_ == State::kDataCrlf) {
          if (!line.empty()) return absl::InvalidArgumentError("chunked: missing CRLF after data");
          state_ = State::kSize;
        } else if (state_ == State::kTrailer) {
          if (line.empty()) state_ = State::kDone;
        } else {
          absl::string_view size_text = line.substr(0, line.find(';'));
          size_text = absl::StripAsciiWhitespace(size_text);
          uint64_t size = 0;
          // chunk-size = 1*HEXDIG (RFC 9112 7.1): no sign, no "0x" (SimpleHexAtoi takes both).
          if (size_text.empty() || size_text.size() > 15 ||
              !std::all_of(size_text.begin(), size_text.end(), absl::ascii_isxdigit) ||
              !absl::SimpleHexAtoi(size_text, &size)) {
            return absl::InvalidArgumentError(
                absl::StrCat("chunked: bad chunk size \"", absl::CHexEscape(line), "\""));
          }
          remaining_ = size;
          state_ = size == 0 ? State::kTrailer : State::kData;
        }
        line_.clear();
        break;
      }
      case State::kData: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
        out->append(in.data(), take);
        in.remove_prefix(take);
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::kDataCrlf;
        break;
      }
      case State::kDone:
        break;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<HttpResponse> UnixHttpClient::Get(absl::string_view path, absl::Time deadline,
                                                 int64_t max_body) const {
  return Do("GET", path, "", -1, -1, max_body, deadline);
}

absl::StatusOr<HttpResponse> UnixHttpClient::GetToFile(absl::string_view path, int out_fd,
                                                       absl::Time deadline) const {
  return Do("GET", path, "", -1, out_fd, 1 << 20, deadline);
}

absl::StatusOr<HttpResponse> UnixHttpClient::PostFile(absl::string_view path,
                                                      absl::string_view content_type, int in_fd,
                                                      absl::Time deadline) const {
  return Do("POST", path, content_type, in_fd, -1, 1 << 20, deadline);
}

absl::StatusOr<HttpResponse> UnixHttpClient::Do(absl::string_view method, absl::string_view path,
                                                absl::string_view content_type, int in_fd,
                                                int out_fd, int64_t max_body,
                                                absl::Time wall_deadline) const {
  // The time left is read once: a step of the wall clock during the request does not move it.
  const MonotonicDeadline deadline = MonotonicDeadline::FromWallDeadline(wall_deadline);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unix socket path too long (", socket_path_.size(), " bytes): ", socket_path_));
  }
  memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());
  Fd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (sock.get() < 0) return PosixError(errno, "socket", "AF_UNIX");
  if (connect(sock.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0 &&
      errno != EINPROGRESS) {
    int e = errno;
    return absl::UnavailableError(
        absl::StrCat("connect ", socket_path_, ": ", strerror(e), " [errno ", e, "]"));
  }
  std::string req = absl::StrCat(method, " ", PercentEncodePath(path),
                                 " HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
  if (in_fd >= 0) {
    absl::StrAppend(&req, "Content-Type: ", content_type, "\r\nTransfer-Encoding: chunked\r\n");
  }
  req += "\r\n";
  if (absl::Status s = SendAll(sock.get(), req, deadline); !s.ok()) return s;
  if (in_fd >= 0) {
    std::vector<char> buf(256 * 1024);
    while (true) {
      ssize_t n = read(in_fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError(errno, "read", "HTTP request body");
      if (n == 0) break;
      std::string hdr = absl::StrCat(absl::Hex(n), "\r\n");
      if (absl::Status s = SendAll(sock.get(), hdr, deadline); !s.ok()) return s;
      if (absl::Status s = SendAll(sock.get(), absl::string_view(buf.data(), n), deadline);
          !s.ok())
        return s;
      if (absl::Status s = SendAll(sock.get(), "\r\n", deadline); !s.ok()) return s;
    }
    if (absl::Status s = SendAll(sock.get(), "0\r\n\r\n", deadline); !s.ok()) return s;
  }

  HttpResponse resp;
  std::string data;
  std::vector<char> buf(256 * 1024);
  size_t head_end = std::string::npos;
  while (head_end == std::string::npos) {
    absl::StatusOr<size_t> n = Recv(sock.get(), buf.data(), buf.size(), deadline);
    if (!n.ok()) return n.status();
    if (*n == 0) {
      return absl::DataLossError(absl::StrCat("HTTP ", method, " ", path,
                                              ": connection closed before the response head"));
    }
    data.append(buf.data(), *n);
    head_end = data.find("\r\n\r\n");
    if (head_end == std::string::npos && data.size() > kMaxHeadBytes) {
      return absl::InvalidArgumentError("HTTP response head larger than 64 KiB");
    }
  }
  if (absl::Status s = ParseResponseHead(absl::string_view(data).substr(0, head_end), &resp);
      !s.ok())
    return s;
  std::string pending = data.substr(head_end + 4);
  const bool to_file = out_fd >= 0 && resp.status >= 200 && resp.status < 300;
  const bool chunked = absl::StrContains(absl::AsciiStrToLower(resp.headers["transfer-encoding"]),
                                         "chunked");
  int64_t content_length = -1;
  if (!chunked && resp.headers.count("content-length") != 0 &&
      !absl::SimpleAtoi(resp.headers["content-length"], &content_length)) {
    return absl::InvalidArgumentError("HTTP response: bad Content-Length");
  }
  ChunkedDecoder decoder;
  auto deliver = [&](absl::string_view bytes) -> absl::Status {
    resp.body_bytes += static_cast<int64_t>(bytes.size());
    if (to_file) return WriteAllFd(out_fd, bytes);
    if (static_cast<int64_t>(resp.body.size() + bytes.size()) > max_body) {
      return absl::ResourceExhaustedError(
          absl::StrCat("HTTP response body larger than ", max_body, " bytes"));
    }
    resp.body.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  };
  auto consume = [&](absl::string_view raw) -> absl::Status {
    if (chunked) {
      std::string decoded;
      if (absl::Status s = decoder.Feed(raw, &decoded); !s.ok()) return s;
      return deliver(decoded);
    }
    if (content_length >= 0) {
      raw = raw.substr(0, static_cast<size_t>(std::max<int64_t>(0, content_length - resp.body_bytes)));
    }
    return deliver(raw);
  };
  auto complete = [&]() {
    return chunked ? decoder.done() : (content_length >= 0 && resp.body_bytes >= content_length);
  };
  if (absl::Status s = consume(pending); !s.ok()) return s;
  while (!complete()) {
    absl::StatusOr<size_t> n = Recv(sock.get(), buf.data(), buf.size(), deadline);
    if (!n.ok()) return n.status();
    if (*n == 0) {
      if (chunked || content_length >= 0) {
        return absl::DataLossError(absl::StrCat("HTTP ", method, " ", path,
                                                ": connection closed after ", resp.body_bytes,
                                                " body bytes (response truncated)"));
      }
      break;  // read-until-close
    }
    if (absl::Status s = consume(absl::string_view(buf.data(), *n)); !s.ok()) return s;
  }
  return resp;
}

}  // namespace kiln::agent::runner
