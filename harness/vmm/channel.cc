// File: harness/vmm/channel.cc
#include "harness/vmm/channel.h"

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kiln::harness {
namespace {

absl::Status Prefixed(const ChannelAddress& a, absl::StatusCode code, absl::string_view msg) {
  return absl::Status(code, absl::StrCat("channel ", DescribeChannelAddress(a), ": ", msg));
}

}  // namespace

ChannelAddress ChannelAddressFor(const Channel& channel, ChannelTransport transport) {
  return ChannelAddress{transport, channel.host_socket_path, channel.vsock_port};
}

std::string DescribeChannelAddress(const ChannelAddress& a) {
  if (a.transport == ChannelTransport::kHybridVsock) {
    return absl::StrCat(ChannelTransportName(a.transport), " ", a.socket_path, " port ",
                        a.vsock_port);
  }
  return absl::StrCat(ChannelTransportName(a.transport), " ", a.socket_path);
}

absl::StatusOr<std::unique_ptr<agent::FdStream>> ConnectChannelOnce(const ChannelAddress& a,
                                                                    int timeout_ms) {
  if (timeout_ms <= 0) {
    return Prefixed(a, absl::StatusCode::kInvalidArgument,
                    absl::StrCat("connect timeout must be > 0 ms, got ", timeout_ms));
  }
  absl::StatusOr<std::unique_ptr<agent::FdStream>> s;
  switch (a.transport) {
    case ChannelTransport::kVirtioSerial:
      s = agent::ConnectUnix(a.socket_path, timeout_ms);
      break;
    case ChannelTransport::kHybridVsock:
      s = agent::ConnectHybridVsock(a.socket_path, a.vsock_port, timeout_ms);
      break;
    default:
      return Prefixed(a, absl::StatusCode::kInvalidArgument, "unknown channel transport");
  }
  if (s.ok()) return s;
  // A whole reply line that is not "OK <n>" comes back as FailedPrecondition (a protocol
  // mismatch, not a guest still booting: agent::ParseHybridVsockReply), so it is not retried.
  return Prefixed(a, s.status().code(), s.status().message());
}

bool IsRetryableConnectError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kNotFound:
      return true;
    default:
      break;
  }
  // ECONNREFUSED maps to a code of its own choosing in absl::ErrnoToStatus; PosixError keeps
  // the errno in the message.
  return !status.ok() &&
         absl::StrContains(status.message(), absl::StrCat("[errno ", ECONNREFUSED, "]"));
}

}  // namespace kiln::harness
