// File: harness/builder/builder_spec_test.cc
// The scenario spec parser (every malformed spec refused, naming the key), the secret recipes,
// the placeholders, the generic checker, and every real folder under scenarios/builder/.
#include "harness/builder/builder_spec.h"

#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
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
      {R"({"title":"t","vm":{"cgroup":"rx"},"expect":{"result":"built"}})", "vm.cgroup"},
      {R"({"title":"t","vm":{"delegate":"yes"},"expect":{"result":"built"}})", "vm.delegate"},
      {R"({"title":"t","vm":{"cgroups":"rw"},"expect":{"result":"built"}})", "unknown key \"cgroups\""},
      {R"({"title":"t","send":{"name_secrets":["q"]},"expect":{"result":"built"}})",
       "send.name_secrets: \"q\" is not declared"},
      {R"({"title":"t","send":{"host_checks":"no"},"expect":{"result":"built"}})", "send.host_checks"},
      {R"({"title":"t","expect":{"result":"refused","error_code":"Nope"}})", "expect.error_code"},
      {R"({"title":"t","expect":{"result":"built","log_count_min":{"x":0}}})", "expect.log_count_min"},
      {R"({"title":"t","expect":{"result":"built","log_count_min":["x"]}})", "expect.log_count_min"},
      {R"({"title":"t","expect":{"result":"built","step_uid":"0 0"}})", "expect.step_uid"},
      {R"({"title":"t","expect":{"result":"built","build_ran":1}})", "expect.build_ran"},
      {R"({"title":"t","expect":{"result":"built","image_files":{"/etc/x":"y"}}})", "expect.image_files"},
      {R"({"title":"t","expect":{"result":"built","image_files":{"etc/x":1}}})", "expect.image_files"},
      {R"({"title":"t","expect":{"result":"built","image_absent":["a/../../x"]}})", "expect.image_absent"},
      {R"({"title":"t","expect":{"result":"built","image_files":{"x":"{{value:nope}}"}}})",
       "undeclared secret \"nope\""},
      {R"({"title":"t","expect":{"result":"built","log_empty":"yes"}})", "expect.log_empty"},
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
  ok.leak_scanned = true;
  EXPECT_THAT(CheckScenario(s, sec, ok), IsEmpty());
  ScenarioObservation bad{"failed", 1, "leaked ghp_abc", "step failed", {"secret tok in log: x"}};
  std::vector<std::string> f = CheckScenario(s, sec, bad);
  EXPECT_THAT(f, ElementsAre(HasSubstr("expected result built, got failed (error: step failed)"),
                             HasSubstr("expected exit code 0, got 1"),
                             HasSubstr("to contain \"{{sha256:tok}}\""),
                             HasSubstr("not to contain \"{{value:tok}}\""),
                             HasSubstr("expected no leak, the scan found: secret tok in log")));
}

// A matrix-style spec: every new expectation holds on a matching observation and each one
// fails, naming itself, on an observation that breaks it.
constexpr char kMatrixSpec[] = R"({
  "title": "m",
  "vm": {"builder_mode": "rootless", "cgroup": "off", "delegate": false},
  "secrets": {"build_token": {"generate": {"bytes": 8}}},
  "send": {"secrets": [], "name_secrets": ["build_token"], "host_checks": false},
  "expect": {"result": "failed", "exit_code": 1, "build_exit_status": 1, "build_ran": true,
             "step_uid": "1000 1000 1000 1000",
             "log_count_min": {"[REDACTED:build_token]": 2, "{{sha256:build_token}}": 1},
             "output_contains": ["runc run failed"],
             "error_contains": ["ABORTED"]}
})";

