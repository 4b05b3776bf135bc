#include "agent/runner/redact.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
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

}  // namespace
}  // namespace kiln::agent::runner
