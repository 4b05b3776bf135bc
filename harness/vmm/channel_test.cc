// File: harness/vmm/channel_test.cc
// ConnectChannelOnce over real unix sockets (a thread plays QEMU's chardev or CH's vsock
// muxer): both transports carry bytes, the hybrid vsock handshake consumes exactly its reply
// line, and each bad peer (garbage reply, early close, no socket, overlong path) gives its
// documented code, retryable or not.
#include "harness/vmm/channel.h"

#include <stdlib.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string ShortTmpDir() {
  char templ[] = "/tmp/kiln-chan-XXXXXX";
  EXPECT_NE(mkdtemp(templ), nullptr);
  return templ;
}

// Peer: listens on `path` and runs `serve` on the first accepted stream, in a thread.
class Peer {
 public:
  Peer(const std::string& path, std::function<void(agent::FdStream&)> serve) {
    listener_ = std::move(agent::UnixListener::Listen(path).value());
    thread_ = std::thread([this, serve] {
      absl::StatusOr<std::unique_ptr<agent::FdStream>> s = listener_->Accept(5000);
      if (s.ok()) serve(**s);
    });
  }
  ~Peer() { thread_.join(); }

 private:
  std::unique_ptr<agent::UnixListener> listener_;
  std::thread thread_;
};

// ReadLine(s): bytes up to and including '\n' (or what came before EOF / 2 s).
std::string ReadLine(agent::FdStream& s) {
  std::string line;
  char c;
  while (line.size() < 128) {
    absl::StatusOr<size_t> n = s.Read(&c, 1, 2000);
    if (!n.ok() || *n == 0) break;
    line.push_back(c);
    if (c == '\n') break;
  }
  return line;
}

std::string ReadN(agent::ByteStream& s, size_t want) {
  std::string out;
  char buf[256];
  while (out.size() < want) {
    absl::StatusOr<size_t> n = s.Read(buf, std::min(sizeof(buf), want - out.size()), 2000);
    if (!n.ok() || *n == 0) break;
    out.append(buf, *n);
  }
  return out;
}

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = ShortTmpDir(); }
  void TearDown() override { (void)system(absl::StrCat("rm -rf '", dir_, "'").c_str()); }
  std::string dir_;
};

TEST_F(ChannelTest, VirtioSerialCarriesBytesWithoutAHandshake) {
  const std::string sock = dir_ + "/agent.sock";
  std::string first;
  {
    Peer qemu(sock, [&](agent::FdStream& s) {
      first = ReadN(s, 4);
      (void)s.Write("pong", 1000);
    });
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<agent::FdStream> s,
                         ConnectChannelOnce({ChannelTransport::kVirtioSerial, sock}, 2000));
    ASSERT_THAT(s->Write("ping", 1000), IsOk());
    EXPECT_EQ(ReadN(*s, 4), "pong");
  }
  EXPECT_EQ(first, "ping");  // no CONNECT line in front
}

TEST_F(ChannelTest, HybridVsockHandshakeConsumesOnlyTheReplyLine) {
  const std::string sock = dir_ + "/vsock.sock";
  std::string connect_line, after;
  {
    Peer ch(sock, [&](agent::FdStream& s) {
      connect_line = ReadLine(s);
      // The reply and the guest's first bytes in one write: the client must not eat them.
      (void)s.Write("OK 1073741824\nREADY", 1000);
      after = ReadN(s, 5);
    });
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<agent::FdStream> s,
        ConnectChannelOnce({ChannelTransport::kHybridVsock, sock, 5000}, 2000));
    EXPECT_EQ(ReadN(*s, 5), "READY");
    ASSERT_THAT(s->Write("hello", 1000), IsOk());
  }
  EXPECT_EQ(connect_line, "CONNECT 5000\n");
  EXPECT_EQ(after, "hello");
}

TEST_F(ChannelTest, GarbageReplyIsAFinalErrorNamingTheReply) {
  const std::string sock = dir_ + "/vsock.sock";
  Peer not_ch(sock, [&](agent::FdStream& s) {
    (void)ReadLine(s);
    (void)s.Write("HTTP/1.1 400 Bad Request\n", 1000);
  });
  const absl::Time t0 = absl::Now();
  absl::StatusOr<std::unique_ptr<agent::FdStream>> s =
      ConnectChannelOnce({ChannelTransport::kHybridVsock, sock, 1024}, 2000);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition,
                          AllOf(HasSubstr("hybrid-vsock " + sock + " port 1024"),
                                HasSubstr("HTTP/1.1 400 Bad Request"))));
  EXPECT_FALSE(IsRetryableConnectError(s.status()));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
}

