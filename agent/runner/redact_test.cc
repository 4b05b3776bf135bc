// File: agent/runner/redact_test.cc
// The redactor: the forms of agent/secret_forms.h as real tools print them (base64, basenc,
// od, xxd, hexdump, fold run on a secret file here), wrapped in BuildKit's plain progress
// format, steps interleaved, fed at every split point; checked by an independent oracle
// (redact_oracle.h) for 0 surviving 16-character windows and a minimum number of markers.
#include "agent/runner/redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/runner/redact_oracle.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::agent::runner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

using Secrets = std::map<std::string, std::string>;
constexpr char kSecret[] = "hunter2-Sup3rSecret!";

TEST(RedactorTest, RawValue) {
  Redactor r(Secrets{{"tok", kSecret}});
  EXPECT_EQ(r.Redact(std::string("echo ") + kSecret + " done"), "echo [REDACTED:tok] done");
  EXPECT_EQ(r.Redact(std::string(kSecret) + kSecret), "[REDACTED:tok]");
  EXPECT_EQ(r.Redact("nothing here"), "nothing here");
}

TEST(RedactorTest, NoSecretsPassesThrough) {
  Redactor r(Secrets{});
  EXPECT_EQ(r.Redact("#6 0.105 hello"), "#6 0.105 hello");
  EXPECT_EQ(r.MaxPatternBytes(), 0u);
}

TEST(RedactorTest, HexBothCases) {
  Redactor r(Secrets{{"tok", kSecret}});
  std::string hex = absl::BytesToHexString(kSecret);
  EXPECT_THAT(r.Redact("x " + hex + " y"), Not(HasSubstr(hex)));
  std::string upper = absl::AsciiStrToUpper(hex);
  EXPECT_THAT(r.Redact("x " + upper + " y"), Not(HasSubstr(upper)));
}

TEST(RedactorTest, Base64AtEveryAlignmentAndAlphabet) {
  const std::string secret = "\xff\xfe binary?secret>>";
  Redactor r(Secrets{{"b", secret}});
  for (int k = 0; k < 3; ++k) {
    std::string blob = std::string(k, 'P') + secret + "tail";
    for (bool url : {false, true}) {
      SCOPED_TRACE(k);
      std::string enc = url ? absl::WebSafeBase64Escape(blob) : absl::Base64Escape(blob);
      std::string out = r.Redact("data: " + enc);
      EXPECT_THAT(out, HasSubstr("[REDACTED:b]")) << enc;
      // Decoding what is left must not give the secret back.
      std::string left = out.substr(out.find("[REDACTED:b]") + 12);
      std::string dec;
      absl::Base64Unescape(left, &dec);
      EXPECT_FALSE(absl::StrContains(dec, secret));
    }
  }
}

TEST(RedactorTest, MultiLineValueEachLine) {
  Redactor r(Secrets{{"key", "-----BEGIN KEY-----\nMIIBOgIBAAJBAK\n-----END KEY-----\n"}});
  EXPECT_EQ(r.Redact("#7 0.1 MIIBOgIBAAJBAK"), "#7 0.1 [REDACTED:key]");
}

TEST(RedactorTest, ShortDerivedFormsAreNotMaskedRawIs) {
  Redactor r(Secrets{{"pin", "42"}});
  EXPECT_EQ(r.Redact("pin=42"), "pin=[REDACTED:pin]");
  EXPECT_EQ(r.Redact("3432"), "3432");  // hex of "42" is only 4 chars: not masked
}

TEST(LineRedactorTest, SecretSplitAcrossReadsAtEveryPoint) {
  Redactor r(Secrets{{"tok", kSecret}});
  const std::string stream = std::string("line one\n#6 0.1 ") + kSecret + "\nlast";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SCOPED_TRACE(cut);
    std::vector<std::string> got;
    LineRedactor lines(&r, [&](absl::string_view l) { got.emplace_back(l); });
    lines.Feed(stream.substr(0, cut));
    lines.Feed(stream.substr(cut));
    lines.Flush();
    EXPECT_THAT(got, ElementsAre("line one", "#6 0.1 [REDACTED:tok]", "last"));
  }
}

TEST(LineRedactorTest, ByteByByteAndCrLf) {
  Redactor r(Secrets{{"tok", kSecret}});
  std::vector<std::string> got;
  LineRedactor lines(&r, [&](absl::string_view l) { got.emplace_back(l); });
  for (char c : std::string("a ") + kSecret + "\r\nb\n") lines.Feed(std::string(1, c));
  lines.Flush();
  EXPECT_THAT(got, ElementsAre("a [REDACTED:tok]", "b"));
}

