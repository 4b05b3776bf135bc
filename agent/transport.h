// File: agent/transport.h
// -----------------------------------------------------------------------------
//
// Byte-stream transports between the host and the builder agent (DESIGN.md "One transport
// interface, two channels"). Every channel is a ByteStream: read and write with deadlines in
// ms, close. The frame protocol (agent/protocol/) runs on top, via Connection
// (connection.h).
//
//   guest (agent)                          host (harness)
//   -------------                          --------------
//   OpenVirtioSerial(sysfs, dev, name)     ConnectUnix(<QEMU chardev socket>)
//     scans <sysfs>/class/virtio-ports/      QEMU: -chardev socket,path=P,server=on,wait=off
//     */name, opens <dev>/vportNpM           -device virtserialport,chardev=..,name=<name>
//   VsockListener::Listen(port)            ConnectHybridVsock(<CH vsock socket>, port)
//     AF_VSOCK, CID any, then Accept()       Cloud Hypervisor: "CONNECT <port>\n" -> "OK <n>\n"
//
// Example (host, Cloud Hypervisor):
//
//   ASSIGN_OR_RETURN(std::unique_ptr<FdStream> s,
//                    ConnectHybridVsock("/run/vm1/vsock.sock", 1024, /*timeout_ms=*/5000));
//   Connection conn(s.get());
//
// Errors follow PosixError (third_party/absl_ext): the canonical code for the errno and a
// message naming the operation and path; DeadlineExceeded when a deadline passes.
#ifndef KILN_AGENT_TRANSPORT_H_
#define KILN_AGENT_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::agent {

// kNoDeadline: pass as timeout_ms to wait forever.
inline constexpr int kNoDeadline = -1;

// ByteStream: a bidirectional, reliable, ordered byte stream. Not thread-safe, except that
// one thread may Read while another Writes.
class ByteStream {
 public:
  virtual ~ByteStream() = default;

  // Read(buf, n, timeout_ms): reads 1..n bytes into buf; returns the count, or 0 at end of
  // stream (the peer closed). Errors: DeadlineExceeded if nothing arrived within timeout_ms
  // (kNoDeadline: wait forever); the PosixError of read(2)/poll(2); FailedPrecondition if
  // closed.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t n, int timeout_ms) = 0;

  // Write(data, timeout_ms): writes all of `data` within timeout_ms in total. Errors:
  // DeadlineExceeded (some bytes may have been written: the stream is then unusable);
  // Unavailable if the peer closed (EPIPE); other PosixErrors.
  virtual absl::Status Write(absl::string_view data, int timeout_ms) = 0;

  // Close(): closes the stream; idempotent. Returns close(2)'s error the first time.
  virtual absl::Status Close() = 0;
};

// FdStream: a ByteStream over a connected socket or character device fd (owned).
class FdStream : public ByteStream {
 public:
  // FdStream(fd, name): takes ownership of fd; `name` appears in error messages.
  FdStream(int fd, std::string name);
  ~FdStream() override;
  FdStream(const FdStream&) = delete;
  FdStream& operator=(const FdStream&) = delete;

  absl::StatusOr<size_t> Read(char* buf, size_t n, int timeout_ms) override;
  absl::Status Write(absl::string_view data, int timeout_ms) override;
  absl::Status Close() override;

  int fd() const { return fd_; }
  const std::string& name() const { return name_; }

 private:
  int fd_;
  std::string name_;
};

// ---------------------------------------------------------------------------------------
// Guest side.

// FindVirtioPort(sysfs_root, name, dev_root): the device node of the virtio-serial port
// named `name`: scans <sysfs_root>/class/virtio-ports/<entry>/name (each file holds the port
// name and a newline) and returns "<dev_root>/<entry>" (e.g. "/dev/vport1p1").
// Errors: NotFound listing the port names seen (or saying the class directory is missing,
// i.e. virtio_console is not loaded); InvalidArgument for an empty name.
absl::StatusOr<std::string> FindVirtioPort(absl::string_view sysfs_root, absl::string_view name,
                                           absl::string_view dev_root = "/dev");

// OpenVirtioSerial(sysfs_root, name, dev_root): FindVirtioPort, then opens the node O_RDWR.
// Errors: FindVirtioPort's; the PosixError of open(2).
absl::StatusOr<std::unique_ptr<FdStream>> OpenVirtioSerial(absl::string_view sysfs_root,
                                                           absl::string_view name,
                                                           absl::string_view dev_root = "/dev");

