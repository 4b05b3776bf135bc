// File: agent/fuzz/session_fuzzer.cc
// libFuzzer target for AgentSession (server.h): frames in, replies out. The input is what the
// host sends: raw bytes, or (first byte bit 1) records {u8 type, u8 stream id, u16 length,
// payload} encoded as frames with valid checksums, so that mutations reach message handling.
// A valid Hello goes first unless bit 2 is set. The session runs over an in-memory stream
// (read sizes from the first byte's high bits) with a fake build runner (logs, fails with
// bit 3, else returns the context as the image) and Exec disabled (nothing is run). Invariants
// (abort on violation):
//   - Serve() returns (the input ends) with a non-OK status that has a message;
//   - everything the agent wrote is well framed: FrameDecoder returns only frames, ending
//     exactly at a frame boundary; every control frame decodes (DecodeMessage) to a message
//     an agent may send, never a Secret.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "agent/connection.h"
#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"
#include "agent/server.h"
#include "agent/transport.h"

namespace {

using namespace kiln::agent;

void Check(bool ok) {
  if (!ok) std::abort();
}

// MemStream: the host's bytes in, the agent's bytes out.
class MemStream : public ByteStream {
 public:
  MemStream(absl::string_view in, size_t max_read) : in_(in), max_read_(max_read) {}
  absl::StatusOr<size_t> Read(char* buf, size_t n, int) override {
    const size_t k = std::min({n, max_read_, in_.size()});
    std::copy(in_.begin(), in_.begin() + k, buf);
    in_.remove_prefix(k);
    return k;
  }
  absl::Status Write(absl::string_view data, int) override {
    if (out_.size() > (64u << 20)) return absl::UnavailableError("output over 64 MiB");
    out_.append(data.data(), data.size());
    return absl::OkStatus();
  }
  absl::Status Close() override { return absl::OkStatus(); }
  const std::string& out() const { return out_; }

 private:
  absl::string_view in_;
  size_t max_read_;
  std::string out_;
};

const std::string& Scratch() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string t = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (tmp ? tmp : "/tmp")) +
                    "/kiln-session-fuzz-XXXXXX";
    Check(mkdtemp(t.data()) != nullptr);
    std::ofstream(t + "/uptime") << "12.34 20.00\n";
    std::ofstream(t + "/loadavg") << "0.50 1.25 2.00 1/100 42\n";
    std::ofstream(t + "/meminfo") << "MemTotal: 2048 kB\nMemAvailable: 1024 kB\n";
    return t;
  }();
  return dir;
}

