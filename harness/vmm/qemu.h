// File: harness/vmm/qemu.h
// -----------------------------------------------------------------------------
//
// The QEMU backend of the VMM interface (harness/vmm/vmm.h): `qemu-system-x86_64` with `-M q35`
// (virtio-*-pci devices) or `-M microvm` (virtio-*-device, i.e. virtio-mmio), under KVM or TCG.
//
// Split as everywhere in kiln: pure functions build the plan (QemuKernelCmdline, QemuArgv,
// DecideAccel, the /proc/cpuinfo readers) and are unit-tested without running anything; QemuVmm
// is the thin executor that starts the process (own process group, PR_SET_PDEATHSIG=SIGKILL so
// QEMU dies with the harness) and tears the whole process tree down on every path.
//
// Accel `auto` (DecideAccel): KVM only if the host CPU has vmx/svm, /dev/kvm opens read-write,
// and a probe boot under KVM really runs the guest to `KILN-INIT: ready`; else TCG. (Machines
// with a PVM /dev/kvm but no vmx/svm exist: there a stock guest hangs under KVM; see
// /work/shared/notes/platform.md.)
//
// Example:
//
//   QemuOptions options;                       // q35, accel auto
//   ASSIGN_OR_RETURN(std::unique_ptr<QemuVmm> vmm,
//                    QemuVmm::Create(options, ProbeArtifacts{kernel, initrd}));
//   std::cout << vmm->Describe();              // "QEMU 7.2.22, q35, accel tcg (no vmx/svm ...)"
//   ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, vmm->Boot(config));
#ifndef KILN_HARNESS_QEMU_H_
#define KILN_HARNESS_QEMU_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// Machine: the QEMU machine type.
enum class Machine {
  kQ35,      // -M q35: PCI; virtio-*-pci devices
  kMicrovm,  // -M microvm: no PCI; virtio-*-device (mmio). Under TCG the kernel cmdline gets
             // tsc_early_khz=<khz> tsc=reliable (else TSC calibration randomly hangs).
};

// Accel: the accelerator. kAuto is resolved to kKvm or kTcg by DecideAccel/ResolveAccel.
enum class Accel { kAuto, kKvm, kTcg };

// MachineName(m): "q35" / "microvm". AccelName(a): "auto" / "kvm" / "tcg".
const char* MachineName(Machine machine);
const char* AccelName(Accel accel);

// ParseMachine("q35"|"microvm"), ParseAccel("auto"|"kvm"|"tcg"): InvalidArgument otherwise.
absl::StatusOr<Machine> ParseMachine(absl::string_view text);
absl::StatusOr<Accel> ParseAccel(absl::string_view text);

// SnapshotRam: where a warm snapshot keeps the guest RAM (harness/vmm/snapshot_qmp.h).
//   kStream  the migration stream (`state`) holds every touched RAM page; a restore reads and
//            copies them all into the new QEMU's anonymous memory.
//   kFile    the guest RAM is a file (`ram`, memory-backend-file): the VM that makes the
//            snapshot maps it shared, so at the save its RAM is already in the file and the
//            stream skips it (migration capability x-ignore-shared); a restored VM maps the same
//            file private (copy-on-write): it reads pages from the page cache on demand (shared
//            between VMs restored from one snapshot) and its writes never reach the file.
enum class SnapshotRam { kStream, kFile };

// SnapshotRamName(m): "stream" / "file". ParseSnapshotRam("stream"|"file"): InvalidArgument
// otherwise (naming --snapshot_ram).
const char* SnapshotRamName(SnapshotRam mode);
absl::StatusOr<SnapshotRam> ParseSnapshotRam(absl::string_view text);

// kIgnoreSharedCapability: the QEMU migration capability file mode needs (QEMU >= 4.0).
inline constexpr char kIgnoreSharedCapability[] = "x-ignore-shared";

// SnapshotRamDecision: the RAM mode a warm snapshot uses, and why (one phrase).
struct SnapshotRamDecision {
  SnapshotRam mode = SnapshotRam::kStream;
  std::string reason;
};

// DecideSnapshotRam(requested, ignore_shared_offered, probe_detail): pure. kStream -> stream
// ("stream requested"). kFile -> file if QEMU offers x-ignore-shared, else stream with the
// reason naming what is missing (and probe_detail, e.g. why the probe failed).
SnapshotRamDecision DecideSnapshotRam(SnapshotRam requested, bool ignore_shared_offered,
                                      absl::string_view probe_detail = "");

// QmpListsCapability(text, name): true if `text` (QMP output holding the return of
// `query-migrate-capabilities`) lists {"capability": "<name>"} as an entry. Pure.
bool QmpListsCapability(absl::string_view text, absl::string_view name);

// QemuMemoryBackendArgs(config): the argv part that backs the guest RAM with
// config.memory_file ({"-object", "memory-backend-file,id=ram0,size=<M>M,mem-path=<file>,
// share=on|off", "-machine", "memory-backend=ram0"}); empty without a memory_file. Pure.
std::vector<std::string> QemuMemoryBackendArgs(const VmConfig& config);

