// File: harness/cloud_hypervisor_vm_test.cc
// VM tests (tags `vm`, `requires-kvm`): the cgroup scenarios of harness/scenarios.h on the
// backend chosen by --vmm (harness/vmm_select.h). The BUILD target //harness:cgroup_ch_vm_test
// runs them under Cloud Hypervisor; it is target_compatible_with the host's Cloud Hypervisor
// binary and usable KVM (@kiln_host), so elsewhere `bazel test` reports it SKIPPED.
//
// Flags: --kernel --initrd --root_disk (set by the BUILD target), --vmm=auto|cloud-hypervisor|qemu,
// --ch_binary=PATH. Serial and VMM logs of every VM: $TEST_UNDECLARED_OUTPUTS_DIR/<vm-id>/.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "gtest/gtest.h"
#include "harness/runner.h"
#include "harness/scenarios.h"
#include "harness/vmm_select.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel (PVH vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd");
ABSL_FLAG(std::string, root_disk, "", "ext4 test root disk");
ABSL_FLAG(std::string, vmm, "cloud-hypervisor", "VMM backend: auto, cloud-hypervisor or qemu");
ABSL_FLAG(std::string, ch_binary, "cloud-hypervisor", "Cloud Hypervisor executable");

namespace kiln::harness {
namespace {

class BackendVmTest : public ::testing::TestWithParam<Scenario> {
 protected:
  static void SetUpTestSuite() {
    artifacts_ = new Artifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                               absl::GetFlag(FLAGS_root_disk)};
    setup_error_ = new std::string;
    absl::StatusOr<VmmKind> kind = ParseVmmKind(absl::GetFlag(FLAGS_vmm));
    if (!kind.ok()) {
      *setup_error_ = kind.status().ToString();
      return;
    }
    if (absl::Status s = ValidateArtifacts(*artifacts_); !s.ok()) {
      *setup_error_ = s.ToString();
      return;
    }
    VmmSelectOptions select;
    select.kind = *kind;
    select.ch_binary = absl::GetFlag(FLAGS_ch_binary);
    select.probe = ProbeArtifacts{artifacts_->kernel, artifacts_->initrd};
    absl::StatusOr<SelectedVmm> vmm = MakeVmm(select);
    if (!vmm.ok()) {
      *setup_error_ = std::string(vmm.status().message());
      return;
    }
    vmm_ = vmm->vmm.release();
    std::cerr << "harness: " << vmm_->Describe() << " (" << vmm->reason << ")\n";
  }

  static void TearDownTestSuite() {
    delete vmm_;
    vmm_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(*setup_error_, "") << "cannot set up the VM tests";
    const char* tmp = std::getenv("TEST_TMPDIR");
    factory_ = std::make_unique<VmFactory>(*vmm_, std::string(tmp ? tmp : "/tmp") + "/vms",
                                           OutputDirFromEnv());
  }

  void TearDown() override { factory_.reset(); }

  static Artifacts* artifacts_;
  static Vmm* vmm_;
  static std::string* setup_error_;
  std::unique_ptr<VmFactory> factory_;
};

Artifacts* BackendVmTest::artifacts_ = nullptr;
Vmm* BackendVmTest::vmm_ = nullptr;
std::string* BackendVmTest::setup_error_ = nullptr;

TEST_P(BackendVmTest, Scenario) {
  const Scenario& scenario = GetParam();
  ScenarioOutcome o = RunScenario(*factory_, scenario, *artifacts_);
  std::cerr << vmm_->Name() << " " << scenario.name << ": " << (o.status.ok() ? "PASS" : "FAIL")
            << " in " << absl::ToInt64Milliseconds(o.duration) << " ms, attempts " << o.attempts
            << ", peak RSS " << (o.vmm_peak_rss_bytes >> 20) << " MiB, logs " << o.log_dir
            << "\n";
  EXPECT_TRUE(o.status.ok()) << o.status.message();
}

INSTANTIATE_TEST_SUITE_P(Cgroup, BackendVmTest, ::testing::ValuesIn(CgroupScenarios()),
                         [](const ::testing::TestParamInfo<Scenario>& info) {
                           std::string n = info.param.name;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  absl::ParseCommandLine(argc, argv);
  return RUN_ALL_TESTS();
}
