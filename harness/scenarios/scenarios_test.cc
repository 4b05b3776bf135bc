// File: harness/scenarios/scenarios_test.cc
// The scenario checks on real serial logs (testdata/), plus broken variants of them.
#include "harness/scenarios/scenarios.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

std::string Testdata(const std::string& name) {
  std::string path = std::string(std::getenv("TEST_SRCDIR")) + "/" +
                     std::getenv("TEST_WORKSPACE") + "/harness/vmm/testdata/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult FromLog(const std::string& log) {
  RunResult r;
  r.serial_log = log;
  r.console = ParseConsole(log);
  r.exit.kind = VmExit::Kind::kExited;
  return r;
}

RunResult ScenarioLog(const std::string& scenario) {
  return FromLog(Testdata(scenario + ".serial.log"));
}

std::vector<Scenario> AllScenarios() {
  std::vector<Scenario> all = CgroupScenarios();
  all.push_back(AgentVsockScenario());
  return all;
}

// Each check passes on its own scenario's log and fails on every other one.
TEST(ScenarioChecksTest, CrossMatrix) {
  for (const Scenario& log_of : AllScenarios()) {
    RunResult run = ScenarioLog(log_of.name);
    for (const Scenario& check_of : AllScenarios()) {
      SCOPED_TRACE("check " + check_of.name + " on the log of " + log_of.name);
      absl::StatusOr<std::string> r = check_of.check(run);
      if (check_of.name == log_of.name) {
        EXPECT_OK(r);
      } else {
        EXPECT_THAT(r, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("expected")));
      }
    }
  }
}

TEST(ScenarioChecksTest, Summaries) {
  ASSERT_OK_AND_ASSIGN(std::string rw, CheckCgroupRw(ScenarioLog("cgroup-rw")));
  EXPECT_THAT(rw, HasSubstr("container cgroup 0::/kiln-check"));
  ASSERT_OK_AND_ASSIGN(std::string off, CheckCgroupOff(ScenarioLog("cgroup-off")));
  EXPECT_THAT(off, HasSubstr("no cgroup mount found in mountinfo"));
  ASSERT_OK_AND_ASSIGN(std::string bad, CheckBadValue(ScenarioLog("cgroup-bad-value")));
  EXPECT_THAT(bad, HasSubstr("kiln.cgroup=\"maybe\": bad value"));
}

TEST(ScenarioChecksTest, AgentVsock) {
  ASSERT_OK_AND_ASSIGN(std::string s, CheckAgentVsock(ScenarioLog("agent-vsock")));
  EXPECT_THAT(s, HasSubstr("Ready from kiln-agent 0.1"));
  const std::string log = Testdata("agent-vsock.serial.log");
  // The agent never answered: the check program reports it and fails.
  EXPECT_THAT(CheckAgentVsock(FromLog(absl::StrReplaceAll(
                  log, {{"KILN-CHECK vsock.pong nonce=1802071150 uptime_ms=4530", "(no pong)"},
                        {"KILN-CHECK vsock.agent-exit 0",
                         "KILN-CHECK error read frame: deadline exceeded"},
                        {"KILN-CHECK done status=0", "KILN-CHECK done status=1"},
                        {"KILN-INIT: exit status=0", "KILN-INIT: exit status=1"}}))),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("deadline exceeded")));
  // A Pong with another nonce, or an agent that exits non-zero.
  EXPECT_THAT(CheckAgentVsock(FromLog(absl::StrReplaceAll(log, {{"nonce=1802071150", "nonce=7"}}))),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("vsock.pong")));
  EXPECT_THAT(CheckAgentVsock(FromLog(absl::StrReplaceAll(
                  log, {{"vsock.agent-exit 0", "vsock.agent-exit 3"}}))),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("agent-exit")));
}

TEST(ScenarioChecksTest, RwFailsWhenRuncFails) {
  std::string log = absl::StrReplaceAll(Testdata("cgroup-rw.serial.log"),
                                        {{"KILN-CHECK runc.exit 0", "KILN-CHECK runc.exit 1"}});
  EXPECT_THAT(CheckCgroupRw(FromLog(log)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("runc run exit 0")));
}

TEST(ScenarioChecksTest, RwFailsWithoutContainerCgroupLine) {
  std::string log = absl::StrReplaceAll(Testdata("cgroup-rw.serial.log"),
                                        {{"KILN-CHECK runc.stdout 0::/kiln-check", ""}});
  EXPECT_THAT(CheckCgroupRw(FromLog(log)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("0::/<id>")));
}