bool AgentMaySend(const Message& m) {
  return std::holds_alternative<Ready>(m) || std::holds_alternative<Pong>(m) ||
         std::holds_alternative<ErrorMessage>(m) || std::holds_alternative<Log>(m) ||
         std::holds_alternative<BuildResult>(m) || std::holds_alternative<ExecStarted>(m) ||
         std::holds_alternative<ExecResult>(m) || std::holds_alternative<StreamEnd>(m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string in;
  if (!(flags & 4)) in = EncodeFrame(*EncodeMessage(Hello{}));
  if (flags & 2) {
    while (rest.size() >= 4) {
      const uint8_t type = static_cast<uint8_t>(rest[0]);
      const uint8_t sid = static_cast<uint8_t>(rest[1]);
      size_t len = (static_cast<uint8_t>(rest[2]) << 8) | static_cast<uint8_t>(rest[3]);
      rest.remove_prefix(4);
      len = std::min(len, rest.size());
      in += EncodeFrame(Frame(type, sid, std::string(rest.substr(0, len))));
      rest.remove_prefix(len);
    }
  } else {
    in.append(rest.data(), rest.size());
  }
  MemStream stream(in, 1 + static_cast<size_t>(flags >> 4) * 997);
  Connection conn(&stream);
  AgentOptions o;
  o.proc_root = Scratch();
  o.work_dir = Scratch() + "/work";
  o.io_timeout_ms = 1000;
  o.max_context_bytes = 1 << 16;
  o.max_exec_stdin_bytes = 1 << 16;
  o.allow_exec = false;
  const bool fail = flags & 8;
  o.runner = [fail](const BuildInputs& in) -> absl::StatusOr<BuildOutcome> {
    in.log(LogStream::kStdout, "step 1 \xff\xfe not utf-8");
    for (const auto& [id, value] : in.secrets) in.log(LogStream::kStderr, id);
    if (fail) return absl::InternalError("runner failed");
    BuildOutcome out;
    out.image_path = in.context_tar;
    out.phases = {{"build", 1}};
    return out;
  };
  AgentSession session(&conn, o);
  absl::Status s = session.Serve();
  Check(!s.ok() && !s.message().empty());

  FrameDecoder decoder;
  decoder.Feed(stream.out());
  while (true) {
    absl::StatusOr<std::optional<Frame>> f = decoder.Next();
    Check(f.ok());
    if (!f->has_value()) break;
    const Frame& frame = **f;
    if (frame.type == static_cast<uint8_t>(FrameType::kChunk)) continue;
    absl::StatusOr<Message> m = DecodeMessage(frame);
    Check(m.ok());
    Check(AgentMaySend(*m));
  }
  Check(decoder.Finish().ok());
  return 0;
}

std::vector<std::string> KilnFuzzSeeds() {
  std::vector<std::string> seeds;
  auto structured = [](const std::vector<Frame>& frames, uint8_t flags) {
    std::string s(1, static_cast<char>(flags | 2));
    for (const Frame& f : frames) {
      s += static_cast<char>(f.type);
      s += static_cast<char>(f.stream_id);
      s += static_cast<char>(f.payload.size() >> 8);
      s += static_cast<char>(f.payload.size());
      s += f.payload;
    }
    return s;
  };
  auto msg = [](const Message& m) { return *EncodeMessage(m); };
  BuildJob job;
  job.job_id = "j1";
  job.context_stream = 1;
  job.secret_ids = {"tok"};
  job.preload_images = {{"img", 3}};
  const std::vector<Frame> build = {
      msg(Secret{"tok", "s3cret"}), msg(job), Frame(FrameType::kChunk, 1, "ctx"),
      msg(StreamEnd{1, 3, false, ""}), Frame(FrameType::kChunk, 3, "img"),
      msg(StreamEnd{3, 3, false, ""})};
  seeds.push_back(structured(build, 0x10));
  seeds.push_back(structured(build, 0x18));  // runner fails
  seeds.push_back(structured({msg(Ping{7}), msg(Exec{{"/bin/true"}, {}, "", 1, 0}),
                              Frame(FrameType::kChunk, 1, "in"), msg(StreamEnd{1, 2, false, ""}),
                              msg(Ping{8})},
                             0x20));
  seeds.push_back(structured({msg(Secret{"a", "1"}), msg(BuildJob{"j", 1, "Dockerfile", "", {},
                                                                  "", NetworkMode::kNone, {"a", "b"},
                                                                  {}, "", 0}),
                              Frame(FrameType::kChunk, 1, "x"), msg(StreamEnd{1, 1, false, ""}),
                              msg(BuildJob{"j", 1, "Dockerfile", "", {}, "", NetworkMode::kNone,
                                           {"a"}, {}, "", 0})},
                             0x30));
  seeds.push_back(structured({Frame(FrameType::kChunk, 9, "stray"), msg(Pong{}),
                              Frame(uint8_t{0x60}, 0, "future")},
                             0x40));
  std::string raw(1, '\x50');
  for (const Frame& f : build) raw += EncodeFrame(f);
  seeds.push_back(raw);
  seeds.push_back(std::string(1, '\x04') + "\x16\x03\x01 not a frame");
  return seeds;
}
extern const char kKilnFuzzName[] = "session_fuzzer";
extern const int kKilnFuzzMutations = 20000;
