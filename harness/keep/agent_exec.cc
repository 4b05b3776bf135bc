// File: harness/keep/agent_exec.cc
#include "harness/keep/agent_exec.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/protocol/stream.h"
#include "agent/transport.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

using agent::Frame;
using agent::FrameType;

// Writes each chunk straight to a host fd (live output).
class FdSink : public agent::StreamSink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  absl::Status Write(absl::string_view bytes) override {
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError(errno, "write", absl::StrCat("fd ", fd_));
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

 private:
  int fd_;
};

absl::Status Prefix(const std::string& p, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(p, ": ", s.message()));
}

}  // namespace

absl::StatusOr<agent::ExecResult> ExecOnConnection(agent::Connection& conn,
                                                   const ExecRequest& req, int out_fd,
                                                   int err_fd) {
  if (req.argv.empty() || req.argv[0].empty()) {
    return absl::InvalidArgumentError("exec: no command given");
  }
  agent::Exec e{req.argv, req.env, req.cwd, 0, req.deadline_ms};
  RETURN_IF_ERROR(agent::Validate(agent::Message(e)));
  RETURN_IF_ERROR(conn.Send(e, req.connect_timeout_ms));
  agent::StreamReceiver rx;
  FdSink out(out_fd), err(err_fd);
  const uint64_t command_ms = req.deadline_ms != 0 ? req.deadline_ms : agent::kDefaultExecDeadlineMs;
  const absl::Time give_up = absl::Now() + absl::Milliseconds(command_ms) +
                             absl::Milliseconds(req.answer_grace_ms);
  while (true) {
    const int64_t left_ms = absl::ToInt64Milliseconds(give_up - absl::Now());
    if (left_ms <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "exec: no result from the agent within the command's deadline (",
          absl::FormatDuration(absl::Milliseconds(command_ms)), ") + ",
          absl::FormatDuration(absl::Milliseconds(req.answer_grace_ms)),
          "; the agent did not end the command"));
    }
    const int wait_ms = static_cast<int>(std::min<int64_t>(req.io_timeout_ms, left_ms));
    absl::StatusOr<Frame> next = conn.ReadFrame(wait_ms);
    if (!next.ok()) {
      // Waited up to the give-up time: reported at the top of the loop.
      if (absl::IsDeadlineExceeded(next.status()) && wait_ms < req.io_timeout_ms) continue;
      return next.status();
    }
    Frame f = std::move(*next);
    if (f.type == static_cast<uint8_t>(FrameType::kChunk) ||
        f.type == static_cast<uint8_t>(FrameType::kStreamEnd)) {
      RETURN_IF_ERROR(rx.OnFrame(f));
      continue;
    }
    ASSIGN_OR_RETURN(agent::Message m, agent::DecodeMessage(f));
    if (auto* s = std::get_if<agent::ExecStarted>(&m)) {
      RETURN_IF_ERROR(rx.Expect(s->stdout_stream, UINT64_MAX, &out));
      RETURN_IF_ERROR(rx.Expect(s->stderr_stream, UINT64_MAX, &err));
    } else if (auto* r = std::get_if<agent::ExecResult>(&m)) {
      return *r;
    } else if (auto* em = std::get_if<agent::ErrorMessage>(&m)) {
      return agent::ToStatus(*em);
    } else {
      return absl::FailedPreconditionError(
          absl::StrCat("exec: unexpected ", agent::MessageName(m), " from the agent"));
    }
  }
}

absl::StatusOr<agent::ExecResult> ExecOverChannel(const ChannelAddress& address,
                                                  const ExecRequest& req, int out_fd,
                                                  int err_fd) {
  const std::string where = DescribeChannelAddress(address);
  absl::StatusOr<std::unique_ptr<agent::FdStream>> stream =
      ConnectChannelOnce(address, req.connect_timeout_ms);
  if (!stream.ok()) return stream.status();  // already names the address
  agent::Connection conn(stream->get());
  absl::StatusOr<agent::Ready> ready =
      agent::HostHandshake(conn, "kilnctl 0.1", req.connect_timeout_ms);
  if (!ready.ok()) return Prefix(absl::StrCat(where, ": handshake"), ready.status());
  absl::StatusOr<agent::ExecResult> r = ExecOnConnection(conn, req, out_fd, err_fd);
  (void)(*stream)->Close();
  if (!r.ok()) return Prefix(absl::StrCat(where, ": exec"), r.status());
  return r;
}

absl::StatusOr<agent::ExecResult> ExecOverChannel(const std::string& socket_path,
                                                  const ExecRequest& req, int out_fd,
                                                  int err_fd) {
  return ExecOverChannel(
      ChannelAddress{ChannelTransport::kVirtioSerial, socket_path}, req, out_fd,
      err_fd);
}

absl::Status AgentPowerOff(const ChannelAddress& address, int timeout_ms) {
  ASSIGN_OR_RETURN(std::unique_ptr<agent::FdStream> stream,
                   ConnectChannelOnce(address, timeout_ms));
  agent::Connection conn(stream.get());
  ASSIGN_OR_RETURN(agent::Ready ready, agent::HostHandshake(conn, "kilnctl 0.1", timeout_ms));
  (void)ready;
  agent::Exec e{{"/bin/sh", "-c",
                 "sync; kill -TERM $PPID; sleep 3; poweroff -f || echo o > /proc/sysrq-trigger"},
                {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
                "",
                0,
                0};
  RETURN_IF_ERROR(conn.Send(e, timeout_ms));
  // Give the guest a moment; the reply (if any) does not matter.
  (void)conn.ReadFrame(std::min(timeout_ms, 2000));
  (void)stream->Close();
  return absl::OkStatus();
}

absl::Status AgentPowerOff(const std::string& socket_path, int timeout_ms) {
  return AgentPowerOff(
      ChannelAddress{ChannelTransport::kVirtioSerial, socket_path}, timeout_ms);
}

}  // namespace kiln::harness
