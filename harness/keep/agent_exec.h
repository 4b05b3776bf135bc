// File: harness/keep/agent_exec.h
// -----------------------------------------------------------------------------
//
// The host side of the agent's Exec request (agent/PROTOCOL.md section 5) for a kept builder:
// connect to the builder's channel (harness/vmm/channel.h: the QEMU virtio-serial chardev's unix
// socket, or Cloud Hypervisor's hybrid vsock socket with the CONNECT/OK handshake), Hello/Ready,
// send Exec, stream the command's stdout/stderr to host fds as the Chunk frames arrive, return
// its ExecResult. Also the clean power-off `kilnctl builders rm` asks first.
//
// Example:
//
//   ExecRequest req{.argv = {"cat", "/proc/self/mountinfo"}};
//   ChannelAddress a{record.channel_transport, record.channel_socket, record.vsock_port};
//   ASSIGN_OR_RETURN(agent::ExecResult r, ExecOverChannel(a, req, 1, 2));
//   return r.exit_code;
#ifndef KILN_HARNESS_AGENT_EXEC_H_
#define KILN_HARNESS_AGENT_EXEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/connection.h"
#include "agent/protocol/messages.h"
#include "harness/vmm/channel.h"

namespace kiln::harness {

// kDefaultExecTimeoutS: `kilnctl builders exec`'s default --timeout_s (10 minutes: an
// inspection command -- ls, cat, docker ps, a log tail -- ends long before; a forgotten
// `tail -f` or a wedged command does not hold the builder and the terminal for ever).
inline constexpr int kDefaultExecTimeoutS = 600;

// kExecAnswerGraceMs: how long after the command's deadline the host still waits for the
// agent's ExecResult (the agent kills the process group at the deadline and answers).
inline constexpr int kExecAnswerGraceMs = 30000;

// ExecRequest: one command in the guest.
struct ExecRequest {
  std::vector<std::string> argv;  // argv[0] looked up by the agent (execvp)
  std::vector<std::string> env;   // KEY=VALUE; empty: the agent's environment
  std::string cwd;                // "": /
  // deadline_ms: the agent kills the command after this long; 0: no deadline of our own (the
  // agent then applies agent::kDefaultExecDeadlineMs, 30 min).
  uint64_t deadline_ms = 0;
  int connect_timeout_ms = 5000;  // connect + handshake
  int io_timeout_ms = 3600000;    // longest wait for one frame (a quiet command)
  // answer_grace_ms: the host gives up (DeadlineExceeded) when no ExecResult came within
  // the command's deadline (deadline_ms, or the agent's default when 0) + answer_grace_ms.
  int answer_grace_ms = kExecAnswerGraceMs;
};

// ExecOnConnection(conn, req, out_fd, err_fd): Exec on a handshaken connection; writes the
// command's stdout to out_fd and stderr to err_fd as chunks arrive. Returns the ExecResult
// (exit_code 127 + error if the agent could not start it). Errors: InvalidArgument for an
// empty argv or a NUL byte; the agent's Error reply as a status; DeadlineExceeded when no
// ExecResult came within the command's deadline + req.answer_grace_ms (a wedged agent) or no
// frame for req.io_timeout_ms; the connection's errors (Unavailable if the channel closed);
// errno codes writing the fds.
absl::StatusOr<agent::ExecResult> ExecOnConnection(agent::Connection& conn,
                                                   const ExecRequest& req, int out_fd,
                                                   int err_fd);

// ExecOverChannel(address, req, out_fd, err_fd): ConnectChannelOnce (within
// req.connect_timeout_ms) + HostHandshake + ExecOnConnection, then closes the channel.
// Errors: those (ConnectChannelOnce's: DeadlineExceeded, Unavailable when no guest listens on
// the vsock port, FailedPrecondition for a socket that is not a hybrid vsock muxer, ...),
// prefixed with the address (DescribeChannelAddress).
absl::StatusOr<agent::ExecResult> ExecOverChannel(const ChannelAddress& address,
                                                  const ExecRequest& req, int out_fd,
                                                  int err_fd);

// ExecOverChannel(socket_path, req, out_fd, err_fd): the same over a virtio-serial channel
// (QEMU; a socket path alone, as records before Cloud Hypervisor support had).
absl::StatusOr<agent::ExecResult> ExecOverChannel(const std::string& socket_path,
                                                  const ExecRequest& req, int out_fd,
                                                  int err_fd);

// AgentPowerOff(address, timeout_ms): asks the guest to power off through the agent:
// Exec of `sync; kill -TERM $PPID` (the agent is init's program: when it exits, kiln init
// powers the guest off), then `poweroff -f`, then `echo o > /proc/sysrq-trigger` as
// fallbacks. The reply may never come (the guest is gone): OkStatus once the request was
// sent. Errors: ConnectChannelOnce's and the handshake's (the agent is unreachable).
absl::Status AgentPowerOff(const ChannelAddress& address, int timeout_ms);

// AgentPowerOff(socket_path, timeout_ms): the same over a virtio-serial channel.
absl::Status AgentPowerOff(const std::string& socket_path, int timeout_ms);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_AGENT_EXEC_H_