TEST_F(ChannelTest, EarlyCloseMeansNoGuestListenerYetAndIsRetryable) {
  const std::string sock = dir_ + "/vsock.sock";
  Peer ch(sock, [&](agent::FdStream& s) {
    (void)ReadLine(s);
    (void)s.Close();  // what CH does when the guest refuses the port
  });
  absl::StatusOr<std::unique_ptr<agent::FdStream>> s =
      ConnectChannelOnce({ChannelTransport::kHybridVsock, sock, 1024}, 2000);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("port 1024")));
  EXPECT_TRUE(IsRetryableConnectError(s.status()));
}

TEST_F(ChannelTest, SilentPeerTimesOut) {
  const std::string sock = dir_ + "/vsock.sock";
  Peer mute(sock, [&](agent::FdStream& s) { (void)ReadN(s, 1000); });
  const absl::Time t0 = absl::Now();
  absl::StatusOr<std::unique_ptr<agent::FdStream>> s =
      ConnectChannelOnce({ChannelTransport::kHybridVsock, sock, 1024}, 200);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("port 1024")));
  EXPECT_TRUE(IsRetryableConnectError(s.status()));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
}

TEST_F(ChannelTest, MissingSocketTimesOutForBothTransports) {
  for (ChannelTransport t : {ChannelTransport::kVirtioSerial, ChannelTransport::kHybridVsock}) {
    SCOPED_TRACE(ChannelTransportName(t));
    absl::StatusOr<std::unique_ptr<agent::FdStream>> s =
        ConnectChannelOnce({t, dir_ + "/nobody.sock"}, 100);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("nobody.sock")));
    EXPECT_TRUE(IsRetryableConnectError(s.status()));
  }
}

TEST_F(ChannelTest, BadInputIsRefusedAndNotRetried) {
  absl::StatusOr<std::unique_ptr<agent::FdStream>> s =
      ConnectChannelOnce({ChannelTransport::kHybridVsock, "/tmp/" + std::string(200, 'x')}, 100);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bytes")));
  EXPECT_FALSE(IsRetryableConnectError(s.status()));
  EXPECT_THAT(ConnectChannelOnce({ChannelTransport::kVirtioSerial, ""}, 100),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unix socket path")));
  EXPECT_THAT(ConnectChannelOnce({ChannelTransport::kVirtioSerial, dir_ + "/a.sock"}, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeout")));
  // An overlong reply line (64 bytes without '\n') is final too.
  const std::string sock = dir_ + "/vsock.sock";
  Peer chatty(sock, [&](agent::FdStream& s) {
    (void)ReadLine(s);
    (void)s.Write(std::string(100, 'O'), 1000);
  });
  s = ConnectChannelOnce({ChannelTransport::kHybridVsock, sock, 1024}, 2000);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("64 bytes")));
  EXPECT_FALSE(IsRetryableConnectError(s.status()));
}

TEST(IsRetryableConnectErrorTest, Table) {
  struct Row {
    absl::Status status;
    bool retryable;
  };
  const Row rows[] = {
      {absl::OkStatus(), false},
      {absl::DeadlineExceededError("x"), true},
      {absl::UnavailableError("x"), true},
      {absl::NotFoundError("x"), true},
      {PosixError(ECONNREFUSED, "connect", "/s"), true},
      {absl::InvalidArgumentError("x"), false},
      {absl::FailedPreconditionError("x"), false},
      {PosixError(EACCES, "connect", "/s"), false},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.status.ToString());
    EXPECT_EQ(IsRetryableConnectError(r.status), r.retryable);
  }
}

TEST(ChannelAddressTest, ForAndDescribe) {
  Channel c{"kiln.agent", "/tmp/s/agent.sock", 3, 2048};
  ChannelAddress v = ChannelAddressFor(c, ChannelTransport::kVirtioSerial);
  EXPECT_EQ(v.socket_path, "/tmp/s/agent.sock");
  EXPECT_EQ(DescribeChannelAddress(v), "virtio-serial /tmp/s/agent.sock");
  ChannelAddress h = ChannelAddressFor(c, ChannelTransport::kHybridVsock);
  EXPECT_EQ(h.vsock_port, 2048u);
  EXPECT_EQ(DescribeChannelAddress(h), "hybrid-vsock /tmp/s/agent.sock port 2048");
}

}  // namespace
}  // namespace kiln::harness
