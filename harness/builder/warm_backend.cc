// File: harness/builder/warm_backend.cc
#include "harness/builder/warm_backend.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "harness/vmm/cloud_hypervisor.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/snapshot_qmp.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

constexpr absl::Duration kQemuSaveTimeout = absl::Seconds(120);

// ---------------------------------------------------------------------------------------------
// QEMU

class QemuWarmBackend : public WarmBackend {
 public:
  explicit QemuWarmBackend(QemuVmm& qemu) : qemu_(qemu), ram_(qemu.SnapshotRamMode()) {}

  std::string name() const override { return qemu_.Name(); }
  std::string ram() const override { return ram_file() ? "file" : ram_.reason; }

  absl::Status FillKeyInputs(const VmConfig& shape, SnapshotKeyInputs* in) override {
    in->vmm = qemu_.Name();
    in->vmm_version = qemu_.version();
    VmConfig c = shape;
    c.control_socket_path = "/QMP";
    ASSIGN_OR_RETURN(std::vector<std::string> argv,
                     QemuArgv(c, qemu_.options(), qemu_.tsc_khz()));
    in->devices = absl::StrJoin(argv, " ");
    in->ram_mode = SnapshotRamName(ram_.mode);
    return absl::OkStatus();
  }

  void PrepareSave(const std::string& entry_dir, const std::string& socket_dir,
                   VmConfig* config) override {
    config->control_socket_path = absl::StrCat(socket_dir, "/qmp.sock");
    if (ram_file()) {
      config->memory_file = SnapshotRamPath(entry_dir);
      config->memory_file_shared = true;
    }
  }

  absl::StatusOr<WarmSaveResult> Save(Vm& vm, const std::string& entry_dir) override {
    ASSIGN_OR_RETURN(SaveStats stats,
                     SaveQemuSnapshot(vm.config().control_socket_path,
                                      SnapshotStatePath(entry_dir), kQemuSaveTimeout,
                                      ram_.mode));
    (void)vm.Wait(absl::Seconds(10));  // QEMU quits after the save
    WarmSaveResult r;
    r.bytes = stats.state_bytes;
    r.duration = stats.migrate;
    r.detail = absl::StrCat(stats.uri, ", RAM: ", ram_.reason,
                            stats.features.mapped_ram ? ", mapped-ram available" : "");
    return r;
  }

  void PrepareRestore(const std::string& entry_dir, const std::string& socket_dir,
                      VmConfig* config) override {
    config->control_socket_path = absl::StrCat(socket_dir, "/qmp.sock");
    config->restore_from = SnapshotStatePath(entry_dir);
    if (ram_file()) {
      config->memory_file = SnapshotRamPath(entry_dir);
      config->memory_file_shared = false;  // copy-on-write: nothing flows back
    }
  }

  absl::StatusOr<absl::Duration> Resume(Vm& vm, absl::Duration timeout,
                                        const std::function<bool()>& gone) override {
    return ResumeQemuVm(vm.config(), timeout, gone);
  }

 private:
  bool ram_file() const { return ram_.mode == SnapshotRam::kFile; }

  QemuVmm& qemu_;
  SnapshotRamDecision ram_;
};

// ---------------------------------------------------------------------------------------------
// Cloud Hypervisor

class ChWarmBackend : public WarmBackend {
 public:
  explicit ChWarmBackend(CloudHypervisorVmm& ch) : ch_(ch) {}

  std::string name() const override { return ch_.Name(); }
  std::string ram() const override { return "memory-ranges"; }

  absl::Status FillKeyInputs(const VmConfig& shape, SnapshotKeyInputs* in) override {
    in->vmm = ch_.Name();
    in->vmm_version = ch_.version();
    CloudHypervisorPaths paths = CloudHypervisorPathsFor(shape, "/SOCKETS");
    ASSIGN_OR_RETURN(nlohmann::json vm, CloudHypervisorVmConfigJson(shape, paths));
    in->devices = vm.dump();
    return absl::OkStatus();
  }

  void PrepareSave(const std::string&, const std::string&, VmConfig*) override {}

