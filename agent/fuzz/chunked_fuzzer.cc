// File: agent/fuzz/chunked_fuzzer.cc
// libFuzzer target for runner::ChunkedDecoder (unix_http.h), the decoder of dockerd's chunked
// responses. The input is a coded body; the first two bytes choose split points. Invariants
// (abort on violation):
//   - feeding the body whole or in three pieces gives the same result (both OK with the same
//     decoded bytes and done(), or both an error with a message);
//   - the decoded bytes are never more than the coded bytes;
//   - once Feed() failed, every later Feed() fails too (errors are sticky).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "agent/runner/unix_http.h"

namespace {
void Check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using kiln::agent::runner::ChunkedDecoder;
  if (size < 2) return 0;
  absl::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  const size_t a = std::min<size_t>(data[0], in.size());
  const size_t b = std::min<size_t>(a + data[1], in.size());
  ChunkedDecoder whole;
  std::string out_whole;
  absl::Status s_whole = whole.Feed(in, &out_whole);
  ChunkedDecoder split;
  std::string out_split;
  absl::Status s_split = split.Feed(in.substr(0, a), &out_split);
  if (s_split.ok()) s_split = split.Feed(in.substr(a, b - a), &out_split);
  if (s_split.ok()) s_split = split.Feed(in.substr(b), &out_split);
  Check(s_whole.ok() == s_split.ok());
  Check(out_whole.size() <= in.size());
  if (s_whole.ok()) {
    Check(out_whole == out_split);
    Check(whole.done() == split.done());
  } else {
    Check(!s_whole.message().empty());
    std::string more;
    Check(!whole.Feed("0\r\n\r\n", &more).ok());  // sticky
    Check(more.empty());
  }
  return 0;
}

std::vector<std::string> KilnFuzzSeeds() {
  return {
      std::string("\x03\x07") + "5\r\nhello\r\n0\r\n\r\n",
      std::string("\x01\x01") + "4;ext=1\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n",
      std::string("\x09\x02") + "3\r\nabc\r\n0\r\nTrailer: x\r\n\r\n",
      std::string("\x00\x00") + "1\nx\n0\n\n",
      std::string("\x02\x05") + "fffffffffffffff\r\nabc",
      std::string("\x02\x05") + "zz\r\n",
      std::string("\x02\x05") + "3\r\nabcX\r\n",
  };
}
extern const char kKilnFuzzName[] = "chunked_fuzzer";
extern const int kKilnFuzzMutations = 100000;
