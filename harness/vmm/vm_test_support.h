// File: harness/vmm/vm_test_support.h
// -----------------------------------------------------------------------------
//
// What every VM test (cgroup_vm_test, builder_vm_test, keep_vm_test and their Cloud
// Hypervisor twins) sets up the same way: the backend from the test's flags, and the temp
// root its VMs' work dirs go below. One place, so that a new VM test is a few lines and a
// backend flag means the same in all of them.
//
// Example (in a gtest SetUpTestSuite):
//
//   absl::StatusOr<SelectedVmm> vmm = MakeTestVmm({.vmm = absl::GetFlag(FLAGS_vmm),
//                                                  .ch_binary = absl::GetFlag(FLAGS_ch_binary),
//                                                  .accel = absl::GetFlag(FLAGS_accel)},
//                                                 ProbeArtifacts{kernel, initrd});
//   VmFactory factory(*vmm->vmm, TestTmpRoot() + "/vms", OutputDirFromEnv());
#ifndef KILN_HARNESS_VM_TEST_SUPPORT_H_
#define KILN_HARNESS_VM_TEST_SUPPORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/vmm_select.h"

namespace kiln::harness {

// TestVmmFlags: a VM test's backend flags, as text (the test's absl flags).
struct TestVmmFlags {
  std::string vmm = "qemu";                   // qemu | cloud-hypervisor | auto
  std::string ch_binary = "cloud-hypervisor";  // Cloud Hypervisor executable
  std::string machine = "q35";                // QEMU machine: q35 | microvm
  std::string accel = "auto";                 // QEMU accel: auto | kvm | tcg
};

// MakeTestVmm(flags, probe): parses the flags and makes the backend (MakeVmm; `probe` is
// QEMU's KVM probe boot), and prints one line "harness: <Describe()> (<why chosen>)" to stderr.
// Errors: InvalidArgument naming a bad flag value; MakeVmm's (FailedPrecondition: the
// backend cannot run here, with what is missing; NotFound: its binary does not run).
absl::StatusOr<SelectedVmm> MakeTestVmm(const TestVmmFlags& flags, const ProbeArtifacts& probe);

// TestTmpRoot(): $TEST_TMPDIR, or /tmp outside Bazel.
std::string TestTmpRoot();

// GtestNameOf(name): a scenario or group name as a gtest parameter name ('-' -> '_'). Pure.
std::string GtestNameOf(std::string name);

// ParamName: INSTANTIATE_TEST_SUITE_P's name generator for params with a `name` field.
struct ParamName {
  template <typename T>
  std::string operator()(const ::testing::TestParamInfo<T>& info) const {
    return GtestNameOf(info.param.name);
  }
};

// VmTestMain(argc, argv): main() of a VM test: gtest's flags, then the test's absl flags
// (--kernel, --vmm, ...), then RUN_ALL_TESTS().
int VmTestMain(int argc, char** argv);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_VM_TEST_SUPPORT_H_
