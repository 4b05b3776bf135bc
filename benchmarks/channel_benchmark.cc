// channel_benchmark: the host side of the agent channel (harness/vmm/channel.h), Cloud Hypervisor's
// hybrid vsock against its peer, the plain unix socket of QEMU's virtio-serial chardev, in the
// same run. Both are served on loopback unix sockets by threads of this process:
//
//   connect/<transport>     ConnectChannelOnce + close: connect(2), and for hybrid vsock the
//                           "CONNECT <port>\n" / "OK <n>\n" exchange (read byte by byte)
//   session/<transport>     a host's first request: connect, Hello -> Ready from a real
//                           AgentSession (//agent:server), Ping -> Pong, close (what
//                           `kilnctl builders exec` pays before its command starts)
//
// Report the hybrid-vsock / virtio-serial ratio of each pair. Under a real CH the muxer adds
// its own hop; this measures kiln's client code and the handshake, not the VMM.
//
//   bazel run -c opt //benchmarks:channel_benchmark
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/connection.h"
#include "agent/server.h"
#include "agent/transport.h"
#include "benchmark/benchmark.h"
#include "harness/vmm/channel.h"

namespace kiln::harness {
namespace {

// Server: a unix socket listener; per connection, optionally the hybrid vsock handshake, then
// either an agent session (serve_agent) or a wait for the client's close.
class Server {
 public:
  Server(bool hybrid_vsock, bool serve_agent) : hybrid_(hybrid_vsock), agent_(serve_agent) {
    char tmpl[] = "/tmp/kiln-chbench-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/s.sock";
    listener_ = std::move(*agent::UnixListener::Listen(path_));
    thread_ = std::thread([this] { Loop(); });
  }
  ~Server() {
    stop_ = true;
    thread_.join();
    listener_.reset();
    rmdir(dir_.c_str());
  }
  ChannelAddress address() const {
    return {hybrid_ ? ChannelTransport::kHybridVsock : ChannelTransport::kVirtioSerial, path_,
            1024};
  }

 private:
  void Loop() {
    while (!stop_) {
      absl::StatusOr<std::unique_ptr<agent::FdStream>> s = listener_->Accept(50);
      if (!s.ok()) continue;
      if (hybrid_ && !Handshake(**s)) continue;
      if (agent_) {
        agent::Connection conn(s->get());
        agent::AgentSession session(&conn, agent::AgentOptions{});
        (void)session.Serve();  // until the host closes
      } else {
        char c;
        (void)(*s)->Read(&c, 1, 1000);  // until the host closes
      }
    }
  }
  // Handshake: the muxer's side: the CONNECT line (the client sends nothing else before the
  // reply, so whole reads are safe), then "OK <n>".
  static bool Handshake(agent::FdStream& s) {
    std::string line;
    char buf[64];
    while (line.find('\n') == std::string::npos && line.size() < 64) {
      absl::StatusOr<size_t> n = s.Read(buf, sizeof(buf), 1000);
      if (!n.ok() || *n == 0) return false;
      line.append(buf, *n);
    }
    return s.Write("OK 1073741824\n", 1000).ok();
  }

  bool hybrid_, agent_;
  std::string dir_, path_;
  std::unique_ptr<agent::UnixListener> listener_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

void BM_Connect(benchmark::State& state, bool hybrid) {
  Server server(hybrid, /*serve_agent=*/false);
  for (auto _ : state) {
    absl::StatusOr<std::unique_ptr<agent::FdStream>> s =
        ConnectChannelOnce(server.address(), 5000);
    if (!s.ok()) {
      state.SkipWithError(std::string(s.status().message()).c_str());
      break;
    }
    (void)(*s)->Close();
  }
}

void BM_Session(benchmark::State& state, bool hybrid) {
  Server server(hybrid, /*serve_agent=*/true);
  uint64_t nonce = 0;
  for (auto _ : state) {
    absl::StatusOr<std::unique_ptr<agent::FdStream>> s =
        ConnectChannelOnce(server.address(), 5000);
    if (!s.ok()) {
      state.SkipWithError(std::string(s.status().message()).c_str());
      break;
    }
    agent::Connection conn(s->get());
    absl::StatusOr<agent::Ready> ready = agent::HostHandshake(conn, "channel_benchmark", 5000);
    absl::Status sent = ready.ok() ? conn.Send(agent::Ping{++nonce}, 5000) : ready.status();
    absl::StatusOr<agent::Frame> pong =
        sent.ok() ? conn.ReadFrame(5000) : absl::StatusOr<agent::Frame>(sent);
    if (!pong.ok()) {
      state.SkipWithError(std::string(pong.status().message()).c_str());
      break;
    }
    (void)(*s)->Close();
  }
}

BENCHMARK_CAPTURE(BM_Connect, virtio_serial, false)->UseRealTime();
BENCHMARK_CAPTURE(BM_Connect, hybrid_vsock, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_Session, virtio_serial, false)->UseRealTime();
BENCHMARK_CAPTURE(BM_Session, hybrid_vsock, true)->UseRealTime();

}  // namespace
}  // namespace kiln::harness
