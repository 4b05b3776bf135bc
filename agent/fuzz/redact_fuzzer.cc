// File: agent/fuzz/redact_fuzzer.cc
// libFuzzer target for the log redactor (agent/runner/redact.h). Invariant: after
// LineRedactor, no 16-character window (or whole short form) of the secret's raw, folded,
// base64 or hex forms survives in the lines of any step, reassembled as the host reads them;
// checked by the independent oracle agent/runner/redact_oracle.h. Aborts on a violation.
//
// Input layout: [mode][wrap][secret length n][n secret bytes][rest]. `mode` picks how the
// secret is printed into step #6's output (raw, base64 std/url, hex lower/upper/spaced/xxd
// groups, or not at all: then `rest` alone is the log); `wrap` is the line width (0: one line);
// `rest` supplies noise lines (interleaved as step #7 or unprefixed text) and read sizes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "agent/runner/redact.h"
#include "agent/runner/redact_oracle.h"

namespace {

using kiln::agent::runner::LineRedactor;
using kiln::agent::runner::Redactor;

std::string Encode(int mode, const std::string& s) {
  switch (mode) {
    case 0:
      return s;
    case 1:
      return absl::Base64Escape(s);
    case 2:
      return absl::WebSafeBase64Escape(s);
    case 3:
      return absl::BytesToHexString(s);
    case 4:
      return absl::AsciiStrToUpper(absl::BytesToHexString(s));
    case 5: {  // od -An -tx1: " 67 68"
      std::string out;
      for (unsigned char c : s) out += " " + absl::BytesToHexString(std::string(1, c));
      return out;
    }
    case 6: {  // xxd groups: "6768 705f"
      const std::string hex = absl::BytesToHexString(s);
      std::string out;
      for (size_t i = 0; i < hex.size(); i += 4) out += hex.substr(i, 4) + " ";
      return out;
    }
    default:
      return "";
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const int mode = data[0] % 8;
  const size_t wrap = data[1] % 90;
  const size_t n = data[2];
  if (size < 3 + n || n == 0) return 0;
  const std::string secret(reinterpret_cast<const char*>(data + 3), n);
  const std::string rest(reinterpret_cast<const char*>(data + 3 + n), size - 3 - n);
  // A secret containing the marker's own characters could be re-formed by a marker: out of
  // scope (see agent/README.md).
  if (secret.find_first_of("[]:") != std::string::npos) return 0;

  // A secret found inside the marker text itself ("T" in "[REDACTED:t]") is out of scope too.
  kiln::agent::runner::testing::WindowOracle oracle(secret);
  if (oracle.Survivors({"[REDACTED:t]"}) != 0) return 0;

  std::string log;
  size_t r = 0;  // position in rest
  auto noise = [&]() {
    if (r >= rest.size()) return;
    const size_t len = std::min<size_t>(rest.size() - r, static_cast<uint8_t>(rest[r]) % 24);
    const std::string text = rest.substr(r + 1 < rest.size() ? r + 1 : r, len);
    r += len + 1;
    log += (len % 2 ? "#7 0.3 " : "") + text + "\n";
  };
  if (mode == 7) {
    log = rest;
  } else {
    const std::string enc = Encode(mode, secret);
    const size_t w = wrap == 0 ? enc.size() + 1 : wrap;
    log += "#6 [2/3] RUN print\n";
    for (size_t i = 0; i < enc.size(); i += w) {
      log += absl::StrCat("#6 ", i / w, ".1 ", enc.substr(i, w), "\n");
      noise();
    }
    while (r < rest.size()) noise();
  }

  Redactor redactor({{"t", secret}});
  std::vector<std::string> lines;
  LineRedactor lr(&redactor, [&](absl::string_view l) { lines.emplace_back(l); });
  // Read sizes from the secret's bytes (deterministic, varied).
  size_t pos = 0, k = 0;
  while (pos < log.size()) {
    const size_t step = 1 + static_cast<uint8_t>(secret[k++ % secret.size()]) % 97;
    lr.Feed(absl::string_view(log).substr(pos, step));
    pos += step;
  }
  lr.Flush();
  if (oracle.Survivors(lines) != 0) {
    std::fprintf(stderr, "redact_fuzzer: a window survived: %s\n",
                 absl::CHexEscape(oracle.first_survivor()).c_str());
    std::abort();
  }
  return 0;
}

// Seeds (used by agent/fuzz/seed_driver.cc and written as the libFuzzer corpus).
extern const char kKilnFuzzName[] = "redact_fuzzer";
extern const int kKilnFuzzMutations = 6000;
std::vector<std::string> KilnFuzzSeeds() {
  const std::string token =
      "ghp_" + std::string("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6"
                           "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo1Njc4OTAxMjM0NTY3");
  std::vector<std::string> seeds;
  for (int mode = 0; mode < 8; ++mode) {
    for (int wrap : {0, 1, 5, 15, 16, 17, 32, 76}) {
      std::string s;
      s.push_back(static_cast<char>(mode));
      s.push_back(static_cast<char>(wrap));
      const std::string secret = token.substr(0, mode == 7 ? 20 : 124);
      s.push_back(static_cast<char>(secret.size()));
      s += secret;
      s += mode == 7 ? "#6 0.1 " + token.substr(0, 12) + "\n#6 0.2 " + token.substr(12, 30) + "\n"
                     : std::string("\x05hello\x08#7 noise\x03xyz");
      seeds.push_back(s);
    }
  }
  std::string bin = {3, 16, 40};
  for (int i = 0; i < 40; ++i) bin.push_back(static_cast<char>(i * 73 + 5));
  seeds.push_back(bin);
  return seeds;
}