TEST(ScenarioChecksTest, ProgramFailureIsReported) {
  std::string log = absl::StrReplaceAll(
      Testdata("cgroup-rw.serial.log"),
      {{"KILN-CHECK done status=0", "KILN-CHECK error no OCI bundle at /opt/kiln/bundle"},
       {"KILN-INIT: exit status=0", "KILN-INIT: exit status=1"}});
  EXPECT_THAT(CheckCgroupRw(FromLog(log)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no OCI bundle")));
}

TEST(ScenarioChecksTest, MissingEndMarkerOrReady) {
  EXPECT_THAT(CheckCgroupOff(FromLog("Linux version 6.1\n")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ready")));
}

TEST(ScenarioChecksTest, DelegatedSummary) {
  ASSERT_OK_AND_ASSIGN(std::string s, CheckCgroupDelegated(ScenarioLog("cgroup-delegated")));
  EXPECT_THAT(s, HasSubstr("/sys/fs/cgroup/kiln-builder 1000:1000"));
  EXPECT_THAT(s, HasSubstr("made and entered /kiln-builder/probe"));
  ASSERT_OK_AND_ASSIGN(s, CheckDelegateRo(ScenarioLog("cgroup-delegate-ro")));
  EXPECT_THAT(s, HasSubstr("kiln.delegate=\"1000:1000\" with kiln.cgroup=ro"));
}

// Each way a delegation can be wrong, made from the real log, fails the check and names it.
TEST(ScenarioChecksTest, DelegatedFailsOnEachBrokenPart) {
  const std::string log = Testdata("cgroup-delegated.serial.log");
  struct Row {
    const char* from;
    const char* to;
    const char* want;
  };
  const Row rows[] = {
      {"KILN-CHECK delegate.dir 1000:1000 755", "KILN-CHECK delegate.dir 0:0 755", "delegate.dir"},
      {"KILN-CHECK delegate.file cgroup.threads 1000:1000",
       "KILN-CHECK delegate.file cgroup.threads 0:0", "cgroup.threads 1000:1000"},
      {"cgroup.subtree_control cpuset cpu io memory pids", "cgroup.subtree_control cpuset cpu io pids",
       "list memory"},
      {"parent-knob=denied", "parent-knob=writable", "parent-knob=denied"},
      {"cgroup=0::/kiln-builder/probe", "cgroup=0::/", "cgroup=0::/kiln-builder/probe"},
      {"delegate.probe.exit 0", "delegate.probe.exit 12", "delegate.probe.exit 0"},
      {"dev.tun character special file a:c8 666", "dev.tun character special file a:c8 600",
       "dev.tun"},
      {"KILN-CHECK runc.exit 0", "KILN-CHECK runc.exit 1", "runc run exit 0"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.to);
    ASSERT_THAT(log, HasSubstr(row.from));
    EXPECT_THAT(CheckCgroupDelegated(FromLog(absl::StrReplaceAll(log, {{row.from, row.to}}))),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(row.want)));
  }
}

// cgroup-rw boots without kiln.delegate: a kiln-builder there would be init delegating unasked.
TEST(ScenarioChecksTest, RwFailsIfSomethingWasDelegated) {
  std::string log = absl::StrReplaceAll(Testdata("cgroup-rw.serial.log"),
                                        {{"KILN-CHECK delegate.dir none",
                                          "KILN-CHECK delegate.dir 1000:1000 755"}});
  EXPECT_THAT(CheckCgroupRw(FromLog(log)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("without kiln.delegate")));
}

TEST(ScenarioChecksTest, BadValueNeedsPowerOff) {
  RunResult run = ScenarioLog("cgroup-bad-value");
  run.exit.kind = VmExit::Kind::kKilled;
  EXPECT_THAT(CheckBadValue(run),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("power off")));
}

TEST(ScenariosTest, FindAndConfig) {
  ASSERT_OK_AND_ASSIGN(Scenario s, FindScenario("cgroup-ro"));
  EXPECT_EQ(s.cmdline, "kiln.root=/dev/vda kiln.exec=/usr/lib/kiln/cgroup-check kiln.cgroup=ro");
  EXPECT_THAT(FindScenario("cgroup-rx"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cgroup-rw, cgroup-ro")));
  VmConfig c = ScenarioVmConfig(s, Artifacts{"/k", "/i", "/d"});
  EXPECT_EQ(c.id, "cgroup-ro");
  EXPECT_EQ(c.kernel_path, "/k");
  EXPECT_EQ(c.initrd_path, "/i");
  ASSERT_EQ(c.disks.size(), 1u);
  EXPECT_EQ(c.disks[0].path, "/d");
  EXPECT_TRUE(c.disks[0].read_only);
  EXPECT_EQ(c.cmdline, s.cmdline);
}

TEST(ScenariosTest, ValidateArtifacts) {
  EXPECT_THAT(ValidateArtifacts(Artifacts{"", "/i", "/d"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kernel")));
  EXPECT_THAT(ValidateArtifacts(Artifacts{"/nonexistent/k", "/i", "/d"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/k")));
}

}  // namespace
}  // namespace kiln::harness
