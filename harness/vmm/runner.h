// File: harness/vmm/runner.h
// -----------------------------------------------------------------------------
//
// VmFactory: boots VMs through a Vmm, registers every VM it boots, and tears them all down
// (KillAll, and its destructor), in the style of Firecracker's tests/framework microvm.py
// MicroVMFactory. Its Run() is the standard "boot, wait for the end marker, collect" step of
// every scenario:
//
//   1. boot the VM (work dir <work_root>/<vm-id>);
//   2. follow the serial log (SerialLogFollower: every 100 ms, only the new bytes) in a loop bounded by the VM's deadline until init
//      prints its end marker (`KILN-INIT: exit ...` or `KILN-INIT: fatal ...`), the VMM exits,
//      or the guest kernel shows a soft lockup / panic;
//   3. after the end marker, give the guest `poweroff_grace` to power off, then kill the VMM;
//   4. a soft lockup or panic without an end marker: retry once (as <vm-id>-retry1), and
//      report that it happened (RunResult::retry_reason) -- unless the kernel's OOM killer
//      killed a process first: a guest out of memory is reported as that (ResourceExhausted,
//      naming the killed process, the VM's memory and RunOptions::memory_flag) and not
//      retried (it would run out again);
//   5. copy the serial log and the VMM log to <output_dir>/<vm-id>/ (always);
//   6. no end marker at all: an error whose message has the reason and the log tail.
//
// Example:
//
//   VmFactory factory(vmm, "/tmp/work", OutputDirFromEnv());
//   ASSIGN_OR_RETURN(RunResult r, factory.Run(config));
//   if (r.console.exit_status != 0) ...
#ifndef KILN_HARNESS_RUNNER_H_
#define KILN_HARNESS_RUNNER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "harness/vmm/console.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// RunResult: what one Run() produced. Pure data.
struct RunResult {
  std::string vm_id;            // of the attempt reported (e.g. "cgroup-rw-retry1")
  ConsoleResult console;        // parsed serial log of that attempt
  VmExit exit;                  // how its VMM ended
  int attempts = 1;             // 2 if it was retried
  std::string retry_reason;     // why the first attempt was retried; empty if not retried
  // serial_log: the serial log text (its first and last 2 MiB if longer: SerialLogFollower);
  // the parse in `console` covers all of it.
  std::string serial_log;
  // oom: GuestOomMessage of the reported attempt ("" if the OOM killer never ran).
  std::string oom;
  std::string saved_log_dir;    // where the logs were copied; empty if nowhere
  absl::Duration duration;      // wall time of all attempts
};

// RunOptions: knobs of VmFactory::Run.
struct RunOptions {
  // poweroff_grace: how long the guest may take to power off after its end marker.
  absl::Duration poweroff_grace = absl::Seconds(15);
  // retry_on_stuck: retry once after a soft lockup / kernel panic without an end marker.
  bool retry_on_stuck = true;
  // poll_interval: how often the serial log is read.
  absl::Duration poll_interval = absl::Milliseconds(100);
  // memory_flag: what the out-of-memory message tells the user to raise.
  std::string memory_flag = "--memory_mib";
};

// OutputDirFromEnv(): $TEST_UNDECLARED_OUTPUTS_DIR, or "" if unset (logs stay in work dirs).
std::string OutputDirFromEnv();

// VmFactory: owns every VM it boots. Not thread-safe.
class VmFactory {
 public:
  // VmFactory(vmm, work_root, output_dir): VMs get work dirs <work_root>/<vm-id>; logs are
  // copied to <output_dir>/<vm-id>/ (if output_dir is not empty). `vmm` must outlive this.
  VmFactory(Vmm& vmm, std::string work_root, std::string output_dir,
            RunOptions options = RunOptions());
  ~VmFactory();
  VmFactory(const VmFactory&) = delete;
  VmFactory& operator=(const VmFactory&) = delete;

  // Boot(config): config.work_dir is set to <work_root>/<config.id>; boots and registers the
  // VM. Returns a pointer owned by the factory (valid until KillAll / destruction). Errors:
  // those of Vmm::Boot; AlreadyExists if a VM with that id was already booted here.
  absl::StatusOr<Vm*> Boot(VmConfig config);

  // Run(config): the steps in the file comment. Returns the RunResult when the guest printed
  // its end marker (whatever it says: a `fatal` is a result, not an error). Errors: those of
  // Boot; ResourceExhausted "guest out of memory (OOM killer killed <p>); the VM had N MiB;
  // raise <memory_flag>" if there is no end marker and the OOM killer ran (never retried);
  // DeadlineExceeded if the deadline passed without an end marker; Aborted if the VMM exited
  // (or the guest got stuck, twice) without one. Error messages end with the serial log tail.
  absl::StatusOr<RunResult> Run(const VmConfig& config);

  // Release(vm): detaches `vm` (Vm::Detach: it keeps running after KillAll, the destructor
  // and this process's exit). The pointer stays valid until the factory is destroyed.
  // NotFound if `vm` was not booted here; Detach's errors (FailedPrecondition if it was not
  // booted with VmConfig::detachable or has exited).
  absl::Status Release(Vm* vm);

  // KillAll(): Vm::Kill() on every VM booted here. Idempotent.
  void KillAll();

  // SaveLogs(vm): copies vm's serial and VMM logs to <output_dir>/<vm-id>/; returns that dir
  // ("" if output_dir is empty or the copy failed).
  std::string SaveLogs(Vm& vm);

  Vmm& vmm() { return vmm_; }

 private:
  struct Attempt {
    RunResult result;
    bool stuck = false;
    std::string failure;  // empty if the end marker was seen
    absl::StatusCode code = absl::StatusCode::kOk;
  };
  absl::StatusOr<Attempt> RunOnce(const VmConfig& config);

  Vmm& vmm_;
  std::string work_root_;
  std::string output_dir_;
  RunOptions options_;
  std::vector<std::unique_ptr<Vm>> vms_;
};

}  // namespace kiln::harness

#endif  // KILN_HARNESS_RUNNER_H_
