// File: agent/connection.h
// -----------------------------------------------------------------------------
//
// Connection: the kiln agent protocol (agent/protocol/) over a ByteStream (transport.h):
// send and receive frames and messages with deadlines, stream bulk bytes from memory or a
// file descriptor as Chunk frames, and the host's side of the handshake.
//
// Example (host):
//
//   ASSIGN_OR_RETURN(auto stream, ConnectUnix("/run/vm1/agent.sock", 5000));
//   Connection conn(stream.get());
//   ASSIGN_OR_RETURN(Ready ready, HostHandshake(conn, "harness 0.1", 10000));
//   RETURN_IF_ERROR(conn.Send(Ping{1}, 1000));
//   ASSIGN_OR_RETURN(Frame f, conn.ReadFrame(1000));
//   ASSIGN_OR_RETURN(Pong pong, DecodeAs<Pong>(f));
#ifndef KILN_AGENT_CONNECTION_H_
#define KILN_AGENT_CONNECTION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"
#include "agent/transport.h"

namespace kiln::agent {

// Connection: frames over a ByteStream (not owned). One reader and one writer thread may use
// it concurrently; Send* calls must not interleave (a frame is written whole by one call).
class Connection {
 public:
  explicit Connection(ByteStream* stream) : stream_(stream) {}

  // SendFrame(frame, timeout_ms): checks CheckFrame() and writes the frame.
  // Errors: InvalidArgument/ResourceExhausted from CheckFrame; the stream's Write errors.
  absl::Status SendFrame(const Frame& frame, int timeout_ms);

  // Send(message, timeout_ms): EncodeMessage + SendFrame.
  absl::Status Send(const Message& message, int timeout_ms);

  // SendError(status, timeout_ms): sends FromStatus(status). REQUIRES: !status.ok().
  absl::Status SendError(const absl::Status& status, int timeout_ms);

  // SendBytes(stream_id, data, timeout_ms): `data` as Chunk frames + StreamEnd.
  absl::Status SendBytes(uint32_t stream_id, absl::string_view data, int timeout_ms);

  // SendFd(stream_id, fd, timeout_ms): reads `fd` to its end and sends it as Chunk frames +
  // StreamEnd (1 MiB chunks); returns the byte count. On a read error it sends an aborted
  // StreamEnd and returns the error. timeout_ms bounds each frame write.
  absl::StatusOr<uint64_t> SendFd(uint32_t stream_id, int fd, int timeout_ms);

  // ReadFrame(timeout_ms): the next frame. Errors: the decoder's (DataLoss, InvalidArgument,
  // ResourceExhausted; the channel has lost its framing); Unavailable "peer closed the
  // channel" at a clean end of stream (DataLoss if it ended mid-frame); DeadlineExceeded.
  absl::StatusOr<Frame> ReadFrame(int timeout_ms);

  // ReadMessage(timeout_ms): ReadFrame + DecodeMessage.
  absl::StatusOr<Message> ReadMessage(int timeout_ms);

  // ResetDecoder(): drops buffered input (a new session on the same channel).
  void ResetDecoder() { decoder_.Reset(); }

  ByteStream* stream() { return stream_; }

 private:
  ByteStream* stream_;
  FrameDecoder decoder_;
};

// HostHandshake(conn, host_version, timeout_ms): sends Hello, reads the agent's Ready and
// checks its major version. Errors: FailedPrecondition on a major version mismatch (the host
// then sends an Error and should close), or the agent's Error reply as a status;
// FailedPrecondition if the reply is another message; the Connection's errors.
absl::StatusOr<Ready> HostHandshake(Connection& conn, absl::string_view host_version,
                                    int timeout_ms);

}  // namespace kiln::agent

#endif  // KILN_AGENT_CONNECTION_H_
