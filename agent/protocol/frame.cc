#include "agent/protocol/frame.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/protocol/crc32c.h"
#include "agent/protocol/internal/endian.h"
#include "agent/protocol/secure_wipe.h"

namespace kiln::agent {
namespace {

using internal::GetU16;
using internal::GetU32;
using internal::PutU32;

bool IsStreamType(uint8_t type) {
  return type == static_cast<uint8_t>(FrameType::kChunk) ||
         type == static_cast<uint8_t>(FrameType::kStreamEnd);
}

// HeaderCrc: CRC-32C of header bytes [4, 16) (type .. length) followed by the payload.
uint32_t FrameCrc(absl::string_view header, absl::string_view payload) {
  return Crc32cExtend(Crc32c(header.substr(4, 12)), payload);
}

}  // namespace

bool IsKnownFrameType(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello:
    case FrameType::kReady:
    case FrameType::kPing:
    case FrameType::kPong:
    case FrameType::kError:
    case FrameType::kSecret:
    case FrameType::kBuildJob:
    case FrameType::kLog:
    case FrameType::kBuildResult:
    case FrameType::kWarmUp:
    case FrameType::kExec:
    case FrameType::kExecStarted:
    case FrameType::kExecResult:
    case FrameType::kChunk:
    case FrameType::kStreamEnd:
      return true;
  }
  return false;
}

std::string FrameTypeName(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello: return "Hello";
    case FrameType::kReady: return "Ready";
    case FrameType::kPing: return "Ping";
    case FrameType::kPong: return "Pong";
    case FrameType::kError: return "Error";
    case FrameType::kSecret: return "Secret";
    case FrameType::kBuildJob: return "BuildJob";
    case FrameType::kLog: return "Log";
    case FrameType::kBuildResult: return "BuildResult";
    case FrameType::kWarmUp: return "WarmUp";
    case FrameType::kExec: return "Exec";
    case FrameType::kExecStarted: return "ExecStarted";
    case FrameType::kExecResult: return "ExecResult";
    case FrameType::kChunk: return "Chunk";
    case FrameType::kStreamEnd: return "StreamEnd";
  }
  return absl::StrFormat("0x%02x", type);
}

std::string EncodeFrame(const Frame& frame) {
  std::string out(kFrameHeaderSize, '\0');
  char* h = out.data();
  PutU32(h, kFrameMagic);
  h[4] = static_cast<char>(frame.type);
  h[5] = 0;  // flags
  h[6] = h[7] = 0;  // reserved
  PutU32(h + 8, frame.stream_id);
  PutU32(h + 12, static_cast<uint32_t>(frame.payload.size()));
  PutU32(h + 16, FrameCrc(out, frame.payload));
  out.append(frame.payload);
  return out;
}

absl::Status CheckFrame(const Frame& frame, uint32_t max_payload) {
  if (frame.type == 0) return absl::InvalidArgumentError("frame type 0 is reserved");
  if (frame.payload.size() > max_payload) {
    return absl::ResourceExhaustedError(absl::StrCat("frame payload of ", frame.payload.size(),
                                                     " bytes exceeds limit ", max_payload));
  }
  const std::string name = FrameTypeName(frame.type);
  if (IsStreamType(frame.type) && frame.stream_id == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, " frame needs a stream id != 0"));
  }
  if (!IsStreamType(frame.type) && IsKnownFrameType(frame.type) && frame.stream_id != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " frame must have stream id 0, got ", frame.stream_id));
  }
  if (frame.type == static_cast<uint8_t>(FrameType::kChunk) && frame.payload.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty Chunk frame on stream ", frame.stream_id));
  }
  return absl::OkStatus();
}

// The buffer may hold secret values (Secret frames): bytes are zeroed once consumed, when
// they move within the buffer, and before the buffer is freed or reallocated.
void FrameDecoder::Feed(absl::string_view bytes) {
  if (!error_.ok()) return;
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {  // compact: keep memory bounded
    const size_t keep = buf_.size() - pos_;
    std::memmove(buf_.data(), buf_.data() + pos_, keep);
    SecureWipe(buf_.data() + keep, buf_.size() - keep);
    buf_.resize(keep);
    pos_ = 0;
  }
  if (buf_.size() + bytes.size() > buf_.capacity()) {  // grow without leaving a stale copy
    std::string bigger;
    bigger.reserve(std::max(buf_.capacity() * 2, buf_.size() + bytes.size()));
    bigger.append(buf_);
    SecureWipe(buf_);
    buf_.swap(bigger);
  }
  buf_.append(bytes.data(), bytes.size());
}

