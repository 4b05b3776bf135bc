// File: harness/builder_scenarios_test.cc
// Sha256Hex, the scenario secrets, and the group checks on fabricated outcomes (each check
// passes on the outcome it expects and fails on the others). The leak scanners:
// leak_scan_test.cc.
#include "harness/builder_scenarios.h"

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
  const ScenarioSecrets s = NewScenarioSecrets();
  EXPECT_EQ(s.token.size(), kTokenSecretBytes);
  EXPECT_TRUE(absl::StartsWith(s.token, "ghp_")) << s.token;
  std::string decoded;
  EXPECT_TRUE(absl::Base64Unescape(s.token.substr(4), &decoded));  // base64 text
  EXPECT_EQ(s.blob.size(), kBlobSecretBytes);
  EXPECT_NE(NewScenarioSecrets().token, s.token);  // fresh per call
  EXPECT_EQ(NewScenarioSecrets("given").token, "given");
}

// The secret-redaction job's log as the redactor leaves it: the sha256 lines, and one line
// per printed line of each form with its marker(s).
JobEvidence RedactionJob(int token_lines, int blob_lines, const std::string& extra_log) {
  JobEvidence ev = GoodJob(Sha256Hex(kSecret), 3, "");
  BuildResponse& r = ev.response;
  r.logs.push_back({agent::LogStream::kStderr, 2,
                    Sha256Hex(std::string(kBlob, sizeof(kBlob) - 1)) + "  /run/secrets/build_blob"});
  for (int i = 0; i < token_lines; ++i) {
    r.logs.push_back({agent::LogStream::kStderr, 3,
                      absl::StrCat("#7 0.2", i, " ", i % 2 ? "00000010: [REDACTED:build_token]  |"
                                                           : "[REDACTED:build_token]")});
  }
  for (int i = 0; i < blob_lines; ++i) {
    r.logs.push_back({agent::LogStream::kStderr, 4, "#9 0.3 [REDACTED:build_blob]"});
  }
  if (!extra_log.empty()) r.logs.push_back({agent::LogStream::kStderr, 5, extra_log});
  ev.log_leaks = ScanLogsForSecret(r.logs, kSecret);
  LeakReport blob = ScanLogsForSecret(r.logs, std::string(kBlob, sizeof(kBlob) - 1));
  ev.log_leaks.hits += blob.hits;
  return ev;
}

TEST(GroupChecksTest, SecretsGroup) {
  const std::string sha = Sha256Hex(kSecret);
  JobEvidence failing;
  failing.response.result = agent::BuildResult{
      "f", 1, "", 0, {}, "ABORTED: docker build exited 1\n#6 kiln-about-to-fail\nERROR"};
  std::vector<JobEvidence> good = {
      GoodJob(sha, 4, "***"),
      RedactionJob(kMinTokenRedactions, kMinBlobRedactions, ""),
      Refused(absl::InvalidArgumentError(
          "job refused before BuildKit ran: Dockerfile line 5: secret mount option env= is not "
          "supported by dockerd 20.10's BuildKit (it fails with \"unexpected key 'env'\")")),
      Refused(absl::FailedPreconditionError(
          "BuildJob missing names secrets the host did not deliver: [build_token]")),
      Refused(absl::FailedPreconditionError(
          "job refused before BuildKit ran: the Dockerfile uses secret(s) the host did not "
          "deliver: \"build_token\" (line 6)")),
      failing};
  std::vector<ScenarioResult> rs = Check("builder-secrets", good);
  ASSERT_EQ(rs.size(), 6u);
  for (const ScenarioResult& r : rs) EXPECT_THAT(r.status, IsOk()) << r.name << r.summary;
  EXPECT_EQ(rs[1].name, "secret-redaction");
  EXPECT_THAT(rs[1].summary, HasSubstr("[REDACTED:build_token]"));
  // Swap the refusals: each check insists on its own outcome.
  std::vector<JobEvidence> swapped = good;
  std::swap(swapped[3], swapped[4]);
  swapped[5] = GoodJob(sha, 1, "");
  rs = Check("builder-secrets", swapped);
  EXPECT_FALSE(rs[4].status.ok()) << rs[4].summary;  // undeclared got the session refusal
  EXPECT_FALSE(rs[5].status.ok());                   // failing step succeeded
  // Five jobs (an old group): every check fails, naming the count.
  std::vector<JobEvidence> five(good.begin(), good.begin() + 5);
  rs = Check("builder-secrets", five);
  EXPECT_EQ(Passed(rs), 0);
  EXPECT_THAT(rs[0].summary, HasSubstr("after 5 of 6 jobs"));
}