TEST(LineRedactorTest, OverlongLineIsCutWithoutSplittingASecret) {
  Redactor r(Secrets{{"tok", kSecret}});
  std::vector<std::string> got;
  LineRedactor lines(&r, [&](absl::string_view l) { got.emplace_back(l); });
  // Place the secret so that it straddles kMaxLineBytes, and feed in odd-sized pieces.
  std::string line(kMaxLineBytes - 5, 'x');
  line += kSecret;
  line += std::string(1000, 'y');
  for (size_t i = 0; i < line.size(); i += 4093) lines.Feed(line.substr(i, 4093));
  lines.Feed("\n");
  lines.Flush();
  std::string joined;
  for (const std::string& g : got) {
    EXPECT_FALSE(absl::StrContains(g, "hunter2")) << "a piece of the secret leaked";
    joined += g;
  }
  EXPECT_GE(got.size(), 2u);
  EXPECT_THAT(joined, HasSubstr("[REDACTED:tok]"));
}

// ---------------------------------------------------------------------------------------
// Real tool output, BuildKit framing, every split point, an independent oracle.

// Token: a 124-byte GitHub-style token ("ghp_" + base64 text).
std::string Token() {
  std::mt19937 rng(124);
  std::string raw(90, '\0');
  for (char& c : raw) c = static_cast<char>(rng());
  return "ghp_" + absl::Base64Escape(raw).substr(0, 120);
}

std::string Binary16K() {
  std::mt19937 rng(16);
  std::string s(16 * 1024, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string SecretFile(const std::string& secret) {
  const char* t = getenv("TEST_TMPDIR");
  std::string path = std::string(t ? t : "/tmp") + "/secret-XXXXXX";
  const int fd = mkstemp(path.data());
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, secret.data(), secret.size()), static_cast<ssize_t>(secret.size()));
  close(fd);
  return path;
}

// RunTool(cmd): the stdout of `sh -c cmd` ({} replaced by the secret file), which must exit 0.
std::string RunTool(std::string cmd, const std::string& file) {
  for (size_t p = cmd.find("{}"); p != std::string::npos; p = cmd.find("{}", p)) {
    cmd.replace(p, 2, file);
  }
  FILE* f = popen(cmd.c_str(), "r");
  EXPECT_NE(f, nullptr) << cmd;
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(f), 0) << cmd;
  return out;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// BuildkitLog(step, output): the tool's output as BuildKit's plain progress prints a RUN step.
std::vector<std::string> BuildkitLines(int step, const std::string& output) {
  std::vector<std::string> out = {absl::StrCat("#", step, " [2/3] RUN print the secret")};
  int i = 0;
  for (const std::string& l : Lines(output)) {
    out.push_back(absl::StrCat("#", step, " ", i / 10, ".", 100 + i % 10 * 37, " ", l));
    ++i;
  }
  out.push_back(absl::StrCat("#", step, " DONE 0.4s"));
  return out;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += l + "\n";
  return s;
}

std::vector<std::string> RedactStream(const Redactor& r, const std::vector<absl::string_view>& parts) {
  std::vector<std::string> got;
  LineRedactor lines(&r, [&](absl::string_view l) { got.emplace_back(l); });
  for (absl::string_view p : parts) lines.Feed(p);
  lines.Flush();
  return got;
}

int Markers(const std::vector<std::string>& lines) {
  int n = 0;
  for (const std::string& l : lines) {
    for (size_t p = l.find("[REDACTED"); p != std::string::npos; p = l.find("[REDACTED", p + 1)) {
      ++n;
    }
  }
  return n;
}

struct ToolCase {
  std::string cmd;
  int chars_per_line;  // form characters per output line (for the minimum marker count)
  int trailer_lines;   // output lines without secret material (od's final offset line)
};

std::vector<ToolCase> Tools(bool printable) {
  std::vector<ToolCase> t = {
      {"base64 {}", 76, 0},
      {"base64 -w 0 {}", 1 << 20, 0},
      {"basenc --base64url {}", 76, 0},
      {"base64 {} | tr -d =", 76, 0},
      {"od -An -tx1 {}", 32, 0},
      {"od -An -tx1 {} | head -3", 32, 0},
      {"od -tx1 {}", 32, 1},
      {"od -An -tx1 -w7 {}", 14, 0},
      {"xxd {}", 32, 0},
      {"xxd -u {}", 32, 0},
      {"xxd -p {}", 60, 0},
      {"xxd -p -c 5 {}", 10, 0},
      {"hexdump -C {}", 32, 1},
      {"od -An -tx1 {} | tr a-f A-F", 32, 0},
  };
  for (int w = 1; w <= 20; ++w) t.push_back({absl::StrCat("base64 -w ", w, " {}"), w, 0});
  if (printable) {
    t.push_back({"cat {}; echo", 1 << 20, 0});
    t.push_back({"fold -w 10 {}; echo", 10, 0});
    t.push_back({"fold -w 40 {}; echo", 40, 0});
  }
  return t;
}

