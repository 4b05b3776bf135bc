// File: harness/scenarios/cgroup_vm_test.cc
// VM tests (tag `vm`): each case boots the real kernel + initrd + test root and runs one
// cgroup scenario of harness/scenarios/scenarios.h, on the backend --vmm chooses (harness/vmm/vmm_select.h):
// //harness/scenarios:cgroup_vm_test runs QEMU (TCG here, KVM where usable); //harness/scenarios:cgroup_ch_vm_test
// runs Cloud Hypervisor, and is target_compatible_with the host's cloud-hypervisor binary and
// usable KVM (@kiln_host), so elsewhere `bazel test //...` reports it SKIPPED with the reason.
// The serial and VMM logs of every VM are kept under $TEST_UNDECLARED_OUTPUTS_DIR/<vm-id>/.
//
// Artifacts come from flags (set by the BUILD target with $(rootpath ...)):
//   --kernel=<vmlinux> --initrd=<initrd> --root_disk=<ext4>  [--machine=q35|microvm]
//   [--accel=auto|kvm|tcg] [--vmm=qemu|cloud-hypervisor|auto] [--ch_binary=PATH]
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/vmm/runner.h"
#include "harness/scenarios/scenarios.h"
#include "harness/vmm/vm_test_support.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel (PVH vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd");
ABSL_FLAG(std::string, root_disk, "", "ext4 test root disk");
ABSL_FLAG(std::string, machine, "q35", "QEMU machine: q35 or microvm");
ABSL_FLAG(std::string, accel, "auto", "accel: auto, kvm or tcg");
ABSL_FLAG(std::string, vmm, "qemu", "VMM backend: qemu, cloud-hypervisor or auto");
ABSL_FLAG(std::string, ch_binary, "cloud-hypervisor", "Cloud Hypervisor executable");

namespace kiln::harness {
namespace {

class CgroupVmTest : public ::testing::TestWithParam<Scenario> {
 protected:
  static void SetUpTestSuite() {
    artifacts_ = new Artifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                               absl::GetFlag(FLAGS_root_disk)};
    setup_error_ = new std::string;
    if (absl::Status s = ValidateArtifacts(*artifacts_); !s.ok()) {
      *setup_error_ = s.ToString();
      return;
    }
    absl::StatusOr<SelectedVmm> vmm = MakeTestVmm(
        {.vmm = absl::GetFlag(FLAGS_vmm), .ch_binary = absl::GetFlag(FLAGS_ch_binary),
         .machine = absl::GetFlag(FLAGS_machine), .accel = absl::GetFlag(FLAGS_accel)},
        ProbeArtifacts{artifacts_->kernel, artifacts_->initrd});
    if (!vmm.ok()) {
      *setup_error_ = vmm.status().ToString();  // e.g. CH requested without KVM: fail fast
      return;
    }
    vmm_ = vmm->vmm.release();
  }

  static void TearDownTestSuite() {
    delete vmm_;
    vmm_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(*setup_error_, "") << "cannot set up the VM tests";
    factory_ = std::make_unique<VmFactory>(*vmm_, TestTmpRoot() + "/vms", OutputDirFromEnv());
  }

  // The factory kills every VM it booted, on success and on failure alike.
  void TearDown() override { factory_.reset(); }

  static Artifacts* artifacts_;
  static Vmm* vmm_;
  static std::string* setup_error_;
  std::unique_ptr<VmFactory> factory_;
};

Artifacts* CgroupVmTest::artifacts_ = nullptr;
Vmm* CgroupVmTest::vmm_ = nullptr;
std::string* CgroupVmTest::setup_error_ = nullptr;

TEST_P(CgroupVmTest, Scenario) {
  const Scenario& scenario = GetParam();
  ScenarioOutcome o = RunScenario(*factory_, scenario, *artifacts_);
  std::cerr << vmm_->Name() << " " << scenario.name << ": " << (o.status.ok() ? "PASS" : "FAIL")
            << " in " << absl::ToInt64Milliseconds(o.duration) << " ms, attempts " << o.attempts
            << (o.retry_reason.empty() ? "" : " (retried after: " + o.retry_reason + ")")
            << ", peak RSS " << (o.vmm_peak_rss_bytes >> 20) << " MiB, logs " << o.log_dir
            << "\n";
  EXPECT_TRUE(o.status.ok()) << o.status.message();
  if (o.status.ok()) std::cerr << "  " << o.summary << "\n";
}

INSTANTIATE_TEST_SUITE_P(Cgroup, CgroupVmTest, ::testing::ValuesIn(CgroupScenarios()),
                         ParamName());

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) { return kiln::harness::VmTestMain(argc, argv); }
