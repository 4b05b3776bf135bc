// File: harness/keep/keep_builder.h
// -----------------------------------------------------------------------------
//
// The builder client's side of `keep_failed_builders` (issue 6): record a builder VM in the
// keep state directory (harness/keep/keep_store.h) while it builds, keep it when its build fails,
// forget it when it passes. `kilnctl builders ...` (tools/kilnctl/) then lists, execs into,
// and removes kept builders.
//
// Call sequence in the builder client (see tools/kilnctl/README.md "Wiring"):
//
//   KeepStore store(policy.state_dir.empty() ? KeepStore::DefaultDir() : policy.state_dir);
//   // right after the VM booted (so a harness killed mid-build leaves a findable record):
//   ASSIGN_OR_RETURN(KeepRecord rec, RegisterBuilder(store, vm, "qemu", vmm_pid, "job fail-1"));
//   ... build ...
//   if (failed && policy.keep_failed_builders) {
//     RETURN_IF_ERROR(KeepFailedBuilder(store, rec, "RUN exit 1", policy));
//     // and do NOT close the channel / kill the VM: detach it from the VmFactory.
//   } else {
//     ReleaseBuilder(store, rec.id);   // then tear the VM down as always
//   }
#ifndef KILN_HARNESS_KEEP_BUILDER_H_
#define KILN_HARNESS_KEEP_BUILDER_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "harness/keep/keep_store.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// FindVmmPid(channel_socket): the pid of a child of this process whose command line names
// `channel_socket` (the VMM serving that channel). For backends whose Vm does not expose its
// pid. NotFound if there is none; FailedPrecondition if several match.
absl::StatusOr<pid_t> FindVmmPid(const std::string& channel_socket);

// KeepRecordForVm(config, serial_log, vmm, vmm_process, owner, job_summary, now, transport):
// the "building" record of a booted VM (pure): id = config.id, channel socket and vsock port,
// serial log, work dir from the config; channel_transport = `transport` (the backend's
// Vmm::channel_transport()). InvalidArgument (ValidateKeepRecord) if the config has no channel.
absl::StatusOr<KeepRecord> KeepRecordForVm(
    const VmConfig& config, const std::string& serial_log, absl::string_view vmm,
    ProcessIdentity vmm_process, ProcessIdentity owner, absl::string_view job_summary,
    absl::Time now, ChannelTransport transport = ChannelTransport::kVirtioSerial);

// RegisterBuilder(store, vm, vmm_name, vmm_pid, job_summary, transport): writes the "building"
// record of `vm` (owner: this process; its channel spoken with `transport`). vmm_pid 0:
// FindVmmPid(channel socket). Returns the record. NotFound if the VMM process is not running;
// the store's errors.
absl::StatusOr<KeepRecord> RegisterBuilder(
    KeepStore& store, const Vm& vm, absl::string_view vmm_name, pid_t vmm_pid,
    absl::string_view job_summary, ChannelTransport transport = ChannelTransport::kVirtioSerial);

// KeepFailedBuilder(store, record, failure, policy): marks the builder kept: state kept,
// failure (one line, truncated to 4 KiB), expires = now + policy.ttl; reaps kept builders
// over policy.max_kept (oldest first, clean shutdown through the agent is not tried here:
// the caller's TeardownOptions are the defaults). FailedPrecondition if
// !policy.keep_failed_builders or the VMM is no longer running; the store's errors.
absl::Status KeepFailedBuilder(KeepStore& store, KeepRecord record, absl::string_view failure,
                               const KeepPolicy& policy);

// ReleaseBuilder(store, id): removes the record only (the caller tears the VM down as
// always). OkStatus if there was none.
absl::Status ReleaseBuilder(KeepStore& store, absl::string_view id);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_KEEP_BUILDER_H_