// QemuIncomingDeferred(config): true when QemuArgv starts the restore as `-incoming defer`
// (restore_from and a private memory_file): the caller starts the migration over QMP
// (ResumeQemuVm(const VmConfig&, ...)). Pure.
bool QemuIncomingDeferred(const VmConfig& config);

// QemuOptions: how QemuVmm runs QEMU. Pure data.
struct QemuOptions {
  // binary: the QEMU executable (looked up in PATH if it has no '/').
  std::string binary = "qemu-system-x86_64";
  Machine machine = Machine::kQ35;
  Accel accel = Accel::kAuto;
  // tcg_tb_size_mib: TCG translation cache size (MiB); 0 = QEMU's default (~1 GiB of RSS).
  // 256 keeps QEMU's RSS near 700 MB at the same speed (platform notes).
  int tcg_tb_size_mib = 256;
  // tcg_single_thread: `-accel tcg,thread=single` (avoids the QEMU 7.2 MTTCG soft lockups
  // seen at -smp 2, at ~40 % more wall time).
  bool tcg_single_thread = false;
  // tsc_khz: host TSC frequency for microvm+TCG (tsc_early_khz=); 0 = read /proc/cpuinfo.
  int64_t tsc_khz = 0;
  // snapshot_ram: where warm snapshots keep guest RAM (`--snapshot_ram`; SnapshotRam). kFile
  // falls back to kStream, saying why, where QEMU lacks x-ignore-shared
  // (QemuVmm::SnapshotRamMode).
  SnapshotRam snapshot_ram = SnapshotRam::kFile;
};

// QemuPaths: the host files of one QEMU VM, all inside VmConfig::work_dir.
struct QemuPaths {
  std::string serial_log;   // <work_dir>/serial.log  (guest ttyS0)
  std::string vmm_log;      // <work_dir>/qemu.log    (QEMU's stdout+stderr)
};

// QemuPathsFor(config): the QemuPaths for `config.work_dir`. Pure.
QemuPaths QemuPathsFor(const VmConfig& config);

// kQemuBaseCmdline: the kernel command line keys QemuKernelCmdline always passes
// (docs/interfaces.md): serial console, reboot on panic immediately (with -no-reboot: QEMU
// exits), a soft lockup panics, reboot by triple fault.
inline constexpr absl::string_view kQemuBaseCmdline =
    "console=ttyS0 panic=-1 softlockup_panic=1 reboot=t";

// QemuKernelCmdline(config, options, tsc_khz): kQemuBaseCmdline, then (microvm + TCG only)
// "tsc_early_khz=<tsc_khz> tsc=reliable", then config.cmdline. Pure.
// REQUIRES: options.accel is kKvm or kTcg; tsc_khz > 0 when it is used.
std::string QemuKernelCmdline(const VmConfig& config, const QemuOptions& options,
                              int64_t tsc_khz);

// QemuArgv(config, options, tsc_khz): the full argv (argv[0] = options.binary) that boots
// `config`. Pure: touches nothing. InvalidArgument if the config is invalid
// (ValidateVmConfig), if options.accel is kAuto (resolve it first), or if microvm+TCG has no
// tsc_khz > 0. Option values containing ',' are escaped as ',,' (QEMU's rule).
//
// Snapshots (issue 12): config.control_socket_path adds `-qmp unix:<path>,server=on,wait=off`
// (harness/vmm/snapshot_qmp.h speaks it); config.restore_from adds `-incoming
// QemuIncomingUri(restore_from)`: QEMU starts paused, loads the saved state and waits for
// `cont`. Everything else is the same argv, so a VM saved from QemuArgv(c) restores with
// QemuArgv(c') where c' differs only in id/work_dir/socket paths/deadline (QEMU requires the
// same machine, memory, devices and backing files; the chardev/serial backends may differ).
// config.memory_file adds QemuMemoryBackendArgs (after -m); with restore_from it must be
// private (memory_file_shared false: a restored VM never writes into a snapshot's RAM file)
// and needs control_socket_path, and -incoming is `defer` (QemuIncomingDeferred): the
// x-ignore-shared capability has to be set before the incoming migration starts.
absl::StatusOr<std::vector<std::string>> QemuArgv(const VmConfig& config,
                                                  const QemuOptions& options, int64_t tsc_khz);

// ShellQuote(word): `word` in single quotes for /bin/sh ('\'' for each '). Pure.
std::string ShellQuote(absl::string_view word);

// QemuIncomingUri(state_path): "exec:cat '<state_path>'", the -incoming URI that reads a saved
// migration stream (works on every QEMU; `file:` exists only from QEMU 8.2). Pure.
std::string QemuIncomingUri(absl::string_view state_path);

// ----------------------------------------------------------------------------
// Accel decision
// ----------------------------------------------------------------------------

// ProbeResult: the outcome of a probe boot under KVM.
enum class ProbeResult { kNotRun, kPassed, kFailed };

// AccelFacts: what the host offers. Pure data, filled by ResolveAccel from the host.
struct AccelFacts {
  bool cpu_has_virt = false;     // /proc/cpuinfo flags has vmx or svm
  bool dev_kvm_opens = false;    // open("/dev/kvm", O_RDWR) succeeded
  ProbeResult probe = ProbeResult::kNotRun;
  std::string probe_detail;      // why the probe failed (for the reason text)
};

