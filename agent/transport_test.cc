#include "agent/transport.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "agent/connection.h"
#include "agent/protocol/stream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::AnyOf;
using ::testing::HasSubstr;

// TempDir: a fresh directory under /tmp (TEST_TMPDIR is too long for a unix socket's
// 108-byte sun_path).
std::string TempDir() {
  std::string t = "/tmp/kiln-agent-test-XXXXXX";
  return mkdtemp(t.data());
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A fake /sys with two virtio-serial ports.
class VirtioPortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = TempDir();
    const std::string ports = root_ + "/sys/class/virtio-ports";
    ASSERT_EQ(system(("mkdir -p " + ports + "/vport0p0 " + ports + "/vport1p1 " + ports +
                      "/vport1p2 " + root_ + "/dev")
                         .c_str()),
              0);
    WriteFile(ports + "/vport0p0/name", "org.qemu.guest_agent.0\n");
    WriteFile(ports + "/vport1p1/name", "kiln.agent\n");
    WriteFile(ports + "/vport1p2/name", "");  // unnamed port
  }
  std::string root_;
};

TEST_F(VirtioPortTest, FindsThePortByName) {
  EXPECT_THAT(FindVirtioPort(root_ + "/sys", "kiln.agent"), 
              ::testing::Eq(absl::StatusOr<std::string>("/dev/vport1p1")));
  ASSERT_OK_AND_ASSIGN(std::string p, FindVirtioPort(root_ + "/sys", "kiln.agent", "/x/dev"));
  EXPECT_EQ(p, "/x/dev/vport1p1");
}

TEST_F(VirtioPortTest, UnknownNameListsThePorts) {
  EXPECT_THAT(FindVirtioPort(root_ + "/sys", "kiln.other"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("ports: [vport0p0=org.qemu.guest_agent.0, "
                                 "vport1p1=kiln.agent, vport1p2=(unnamed)]")));
}

TEST_F(VirtioPortTest, NoClassDirectory) {
  EXPECT_THAT(FindVirtioPort(root_ + "/nosys", "kiln.agent"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("is virtio_console loaded?")));
}

TEST_F(VirtioPortTest, EmptyName) {
  EXPECT_THAT(FindVirtioPort(root_ + "/sys", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST_F(VirtioPortTest, OpensTheNodeAndMovesBytes) {
  // A FIFO stands in for /dev/vport1p1: opened O_RDWR, what we write comes back.
  ASSERT_EQ(mkfifo((root_ + "/dev/vport1p1").c_str(), 0600), 0);
  ASSERT_OK_AND_ASSIGN(auto s, OpenVirtioSerial(root_ + "/sys", "kiln.agent", root_ + "/dev"));
  ASSERT_OK(s->Write("frame bytes", 1000));
  char buf[32];
  ASSERT_OK_AND_ASSIGN(size_t n, s->Read(buf, sizeof(buf), 1000));
  EXPECT_EQ(std::string(buf, n), "frame bytes");
}

TEST_F(VirtioPortTest, MissingNode) {
  EXPECT_THAT(OpenVirtioSerial(root_ + "/sys", "kiln.agent", root_ + "/dev"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("open virtio-serial port")));
}

TEST(FdStream, ReadDeadlineEofAndClosedPeer) {
  ASSERT_OK_AND_ASSIGN(auto pair, StreamPair());
  char c;
  EXPECT_THAT(pair.first->Read(&c, 1, 20), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                                    HasSubstr("deadline exceeded")));
  ASSERT_OK(pair.second->Close());
  ASSERT_OK_AND_ASSIGN(size_t n, pair.first->Read(&c, 1, 1000));
  EXPECT_EQ(n, 0u);  // EOF
  EXPECT_THAT(pair.first->Write("x", 1000), StatusIs(absl::StatusCode::kUnavailable,
                                                     HasSubstr("peer closed")));
  EXPECT_OK(pair.first->Close());
  EXPECT_OK(pair.first->Close());  // idempotent
  EXPECT_THAT(pair.first->Read(&c, 1, 0), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("closed")));
}

TEST(FdStream, WriteDeadlineWhenThePeerDoesNotRead) {
  ASSERT_OK_AND_ASSIGN(auto pair, StreamPair());
  EXPECT_THAT(pair.first->Write(std::string(16 << 20, 'x'), 50),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("write")));
}