// VsockListener: an AF_VSOCK stream listener (guest side; CID VMADDR_CID_ANY by default).
class VsockListener {
 public:
  // Listen(port, cid): socket + bind + listen. Errors: the PosixError of each step
  // (e.g. EAFNOSUPPORT -> Unimplemented-ish code when the kernel has no vsock).
  static absl::StatusOr<std::unique_ptr<VsockListener>> Listen(uint32_t port,
                                                               uint32_t cid = 0xFFFFFFFFu);
  ~VsockListener();

  // Accept(timeout_ms): the next connection. Errors: DeadlineExceeded; PosixError(accept).
  absl::StatusOr<std::unique_ptr<FdStream>> Accept(int timeout_ms);

  uint32_t port() const { return port_; }

 private:
  VsockListener(int fd, uint32_t port) : fd_(fd), port_(port) {}
  int fd_;
  uint32_t port_;
};

// ---------------------------------------------------------------------------------------
// Host side (and tests).

// ConnectUnix(path, timeout_ms): connects to a unix stream socket, retrying ENOENT and
// ECONNREFUSED (the VMM may not have created it yet) until timeout_ms. Errors: InvalidArgument
// for a path longer than sun_path; DeadlineExceeded (with the last errno) when it never
// became connectable.
absl::StatusOr<std::unique_ptr<FdStream>> ConnectUnix(absl::string_view path, int timeout_ms);

// ConnectVsock(cid, port, timeout_ms): an AF_VSOCK stream connection to `port` on `cid`
// (VMADDR_CID_LOCAL = 1 through vsock_loopback in the guest; a guest CID from a host with
// vhost-vsock), retrying a refused connection (no listener yet) until timeout_ms. Errors:
// DeadlineExceeded (with the last errno) when nobody listened in time; the PosixError of
// socket(2)/connect(2) otherwise (e.g. EAFNOSUPPORT / ENODEV without a vsock transport).
absl::StatusOr<std::unique_ptr<FdStream>> ConnectVsock(uint32_t cid, uint32_t port,
                                                       int timeout_ms);

// ParseHybridVsockReply(line): the port number in Cloud Hypervisor's handshake reply
// "OK <port>\n" (the host-side ephemeral port). Errors: FailedPrecondition with the line
// quoted: a whole line that is not "OK <n>" means the socket does not speak hybrid vsock (CH
// answers a CONNECT to a port nobody listens on by closing the connection, not with a line),
// so retrying cannot help.
absl::StatusOr<uint32_t> ParseHybridVsockReply(absl::string_view line);

// ConnectHybridVsock(uds_path, port, timeout_ms): connects to a Cloud Hypervisor (or
// Firecracker) hybrid vsock unix socket, sends "CONNECT <port>\n" and reads the reply line
// byte by byte (so that no protocol byte after it is consumed); returns the stream, now
// connected to the guest's AF_VSOCK listener on `port`. Errors: ConnectUnix's;
// Unavailable if the socket closes before a reply line (no guest listener on the port yet:
// worth retrying); FailedPrecondition if the reply is not "OK <n>" (ParseHybridVsockReply);
// InvalidArgument for a reply line over 64 bytes; DeadlineExceeded.
absl::StatusOr<std::unique_ptr<FdStream>> ConnectHybridVsock(absl::string_view uds_path,
                                                             uint32_t port, int timeout_ms);

// UnixListener: a unix stream listener (tests' fake VMMs; host-side servers).
class UnixListener {
 public:
  // Listen(path): removes a stale socket file at path, binds and listens.
  static absl::StatusOr<std::unique_ptr<UnixListener>> Listen(absl::string_view path);
  ~UnixListener();
  // Accept(timeout_ms): the next connection. Errors: DeadlineExceeded; PosixError(accept).
  absl::StatusOr<std::unique_ptr<FdStream>> Accept(int timeout_ms);

 private:
  UnixListener(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

// StreamPair(): two connected FdStreams (socketpair(AF_UNIX, SOCK_STREAM)), for tests and
// in-process loops.
absl::StatusOr<std::pair<std::unique_ptr<FdStream>, std::unique_ptr<FdStream>>> StreamPair();

}  // namespace kiln::agent

#endif  // KILN_AGENT_TRANSPORT_H_
