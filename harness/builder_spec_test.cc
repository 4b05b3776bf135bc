// File: harness/builder_spec_test.cc
// The scenario spec parser (every malformed spec refused, naming the key), the secret recipes,
// the placeholders, the generic checker, and every real folder under scenarios/builder/.
#include "harness/builder_spec.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "images/oci/digest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

constexpr char kGood[] = R"({
  "title": "t",
  "secrets": {"tok": {"generate": {"bytes": 40, "alphabet": "alnum", "prefix": "ghp_"}},
              "bin": {"generate": {"bytes": 64, "alphabet": "binary"}}},
  "send": {"secrets": ["tok"], "build_args": {"V": "1"}, "target": "s", "tag": "a:1"},
  "expect": {"result": "built", "exit_code": 0, "log_contains": ["{{sha256:tok}}"],
             "log_excludes": ["{{value:tok}}"], "leak": false}
})";

TEST(ParseScenarioSpecTest, Good) {
  ASSERT_OK_AND_ASSIGN(ScenarioSpec s, ParseScenarioSpec("x", "/d", kGood));
  EXPECT_EQ(s.title, "t");
  EXPECT_THAT(s.send_secrets, ElementsAre("tok"));
  EXPECT_EQ(s.build_args.at("V"), "1");
  EXPECT_EQ(s.target, "s");
  EXPECT_EQ(s.tag, "a:1");
  EXPECT_EQ(s.expect.result, "built");
  EXPECT_EQ(*s.expect.exit_code, 0);
  EXPECT_EQ(s.secrets.at("tok").prefix, "ghp_");
}

TEST(ParseScenarioSpecTest, EveryMalformedSpecIsRefusedNamingTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"{", "not valid JSON"},
      {R"({"title":"t","expect":{"result":"built"},"extra":1})", "unknown key \"extra\""},
      {R"({"expect":{"result":"built"}})", "title"},
      {R"({"title":"t","expect":{"result":"ok"}})", "expect.result"},
      {R"({"title":"t","expect":{"result":"built","leek":true}})", "unknown key \"leek\""},
      {R"({"title":"t","secrets":{"a":{}},"expect":{"result":"built"}})", "exactly one of"},
      {R"({"title":"t","secrets":{"a":{"generate":{"bytes":0}}},"expect":{"result":"built"}})",
       "secrets.a.generate.bytes"},
      {R"({"title":"t","secrets":{"a":{"generate":{"bytes":9,"alphabet":"emoji"}}},"expect":{"result":"built"}})",
       "alphabet"},
      {R"({"title":"t","secrets":{"a":{"file":"../x"}},"expect":{"result":"built"}})", "secrets.a.file"},
      {R"({"title":"t","send":{"secrets":["b"]},"expect":{"result":"built"}})", "\"b\" is not declared"},
      {R"({"title":"t","expect":{"result":"built","log_contains":["{{sha256:z}}"]}})",
       "undeclared secret \"z\""},
      {R"({"title":"t","vm":{"builder_mode":"root"},"expect":{"result":"built"}})", "vm.builder_mode"},
      {R"({"title":"t","expect":{"result":"built","exit_code":"0"}})", "expect.exit_code"},
  };
  for (const auto& [json, want] : cases) {
    SCOPED_TRACE(json);
    EXPECT_THAT(ParseScenarioSpec("x", "/d", json),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(want)));
  }
}

TEST(MakeScenarioSecretsTest, RecipesAndPlaceholders) {
  ASSERT_OK_AND_ASSIGN(ScenarioSpec s, ParseScenarioSpec("x", "/d", kGood));
  ASSERT_OK_AND_ASSIGN(ScenarioSecrets a, MakeScenarioSecrets(s));
  ASSERT_OK_AND_ASSIGN(ScenarioSecrets b, MakeScenarioSecrets(s));
  EXPECT_THAT(a.at("tok"), SizeIs(44));
  EXPECT_EQ(a.at("tok").substr(0, 4), "ghp_");
  EXPECT_THAT(a.at("bin"), SizeIs(64));
  EXPECT_NE(a.at("tok"), b.at("tok"));  // fresh per run
  EXPECT_EQ(ExpandPlaceholders("sum {{sha256:tok}} end", a),
            absl::StrCat("sum ", oci::Sha256Hex(a.at("tok")), " end"));
  EXPECT_EQ(ExpandPlaceholders("{{value:tok}}", a), a.at("tok"));
  EXPECT_EQ(ExpandPlaceholders("{{nope:tok}} {{", a), "{{nope:tok}} {{");
}

TEST(CheckScenarioTest, PassesAndNamesEachFailure) {
  ASSERT_OK_AND_ASSIGN(ScenarioSpec s, ParseScenarioSpec("x", "/d", kGood));
  const ScenarioSecrets sec = {{"tok", "ghp_abc"}, {"bin", "x"}};
  ScenarioObservation ok{"built", 0, absl::StrCat("#5 ", oci::Sha256Hex("ghp_abc"), "\n"), "", {}};
  EXPECT_THAT(CheckScenario(s, sec, ok), IsEmpty());
  ScenarioObservation bad{"failed", 1, "leaked ghp_abc", "step failed", {"secret tok in log: x"}};
  std::vector<std::string> f = CheckScenario(s, sec, bad);
  EXPECT_THAT(f, ElementsAre(HasSubstr("expected result built, got failed (error: step failed)"),
                             HasSubstr("expected exit code 0, got 1"),
                             HasSubstr("to contain \"{{sha256:tok}}\""),
                             HasSubstr("not to contain \"{{value:tok}}\""),
                             HasSubstr("expected no leak, the scan found: secret tok in log")));
}

// Every real scenario folder parses (a broken spec fails here, not in a VM).
TEST(ScenarioFoldersTest, EveryFolderLoads) {
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> dirs,
                       ListScenarioDirs("harness/scenarios/builder"));
  ASSERT_THAT(dirs, Not(IsEmpty()));
  for (const std::string& d : dirs) {
    SCOPED_TRACE(d);
    ASSERT_OK_AND_ASSIGN(ScenarioSpec s, LoadScenario(d));
    EXPECT_OK(MakeScenarioSecrets(s).status());
  }
}

}  // namespace
}  // namespace kiln::harness
