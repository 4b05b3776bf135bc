// File: harness/scenarios/agent_vsock_vm_test.cc
// VM test (tag `vm`): the agent-vsock scenario (harness/scenarios/scenarios.h). A real builder VM (kernel +
// initrd + builder disk) runs kiln-vsock-check, which starts the agent on AF_VSOCK (its Cloud
// Hypervisor channel, `--channel=vsock:1024`) and talks to it through VMADDR_CID_LOCAL
// (vsock_loopback): Hello/Ready, Ping/Pong, then the agent exits. The guest half of the CH
// channel is thereby proven on a real kernel here, where no CH exists; the host half (hybrid
// vsock) is proven against fakes (channel_test, builder_client_test).
//
// Flags (set by the BUILD target): --kernel --initrd --builder_disk [--accel] [--vmm]
// [--ch_binary]. Serial and VMM logs: $TEST_UNDECLARED_OUTPUTS_DIR/agent-vsock/.
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "gtest/gtest.h"
#include "harness/vmm/runner.h"
#include "harness/scenarios/scenarios.h"
#include "harness/vmm/vm_test_support.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel (PVH vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd");
ABSL_FLAG(std::string, builder_disk, "", "ext4 builder root disk with the agent");
ABSL_FLAG(std::string, accel, "auto", "QEMU accel: auto, kvm or tcg");
ABSL_FLAG(std::string, vmm, "qemu", "VMM backend: qemu, cloud-hypervisor or auto");
ABSL_FLAG(std::string, ch_binary, "cloud-hypervisor", "Cloud Hypervisor executable");

namespace kiln::harness {
namespace {

TEST(AgentVsockVmTest, AgentServesASessionOnAfVsock) {
  const Artifacts artifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                            absl::GetFlag(FLAGS_builder_disk)};
  ASSERT_TRUE(ValidateArtifacts(artifacts).ok()) << ValidateArtifacts(artifacts);
  absl::StatusOr<SelectedVmm> vmm =
      MakeTestVmm({.vmm = absl::GetFlag(FLAGS_vmm),
                   .ch_binary = absl::GetFlag(FLAGS_ch_binary),
                   .accel = absl::GetFlag(FLAGS_accel)},
                  ProbeArtifacts{artifacts.kernel, artifacts.initrd});
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  VmFactory factory(*vmm->vmm, TestTmpRoot() + "/vms", OutputDirFromEnv());
  ScenarioVmOptions options;
  options.memory_mib = 1024;  // the builder root's overlay lives in guest RAM
  ScenarioOutcome o = RunScenario(factory, AgentVsockScenario(), artifacts, options);
  std::cerr << vmm->vmm->Name() << " agent-vsock: " << (o.status.ok() ? "PASS" : "FAIL")
            << " in " << absl::ToInt64Milliseconds(o.duration) << " ms, attempts " << o.attempts
            << ", logs " << o.log_dir << "\n";
  ASSERT_TRUE(o.status.ok()) << o.status.message();
  std::cerr << "  " << o.summary << "\n";
}

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) { return kiln::harness::VmTestMain(argc, argv); }
