// File: harness/vmm/runner_test.cc
// VmFactory::Run against a scripted fake VMM: end marker, fatal, no marker, deadline, a soft
// lockup retried once, twice, teardown.
#include "harness/vmm/runner.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// FakeBoot: what one booted fake VM does: writes `log` as its serial log, then exits (if
// `exits`) or runs until killed / its deadline.
struct FakeBoot {
  std::string log;
  bool exits = true;
};

struct FakeState {
  std::deque<FakeBoot> script;
  std::vector<std::string> booted_ids;
  int killed = 0;
};

class FakeVm : public Vm {
 public:
  FakeVm(VmConfig config, FakeBoot boot, FakeState* state)
      : config_(std::move(config)), boot_(std::move(boot)), state_(state), start_(absl::Now()) {
    std::ofstream(serial_log_path()) << boot_.log;
    std::ofstream(vmm_log_path()) << "fake vmm\n";
  }
  const VmConfig& config() const override { return config_; }
  bool Exited() override {
    if (!exit_ && boot_.exits) exit_ = VmExit{VmExit::Kind::kExited, 0, 0, absl::Now() - start_, 4096};
    return exit_.has_value();
  }
  absl::StatusOr<VmExit> Wait(absl::Duration timeout) override {
    if (Exited()) return *exit_;
    absl::Time deadline = start_ + config_.deadline;
    absl::Time end = std::min(absl::Now() + timeout, deadline);
    absl::SleepFor(std::max(end - absl::Now(), absl::ZeroDuration()));
    if (absl::Now() >= deadline) {
      exit_ = VmExit{VmExit::Kind::kDeadline, 0, 9, absl::Now() - start_, 4096};
      return *exit_;
    }
    return absl::DeadlineExceededError("still running");
  }
  void Kill() override {
    if (exit_) return;
    ++state_->killed;
    exit_ = VmExit{VmExit::Kind::kKilled, 0, 9, absl::Now() - start_, 4096};
  }
  std::string serial_log_path() const override { return config_.work_dir + "/serial.log"; }
  std::string vmm_log_path() const override { return config_.work_dir + "/fake.log"; }
  int64_t peak_rss_bytes() const override { return exit_ ? 4096 : 0; }

 private:
  VmConfig config_;
  FakeBoot boot_;
  FakeState* state_;
  absl::Time start_;
  std::optional<VmExit> exit_;
};

class FakeVmm : public Vmm {
 public:
  explicit FakeVmm(FakeState* state) : state_(state) {}
  std::string Name() const override { return "fake"; }
  std::string Describe() const override { return "fake"; }
  absl::StatusOr<std::unique_ptr<Vm>> Boot(const VmConfig& config) override {
    if (state_->script.empty()) return absl::InternalError("fake: no boot scripted");
    mkdir(config.work_dir.c_str(), 0755);
    FakeBoot boot = state_->script.front();
    state_->script.pop_front();
    state_->booted_ids.push_back(config.id);
    return std::unique_ptr<Vm>(new FakeVm(config, boot, state_));
  }

 private:
  FakeState* state_;
};

constexpr char kGood[] =
    "Linux version 6.1.0-57-cloud-amd64 (x)\nKILN-INIT: ready uptime_ms=1\n"
    "KILN-CHECK runc.exit 0\nKILN-INIT: exit status=0 uptime_ms=2\n";
constexpr char kLockup[] =
    "KILN-INIT: ready uptime_ms=1\n"
    "[ 48.1] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [runc:[2:INIT]:231]\n";

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmp = std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp";
    root_ = absl::StrCat(tmp, "/runner_test_", counter_++);
    mkdir(root_.c_str(), 0755);
    mkdir((root_ + "/work").c_str(), 0755);
    RunOptions options;
    options.poweroff_grace = absl::Milliseconds(200);
    options.poll_interval = absl::Milliseconds(10);
    factory_ = std::make_unique<VmFactory>(vmm_, root_ + "/work", root_ + "/out", options);
  }

  VmConfig Config(const std::string& id = "vm1") {
    VmConfig c;
    c.id = id;
    c.kernel_path = "/k";
    c.deadline = absl::Milliseconds(400);
    return c;
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static int counter_;
  std::string root_;
  FakeState state_;
  FakeVmm vmm_{&state_};
  std::unique_ptr<VmFactory> factory_;
};

int RunnerTest::counter_ = 0;

TEST_F(RunnerTest, EndMarkerAndLogsSaved) {
  state_.script.push_back({kGood, true});
  ASSERT_OK_AND_ASSIGN(RunResult r, factory_->Run(Config()));
  EXPECT_EQ(r.attempts, 1);
  EXPECT_TRUE(r.retry_reason.empty());
  EXPECT_EQ(r.console.exit_status, 0);
  EXPECT_EQ(r.console.Check("runc.exit"), "0");
  EXPECT_EQ(r.exit.kind, VmExit::Kind::kExited);
  EXPECT_EQ(r.saved_log_dir, root_ + "/out/vm1");
  EXPECT_EQ(Slurp(root_ + "/out/vm1/serial.log"), kGood);
  EXPECT_EQ(Slurp(root_ + "/out/vm1/fake.log"), "fake vmm\n");
}

TEST_F(RunnerTest, FatalIsAResult) {
  state_.script.push_back({"KILN-INIT: fatal step=config errno=0 (Success): kiln.cgroup=\"x\"\n", true});
  ASSERT_OK_AND_ASSIGN(RunResult r, factory_->Run(Config()));
  ASSERT_TRUE(r.console.fatal.has_value());
  EXPECT_EQ(r.console.fatal->step, "config");
}