// AccelDecision: the chosen accel and why (one human phrase). `needs_probe`: the facts so far
// allow KVM, but no probe boot has run yet: run it, set facts.probe, and decide again.
struct AccelDecision {
  Accel accel = Accel::kTcg;
  std::string reason;
  bool needs_probe = false;
};

// DecideAccel(requested, facts): pure. kTcg -> TCG. kKvm -> KVM (the caller asked; no
// checks). kAuto -> TCG unless cpu_has_virt && dev_kvm_opens && probe == kPassed; with the first
// two true and probe == kNotRun, returns needs_probe = true (accel TCG until then).
AccelDecision DecideAccel(Accel requested, const AccelFacts& facts);

// CpuinfoHasVirtFlags(cpuinfo): true if a "flags" line of /proc/cpuinfo text lists vmx or
// svm as a whole word. Pure.
bool CpuinfoHasVirtFlags(absl::string_view cpuinfo);

// TscKhzFromCpuinfo(cpuinfo): the first "cpu MHz : <float>" line of /proc/cpuinfo text in kHz
// (rounded); NotFound if there is none or it does not parse to a value in (0, 100 GHz). Pure.
absl::StatusOr<int64_t> TscKhzFromCpuinfo(absl::string_view cpuinfo);

// kFallbackTscKhz: the TSC kHz used when /proc/cpuinfo has no usable "cpu MHz" (2 GHz; only
// the early calibration uses it, the kernel refines it under tsc=reliable).
inline constexpr int64_t kFallbackTscKhz = 2000000;

// ProbeArtifacts: a kernel + initrd the KVM probe boot may use (the initrd's init must print
// `KILN-INIT: ready` and power off when kiln.exec is unset, as //init:init does). Empty: no
// probe possible, so auto never picks KVM.
struct ProbeArtifacts {
  std::string kernel_path;
  std::string initrd_path;
};

// ResolveAccel(options, probe): executor. Reads /proc/cpuinfo and opens /dev/kvm, runs the
// probe boot (at most 60 s, in a temp dir) if DecideAccel asks for it, and returns the final
// decision. Never fails: any problem with the host means TCG, and the reason says why.
AccelDecision ResolveAccel(const QemuOptions& options, const ProbeArtifacts& probe);

// ----------------------------------------------------------------------------
// QemuVmm
// ----------------------------------------------------------------------------

// QemuVmm: the QEMU backend. Boot() starts `qemu-system-x86_64` in its own process group with
// PR_SET_PDEATHSIG(SIGKILL); Vm::Kill() sends SIGTERM to the group (QEMU quits cleanly on
// it), then SIGKILL after 2 s, and reaps it.
class QemuVmm : public Vmm {
 public:
  // Create(options, probe): resolves options.accel (ResolveAccel) and the TSC kHz, and reads
  // the QEMU version (`<binary> --version`). NotFound if the binary does not run.
  static absl::StatusOr<std::unique_ptr<QemuVmm>> Create(QemuOptions options,
                                                         const ProbeArtifacts& probe = {});

  std::string Name() const override { return "qemu"; }
  std::string Describe() const override;
  absl::StatusOr<std::unique_ptr<Vm>> Boot(const VmConfig& config) override;

  // options(): the options with accel resolved (kKvm or kTcg).
  const QemuOptions& options() const { return options_; }
  // accel_reason(): why that accel was chosen.
  const std::string& accel_reason() const { return accel_reason_; }
  // version(): e.g. "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)".
  const std::string& version() const { return version_; }
  int64_t tsc_khz() const { return tsc_khz_; }
  // SnapshotRamMode(): the RAM mode warm snapshots use with this QEMU: options().snapshot_ram,
  // except that kFile needs x-ignore-shared, which is probed once (QemuOffersCapability) and
  // memoized; without it: kStream, the reason saying so. Thread-compatible.
  const SnapshotRamDecision& SnapshotRamMode();

 private:
  QemuVmm(QemuOptions options, std::string accel_reason, std::string version, int64_t tsc_khz)
      : options_(std::move(options)),
        accel_reason_(std::move(accel_reason)),
        version_(std::move(version)),
        tsc_khz_(tsc_khz) {}

  QemuOptions options_;
  std::string accel_reason_;
  std::string version_;
  int64_t tsc_khz_;
  std::optional<SnapshotRamDecision> snapshot_ram_;
};

// ReadQemuVersion(binary): the version text after "QEMU emulator version " of
// `<binary> --version`; NotFound if it does not run.
absl::StatusOr<std::string> ReadQemuVersion(const std::string& binary);

// QemuOffersCapability(binary, capability): whether `<binary> -M none -qmp stdio` lists the
// migration capability in `query-migrate-capabilities` (a ~50 ms QEMU start, no guest).
// NotFound if QEMU does not run or prints no capability list.
absl::StatusOr<bool> QemuOffersCapability(const std::string& binary,
                                          absl::string_view capability);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_QEMU_H_
