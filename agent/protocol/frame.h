// File: agent/protocol/frame.h
// -----------------------------------------------------------------------------
//
// The frame layer of the kiln agent protocol (agent/PROTOCOL.md "Frames"): every byte on the
// host <-> guest channel belongs to a frame
//
//   +---------+------+-------+----------+-----------+--------+--------+---------------+
//   | magic   | type | flags | reserved | stream_id | length | crc32c | payload       |
//   | "KILN"  | u8   | u8=0  | u16=0    | u32 BE    | u32 BE | u32 BE | length bytes  |
//   +---------+------+-------+----------+-----------+--------+--------+---------------+
//     0         4      5       6          8           12       16       20
//
// with length <= the decoder's limit (kMaxPayload, 1 MiB). EncodeFrame() writes one;
// FrameDecoder turns any split of a byte stream back into frames, or into a clear
// absl::Status for bad input (bad magic, length over limit, bad checksum, ...), never a crash.
//
// Example:
//
//   std::string wire = EncodeFrame(Frame{FrameType::kChunk, 3, "tar bytes"});
//   FrameDecoder decoder;
//   decoder.Feed(wire.substr(0, 7));
//   decoder.Feed(wire.substr(7));
//   absl::StatusOr<std::optional<Frame>> f = decoder.Next();  // -> the chunk frame
#ifndef KILN_AGENT_PROTOCOL_FRAME_H_
#define KILN_AGENT_PROTOCOL_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::agent {

// kFrameMagic: the first four bytes of every frame, "KILN" (0x4B 0x49 0x4C 0x4E).
inline constexpr uint32_t kFrameMagic = 0x4B494C4Eu;

// kFrameHeaderSize: bytes before the payload.
inline constexpr size_t kFrameHeaderSize = 20;

// kMaxPayload: the largest payload a peer sends or accepts, 1 MiB (1048576 bytes).
inline constexpr uint32_t kMaxPayload = 1u << 20;

// FrameType: the type byte. 0 is never valid. Types a peer does not know are delivered by
// FrameDecoder (a newer minor version may add types) and refused by DecodeMessage().
enum class FrameType : uint8_t {
  kHello = 0x01,        // host -> agent: opens a session
  kReady = 0x02,        // agent -> host: answer to Hello (versions, capabilities)
  kPing = 0x03,         // host -> agent
  kPong = 0x04,         // agent -> host: uptime, load, memory
  kError = 0x05,        // either way: canonical code + message
  kSecret = 0x10,       // host -> agent: one build secret (id + value)
  kBuildJob = 0x11,     // host -> agent: the build request; announces its streams
  kLog = 0x12,          // agent -> host: one live log line
  kBuildResult = 0x13,  // agent -> host: exit status, digest, phases; announces image stream
  kWarmUp = 0x14,       // host -> agent (1.1): start the daemon, load base images, before any job
  kExec = 0x20,         // host -> agent: run a command
  kExecStarted = 0x21,  // agent -> host: pid and the output stream ids
  kExecResult = 0x22,   // agent -> host: exit code / signal
  kChunk = 0x30,        // either way: raw bytes of a stream (stream_id != 0)
  kStreamEnd = 0x31,    // either way: end of a stream (stream_id != 0), total byte count
};

// FrameTypeName(type): "Hello", "Chunk", ... or "0x7e" for an unknown type byte.
std::string FrameTypeName(uint8_t type);

// IsKnownFrameType(type): whether `type` is one of FrameType's values.
bool IsKnownFrameType(uint8_t type);

// Frame: one decoded frame. `type` is the raw byte (it may be unknown to this version).
// `stream_id` is 0 for control frames, != 0 for kChunk/kStreamEnd.
struct Frame {
  uint8_t type = 0;
  uint32_t stream_id = 0;
  std::string payload;

  Frame() = default;
  Frame(FrameType t, uint32_t sid, std::string p)
      : type(static_cast<uint8_t>(t)), stream_id(sid), payload(std::move(p)) {}
  Frame(uint8_t t, uint32_t sid, std::string p) : type(t), stream_id(sid), payload(std::move(p)) {}
  bool operator==(const Frame&) const = default;
};

// EncodeFrame(frame): the frame's bytes (header + payload) with its CRC-32C.
// REQUIRES: frame.payload.size() <= kMaxPayload (larger payloads must be split into chunks by
// the caller; see stream.h). Frame-level rules are checked by CheckFrame().
std::string EncodeFrame(const Frame& frame);

// CheckFrame(frame, max_payload): the frame-level rules a sender must keep and a receiver
// enforces: type != 0, payload <= max_payload, stream_id != 0 exactly for kChunk/kStreamEnd,
// kChunk payload non-empty. Returns InvalidArgument naming the broken rule.
absl::Status CheckFrame(const Frame& frame, uint32_t max_payload = kMaxPayload);

// FrameDecoder: a streaming decoder. Feed() it bytes as they arrive, in any split; Next()
// returns the next complete frame, std::nullopt when it needs more bytes, or an error.
// Errors are sticky (the byte stream has lost its framing; the peer must reset the channel,
// see PROTOCOL.md "Errors"):
//   DataLoss           bad magic; bad checksum; truncated frame (from Finish())
//   InvalidArgument    type 0; non-zero flags or reserved bits; stream id rule broken;
//                      empty chunk
//   ResourceExhausted  length over the limit
// Not thread-safe.
class FrameDecoder {
 public:
  // FrameDecoder(max_payload): accept payloads up to `max_payload` bytes.
  explicit FrameDecoder(uint32_t max_payload = kMaxPayload) : max_payload_(max_payload) {}
  // The buffer is zeroed when freed; consumed bytes are zeroed as frames are returned (a
  // Secret frame's value does not linger in the decoder).
  ~FrameDecoder();
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // Feed(bytes): appends bytes received from the peer. Ignored once in error.
  void Feed(absl::string_view bytes);

  // Next(): the next frame, std::nullopt if the buffered bytes hold no complete frame yet,
  // or the (sticky) error described above. Errors are detected as early as possible: a bad
  // magic or an oversized length is reported before its payload arrives.
  absl::StatusOr<std::optional<Frame>> Next();

  // Finish(): call at end of input. OK if no bytes are buffered; DataLoss ("truncated frame")
  // if a partial frame is pending; the sticky error if any.
  absl::Status Finish() const;

  // Reset(): drops buffered bytes and any error (a new session on the same channel).
  void Reset();

  // buffered(): bytes received but not yet returned as frames.
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  absl::Status Fail(absl::Status s);

  uint32_t max_payload_;
  std::string buf_;
  size_t pos_ = 0;
  uint64_t offset_ = 0;  // stream offset of buf_[pos_], for error messages
  absl::Status error_;
};

}  // namespace kiln::agent

#endif  // KILN_AGENT_PROTOCOL_FRAME_H_
