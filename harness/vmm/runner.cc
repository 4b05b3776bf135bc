// File: harness/vmm/runner.cc
#include "harness/vmm/runner.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

bool CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return false;
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) out.write(buf, in.gcount());
  return static_cast<bool>(out);
}

std::string TailOrEmpty(const std::string& log) {
  std::string tail = LogTail(log, 40);
  return tail.empty() ? "(the serial log is empty)\n" : tail;
}

bool MakeDirs(const std::string& path) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (!partial.empty() && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) return false;
  }
  return true;
}

}  // namespace

std::string OutputDirFromEnv() {
  const char* dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  return dir ? dir : "";
}

VmFactory::VmFactory(Vmm& vmm, std::string work_root, std::string output_dir,
                     RunOptions options)
    : vmm_(vmm),
      work_root_(std::move(work_root)),
      output_dir_(std::move(output_dir)),
      options_(options) {}

VmFactory::~VmFactory() { KillAll(); }

void VmFactory::KillAll() {
  for (std::unique_ptr<Vm>& vm : vms_) vm->Kill();
}

absl::Status VmFactory::Release(Vm* vm) {
  for (const std::unique_ptr<Vm>& v : vms_) {
    if (v.get() == vm) return vm->Detach();
  }
  return absl::NotFoundError("VmFactory::Release: this VM was not booted by this factory");
}

absl::StatusOr<Vm*> VmFactory::Boot(VmConfig config) {
  for (const std::unique_ptr<Vm>& vm : vms_) {
    if (vm->config().id == config.id) {
      return absl::AlreadyExistsError(absl::StrCat("VM id already used: ", config.id));
    }
  }
  config.work_dir = absl::StrCat(work_root_, "/", config.id);
  ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, vmm_.Boot(config));
  vms_.push_back(std::move(vm));
  return vms_.back().get();
}

std::string VmFactory::SaveLogs(Vm& vm) {
  if (output_dir_.empty()) return "";
  std::string dir = absl::StrCat(output_dir_, "/", vm.config().id);
  if (!MakeDirs(dir)) return "";
  bool ok = CopyFile(vm.serial_log_path(), dir + "/serial.log");
  CopyFile(vm.vmm_log_path(), absl::StrCat(dir, "/", vmm_.Name(), ".log"));
  return ok ? dir : "";
}

absl::StatusOr<VmFactory::Attempt> VmFactory::RunOnce(const VmConfig& config) {
  absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(Vm * vm, Boot(config));
  Attempt a;
  a.result.vm_id = config.id;
  SerialLogFollower serial(vm->serial_log_path());
  bool ended = false;
  while (true) {
    bool exited = vm->Exited();
    (void)serial.Poll();  // a read error: judged on what was read, the deadline still holds
    const ConsoleResult& console = serial.console();
    if (console.HasEndMarker()) {
      ended = true;
      if (!exited) {
        absl::StatusOr<VmExit> e = vm->Wait(options_.poweroff_grace);
        if (!e.ok()) vm->Kill();  // the guest did not power off: not a failure of the check
      }
      break;
    }
    if (exited) break;
    if (console.Stuck()) {
      // panic=-1 + -no-reboot: QEMU exits by itself in a moment; do not wait for long.
      if (!vm->Wait(absl::Seconds(5)).ok()) vm->Kill();
      break;
    }
    absl::StatusOr<VmExit> e = vm->Wait(options_.poll_interval);
    if (e.ok()) {
      if (e->kind == VmExit::Kind::kDeadline) break;
      continue;  // exited: parse the final log once more
    }
  }
  vm->Kill();  // no-op if it has exited; reaps and cleans up otherwise
  absl::StatusOr<VmExit> e = vm->Wait(absl::ZeroDuration());
  if (e.ok()) a.result.exit = *e;
  (void)serial.PollToEnd();
  a.result.serial_log = serial.Text();
  a.result.console = serial.console();
  a.result.oom = GuestOomMessage(a.result.console, config.memory_mib, options_.memory_flag);
  ended = ended || a.result.console.HasEndMarker();
  a.result.saved_log_dir = SaveLogs(*vm);
  a.result.duration = absl::Now() - start;
  a.stuck = a.result.console.Stuck();
  if (!ended) {
    if (!a.result.oom.empty()) {
      a.code = absl::StatusCode::kResourceExhausted;
      a.failure = a.result.oom;
      a.stuck = false;  // out of memory, not stuck: a retry would run out again
    } else if (a.result.exit.kind == VmExit::Kind::kDeadline) {
      a.code = absl::StatusCode::kDeadlineExceeded;
      a.failure = absl::StrCat("deadline of ", absl::FormatDuration(config.deadline),
                               " passed without an end marker");
    } else {
      a.code = absl::StatusCode::kAborted;
      a.failure = a.stuck ? absl::StrCat("guest kernel stuck: ", a.result.console.stuck_line)
                          : absl::StrCat("VMM ", VmExitKindName(a.result.exit.kind),
                                         " (code ", a.result.exit.exit_code, ", signal ",
                                         a.result.exit.signal, ") without an end marker");
    }
  }
  return a;
}

absl::StatusOr<RunResult> VmFactory::Run(const VmConfig& config) {
  absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(Attempt first, RunOnce(config));
  Attempt* last = &first;
  Attempt second;
  std::string retry_reason;
  if (!first.failure.empty() && first.stuck && options_.retry_on_stuck) {
    retry_reason = absl::StrCat(first.result.vm_id, ": ", first.result.console.stuck_line);
    VmConfig again = config;
    again.id = absl::StrCat(config.id, "-retry1");
    ASSIGN_OR_RETURN(second, RunOnce(again));
    last = &second;
  }
  if (!last->failure.empty()) {
    std::string where = last->result.saved_log_dir.empty()
                            ? ""
                            : absl::StrCat(" (logs: ", last->result.saved_log_dir, ")");
    return absl::Status(
        last->code,
        absl::StrCat("VM ", last->result.vm_id, ": ", last->failure,
                     retry_reason.empty() ? "" : absl::StrCat(" (after a retry; first: ",
                                                              retry_reason, ")"),
                     where, "\n--- serial log tail ---\n", TailOrEmpty(last->result.serial_log)));
  }
  RunResult r = std::move(last->result);
  r.attempts = retry_reason.empty() ? 1 : 2;
  r.retry_reason = std::move(retry_reason);
  r.duration = absl::Now() - start;
  return r;
}

}  // namespace kiln::harness
