// boot_benchmark: boot to init-done of kiln's cgroup VM against a bare init, same kernel, same
// VMM, same accel.
//
//   cgroup VM: //images:initrd (kiln init: mounts incl. cgroup2, modules, ext4 root disk
//              read-only + tmpfs overlay, root switch) + //images/rootfs:testroot_disk; no
//              kiln.exec, so init prints `KILN-INIT: ready` and powers off at once.
//   bare VM:   //benchmarks:bare_initrd, whose PID 1 powers off at once.
//
// Each sample is the wall time from starting the VMM to its exit (the guest powered off), in
// ms, plus the VMM's peak RSS. The two variants alternate (A B A B ...) so that drift on a busy
// host hits both alike. Prints a table with medians and the ratio; --json_out writes records.
//
//   bazel run //benchmarks:boot_benchmark -- --runs=5 --machine=q35
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/file/file.h"
#include "benchmarks/stats.h"
#include "harness/vmm/console.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/vmm.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel (PVH vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd (//images:initrd)");
ABSL_FLAG(std::string, bare_initrd, "", "baseline initrd (//benchmarks:bare_initrd)");
ABSL_FLAG(std::string, disk, "", "cgroup test root disk (//images/rootfs:testroot_disk)");
ABSL_FLAG(int, runs, 5, "samples per variant (>= 1)");
ABSL_FLAG(std::string, machine, "q35", "QEMU machine: q35 or microvm");
ABSL_FLAG(std::string, accel, "auto", "auto, kvm or tcg");
ABSL_FLAG(int, memory_mib, 512, "guest memory (MiB)");
ABSL_FLAG(int, vcpus, 2, "guest vCPUs");
ABSL_FLAG(std::string, json_out, "", "write JSON records (one per line) here");
ABSL_FLAG(std::string, work_dir, "/tmp/kiln-boot-benchmark", "VM work directories");

namespace kiln::bench {
namespace {

using harness::ConsoleResult;
using harness::VmConfig;
using harness::VmExit;

struct Sample {
  double wall_ms = 0;
  double guest_ready_ms = 0;  // init's own uptime at ready (cgroup VM only)
  int64_t peak_rss_bytes = 0;
};

// RunOnce boots `config`, waits for the VMM to exit, and checks that the guest printed
// `marker` (which proves it got there rather than dying early).
absl::StatusOr<Sample> RunOnce(harness::Vmm& vmm, const VmConfig& config,
                               const std::string& marker) {
  auto vm = vmm.Boot(config);
  if (!vm.ok()) return vm.status();
  auto exit = (*vm)->Wait(config.deadline + absl::Seconds(5));
  std::string log = file::ReadFileOrEmpty((*vm)->serial_log_path());
  (*vm)->Kill();
  if (!exit.ok()) return exit.status();
  if (exit->kind != VmExit::Kind::kExited || log.find(marker) == std::string::npos) {
    std::string tail = log.size() > 1500 ? log.substr(log.size() - 1500) : log;
    return absl::InternalError(absl::StrCat(config.id, ": VMM ", harness::VmExitKindName(exit->kind),
                                            ", marker '", marker, "' ",
                                            log.find(marker) == std::string::npos ? "missing" : "seen",
                                            "; serial log tail:\n", tail));
  }
  Sample s;
  s.wall_ms = absl::ToDoubleMilliseconds(exit->wall);
  s.peak_rss_bytes = exit->peak_rss_bytes;
  ConsoleResult console = harness::ParseConsole(log);
  if (console.ready_uptime_ms) s.guest_ready_ms = static_cast<double>(*console.ready_uptime_ms);
  return s;
}

int Main() {
  const int runs = absl::GetFlag(FLAGS_runs);
  for (const auto* f : {&FLAGS_kernel, &FLAGS_initrd, &FLAGS_bare_initrd, &FLAGS_disk}) {
    if (absl::GetFlag(*f).empty()) {
      std::fprintf(stderr, "boot_benchmark: --kernel, --initrd, --bare_initrd and --disk are required "
                           "(bazel run //benchmarks:boot_benchmark sets them)\n");
      return 2;
    }
  }
  if (runs < 1) {
    std::fprintf(stderr, "boot_benchmark: --runs must be >= 1\n");
    return 2;
  }
  harness::QemuOptions options;
  auto machine = harness::ParseMachine(absl::GetFlag(FLAGS_machine));
  auto accel = harness::ParseAccel(absl::GetFlag(FLAGS_accel));
  if (!machine.ok() || !accel.ok()) {
    std::fprintf(stderr, "boot_benchmark: %s\n",
                 (!machine.ok() ? machine.status() : accel.status()).ToString().c_str());
    return 2;
  }
  options.machine = *machine;
  options.accel = *accel;
  auto vmm = harness::QemuVmm::Create(
      options, harness::ProbeArtifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd)});
  if (!vmm.ok()) {
    std::fprintf(stderr, "boot_benchmark: %s\n", vmm.status().ToString().c_str());
    return 1;
  }
  std::printf("boot_benchmark: %s\n", (*vmm)->Describe().c_str());

