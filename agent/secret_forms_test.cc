// File: agent/secret_forms_test.cc
// The forms, the 16-character window rule, offsets mapped back to the original bytes, carry
// across Feed() calls, and BuildKit line splitting. The redactor's end-to-end tests (real
// base64/od/xxd/hexdump output at every split point): agent/runner/redact_test.cc.
#include "agent/secret_forms.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::agent {
namespace {

constexpr char kSecret[] = "hunter2-Sup3rSecret!";

std::vector<SecretHit> Scan(const SecretForms& f, const std::vector<std::string>& parts) {
  SecretMatcher m(&f);
  std::vector<SecretHit> hits;
  for (const std::string& p : parts) m.Feed(p, &hits);
  return hits;
}

TEST(SecretFormsTest, HeaderExampleHexAcrossFeeds) {
  SecretForms f({kSecret});
  SecretMatcher m(&f);
  std::vector<SecretHit> hits;
  m.Feed("68756e746572322d53\n", &hits);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].begin, 0u);
  EXPECT_EQ(hits[0].end, 18u);
  EXPECT_EQ(hits[0].form, SecretForm::kHex);
  hits.clear();
  m.Feed("7570\n", &hits);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].begin, 3u);
  EXPECT_EQ(hits[0].end, 23u);
}

TEST(SecretFormsTest, FifteenCharsAreNotAWindowSixteenAre) {
  SecretForms f({kSecret});
  const std::string s = kSecret;
  EXPECT_TRUE(Scan(f, {"x" + s.substr(0, 15) + "y"}).empty());
  std::vector<SecretHit> hits = Scan(f, {"x" + s.substr(3, 16) + "y"});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].begin, 1u);
  EXPECT_EQ(hits[0].end, 17u);
  EXPECT_EQ(hits[0].form, SecretForm::kRaw);
}

TEST(SecretFormsTest, ShortRawWholeEvenOneByteShortDerivedNot) {
  SecretForms f({"", "Q"});
  std::vector<SecretHit> hits = Scan(f, {"aQb"});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].secret, 1u);
  EXPECT_EQ(hits[0].begin, 1u);
  EXPECT_TRUE(Scan(f, {"51 51"}).empty());  // hex of "Q": 2 chars, not masked
  SecretForms pin({"1234"});
  EXPECT_EQ(Scan(pin, {"31323334"}).size(), 1u);  // 8 hex chars: the whole form
}

TEST(SecretFormsTest, SpacedWrappedMixedCaseHexMapsToOriginalBytes) {
  SecretForms f({kSecret});
  // od -An -tx1 style over two lines, upper case on the second.
  const std::string text = " 68 75 6e 74 65 72 32 2d\n 53 75 70 33 72 53 65 63\n";
  std::string upper = text;
  for (size_t i = 25; i < upper.size(); ++i) upper[i] = static_cast<char>(toupper(upper[i]));
  std::vector<SecretHit> hits = Scan(f, {upper});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].form, SecretForm::kHex);
  EXPECT_EQ(hits[0].begin, 1u);                // the first '6'
  EXPECT_EQ(hits[0].end, upper.size() - 1);    // through the last 'C', not the '\n'
}

TEST(SecretFormsTest, Base64BothAlphabetsEveryAlignmentWrapped) {
  std::mt19937 rng(7);
  std::string secret(300, '\0');
  for (char& c : secret) c = static_cast<char>(rng());
  SecretForms f({secret});
  for (int k = 0; k < 3; ++k) {
    for (bool url : {false, true}) {
      const std::string blob = std::string(k, 'P') + secret;
      std::string enc = url ? absl::WebSafeBase64Escape(blob) : absl::Base64Escape(blob);
      std::string wrapped;
      for (size_t i = 0; i < enc.size(); i += 7) wrapped += enc.substr(i, 7) + "\n";
      std::vector<SecretHit> hits = Scan(f, {wrapped});
      ASSERT_FALSE(hits.empty()) << k << url;
      EXPECT_EQ(hits[0].form, SecretForm::kBase64);
      EXPECT_LE(hits[0].begin, 3u);
      EXPECT_GE(hits.back().end, wrapped.size() - 6);
    }
  }
}

TEST(SecretFormsTest, FoldedRawText) {
  SecretForms f({"correct horse battery staple"});
  // fold -w 5; each line shorter than a window, the run is 25 characters without spaces.
  std::vector<SecretHit> hits = Scan(f, {"corre\n", "ct ho\n", "rse b\n", "atter\n"});
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].form, SecretForm::kRaw);
}

