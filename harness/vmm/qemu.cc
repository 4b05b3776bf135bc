// File: harness/vmm/qemu.cc
#include "harness/vmm/qemu.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/process/process.h"
#include "harness/vmm/vm_process.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

// QEMU option values escape ',' as ",,".
std::string Esc(absl::string_view value) { return absl::StrReplaceAll(value, {{",", ",,"}}); }

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status MakeDirs(const std::string& path) {
  std::string partial;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    partial += std::string(part);
    if (!partial.empty() && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return PosixError(errno, "mkdir", partial);
    }
    partial += "/";
  }
  return absl::OkStatus();
}

// QemuVm: one QEMU process (see Vm); the process handling is VmProcess's.
class QemuVm : public Vm {
 public:
  QemuVm(VmConfig config, QemuPaths paths, process::Process process, absl::Time start)
      : config_(std::move(config)),
        paths_(std::move(paths)),
        vmm_(&config_, std::move(process), start, /*kill_grace=*/absl::Seconds(2), [this] {
          if (config_.channel) unlink(config_.channel->host_socket_path.c_str());
        }) {}
  ~QemuVm() override { Kill(); }

  const VmConfig& config() const override { return config_; }
  bool Exited() override { return vmm_.Exited(); }
  absl::StatusOr<VmExit> Wait(absl::Duration timeout) override { return vmm_.Wait(timeout); }
  void Kill() override { vmm_.Kill(); }  // QEMU quits on SIGTERM: no orderly step
  std::string serial_log_path() const override { return paths_.serial_log; }
  std::string vmm_log_path() const override { return paths_.vmm_log; }
  int64_t peak_rss_bytes() const override { return vmm_.peak_rss_bytes(); }
  pid_t vmm_pid() const override { return vmm_.pid(); }
  bool detached() const override { return vmm_.detached(); }
  absl::Status Detach() override { return vmm_.Detach(); }

 private:
  VmConfig config_;
  QemuPaths paths_;
  VmProcess vmm_;
};

}  // namespace

const char* MachineName(Machine machine) {
  return machine == Machine::kMicrovm ? "microvm" : "q35";
}

const char* AccelName(Accel accel) {
  switch (accel) {
    case Accel::kAuto:
      return "auto";
    case Accel::kKvm:
      return "kvm";
    case Accel::kTcg:
      return "tcg";
  }
  return "unknown";
}

absl::StatusOr<Machine> ParseMachine(absl::string_view text) {
  if (text == "q35") return Machine::kQ35;
  if (text == "microvm") return Machine::kMicrovm;
  return absl::InvalidArgumentError(
      absl::StrCat("machine \"", text, "\": expected q35 or microvm"));
}

absl::StatusOr<Accel> ParseAccel(absl::string_view text) {
  if (text == "auto") return Accel::kAuto;
  if (text == "kvm") return Accel::kKvm;
  if (text == "tcg") return Accel::kTcg;
  return absl::InvalidArgumentError(
      absl::StrCat("accel \"", text, "\": expected auto, kvm or tcg"));
}

QemuPaths QemuPathsFor(const VmConfig& config) {
  QemuPaths p;
  p.serial_log = absl::StrCat(config.work_dir, "/serial.log");
  p.vmm_log = absl::StrCat(config.work_dir, "/qemu.log");
  return p;
}

std::string QemuKernelCmdline(const VmConfig& config, const QemuOptions& options,
                              int64_t tsc_khz) {
  std::vector<std::string> parts = {std::string(kQemuBaseCmdline)};
  if (options.machine == Machine::kMicrovm && options.accel == Accel::kTcg) {
    parts.push_back(absl::StrCat("tsc_early_khz=", tsc_khz, " tsc=reliable"));
  }
  std::string user(absl::StripAsciiWhitespace(config.cmdline));
  if (!user.empty()) parts.push_back(user);
  return absl::StrJoin(parts, " ");
}

