// CurlTransport against canned loopback servers: response caps, stall timeout, redirects.
#include "publish/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::publish {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

// CannedServer: on 127.0.0.1, answers every connection with `response` (after reading the
// request head), then, when `hold` is set, keeps the connection open until destroyed.
class CannedServer {
 public:
  CannedServer(std::string response, bool hold = false)
      : response_(std::move(response)), hold_(hold) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    listen(fd_, 8);
    thread_ = std::thread([this] { Loop(); });
  }
  ~CannedServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
    for (std::thread& t : conns_) t.join();
  }
  std::string Url(absl::string_view path = "/x") const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }
  int port() const { return port_; }
  int connections() const { return connections_; }

 private:
  void Loop() {
    while (!stop_) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      ++connections_;
      conns_.emplace_back([this, c] {
        std::string head;
        char buf[4096];
        while (head.find("\r\n\r\n") == std::string::npos) {
          ssize_t n = read(c, buf, sizeof(buf));
          if (n <= 0) break;
          head.append(buf, static_cast<size_t>(n));
        }
        size_t off = 0;
        while (off < response_.size()) {
          ssize_t n = send(c, response_.data() + off, response_.size() - off, MSG_NOSIGNAL);
          if (n <= 0) break;
          off += static_cast<size_t>(n);
        }
        while (hold_ && !stop_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        close(c);
      });
    }
  }
  std::string response_;
  bool hold_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
  std::vector<std::thread> conns_;
};

std::string Response(absl::string_view status_and_headers, absl::string_view body) {
  return absl::StrCat("HTTP/1.1 ", status_and_headers, "\r\nContent-Length: ", body.size(),
                      "\r\nConnection: close\r\n\r\n", body);
}

TEST(CurlTransportTest, BodyCapIsExact) {
  const std::string body(1000, 'b');
  CannedServer server(Response("200 OK", body));
  CurlTransport http({});
  HttpRequest req{.method = "GET", .url = server.Url()};
  req.max_response_bytes = 1000;
  ASSERT_OK_AND_ASSIGN(HttpResponse resp, http.Do(req));
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body, body);
  req.max_response_bytes = 999;
  EXPECT_THAT(http.Do(req), StatusIs(absl::StatusCode::kResourceExhausted,
                                     HasSubstr("response body exceeds 999 bytes")));
}

TEST(CurlTransportTest, HeadOfAHugeBlobIsNotCapped) {
  // A HEAD reply announces the blob's size; only bodies read into memory are capped.
  CannedServer server("HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n"
                      "Docker-Content-Digest: sha256:x\r\nConnection: close\r\n\r\n");
  CurlTransport http({});
  ASSERT_OK_AND_ASSIGN(HttpResponse resp, http.Do({.method = "HEAD", .url = server.Url()}));
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.Header("docker-content-digest"), "sha256:x");
}

TEST(CurlTransportTest, RedirectIsReturnedNotFollowed) {
  CannedServer elsewhere(Response("200 OK", "leaked"));
  CannedServer server(Response(absl::StrCat("307 Temporary Redirect\r\nLocation: ",
                                            elsewhere.Url("/steal")),
                               ""));
  CurlTransport http({});
  HttpRequest req{.method = "PUT", .url = server.Url(), .body = "data"};
  req.headers = {{"Authorization", "Basic dTpw"}};
  ASSERT_OK_AND_ASSIGN(HttpResponse resp, http.Do(req));
  EXPECT_EQ(resp.status, 307);
  EXPECT_EQ(resp.Header("location"), elsewhere.Url("/steal"));
  EXPECT_EQ(elsewhere.connections(), 0);
}

TEST(CurlTransportTest, StallAfterHeadersIsDeadlineExceeded) {
  CannedServer server("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", /*hold=*/true);
  CurlTransport http({.stall_timeout_ms = 500});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(http.Do({.method = "GET", .url = server.Url()}),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("nothing sent or received for 500 ms (stall timeout)")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

// TransportOptions::timeout bounds the whole request, even one whose bytes trickle in.
TEST(CurlTransportTest, TotalTimeoutIsDeadlineExceeded) {
  CannedServer server("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", /*hold=*/true);
  CurlTransport http({.stall_timeout_ms = 0, .timeout = absl::Milliseconds(300)});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(http.Do({.method = "GET", .url = server.Url()}),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("timeout 300ms")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

// Over a unix socket (Cloud Hypervisor's API): a missing socket is Unavailable, naming it.
TEST(CurlTransportTest, MissingUnixSocketIsUnavailableAndNamed) {
  CurlTransport http({.unix_socket_path = "/nonexistent/kiln-api.sock",
                      .timeout = absl::Seconds(2)});
  EXPECT_THAT(http.Do({.method = "GET", .url = "http://localhost/api/v1/vmm.ping"}),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("GET http://localhost/api/v1/vmm.ping on "
                                 "/nonexistent/kiln-api.sock")));
}

TEST(CurlTransportTest, OversizedHeadersAreResourceExhausted) {
  std::string headers = "HTTP/1.1 200 OK\r\n";
  while (headers.size() < static_cast<size_t>(kMaxResponseHeaderBytes) + 1000)
    absl::StrAppend(&headers, "X-Pad: ", std::string(200, 'a'), "\r\n");
  CannedServer server(headers + "Content-Length: 0\r\n\r\n", /*hold=*/true);
  CurlTransport http({});
  EXPECT_THAT(http.Do({.method = "GET", .url = server.Url()}),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("headers exceed")));
}

TEST(CurlTransportTest, OnlyHttpAndHttpsAreSpoken) {
  CurlTransport http({});
  EXPECT_THAT(http.Do({.method = "GET", .url = "file:///etc/passwd"}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("file")));
}

}  // namespace
}  // namespace kiln::publish