TEST(ConnectUnix, Errors) {
  EXPECT_THAT(ConnectUnix(TempDir() + "/absent.sock", 60),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("not connectable within 60 ms")));
  EXPECT_THAT(ConnectUnix(std::string(200, 'a'), 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be 1..107 bytes")));
}

TEST(HybridVsock, ParseReply) {
  ASSERT_OK_AND_ASSIGN(uint32_t port, ParseHybridVsockReply("OK 1073741824\n"));
  EXPECT_EQ(port, 1073741824u);
  EXPECT_THAT(ParseHybridVsockReply("ERR no listener\n"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("got \"ERR no listener\\n\"")));
  EXPECT_THAT(ParseHybridVsockReply("OK \n"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("OK")));
  EXPECT_THAT(ParseHybridVsockReply("OK x\n"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("OK x")));
}

// A fake Cloud Hypervisor vsock socket: reads "CONNECT <port>\n" and answers `reply`.
class FakeHybridVsock {
 public:
  FakeHybridVsock(std::string reply, std::string after = "") {
    path_ = TempDir() + "/vsock.sock";
    listener_ = *UnixListener::Listen(path_);
    thread_ = std::thread([this, reply, after] {
      auto s = listener_->Accept(5000);
      if (!s.ok()) return;
      std::string line;
      char c;
      while (line.size() < 100) {
        auto n = (*s)->Read(&c, 1, 5000);
        if (!n.ok() || *n == 0) break;
        line.push_back(c);
        if (c == '\n') break;
      }
      request_ = line;
      (void)(*s)->Write(reply + after, 5000);
      char drain[16];
      (void)(*s)->Read(drain, sizeof(drain), 2000);  // until the client closes
    });
  }
  ~FakeHybridVsock() { thread_.join(); }
  const std::string& path() const { return path_; }
  std::string request() { return request_; }

 private:
  std::string path_;
  std::unique_ptr<UnixListener> listener_;
  std::thread thread_;
  std::string request_;
};

TEST(HybridVsock, HandshakeThenFramesFlow) {
  // The agent's first frame arrives in the same segment as the OK line: it must not be lost.
  const std::string frame = EncodeFrame(*EncodeMessage(Ready{}));
  FakeHybridVsock ch("OK 1073741825\n", frame);
  {
    ASSERT_OK_AND_ASSIGN(auto s, ConnectHybridVsock(ch.path(), 1024, 5000));
    Connection conn(s.get());
    ASSERT_OK_AND_ASSIGN(Frame f, conn.ReadFrame(5000));
    EXPECT_OK(DecodeAs<Ready>(f));
  }
  EXPECT_EQ(ch.request(), "CONNECT 1024\n");
}

TEST(HybridVsock, RefusedWhenNoGuestListener) {
  FakeHybridVsock ch("");  // CH closes the connection
  EXPECT_THAT(ConnectHybridVsock(ch.path(), 7, 5000),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no guest listener on port 7")));
}

TEST(HybridVsock, BadReply) {
  FakeHybridVsock ch("NOPE\n");
  EXPECT_THAT(ConnectHybridVsock(ch.path(), 7, 5000),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("expected \"OK <port>\"")));
}

TEST(HybridVsock, OverlongReply) {
  FakeHybridVsock ch(std::string(100, 'O'));
  EXPECT_THAT(ConnectHybridVsock(ch.path(), 7, 5000),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 64 bytes")));
}

TEST(Vsock, ListenerAcceptTimesOutOrListenFailsCleanly) {
  // This host may or may not have AF_VSOCK; either way the answer is a Status, and with vsock
  // an Accept with nobody connecting times out. (Guest-side data flow is covered by VM tests.)
  absl::StatusOr<std::unique_ptr<VsockListener>> l = VsockListener::Listen(49152 + getpid() % 1000);
  if (!l.ok()) {
    EXPECT_THAT(l.status().message(), HasSubstr("vsock port"));
    return;
  }
  EXPECT_THAT((*l)->Accept(30), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("vsock port")));
}

// Framing over a real unix socket: a host thread streams a 3 MiB blob and messages.
TEST(ConnectionOverUnixSocket, StreamsAndMessages) {
  const std::string path = TempDir() + "/agent.sock";
  ASSERT_OK_AND_ASSIGN(auto listener, UnixListener::Listen(path));
  std::string blob(3 * kMaxPayload + 5, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 7 + (i >> 12));
  std::thread host([&] {
    auto s = ConnectUnix(path, 5000);
    ASSERT_OK(s.status());
    Connection conn(s->get());
    ASSERT_OK(conn.Send(Ping{5}, 5000));
    ASSERT_OK(conn.SendBytes(1, blob, 5000));
    ASSERT_OK(conn.Send(Ping{6}, 5000));
  });
  ASSERT_OK_AND_ASSIGN(auto s, listener->Accept(5000));
  Connection conn(s.get());
  ASSERT_OK_AND_ASSIGN(Frame f, conn.ReadFrame(5000));
  ASSERT_OK_AND_ASSIGN(Ping p, DecodeAs<Ping>(f));
  EXPECT_EQ(p.nonce, 5u);
  StreamReceiver rx;
  StringSink sink;
  ASSERT_OK(rx.Expect(1, blob.size(), &sink));
  while (!rx.Done(1)) {
    ASSERT_OK_AND_ASSIGN(Frame c, conn.ReadFrame(5000));
    ASSERT_OK(rx.OnFrame(c));
  }
  EXPECT_TRUE(sink.data() == blob);
  ASSERT_OK_AND_ASSIGN(Frame g, conn.ReadFrame(5000));
  EXPECT_EQ(DecodeAs<Ping>(g)->nonce, 6u);
  host.join();
  EXPECT_THAT(conn.ReadFrame(5000), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("peer closed")));
}

