// File: harness/vmm/cloud_hypervisor_snapshot_test.cc
// Cloud Hypervisor snapshot and restore (harness/vmm/cloud_hypervisor.h: SaveChSnapshot,
// CloudHypervisorVmm::Restore) with real processes and the fake `cloud-hypervisor`
// (testdata/ch_fake_cloud_hypervisor.cc), which follows CH's docs/snapshot_restore.md:
// vm.pause, vm.snapshot {destination_url} writing config.json, state.json, memory-ranges,
// `--restore source_url=file://<dir>` starting the VM Paused with its vsock socket bound anew,
// vm.resume.
//
//   SaveRestoreResumeAndReconnect     boot -> channel echo -> pause + snapshot -> shutdown ->
//                                     restore through VmFactory (VmConfig::restore_from, a new
//                                     vsock socket path) -> Paused checked, resumed, Running ->
//                                     the host connects anew; the snapshot files unchanged
//   RestoreOfABadSnapshotIsAClearError
//                                     missing dir or file, corrupt config.json / state.json,
//                                     truncated memory-ranges, a config that does not match,
//                                     and CH's own refusal (a disk another process locks):
//                                     each error names the file or carries CH's error chain;
//                                     nothing is left running; the fake's own CLI errors
//   SnapshotRefusals                  a VM that exited, a missing or relative dir, vm.snapshot
//                                     of a running VM, vm.pause of a paused one, vm.resume of a
//                                     running one: CH's 500s with its error chain
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/vmm/ch_fake_testing.h"
#include "harness/vmm/cloud_hypervisor.h"
#include "harness/vmm/runner.h"
#include "harness/vmm/vm_test_support.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ChSnapshotTest : public ChFakeVmmTest {
 protected:
  // Config(id, socket_name): a running fake VM of 256 MiB and 2 vCPUs; with a channel on
  // `sock_dir_`/<socket_name> unless that is empty.
  VmConfig Config(const std::string& id, const std::string& socket_name) {
    VmConfig c = FakeVmConfig(id, "run");
    c.memory_mib = 256;
    c.vcpus = 2;
    c.deadline = absl::Seconds(30);
    if (!socket_name.empty()) c.channel = FakeChannel(socket_name);
    return c;
  }

  // MakeSnapshot(id, dir): boots a VM with a channel, echoes once, saves it into `dir`, kills
  // it. Returns the VM's config.
  VmConfig MakeSnapshot(const std::string& id, const std::string& dir) {
    VmConfig c = Config(id, id + ".sock");
    EXPECT_EQ(mkdir(dir.c_str(), 0700), 0) << dir;
    absl::StatusOr<std::unique_ptr<Vm>> vm = vmm_->Boot(c);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return c;
    {
      absl::StatusOr<std::unique_ptr<agent::FdStream>> s = ConnectChannel(**vm, absl::Seconds(5));
      EXPECT_TRUE(s.ok()) << s.status();
      if (s.ok()) {
        EXPECT_EQ(EchoOverChannel(**s, "before"), "before");
      }
    }
    auto* ch = dynamic_cast<CloudHypervisorVm*>(vm->get());
    absl::StatusOr<ChSaveStats> saved = SaveChSnapshot(*ch, dir);
    EXPECT_TRUE(saved.ok()) << saved.status();
    (*vm)->Kill();
    return c;
  }
};

