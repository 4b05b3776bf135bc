// File: harness/vmm/vm_process.cc
#include "harness/vmm/vm_process.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kiln::harness {

process::SpawnOptions VmmSpawnOptions(std::vector<std::string> argv, const std::string& log_path,
                                      bool die_with_parent) {
  process::SpawnOptions o;
  o.argv = std::move(argv);
  o.out = process::Stdio::File(log_path);
  o.err = process::Stdio::SameAsStdout();
  o.die_with_parent = die_with_parent;
  o.kill_group_on_exit = true;
  o.destroy_grace = absl::Seconds(2);
  return o;
}

VmProcess::VmProcess(const VmConfig* config, process::Process process, absl::Time start,
                     absl::Duration kill_grace, std::function<void()> on_exit)
    : config_(config),
      process_(std::move(process)),
      start_(start),
      kill_grace_(kill_grace),
      on_exit_(std::move(on_exit)) {}

void VmProcess::Record(const process::ProcessExit& e, VmExit::Kind kind) {
  if (exit_) return;
  VmExit x;
  x.kind = kind;
  x.exit_code = e.exit_code;
  x.signal = e.signal;
  x.wall = absl::Now() - start_;
  x.peak_rss_bytes = e.max_rss_bytes;
  exit_ = x;
  if (on_exit_) on_exit_();
}

bool VmProcess::Exited() {
  if (exit_) return true;
  if (detached_) return false;
  if (std::optional<process::ProcessExit> e = process_.Poll()) {
    Record(*e, e->signaled ? VmExit::Kind::kSignaled : VmExit::Kind::kExited);
    return true;
  }
  return false;
}

absl::StatusOr<VmExit> VmProcess::Wait(absl::Duration timeout) {
  if (exit_) return *exit_;
  if (detached_) {
    return absl::FailedPreconditionError(absl::StrCat("VM ", config_->id, " is detached"));
  }
  const absl::Time vm_deadline = start_ + config_->deadline;
  const absl::Time now = absl::Now();
  const absl::Time end = std::min(now + timeout, vm_deadline);
  absl::StatusOr<process::ProcessExit> e = process_.Wait(end);
  if (e.ok()) {
    Record(*e, e->signaled ? VmExit::Kind::kSignaled : VmExit::Kind::kExited);
    return *exit_;
  }
  if (absl::Now() >= vm_deadline) {
    // Past the deadline the VMM is not trusted to stop in an orderly way: kill the group.
    Record(process_.Kill(kill_grace_), VmExit::Kind::kDeadline);
    return *exit_;
  }
  return absl::DeadlineExceededError(absl::StrCat("VM ", config_->id, " still running after ",
                                                  absl::FormatDuration(timeout)));
}

void VmProcess::Kill(
    const std::function<std::optional<process::ProcessExit>(process::Process&)>& orderly) {
  if (exit_ || detached_) return;
  std::optional<process::ProcessExit> e;
  if (orderly) {
    if (Exited()) return;  // nothing to stop in an orderly way
    e = orderly(process_);
  }
  Record(e ? *e : process_.Kill(kill_grace_), VmExit::Kind::kKilled);
}

absl::Status VmProcess::Detach() {
  if (detached_) return absl::OkStatus();
  if (absl::Status s = CheckDetachable(*config_, Exited()); !s.ok()) return s;
  process_.Release();
  detached_ = true;
  return absl::OkStatus();
}

}  // namespace kiln::harness
