// File: harness/vmm/cloud_hypervisor_vm_lifecycle_test.cc
// CloudHypervisorVmm + VmFactory with real processes, but the fake `cloud-hypervisor`
// (testdata/ch_fake_cloud_hypervisor.cc) instead of a VM: version, boot -> info -> shutdown ->
// exit over the REST API, guest power-off, deadline kill of the whole process group (the fake
// ignores SIGTERM and refuses to shut down), peak RSS, the vsock channel handshake, logs; and
// the ways the real CH (v53) differs from its API document, which the fake copies: the
// <api-socket>.lock it leaves behind, vmm.shutdown's 200, error bodies as JSON arrays, vm.info
// 404 before vm.create and Created after vm.shutdown, the vsock socket created at vm.boot and
// an unanswered CONNECT dropped after 2000 ms, config errors (a locked disk) at vm.boot.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/vmm/ch_fake_testing.h"
#include "harness/vmm/cloud_hypervisor.h"
#include "harness/keep/keep_builder.h"
#include "harness/keep/keep_store.h"
#include "agent/process/process.h"
#include "harness/vmm/vm_process.h"
#include "harness/vmm/runner.h"
#include "harness/vmm/vm_test_support.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

bool ProcessGone(pid_t pid) {
  for (int i = 0; i < 300; ++i) {
    std::string s = SlurpFile("/proc/" + std::to_string(pid) + "/stat");
    if (kill(pid, 0) != 0 || s.find(") Z") != std::string::npos) return true;
    usleep(10000);
  }
  return false;
}

// ApiSocketOf(work_dir): the API socket the fake served, from its log line "serving <path>".
std::string ApiSocketOf(const std::string& work_dir) {
  for (const std::string& line : FileLines(work_dir + "/cloud-hypervisor.log")) {
    const std::string key = "fake cloud-hypervisor: serving ";
    if (line.rfind(key, 0) == 0) return line.substr(key.size());
  }
  return "";
}

std::string Dir(const std::string& path) { return path.substr(0, path.rfind('/')); }

class ChLifecycleTest : public ChFakeVmmTest {
 protected:
  VmConfig Config(const std::string& id, const std::string& mode) {
    VmConfig c = FakeVmConfig(id, mode);
    // Long enough that a loaded 2-core host never turns a guest's orderly end into a deadline
    // kill; the test of the deadline itself sets 2 s.
    c.deadline = absl::Seconds(20);
    return c;
  }
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
  EXPECT_THAT(FileLines(c.work_dir + "/requests.log"),
              ElementsAre("PUT /api/v1/vm.create", "PUT /api/v1/vm.boot", "GET /api/v1/vm.info",
                          "PUT /api/v1/vm.shutdown", "PUT /api/v1/vmm.shutdown"));
  EXPECT_THAT(SlurpFile(vm->vmm_log_path()), HasSubstr("fake cloud-hypervisor: exiting"));
  EXPECT_THAT(SlurpFile(vm->serial_log_path()),
              HasSubstr("Command line: console=ttyS0 panic=-1 softlockup_panic=1 fake.mode=run"));
}

TEST_F(ChLifecycleTest, GuestPowerOffEndsTheVmm) {
  VmConfig c = Config("poweroff", "poweroff fake.rss_mib=64");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  ASSERT_OK_AND_ASSIGN(VmExit e, vm->Wait(absl::Seconds(30)));
  EXPECT_EQ(e.kind, VmExit::Kind::kExited);
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_GE(e.peak_rss_bytes, int64_t{64} << 20);
  EXPECT_EQ(vm->peak_rss_bytes(), e.peak_rss_bytes);
  EXPECT_THAT(SlurpFile(vm->serial_log_path()), HasSubstr("KILN-INIT: exit status=0"));
}

TEST_F(ChLifecycleTest, DeadlineKillsTheProcessGroup) {
  VmConfig c = Config("hang", "hang");
  c.deadline = absl::Seconds(2);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
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
  // CH's error body ["Error from API","The VM could not boot","fake: boot failed"] becomes
  // the message's text.
  EXPECT_THAT(vmm_->Boot(c),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("PUT vm.boot: HTTP 500: Error from API: The VM could not boot: "
                                 "fake: boot failed")));
  EXPECT_THAT(SlurpFile(c.work_dir + "/cloud-hypervisor.log"),
              HasSubstr("fake cloud-hypervisor: exiting"));
}

