// File: harness/vmm/channel.h
// -----------------------------------------------------------------------------
//
// The host side of the agent channel as data: a ChannelAddress says which unix socket to
// connect to and how to speak it (harness/vmm/vmm.h ChannelTransport); ConnectChannelOnce makes
// one connection attempt over either transport, and IsRetryableConnectError tells the callers'
// retry loops which failures mean "not up yet" (the VMM has not created the socket, the guest
// agent does not listen yet) and which are final.
//
//   transport      socket_path                 after connect(2)
//   -------------  --------------------------  --------------------------------------------
//   virtio-serial  QEMU's chardev socket       nothing: the stream is the guest's port
//   hybrid-vsock   CH's vsock socket           "CONNECT <vsock_port>\n" -> "OK <n>\n"
//
// One piece of code serves every caller: the builder client (harness/builder/builder_client.h,
// WaitReady), Cloud Hypervisor's ConnectHybridVsockWithRetry/ConnectChannel
// (harness/vmm/cloud_hypervisor.h) and kilnctl's exec/rm into kept builders
// (tools/kilnctl/agent_exec.h).
//
// Example:
//
//   ChannelAddress a{ChannelTransport::kHybridVsock, "/tmp/kiln-bc-x/agent.sock", 1024};
//   absl::StatusOr<std::unique_ptr<agent::FdStream>> s = ConnectChannelOnce(a, 1000);
//   if (!s.ok() && IsRetryableConnectError(s.status())) { /* wait a little, try again */ }
#ifndef KILN_HARNESS_CHANNEL_H_
#define KILN_HARNESS_CHANNEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/transport.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// kDefaultVsockPort: the guest agent's AF_VSOCK port under Cloud Hypervisor
// (`kiln-agent --channel=vsock:1024`).
inline constexpr uint32_t kDefaultVsockPort = 1024;

// ChannelAddress: where and how the host reaches one guest agent. Pure data.
struct ChannelAddress {
  ChannelTransport transport = ChannelTransport::kVirtioSerial;
  // socket_path: the host unix socket (absolute, at most 107 bytes).
  std::string socket_path;
  // vsock_port: the guest's AF_VSOCK port (kHybridVsock only; ignored for virtio-serial).
  uint32_t vsock_port = kDefaultVsockPort;
};

// ChannelAddressFor(channel, transport): the address of a VmConfig::channel under a backend
// whose Vmm::channel_transport() is `transport`. Pure.
ChannelAddress ChannelAddressFor(const Channel& channel, ChannelTransport transport);

// DescribeChannelAddress(a): "virtio-serial <path>" or "hybrid-vsock <path> port <port>", for
// messages. Pure.
std::string DescribeChannelAddress(const ChannelAddress& a);

// ConnectChannelOnce(address, timeout_ms): one connection attempt within timeout_ms (> 0; the
// whole attempt, connect + handshake):
//   kVirtioSerial: agent::ConnectUnix(socket_path) (which itself waits for the socket to
//                  appear / accept until timeout_ms);
//   kHybridVsock:  agent::ConnectHybridVsock(socket_path, vsock_port): CONNECT/OK handshake,
//                  the reply read byte by byte so no protocol byte after it is consumed.
// Returns the stream, ready for agent::Connection. Errors:
//   InvalidArgument  empty or overlong socket path, timeout_ms <= 0, an overlong reply line;
//   DeadlineExceeded the socket never became connectable / no reply in time;
//   Unavailable      hybrid vsock: CH closed the connection without "OK" (no guest listener
//                    on the port yet);
//   FailedPrecondition hybrid vsock: a complete reply line that is not "OK <n>" (the socket is
//                    not a hybrid vsock muxer, e.g. a virtio-serial chardev: never retried);
//   other errno codes of socket(2)/connect(2) (PermissionDenied, ...).
// Every message names the address (DescribeChannelAddress).
absl::StatusOr<std::unique_ptr<agent::FdStream>> ConnectChannelOnce(const ChannelAddress& address,
                                                                    int timeout_ms);

// IsRetryableConnectError(status): true for the "not up yet" failures of ConnectChannelOnce,
// which a caller retries (with a pause) while the VM lives: DeadlineExceeded, Unavailable,
// NotFound (socket file missing), and a connection refused (ECONNREFUSED: a stale socket
// file, the VMM not listening yet). False for OK and everything else (InvalidArgument,
// FailedPrecondition, PermissionDenied, ...). Pure.
bool IsRetryableConnectError(const absl::Status& status);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_CHANNEL_H_