TEST_F(ChSnapshotTest, SaveRestoreResumeAndReconnect) {
  VmConfig c = Config("snap-source", "source.sock");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  auto* ch = dynamic_cast<CloudHypervisorVm*>(vm.get());
  ASSERT_NE(ch, nullptr);
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<agent::FdStream> s, ConnectChannel(*vm, absl::Seconds(5)));
    EXPECT_EQ(EchoOverChannel(*s, "before the snapshot"), "before the snapshot");
  }
  const std::string dir = TestTmpRoot() + "/snapshot-1";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  ASSERT_OK_AND_ASSIGN(ChSaveStats stats, SaveChSnapshot(*ch, dir));
  EXPECT_GE(stats.state_bytes, uint64_t{256} << 20);  // memory-ranges: the guest RAM
  ASSERT_OK_AND_ASSIGN(ChVmState state, ch->State());
  EXPECT_EQ(state, ChVmState::kPaused);  // left paused: the caller ends it
  for (const char* f : kChSnapshotFiles) {
    struct stat st;
    ASSERT_EQ(stat(absl::StrCat(dir, "/", f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600) << f;
  }
  nlohmann::json saved = nlohmann::json::parse(SlurpFile(dir + "/config.json"));
  EXPECT_EQ(saved["vsock"]["socket"], c.channel->host_socket_path);
  EXPECT_EQ(saved["memory"]["size"], int64_t{256} << 20);
  vm->Kill();
  EXPECT_THAT(FileLines(c.work_dir + "/requests.log"),
              ElementsAre("PUT /api/v1/vm.create", "PUT /api/v1/vm.boot", "PUT /api/v1/vm.pause",
                          "PUT /api/v1/vm.snapshot", "GET /api/v1/vm.info",
                          "PUT /api/v1/vm.shutdown", "PUT /api/v1/vmm.shutdown"));
  const std::string config_before = SlurpFile(dir + "/config.json");
  const std::string state_before = SlurpFile(dir + "/state.json");

  // Restore through the factory, as the warm builders do: a new VM (id, work dir, vsock socket).
  VmFactory factory(*vmm_, TestTmpRoot() + "/vms", "");
  for (const char* id : {"snap-restored-1", "snap-restored-2"}) {
    SCOPED_TRACE(id);
    VmConfig r = Config(id, absl::StrCat(id, ".sock"));
    r.restore_from = dir;
    ASSERT_OK_AND_ASSIGN(Vm* restored, factory.Boot(r));
    auto* rch = dynamic_cast<CloudHypervisorVm*>(restored);
    ASSERT_NE(rch, nullptr);
    ASSERT_OK_AND_ASSIGN(ChVmState rstate, rch->State());
    EXPECT_EQ(rstate, ChVmState::kRunning);
    const std::string work = restored->config().work_dir;
    EXPECT_THAT(FileLines(work + "/requests.log"),
                ElementsAre(absl::StrCat("RESTORE file://", work, "/restore"),
                            "GET /api/v1/vmm.ping", "GET /api/v1/vm.info", "PUT /api/v1/vm.resume",
                            "GET /api/v1/vm.info"));
    // Its own restore dir: config.json names this VM's serial log and vsock socket.
    nlohmann::json rewritten = nlohmann::json::parse(SlurpFile(work + "/restore/config.json"));
    EXPECT_EQ(rewritten["vsock"]["socket"], r.channel->host_socket_path);
    EXPECT_EQ(rewritten["serial"]["file"], restored->serial_log_path());
    // The host reconnects: the old connection did not survive, a new CONNECT is answered.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<agent::FdStream> s,
                         ConnectChannel(*restored, absl::Seconds(5)));
    EXPECT_EQ(EchoOverChannel(*s, "after the restore"), "after the restore");
  }
  factory.KillAll();
  EXPECT_EQ(SlurpFile(dir + "/config.json"), config_before) << "a restore wrote to the snapshot";
  EXPECT_EQ(SlurpFile(dir + "/state.json"), state_before) << "a restore wrote to the snapshot";
}

TEST_F(ChSnapshotTest, RestoreOfABadSnapshotIsAClearError) {
  const std::string good = TestTmpRoot() + "/snapshot-good";
  const VmConfig source = MakeSnapshot("snap-bad-source", good);
  ASSERT_TRUE(PathExists(good + "/memory-ranges"));
  auto variant = [&](const std::string& name) {
    const std::string d = TestTmpRoot() + "/snapshot-" + name;
    EXPECT_EQ(system(absl::StrCat("rm -rf '", d, "' && cp -a '", good, "' '", d, "'").c_str()), 0);
    return d;
  };
  auto restore = [&](const std::string& dir, const std::string& id) {
    VmConfig r = Config(id, id + ".sock");
    return vmm_->Restore(r, dir).status();
  };
  EXPECT_THAT(restore(TestTmpRoot() + "/no-such-snapshot", "bad-missing-dir"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-snapshot: missing")));
  {
    const std::string d = variant("no-state");
    unlink((d + "/state.json").c_str());
    EXPECT_THAT(restore(d, "bad-no-state"),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("no state.json")));
  }
  {
    const std::string d = variant("corrupt-config");
    std::ofstream(d + "/config.json") << "{\"cpus\": ";
    EXPECT_THAT(restore(d, "bad-config"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(d + "/config.json: not JSON")));
  }
  {
    const std::string d = variant("corrupt-state");
    std::ofstream(d + "/state.json") << "\x01garbage";
    EXPECT_THAT(restore(d, "bad-state"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(d + "/state.json: not a JSON")));
  }
  {
    const std::string d = variant("truncated-ram");
    ASSERT_EQ(truncate((d + "/memory-ranges").c_str(), 4096), 0);
    EXPECT_THAT(restore(d, "bad-ram"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(d + "/memory-ranges: 4096 bytes, shorter than the 268435456")));
  }
  {
    VmConfig bigger = Config("bad-memory", "bad-memory.sock");
    bigger.memory_mib = 512;
    EXPECT_THAT(vmm_->Restore(bigger, good).status(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("a restore cannot change them")));
  }
  // CH's own refusal, after kiln's checks: a disk another process holds a write lock on. CH
  // exits with its error chain; the error says where it came from and leaves nothing behind.
  {
    const std::string disk = TestTmpRoot() + "/locked-disk.img";
    std::ofstream(disk) << std::string(4096, '\0');
    VmConfig c = Config("snap-disk-source", "snap-disk-source.sock");
    c.disks.push_back(Disk{disk, /*read_only=*/false});
    const std::string d = TestTmpRoot() + "/snapshot-disk";
    ASSERT_EQ(mkdir(d.c_str(), 0700), 0);
    {
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
      ASSERT_OK(SaveChSnapshot(*dynamic_cast<CloudHypervisorVm*>(vm.get()), d).status());
    }
    const int fd = open(disk.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    ASSERT_EQ(fcntl(fd, F_OFD_SETLK, &fl), 0);
    VmConfig r = Config("bad-locked", "bad-locked.sock");
    r.disks = c.disks;
    absl::Status s = vmm_->Restore(r, d).status();
    close(fd);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition,
                            HasSubstr(absl::StrCat("restoring cloud-hypervisor from ", d, ": "))));
    EXPECT_THAT(s.message(), HasSubstr("0: Error restoring VM"));
    EXPECT_THAT(s.message(), HasSubstr("The file is already locked"));
    EXPECT_FALSE(PathExists(r.channel->host_socket_path)) << "vsock socket left behind";
    EXPECT_FALSE(PathExists(r.work_dir + "/ch-api.sock"));
  }
  // The fake's own restore errors (CH's chain, exit 1), reached without kiln's checks.
  {
    const std::string d = variant("cli-state");
    std::ofstream(d + "/state.json") << "nope";
    const std::string err = TestTmpRoot() + "/cli-restore.err";
    const std::string cmd = absl::StrCat("'", ChFakeBinaryPath(),
                                         "' --api-socket '", sock_dir_, "/cli.sock' --restore "
                                         "source_url=file://", d, " 2>'", err, "'");
    const int rc = system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(rc));
    EXPECT_EQ(WEXITSTATUS(rc), 1);
    EXPECT_THAT(SlurpFile(err), HasSubstr("  0: Error restoring VM\n  1: The VM could not be "
                                      "restored\n  2: Failed to receive migratable component "
                                      "snapshot: " + d + "/state.json"));
    const std::string cmd2 = absl::StrCat("'", ChFakeBinaryPath(),
                                          "' --api-socket '", sock_dir_, "/cli2.sock' --restore "
                                          "source_url=file://", TestTmpRoot(), "/nothing-here 2>'", err, "'");
    EXPECT_EQ(WEXITSTATUS(system(cmd2.c_str())), 1);
    EXPECT_THAT(SlurpFile(err), HasSubstr("Destination is not a directory"));
  }
  (void)source;
}

