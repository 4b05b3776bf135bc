// File: harness/builder/builder_scenarios_test.cc
// Sha256Hex, the scenario secrets, and the reference group's checks on fabricated outcomes
// (each passes on the outcome it expects and fails on the others). The leak scanners:
// leak_scan_test.cc; every other builder scenario's checks: builder_spec_test.cc.
#include "harness/builder/builder_scenarios.h"

#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::testing::HasSubstr;

constexpr char kSecret[] = "kiln-secret-0123456789abcdef";
constexpr char kBlob[] = "\x01\x02binary-blob-\xff\xfe\x00-0123456789abcdef";

TEST(Sha256Test, KnownValue) {
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---------------------------------------------------------------------------------------
// Group checks on fabricated outcomes.

const BuilderGroup& Group(const std::string& name) {
  for (const BuilderGroup& g : BuilderGroups()) {
    if (g.name == name) return g;
  }
  ADD_FAILURE() << "no group " << name;
  return BuilderGroups()[0];
}

JobEvidence GoodJob(const std::string& sha, int sha_lines, const std::string& extra_log) {
  JobEvidence ev;
  BuildResponse& r = ev.response;
  r.job_id = "j";
  r.result = agent::BuildResult{"j", 0, "sha256:" + std::string(64, 'a'), 2, {}, ""};
  r.image_path = "/x.oci.tar";
  r.image_bytes = 1000;
  r.logs.push_back({agent::LogStream::kStderr, 1, "#5 step-one"});
  for (int i = 0; i < sha_lines; ++i) {
    r.logs.push_back({agent::LogStream::kStderr, 2, sha + "  /run/secrets/build_token"});
  }
  if (!extra_log.empty()) r.logs.push_back({agent::LogStream::kStderr, 3, extra_log});
  LeakReport img;
  img.layers = 2;
  img.config_scanned = true;
  img.blobs = 8;
  ev.image_leaks = img;
  ev.log_leaks = ScanLogsForSecret(r.logs, kSecret);
  return ev;
}

JobEvidence Refused(absl::Status s) {
  JobEvidence ev;
  ev.response.refused = std::move(s);
  return ev;
}

std::vector<ScenarioResult> Check(const std::string& group, std::vector<JobEvidence> evidence) {
  BuilderGroupOutcome g;
  g.name = group;
  g.secret_sha256 = Sha256Hex(kSecret);
  g.blob_sha256 = Sha256Hex(std::string(kBlob, sizeof(kBlob) - 1));
  g.token_bytes = sizeof(kSecret) - 1;
  g.blob_bytes = sizeof(kBlob) - 1;
  for (JobEvidence& e : evidence) g.run.jobs.push_back(e.response);
  g.evidence = std::move(evidence);
  return Group(group).checks(g, kSecret);
}

int Passed(const std::vector<ScenarioResult>& rs) {
  int n = 0;
  for (const ScenarioResult& r : rs) n += r.status.ok();
  return n;
}

TEST(GroupChecksTest, ReferencePassesOnAGoodRun) {
  const std::string sha = Sha256Hex(kSecret);
  std::vector<ScenarioResult> rs = Check("builder-reference", {GoodJob(sha, 1, "")});
  ASSERT_EQ(rs.size(), 3u);
  for (const ScenarioResult& r : rs) EXPECT_THAT(r.status, IsOk()) << r.name << r.summary;
}

TEST(GroupChecksTest, ReferenceFailsOnLeakOrInvisibleSecret) {
  const std::string sha = Sha256Hex(kSecret);
  // The secret itself in a log line: leak-scan fails.
  std::vector<ScenarioResult> rs =
      Check("builder-reference", {GoodJob(sha, 1, std::string("oops ") + kSecret)});
  EXPECT_EQ(rs[2].name, "leak-scan");
  EXPECT_FALSE(rs[2].status.ok());
  // No sha line: secret-default fails.
  rs = Check("builder-reference", {GoodJob(sha, 0, "")});
  EXPECT_EQ(rs[1].name, "secret-default");
  EXPECT_FALSE(rs[1].status.ok());
  // No run at all: all fail with the run error.
  rs = Check("builder-reference", {});
  EXPECT_EQ(Passed(rs), 0);
}

TEST(ScenarioSecretsTest, TokenAndBlob) {
  const GroupSecrets s = NewScenarioSecrets();
  EXPECT_EQ(s.token.size(), kTokenSecretBytes);
  EXPECT_TRUE(absl::StartsWith(s.token, "ghp_")) << s.token;
  std::string decoded;
  EXPECT_TRUE(absl::Base64Unescape(s.token.substr(4), &decoded));  // base64 text
  EXPECT_EQ(s.blob.size(), kBlobSecretBytes);
  EXPECT_NE(NewScenarioSecrets().token, s.token);  // fresh per call
  EXPECT_EQ(NewScenarioSecrets("given").token, "given");
}

}  // namespace
}  // namespace kiln::harness