// secret-redaction fails on too few markers of either secret, a leak in the log (the whole
// token, or a run of it), the secret-modes job's leak, and a missing blob sha.
TEST(GroupChecksTest, SecretRedactionInsistsOnMarkersAndNoLeak) {
  const std::string sha = Sha256Hex(kSecret);
  auto redaction = [&](JobEvidence ev) {
    std::vector<JobEvidence> jobs = {GoodJob(sha, 4, ""), std::move(ev),
                                     Refused(absl::InvalidArgumentError("")),
                                     Refused(absl::InvalidArgumentError("")),
                                     Refused(absl::InvalidArgumentError("")), JobEvidence()};
    return Check("builder-secrets", jobs)[1];
  };
  EXPECT_THAT(redaction(RedactionJob(kMinTokenRedactions, kMinBlobRedactions, "")).status,
              IsOk());
  ScenarioResult r = redaction(RedactionJob(kMinTokenRedactions - 1, kMinBlobRedactions, ""));
  EXPECT_FALSE(r.status.ok());
  EXPECT_THAT(r.summary, HasSubstr("expected at least 33 [REDACTED:build_token]"));
  EXPECT_FALSE(redaction(RedactionJob(kMinTokenRedactions, kMinBlobRedactions - 1, "")).status.ok());
  r = redaction(RedactionJob(kMinTokenRedactions, kMinBlobRedactions,
                             absl::StrCat("#7 0.5 ", kSecret)));
  EXPECT_FALSE(r.status.ok());
  EXPECT_THAT(r.summary, HasSubstr("expected 0 secret occurrences"));
  JobEvidence no_blob_sha = RedactionJob(kMinTokenRedactions, kMinBlobRedactions, "");
  no_blob_sha.response.logs.erase(no_blob_sha.response.logs.begin() + 4);
  EXPECT_THAT(redaction(no_blob_sha).summary, HasSubstr("build_blob's at least once"));
}

// secret-modes now also fails when its job leaked (it used to be checked only for visibility).
TEST(GroupChecksTest, SecretModesFailsOnALeak) {
  const std::string sha = Sha256Hex(kSecret);
  std::vector<JobEvidence> jobs = {GoodJob(sha, 4, absl::StrCat("leaked ", kSecret)),
                                   RedactionJob(kMinTokenRedactions, kMinBlobRedactions, ""),
                                   Refused(absl::InvalidArgumentError("")),
                                   Refused(absl::InvalidArgumentError("")),
                                   Refused(absl::InvalidArgumentError("")), JobEvidence()};
  ScenarioResult r = Check("builder-secrets", jobs)[0];
  EXPECT_EQ(r.name, "secret-modes");
  EXPECT_FALSE(r.status.ok());
  EXPECT_THAT(r.summary, HasSubstr("expected 0 secret occurrences"));
}

// The cgroup-off rows (negative controls): rootless, the RUN step fails with runc's "no
// cgroup mount found in mountinfo" (the seed's text; the daemon starts); rootful, dockerd
// refuses to start. Each is accepted only as itself.
JobEvidence DaemonFailed() {
  JobEvidence ev;
  ev.response.result = agent::BuildResult{
      "r", 1, "", 0, {{"dockerd_start", 8000}, {"build", 0}},
      "FAILED_PRECONDITION: dockerd exited (exit status 1) before it was "
      "ready: failed to start daemon: Devices cgroup isn't mounted"};
  return ev;
}
JobEvidence RuncFailed(const std::string& text) {
  JobEvidence ev;
  ev.response.result =
      agent::BuildResult{"r", 1, "", 0, {{"build", 900}}, "ABORTED: docker build exited 1"};
  ev.response.logs.push_back({agent::LogStream::kStderr, 1, text});
  return ev;
}
constexpr char kRunc[] =
    "#6 0.2 runc run failed: no cgroup mount found in mountinfo";