absl::StatusOr<std::vector<std::string>> QemuArgv(const VmConfig& config,
                                                  const QemuOptions& options, int64_t tsc_khz) {
  RETURN_IF_ERROR(ValidateVmConfig(config));
  if (options.accel == Accel::kAuto) {
    return absl::InvalidArgumentError("QemuArgv: accel auto must be resolved first");
  }
  if (options.binary.empty()) return absl::InvalidArgumentError("QemuOptions.binary: empty");
  const bool microvm = options.machine == Machine::kMicrovm;
  if (!config.restore_from.empty() && !config.memory_file.empty()) {
    if (config.memory_file_shared) {
      return absl::InvalidArgumentError(absl::StrCat(
          "VmConfig: a VM restored from ", config.restore_from, " must map its memory_file ",
          config.memory_file, " private (memory_file_shared=false): shared, its writes would "
          "reach the snapshot"));
    }
    if (config.control_socket_path.empty()) {
      return absl::InvalidArgumentError(
          "VmConfig: a restore with a memory_file needs control_socket_path (the incoming "
          "migration is started over QMP)");
    }
  }
  const bool tcg = options.accel == Accel::kTcg;
  if (microvm && tcg && tsc_khz <= 0) {
    return absl::InvalidArgumentError("QemuArgv: microvm under TCG needs tsc_khz > 0");
  }
  if (options.tcg_tb_size_mib < 0) {
    return absl::InvalidArgumentError("QemuOptions.tcg_tb_size_mib: negative");
  }
  const QemuPaths paths = QemuPathsFor(config);
  const std::string bus = microvm ? "device" : "pci";

  std::vector<std::string> argv = {options.binary};
  auto add = [&argv](std::initializer_list<std::string> items) {
    argv.insert(argv.end(), items.begin(), items.end());
  };
  add({"-M", microvm ? "microvm" : "q35"});
  if (tcg) {
    std::string accel = "tcg";
    if (options.tcg_tb_size_mib > 0) absl::StrAppend(&accel, ",tb-size=", options.tcg_tb_size_mib);
    if (options.tcg_single_thread) absl::StrAppend(&accel, ",thread=single");
    add({"-accel", accel});
  } else {
    add({"-accel", "kvm", "-cpu", "host"});
  }
  add({"-m", absl::StrCat(config.memory_mib), "-smp", absl::StrCat(config.vcpus)});
  for (std::string& a : QemuMemoryBackendArgs(config)) argv.push_back(std::move(a));
  add({"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none"});
  add({"-serial", absl::StrCat("file:", Esc(paths.serial_log))});
  add({"-kernel", config.kernel_path});
  if (!config.initrd_path.empty()) add({"-initrd", config.initrd_path});
  add({"-append", QemuKernelCmdline(config, options, tsc_khz)});
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const Disk& d = config.disks[i];
    add({"-drive", absl::StrCat("file=", Esc(d.path), ",if=none,id=disk", i,
                                ",format=raw,readonly=", d.read_only ? "on" : "off")});
    add({"-device", absl::StrCat("virtio-blk-", bus, ",drive=disk", i)});
  }
  if (config.channel) {
    add({"-device", absl::StrCat("virtio-serial-", bus, ",id=vser0")});
    add({"-chardev", absl::StrCat("socket,id=chan0,path=", Esc(config.channel->host_socket_path),
                                  ",server=on,wait=off")});
    add({"-device", absl::StrCat("virtserialport,bus=vser0.0,chardev=chan0,name=",
                                 Esc(config.channel->name))});
  }
  if (!config.control_socket_path.empty()) {
    add({"-qmp", absl::StrCat("unix:", Esc(config.control_socket_path), ",server=on,wait=off")});
  }
  if (QemuIncomingDeferred(config)) {
    add({"-incoming", "defer"});
  } else if (!config.restore_from.empty()) {
    add({"-incoming", QemuIncomingUri(config.restore_from)});
  }
  return argv;
}

