// File: publish/http.h
// -----------------------------------------------------------------------------
//
// A thin HTTP/1.1 client seam: HttpTransport sends one request and returns the response,
// nothing more (no retries, no auth: those live in registry.h). CurlTransport implements it
// with libcurl, reusing connections (keep-alive) and streaming request bodies from a file
// range so that large blobs are never held in memory. Tests substitute a fake transport.
//
// Example:
//
//   CurlTransport http({.ca_file = "/tmp/ca.pem"});
//   HttpRequest req{.method = "HEAD", .url = "https://reg:5000/v2/kiln/builder/blobs/sha256:..."};
//   ASSIGN_OR_RETURN(HttpResponse resp, http.Do(req));
//   if (resp.status == 200) ...
#ifndef KILN_PUBLISH_HTTP_H_
#define KILN_PUBLISH_HTTP_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::publish {

// HttpRequest: one request. The body is `body`, or, when `body_file` is set, `body_length`
// bytes of that file starting at `body_offset` (streamed, never loaded whole).
struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, POST, PUT, PATCH, DELETE
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string body_file;
  int64_t body_offset = 0;   // bytes
  int64_t body_length = 0;   // bytes (used with body_file)
  // on_progress(bytes_sent_so_far): called while the body is being sent (may be empty).
  std::function<void(int64_t)> on_progress;
};

// HttpResponse: status code, headers (names lowercased; repeated names kept) and body.
struct HttpResponse {
  int status = 0;
  std::multimap<std::string, std::string> headers;
  std::string body;

  // Header(name): the first value of header `name` (case-insensitive), or "" if absent.
  std::string Header(absl::string_view name) const;
  // Headers(name): all values of header `name` (case-insensitive).
  std::vector<std::string> Headers(absl::string_view name) const;
};

// HttpTransport: sends one request. Returns the response for any HTTP status (4xx/5xx are
// not errors here). UnavailableError when no response was received (connection refused or
// reset, timeout, TLS failure: the message says which and names the URL); InvalidArgumentError
// for a malformed request (e.g. unreadable body file).
class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  virtual absl::StatusOr<HttpResponse> Do(const HttpRequest& req) = 0;
};

// TlsOptions: how CurlTransport verifies HTTPS peers.
struct TlsOptions {
  std::string ca_file;  // PEM CA bundle to trust instead of the system store ("" = system)
  int64_t connect_timeout_ms = 10000;
  int64_t low_speed_timeout_s = 60;  // abort when < 1 byte/s for this long
};

// CurlTransport: HttpTransport over one libcurl easy handle (connections are reused). Not
// thread-safe: one request at a time.
class CurlTransport : public HttpTransport {
 public:
  explicit CurlTransport(TlsOptions tls);
  ~CurlTransport() override;
  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;

  absl::StatusOr<HttpResponse> Do(const HttpRequest& req) override;

 private:
  TlsOptions tls_;
  void* curl_;  // CURL*
};

}  // namespace kiln::publish

#endif  // KILN_PUBLISH_HTTP_H_