TEST(GroupChecksTest, CgroupOff) {
  std::vector<ScenarioResult> rs =
      Check("builder-rootful-off", {DaemonFailed(), DaemonFailed()});
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_THAT(rs[0].status, IsOk()) << rs[0].summary;
  EXPECT_EQ(rs[0].name, "rootful-off-run");
  EXPECT_EQ(rs[1].name, "rootful-off-run-secret");
  EXPECT_THAT(rs[1].status, IsOk()) << rs[1].summary;
  rs = Check("builder-rootless-off", {RuncFailed(kRunc), RuncFailed(kRunc)});
  EXPECT_EQ(Passed(rs), 2) << rs[0].summary;
  // Each mode's text in the other mode's row fails: the rows are exact.
  EXPECT_EQ(Passed(Check("builder-rootless-off", {DaemonFailed(), DaemonFailed()})), 0);
  EXPECT_EQ(Passed(Check("builder-rootful-off", {RuncFailed(kRunc), RuncFailed(kRunc)})), 0);
  // runc's error without a build having run is not accepted.
  JobEvidence no_build = RuncFailed(kRunc);
  no_build.response.result->phases = {{"build", 0}};
  EXPECT_FALSE(Check("builder-rootless-off", {no_build, no_build})[0].status.ok());
  // A successful build, another failure or a missing second job fail.
  const std::string sha = Sha256Hex(kSecret);
  EXPECT_FALSE(Check("builder-rootless-off", {GoodJob(sha, 1, "")})[0].status.ok());
  JobEvidence other = RuncFailed("ABORTED: something else");
  EXPECT_FALSE(Check("builder-rootless-off", {other, other})[0].status.ok());
  rs = Check("builder-rootless-off", {RuncFailed(kRunc)});
  EXPECT_THAT(rs[0].status, IsOk());
  EXPECT_FALSE(rs[1].status.ok());
  EXPECT_THAT(rs[1].summary, HasSubstr("after 1 of 2 jobs"));
}

// ---------------------------------------------------------------------------------------
// The matrix

TEST(MatrixTest, TwelveCellsAsMeasured) {
  const std::vector<MatrixCell>& m = BuilderMatrix();
  ASSERT_EQ(m.size(), 12u);
  std::set<std::string> names;
  for (const MatrixCell& c : m) names.insert(MatrixCellName(c));
  EXPECT_EQ(names.size(), 12u);
  auto cell = [&](const std::string& name) {
    for (const MatrixCell& c : m) {
      if (MatrixCellName(c) == name) return c;
    }
    ADD_FAILURE() << name;
    return m[0];
  };
  EXPECT_EQ(cell("rootless-rw-run").outcome, MatrixOutcome::kBuilt);
  EXPECT_STREQ(cell("rootless-rw-run-secret").step_uid, "1000 1000 1000 1000");
  EXPECT_STREQ(cell("rootful-rw-run-secret").step_uid, "0 0 0 0");
  EXPECT_EQ(cell("rootless-ro-run").outcome, MatrixOutcome::kRefused);
  EXPECT_STREQ(cell("rootless-off-run-secret").text,
               "runc run failed: no cgroup mount found in mountinfo");
  EXPECT_EQ(cell("rootful-ro-run").outcome, MatrixOutcome::kStepFailed);
  EXPECT_EQ(cell("rootful-off-run").outcome, MatrixOutcome::kDaemonFailed);
  // One VM per row: six matrix groups of two jobs, plus the undelegated one.
  int rows = 0;
  for (const BuilderGroup& g : BuilderGroups()) {
    if (g.builder_mode.empty()) continue;
    ++rows;
    if (g.name == "builder-rootless-undelegated") {
      EXPECT_FALSE(g.delegate_cgroup);
      EXPECT_EQ(g.scenario_names.size(), 1u);
    } else {
      EXPECT_TRUE(g.delegate_cgroup);
      EXPECT_EQ(g.scenario_names.size(), 2u) << g.name;
    }
  }
  EXPECT_EQ(rows, 7);
}

