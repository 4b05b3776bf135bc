// File: harness/vmm/qemu_vm_test.cc
// QemuVmm + QemuVm + VmFactory with real processes, but a fake QEMU (testdata/fake-qemu.sh)
// instead of a VM: version parsing, boot errors, clean exit, deadline kill of the whole
// process group (the fake ignores SIGTERM), peak RSS, logs.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/runner.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

std::string Runfile(const std::string& rel) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") + "/" + rel;
}

std::string Tmp() { return std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp"; }

class QemuVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    QemuOptions options;
    options.binary = Runfile("harness/vmm/testdata/fake-qemu.sh");
    options.accel = Accel::kTcg;
    ASSERT_OK_AND_ASSIGN(vmm_, QemuVmm::Create(options));
    kernel_ = Tmp() + "/vmlinux";
    std::ofstream(kernel_) << "not a kernel";
  }

  VmConfig Config(const std::string& id, const std::string& mode) {
    VmConfig c;
    c.id = id;
    c.kernel_path = kernel_;
    c.cmdline = "fake.mode=" + mode;
    c.deadline = absl::Seconds(2);
    c.work_dir = Tmp() + "/" + id;
    return c;
  }

  std::unique_ptr<QemuVmm> vmm_;
  std::string kernel_;
};

TEST_F(QemuVmTest, CreateReadsVersionAndAccel) {
  EXPECT_EQ(vmm_->version(), "9.9.9 (fake)");
  EXPECT_EQ(vmm_->options().accel, Accel::kTcg);
  EXPECT_THAT(vmm_->Describe(), HasSubstr("QEMU 9.9.9 (fake), machine q35, accel tcg (tcg requested)"));
  EXPECT_GT(vmm_->tsc_khz(), 0);
}

TEST_F(QemuVmTest, MissingBinaryIsNotFound) {
  QemuOptions options;
  options.binary = "/nonexistent/qemu-system-x86_64";
  EXPECT_THAT(QemuVmm::Create(options), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nonexistent")));
}

TEST_F(QemuVmTest, MissingArtifactsAreNotFound) {
  VmConfig c = Config("missing", "poweroff");
  c.initrd_path = "/nonexistent/initrd";
  EXPECT_THAT(vmm_->Boot(c), StatusIs(absl::StatusCode::kNotFound, HasSubstr("initrd")));
  c = Config("missing", "poweroff");
  c.disks.push_back({"/nonexistent/disk.ext4", true});
  EXPECT_THAT(vmm_->Boot(c), StatusIs(absl::StatusCode::kNotFound, HasSubstr("disk.ext4")));
}

TEST_F(QemuVmTest, PowerOff) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(Config("poweroff", "poweroff")));
  ASSERT_OK_AND_ASSIGN(VmExit e, vm->Wait(absl::Seconds(10)));
  EXPECT_EQ(e.kind, VmExit::Kind::kExited);
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_GT(e.peak_rss_bytes, 0);
  EXPECT_EQ(vm->peak_rss_bytes(), e.peak_rss_bytes);
  std::ifstream in(vm->serial_log_path());
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_THAT(ss.str(), HasSubstr("console=ttyS0 panic=-1 softlockup_panic=1 reboot=t fake.mode=poweroff"));
}

TEST_F(QemuVmTest, DeadlineKillsTheProcessGroup) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(Config("hang", "hang")));
  EXPECT_THAT(vm->Wait(absl::Milliseconds(200)), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("hang")));
  ASSERT_OK_AND_ASSIGN(VmExit e, vm->Wait(absl::Seconds(30)));
  EXPECT_EQ(e.kind, VmExit::Kind::kDeadline);
  EXPECT_GE(e.wall, absl::Seconds(2));
  pid_t grandchild = 0;
  std::ifstream(vm->config().work_dir + "/grandchild.pid") >> grandchild;
  ASSERT_GT(grandchild, 0);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string s((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    gone = kill(grandchild, 0) != 0 || s.find(") Z") != std::string::npos;
    if (!gone) usleep(10000);
  }
  EXPECT_TRUE(gone) << "the VMM's child " << grandchild << " survived";
  vm->Kill();  // idempotent after the exit
  EXPECT_EQ(vm->Wait(absl::ZeroDuration())->kind, VmExit::Kind::kDeadline);
}

TEST_F(QemuVmTest, FactoryRunThroughRealProcesses) {
  VmFactory factory(*vmm_, Tmp() + "/factory", Tmp() + "/outputs");
  ASSERT_OK_AND_ASSIGN(RunResult r, factory.Run(Config("run-ok", "poweroff")));
  EXPECT_EQ(r.console.kernel_version, "6.1.0-fake");
  EXPECT_EQ(r.console.exit_status, 0);
  EXPECT_EQ(r.saved_log_dir, Tmp() + "/outputs/run-ok");
  EXPECT_EQ(access((r.saved_log_dir + "/qemu.log").c_str(), R_OK), 0);
  EXPECT_THAT(factory.Run(Config("run-crash", "crash")),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("VMM exited (code 1")));
}

}  // namespace
}  // namespace kiln::harness
