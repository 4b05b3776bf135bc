// File: agent/vsock_check_main.cc
// kiln-vsock-check: proves, inside a real guest kernel, the agent's AF_VSOCK channel (the one
// Cloud Hypervisor's hybrid vsock reaches; `kiln-agent --channel=vsock:<port>`). It starts the
// agent on vsock, connects to it through VMADDR_CID_LOCAL (the vsock_loopback transport, so
// no VMM vsock device is needed: QEMU under TCG here has none), and runs a protocol session:
// Hello -> Ready, Ping -> Pong, close; then the agent (--once) must exit 0.
//
// It is the program (kiln.exec) of the `agent-vsock` VM scenario (harness/scenarios/scenarios.h) and
// prints KILN-CHECK lines (docs/interfaces.md):
//
//   KILN-CHECK vsock.connect ok cid=1 port=<port> ms=<connect time>
//   KILN-CHECK vsock.ready <agent version> caps=<c1,c2>
//   KILN-CHECK vsock.pong nonce=<n> uptime_ms=<ms>
//   KILN-CHECK vsock.agent-exit <status>
//   KILN-CHECK error <message>                  (the first failure)
//   KILN-CHECK done status=<0|1>                (last line; the exit code)
//
// Usage: kiln-vsock-check [--agent=/usr/local/bin/kiln-agent] [--port=1024] [--cid=1]
//                         [--timeout_ms=30000]
// Exit: 0 when every step passed, 1 otherwise, 2 on a usage error.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/connection.h"
#include "agent/process/process.h"
#include "agent/protocol/messages.h"
#include "agent/transport.h"

ABSL_FLAG(std::string, agent, "/usr/local/bin/kiln-agent", "the agent binary to start");
ABSL_FLAG(uint32_t, port, 1024, "AF_VSOCK port the agent listens on");
ABSL_FLAG(uint32_t, cid, 1, "CID to connect to (1 = VMADDR_CID_LOCAL, vsock_loopback)");
ABSL_FLAG(int, timeout_ms, 30000, "per step: connect, handshake, ping, agent exit");

namespace {

void Check(const std::string& name, const std::string& value) {
  std::printf("KILN-CHECK %s %s\n", name.c_str(), value.c_str());
  std::fflush(stdout);
}

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Fail(agent, s): reports `s`, kills the agent (if given and still running), status 1.
int Fail(kiln::process::Process* agent, const absl::Status& s) {
  Check("error", std::string(s.message()));
  if (agent != nullptr) agent->Kill(absl::ZeroDuration());
  Check("done", "status=1");
  return 1;
}

// ExitCode(e): the exit code, or 128 + the signal.
int ExitCode(const kiln::process::ProcessExit& e) { return e.signaled ? 128 + e.signal : e.exit_code; }

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "kiln-vsock-check: start kiln-agent on AF_VSOCK and run a session with it through "
      "VMADDR_CID_LOCAL; prints KILN-CHECK vsock.* lines");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "kiln-vsock-check: unexpected argument %s (see --help)\n", rest[1]);
    return 2;
  }
  const uint32_t port = absl::GetFlag(FLAGS_port);
  const uint32_t cid = absl::GetFlag(FLAGS_cid);
  const int timeout_ms = absl::GetFlag(FLAGS_timeout_ms);
  const std::string agent = absl::GetFlag(FLAGS_agent);
  if (timeout_ms < 1) {
    std::fprintf(stderr, "kiln-vsock-check: --timeout_ms must be >= 1, got %d\n", timeout_ms);
    return 2;
  }
  const std::string channel = absl::StrCat("--channel=vsock:", port);

  // The agent dies with the check (it would hold the port) and writes to the check's output.
  kiln::process::SpawnOptions o;
  o.argv = {agent, channel, "--once", "--build=false"};
  o.in = kiln::process::Stdio::Inherit();
  o.out = kiln::process::Stdio::Inherit();
  o.err = kiln::process::Stdio::Inherit();
  absl::StatusOr<kiln::process::Process> child = kiln::process::Process::Spawn(o);
  if (!child.ok()) return Fail(nullptr, child.status());

  // Connect in short attempts, watching the agent: if it exits first (cannot exec, port in
  // use, ...), say so instead of waiting out the timeout.
  const int64_t t0 = NowMs();
  absl::StatusOr<std::unique_ptr<kiln::agent::FdStream>> stream;
  while (true) {
    stream = kiln::agent::ConnectVsock(cid, port, 200);
    if (stream.ok()) break;
    if (std::optional<kiln::process::ProcessExit> e = child->Poll()) {
      return Fail(nullptr, absl::FailedPreconditionError(absl::StrCat(
                               "the agent exited ", ExitCode(*e), " before it listened (", agent, ")")));
    }
    if (!absl::IsDeadlineExceeded(stream.status()) || NowMs() - t0 >= timeout_ms) {
      return Fail(&*child, stream.status());
    }
  }
  Check("vsock.connect", absl::StrCat("ok cid=", cid, " port=", port, " ms=", NowMs() - t0));

  kiln::agent::Connection conn(stream->get());
  absl::StatusOr<kiln::agent::Ready> ready =
      kiln::agent::HostHandshake(conn, "kiln-vsock-check 0.1", timeout_ms);
  if (!ready.ok()) return Fail(&*child, ready.status());
  Check("vsock.ready", absl::StrCat(ready->agent_version, " caps=",
                                    absl::StrJoin(ready->capabilities, ",")));

  constexpr uint64_t kNonce = 0x6b696c6e;  // "kiln"
  if (absl::Status s = conn.Send(kiln::agent::Ping{kNonce}, timeout_ms); !s.ok()) {
    return Fail(&*child, s);
  }
  absl::StatusOr<kiln::agent::Frame> f = conn.ReadFrame(timeout_ms);
  if (!f.ok()) return Fail(&*child, f.status());
  absl::StatusOr<kiln::agent::Pong> pong = kiln::agent::DecodeAs<kiln::agent::Pong>(*f);
  if (!pong.ok()) return Fail(&*child, pong.status());
  if (pong->nonce != kNonce) {
    return Fail(&*child, absl::DataLossError(absl::StrCat("Pong nonce ", pong->nonce, " != ", kNonce)));
  }
  Check("vsock.pong", absl::StrCat("nonce=", pong->nonce, " uptime_ms=", pong->uptime_ms));

  (void)(*stream)->Close();  // end of session: the agent (--once) exits
  absl::StatusOr<kiln::process::ProcessExit> exit =
      child->Wait(absl::Now() + absl::Milliseconds(timeout_ms));
  if (!exit.ok()) {
    return Fail(&*child, absl::DeadlineExceededError("the agent did not exit after the session"));
  }
  const int code = ExitCode(*exit);
  Check("vsock.agent-exit", absl::StrCat(code));
  if (code != 0) return Fail(nullptr, absl::InternalError(absl::StrCat("the agent exited ", code)));
  Check("done", "status=0");
  return 0;
}