  absl::StatusOr<WarmSaveResult> Save(Vm& vm, const std::string& entry_dir) override {
    auto* ch = dynamic_cast<CloudHypervisorVm*>(&vm);
    if (ch == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("VM ", vm.config().id, " is not a cloud-hypervisor VM"));
    }
    ASSIGN_OR_RETURN(ChSaveStats stats, SaveChSnapshot(*ch, entry_dir));
    WarmSaveResult r;
    r.bytes = stats.state_bytes;
    r.duration = stats.pause + stats.snapshot;
    r.detail = absl::StrCat("vm.pause ", absl::ToInt64Milliseconds(stats.pause),
                            " ms, vm.snapshot ", absl::ToInt64Milliseconds(stats.snapshot),
                            " ms");
    return r;
  }

  void PrepareRestore(const std::string& entry_dir, const std::string&,
                      VmConfig* config) override {
    config->restore_from = entry_dir;
  }

  absl::StatusOr<absl::Duration> Resume(Vm& vm, absl::Duration,
                                        const std::function<bool()>&) override {
    auto* ch = dynamic_cast<CloudHypervisorVm*>(&vm);
    if (ch == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("VM ", vm.config().id, " is not a cloud-hypervisor VM"));
    }
    const absl::Time t0 = absl::Now();
    ASSIGN_OR_RETURN(ChVmState state, ch->State());
    if (state != ChVmState::kRunning) {
      return absl::FailedPreconditionError(
          absl::StrCat("cloud-hypervisor VM ", vm.config().id, " restored from ",
                       vm.config().restore_from, " is ", ChVmStateName(state),
                       ", expected Running"));
    }
    return absl::Now() - t0;
  }

 private:
  CloudHypervisorVmm& ch_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<WarmBackend>> MakeWarmBackend(Vmm& vmm) {
  if (auto* qemu = dynamic_cast<QemuVmm*>(&vmm)) {
    return std::unique_ptr<WarmBackend>(new QemuWarmBackend(*qemu));
  }
  if (auto* ch = dynamic_cast<CloudHypervisorVmm*>(&vmm)) {
    return std::unique_ptr<WarmBackend>(new ChWarmBackend(*ch));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("the ", vmm.Name(),
                   " backend has no warm snapshots (QEMU and Cloud Hypervisor have)"));
}

absl::StatusOr<SnapshotKeyInputs> WarmSnapshotKeyInputs(SnapshotCache& cache,
                                                        WarmBackend& backend,
                                                        const BuilderArtifacts& a,
                                                        const BuilderVmOptions& o) {
  SnapshotKeyInputs in;
  ASSIGN_OR_RETURN(in.kernel_digest, cache.FileDigest(a.kernel));
  ASSIGN_OR_RETURN(in.initrd_digest, cache.FileDigest(a.initrd));
  ASSIGN_OR_RETURN(std::string disk, cache.FileDigest(a.builder_disk));
  in.disk_digests.push_back(absl::StrCat(disk, " ro"));
  in.memory_mib = o.memory_mib;
  in.vcpus = o.vcpus;
  // The VMM's view of the config with per-VM names and paths replaced by placeholders (their
  // contents are in the digests above).
  BuilderVmOptions shape = o;
  shape.id = "warm";
  BuilderArtifacts placeholders{"/KERNEL", "/INITRD", "/DISK"};
  VmConfig c = BuilderVmConfig(shape, placeholders, "/CHANNEL");
  c.work_dir = "/WORK";
  RETURN_IF_ERROR(backend.FillKeyInputs(c, &in));
  in.cmdline = BuilderCmdline(o);
  in.cgroup = o.cgroup;
  in.builder_mode = o.builder_mode;
  if (o.warm_daemon) {
    in.daemon = "up";
    for (const auto& [ref, path] : o.warm_preload) {
      ASSIGN_OR_RETURN(std::string digest, cache.FileDigest(path));
      in.preloaded_images.push_back(absl::StrCat(ref, " ", digest));
    }
  }
  RETURN_IF_ERROR(ValidateSnapshotKeyInputs(in));
  return in;
}

}  // namespace kiln::harness
