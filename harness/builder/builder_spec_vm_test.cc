// File: harness/builder/builder_spec_vm_test.cc
// VM test (tag `vm`): builder scenario folders under harness/builder/scenarios/ (spec.json +
// Dockerfile; harness/builder/builder_spec.h), one gtest case per folder, run the way //harness:build
// runs a command (Debian 13 builder, the spec's builder mode and cgroup) and checked by the one
// generic checker (CheckScenario). A refused scenario boots no VM. Adding a scenario is adding
// a folder: no C++. harness/builder/builder_scenarios.bzl makes one test target per folder and VMM
// from this file (--scenario=DIR, --vmm); without --scenario it runs every folder.
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "harness/builder/build_command.h"
#include "harness/builder/builder_spec.h"
#include "harness/vmm/runner.h"
#include "harness/vmm/vm_test_support.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel (PVH vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd");
ABSL_FLAG(std::string, builder_disk, "", "ext4 builder root disk with the agent");
ABSL_FLAG(std::string, busybox_image, "", "docker-archive of kiln-busybox:1");
ABSL_FLAG(std::string, examples_readme, "", "unused here (shared args)");
ABSL_FLAG(std::string, accel, "auto", "QEMU accel: auto, kvm or tcg");
ABSL_FLAG(std::string, scenario, "", "one scenario folder (default: every folder)");
ABSL_FLAG(std::string, vmm, "qemu", "VMM backend: qemu, cloud-hypervisor or auto");
ABSL_FLAG(std::string, ch_binary, "cloud-hypervisor", "Cloud Hypervisor executable");

namespace kiln::harness {
namespace {

constexpr char kScenarioRoot[] = "harness/builder/scenarios";

// Dirs(): the folders to run: --scenario's, or every folder (main fills it from argv before
// gtest expands the instantiation; absl flags are parsed later, in VmTestMain).
std::vector<std::string>& Dirs() {
  static auto* dirs = new std::vector<std::string>;
  return *dirs;
}

std::string NameOf(const ::testing::TestParamInfo<std::string>& info) {
  return GtestNameOf(info.param.substr(info.param.rfind('/') + 1));
}

class BuilderSpecVmTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BuilderSpecVmTest, Scenario) {
  absl::StatusOr<ScenarioSpec> spec = LoadScenario(GetParam());
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<ScenarioSecrets> secrets = MakeScenarioSecrets(*spec);
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  std::cerr << "scenario " << spec->name << ": " << spec->title << "\n";
  absl::StatusOr<SelectedVmm> vmm =
      MakeTestVmm({.vmm = absl::GetFlag(FLAGS_vmm),
                   .ch_binary = absl::GetFlag(FLAGS_ch_binary),
                   .accel = absl::GetFlag(FLAGS_accel)},
                  ProbeArtifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd)});
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  const std::string work = absl::StrCat(TestTmpRoot(), "/", spec->name);
  VmFactory factory(*vmm->vmm, work + "/vms", OutputDirFromEnv());
  BuildRunOptions run;
  run.artifacts = {absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                   absl::GetFlag(FLAGS_builder_disk)};
  run.work_dir = work + "/work";
  run.vm.deadline = absl::Minutes(8);
  run.vm.stall_timeout = absl::Minutes(4);
  run.vm.on_progress = [](absl::string_view l) { std::cerr << "progress: " << l << "\n"; };
  run.progress = run.vm.on_progress;
  run.on_log = [](const agent::Log& l) { std::cerr << "log: " << l.text << "\n"; };
  ScenarioObservation o =
      RunBuilderScenario(factory, *spec, *secrets, run, absl::GetFlag(FLAGS_busybox_image));
  std::cerr << "observed: result " << o.result << ", exit " << o.exit_code << ", error \""
            << o.error.substr(0, 300) << "\", leaks [" << absl::StrJoin(o.leaks, "; ") << "]\n";
  const std::vector<std::string> failures = CheckScenario(*spec, *secrets, o);
  for (const std::string& f : failures) ADD_FAILURE() << spec->name << ": " << f;
}

INSTANTIATE_TEST_SUITE_P(Folders, BuilderSpecVmTest, ::testing::ValuesIn(Dirs()), NameOf);

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) {
  // The cases are the folders: fill them before gtest expands the instantiation (at
  // InitGoogleTest, inside VmTestMain).
  std::string one;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (absl::ConsumePrefix(&a, "--scenario=")) one = std::string(a);
  }
  if (!one.empty()) {
    kiln::harness::Dirs().push_back(one);
  } else if (absl::StatusOr<std::vector<std::string>> d =
                 kiln::harness::ListScenarioDirs(kiln::harness::kScenarioRoot);
             d.ok()) {
    kiln::harness::Dirs() = *d;
  }
  return kiln::harness::VmTestMain(argc, argv);
}
