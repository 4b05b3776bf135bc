// File: publish/http.h
// -----------------------------------------------------------------------------
//
// kiln's one HTTP/1.1 client (its one libcurl wrapper): HttpTransport sends one request and
// returns the response, nothing more (no retries, no auth: the registry client's are in
// registry.h). CurlTransport implements it with libcurl, reusing connections (keep-alive) and
// streaming request bodies from a file range so that large blobs are never held in memory.
// Users: the OCI distribution client (publish/registry.h) over TCP/TLS, and the Cloud
// Hypervisor API client (harness/vmm/cloud_hypervisor.h) over CH's API unix socket
// (TransportOptions::unix_socket_path). Tests substitute a fake transport.
//
// What CurlTransport bounds (so that a hostile or broken server cannot hold it forever or
// fill memory):
//   - response bodies: at most HttpRequest::max_response_bytes (default 1 MiB) are read into
//     memory; one byte more aborts the request (ResourceExhausted);
//   - response headers: at most kMaxResponseHeaderBytes (256 KiB) in total (ResourceExhausted);
//   - time: connecting (TCP and TLS) within TransportOptions::connect_timeout_ms; after that, a
//     request in which no byte moves in either direction for stall_timeout_ms, or whose average
//     rate is below min_bytes_per_s once it has lasted stall_timeout_ms, is aborted
//     (DeadlineExceeded); with TransportOptions::timeout set, a whole request (connect
//     included) that lasts longer is aborted too (DeadlineExceeded);
//   - redirects are never followed (a 3xx is returned as is, with its Location), and only the
//     http and https protocols are enabled, so libcurl itself never sends a request, with or
//     without credentials, to a URL the caller did not pass.
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
#include "absl/time/time.h"

namespace kiln::publish {

// kDefaultMaxResponseBytes: the response body cap of a request that does not set its own
// (JSON errors, upload session replies, token responses): 1 MiB.
inline constexpr int64_t kDefaultMaxResponseBytes = int64_t{1} << 20;
// kMaxResponseHeaderBytes: the cap on the total size of a response's header lines: 256 KiB.
inline constexpr int64_t kMaxResponseHeaderBytes = int64_t{256} << 10;

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
  // max_response_bytes: the most response body bytes read into HttpResponse::body (bytes).
  int64_t max_response_bytes = kDefaultMaxResponseBytes;
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

// HttpTransport: sends one request. Returns the response for any HTTP status (3xx/4xx/5xx are
// not errors here). UnavailableError when no response was received (connection refused or
// reset, connect timeout, TLS failure, the server closed without a reply: the message says
// which and names the URL, and the unix socket if one is used); DeadlineExceededError when
// the request stalled or crawled, or outlasted TransportOptions::timeout;
// InternalError when libcurl itself fails (out of memory, an option it was built without);
// ResourceExhaustedError when the response body exceeds req.max_response_bytes or its headers
// kMaxResponseHeaderBytes; InvalidArgumentError for a malformed request (e.g. unreadable body
// file).
class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  virtual absl::StatusOr<HttpResponse> Do(const HttpRequest& req) = 0;
};

// TransportOptions: how CurlTransport verifies HTTPS peers and how long it waits.
struct TransportOptions {
  std::string ca_file;  // PEM CA bundle to trust instead of the system store ("" = system)
  int64_t connect_timeout_ms = 10000;  // TCP connect + TLS handshake (ms)
  // stall_timeout_ms: abort a request when no body byte was sent or received for this long
  // (ms): a server that accepts and never answers, or sends headers and then stops. 0 turns
  // this and the rate floor off.
  int64_t stall_timeout_ms = 60000;
  // min_bytes_per_s: once a request has lasted stall_timeout_ms, abort it when its average
  // rate (body bytes sent + received per second since it started) is below this (0 = no
  // floor): a server that trickles a byte now and then.
  int64_t min_bytes_per_s = 1024;
  // unix_socket_path: when set, every request goes over this AF_UNIX stream socket instead of
  // TCP (libcurl's CURLOPT_UNIX_SOCKET_PATH; the URL's host only names the Host header), as
  // Cloud Hypervisor's API is served. At most 107 bytes (sun_path).
  std::string unix_socket_path;
  // timeout: the most one whole request may take, connect included (absl::ZeroDuration() =
  // no total bound: only the connect and stall bounds apply). DeadlineExceeded after it.
  absl::Duration timeout = absl::ZeroDuration();
};

// CurlTransport: HttpTransport over one libcurl easy handle (connections are reused). Not
// thread-safe: one request at a time.
class CurlTransport : public HttpTransport {
 public:
  explicit CurlTransport(TransportOptions opts);
  ~CurlTransport() override;
  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;

  absl::StatusOr<HttpResponse> Do(const HttpRequest& req) override;

 private:
  TransportOptions tls_;
  void* curl_;  // CURL*
};

}  // namespace kiln::publish

#endif  // KILN_PUBLISH_HTTP_H_