TEST_F(ChLifecycleTest, ChannelHandshakeOverHybridVsock) {
  VmConfig c = Config("channel", "run");
  c.channel = FakeChannel("vsock.sock");
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
  c.channel = FakeChannel("vsock.sock");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  const pid_t pid = vm->vmm_pid();
  ASSERT_GT(pid, 0);
  const std::string socket_dir = vm->vmm_socket_dir();
  EXPECT_THAT(socket_dir, StartsWith("/tmp/kiln-ch-"));
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
  EXPECT_EQ(SlurpFile("/proc/" + std::to_string(pid) + "/stat").find(") Z"), std::string::npos);
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
  // Killed by pid alone, CH leaves its API socket and lock: the short socket dir stays (the
  // keep teardown below removes it; here the test does).
  EXPECT_TRUE(PathExists(socket_dir + "/ch-api.sock.lock"));
  std::filesystem::remove_all(socket_dir);
}

// A kept (detached) CH builder ended the way kilnctl does (TeardownVmm of its keep record):
// no process, channel socket, API socket, .lock or short socket dir is left.
TEST_F(ChLifecycleTest, KeptVmTeardownLeavesNoSocketDir) {
  VmConfig c = Config("kept", "run");
  c.deadline = absl::Seconds(60);
  c.detachable = true;
  c.channel = FakeChannel("kept-vsock.sock");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  const pid_t pid = vm->vmm_pid();
  const std::string socket_dir = vm->vmm_socket_dir();
  ASSERT_THAT(socket_dir, StartsWith("/tmp/kiln-ch-"));
  ASSERT_OK_AND_ASSIGN(ProcessIdentity id, IdentifyProcess(pid));
  ASSERT_OK_AND_ASSIGN(KeepRecord r,
                       KeepRecordForVm(c, vm->serial_log_path(), "cloud-hypervisor", id, {},
                                       "job", absl::Now(), ChannelTransport::kHybridVsock));
  r.vmm_socket_dir = socket_dir;
  ASSERT_THAT(ValidateKeepRecord(r), IsOk());
  ASSERT_THAT(vm->Detach(), IsOk());
  vm.reset();
  EXPECT_TRUE(PathExists(socket_dir + "/ch-api.sock.lock"));
  TeardownOptions o;
  o.term_grace = absl::Seconds(5);
  std::thread reaper([pid] { waitpid(pid, nullptr, 0); });  // we are its parent
  EXPECT_THAT(TeardownVmm(r, o), IsOk());
  reaper.join();
  EXPECT_FALSE(PathExists(c.channel->host_socket_path));
  EXPECT_FALSE(PathExists(socket_dir)) << socket_dir << " left behind";
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
  VmFactory factory(*vmm_, TestTmpRoot() + "/factory", TestTmpRoot() + "/outputs");
  ASSERT_OK_AND_ASSIGN(RunResult r, factory.Run(Config("run-ok", "poweroff")));
  EXPECT_EQ(r.console.kernel_version, "6.1.0-fake");
  EXPECT_EQ(r.console.exit_status, 0);
  EXPECT_EQ(access((r.saved_log_dir + "/cloud-hypervisor.log").c_str(), R_OK), 0);
  EXPECT_EQ(access((r.saved_log_dir + "/serial.log").c_str(), R_OK), 0);
}

// ----------------------------------------------------------------------------
// Where the real CH differs from its API document (the fake does what CH does).
// ----------------------------------------------------------------------------

