#include "agent/runner/unix_http.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent::runner {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

TEST(ParseResponseHeadTest, GoodAndBad) {
  HttpResponse r;
  ASSERT_THAT(ParseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.41", &r),
              IsOk());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-length"], "2");
  EXPECT_EQ(r.headers["api-version"], "1.41");
  for (const char* bad : {"", "HTTP/2 200 OK", "HTTP/1.1 2x0 OK", "HTTP/1.1 200 OK\r\nnocolon",
                          "SSH-2.0-OpenSSH"}) {
    SCOPED_TRACE(bad);
    HttpResponse x;
    EXPECT_THAT(ParseResponseHead(bad, &x), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  }
}

TEST(ChunkedDecoderTest, WholeAndByteByByte) {
  const std::string coded = "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
  {
    ChunkedDecoder d;
    std::string out;
    ASSERT_THAT(d.Feed(coded, &out), IsOk());
    EXPECT_TRUE(d.done());
    EXPECT_EQ(out, "Wikipedia in\r\n\r\nchunks.");
  }
  ChunkedDecoder d;
  std::string out;
  for (char c : coded) ASSERT_THAT(d.Feed(std::string(1, c), &out), IsOk());
  EXPECT_TRUE(d.done());
  EXPECT_EQ(out, "Wikipedia in\r\n\r\nchunks.");
}

TEST(ChunkedDecoderTest, Malformed) {
  for (const char* bad : {"zz\r\n", "4\r\nWikiXX\r\n", "\r\n", "12345678901234567\r\n",
                          "0x5\r\nhello\r\n", "+5\r\nhello\r\n"}) {
    SCOPED_TRACE(bad);
    ChunkedDecoder d;
    std::string out;
    EXPECT_THAT(d.Feed(bad, &out), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  }
}

// Found by chunked_fuzzer: an error was not sticky, so a caller feeding on got bytes decoded
// from a half-consumed, inconsistent state.
TEST(ChunkedDecoderTest, ErrorsAreSticky) {
  ChunkedDecoder d;
  std::string out;
  EXPECT_FALSE(d.Feed("zz\r\n", &out).ok());
  EXPECT_THAT(d.Feed("5\r\nhello\r\n0\r\n\r\n", &out),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("zz")));
  EXPECT_EQ(out, "");
  EXPECT_FALSE(d.done());
}

// OneShotServer: accepts one connection, reads the request head, records it, writes `reply`.
class OneShotServer {
 public:
  explicit OneShotServer(std::string reply) : reply_(std::move(reply)) {
    char tmpl[] = "/tmp/kiln-http-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/s.sock";
    fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {};
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, path_.c_str());
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd_, 1);
    thread_ = std::thread([this] {
      int c = accept(fd_, nullptr, nullptr);
      char buf[65536];
      while (request_.find("\r\n\r\n") == std::string::npos ||
             (request_.find("chunked") != std::string::npos &&
              request_.find("\r\n0\r\n\r\n") == std::string::npos)) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0) break;
        request_.append(buf, n);
      }
      (void)!write(c, reply_.data(), reply_.size());
      close(c);
    });
  }
  ~OneShotServer() {
    thread_.join();
    close(fd_);
    std::system(("rm -rf " + dir_).c_str());
  }
  const std::string& path() const { return path_; }
  std::string request() {
    thread_.join();
    thread_ = std::thread([] {});
    return request_;
  }

 private:
  std::string reply_, dir_, path_, request_;
  int fd_;
  std::thread thread_;
};

absl::Time Soon() { return absl::Now() + absl::Seconds(5); }

TEST(UnixHttpClientTest, GetContentLength) {
  OneShotServer s("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKtrailing-garbage");
  ASSERT_OK_AND_ASSIGN(HttpResponse r, UnixHttpClient(s.path()).Get("/_ping", Soon()));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "OK");
  EXPECT_THAT(s.request(), HasSubstr("GET /_ping HTTP/1.1\r\n"));
}

TEST(UnixHttpClientTest, GetChunkedToFile) {
  OneShotServer s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  char tmpl[] = "/tmp/kiln-http-out-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_OK_AND_ASSIGN(HttpResponse r,
                       UnixHttpClient(s.path()).GetToFile("/images/a:1/get", fd, Soon()));
  close(fd);
  EXPECT_EQ(r.body_bytes, 5);
  std::ifstream in(tmpl);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "abcde");
  unlink(tmpl);
}

TEST(UnixHttpClientTest, PostFileSendsChunkedBody) {
  OneShotServer s("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"stream\":\"Loaded\"}");
  char tmpl[] = "/tmp/kiln-http-in-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_EQ(write(fd, "TARDATA", 7), 7);
  lseek(fd, 0, SEEK_SET);
  ASSERT_OK_AND_ASSIGN(HttpResponse r, UnixHttpClient(s.path()).PostFile(
                                           "/images/load?quiet=1", "application/x-tar", fd, Soon()));
  close(fd);
  unlink(tmpl);
  EXPECT_EQ(r.body, "{\"stream\":\"Loaded\"}");  // read until close
  std::string req = s.request();
  EXPECT_THAT(req, HasSubstr("POST /images/load?quiet=1 HTTP/1.1\r\n"));
  EXPECT_THAT(req, HasSubstr("Transfer-Encoding: chunked\r\n"));
  EXPECT_THAT(req, HasSubstr("\r\n7\r\nTARDATA\r\n0\r\n\r\n"));
}

TEST(UnixHttpClientTest, TruncatedBodyIsDataLoss) {
  OneShotServer s("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
  EXPECT_THAT(UnixHttpClient(s.path()).Get("/x", Soon()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
}

TEST(UnixHttpClientTest, MissingSocketIsUnavailable) {
  EXPECT_THAT(UnixHttpClient("/nonexistent/kiln.sock").Get("/_ping", Soon()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("/nonexistent/kiln.sock")));
}

}  // namespace
}  // namespace kiln::agent::runner
