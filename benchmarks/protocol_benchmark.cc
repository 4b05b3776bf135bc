// protocol_benchmark: micro benchmarks of the agent wire protocol (//agent:protocol,
// agent/PROTOCOL.md; benchmarks/micro/micro.h): CRC-32C, frame encoding, streaming frame decoding
// of a 1 MiB transfer fed in 4 KiB reads (as a build context arrives over virtio-serial), and
// the Log message codec (one live build-log line).
//
//   bazel run //benchmarks:protocol_benchmark -- --benchmark_filter=decode
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "agent/protocol/crc32c.h"
#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"
#include "benchmarks/micro/micro.h"

namespace kiln::agent {
namespace {

constexpr size_t kChunk = 64u << 10;   // payload of one kChunk frame, bytes
constexpr int kFrames = 16;            // 16 x 64 KiB = 1 MiB per transfer
constexpr size_t kReadSize = 4u << 10;  // bytes per Feed()

const std::string& Payload() {
  static const std::string* p = [] {
    auto* s = new std::string(kChunk, '\0');
    uint32_t x = 11;
    for (char& c : *s) {
      x = x * 1664525u + 1013904223u;
      c = static_cast<char>(x >> 24);
    }
    return s;
  }();
  return *p;
}

const std::string& Wire() {
  static const std::string* w = [] {
    auto* s = new std::string;
    for (int i = 0; i < kFrames; ++i) *s += EncodeFrame(Frame(FrameType::kChunk, 3, Payload()));
    return s;
  }();
  return *w;
}

KILN_MICRO("protocol/crc32c/bytes:64KiB", []() -> absl::StatusOr<int64_t> {
  volatile uint32_t crc = Crc32c(Payload());
  (void)crc;
  return static_cast<int64_t>(Payload().size());
});

KILN_MICRO("protocol/encode_frame/payload:64KiB", []() -> absl::StatusOr<int64_t> {
  std::string wire = EncodeFrame(Frame(FrameType::kChunk, 3, Payload()));
  return static_cast<int64_t>(wire.size());
});

KILN_MICRO("protocol/decode_frames/frames:16x64KiB", []() -> absl::StatusOr<int64_t> {
  const std::string& wire = Wire();
  FrameDecoder decoder;
  int64_t payload_bytes = 0;
  int frames = 0;
  for (size_t off = 0; off < wire.size(); off += kReadSize) {
    decoder.Feed(absl::string_view(wire).substr(off, kReadSize));
    for (;;) {
      absl::StatusOr<std::optional<Frame>> f = decoder.Next();
      if (!f.ok()) return f.status();
      if (!f->has_value()) break;
      payload_bytes += static_cast<int64_t>((*f)->payload.size());
      ++frames;
    }
  }
  if (absl::Status s = decoder.Finish(); !s.ok()) return s;
  if (frames != kFrames) return absl::InternalError("decoded frame count mismatch");
  return payload_bytes;
});

KILN_MICRO("protocol/log_message_roundtrip/text:200B", []() -> absl::StatusOr<int64_t> {
  Log log;
  log.stream = LogStream::kSystem;
  log.time_ms = 123456;
  log.text = std::string(200, 'x');
  absl::StatusOr<Frame> f = EncodeMessage(log);
  if (!f.ok()) return f.status();
  std::string wire = EncodeFrame(*f);
  absl::StatusOr<Log> back = DecodeAs<Log>(*f);
  if (!back.ok()) return back.status();
  return static_cast<int64_t>(wire.size());
});

}  // namespace
}  // namespace kiln::agent
