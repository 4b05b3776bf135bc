// File: harness/vmm/vm_test_support.cc
#include "harness/vmm/vm_test_support.h"

#include <cstdlib>
#include <iostream>

#include "absl/flags/parse.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {

absl::StatusOr<SelectedVmm> MakeTestVmm(const TestVmmFlags& flags, const ProbeArtifacts& probe) {
  VmmSelectOptions o;
  ASSIGN_OR_RETURN(o.kind, ParseVmmKind(flags.vmm));
  ASSIGN_OR_RETURN(o.qemu.machine, ParseMachine(flags.machine));
  ASSIGN_OR_RETURN(o.qemu.accel, ParseAccel(flags.accel));
  o.ch_binary = flags.ch_binary;
  o.probe = probe;
  ASSIGN_OR_RETURN(SelectedVmm vmm, MakeVmm(o));
  std::cerr << "harness: " << vmm.vmm->Describe() << " (" << vmm.reason << ")\n";
  return vmm;
}

std::string TestTmpRoot() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
}

std::string GtestNameOf(std::string name) {
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

int VmTestMain(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  absl::ParseCommandLine(argc, argv);
  return RUN_ALL_TESTS();
}

}  // namespace kiln::harness
