#include "publish/http.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::publish {
namespace {

struct ReadState {
  const HttpRequest* req;
  int fd = -1;
  int64_t sent = 0;
  int64_t total = 0;
  int read_errno = 0;
};

size_t ReadBody(char* buf, size_t size, size_t nitems, void* userdata) {
  auto* st = static_cast<ReadState*>(userdata);
  size_t want = size * nitems;
  int64_t left = st->total - st->sent;
  if (left <= 0) return 0;
  if (static_cast<int64_t>(want) > left) want = static_cast<size_t>(left);
  size_t got = 0;
  if (st->fd >= 0) {
    ssize_t r;
    do {
      r = pread(st->fd, buf, want, st->req->body_offset + st->sent);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
      st->read_errno = r < 0 ? errno : EIO;
      return CURL_READFUNC_ABORT;
    }
    got = static_cast<size_t>(r);
  } else {
    memcpy(buf, st->req->body.data() + st->sent, want);
    got = want;
  }
  st->sent += static_cast<int64_t>(got);
  if (st->req->on_progress) st->req->on_progress(st->sent);
  return got;
}

// Abort: why a callback stopped the transfer (mapped to a Status after curl returns).
enum class Abort { kNone, kBodyTooLarge, kHeadersTooLarge, kStalled, kTooSlow };

// ResponseState: what the write, header and progress callbacks share for one request.
struct ResponseState {
  HttpResponse* resp;
  int64_t max_body = 0;
  int64_t header_bytes = 0;
  Abort abort = Abort::kNone;
  // Progress (bytes sent + received) and the clock, for the stall and rate checks.
  std::chrono::steady_clock::time_point start;
  std::chrono::steady_clock::time_point last_change;
  int64_t last_bytes = 0;
  int64_t stall_ms = 0;
  int64_t min_bytes_per_s = 0;
};

size_t WriteBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* st = static_cast<ResponseState*>(userdata);
  const size_t n = size * nmemb;
  if (static_cast<int64_t>(st->resp->body.size() + n) > st->max_body) {
    st->abort = Abort::kBodyTooLarge;
    return 0;  // != n: curl aborts with CURLE_WRITE_ERROR
  }
  st->resp->body.append(ptr, n);
  return n;
}

int Progress(void* userdata, curl_off_t /*dltotal*/, curl_off_t dlnow, curl_off_t /*ultotal*/,
             curl_off_t ulnow) {
  auto* st = static_cast<ResponseState*>(userdata);
  const auto now = std::chrono::steady_clock::now();
  const int64_t bytes = static_cast<int64_t>(dlnow) + static_cast<int64_t>(ulnow);
  if (bytes != st->last_bytes) {
    st->last_bytes = bytes;
    st->last_change = now;
    return 0;
  }
  auto ms = [](auto d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  if (st->stall_ms > 0 && ms(now - st->last_change) >= st->stall_ms) {
    st->abort = Abort::kStalled;
    return 1;
  }
  const int64_t elapsed_ms = ms(now - st->start);
  if (st->stall_ms > 0 && st->min_bytes_per_s > 0 && elapsed_ms >= st->stall_ms &&
      bytes * 1000 < st->min_bytes_per_s * elapsed_ms) {
    st->abort = Abort::kTooSlow;
    return 1;
  }
  return 0;
}

size_t WriteHeader(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* st = static_cast<ResponseState*>(userdata);
  HttpResponse* resp = st->resp;
  st->header_bytes += static_cast<int64_t>(size * nitems);
  if (st->header_bytes > kMaxResponseHeaderBytes) {
    st->abort = Abort::kHeadersTooLarge;
    return 0;
  }
  absl::string_view line(buffer, size * nitems);
  if (absl::StartsWith(line, "HTTP/")) {
    resp->headers.clear();  // a new response (e.g. after 100 Continue)
    return size * nitems;
  }
  size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    resp->headers.emplace(std::move(name), std::move(value));
  }
  return size * nitems;
}

}  // namespace

std::string HttpResponse::Header(absl::string_view name) const {
  auto it = headers.find(absl::AsciiStrToLower(name));
  return it == headers.end() ? "" : it->second;
}

std::vector<std::string> HttpResponse::Headers(absl::string_view name) const {
  std::vector<std::string> out;
  auto [b, e] = headers.equal_range(absl::AsciiStrToLower(name));
  for (auto it = b; it != e; ++it) out.push_back(it->second);
  return out;
}

CurlTransport::CurlTransport(TransportOptions opts) : tls_(std::move(opts)) {
  static const bool kInit = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  (void)kInit;
  curl_ = curl_easy_init();
}

