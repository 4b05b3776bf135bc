// libFuzzer entry point for the protocol codec: any bytes, split at a point chosen by the
// first input byte, go through FrameDecoder; every frame goes through DecodeMessage (or a
// StreamReceiver). If the first byte has bit 1 set, the rest is read as records
// {u8 type, u8 stream id, u16 length, payload} and encoded as frames with valid checksums
// first, so that the fuzzer reaches message decoding instead of stopping at the CRC. Invariants (abort on violation, so the fuzzer reports them):
//   - nothing crashes, every failure is a non-OK Status with a message;
//   - a frame the decoder returns passes CheckFrame;
//   - a message that decodes validates, re-encodes, and decodes to an equal value.
// Built by run_libfuzzer.sh (clang -fsanitize=fuzzer,address,undefined) and, with
// fuzz_driver.cc, by the //agent:protocol_fuzzer_test cc_test over a fixed corpus.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"
#include "agent/protocol/stream.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln::agent;
  if (size == 0) return 0;
  const size_t split = data[0] % (size);
  absl::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string structured;
  if (data[0] & 2) {
    absl::string_view r = in;
    while (r.size() >= 4) {
      const uint8_t type = static_cast<uint8_t>(r[0]);
      const uint8_t sid = static_cast<uint8_t>(r[1]);
      size_t len = (static_cast<uint8_t>(r[2]) << 8) | static_cast<uint8_t>(r[3]);
      r.remove_prefix(4);
      len = std::min(len, r.size());
      structured += EncodeFrame(Frame(type, sid, std::string(r.substr(0, len))));
      r.remove_prefix(len);
    }
    in = structured;
  }
  FrameDecoder decoder(data[0] & 1 ? 4096 : kMaxPayload);
  StreamReceiver rx;
  StringSink sink;
  (void)rx.Expect(1, 1 << 16, &sink);
  (void)rx.Expect(2, 1 << 16, &sink);
  for (absl::string_view part : {in.substr(0, split), in.substr(std::min(split, in.size()))}) {
    decoder.Feed(part);
    while (true) {
      absl::StatusOr<std::optional<Frame>> f = decoder.Next();
      if (!f.ok()) {
        Check(!f.status().message().empty());
        return 0;
      }
      if (!f->has_value()) break;
      const Frame& frame = **f;
      Check(CheckFrame(frame).ok());
      if (frame.type == static_cast<uint8_t>(FrameType::kChunk)) {
        (void)rx.OnFrame(frame);
        continue;
      }
      absl::StatusOr<Message> m = DecodeMessage(frame);
      if (!m.ok()) {
        Check(!m.status().message().empty());
        continue;
      }
      Check(Validate(*m).ok());
      absl::StatusOr<Frame> again = EncodeMessage(*m);
      Check(again.ok());
      absl::StatusOr<Message> m2 = DecodeMessage(*again);
      Check(m2.ok() && *m2 == *m);
    }
  }
  (void)decoder.Finish();
  return 0;
}