TEST(CheckScenarioTest, MatrixExpectationsPassAndEachFailsAlone) {
  ASSERT_OK_AND_ASSIGN(ScenarioSpec s, ParseScenarioSpec("m", "/d", kMatrixSpec));
  EXPECT_EQ(s.cgroup, "off");
  EXPECT_FALSE(s.delegate);
  EXPECT_FALSE(s.host_checks);
  EXPECT_THAT(s.send_secrets, IsEmpty());
  EXPECT_THAT(s.name_secrets, ElementsAre("build_token"));
  const ScenarioSecrets sec = {{"build_token", "ghp_x"}};
  ScenarioObservation ok;
  ok.result = "failed";
  ok.exit_code = 1;
  ok.build_exit_status = 1;
  ok.build_ran = true;
  ok.log = absl::StrCat(
      "#5 [REDACTED:build_token]\n#5 [REDACTED:build_token]\n", oci::Sha256Hex("ghp_x"),
      "\nkiln: RUN step process 812 (sh): Uid 1000 1000 1000 1000 in cgroup /kiln-builder/x\n");
  ok.error = "ABORTED: runc run failed: no cgroup mount found in mountinfo";
  EXPECT_THAT(CheckScenario(s, sec, ok), IsEmpty());

  struct Case {
    const char* want;
    std::function<void(ScenarioObservation&)> breaks;
  };
  const Case cases[] = {
      {"guest's build exit status 1, got 2", [](ScenarioObservation& o) { o.build_exit_status = 2; }},
      {"expected the build to have run", [](ScenarioObservation& o) { o.build_ran = false; }},
      {"\"[REDACTED:build_token]\" at least 2 times in the log, got 1",
       [](ScenarioObservation& o) { o.log.erase(0, o.log.find('\n') + 1); }},
      {"\"{{sha256:build_token}}\" at least 1 times",
       [](ScenarioObservation& o) { o.log = absl::StrReplaceAll(o.log, {{oci::Sha256Hex("ghp_x"), "x"}}); }},
      {"has Uid 0 0 0 0",
       [](ScenarioObservation& o) { o.log = absl::StrReplaceAll(o.log, {{"1000 1000 1000 1000", "0 0 0 0"}}); }},
      {"no \"kiln: RUN step process",
       [](ScenarioObservation& o) { o.log = absl::StrReplaceAll(o.log, {{"kiln: RUN step", "RUN"}}); }},
      {"the log or the error to contain \"runc run failed\"",
       [](ScenarioObservation& o) { o.error = "ABORTED"; }},
      {"a failed job returned an image", [](ScenarioObservation& o) { o.has_image = true; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want);
    ScenarioObservation bad = ok;
    c.breaks(bad);
    EXPECT_THAT(CheckScenario(s, sec, bad), ElementsAre(HasSubstr(c.want)));
  }
  // The step's line may be in the error (the log tail) only.
  ScenarioObservation in_error = ok;
  in_error.error += "\nkiln: RUN step process 9 (sh): Uid 1000 1000 1000 1000 in cgroup /k";
  in_error.log = absl::StrReplaceAll(in_error.log, {{"kiln: RUN step process 812", "x"}});
  EXPECT_THAT(CheckScenario(s, sec, in_error), IsEmpty());
}

TEST(CheckScenarioTest, RefusalsNeedTheirCodeNoResultAndNoLog) {
  ASSERT_OK_AND_ASSIGN(ScenarioSpec s, ParseScenarioSpec("r", "/d", R"({
    "title": "r",
    "expect": {"result": "refused", "exit_code": 1, "error_code": "FAILED_PRECONDITION",
               "error_contains": ["did not deliver"], "log_empty": true}})"));
  ScenarioObservation ok;
  ok.result = "refused";
  ok.exit_code = 1;
  ok.error_code = "FAILED_PRECONDITION";
  ok.error = "job names secrets the host did not deliver: [build_token]";
  EXPECT_THAT(CheckScenario(s, {}, ok), IsEmpty());
  ScenarioObservation wrong_code = ok;
  wrong_code.error_code = "INVALID_ARGUMENT";
  EXPECT_THAT(CheckScenario(s, {}, wrong_code),
              ElementsAre(HasSubstr("refusal to be FAILED_PRECONDITION, got INVALID_ARGUMENT")));
  ScenarioObservation host = ok;  // refused by the host (exit 2): no builder refusal code
  host.exit_code = 2;
  host.error_code = "";
  EXPECT_THAT(CheckScenario(s, {}, host),
              ElementsAre(HasSubstr("expected exit code 1, got 2"),
                          HasSubstr("refusal to be FAILED_PRECONDITION, got none")));
  ScenarioObservation logged = ok;
  logged.log = "#1 building\n";
  EXPECT_THAT(CheckScenario(s, {}, logged), ElementsAre(HasSubstr("expected no build log, got 1")));
  ScenarioObservation with_result = ok;
  with_result.build_exit_status = 0;
  EXPECT_THAT(CheckScenario(s, {}, with_result),
              ElementsAre(HasSubstr("a refused job returned a BuildResult")));
}

TEST(CheckScenarioTest, ImageFilesExactPresentAndAbsent) {
  ASSERT_OK_AND_ASSIGN(ScenarioSpec s, ParseScenarioSpec("i", "/d", R"({
    "title": "i",
    "secrets": {"tok": {"generate": {"bytes": 8}}},
    "expect": {"result": "built", "exit_code": 0, "leak": true,
               "image_files": {"tmp/one": "step-one\n", "leaked.txt": "{{value:tok}}"},
               "image_absent": ["run/secrets/tok"]}})"));
  const ScenarioSecrets sec = {{"tok", "ghp_12345678"}};
  ScenarioObservation ok;
  ok.result = "built";
  ok.exit_code = 0;
  ok.has_image = true;
  ok.leak_scanned = true;
  ok.leaks = {"secret tok in image: blobs/sha256/ab:leaked.txt (raw)"};
  ok.image_files = {{"tmp/one", "step-one\n"}, {"leaked.txt", "ghp_12345678"}};
  EXPECT_THAT(CheckScenario(s, sec, ok), IsEmpty());

  ScenarioObservation wrong = ok;
  wrong.image_files["tmp/one"] = "step-one";  // no newline: exact bytes
  EXPECT_THAT(CheckScenario(s, sec, wrong),
              ElementsAre(HasSubstr("(9 bytes), got 8 bytes: \"step-one\"")));
  ScenarioObservation missing = ok;
  missing.image_files.erase("leaked.txt");
  EXPECT_THAT(CheckScenario(s, sec, missing),
              ElementsAre(HasSubstr("expected the image to hold the file leaked.txt, it does not")));
  ScenarioObservation present = ok;
  present.image_files["run/secrets/tok"] = "";
  EXPECT_THAT(CheckScenario(s, sec, present),
              ElementsAre(HasSubstr("expected the image not to hold run/secrets/tok")));
  ScenarioObservation unread = ok;
  unread.image_files.clear();
  unread.image_error = "DATA_LOSS: tar -xf failed";
  EXPECT_THAT(CheckScenario(s, sec, unread),
              ElementsAre(HasSubstr("expected to read the image's files: DATA_LOSS")));
  ScenarioObservation unscanned = ok;
  unscanned.leak_scanned = false;
  EXPECT_THAT(CheckScenario(s, sec, unscanned),
              ElementsAre(HasSubstr("expected a complete leak scan")));
}

TEST(FindStepUidLineTest, ParsesTheAgentsLineAndSkipsBrokenOnes) {
  ASSERT_OK_AND_ASSIGN(
      StepUidLine l,
      FindStepUidLine("#5 0.1 x\nkiln: RUN step process 7 (sh): Uid broken\n"
                      "[kiln-runner] kiln: RUN step process 812 (sleep): Uid 1000 1000 1000 1000 "
                      "in cgroup /kiln-builder/buildkit/abc \n"));
  EXPECT_EQ(l.comm, "sleep");
  EXPECT_EQ(l.uids, "1000 1000 1000 1000");
  EXPECT_EQ(l.cgroup, "/kiln-builder/buildkit/abc");
  EXPECT_THAT(FindStepUidLine("no such line"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("RUN step process")));
}

// Every real scenario folder parses (a broken spec fails here, not in a VM).
TEST(ScenarioFoldersTest, EveryFolderLoads) {
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> dirs,
                       ListScenarioDirs("harness/builder/scenarios"));
  ASSERT_THAT(dirs, Not(IsEmpty()));
  for (const std::string& d : dirs) {
    SCOPED_TRACE(d);
    ASSERT_OK_AND_ASSIGN(ScenarioSpec s, LoadScenario(d));
    EXPECT_OK(MakeScenarioSecrets(s).status());
  }
}

}  // namespace
}  // namespace kiln::harness