CurlTransport::~CurlTransport() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

absl::StatusOr<HttpResponse> CurlTransport::Do(const HttpRequest& req) {
  CURL* c = static_cast<CURL*>(curl_);
  if (c == nullptr) return absl::InternalError("curl_easy_init failed");
  curl_easy_reset(c);  // keeps the connection cache
  HttpResponse resp;
  ReadState rs{&req};
  if (!req.body_file.empty()) {
    rs.fd = open(req.body_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (rs.fd < 0) return PosixError(errno, "open", req.body_file);
    rs.total = req.body_length;
  } else {
    rs.total = static_cast<int64_t>(req.body.size());
  }
  absl::Cleanup close_fd = [&rs] {
    if (rs.fd >= 0) close(rs.fd);
  };

  ResponseState st{&resp, req.max_response_bytes};
  st.start = st.last_change = std::chrono::steady_clock::now();
  st.stall_ms = tls_.stall_timeout_ms;
  st.min_bytes_per_s = tls_.min_bytes_per_s;

  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(tls_.connect_timeout_ms));
  // Never follow a redirect (the registry client decides where requests go and which carry
  // credentials), never re-send auth to another host, and speak only HTTP(S).
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NETRC, static_cast<long>(CURL_NETRC_IGNORED));
  if (!tls_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, tls_.ca_file.c_str());
  if (!tls_.unix_socket_path.empty()) {
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, tls_.unix_socket_path.c_str());
  }
  if (tls_.timeout > absl::ZeroDuration()) {
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(std::max<int64_t>(1, absl::ToInt64Milliseconds(tls_.timeout))));
  }
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &st);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, Progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &st);

  const bool has_body = rs.total > 0 || req.method == "PUT" || req.method == "PATCH";
  if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (req.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "POST" && !has_body) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
  } else if (has_body) {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadBody);
    curl_easy_setopt(c, CURLOPT_READDATA, &rs);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(rs.total));
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  struct curl_slist* headers = nullptr;
  for (const auto& [k, v] : req.headers)
    headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  absl::Cleanup free_headers = [headers] { curl_slist_free_all(headers); };
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(c);
  if (rs.read_errno != 0) return PosixError(rs.read_errno, "read", req.body_file);
  const std::string what =
      tls_.unix_socket_path.empty()
          ? absl::StrCat(req.method, " ", req.url)
          : absl::StrCat(req.method, " ", req.url, " on ", tls_.unix_socket_path);
  switch (st.abort) {
    case Abort::kNone:
      break;
    case Abort::kBodyTooLarge:
      return absl::ResourceExhaustedError(
          absl::StrCat(what, ": response body exceeds ", req.max_response_bytes,
                       " bytes (the cap for this request); stopped reading"));
    case Abort::kHeadersTooLarge:
      return absl::ResourceExhaustedError(
          absl::StrCat(what, ": response headers exceed ", kMaxResponseHeaderBytes,
                       " bytes; stopped reading"));
    case Abort::kStalled:
      return absl::DeadlineExceededError(absl::StrCat(
          what, ": nothing sent or received for ", tls_.stall_timeout_ms,
          " ms (stall timeout); the server stopped responding"));
    case Abort::kTooSlow:
      return absl::DeadlineExceededError(absl::StrCat(
          what, ": only ", st.last_bytes, " bytes moved in ",
          std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::steady_clock::now() - st.start)
              .count(),
          " ms (below ", tls_.min_bytes_per_s, " bytes/s); the server is too slow"));
  }
  if (rc != CURLE_OK) {
    const std::string detail = absl::StrCat(what, ": ", errbuf[0] ? errbuf : curl_easy_strerror(rc),
                                            " (curl error ", static_cast<int>(rc), ")");
    switch (rc) {
      case CURLE_OPERATION_TIMEDOUT:
        // With a total timeout this is it (the connect bound is a part of it); without one,
        // only the connect bound can fire: no response, Unavailable.
        if (tls_.timeout > absl::ZeroDuration()) {
          return absl::DeadlineExceededError(
              absl::StrCat(detail, " (timeout ", absl::FormatDuration(tls_.timeout), ")"));
        }
        return absl::UnavailableError(detail);
      case CURLE_OUT_OF_MEMORY:
      case CURLE_FAILED_INIT:
      case CURLE_BAD_FUNCTION_ARGUMENT:
      case CURLE_UNKNOWN_OPTION:
      case CURLE_NOT_BUILT_IN:
        return absl::InternalError(detail);
      default:
        return absl::UnavailableError(detail);
    }
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  resp.status = static_cast<int>(code);
  return resp;
}

}  // namespace kiln::publish