const char* SnapshotRamName(SnapshotRam mode) {
  return mode == SnapshotRam::kFile ? "file" : "stream";
}

absl::StatusOr<SnapshotRam> ParseSnapshotRam(absl::string_view text) {
  if (text == "file") return SnapshotRam::kFile;
  if (text == "stream") return SnapshotRam::kStream;
  return absl::InvalidArgumentError(
      absl::StrCat("--snapshot_ram=\"", text, "\": expected file or stream"));
}

SnapshotRamDecision DecideSnapshotRam(SnapshotRam requested, bool ignore_shared_offered,
                                      absl::string_view probe_detail) {
  SnapshotRamDecision d;
  if (requested == SnapshotRam::kStream) {
    d.reason = "stream requested";
    return d;
  }
  if (ignore_shared_offered) {
    d.mode = SnapshotRam::kFile;
    d.reason = absl::StrCat("file: QEMU offers ", kIgnoreSharedCapability);
    return d;
  }
  d.reason = absl::StrCat("stream (fallback: file mode needs the migration capability ",
                          kIgnoreSharedCapability, ", which this QEMU does not offer",
                          probe_detail.empty() ? "" : ": ", probe_detail, ")");
  return d;
}

bool QmpListsCapability(absl::string_view text, absl::string_view name) {
  // QEMU prints `"capability": "<name>"` (one space after the colon) in its QMP replies.
  return absl::StrContains(text, absl::StrCat("\"capability\": \"", name, "\""));
}

std::vector<std::string> QemuMemoryBackendArgs(const VmConfig& config) {
  if (config.memory_file.empty()) return {};
  return {"-object",
          absl::StrCat("memory-backend-file,id=ram0,size=", config.memory_mib,
                       "M,mem-path=", Esc(config.memory_file),
                       ",share=", config.memory_file_shared ? "on" : "off"),
          "-machine", "memory-backend=ram0"};
}

bool QemuIncomingDeferred(const VmConfig& config) {
  return !config.restore_from.empty() && !config.memory_file.empty() &&
         !config.memory_file_shared;
}

std::string ShellQuote(absl::string_view word) {
  return absl::StrCat("'", absl::StrReplaceAll(word, {{"'", "'\\''"}}), "'");
}

std::string QemuIncomingUri(absl::string_view state_path) {
  return absl::StrCat("exec:cat ", ShellQuote(state_path));
}

AccelDecision DecideAccel(Accel requested, const AccelFacts& facts) {
  AccelDecision d;
  switch (requested) {
    case Accel::kTcg:
      d.accel = Accel::kTcg;
      d.reason = "tcg requested";
      return d;
    case Accel::kKvm:
      d.accel = Accel::kKvm;
      d.reason = "kvm requested";
      return d;
    case Accel::kAuto:
      break;
  }
  d.accel = Accel::kTcg;
  if (!facts.cpu_has_virt) {
    d.reason = "auto: host CPU has no vmx/svm";
    return d;
  }
  if (!facts.dev_kvm_opens) {
    d.reason = "auto: /dev/kvm does not open";
    return d;
  }
  switch (facts.probe) {
    case ProbeResult::kNotRun:
      d.needs_probe = true;
      d.reason = "auto: vmx/svm and /dev/kvm present, probe boot pending";
      return d;
    case ProbeResult::kFailed:
      d.reason = absl::StrCat("auto: KVM probe boot failed",
                              facts.probe_detail.empty() ? "" : ": ", facts.probe_detail);
      return d;
    case ProbeResult::kPassed:
      d.accel = Accel::kKvm;
      d.reason = "auto: vmx/svm, /dev/kvm opens, KVM probe boot passed";
      return d;
  }
  return d;
}