// CH >= v53 creates <api-socket>.lock and never removes it: kiln removes it, and the short
// socket dir it made when the work dir is too long for a socket path, on every way out.
TEST_F(ChLifecycleTest, NoLockFileOrSocketDirLeftBehind) {
  struct Case {
    const char* id;
    const char* mode;
    bool short_work_dir;
    bool boot_fails;
  };
  const Case cases[] = {
      {"lock-orderly", "run", false, false},   // Kill: vm.shutdown, vmm.shutdown
      {"lock-poweroff", "poweroff", false, false},  // the guest powers off, CH exits
      {"lock-hang", "hang", false, false},     // API refuses, group SIGKILL
      {"lock-badboot", "bad-boot", false, true},  // Boot fails after vm.create
      {"lock-short", "run", true, false},      // API socket in the work dir itself
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.id);
    VmConfig c = Config(k.id, k.mode);
    if (k.short_work_dir) c.work_dir = sock_dir_ + "/" + k.id;
    absl::StatusOr<std::unique_ptr<Vm>> vm = vmm_->Boot(c);
    const std::string api = ApiSocketOf(c.work_dir);
    ASSERT_FALSE(api.empty());
    if (k.short_work_dir) {
      EXPECT_EQ(Dir(api), c.work_dir);
    } else {
      EXPECT_THAT(api, StartsWith("/tmp/kiln-ch-"));
    }
    if (k.boot_fails) {
      ASSERT_FALSE(vm.ok());
    } else {
      ASSERT_THAT(vm, IsOk());
      // The fake made the lock as CH does (else this test proves nothing).
      EXPECT_TRUE(PathExists(api + ".lock"));
      if (std::string(k.mode) == "poweroff") {
        ASSERT_THAT((*vm)->Wait(absl::Seconds(10)), IsOk());
      } else {
        (*vm)->Kill();
      }
    }
    EXPECT_FALSE(PathExists(api)) << api;
    EXPECT_FALSE(PathExists(api + ".lock")) << api << ".lock left behind";
    if (k.short_work_dir) {
      EXPECT_TRUE(PathExists(c.work_dir));  // the work dir is the caller's
    } else {
      EXPECT_FALSE(PathExists(Dir(api))) << "socket dir " << Dir(api) << " leaked";
    }
  }
}

// kiln removes only a regular file named after its socket: a directory (or anything else) at
// that path is not touched, and the socket dir is then left (rmdir fails) rather than forced.
TEST_F(ChLifecycleTest, OnlyARegularLockFileIsRemoved) {
  VmConfig c = Config("lock-dir", "run");
  c.work_dir = sock_dir_ + "/lock-dir";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  const std::string api = ApiSocketOf(c.work_dir);
  ASSERT_EQ(unlink((api + ".lock").c_str()), 0);
  ASSERT_EQ(symlink("/etc/hostname", (api + ".lock").c_str()), 0);
  std::ofstream(c.work_dir + "/other.lock") << "x";
  vm->Kill();
  struct stat st;
  ASSERT_EQ(lstat((api + ".lock").c_str(), &st), 0) << "a symlink at the lock path was removed";
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_TRUE(PathExists(c.work_dir + "/other.lock"));
}

