// File: harness/verify.cc
// //harness:verify: boots kiln's cgroup scenarios (harness/scenarios.h) in real VMs and prints
// a short report: kernel, VMM, machine, accel (and why), and each check with PASS/FAIL and its
// duration. Exit status 0 if every check passed, 1 if any failed, 2 on a usage/setup error.
//
//   bazel run //harness:verify
//   bazel run //harness:verify -- --scenarios=cgroup-rw,cgroup-off --machine=microvm
#include <stdlib.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "harness/qemu.h"
#include "harness/runner.h"
#include "harness/scenarios.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel, a PVH vmlinux (default: //images:vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd (default: //images:initrd)");
ABSL_FLAG(std::string, root_disk, "",
          "ext4 test root disk (default: //images/rootfs:testroot_disk)");
ABSL_FLAG(std::string, machine, "q35", "QEMU machine: q35 or microvm");
ABSL_FLAG(std::string, accel, "auto",
          "accel: auto (KVM only where vmx/svm, /dev/kvm and a probe boot work), kvm or tcg");
ABSL_FLAG(std::string, scenarios, "", "comma-separated scenario names (default: all)");
ABSL_FLAG(std::string, log_dir, "",
          "where VM work dirs and serial logs go (default: $TEST_UNDECLARED_OUTPUTS_DIR, else "
          "a new /tmp/kiln-verify-XXXXXX)");
ABSL_FLAG(int, vcpus, 2, "vCPUs per VM");
ABSL_FLAG(int, memory_mib, 512, "guest memory per VM, MiB");
ABSL_FLAG(int, deadline_s, 180, "deadline per VM, seconds");

namespace kiln::harness {
namespace {

int Main() {
  Artifacts artifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                      absl::GetFlag(FLAGS_root_disk)};
  if (absl::Status s = ValidateArtifacts(artifacts); !s.ok()) {
    std::cerr << "verify: " << s.message() << "\n(pass --kernel, --initrd, --root_disk; see --help)\n";
    return 2;
  }
  QemuOptions options;
  absl::StatusOr<Machine> machine = ParseMachine(absl::GetFlag(FLAGS_machine));
  absl::StatusOr<Accel> accel = ParseAccel(absl::GetFlag(FLAGS_accel));
  if (!machine.ok() || !accel.ok()) {
    std::cerr << "verify: " << (machine.ok() ? accel.status() : machine.status()).message() << "\n";
    return 2;
  }
  options.machine = *machine;
  options.accel = *accel;

  std::vector<Scenario> scenarios;
  if (absl::GetFlag(FLAGS_scenarios).empty()) {
    scenarios = CgroupScenarios();
  } else {
    for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_scenarios), ',', absl::SkipEmpty())) {
      absl::StatusOr<Scenario> s = FindScenario(name);
      if (!s.ok()) {
        std::cerr << "verify: " << s.status().message() << "\n";
        return 2;
      }
      scenarios.push_back(*s);
    }
  }

  std::string dir = absl::GetFlag(FLAGS_log_dir);
  if (dir.empty()) dir = OutputDirFromEnv();
  if (dir.empty()) {
    char tmpl[] = "/tmp/kiln-verify-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::perror("verify: mkdtemp");
      return 2;
    }
    dir = tmpl;
  }

  std::cerr << "verify: resolving accel (" << AccelName(options.accel) << ") ...\n";
  absl::StatusOr<std::unique_ptr<QemuVmm>> vmm =
      QemuVmm::Create(options, ProbeArtifacts{artifacts.kernel, artifacts.initrd});
  if (!vmm.ok()) {
    std::cerr << "verify: " << vmm.status().message() << "\n";
    return 2;
  }
  ScenarioVmOptions vm_options;
  vm_options.vcpus = absl::GetFlag(FLAGS_vcpus);
  vm_options.memory_mib = absl::GetFlag(FLAGS_memory_mib);
  vm_options.deadline = absl::Seconds(absl::GetFlag(FLAGS_deadline_s));

  VmFactory factory(**vmm, dir + "/work", dir + "/logs");
  std::vector<ScenarioOutcome> outcomes;
  for (size_t i = 0; i < scenarios.size(); ++i) {
    std::cerr << absl::StrFormat("verify: [%d/%d] booting %s ...\n", i + 1, scenarios.size(),
                                 scenarios[i].name);
    outcomes.push_back(RunScenario(factory, scenarios[i], artifacts, vm_options));
    const ScenarioOutcome& o = outcomes.back();
    std::cerr << absl::StrFormat("verify: [%d/%d] %s %s in %d ms%s\n", i + 1, scenarios.size(),
                                 o.name, o.status.ok() ? "passed" : "FAILED",
                                 absl::ToInt64Milliseconds(o.duration),
                                 o.attempts > 1 ? " (retried once)" : "");
  }
  factory.KillAll();

  std::string kernel_version;
  int64_t peak_rss = 0;
  for (const ScenarioOutcome& o : outcomes) {
    if (kernel_version.empty()) kernel_version = o.kernel_version;
    peak_rss = std::max(peak_rss, o.vmm_peak_rss_bytes);
  }
  int failed = 0;
  std::cout << "\nkiln verify: cgroup scenarios\n";
  std::cout << "  kernel   " << (kernel_version.empty() ? "?" : kernel_version) << "  ("
            << artifacts.kernel << ")\n";
  std::cout << "  VMM      QEMU " << (*vmm)->version() << ", peak RSS "
            << (peak_rss > 0 ? absl::StrCat(peak_rss / (1024 * 1024), " MiB") : "n/a") << "\n";
  std::cout << "  machine  " << MachineName((*vmm)->options().machine) << ", "
            << vm_options.vcpus << " vCPUs, " << vm_options.memory_mib << " MiB\n";
  std::cout << "  accel    " << AccelName((*vmm)->options().accel) << " ("
            << (*vmm)->accel_reason() << ")\n";
  std::cout << "  logs     " << dir << "/logs/<vm-id>/serial.log\n\n";
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const ScenarioOutcome& o = outcomes[i];
    if (!o.status.ok()) ++failed;
    std::cout << absl::StrFormat("  %-4s  %-17s %7d ms  %s\n", o.status.ok() ? "PASS" : "FAIL",
                                 o.name, absl::ToInt64Milliseconds(o.duration),
                                 o.status.ok() ? o.summary : scenarios[i].title);
    if (!o.retry_reason.empty()) {
      std::cout << "        retried once after: " << o.retry_reason << "\n";
    }
    if (!o.status.ok()) {
      for (absl::string_view line : absl::StrSplit(o.status.message(), '\n')) {
        std::cout << "        | " << line << "\n";
      }
    }
  }
  std::cout << absl::StrFormat("\n%d checks: %d passed, %d failed\n", outcomes.size(),
                               outcomes.size() - failed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Boots kiln's cgroup scenarios in real VMs (QEMU) and prints a PASS/FAIL report.\n"
      "  bazel run //harness:verify [-- --scenarios=cgroup-rw,... --machine=microvm]\n"
      "Scenarios: cgroup-rw, cgroup-ro, cgroup-off (negative control), cgroup-bad-value.\n"
      "Exit status: 0 all passed, 1 a check failed, 2 usage or setup error.");
  absl::ParseCommandLine(argc, argv);
  return kiln::harness::Main();
}