FrameDecoder::~FrameDecoder() { SecureWipe(buf_); }

absl::Status FrameDecoder::Fail(absl::Status s) {
  error_ = absl::Status(s.code(), absl::StrCat("frame at stream offset ", offset_, ": ",
                                               s.message()));
  SecureWipe(buf_);
  pos_ = 0;
  return error_;
}

absl::StatusOr<std::optional<Frame>> FrameDecoder::Next() {
  if (!error_.ok()) return error_;
  absl::string_view in(buf_.data() + pos_, buf_.size() - pos_);
  // Magic first, byte by byte: garbage is reported as soon as its first byte arrives.
  const char kMagicBytes[4] = {'K', 'I', 'L', 'N'};
  for (size_t i = 0; i < 4 && i < in.size(); ++i) {
    if (in[i] != kMagicBytes[i]) {
      return Fail(absl::DataLossError(absl::StrFormat(
          "bad magic: byte %d is 0x%02x, want 0x%02x ('%c')", i,
          static_cast<unsigned char>(in[i]), static_cast<unsigned char>(kMagicBytes[i]),
          kMagicBytes[i])));
    }
  }
  if (in.size() < kFrameHeaderSize) return std::optional<Frame>();
  const uint8_t type = static_cast<uint8_t>(in[4]);
  const uint8_t flags = static_cast<uint8_t>(in[5]);
  const uint16_t reserved = GetU16(in.data() + 6);
  const uint32_t stream_id = GetU32(in.data() + 8);
  const uint32_t length = GetU32(in.data() + 12);
  const uint32_t want_crc = GetU32(in.data() + 16);
  if (type == 0) return Fail(absl::InvalidArgumentError("frame type 0 is reserved"));
  if (flags != 0) {
    return Fail(absl::InvalidArgumentError(absl::StrFormat(
        "%s frame has unknown flags 0x%02x (protocol 1.x defines none)", FrameTypeName(type),
        flags)));
  }
  if (reserved != 0) {
    return Fail(absl::InvalidArgumentError(absl::StrFormat(
        "%s frame has non-zero reserved field 0x%04x", FrameTypeName(type), reserved)));
  }
  if (length > max_payload_) {
    return Fail(absl::ResourceExhaustedError(
        absl::StrCat(FrameTypeName(type), " frame length ", length, " exceeds limit ",
                     max_payload_)));
  }
  if (in.size() < kFrameHeaderSize + length) return std::optional<Frame>();
  absl::string_view payload = in.substr(kFrameHeaderSize, length);
  const uint32_t got_crc = FrameCrc(in, payload);
  if (got_crc != want_crc) {
    return Fail(absl::DataLossError(absl::StrFormat(
        "%s frame (stream %u, %u bytes) has bad checksum: crc32c 0x%08x, header says 0x%08x",
        FrameTypeName(type), stream_id, length, got_crc, want_crc)));
  }
  Frame frame(type, stream_id, std::string(payload));
  if (absl::Status s = CheckFrame(frame, max_payload_); !s.ok()) return Fail(s);
  SecureWipe(buf_.data() + pos_, kFrameHeaderSize + length);  // consumed
  pos_ += kFrameHeaderSize + length;
  offset_ += kFrameHeaderSize + length;
  return std::optional<Frame>(std::move(frame));
}

absl::Status FrameDecoder::Finish() const {
  if (!error_.ok()) return error_;
  const size_t n = buf_.size() - pos_;
  if (n == 0) return absl::OkStatus();
  if (n < kFrameHeaderSize) {
    return absl::DataLossError(absl::StrCat("frame at stream offset ", offset_,
                                            ": truncated frame: stream ended after ", n,
                                            " of ", kFrameHeaderSize, " header bytes"));
  }
  const uint32_t length = GetU32(buf_.data() + pos_ + 12);
  return absl::DataLossError(absl::StrCat(
      "frame at stream offset ", offset_, ": truncated ", FrameTypeName(buf_[pos_ + 4]),
      " frame: stream ended after ", n - kFrameHeaderSize, " of ", length, " payload bytes"));
}

void FrameDecoder::Reset() {
  SecureWipe(buf_);
  pos_ = 0;
  offset_ = 0;
  error_ = absl::OkStatus();
}

}  // namespace kiln::agent