  VmConfig base;
  base.kernel_path = absl::GetFlag(FLAGS_kernel);
  base.vcpus = absl::GetFlag(FLAGS_vcpus);
  base.memory_mib = absl::GetFlag(FLAGS_memory_mib);
  base.deadline = absl::Seconds(90);

  VmConfig bare = base;
  bare.initrd_path = absl::GetFlag(FLAGS_bare_initrd);
  VmConfig cgroup = base;
  cgroup.initrd_path = absl::GetFlag(FLAGS_initrd);
  cgroup.disks.push_back({.path = absl::GetFlag(FLAGS_disk), .read_only = true});
  cgroup.cmdline = "kiln.root=/dev/vda kiln.cgroup=rw";

  Samples bare_ms, cgroup_ms, cgroup_guest_ms, bare_rss, cgroup_rss;
  int failures = 0;
  for (int i = 0; i < runs; ++i) {
    for (int variant = 0; variant < 2; ++variant) {
      VmConfig c = variant == 0 ? bare : cgroup;
      c.id = absl::StrCat(variant == 0 ? "bare-" : "cgroup-", i);
      c.work_dir = absl::StrCat(absl::GetFlag(FLAGS_work_dir), "/", c.id);
      auto s = RunOnce(**vmm, c, variant == 0 ? "KILN-BARE: up" : "KILN-INIT: ready");
      if (!s.ok()) {
        ++failures;
        std::fprintf(stderr, "boot_benchmark: run %s failed: %s\n", c.id.c_str(),
                     s.status().ToString().c_str());
        continue;
      }
      std::printf("  %-10s %8.0f ms  rss %6.0f MiB%s\n", c.id.c_str(), s->wall_ms,
                  s->peak_rss_bytes / 1048576.0,
                  variant == 1 ? absl::StrFormat("  (guest ready at %.0f ms uptime)", s->guest_ready_ms).c_str() : "");
      std::fflush(stdout);
      (variant == 0 ? bare_ms : cgroup_ms).push_back(s->wall_ms);
      (variant == 0 ? bare_rss : cgroup_rss).push_back(static_cast<double>(s->peak_rss_bytes));
      if (variant == 1) cgroup_guest_ms.push_back(s->guest_ready_ms);
    }
  }
  Summary b = Summarize(bare_ms), c = Summarize(cgroup_ms);
  Summary br = Summarize(bare_rss), cr = Summarize(cgroup_rss);
  std::printf("\n%-28s %6s %10s %10s %10s %14s\n", "variant", "n", "median ms", "min ms", "max ms",
              "peak RSS MiB");
  std::printf("%-28s %6zu %10.0f %10.0f %10.0f %14.0f\n", "bare init (power off)", b.n, b.median,
              b.min, b.max, br.max / 1048576.0);
  std::printf("%-28s %6zu %10.0f %10.0f %10.0f %14.0f\n", "cgroup VM (to init-done)", c.n, c.median,
              c.min, c.max, cr.max / 1048576.0);
  std::printf("ratio cgroup/bare (median wall): %.2f   guest uptime at ready (median): %.0f ms\n",
              Ratio(c.median, b.median), Summarize(cgroup_guest_ms).median);
  if (failures) std::printf("failed runs: %d\n", failures);

  if (!absl::GetFlag(FLAGS_json_out).empty()) {
    std::map<std::string, std::string> dims = {
        {"vmm", "qemu"},
        {"machine", absl::GetFlag(FLAGS_machine)},
        {"accel", harness::AccelName((*vmm)->options().accel)},
        {"vcpus", absl::StrCat(base.vcpus)},
        {"memory_mib", absl::StrCat(base.memory_mib)}};
    std::ofstream out(absl::GetFlag(FLAGS_json_out));
    out << Record("boot.bare.wall", dims, "ms", bare_ms).dump() << "\n"
        << Record("boot.cgroup_vm.wall", dims, "ms", cgroup_ms).dump() << "\n"
        << Record("boot.cgroup_vm.guest_ready", dims, "ms", cgroup_guest_ms).dump() << "\n"
        << Record("boot.bare.vmm_peak_rss", dims, "bytes", bare_rss).dump() << "\n"
        << Record("boot.cgroup_vm.vmm_peak_rss", dims, "bytes", cgroup_rss).dump() << "\n";
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "boot to init-done of kiln's cgroup VM vs a bare init; run with bazel run "
      "//benchmarks:boot_benchmark -- [--runs=N] [--machine=q35|microvm] [--json_out=F]");
  absl::ParseCommandLine(argc, argv);
  return kiln::bench::Main();
}