// MinMarkers(case, output): every output line with secret material carries a marker, except
// the chain head (the first lines of a chain holding fewer than 16 form characters) and
// trailing lines without secret material (od's final offset; base64's last 1-3 characters,
// a partial group and '=' padding, which depend on bits beyond the secret).
int MinMarkers(const ToolCase& c, const std::string& output) {
  const std::vector<std::string> lines = Lines(output);
  int trailer = c.trailer_lines;
  if (absl::StrContains(c.cmd, "base64")) {
    size_t chars = 0;
    for (auto it = lines.rbegin(); it != lines.rend() && chars + it->size() <= 3; ++it) {
      chars += it->size();
      ++trailer;
    }
  }
  const int head_lines = c.chars_per_line >= 16 ? 0 : 15 / c.chars_per_line;
  return std::max(1, static_cast<int>(lines.size()) - trailer - head_lines);
}

void CheckTool(const std::string& secret, const ToolCase& c, bool every_split) {
  SCOPED_TRACE(c.cmd);
  const std::string file = SecretFile(secret);
  const std::string output = RunTool(c.cmd, file);
  unlink(file.c_str());
  ASSERT_FALSE(output.empty());
  const std::vector<std::string> log = BuildkitLines(6, output);
  const std::string stream = Join(log);
  Redactor r(Secrets{{"tok", secret}});
  testing::WindowOracle oracle(secret);
  ASSERT_GT(oracle.Survivors(log), 0) << "the unredacted output must contain the secret";
  const std::vector<std::string> want = RedactStream(r, {stream});
  EXPECT_EQ(oracle.Survivors(want), 0) << oracle.first_survivor() << "\n" << Join(want);
  EXPECT_GE(Markers(want), MinMarkers(c, output)) << Join(want);
  EXPECT_EQ(want.size(), log.size());
  // Every split point (for the 16 KiB secret: ~40 points spread over the stream): the same
  // lines come out.
  std::vector<size_t> cuts;
  const size_t stride = std::max<size_t>(1, stream.size() / 40);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    if (every_split || cut % stride == 0) cuts.push_back(cut);
  }
  for (size_t cut : cuts) {
    const absl::string_view s(stream);
    const std::vector<std::string> got = RedactStream(r, {s.substr(0, cut), s.substr(cut)});
    if (got != want) {
      ADD_FAILURE() << "split at " << cut << " changed the output";
      break;
    }
  }
}

TEST(RedactFormsTest, TokenEveryToolEverySplitPoint) {
  const std::string token = Token();
  ASSERT_EQ(token.size(), 124u);
  for (const ToolCase& c : Tools(true)) CheckTool(token, c, true);
}

TEST(RedactFormsTest, Binary16KiBEveryTool) {
  const std::string secret = Binary16K();
  for (const ToolCase& c : Tools(false)) {
    // base64 -w 1..20 (covered with the token): a few widths only, to keep the test fast.
    if (absl::StartsWith(c.cmd, "base64 -w ") && c.chars_per_line != 7 &&
        c.chars_per_line != 16) {
      continue;
    }
    CheckTool(secret, c, false);
  }
}

TEST(RedactFormsTest, TokenByteByByte) {
  const std::string token = Token();
  const std::string file = SecretFile(token);
  const std::string stream = Join(BuildkitLines(6, RunTool("base64 -w 20 {}; od -An -tx1 {}", file)));
  unlink(file.c_str());
  Redactor r(Secrets{{"tok", token}});
  std::vector<absl::string_view> bytes;
  for (size_t i = 0; i < stream.size(); ++i) bytes.push_back(absl::string_view(stream).substr(i, 1));
  EXPECT_EQ(RedactStream(r, bytes), RedactStream(r, {stream}));
}