TEST(Connection, GarbageAndTruncation) {
  ASSERT_OK_AND_ASSIGN(auto pair, StreamPair());
  Connection conn(pair.second.get());
  ASSERT_OK(pair.first->Write("GET / HTTP/1.1\r\n", 1000));
  EXPECT_THAT(conn.ReadFrame(1000), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bad magic")));

  ASSERT_OK_AND_ASSIGN(auto pair2, StreamPair());
  Connection conn2(pair2.second.get());
  std::string w = EncodeFrame(*EncodeMessage(Ping{1}));
  ASSERT_OK(pair2.first->Write(w.substr(0, w.size() - 2), 1000));
  ASSERT_OK(pair2.first->Close());
  EXPECT_THAT(conn2.ReadFrame(1000), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
}

TEST(Connection, SendFdStreamsAFile) {
  const std::string path = TempDir() + "/image.tar";
  WriteFile(path, std::string(kMaxPayload + 10, 'i'));
  ASSERT_OK_AND_ASSIGN(auto pair, StreamPair());
  Connection tx(pair.first.get()), rx_conn(pair.second.get());
  std::thread t([&] {
    FILE* f = fopen(path.c_str(), "r");
    auto n = tx.SendFd(2, fileno(f), 5000);
    EXPECT_THAT(n, ::testing::Eq(absl::StatusOr<uint64_t>(kMaxPayload + 10)));
    fclose(f);
  });
  StreamReceiver rx;
  StringSink sink;
  ASSERT_OK(rx.Expect(2, 1 << 30, &sink));
  while (!rx.Done(2)) {
    ASSERT_OK_AND_ASSIGN(Frame c, rx_conn.ReadFrame(5000));
    ASSERT_OK(rx.OnFrame(c));
  }
  t.join();
  EXPECT_EQ(sink.data().size(), kMaxPayload + 10);
}

}  // namespace
}  // namespace kiln::agent
