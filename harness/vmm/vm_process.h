// File: harness/vmm/vm_process.h
// -----------------------------------------------------------------------------
//
// VmProcess: the VMM process behind one Vm, shared by every backend (harness/vmm/qemu.cc,
// harness/vmm/cloud_hypervisor.cc): it records how the process ended (VmExit), waits with the
// VmConfig deadline, kills it (after an optional backend-specific orderly stop), and detaches
// it for a kept builder. A backend's Vm delegates these calls and adds only what differs: its
// paths, its orderly stop (Cloud Hypervisor: vm.shutdown + vmm.shutdown over its API), and the
// files to remove once the process is gone.
//
// Example (inside a backend's Vm):
//
//   VmProcess vmm_(&config_, std::move(process), start, /*kill_grace=*/absl::Seconds(2),
//                  [this] { unlink(socket_.c_str()); });
//   bool Exited() override { return vmm_.Exited(); }
//   void Kill() override { vmm_.Kill(); }
#ifndef KILN_HARNESS_VM_PROCESS_H_
#define KILN_HARNESS_VM_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/process/process.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// VmmSpawnOptions(argv, log_path, die_with_parent): how every backend starts its VMM (and the
// QEMU KVM probe): stdin /dev/null, stdout and stderr to `log_path` (truncated, 0644), its own
// process group, SIGKILLed whole when the VMM exits (kill_group_on_exit), PR_SET_PDEATHSIG
// unless `die_with_parent` is false (a detachable VM), a 2 s SIGTERM grace in the destructor.
// Pure.
process::SpawnOptions VmmSpawnOptions(std::vector<std::string> argv, const std::string& log_path,
                                      bool die_with_parent = true);

class VmProcess {
 public:
  // VmProcess(config, process, start, kill_grace, on_exit): `config` must outlive this object
  // (the owning Vm's); `start` is when the VMM was started (VmExit::wall, the deadline);
  // kill_grace is process::Process::Kill's SIGTERM -> SIGKILL grace; on_exit (may be empty) runs once,
  // when the exit is recorded (remove sockets).
  VmProcess(const VmConfig* config, process::Process process, absl::Time start,
            absl::Duration kill_grace, std::function<void()> on_exit);

  // Exited(): Vm::Exited (never blocks; false once detached).
  bool Exited();
  // Wait(timeout): Vm::Wait: the exit, or a kDeadline exit once config.deadline passed (the
  // group is killed), DeadlineExceeded if `timeout` passed first, FailedPrecondition once
  // detached.
  absl::StatusOr<VmExit> Wait(absl::Duration timeout);
  // Kill(orderly): Vm::Kill. If the process runs: `orderly` first (if given; it may stop the
  // VMM and return its exit, or nullopt to fall through), then SIGTERM/SIGKILL to the group.
  // Idempotent; no-op once detached.
  void Kill(const std::function<std::optional<process::ProcessExit>(process::Process&)>& orderly =
                nullptr);
  // Detach(): Vm::Detach (CheckDetachable, then the process is released).
  absl::Status Detach();

  bool detached() const { return detached_; }
  int64_t peak_rss_bytes() const { return exit_ ? exit_->peak_rss_bytes : 0; }
  pid_t pid() const { return process_.pid(); }

 private:
  void Record(const process::ProcessExit& e, VmExit::Kind kind);

  const VmConfig* config_;
  process::Process process_;
  absl::Time start_;
  absl::Duration kill_grace_;
  std::function<void()> on_exit_;
  std::optional<VmExit> exit_;
  bool detached_ = false;
};

}  // namespace kiln::harness

#endif  // KILN_HARNESS_VM_PROCESS_H_
