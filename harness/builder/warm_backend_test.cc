// File: harness/builder/warm_backend_test.cc
// The warm builders' backend seam (harness/builder/warm_backend.h) for Cloud Hypervisor, with
// real processes and the fake `cloud-hypervisor` (harness/vmm/testdata/ch_fake_cloud_hypervisor.cc;
// it has no guest agent, its guest echoes the vsock channel):
//
//   TheKeyNamesChItsVersionAndItsVmConfig
//       the snapshot key of a builder config on CH names the VMM, its version and the vm.create
//       VmConfig (devices, vsock, memory) with per-VM paths blanked; memory, vCPUs, cmdline and
//       the VMM version each change the key; the same config on two VMs is the same key.
//   SaveIntoTheCacheThenRestoreThroughTheFactory
//       the calls BootWarm makes, in its order: the key, SnapshotCache::GetOrMakeDir whose maker
//       boots a VM through the VmFactory (PrepareSave), talks over its channel, closes it and
//       Saves into the entry; then two VMs restored through the factory (PrepareRestore:
//       VmConfig::restore_from), Resume, and the host reconnects to each one's vsock socket.
//       The cached entry holds CH's three files + key.txt, 0600, unchanged by the restores.
//   BootForRunTriesTheChSnapshotAndFallsBackCold
//       --warm=on and --warm=auto with CH go through BootWarm (no "QEMU only"): a snapshot VM
//       "<id>-snapshot" is booted; the fake has no agent (its echo is not a Ready), so the warm
//       start fails and the builder boots cold, BuilderRun::warm saying why.
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/builder/builder_client.h"
#include "harness/builder/warm_backend.h"
#include "harness/vmm/ch_fake_testing.h"
#include "harness/vmm/channel.h"
#include "harness/vmm/cloud_hypervisor.h"
#include "harness/vmm/runner.h"
#include "harness/vmm/snapshot.h"
#include "harness/vmm/vm_test_support.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class ChWarmTest : public ChFakeVmmTest {
 protected:
  void SetUp() override {
    ChFakeVmmTest::SetUp();
    if (HasFatalFailure()) return;
    root_ = TestTmpRoot();
    for (const char* f : {"vmlinux", "initrd", "disk.img"}) {
      std::ofstream(root_ + "/" + f) << "fake " << f;
    }
    artifacts_ = {root_ + "/vmlinux", root_ + "/initrd", root_ + "/disk.img"};
    options_.transport = ChannelTransport::kHybridVsock;  // what BootWarm sets for CH
    options_.memory_mib = 256;
    options_.warm = WarmMode::kOn;
    options_.warm_daemon = false;
    options_.snapshot_dir = root_ + "/snapshots";
  }

  std::string root_;
  BuilderArtifacts artifacts_;
  BuilderVmOptions options_;
};

TEST_F(ChWarmTest, TheKeyNamesChItsVersionAndItsVmConfig) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WarmBackend> backend, MakeWarmBackend(*vmm_));
  EXPECT_EQ(backend->name(), "cloud-hypervisor");
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache, SnapshotCache::Open({.dir = options_.snapshot_dir}));
  ASSERT_OK_AND_ASSIGN(SnapshotKeyInputs in,
                       WarmSnapshotKeyInputs(cache, *backend, artifacts_, options_));
  EXPECT_EQ(in.vmm, "cloud-hypervisor");
  EXPECT_EQ(in.vmm_version, "v99.0.0-fake");
  EXPECT_EQ(in.memory_mib, 256);
  // The devices are CH's vm.create VmConfig, per-VM paths blanked.
  nlohmann::json devices = nlohmann::json::parse(in.devices);
  EXPECT_EQ(devices["memory"]["size"], int64_t{256} << 20);
  EXPECT_EQ(devices["cpus"]["boot_vcpus"], 2);
  EXPECT_EQ(devices["vsock"]["socket"], "/CHANNEL");
  EXPECT_EQ(devices["vsock"]["cid"], 3);
  EXPECT_EQ(devices["payload"]["kernel"], "/KERNEL");
  EXPECT_EQ(devices["disks"][0]["path"], "/DISK");
  EXPECT_EQ(devices["disks"][0]["readonly"], true);
  EXPECT_EQ(devices["serial"]["file"], "/WORK/serial.log");
  EXPECT_THAT(devices["payload"]["cmdline"].get<std::string>(), HasSubstr("vsock:1024"));
  const std::string text = SnapshotKeyText(in);
  EXPECT_THAT(text, HasSubstr("vmm=cloud-hypervisor\nvmm_version=v99.0.0-fake\n"));
  EXPECT_THAT(text, HasSubstr("devices={\""));
  EXPECT_THAT(text, Not(HasSubstr("ram=")));  // QEMU's RAM mode is no CH input
  const std::string key = SnapshotKey(in);

  // Another builder VM id and snapshot dir: the same key.
  BuilderVmOptions other_vm = options_;
  other_vm.id = "another-builder";
  ASSERT_OK_AND_ASSIGN(SnapshotKeyInputs same,
                       WarmSnapshotKeyInputs(cache, *backend, artifacts_, other_vm));
  EXPECT_EQ(SnapshotKey(same), key);
  // Memory, vCPUs, the agent's flags: each a different key.
  for (int i = 0; i < 3; ++i) {
    BuilderVmOptions o = options_;
    if (i == 0) o.memory_mib = 512;
    if (i == 1) o.vcpus = 1;
    if (i == 2) o.builder_mode = kBuilderModeRootful;
    ASSERT_OK_AND_ASSIGN(SnapshotKeyInputs changed,
                         WarmSnapshotKeyInputs(cache, *backend, artifacts_, o));
    EXPECT_NE(SnapshotKey(changed), key) << i;
  }
  // Another CH version: another key.
  SnapshotKeyInputs newer = in;
  newer.vmm_version = "v100.0";
  EXPECT_NE(SnapshotKey(newer), key);
}

