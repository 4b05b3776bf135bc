// File: harness/cloud_hypervisor_vm_lifecycle_test.cc
// CloudHypervisorVmm + VmFactory with real processes, but the fake `cloud-hypervisor`
// (testdata/ch_fake_cloud_hypervisor.cc) instead of a VM: version, boot -> info -> shutdown ->
// exit over the REST API, guest power-off, deadline kill of the whole process group (the fake
// ignores SIGTERM and refuses to shut down), peak RSS, the vsock channel handshake, logs.
#include <signal.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/cloud_hypervisor.h"
#include "harness/runner.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Runfile(const std::string& rel) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") + "/" + rel;
}

std::string Tmp() { return std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp"; }

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool ProcessGone(pid_t pid) {
  for (int i = 0; i < 300; ++i) {
    std::string s = Slurp("/proc/" + std::to_string(pid) + "/stat");
    if (kill(pid, 0) != 0 || s.find(") Z") != std::string::npos) return true;
    usleep(10000);
  }
  return false;
}

class ChLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CloudHypervisorOptions options;
    options.binary = Runfile("harness/ch_fake_cloud_hypervisor");
    options.grace = absl::Milliseconds(300);
    ASSERT_OK_AND_ASSIGN(vmm_, CloudHypervisorVmm::Create(options));
    kernel_ = Tmp() + "/vmlinux";
    std::ofstream(kernel_) << "not a kernel";
    char tmpl[] = "/tmp/kiln-ch-life-XXXXXX";
    sock_dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { (void)system(absl::StrCat("rm -rf '", sock_dir_, "'").c_str()); }

  VmConfig Config(const std::string& id, const std::string& mode) {
    VmConfig c;
    c.id = id;
    c.kernel_path = kernel_;
    c.cmdline = "fake.mode=" + mode;
    c.deadline = absl::Seconds(2);
    c.work_dir = Tmp() + "/" + id;  // long: the API socket goes to a short temp dir
    return c;
  }

  std::unique_ptr<CloudHypervisorVmm> vmm_;
  std::string kernel_;
  std::string sock_dir_;
};

TEST_F(ChLifecycleTest, VersionAndDescribe) {
  EXPECT_EQ(vmm_->version(), "v99.0.0-fake");
  EXPECT_EQ(vmm_->Name(), "cloud-hypervisor");
  EXPECT_THAT(vmm_->Describe(), HasSubstr("Cloud Hypervisor v99.0.0-fake"));
}

TEST_F(ChLifecycleTest, BootInfoShutdownExit) {
  VmConfig c = Config("orderly", "run");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  auto* ch = dynamic_cast<CloudHypervisorVm*>(vm.get());
  ASSERT_NE(ch, nullptr);
  ASSERT_OK_AND_ASSIGN(ChVmState state, ch->State());
  EXPECT_EQ(state, ChVmState::kRunning);
  EXPECT_THAT(vm->Wait(absl::Milliseconds(100)), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("orderly")));
  vm->Kill();  // vm.shutdown + vmm.shutdown: the fake exits 0 by itself, before the grace
  ASSERT_OK_AND_ASSIGN(VmExit e, vm->Wait(absl::ZeroDuration()));
  EXPECT_EQ(e.kind, VmExit::Kind::kKilled);
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_FALSE(e.signal);
  EXPECT_GT(e.peak_rss_bytes, 0);
  EXPECT_THAT(Lines(c.work_dir + "/requests.log"),
              ElementsAre("PUT /api/v1/vm.create", "PUT /api/v1/vm.boot", "GET /api/v1/vm.info",
                          "PUT /api/v1/vm.shutdown", "PUT /api/v1/vmm.shutdown"));
  EXPECT_THAT(Slurp(vm->vmm_log_path()), HasSubstr("fake cloud-hypervisor: exiting"));
  EXPECT_THAT(Slurp(vm->serial_log_path()),
              HasSubstr("Command line: console=ttyS0 panic=-1 softlockup_panic=1 fake.mode=run"));
}

TEST_F(ChLifecycleTest, GuestPowerOffEndsTheVmm) {
  VmConfig c = Config("poweroff", "poweroff fake.rss_mib=64");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  ASSERT_OK_AND_ASSIGN(VmExit e, vm->Wait(absl::Seconds(10)));
  EXPECT_EQ(e.kind, VmExit::Kind::kExited);
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_GE(e.peak_rss_bytes, int64_t{64} << 20);
  EXPECT_EQ(vm->peak_rss_bytes(), e.peak_rss_bytes);
  EXPECT_THAT(Slurp(vm->serial_log_path()), HasSubstr("KILN-INIT: exit status=0"));
}

TEST_F(ChLifecycleTest, DeadlineKillsTheProcessGroup) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(Config("hang", "hang")));
  EXPECT_THAT(vm->Wait(absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("hang")));
  ASSERT_OK_AND_ASSIGN(VmExit e, vm->Wait(absl::Seconds(30)));
  EXPECT_EQ(e.kind, VmExit::Kind::kDeadline);
  EXPECT_GE(e.wall, absl::Seconds(2));
  EXPECT_EQ(e.signal, SIGKILL);  // SIGTERM is ignored by the fake
  pid_t grandchild = 0;
  std::ifstream(vm->config().work_dir + "/grandchild.pid") >> grandchild;
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(ProcessGone(grandchild)) << "the VMM's child " << grandchild << " survived";
  vm->Kill();  // idempotent
  EXPECT_EQ(vm->Wait(absl::ZeroDuration())->kind, VmExit::Kind::kDeadline);
}