TEST(SecretFormsTest, JsonEscapeLikeGo) {
  EXPECT_EQ(JsonEscapeLikeGo("a\"b\\c\nd\re\tf<g>&\x01\x7f"),
            "a\\\"b\\\\c\\nd\\re\\tf\\u003cg\\u003e\\u0026\\u0001\x7f");
  EXPECT_EQ(JsonEscapeLikeGo("\xe2\x80\xa8 \xc3\xa9 \xff"), "\\u2028 \xc3\xa9 \\ufffd");
  EXPECT_EQ(JsonEscapeLikeGo("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd");  // a surrogate
  SecretForms f({"pass<word>&\"more\"chars"});
  std::vector<SecretHit> hits =
      Scan(f, {R"({"created_by":"RUN echo pass\u003cword\u003e\u0026\"more\"chars"})"});
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].form, SecretForm::kJson);
}

TEST(SecretFormsTest, CarryBeginAndReset) {
  SecretForms f({kSecret});
  SecretMatcher m(&f);
  std::vector<SecretHit> hits;
  EXPECT_EQ(m.carry_begin(), 0u);
  m.Feed(std::string(40, 'z'), &hits);
  EXPECT_EQ(m.carry_begin(), 25u);  // the last 15 characters
  m.Feed("   ", &hits);
  EXPECT_EQ(m.carry_begin(), 25u);  // view A carries the spaces; B and C still the 'z's
  const std::string s = kSecret;
  m.Feed(s.substr(0, 10), &hits);
  m.Reset();
  m.Feed(s.substr(10), &hits);  // the first 10 characters were forgotten
  EXPECT_TRUE(hits.empty());
}

TEST(SecretFormsTest, MemoryPerSecretByte) {
  std::mt19937 rng(1);
  std::string token = "ghp_";
  while (token.size() < 124) token.push_back("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789"[rng() % 42]);
  SecretForms small({token});
  EXPECT_GE(small.WindowCount(), 7u * 124 - 100);
  std::string big(64 * 1024, '\0');
  for (char& c : big) c = static_cast<char>(rng());
  SecretForms f({big});
  EXPECT_LE(f.MemoryBytes(), 150u * big.size());  // the header's "~120-150 for random binary"
  std::string alnum;
  while (alnum.size() < 64 * 1024) alnum.push_back("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789"[rng() % 42]);
  SecretForms text({alnum});
  EXPECT_LE(text.MemoryBytes(), 100u * alnum.size());
  f.Wipe();
  EXPECT_TRUE(f.empty());
  EXPECT_TRUE(Scan(f, {big}).empty());
}

TEST(SplitBuildkitLineTest, PrefixAndKey) {
  BuildkitLine l = SplitBuildkitLine("#6 0.105 hello world");
  EXPECT_EQ(l.key, "#6");
  EXPECT_EQ(l.prefix, "#6 0.105 ");
  EXPECT_EQ(l.content, "hello world");
  l = SplitBuildkitLine("#12 103.5 ");
  EXPECT_EQ(l.key, "#12");
  EXPECT_EQ(l.content, "");
  for (const char* s : {"#6 [2/3] RUN base64 x", "#6 DONE 0.3s", "plain text", "#x 0.1 y",
                        "#6 0.1x y"}) {
    l = SplitBuildkitLine(s);
    EXPECT_EQ(l.key, "") << s;
    EXPECT_EQ(l.content, s);
  }
}

TEST(StepMatchersTest, StepsKeepSeparateCarry) {
  SecretForms f({kSecret});
  StepMatchers steps(&f, 2);
  const std::string s = kSecret;
  std::vector<SecretHit> hits;
  steps.For("#6").Feed(s.substr(0, 10), &hits);
  steps.For("#7").Feed("0123456789", &hits);
  steps.For("#6").Feed(s.substr(10), &hits);
  EXPECT_EQ(hits.size(), 1u);
  hits.clear();
  steps.For("#8").Feed(s.substr(0, 10), &hits);  // evicts #7 (least recently used)
  steps.For("#9").Feed("x", &hits);              // evicts #6
  steps.For("#8").Feed(s.substr(10), &hits);
  EXPECT_EQ(hits.size(), 1u);
}

}  // namespace
}  // namespace kiln::agent