TEST_F(ChWarmTest, SaveIntoTheCacheThenRestoreThroughTheFactory) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WarmBackend> backend, MakeWarmBackend(*vmm_));
  ASSERT_OK_AND_ASSIGN(SnapshotCache cache, SnapshotCache::Open({.dir = options_.snapshot_dir}));
  ASSERT_OK_AND_ASSIGN(SnapshotKeyInputs in,
                       WarmSnapshotKeyInputs(cache, *backend, artifacts_, options_));
  const std::string key = SnapshotKey(in);
  VmFactory factory(*vmm_, root_ + "/vms", "");
  auto config = [&](const std::string& id) {
    BuilderVmOptions o = options_;
    o.id = id;
    VmConfig c = BuilderVmConfig(o, artifacts_, absl::StrCat(sock_dir_, "/", id, ".sock"));
    c.cmdline += " fake.mode=run";
    return c;
  };
  int makes = 0;
  ASSERT_OK_AND_ASSIGN(
      SnapshotLease lease,
      cache.GetOrMakeDir(key, SnapshotKeyText(in), [&](const std::string& entry) -> absl::Status {
        ++makes;
        VmConfig c = config("warm-ch-snapshot");
        backend->PrepareSave(entry, sock_dir_, &c);
        absl::StatusOr<Vm*> vm = factory.Boot(c);
        if (!vm.ok()) return vm.status();
        {
          absl::StatusOr<std::unique_ptr<agent::FdStream>> s =
              ConnectChannel(**vm, absl::Seconds(5));
          if (!s.ok()) return s.status();
          EXPECT_EQ(EchoOverChannel(**s, "hello before the save"), "hello before the save");
        }  // the host closes the channel before the save
        absl::StatusOr<WarmSaveResult> saved = backend->Save(**vm, entry);
        if (!saved.ok()) return saved.status();
        EXPECT_GE(saved->bytes, uint64_t{256} << 20);
        EXPECT_THAT(saved->detail, HasSubstr("vm.snapshot"));
        (*vm)->Kill();
        return absl::OkStatus();
      }));
  EXPECT_TRUE(lease.made());
  EXPECT_EQ(makes, 1);
  for (const char* f : {"config.json", "state.json", "memory-ranges", "key.txt"}) {
    struct stat st;
    ASSERT_EQ(stat(absl::StrCat(lease.dir(), "/", f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600) << f;
  }
  const std::string state_before = SlurpFile(lease.dir() + "/state.json");
  for (const char* id : {"warm-ch-1", "warm-ch-2"}) {
    SCOPED_TRACE(id);
    VmConfig r = config(id);
    backend->PrepareRestore(lease.dir(), sock_dir_, &r);
    EXPECT_EQ(r.restore_from, lease.dir());
    ASSERT_OK_AND_ASSIGN(Vm* vm, factory.Boot(r));
    ASSERT_OK(backend->Resume(*vm, absl::Seconds(10), [vm] { return vm->Exited(); }).status());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<agent::FdStream> s, ConnectChannel(*vm, absl::Seconds(5)));
    EXPECT_EQ(EchoOverChannel(*s, absl::StrCat("hello ", id)), absl::StrCat("hello ", id));
  }
  // A second GetOrMakeDir finds it: nothing is made again.
  ASSERT_OK_AND_ASSIGN(SnapshotLease again,
                       cache.GetOrMakeDir(key, "x", [&](const std::string&) {
                         ++makes;
                         return absl::OkStatus();
                       }));
  EXPECT_FALSE(again.made());
  EXPECT_EQ(makes, 1);
  factory.KillAll();
  EXPECT_EQ(SlurpFile(lease.dir() + "/state.json"), state_before);
}

TEST_F(ChWarmTest, BootForRunTriesTheChSnapshotAndFallsBackCold) {
  VmFactory factory(*vmm_, root_ + "/vms-run", "");
  for (WarmMode mode : {WarmMode::kOn, WarmMode::kAuto}) {
    SCOPED_TRACE(WarmModeName(mode));
    BuilderVmOptions o = options_;
    o.id = absl::StrCat("warm-run-", WarmModeName(mode));
    o.warm = mode;
    o.ready_timeout = absl::Seconds(5);
    o.extra_cmdline += " fake.mode=run";
    BuilderRun run;
    absl::StatusOr<std::unique_ptr<BuilderVm>> vm =
        BuilderVm::BootForRun(factory, artifacts_, o, &run);
    ASSERT_OK(vm.status());
    EXPECT_THAT(run.warm, StartsWith("cold (fallback: "));
    EXPECT_THAT(run.warm, Not(HasSubstr("QEMU only")));
    EXPECT_EQ(run.snapshot_key.size(), 64u);
    // The snapshot VM was booted (and gone); the builder is a cold boot, no restore.
    struct stat st;
    EXPECT_EQ(stat(absl::StrCat(root_, "/vms-run/", o.id, "-snapshot").c_str(), &st), 0);
    EXPECT_EQ((*vm)->vm().config().id, o.id + "-cold");
    EXPECT_EQ((*vm)->vm().config().restore_from, "");
  }
}

}  // namespace
}  // namespace kiln::harness
