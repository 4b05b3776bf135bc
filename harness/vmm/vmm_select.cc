// File: harness/vmm/vmm_select.cc
#include "harness/vmm/vmm_select.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

std::string Resolve(const std::string& binary) {
  if (binary.empty()) return "";
  if (absl::StrContains(binary, '/')) return IsExecutableFile(binary) ? binary : "";
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", binary);
    if (IsExecutableFile(candidate)) return candidate;
  }
  return "";
}

}  // namespace

const char* VmmKindName(VmmKind kind) {
  switch (kind) {
    case VmmKind::kAuto:
      return "auto";
    case VmmKind::kCloudHypervisor:
      return "cloud-hypervisor";
    case VmmKind::kQemu:
      return "qemu";
  }
  return "unknown";
}

absl::StatusOr<VmmKind> ParseVmmKind(absl::string_view text) {
  if (text == "auto") return VmmKind::kAuto;
  if (text == "cloud-hypervisor" || text == "cloud_hypervisor" || text == "ch") {
    return VmmKind::kCloudHypervisor;
  }
  if (text == "qemu") return VmmKind::kQemu;
  return absl::InvalidArgumentError(
      absl::StrCat("vmm \"", text, "\": expected auto, cloud-hypervisor or qemu"));
}

std::string CloudHypervisorMissing(const VmmHostFacts& facts) {
  std::vector<std::string> missing;
  if (!facts.ch_found) {
    if (absl::StrContains(facts.ch_binary, '/')) {
      missing.push_back(absl::StrCat("no Cloud Hypervisor executable at ", facts.ch_binary));
    } else {
      missing.push_back(absl::StrCat("no `", facts.ch_binary,
                                     "` binary in PATH (install it, or pass --ch_binary=PATH)"));
    }
  }
  if (!facts.dev_kvm_exists) {
    missing.push_back("/dev/kvm is missing (KVM is required: Cloud Hypervisor has no emulator)");
  } else if (!facts.dev_kvm_opens) {
    missing.push_back("/dev/kvm does not open read-write (permissions? KVM is required)");
  }
  if (!facts.cpu_has_virt) {
    missing.push_back(
        "the host CPU has no vmx/svm in /proc/cpuinfo (no hardware virtualization: KVM cannot "
        "run stock guests here)");
  }
  return absl::StrJoin(missing, "; ");
}

absl::StatusOr<VmmDecision> DecideVmm(VmmKind requested, const VmmHostFacts& facts) {
  const std::string missing = CloudHypervisorMissing(facts);
  switch (requested) {
    case VmmKind::kQemu:
      return VmmDecision{VmmKind::kQemu, "qemu requested"};
    case VmmKind::kCloudHypervisor:
      if (!missing.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("--vmm=cloud-hypervisor: Cloud Hypervisor cannot run on this host: ",
                         missing, ". Use --vmm=qemu (or --vmm=auto) here."));
      }
      return VmmDecision{VmmKind::kCloudHypervisor,
                         absl::StrCat("cloud-hypervisor requested (", facts.ch_resolved, ")")};
    case VmmKind::kAuto:
      break;
  }
  if (missing.empty()) {
    return VmmDecision{VmmKind::kCloudHypervisor,
                       absl::StrCat("auto: ", facts.ch_resolved, " and usable KVM found")};
  }
  return VmmDecision{VmmKind::kQemu, absl::StrCat("auto: not Cloud Hypervisor: ", missing)};
}

VmmHostFacts ReadVmmHostFacts(const std::string& ch_binary) {
  VmmHostFacts f;
  f.ch_binary = ch_binary;
  f.ch_resolved = Resolve(ch_binary);
  f.ch_found = !f.ch_resolved.empty();
  std::ifstream in("/proc/cpuinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  f.cpu_has_virt = CpuinfoHasVirtFlags(ss.str());
  struct stat st;
  f.dev_kvm_exists = stat("/dev/kvm", &st) == 0;
  if (f.dev_kvm_exists) {
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    f.dev_kvm_opens = fd >= 0;
    if (fd >= 0) close(fd);
  }
  return f;
}

absl::StatusOr<SelectedVmm> MakeVmm(const VmmSelectOptions& options) {
  const VmmHostFacts facts = ReadVmmHostFacts(options.ch_binary);
  ASSIGN_OR_RETURN(VmmDecision d, DecideVmm(options.kind, facts));
  SelectedVmm out;
  out.kind = d.kind;
  out.reason = d.reason;
  if (d.kind == VmmKind::kCloudHypervisor) {
    CloudHypervisorOptions ch = options.cloud_hypervisor;
    ch.binary = facts.ch_resolved;
    ASSIGN_OR_RETURN(std::unique_ptr<CloudHypervisorVmm> vmm,
                     CloudHypervisorVmm::Create(std::move(ch)));
    out.vmm = std::move(vmm);
  } else {
    ASSIGN_OR_RETURN(std::unique_ptr<QemuVmm> vmm, QemuVmm::Create(options.qemu, options.probe));
    out.vmm = std::move(vmm);
  }
  return out;
}

}  // namespace kiln::harness
