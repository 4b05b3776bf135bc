// File: agent/runner/unix_http.h
// -----------------------------------------------------------------------------
//
// A tiny HTTP/1.1 client over an AF_UNIX stream socket, enough for dockerd's Engine API
// (GET /_ping, POST /images/load, GET /images/{name}/get). One request per connection
// ("Connection: close"); request bodies and response bodies stream from/to a file descriptor
// or memory; responses with Content-Length, chunked transfer coding, or read-until-close are
// understood. Every read and write is bounded by a deadline (read once per request, counted on CLOCK_MONOTONIC). libcurl is not used: it is not
// available as a static library here and the agent binary is static.
//
// Example:
//
//   UnixHttpClient docker("/run/kiln/docker.sock");
//   ASSIGN_OR_RETURN(HttpResponse r, docker.Get("/_ping", absl::Now() + absl::Seconds(1)));
//   if (r.status == 200 && r.body == "OK") ...
#ifndef KILN_AGENT_RUNNER_UNIX_HTTP_H_
#define KILN_AGENT_RUNNER_UNIX_HTTP_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kiln::agent::runner {

// HttpResponse: status code, headers (lowercase names) and the body (when kept in memory).
struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  int64_t body_bytes = 0;  // bytes of body received (also when streamed to a file)
};

// ParseResponseHead(head, response): parses "HTTP/1.1 200 OK\r\nName: v\r\n..." (without the
// final empty line) into status and headers. InvalidArgument on a malformed status line or
// header.
absl::Status ParseResponseHead(absl::string_view head, HttpResponse* response);

// ChunkedDecoder: incremental decoder of the chunked transfer coding (RFC 9112 7.1).
// Trailers are read and ignored; chunk extensions are ignored.
class ChunkedDecoder {
 public:
  // Feed(in, out): consumes bytes of the coded stream, appends decoded bytes to *out.
  // InvalidArgument on a malformed chunk size (chunk-size is 1*HEXDIG: no sign, no "0x"), a
  // line over 4096 bytes, or a missing CRLF. Errors are sticky: every later Feed() returns
  // the same error. The result does not depend on how the stream is split across calls.
  absl::Status Feed(absl::string_view in, std::string* out);
  // done(): the last chunk and the trailer section have been read.
  bool done() const { return state_ == State::kDone; }

 private:
  absl::Status FeedSome(absl::string_view in, std::string* out);

  enum class State { kSize, kData, kDataCrlf, kTrailer, kDone };
  absl::Status error_;
  State state_ = State::kSize;
  std::string line_;
  uint64_t remaining_ = 0;
};

// UnixHttpClient: requests to one unix socket path. Thread-compatible; each call opens its
// own connection.
class UnixHttpClient {
 public:
  explicit UnixHttpClient(std::string socket_path) : socket_path_(std::move(socket_path)) {}

  // Get(path, deadline): GET with the body kept in memory (at most max_body bytes, else
  // ResourceExhausted). Unavailable when the socket cannot be connected (ENOENT,
  // ECONNREFUSED), DeadlineExceeded past `deadline`, DataLoss on a truncated response.
  absl::StatusOr<HttpResponse> Get(absl::string_view path, absl::Time deadline,
                                   int64_t max_body = 1 << 20) const;

  // GetToFile(path, out_fd, deadline): GET whose 2xx body is written to `out_fd`; a non-2xx
  // body is kept in memory instead (for the error message). Same errors as Get.
  absl::StatusOr<HttpResponse> GetToFile(absl::string_view path, int out_fd,
                                         absl::Time deadline) const;

  // PostFile(path, content_type, in_fd, deadline): POST with the body streamed from `in_fd`
  // (read to EOF, sent with chunked transfer coding); response body in memory (<= 1 MiB).
  absl::StatusOr<HttpResponse> PostFile(absl::string_view path, absl::string_view content_type,
                                        int in_fd, absl::Time deadline) const;

 private:
  absl::StatusOr<HttpResponse> Do(absl::string_view method, absl::string_view path,
                                  absl::string_view content_type, int in_fd, int out_fd,
                                  int64_t max_body, absl::Time deadline) const;
  std::string socket_path_;
};

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_UNIX_HTTP_H_
