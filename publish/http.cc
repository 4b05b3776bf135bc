#include "publish/http.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
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

size_t WriteBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(ptr, size * nmemb);
  return size * nmemb;
}

size_t WriteHeader(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* resp = static_cast<HttpResponse*>(userdata);
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

CurlTransport::CurlTransport(TlsOptions tls) : tls_(std::move(tls)) {
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

  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(tls_.connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(tls_.low_speed_timeout_s));
  if (!tls_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, tls_.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp.body);

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
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat(req.method, " ", req.url, ": ",
                                               errbuf[0] ? errbuf : curl_easy_strerror(rc),
                                               " (curl error ", static_cast<int>(rc), ")"));
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  resp.status = static_cast<int>(code);
  return resp;
}

}  // namespace kiln::publish