TEST_F(ChSnapshotTest, SnapshotRefusals) {
  const std::string dir = TestTmpRoot() + "/snapshot-refusals";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  VmConfig c = Config("snap-refusals", "");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
  auto* ch = dynamic_cast<CloudHypervisorVm*>(vm.get());
  ASSERT_NE(ch, nullptr);
  EXPECT_THAT(SaveChSnapshot(*ch, "relative/dir").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an absolute path")));
  EXPECT_THAT(SaveChSnapshot(*ch, TestTmpRoot() + "/no-such-dir").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("CH does not create it")));
  // Only a paused VM is snapshotted, only a running one paused, only a paused one resumed.
  ASSERT_OK_AND_ASSIGN(std::string body, ChSnapshotRequestBody(dir));
  EXPECT_THAT(ch->api().Call("PUT", "vm.snapshot", body).status(),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("HTTP 500: Error from API: The VM could not be snapshotted: "
                                 "Failed to snapshot migratable component: Trying to snapshot "
                                 "while VM is running")));
  EXPECT_THAT(ch->api().Call("PUT", "vm.resume").status(),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("The VM could not resume: Invalid VM state transition: Running "
                                 "to Running")));
  ASSERT_OK(ch->api().Call("PUT", "vm.pause").status());
  EXPECT_THAT(SaveChSnapshot(*ch, dir).status(),  // its vm.pause meets a paused VM
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("The VM could not pause: Invalid VM state transition: Paused "
                                 "to Paused")));
  EXPECT_FALSE(PathExists(dir + "/config.json")) << "a refused save wrote files";
  // A paused VM's snapshot into something that is not a directory: CH's own error.
  const std::string file = TestTmpRoot() + "/a-file";
  std::ofstream(file) << "x";
  ASSERT_OK_AND_ASSIGN(std::string to_file, ChSnapshotRequestBody(file));
  EXPECT_THAT(ch->api().Call("PUT", "vm.snapshot", to_file).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("Destination is not a directory")));
  ASSERT_OK(ch->api().Call("PUT", "vm.resume").status());
  ASSERT_OK_AND_ASSIGN(ChVmState state, ch->State());
  EXPECT_EQ(state, ChVmState::kRunning);
  // A VM that has exited is refused before any request.
  vm->Kill();
  EXPECT_THAT(SaveChSnapshot(*ch, dir).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("has exited")));
  EXPECT_THAT(FileLines(c.work_dir + "/requests.log"),
              Contains("PUT /api/v1/vm.pause"));
}

}  // namespace
}  // namespace kiln::harness
