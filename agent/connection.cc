#include "agent/connection.h"

#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/protocol/secure_wipe.h"
#include "agent/protocol/stream.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::agent {

absl::Status Connection::SendFrame(const Frame& frame, int timeout_ms) {
  RETURN_IF_ERROR(CheckFrame(frame));
  std::string wire = EncodeFrame(frame);
  absl::Status s = stream_->Write(wire, timeout_ms);
  if (frame.type == static_cast<uint8_t>(FrameType::kSecret)) SecureWipe(wire);
  return s;
}

absl::Status Connection::Send(const Message& message, int timeout_ms) {
  ASSIGN_OR_RETURN(Frame f, EncodeMessage(message));
  absl::Status s = SendFrame(f, timeout_ms);
  if (f.type == static_cast<uint8_t>(FrameType::kSecret)) SecureWipe(f.payload);
  return s;
}

absl::Status Connection::SendError(const absl::Status& status, int timeout_ms) {
  return Send(FromStatus(status), timeout_ms);
}

absl::Status Connection::SendBytes(uint32_t stream_id, absl::string_view data, int timeout_ms) {
  if (stream_id == 0) return absl::InvalidArgumentError("SendBytes: stream id 0");
  for (const Frame& f : ChunkFrames(stream_id, data)) RETURN_IF_ERROR(SendFrame(f, timeout_ms));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Connection::SendFd(uint32_t stream_id, int fd, int timeout_ms) {
  std::string buf(kMaxPayload, '\0');
  uint64_t total = 0;
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status err = PosixError(errno, "read stream source fd", std::to_string(fd));
      (void)Send(StreamEnd{stream_id, total, true, std::string(err.message())}, timeout_ms);
      return err;
    }
    if (n == 0) break;
    RETURN_IF_ERROR(SendFrame(Frame(FrameType::kChunk, stream_id, buf.substr(0, n)), timeout_ms));
    total += static_cast<uint64_t>(n);
  }
  RETURN_IF_ERROR(Send(StreamEnd{stream_id, total, false, ""}, timeout_ms));
  return total;
}

absl::StatusOr<Frame> Connection::ReadFrame(int timeout_ms) {
  char buf[64 << 10];
  while (true) {
    ASSIGN_OR_RETURN(std::optional<Frame> f, decoder_.Next());
    if (f.has_value()) return *std::move(f);
    ASSIGN_OR_RETURN(size_t n, stream_->Read(buf, sizeof(buf), timeout_ms));
    if (n == 0) {
      RETURN_IF_ERROR(decoder_.Finish());
      return absl::UnavailableError("peer closed the channel");
    }
    decoder_.Feed(absl::string_view(buf, n));
    SecureWipe(buf, n);  // may hold part of a Secret frame
  }
}

absl::StatusOr<Message> Connection::ReadMessage(int timeout_ms) {
  ASSIGN_OR_RETURN(Frame f, ReadFrame(timeout_ms));
  return DecodeMessage(f);
}

absl::StatusOr<Ready> HostHandshake(Connection& conn, absl::string_view host_version,
                                    int timeout_ms) {
  RETURN_IF_ERROR(conn.Send(Hello{kProtocolMajor, kProtocolMinor, std::string(host_version)},
                            timeout_ms));
  ASSIGN_OR_RETURN(Frame f, conn.ReadFrame(timeout_ms));
  ASSIGN_OR_RETURN(Ready ready, DecodeAs<Ready>(f));
  if (absl::Status s = CheckCompatible(ready.protocol_major, ready.protocol_minor); !s.ok()) {
    (void)conn.SendError(s, timeout_ms);
    return absl::FailedPreconditionError(
        absl::StrCat("agent \"", ready.agent_version, "\" refused: ", s.message()));
  }
  return ready;
}

}  // namespace kiln::agent
