// File: harness/builder_vm_test.cc
// VM tests (tag `vm`): each case boots a real builder VM (kernel + initrd + builder disk with
// the agent, dockerd/BuildKit, containerd, runc) and runs one group of
// harness/builder_scenarios.h: real BuildKit builds with secrets, sent over the agent channel,
// and the rootless/rootful x cgroup rw/ro/off matrix, one VM per row. The default disk is the
// Debian 13 builder (//images/rootfs:builder_trixie_disk) and the default mode rootless
// (production's); --builder_mode=rootful with the Debian 12 disk is
// //harness:builder_bookworm_vm_test (manual; reference and secrets groups only: the matrix is
// Debian 13's).
// The backend comes from --vmm (harness/vmm_select.h): //harness:builder_vm_test runs QEMU
// (TCG here; virtio-serial channel), //harness:builder_ch_vm_test runs Cloud Hypervisor (KVM
// hosts only; hybrid vsock channel, the agent on AF_VSOCK). The builder client picks the
// channel from the backend, so the scenarios are the same. Every VM's serial log and VMM log
// are kept under $TEST_UNDECLARED_OUTPUTS_DIR/<vm-id>/.
//
// Artifacts come from flags (set by the BUILD target with $(rootpath ...)):
//   --kernel=<vmlinux> --initrd=<initrd> --builder_disk=<ext4> --busybox_image=<tar>
//   --examples_readme=<agent/runner/examples/README.md>  [--accel=auto|kvm|tcg]
//   [--vmm=qemu|cloud-hypervisor|auto] [--ch_binary=PATH]
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "harness/builder_scenarios.h"
#include "harness/qemu.h"
#include "harness/runner.h"
#include "harness/vm_test_support.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel (PVH vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd");
ABSL_FLAG(std::string, builder_disk, "", "ext4 builder root disk with the agent");
ABSL_FLAG(std::string, busybox_image, "", "docker-archive of kiln-busybox:1");
ABSL_FLAG(std::string, examples_readme, "", "agent/runner/examples/README.md (locates the dir)");
ABSL_FLAG(std::string, accel, "auto", "QEMU accel: auto, kvm or tcg");
ABSL_FLAG(std::string, vmm, "qemu", "VMM backend: qemu, cloud-hypervisor or auto");
ABSL_FLAG(std::string, ch_binary, "cloud-hypervisor", "Cloud Hypervisor executable");
ABSL_FLAG(int, memory_mib, 1024, "builder VM memory, MiB");
ABSL_FLAG(std::string, agent_flags, "", "extra agent flags, e.g. --prewarm=false (A/B runs)");
ABSL_FLAG(std::string, builder_mode, "rootless",
          "the agent's --builder_mode for the groups without their own (reference, secrets): "
          "rootless or rootful");

namespace kiln::harness {
namespace {

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

class BuilderVmTest : public ::testing::TestWithParam<BuilderGroup> {
 protected:
  static void SetUpTestSuite() {
    setup_error_ = new std::string;
    absl::StatusOr<SelectedVmm> vmm =
        MakeTestVmm({.vmm = absl::GetFlag(FLAGS_vmm),
                     .ch_binary = absl::GetFlag(FLAGS_ch_binary),
                     .accel = absl::GetFlag(FLAGS_accel)},
                    ProbeArtifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd)});
    if (!vmm.ok()) {
      *setup_error_ = vmm.status().ToString();  // e.g. CH requested without KVM: fail fast
      return;
    }
    vmm_ = vmm->vmm.release();
    std::cerr << "harness: agent channel "
              << ChannelTransportName(vmm_->channel_transport()) << "\n";
  }

  static void TearDownTestSuite() {
    delete vmm_;
    vmm_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(*setup_error_, "") << "cannot set up the VM tests";
    const std::string root = TestTmpRoot();
    factory_ = std::make_unique<VmFactory>(*vmm_, root + "/vms", OutputDirFromEnv());
    in_.artifacts = {absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                     absl::GetFlag(FLAGS_builder_disk)};
    in_.busybox_image = absl::GetFlag(FLAGS_busybox_image);
    in_.examples_dir = Dirname(absl::GetFlag(FLAGS_examples_readme));
    in_.work_dir = root;
    in_.vm.memory_mib = absl::GetFlag(FLAGS_memory_mib);
    in_.vm.memory_flag = "--memory_mib";
    in_.vm.agent_flags = absl::GetFlag(FLAGS_agent_flags);
    in_.vm.builder_mode = absl::GetFlag(FLAGS_builder_mode);
    // Sized for 2 vCPUs under TCG on a loaded 2-core host: the rootless daemon start alone
    // took 11-17 s (ROOTLESS.md), a matrix row runs two builds.
    in_.vm.deadline = absl::Seconds(420);
    ASSERT_TRUE(ValidateBuilderVmOptions(in_.vm).ok()) << ValidateBuilderVmOptions(in_.vm);
    ASSERT_TRUE(ValidateBuilderScenarioInputs(in_).ok())
        << ValidateBuilderScenarioInputs(in_).ToString();
  }

  void TearDown() override { factory_.reset(); }

  static Vmm* vmm_;
  static std::string* setup_error_;
  std::unique_ptr<VmFactory> factory_;
  BuilderScenarioInputs in_;
};

Vmm* BuilderVmTest::vmm_ = nullptr;
std::string* BuilderVmTest::setup_error_ = nullptr;

TEST_P(BuilderVmTest, Group) {
  const BuilderGroup& group = GetParam();
  BuilderGroupOutcome g = RunBuilderGroup(*factory_, group, in_);
  PrintBuilderGroup(g, std::cerr);
  // A lockup is cut off and retried once (counted, printed above); the retry must pass.
  ASSERT_FALSE(g.scenarios.empty());
  for (const ScenarioResult& s : g.scenarios) {
    EXPECT_TRUE(s.status.ok()) << s.name << ": " << s.summary;
  }
  // Each scenario the group promises was checked.
  for (const std::string& name : group.scenario_names) {
    bool seen = false;
    for (const ScenarioResult& s : g.scenarios) seen |= s.name == name;
    EXPECT_TRUE(seen) << "scenario " << name << " was not checked";
  }
}

INSTANTIATE_TEST_SUITE_P(Builder, BuilderVmTest, ::testing::ValuesIn(BuilderGroups()),
                         ParamName());

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) { return kiln::harness::VmTestMain(argc, argv); }