bool CpuinfoHasVirtFlags(absl::string_view cpuinfo) {
  for (absl::string_view line : absl::StrSplit(cpuinfo, '\n')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (absl::StripAsciiWhitespace(kv.first) != "flags") continue;
    for (absl::string_view flag : absl::StrSplit(kv.second, ' ', absl::SkipEmpty())) {
      flag = absl::StripAsciiWhitespace(flag);
      if (flag == "vmx" || flag == "svm") return true;
    }
  }
  return false;
}

absl::StatusOr<int64_t> TscKhzFromCpuinfo(absl::string_view cpuinfo) {
  for (absl::string_view line : absl::StrSplit(cpuinfo, '\n')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (absl::StripAsciiWhitespace(kv.first) != "cpu MHz") continue;
    double mhz = 0;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(kv.second), &mhz) || !(mhz > 0) ||
        mhz >= 100000) {
      return absl::NotFoundError(absl::StrCat("cpuinfo: bad cpu MHz line: ", line));
    }
    return static_cast<int64_t>(std::llround(mhz * 1000));
  }
  return absl::NotFoundError("cpuinfo: no cpu MHz line");
}

namespace {

ProbeResult RunKvmProbe(const QemuOptions& options, const ProbeArtifacts& probe,
                        std::string* detail) {
  char tmpl[] = "/tmp/kiln-kvm-probe-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    *detail = "mkdtemp failed";
    return ProbeResult::kFailed;
  }
  VmConfig config;
  config.id = "kvm-probe";
  config.kernel_path = probe.kernel_path;
  config.initrd_path = probe.initrd_path;
  config.vcpus = 1;
  config.memory_mib = 256;
  config.deadline = absl::Seconds(60);
  config.work_dir = tmpl;
  QemuOptions kvm = options;
  kvm.accel = Accel::kKvm;
  absl::StatusOr<std::vector<std::string>> argv = QemuArgv(config, kvm, 0);
  ProbeResult result = ProbeResult::kFailed;
  if (!argv.ok()) {
    *detail = std::string(argv.status().message());
  } else if (absl::StatusOr<process::Process> p =
                 process::Process::Spawn(VmmSpawnOptions(*argv, QemuPathsFor(config).vmm_log));
             !p.ok()) {
    *detail = std::string(p.status().message());
  } else {
    absl::StatusOr<process::ProcessExit> e = p->Wait(absl::Now() + config.deadline);
    if (!e.ok()) p->Kill(absl::Seconds(1));
    std::string log = ReadFileOrEmpty(QemuPathsFor(config).serial_log);
    if (absl::StrContains(log, "KILN-INIT: ready")) {
      result = ProbeResult::kPassed;
    } else {
      *detail = e.ok() ? "guest never printed KILN-INIT: ready" : "guest hung (60 s)";
    }
  }
  unlink(QemuPathsFor(config).serial_log.c_str());
  unlink(QemuPathsFor(config).vmm_log.c_str());
  rmdir(tmpl);
  return result;
}

}  // namespace

AccelDecision ResolveAccel(const QemuOptions& options, const ProbeArtifacts& probe) {
  AccelFacts facts;
  facts.cpu_has_virt = CpuinfoHasVirtFlags(ReadFileOrEmpty("/proc/cpuinfo"));
  int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  facts.dev_kvm_opens = fd >= 0;
  if (fd >= 0) close(fd);
  AccelDecision d = DecideAccel(options.accel, facts);
  if (!d.needs_probe) return d;
  if (probe.kernel_path.empty() || probe.initrd_path.empty()) {
    facts.probe = ProbeResult::kFailed;
    facts.probe_detail = "no probe kernel/initrd given";
  } else {
    facts.probe = RunKvmProbe(options, probe, &facts.probe_detail);
  }
  return DecideAccel(options.accel, facts);
}

