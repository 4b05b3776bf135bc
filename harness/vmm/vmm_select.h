// File: harness/vmm/vmm_select.h
// -----------------------------------------------------------------------------
//
// Choosing the VMM backend: `--vmm=auto|cloud-hypervisor|qemu`, wherever a VM is booted
// (//harness:verify, the VM tests, benchmarks).
//
//   qemu              always QEMU (harness/vmm/qemu.h; TCG or KVM, its own accel choice)
//   cloud-hypervisor  Cloud Hypervisor (harness/vmm/cloud_hypervisor.h); it has no emulator and
//                     needs working KVM: without the binary or KVM, fail fast with a message
//                     naming everything that is missing
//   auto              Cloud Hypervisor when its binary is found AND KVM is usable; else QEMU,
//                     and the reason says why CH was not taken
//
// "KVM usable" is the same rule as third_party/host.bzl: the host CPU lists vmx or svm and
// /dev/kvm opens read-write (a kvm_pvm /dev/kvm without vmx/svm cannot run stock guests).
//
// Split: DecideVmm (pure, table-tested) over VmmHostFacts; ReadVmmHostFacts and MakeVmm are
// the executors.
//
// Example (what //harness:verify does):
//
//   ASSIGN_OR_RETURN(VmmKind kind, ParseVmmKind(absl::GetFlag(FLAGS_vmm)));
//   VmmSelectOptions select{.kind = kind, .ch_binary = absl::GetFlag(FLAGS_ch_binary),
//                           .qemu = qemu_options, .probe = {kernel, initrd}};
//   absl::StatusOr<SelectedVmm> vmm = MakeVmm(select);
//   if (!vmm.ok()) { std::cerr << vmm.status().message() << "\n"; return 2; }  // fail fast
//   std::cout << vmm->vmm->Describe() << " (" << vmm->reason << ")\n";
#ifndef KILN_HARNESS_VMM_SELECT_H_
#define KILN_HARNESS_VMM_SELECT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "harness/vmm/cloud_hypervisor.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// VmmKind: the requested backend.
enum class VmmKind { kAuto, kCloudHypervisor, kQemu };

// VmmKindName(kind): "auto", "cloud-hypervisor", "qemu".
const char* VmmKindName(VmmKind kind);

// ParseVmmKind("auto"|"cloud-hypervisor"|"qemu"): InvalidArgument otherwise (also accepts
// "ch" and "cloud_hypervisor" for cloud-hypervisor).
absl::StatusOr<VmmKind> ParseVmmKind(absl::string_view text);

// VmmHostFacts: what the host offers for Cloud Hypervisor. Pure data.
struct VmmHostFacts {
  // ch_binary: the requested binary name or path (for messages), and ch_found: whether it
  // resolves to an executable file (ch_resolved: that path).
  std::string ch_binary = "cloud-hypervisor";
  bool ch_found = false;
  std::string ch_resolved;
  bool cpu_has_virt = false;   // /proc/cpuinfo flags list vmx or svm
  bool dev_kvm_exists = false;
  bool dev_kvm_opens = false;  // open("/dev/kvm", O_RDWR) succeeded
};

// VmmDecision: the backend chosen, and why (one human phrase).
struct VmmDecision {
  VmmKind kind = VmmKind::kQemu;  // kCloudHypervisor or kQemu, never kAuto
  std::string reason;
};

// CloudHypervisorMissing(facts): "" if Cloud Hypervisor can run here, else the list of what is
// missing, e.g. "no `cloud-hypervisor` binary in PATH (install it, or pass --ch_binary=PATH);
// /dev/kvm is missing (KVM is required: Cloud Hypervisor has no emulator)". Pure.
std::string CloudHypervisorMissing(const VmmHostFacts& facts);

// DecideVmm(requested, facts): pure. kQemu -> QEMU. kCloudHypervisor -> CH if
// CloudHypervisorMissing(facts) is empty, else FailedPrecondition "--vmm=cloud-hypervisor: Cloud
// Hypervisor cannot run on this host: <missing>. Use --vmm=qemu (or auto) here.". kAuto -> CH if
// nothing is missing, else QEMU with the reason naming what was missing.
absl::StatusOr<VmmDecision> DecideVmm(VmmKind requested, const VmmHostFacts& facts);

// ReadVmmHostFacts(ch_binary): executor. Resolves ch_binary (PATH lookup if it has no '/'),
// reads /proc/cpuinfo, stats and opens /dev/kvm. Never fails.
VmmHostFacts ReadVmmHostFacts(const std::string& ch_binary = "cloud-hypervisor");

// VmmSelectOptions: everything MakeVmm needs for either backend.
struct VmmSelectOptions {
  VmmKind kind = VmmKind::kAuto;
  // ch_binary: the Cloud Hypervisor executable (PATH lookup if it has no '/').
  std::string ch_binary = "cloud-hypervisor";
  CloudHypervisorOptions cloud_hypervisor;  // .binary is replaced by the resolved ch_binary
  QemuOptions qemu;
  ProbeArtifacts probe;  // QEMU's KVM probe boot (harness/vmm/qemu.h)
};

// SelectedVmm: the backend made by MakeVmm and why it was chosen.
struct SelectedVmm {
  std::unique_ptr<Vmm> vmm;
  VmmKind kind = VmmKind::kQemu;
  std::string reason;
};

// MakeVmm(options): ReadVmmHostFacts + DecideVmm, then CloudHypervisorVmm::Create or
// QemuVmm::Create. Errors: DecideVmm's FailedPrecondition (the fail-fast message); the
// backend's Create errors (NotFound if the binary does not run).
absl::StatusOr<SelectedVmm> MakeVmm(const VmmSelectOptions& options);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_VMM_SELECT_H_