TEST_F(RunnerTest, EndMarkerButNoPowerOffIsKilledAfterGrace) {
  state_.script.push_back({kGood, false});
  ASSERT_OK_AND_ASSIGN(RunResult r, factory_->Run(Config()));
  EXPECT_EQ(r.exit.kind, VmExit::Kind::kKilled);
  EXPECT_EQ(state_.killed, 1);
}

TEST_F(RunnerTest, ExitWithoutMarkerFailsWithLogTail) {
  state_.script.push_back({"Linux version 6.1\nKernel is confused\n", true});
  EXPECT_THAT(factory_->Run(Config()),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("without an end marker"), HasSubstr("serial log tail"),
                             HasSubstr("Kernel is confused"), HasSubstr(root_ + "/out/vm1"))));
}

TEST_F(RunnerTest, EmptyLogIsSavedAndSaidSo) {
  state_.script.push_back({"", true});
  EXPECT_THAT(factory_->Run(Config()),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("the serial log is empty"), HasSubstr(root_ + "/out/vm1"))));
  EXPECT_EQ(access((root_ + "/out/vm1/serial.log").c_str(), R_OK), 0);
}

TEST_F(RunnerTest, HangHitsDeadline) {
  state_.script.push_back({"KILN-INIT: ready uptime_ms=1\n", false});
  EXPECT_THAT(factory_->Run(Config()),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("deadline"), HasSubstr("KILN-INIT: ready"))));
}

TEST_F(RunnerTest, SoftLockupIsRetriedOnce) {
  state_.script.push_back({kLockup, false});
  state_.script.push_back({kGood, true});
  ASSERT_OK_AND_ASSIGN(RunResult r, factory_->Run(Config()));
  EXPECT_EQ(r.attempts, 2);
  EXPECT_THAT(r.retry_reason, AllOf(HasSubstr("vm1"), HasSubstr("soft lockup")));
  EXPECT_EQ(r.vm_id, "vm1-retry1");
  EXPECT_THAT(state_.booted_ids, ::testing::ElementsAre("vm1", "vm1-retry1"));
  EXPECT_EQ(r.console.exit_status, 0);
  // Both attempts' logs are kept.
  EXPECT_EQ(Slurp(root_ + "/out/vm1/serial.log"), kLockup);
  EXPECT_EQ(Slurp(root_ + "/out/vm1-retry1/serial.log"), kGood);
}

TEST_F(RunnerTest, SoftLockupTwiceFails) {
  state_.script.push_back({kLockup, true});
  state_.script.push_back({kLockup, true});
  EXPECT_THAT(factory_->Run(Config()),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("stuck"), HasSubstr("after a retry"))));
  EXPECT_EQ(state_.booted_ids.size(), 2u);
}

// A guest whose OOM killer took containerd and which then locked up (the real kernel text,
// testdata/builder-oom-lockup.serial.log) is out of memory: reported as that, not retried.
TEST_F(RunnerTest, OutOfMemoryIsNamedAndNotRetried) {
  const std::string log = Slurp(absl::StrCat(std::getenv("TEST_SRCDIR"), "/",
                                             std::getenv("TEST_WORKSPACE"),
                                             "/harness/vmm/testdata/builder-oom-lockup.serial.log"));
  ASSERT_THAT(log, HasSubstr("Out of memory: Killed process"));
  state_.script.push_back({log, true});
  state_.script.push_back({kGood, true});
  VmConfig c = Config();
  c.memory_mib = 80;
  EXPECT_THAT(factory_->Run(c),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("guest out of memory (OOM killer killed containerd (pid "
                                       "231)); the VM had 80 MiB; raise --memory_mib"),
                             ::testing::Not(HasSubstr("after a retry")))));
  EXPECT_THAT(state_.booted_ids, ::testing::ElementsAre("vm1"));
}

TEST_F(RunnerTest, NoRetryWhenDisabled) {
  RunOptions options;
  options.retry_on_stuck = false;
  options.poll_interval = absl::Milliseconds(10);
  VmFactory factory(vmm_, root_ + "/work", "", options);
  state_.script.push_back({kLockup, true});
  EXPECT_THAT(factory.Run(Config("solo")), StatusIs(absl::StatusCode::kAborted, HasSubstr("stuck")));
  EXPECT_EQ(state_.booted_ids.size(), 1u);
}

TEST_F(RunnerTest, BootErrorsPropagate) {
  EXPECT_THAT(factory_->Run(Config()), StatusIs(absl::StatusCode::kInternal, HasSubstr("no boot")));
}

TEST_F(RunnerTest, DuplicateIdAndKillAll) {
  state_.script.push_back({"", false});
  state_.script.push_back({"", false});
  ASSERT_OK_AND_ASSIGN(Vm * a, factory_->Boot(Config("a")));
  EXPECT_THAT(factory_->Boot(Config("a")), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("a")));
  ASSERT_OK_AND_ASSIGN(Vm * b, factory_->Boot(Config("b")));
  EXPECT_EQ(a->config().work_dir, root_ + "/work/a");
  factory_->KillAll();
  factory_->KillAll();  // idempotent
  EXPECT_EQ(state_.killed, 2);
  EXPECT_TRUE(b->Exited());
}

}  // namespace
}  // namespace kiln::harness