// The fake itself, driven by hand: what CH does that its API document does not say.
TEST_F(ChLifecycleTest, FakeBehavesAsTheRealCh) {
  const std::string dir = sock_dir_ + "/direct";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  const std::string api = dir + "/api.sock";
  ASSERT_OK_AND_ASSIGN(process::Process p,
                       process::Process::Spawn(VmmSpawnOptions(
                           {ChFakeBinaryPath(), "--api-socket", api},
                           dir + "/log", /*die_with_parent=*/true)));
  ChApiClient client(api, absl::Seconds(2));
  absl::Status ping = absl::UnavailableError("not tried");
  for (int i = 0; i < 200 && !ping.ok(); ++i) {
    ping = client.Call("GET", "vmm.ping").status();
    if (!ping.ok()) absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_THAT(ping, IsOk());
  EXPECT_TRUE(PathExists(api + ".lock"));
  // vm.info before vm.create: 404 with CH's error chain as a JSON array.
  ASSERT_OK_AND_ASSIGN(ChApiResponse info, client.Request("GET", "vm.info"));
  EXPECT_EQ(info.status, 404);
  EXPECT_EQ(info.body, R"(["Error from API","The VM info is not available","VM is not created"])");
  EXPECT_THAT(client.Call("GET", "vm.info"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("HTTP 404: Error from API: The VM info is not available: VM is "
                                 "not created")));
  // vm.create stores; the vsock socket appears only at vm.boot.
  const std::string vsock = dir + "/vsock.sock";
  const nlohmann::json config = {{"payload", {{"kernel", kernel_}}},
                                 {"serial", {{"mode", "File"}, {"file", dir + "/serial.log"}}},
                                 {"vsock", {{"cid", 3}, {"socket", vsock}}}};
  ASSERT_THAT(client.Call("PUT", "vm.create", config.dump()), IsOk());
  EXPECT_FALSE(PathExists(vsock)) << "the vsock socket exists before vm.boot";
  ASSERT_OK_AND_ASSIGN(std::string created, client.Call("GET", "vm.info"));
  EXPECT_EQ(ParseChVmInfoState(created).value_or(ChVmState::kBreakPoint), ChVmState::kCreated);
  ASSERT_THAT(client.Call("PUT", "vm.boot"), IsOk());
  EXPECT_TRUE(PathExists(vsock));
  ASSERT_OK_AND_ASSIGN(std::string running, client.Call("GET", "vm.info"));
  EXPECT_EQ(ParseChVmInfoState(running).value_or(ChVmState::kBreakPoint), ChVmState::kRunning);
  // vm.shutdown: the VM is gone, its config stays: Created, not Shutdown.
  ASSERT_OK_AND_ASSIGN(ChApiResponse down, client.Request("PUT", "vm.shutdown"));
  EXPECT_EQ(down.status, 204);
  ASSERT_OK_AND_ASSIGN(std::string after, client.Call("GET", "vm.info"));
  EXPECT_EQ(ParseChVmInfoState(after).value_or(ChVmState::kBreakPoint), ChVmState::kCreated);
  // vmm.shutdown: 200 (the API document says 204), then the process exits, removing its API
  // socket and leaving the .lock.
  ASSERT_OK_AND_ASSIGN(ChApiResponse bye, client.Request("PUT", "vmm.shutdown"));
  EXPECT_EQ(bye.status, 200);
  ASSERT_OK_AND_ASSIGN(process::ProcessExit e, p.Wait(absl::Now() + absl::Seconds(5)));
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_FALSE(PathExists(api));
  EXPECT_TRUE(PathExists(api + ".lock"));
}

// A config CH accepts at vm.create but rejects at vm.boot (here: a writable disk another CH
// holds locked): kiln's error carries CH's whole error chain as text, and the VMM is gone.
TEST_F(ChLifecycleTest, ConfigRejectedAtBootIsReportedWithChsReason) {
  const std::string disk = sock_dir_ + "/shared.ext4";
  std::ofstream(disk) << "disk";
  VmConfig a = Config("disk-a", "run");
  a.disks = {{disk, /*read_only=*/false}};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> first, vmm_->Boot(a));
  VmConfig b = Config("disk-b", "run");
  b.disks = {{disk, /*read_only=*/false}};
  EXPECT_THAT(vmm_->Boot(b),
              StatusIs(absl::StatusCode::kInternal,
                       AllOf(HasSubstr("PUT vm.boot: HTTP 500: Error from API: The VM could not "
                                       "boot: Error locking disk images: Another instance likely "
                                       "holds a lock: Failed to get Write lock for disk image: " +
                                       disk + ": The file is already locked"),
                             ::testing::Not(HasSubstr("[\"")))));
  EXPECT_THAT(FileLines(b.work_dir + "/requests.log"),
              ElementsAre("PUT /api/v1/vm.create", "PUT /api/v1/vm.boot",
                          "PUT /api/v1/vm.shutdown", "PUT /api/v1/vmm.shutdown"));
  // Once the first VM is gone, the same config boots.
  first->Kill();
  VmConfig c = Config("disk-c", "run");
  c.disks = {{disk, /*read_only=*/false}};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> again, vmm_->Boot(c));
}

// The guest answers the first CONNECT only after CH's 2000 ms request timeout: CH drops it
// (kiln sees the close, Unavailable: its own per-attempt timeout is longer, so it never gives
// up on a request CH still holds), and the next attempt gets through.
TEST_F(ChLifecycleTest, ChannelRetriesAfterChDropsAnUnansweredConnect) {
  VmConfig c = Config("slow-guest", "run fake.vsock_ready_ms=2600");
  c.deadline = absl::Seconds(60);
  c.channel = FakeChannel("vsock.sock");
  const absl::Time boot = absl::Now();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  std::vector<absl::Status> errors;
  HybridVsockRetry retry;
  retry.attempt_errors = &errors;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<agent::FdStream> s,
                       ConnectHybridVsockWithRetry(c.channel->host_socket_path, 1024,
                                                   absl::Seconds(20), nullptr, retry));
  const absl::Duration took = absl::Now() - boot;
  EXPECT_GE(took, absl::Milliseconds(2600));
  EXPECT_LT(took, absl::Seconds(8));
  ASSERT_FALSE(errors.empty());
  EXPECT_THAT(errors[0], StatusIs(absl::StatusCode::kUnavailable, ::testing::_))
      << "the first attempt ended by kiln's timeout, not by CH's drop";
  ASSERT_THAT(s->Write("hi", 1000), IsOk());
  char buf[4];
  ASSERT_OK_AND_ASSIGN(size_t n, s->Read(buf, sizeof(buf), 2000));
  EXPECT_EQ(std::string(buf, n), "hi");
}

}  // namespace
}  // namespace kiln::harness