TEST(RedactFormsTest, InterleavedStepsKeepTheirOwnChains) {
  const std::string token = Token();
  const std::string file = SecretFile(token);
  const std::vector<std::vector<std::string>> steps = {
      BuildkitLines(6, RunTool("base64 -w 10 {}", file)),
      BuildkitLines(7, RunTool("od -An -tx1 -w5 {}", file)),
      BuildkitLines(8, RunTool("xxd -p -c 6 {}", file)),
      BuildkitLines(9, RunTool("seq 1 40", file))};
  unlink(file.c_str());
  // Round-robin, one line of each step at a time: no two consecutive lines of one step.
  std::vector<std::string> log;
  for (size_t i = 0;; ++i) {
    bool any = false;
    for (const auto& s : steps) {
      if (i < s.size()) {
        log.push_back(s[i]);
        any = true;
      }
    }
    if (!any) break;
  }
  Redactor r(Secrets{{"tok", token}});
  testing::WindowOracle oracle(token);
  const std::string stream = Join(log);
  const std::vector<std::string> got = RedactStream(r, {stream});
  EXPECT_EQ(oracle.Survivors(got), 0) << oracle.first_survivor() << "\n" << Join(got);
  // base64 -w 10: 17 lines, 1 head line; od -w5: 25 lines of 10; xxd -c 6: 21 lines of 12.
  EXPECT_GE(Markers(got), (17 - 1) + (25 - 1) + (21 - 1));
  for (const std::string& l : got) {
    if (absl::StartsWith(l, "#9 ")) {
      EXPECT_THAT(l, Not(HasSubstr("REDACTED"))) << l;
    }
  }
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    const absl::string_view s(stream);
    ASSERT_EQ(RedactStream(r, {s.substr(0, cut), s.substr(cut)}), got) << cut;
  }
}

TEST(RedactFormsTest, ChainHeadIsAtMostFifteenCharacters) {
  const std::string token = Token();
  Redactor r(Secrets{{"tok", token}});
  const std::string b64 = absl::Base64Escape(token);
  std::string stream;
  for (size_t i = 0; i < b64.size(); i += 5) stream += "#6 0.1 " + b64.substr(i, 5) + "\n";
  const std::vector<std::string> got = RedactStream(r, {stream});
  // Lines 0-2 (15 characters) are out before a window completes; from line 3 on, masked.
  EXPECT_EQ(got[0], "#6 0.1 " + b64.substr(0, 5));
  EXPECT_EQ(got[2], "#6 0.1 " + b64.substr(10, 5));
  // The last line holds base64's final "g==": a partial group and padding, not secret bits.
  for (size_t i = 3; i + 1 < got.size(); ++i) EXPECT_EQ(got[i], "#6 0.1 [REDACTED:tok]") << i;
}

TEST(RedactFormsTest, OverlongLineHoldsBackWhatALaterWindowCanReach) {
  const std::string token = Token();
  Redactor r(Secrets{{"tok", token}});
  // Spaced hex straddling the cut: the held-back part covers the whitespace too.
  std::string hex;
  for (unsigned char c : token) hex += absl::StrCat(absl::BytesToHexString(std::string(1, c)), "   ");
  // The first cut comes after the 65th 4093-byte read; put it 300 bytes into the hex.
  const size_t first_cut = (kMaxLineBytes / 4093 + 1) * 4093;
  std::string line = "#6 0.1 " + std::string(first_cut - 300 - 7, 'x') + hex +
                     std::string(5000, 'y') + "\n";
  std::vector<absl::string_view> parts;
  for (size_t i = 0; i < line.size(); i += 4093) parts.push_back(absl::string_view(line).substr(i, 4093));
  const std::vector<std::string> got = RedactStream(r, parts);
  EXPECT_GE(got.size(), 2u);
  testing::WindowOracle oracle(token);
  std::string joined;
  for (const std::string& g : got) joined += g.substr(absl::StartsWith(g, "#6 0.1 ") ? 7 : 0);
  EXPECT_EQ(oracle.Survivors({"#6 0.1 " + joined}), 0) << oracle.first_survivor();
  EXPECT_THAT(joined, HasSubstr("[REDACTED:tok]"));
}

TEST(RedactFormsTest, LastLineWithoutNewlineEndsLikeAnyLine) {
  // Found by redact_fuzzer: a value ending in '\n' printed as the stream's last, unterminated
  // line; the host reads that line as ending in '\n' too.
  const std::string secret = "ghNzg5\xccGViY1RlZmm\n";
  Redactor r(Secrets{{"t", secret}});
  const std::vector<std::string> got =
      RedactStream(r, {"\xa8\xa5\x92\xbcvYmFyYmF5cXVy\nDU1Nzg5\xccGViY1RlZmm"});
  testing::WindowOracle oracle(secret);
  EXPECT_EQ(oracle.Survivors(got), 0) << oracle.first_survivor();
}

}  // namespace
}  // namespace kiln::agent::runner
