// A deterministic driver for protocol_fuzzer.cc without libFuzzer: a seed corpus (a valid
// frame of every message, plus streams) and fixed-seed mutations of it (bit flips, byte
// replacements, truncations, splices, inserted length fields), each run through
// LLVMFuzzerTestOneInput. Any invariant violation aborts the test.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "agent/protocol/frame.h"
#include "agent/protocol/messages.h"
#include "agent/protocol/stream.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main() {
  using namespace kiln::agent;
  std::vector<std::string> corpus;
  const std::vector<Message> messages = {
      Hello{1, 0, "h"}, Ready{1, 0, "a", {"exec"}}, Ping{1}, Pong{},
      ErrorMessage{absl::StatusCode::kInternal, "x"}, Secret{"id", "v"},
      BuildJob{"j", 1, "Dockerfile", "FROM x", {{"A", "b"}}, "t", NetworkMode::kNone, {"id"},
               {{"img", 3}}, "tag", 5},
      Log{LogStream::kStdout, 1, "line"}, BuildResult{"j", 0, "", 2, {{"build", 1}}, ""},
      Exec{{"/bin/true"}, {"A=b"}, "/", 0, 0}, ExecStarted{1, 2, 4}, ExecResult{0, 0, 1, ""},
      StreamEnd{1, 3, false, ""}};
  std::string all;
  for (const Message& m : messages) {
    std::string f = EncodeFrame(*EncodeMessage(m));
    corpus.push_back(std::string(1, '\x05') + f);
    all += f;
  }
  for (const Frame& f : ChunkFrames(1, "abc", 1)) all += EncodeFrame(f);
  corpus.push_back(std::string(1, '\x40') + all);

  // Structured seeds (first byte bit 1): records {type, stream, u16 length, payload}.
  for (const Message& m : messages) {
    Frame f = *EncodeMessage(m);
    std::string rec = {static_cast<char>(f.type), static_cast<char>(f.stream_id),
                       static_cast<char>(f.payload.size() >> 8),
                       static_cast<char>(f.payload.size())};
    corpus.push_back(std::string(1, '\x02') + rec + f.payload);
  }
  if (const char* dir = std::getenv("KILN_FUZZ_WRITE_CORPUS")) {  // seeds for libFuzzer
    for (size_t i = 0; i < corpus.size(); ++i) {
      std::ofstream(std::string(dir) + "/seed-" + std::to_string(i), std::ios::binary)
          << corpus[i];
    }
  }

  std::mt19937 rng(20261129);
  size_t runs = 0;
  for (const std::string& c : corpus) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(c.data()), c.size());
    ++runs;
  }
  for (int iter = 0; iter < 60000; ++iter) {
    std::string s = corpus[rng() % corpus.size()];
    switch (rng() % 5) {
      case 0: s[rng() % s.size()] ^= static_cast<char>(1u << (rng() % 8)); break;
      case 1: s[rng() % s.size()] = static_cast<char>(rng()); break;
      case 2: s.resize(rng() % s.size() + 1); break;
      case 3: s += corpus[rng() % corpus.size()].substr(1); break;
      default: {
        const size_t at = 1 + rng() % (s.size());
        const uint32_t v = rng();
        s.insert(std::min(at, s.size()), std::string(reinterpret_cast<const char*>(&v), 4));
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    ++runs;
  }
  std::printf("protocol_fuzzer: %zu inputs, no invariant violated\n", runs);
  return 0;
}