TEST_F(ChLifecycleTest, KillEscalatesWhenTheApiRefusesToShutDown) {
  VmConfig c = Config("stubborn", "hang");
  c.deadline = absl::Seconds(60);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  const absl::Time before = absl::Now();
  vm->Kill();  // vm.shutdown/vmm.shutdown answer 500; grace; SIGTERM (ignored); SIGKILL
  EXPECT_LT(absl::Now() - before, absl::Seconds(5));
  ASSERT_OK_AND_ASSIGN(VmExit e, vm->Wait(absl::ZeroDuration()));
  EXPECT_EQ(e.kind, VmExit::Kind::kKilled);
  EXPECT_EQ(e.signal, SIGKILL);
  pid_t grandchild = 0;
  std::ifstream(c.work_dir + "/grandchild.pid") >> grandchild;
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(ProcessGone(grandchild));
}

TEST_F(ChLifecycleTest, BootErrorFromTheApiKillsTheVmm) {
  VmConfig c = Config("bad-boot", "bad-boot");
  EXPECT_THAT(vmm_->Boot(c), StatusIs(absl::StatusCode::kInternal,
                                      HasSubstr("PUT vm.boot: HTTP 500: {\"error\":\"fake: boot "
                                                "failed\"}")));
  EXPECT_THAT(Slurp(c.work_dir + "/cloud-hypervisor.log"),
              HasSubstr("fake cloud-hypervisor: exiting"));
}

TEST_F(ChLifecycleTest, ChannelHandshakeOverHybridVsock) {
  VmConfig c = Config("channel", "run");
  c.channel = Channel{"agent", sock_dir_ + "/vsock.sock", 3, 1024};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<agent::FdStream> s, ConnectChannel(*vm, absl::Seconds(5)));
  ASSERT_THAT(s->Write("ping", 1000), IsOk());
  char buf[8];
  ASSERT_OK_AND_ASSIGN(size_t n, s->Read(buf, sizeof(buf), 2000));
  EXPECT_EQ(std::string(buf, n), "ping");
  s.reset();
  vm->Kill();
  EXPECT_NE(access(c.channel->host_socket_path.c_str(), F_OK), 0) << "channel socket left behind";
  // After the exit, ConnectChannel stops at once instead of retrying to its deadline.
  EXPECT_THAT(ConnectChannel(*vm, absl::Seconds(30)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("VM exited")));
  VmConfig no_channel = Config("nochan", "run");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm2, vmm_->Boot(no_channel));
  EXPECT_THAT(ConnectChannel(*vm2, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no channel")));
}

TEST_F(ChLifecycleTest, DetachedVmOutlivesTheVmObjectUntilKilledByPid) {
  VmConfig c = Config("keep", "run");
  c.deadline = absl::Seconds(60);
  c.detachable = true;
  c.channel = Channel{"agent", sock_dir_ + "/vsock.sock", 3, 1024};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  const pid_t pid = vm->vmm_pid();
  ASSERT_GT(pid, 0);
  EXPECT_FALSE(vm->detached());
  ASSERT_THAT(vm->Detach(), IsOk());
  EXPECT_TRUE(vm->detached());
  EXPECT_THAT(vm->Detach(), IsOk());  // idempotent
  EXPECT_FALSE(vm->Exited());
  EXPECT_THAT(vm->Wait(absl::Milliseconds(10)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("detached")));
  vm->Kill();  // a no-op now
  vm.reset();  // nor does the destructor stop it
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(kill(pid, 0), 0) << "the detached cloud-hypervisor died with its Vm";
  EXPECT_EQ(Slurp("/proc/" + std::to_string(pid) + "/stat").find(") Z"), std::string::npos);
  // Its vsock channel still answers (a kept builder can be exec'd into).
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<agent::FdStream> s,
                       ConnectHybridVsockWithRetry(c.channel->host_socket_path, 1024,
                                                   absl::Seconds(5), nullptr));
  s.reset();
  // Whoever adopts it ends it by pid (kilnctl: SIGTERM to its process group).
  ASSERT_EQ(kill(-pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

TEST_F(ChLifecycleTest, DetachNeedsADetachableRunningVm) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(Config("attached", "run")));
  EXPECT_THAT(vm->Detach(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not booted detachable")));
  EXPECT_FALSE(vm->detached());
  VmConfig c = Config("gone", "poweroff");
  c.detachable = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> gone, vmm_->Boot(c));
  ASSERT_THAT(gone->Wait(absl::Seconds(10)), IsOk());
  EXPECT_THAT(gone->Detach(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("exited")));
}

TEST_F(ChLifecycleTest, FactoryRunThroughRealProcesses) {
  VmFactory factory(*vmm_, Tmp() + "/factory", Tmp() + "/outputs");
  ASSERT_OK_AND_ASSIGN(RunResult r, factory.Run(Config("run-ok", "poweroff")));
  EXPECT_EQ(r.console.kernel_version, "6.1.0-fake");
  EXPECT_EQ(r.console.exit_status, 0);
  EXPECT_EQ(access((r.saved_log_dir + "/cloud-hypervisor.log").c_str(), R_OK), 0);
  EXPECT_EQ(access((r.saved_log_dir + "/serial.log").c_str(), R_OK), 0);
}

}  // namespace
}  // namespace kiln::harness