TEST(MatrixTest, FindStepUidLine) {
  absl::StatusOr<StepUidLine> l = FindStepUidLine(
      "#5 0.1 step\nkiln: RUN step process 4242 (sleep): Uid 1000 1000 1000 1000 in cgroup "
      "/kiln-builder/abc\nmore\n");
  ASSERT_THAT(l.status(), IsOk());
  EXPECT_EQ(l->uids, "1000 1000 1000 1000");
  EXPECT_EQ(l->comm, "sleep");
  EXPECT_EQ(l->cgroup, "/kiln-builder/abc");
  EXPECT_EQ(FindStepUidLine("kiln: RUN step process 1 (sh) Uid 0").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(FindStepUidLine("").status().code(), absl::StatusCode::kNotFound);
}

JobEvidence BuiltWithUid(const std::string& uids, bool secret_probes) {
  JobEvidence ev = GoodJob(Sha256Hex(kSecret), secret_probes ? 1 : 0, "");
  auto add = [&](const std::string& t) {
    ev.response.logs.push_back({agent::LogStream::kSystem, 9, t});
  };
  add("kiln: RUN step process 77 (sleep): Uid " + uids + " in cgroup /kiln-builder/x");
  if (secret_probes) {
    for (const char* p : kMatrixGuestPaths) add(std::string("#6 1.0 kiln-guest-path-absent ") + p);
    add("#6 1.1 kiln-secret-files: /run/secrets/build_token end");
  }
  return ev;
}

TEST(MatrixTest, BuiltCellsPinTheStepUidAndTheSecretConfinement) {
  std::vector<ScenarioResult> rs =
      Check("builder-rootless-rw", {BuiltWithUid("1000 1000 1000 1000", false),
                                    BuiltWithUid("1000 1000 1000 1000", true)});
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_THAT(rs[0].status, IsOk()) << rs[0].summary;
  EXPECT_THAT(rs[1].status, IsOk()) << rs[1].summary;
  EXPECT_THAT(rs[0].summary, HasSubstr("Uid 1000 1000 1000 1000 in /kiln-builder/x"));
  // A rootless step running as guest root fails the row; rootful wants uid 0.
  rs = Check("builder-rootless-rw", {BuiltWithUid("0 0 0 0", false), BuiltWithUid("0 0 0 0", true)});
  EXPECT_EQ(Passed(rs), 0);
  EXPECT_THAT(rs[0].summary, HasSubstr("has Uid 0 0 0 0"));
  EXPECT_EQ(Passed(Check("builder-rootful-rw",
                         {BuiltWithUid("0 0 0 0", false), BuiltWithUid("0 0 0 0", true)})),
            2);
  // No uid line at all: fails.
  EXPECT_FALSE(Check("builder-rootful-rw", {GoodJob(Sha256Hex(kSecret), 1, ""),
                                            BuiltWithUid("0 0 0 0", true)})[0]
                   .status.ok());
  // The step saw a guest secret dir, or found a second build_token: fails.
  JobEvidence saw = BuiltWithUid("1000 1000 1000 1000", true);
  for (agent::Log& l : saw.response.logs) {
    if (absl::StrContains(l.text, "absent /run/user/1000")) {
      l.text = "#6 1.0 kiln-guest-path-visible /run/user/1000";
    }
  }
  rs = Check("builder-rootless-rw", {BuiltWithUid("1000 1000 1000 1000", false), saw});
  EXPECT_FALSE(rs[1].status.ok());
  EXPECT_THAT(rs[1].summary, HasSubstr("/run/user/1000"));
  JobEvidence two = BuiltWithUid("1000 1000 1000 1000", true);
  two.response.logs.back().text =
      "#6 1.1 kiln-secret-files: /run/secrets/build_token /tmp/build_token end";
  EXPECT_FALSE(Check("builder-rootless-rw", {BuiltWithUid("1000 1000 1000 1000", false), two})[1]
                   .status.ok());
}

TEST(MatrixTest, RefusedAndFailedCellsAreExact) {
  const absl::Status ro = absl::FailedPreconditionError(
      "job refused before BuildKit ran: rootless builder: /sys/fs/cgroup is a read-only "
      "cgroup2 mount ...");
  std::vector<ScenarioResult> rs = Check("builder-rootless-ro", {Refused(ro), Refused(ro)});
  EXPECT_EQ(Passed(rs), 2) << rs[0].summary;
  // Built instead of refused (the raw stack's behaviour): fails.
  EXPECT_EQ(Passed(Check("builder-rootless-ro", {BuiltWithUid("1000 1000 1000 1000", false),
                                                 BuiltWithUid("1000 1000 1000 1000", true)})),
            0);
  // Another code with the same text: fails.
  EXPECT_EQ(Passed(Check("builder-rootless-ro",
                         {Refused(absl::InvalidArgumentError(ro.message())),
                          Refused(absl::InvalidArgumentError(ro.message()))})),
            0);
  JobEvidence rofs = RuncFailed(
      "runc run failed: unable to start container process: unable to apply cgroup "
      "configuration: mkdir /sys/fs/cgroup/docker: read-only file system");
  EXPECT_EQ(Passed(Check("builder-rootful-ro", {rofs, rofs})), 2);
  rofs.response.result->exit_status = 2;
  EXPECT_EQ(Passed(Check("builder-rootful-ro", {rofs, rofs})), 0);
  // The undelegated group: the agent's refusal naming the delegation.
  const absl::Status und = absl::FailedPreconditionError(
      "job refused before BuildKit ran: rootless builder: cgroup2 is mounted read-write but no "
      "subtree is delegated to uid 1000 ...");
  EXPECT_THAT(Check("builder-rootless-undelegated", {Refused(und)})[0].status, IsOk());
  EXPECT_FALSE(Check("builder-rootless-undelegated", {Refused(ro)})[0].status.ok());
}

TEST(MatrixTest, ResultsAndTable) {
  std::vector<BuilderGroupOutcome> groups;
  for (const char* name : {"builder-rootless-rw", "builder-rootful-off"}) {
    BuilderGroupOutcome g;
    g.name = name;
    g.secret_sha256 = Sha256Hex(kSecret);
    std::vector<JobEvidence> ev =
        g.name == "builder-rootful-off"
            ? std::vector<JobEvidence>{DaemonFailed(), DaemonFailed()}
            : std::vector<JobEvidence>{BuiltWithUid("1000 1000 1000 1000", false),
                                       BuiltWithUid("1000 1000 1000 1000", true)};
    for (JobEvidence& e : ev) {
      e.response.send_to_result = absl::Milliseconds(1234);
      g.run.jobs.push_back(e.response);
    }
    g.evidence = ev;
    g.scenarios = Group(name).checks(g, kSecret);
    groups.push_back(g);
  }
  std::vector<MatrixCellResult> m = MatrixResults(groups);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(MatrixCellName(m[0].cell), "rootless-rw-run");
  EXPECT_EQ(MatrixCellName(m[3].cell), "rootful-off-run-secret");
  for (const MatrixCellResult& c : m) {
    EXPECT_THAT(c.status, IsOk()) << c.observed;
    EXPECT_EQ(c.ms, 1234);
  }
  const std::string t = FormatBuilderMatrix(m);
  EXPECT_THAT(t, HasSubstr("rootless  rw+d    no secret       PASS       1234  exit 0, step "
                           "sleep Uid 1000 1000 1000 1000"));
  EXPECT_THAT(t, HasSubstr("rootful   off     with secret     PASS       1234  exit 1: failed "
                           "to start daemon: Devices cgroup isn't mounted"));
}

}  // namespace
}  // namespace kiln::harness