absl::StatusOr<std::string> ReadQemuVersion(const std::string& binary) {
  std::string cmd = absl::StrCat(ShellQuote(binary), " --version 2>/dev/null");
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return PosixError(errno, "popen", binary);
  std::string out;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  int rc = pclose(f);
  constexpr absl::string_view kPrefix = "QEMU emulator version ";
  size_t pos = out.find(std::string(kPrefix));
  if (rc != 0 || pos == std::string::npos) {
    return absl::NotFoundError(absl::StrCat("cannot run ", binary, " --version"));
  }
  std::string rest = out.substr(pos + kPrefix.size());
  return std::string(absl::StripAsciiWhitespace(rest.substr(0, rest.find('\n'))));
}

absl::StatusOr<std::unique_ptr<QemuVmm>> QemuVmm::Create(QemuOptions options,
                                                         const ProbeArtifacts& probe) {
  ASSIGN_OR_RETURN(std::string version, ReadQemuVersion(options.binary));
  AccelDecision d = ResolveAccel(options, probe);
  options.accel = d.accel;
  int64_t tsc_khz = options.tsc_khz;
  if (tsc_khz <= 0) {
    absl::StatusOr<int64_t> khz = TscKhzFromCpuinfo(ReadFileOrEmpty("/proc/cpuinfo"));
    tsc_khz = khz.ok() ? *khz : kFallbackTscKhz;
  }
  return std::unique_ptr<QemuVmm>(new QemuVmm(std::move(options), d.reason, version, tsc_khz));
}

absl::StatusOr<bool> QemuOffersCapability(const std::string& binary,
                                          absl::string_view capability) {
  const std::string cmd = absl::StrCat(
      "printf '%s\\n' '{\"execute\":\"qmp_capabilities\"}' "
      "'{\"execute\":\"query-migrate-capabilities\"}' '{\"execute\":\"quit\"}' | ",
      ShellQuote(binary),
      " -M none -nodefaults -no-user-config -display none -qmp stdio 2>/dev/null");
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return PosixError(errno, "popen", binary);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  pclose(f);
  if (!absl::StrContains(out, "\"capability\"")) {
    return absl::NotFoundError(absl::StrCat(binary, " -qmp stdio printed no migration capability "
                                            "list (", out.size(), " bytes)"));
  }
  return QmpListsCapability(out, capability);
}

const SnapshotRamDecision& QemuVmm::SnapshotRamMode() {
  if (!snapshot_ram_) {
    if (options_.snapshot_ram == SnapshotRam::kStream) {
      snapshot_ram_ = DecideSnapshotRam(SnapshotRam::kStream, false);
    } else {
      absl::StatusOr<bool> offered = QemuOffersCapability(options_.binary,
                                                          kIgnoreSharedCapability);
      snapshot_ram_ = DecideSnapshotRam(
          options_.snapshot_ram, offered.ok() && *offered,
          offered.ok() ? absl::StrCat("QEMU ", version_)
                       : std::string(offered.status().message()));
    }
  }
  return *snapshot_ram_;
}

std::string QemuVmm::Describe() const {
  return absl::StrCat("QEMU ", version_, ", machine ", MachineName(options_.machine), ", accel ",
                      AccelName(options_.accel), " (", accel_reason_, ")");
}

absl::StatusOr<std::unique_ptr<Vm>> QemuVmm::Boot(const VmConfig& requested) {
  RETURN_IF_ERROR(ValidateVmConfig(requested));
  ASSIGN_OR_RETURN(const VmConfig config, ResolveArtifacts(requested));
  ASSIGN_OR_RETURN(std::vector<std::string> argv, QemuArgv(config, options_, tsc_khz_));
  RETURN_IF_ERROR(MakeDirs(config.work_dir));
  QemuPaths paths = QemuPathsFor(config);
  unlink(paths.serial_log.c_str());
  if (config.channel) unlink(config.channel->host_socket_path.c_str());
  absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(process::Process process,
                   process::Process::Spawn(VmmSpawnOptions(std::move(argv), paths.vmm_log,
                                                           /*die_with_parent=*/!config.detachable)));
  return std::unique_ptr<Vm>(new QemuVm(config, std::move(paths), std::move(process), start));
}

}  // namespace kiln::harness
