// File: harness/builder/warm_backend.h
// -----------------------------------------------------------------------------
//
// WarmBackend: what the warm builder flow (harness/builder/snapshot_warm.cc, BuilderVm::BootWarm)
// needs from a VMM backend to save a ready builder VM into the snapshot cache
// (harness/vmm/snapshot.h) and to start a new VM from it. One implementation per VMM:
//
//   QEMU               key: the QEMU argv with per-VM names blanked + the RAM mode; the VM
//                      that saves gets a QMP socket (and, RAM mode file, its guest RAM in the
//                      entry's `ram` file, mapped shared); Save: SaveQemuSnapshot into
//                      <entry>/state; restore: restore_from = <entry>/state (+ the RAM file
//                      mapped private), then ResumeQemuVm (`cont`).
//   Cloud Hypervisor   key: the vm.create VmConfig JSON with per-VM paths blanked; Save:
//                      SaveChSnapshot (vm.pause, vm.snapshot) into the entry dir (config.json,
//                      state.json, memory-ranges); restore: restore_from = <entry> (CH's Boot
//                      is Restore: --restore, Paused checked, vm.resume), Resume checks the VM
//                      runs.
//
// Both: the host reconnects to the channel of the restored VM (a new virtio-serial client
// under QEMU; a new hybrid vsock CONNECT under CH: connections do not survive a restore).
//
// Example (what BootWarm does):
//
//   ASSIGN_OR_RETURN(std::unique_ptr<WarmBackend> backend, MakeWarmBackend(factory.vmm()));
//   ASSIGN_OR_RETURN(SnapshotKeyInputs in, WarmSnapshotKeyInputs(cache, *backend, a, o));
//   ASSIGN_OR_RETURN(SnapshotLease lease, cache.GetOrMakeDir(SnapshotKey(in), text,
//       [&](const std::string& entry) {
//         VmConfig c = ...; backend->PrepareSave(entry, socket_dir, &c);  // then boot it,
//         ... wait for Ready, close the channel ...
//         return backend->Save(*vm, entry).status();
//       }));
//   VmConfig r = ...; backend->PrepareRestore(lease.dir(), socket_dir, &r);
//   Vm* vm = factory.Boot(r); backend->Resume(*vm, timeout, ...);
#ifndef KILN_HARNESS_BUILDER_WARM_BACKEND_H_
#define KILN_HARNESS_BUILDER_WARM_BACKEND_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "harness/builder/builder_client.h"
#include "harness/vmm/snapshot.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// WarmSaveResult: what a save wrote, for the progress line and BuilderRun.
struct WarmSaveResult {
  uint64_t bytes = 0;       // the snapshot's files (apparent size)
  absl::Duration duration;  // the save itself
  std::string detail;       // one phrase: how (QEMU's migration URI and RAM mode; CH's calls)
};

// WarmBackend: one VMM's warm snapshot operations. Not thread-safe.
class WarmBackend {
 public:
  virtual ~WarmBackend() = default;

  // name(): the VMM's name (Vmm::Name()).
  virtual std::string name() const = 0;

  // ram(): where its snapshots keep guest RAM, for BuilderRun::snapshot_ram: QEMU "file" or
  // the stream decision's reason (QemuVmm::SnapshotRamMode); CH "memory-ranges".
  virtual std::string ram() const = 0;

  // FillKeyInputs(shape, in): sets in->vmm, in->vmm_version, in->devices (the VMM's view of
  // `shape`: a builder VmConfig whose per-VM names and paths are placeholders) and what else
  // the backend's snapshots depend on (QEMU: in->ram_mode). Errors: the VMM's plan function's
  // (InvalidArgument).
  virtual absl::Status FillKeyInputs(const VmConfig& shape, SnapshotKeyInputs* in) = 0;

  // PrepareSave(entry_dir, socket_dir, config): adjusts the config of the VM that will be saved
  // into `entry_dir` (QEMU: a QMP socket in socket_dir; in RAM mode file, the guest RAM in
  // <entry_dir>/ram, shared). CH: nothing.
  virtual void PrepareSave(const std::string& entry_dir, const std::string& socket_dir,
                           VmConfig* config) = 0;

  // Save(vm, entry_dir): saves the ready VM (booted from a PrepareSave config; the host has
  // closed its channel) into entry_dir, an empty directory of the snapshot cache
  // (SnapshotCache::GetOrMakeDir). The VM is left paused or gone: the caller kills it.
  // Errors: the VMM's (SaveQemuSnapshot's, SaveChSnapshot's); FailedPrecondition if `vm` is not
  // this backend's.
  virtual absl::StatusOr<WarmSaveResult> Save(Vm& vm, const std::string& entry_dir) = 0;

  // PrepareRestore(entry_dir, socket_dir, config): makes `config` start from the snapshot in
  // entry_dir (VmConfig::restore_from, and what goes with it) instead of booting.
  virtual void PrepareRestore(const std::string& entry_dir, const std::string& socket_dir,
                              VmConfig* config) = 0;

  // Resume(vm, timeout, gone): after VmFactory::Boot of a PrepareRestore config, lets the
  // restored guest run (QEMU: ResumeQemuVm; CH: Restore already resumed it, Resume checks that
  // vm.info says Running). Returns how long it took. Errors: the VMM's; the snapshot should
  // then be dropped (a state the VMM cannot load).
  virtual absl::StatusOr<absl::Duration> Resume(Vm& vm, absl::Duration timeout,
                                                const std::function<bool()>& gone) = 0;
};

// MakeWarmBackend(vmm): the WarmBackend of `vmm` (QemuVmm or CloudHypervisorVmm; it must
// outlive the backend). FailedPrecondition naming the VMM for a backend without snapshots.
absl::StatusOr<std::unique_ptr<WarmBackend>> MakeWarmBackend(Vmm& vmm);

// WarmSnapshotKeyInputs(cache, backend, artifacts, options): the snapshot key inputs of the
// builder VM `options` on `backend`: the digests of kernel, initrd and disk (memoized in
// `cache`), memory, vCPUs, the kernel command line, cgroup, builder mode, the warm daemon and
// its base images, and backend.FillKeyInputs of the config with per-VM names blanked.
// Errors: FileDigest's; FillKeyInputs's; ValidateSnapshotKeyInputs's.
absl::StatusOr<SnapshotKeyInputs> WarmSnapshotKeyInputs(SnapshotCache& cache,
                                                        WarmBackend& backend,
                                                        const BuilderArtifacts& artifacts,
                                                        const BuilderVmOptions& options);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_BUILDER_WARM_BACKEND_H_
