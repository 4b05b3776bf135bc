// File: harness/build_main.cc
// //harness:build: run your own context + Dockerfile with secrets in a real builder VM (issue
// 18). The logic is harness/builder/build_command.h; this file reads flags and prints.
//
//   bazel run //harness:build -- --secret id=tok,src=$HOME/tok --preload base.tar DIR
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "harness/builder/build_command.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/runner.h"
#include "harness/vmm/vmm_select.h"

// docker buildx build's flags (repeatable ones are taken out of argv by SplitBuildArgv; they
// are declared here for --help).
ABSL_FLAG(std::string, secret, "",
          "repeatable: id=ID,src=FILE or id=ID,env=VARIABLE (read on the host; the value never "
          "appears in an argv, a child's environment, a log or a host file)");
ABSL_FLAG(std::string, build_arg, "", "repeatable (--build-arg): KEY=VALUE, or KEY (from the environment)");
ABSL_FLAG(std::string, output, "",
          "repeatable (-o): type=oci,dest=FILE (OCI archive) or type=docker[,dest=FILE] "
          "(docker-loadable tar; without dest: docker load into the host's dockerd)");
ABSL_FLAG(std::string, preload, "",
          "repeatable: a base image as a docker-archive tar (docker save), an OCI archive tar or "
          "an OCI layout directory; the guest has no network, so every FROM must be preloaded");
ABSL_FLAG(std::string, file, "", "(-f) the Dockerfile (default CONTEXT/Dockerfile)");
ABSL_FLAG(std::string, tag, "", "(-t) the image's name (default kiln-build:latest)");
ABSL_FLAG(std::string, target, "", "the stage to build");
ABSL_FLAG(bool, no_cache, false,
          "accepted; every build runs with a fresh BuildKit data root, so nothing is cached");
// kiln's own.
ABSL_FLAG(std::string, vmm, "auto", "auto (Cloud Hypervisor where usable, else QEMU), cloud-hypervisor or qemu");
ABSL_FLAG(std::string, ch_binary, "cloud-hypervisor", "Cloud Hypervisor executable");
ABSL_FLAG(std::string, machine, "q35", "QEMU machine: q35 or microvm");
ABSL_FLAG(std::string, accel, "auto", "QEMU accel: auto, kvm or tcg");
ABSL_FLAG(int, memory, 1024, "guest memory, MiB");
ABSL_FLAG(int, vcpus, 2, "guest vCPUs");
ABSL_FLAG(std::string, builder_mode, "rootless", "the daemon: rootless (production's) or rootful");
ABSL_FLAG(std::string, warm, "off",
          "the builder VM from a warm snapshot (QEMU, Cloud Hypervisor), as //harness:verify --warm: off (boot "
          "it), auto (restore it from the snapshot of this builder config, made on first use; "
          "cold on a VMM without snapshots) or on (the same; an error on such a VMM); a failed "
          "restore boots cold and says so");
ABSL_FLAG(std::string, snapshot_dir, "",
          "warm snapshot cache (default: $KILN_SNAPSHOT_DIR, else /var/lib/kiln/snapshots)");
ABSL_FLAG(std::string, snapshot_ram, "file",
          "where a QEMU warm snapshot keeps guest RAM: file (a RAM file restored VMs map "
          "copy-on-write; stream where QEMU lacks x-ignore-shared, saying so) or stream (in the "
          "migration stream; a restore copies it), as //harness:verify --snapshot_ram");
ABSL_FLAG(bool, keep_failed_builders, false,
          "keep the builder VM running when the build fails, for `kilnctl builders`");
ABSL_FLAG(absl::Duration, keep_ttl, absl::Minutes(30), "time to live of a kept builder");
ABSL_FLAG(std::string, state_dir, "",
          "keep state directory (default: $KILN_STATE_DIR, else /var/lib/kiln/builders)");
ABSL_FLAG(bool, json, false, "print one JSON result document on stdout (logs go to stderr)");
ABSL_FLAG(bool, leak_scan, true, "scan the image and the logs for every secret");
ABSL_FLAG(absl::Duration, deadline, absl::Minutes(20), "the VM's whole life");
ABSL_FLAG(absl::Duration, stall_timeout, absl::Minutes(5),
          "a build whose agent sends nothing for this long is cut off (and retried once)");
ABSL_FLAG(std::string, log_dir, "",
          "where the VM's logs (serial.log, build-build.log) and scratch go (default: a new "
          "/tmp/kiln-build-XXXXXX)");
ABSL_FLAG(std::string, kernel, "", "guest kernel (bazel run passes //images:vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd (bazel run passes //images:initrd)");
ABSL_FLAG(std::string, builder_disk, "",
          "builder root disk (bazel run passes //images/rootfs:builder_trixie_disk)");

namespace kiln::harness {
namespace {

int Usage(const std::string& message) {
  std::cerr << "kiln build: " << message << "\n(see --help)\n";
  return kBuildExitUsage;
}

int Main(const SplitArgv& split, const std::vector<char*>& positional) {
  if (positional.size() != 2) {
    return Usage(positional.size() < 2 ? "no CONTEXT directory given"
                                       : "exactly one CONTEXT directory, please");
  }
  // Under `bazel run` the process runs in its runfiles tree: a user's relative paths are
  // relative to where bazel was run (BUILD_WORKING_DIRECTORY).
  const char* bwd = getenv("BUILD_WORKING_DIRECTORY");
  const std::string base = bwd == nullptr ? "" : bwd;
  auto user_path = [&](const std::string& p) { return ResolveUserPath(p, base); };
  BuildCommand cmd;
  cmd.context = user_path(positional[1]);
  auto values = [&](const char* name) {
    auto it = split.values.find(name);
    return it == split.values.end() ? std::vector<std::string>{} : it->second;
  };
  auto last = [&](const char* name) {
    std::vector<std::string> v = values(name);
    return v.empty() ? std::string() : v.back();
  };
  cmd.dockerfile = last("file").empty() ? "" : user_path(last("file"));
  cmd.tag = last("tag");
  cmd.target = last("target");
  for (const std::string& v : values("preload")) cmd.preload.push_back(user_path(v));
  cmd.no_cache = absl::GetFlag(FLAGS_no_cache);
  cmd.leak_scan = absl::GetFlag(FLAGS_leak_scan);
  for (const std::string& v : values("secret")) {
    absl::StatusOr<SecretSource> s = ParseSecretFlag(v);
    if (!s.ok()) return Usage(std::string(s.status().message()));
    if (s->kind == SecretSource::Kind::kFile) s->src = user_path(s->src);
    cmd.secrets.push_back(*s);
  }
  const EnvLookup env = SystemEnv();
  for (const std::string& v : values("build-arg")) {
    absl::StatusOr<std::optional<agent::BuildArg>> a = ParseBuildArgFlag(v, env);
    if (!a.ok()) return Usage(std::string(a.status().message()));
    if (*a) cmd.build_args.push_back(**a);
  }
  for (const std::string& v : values("output")) {
    absl::StatusOr<OutputSpec> o = ParseOutputFlag(v);
    if (!o.ok()) return Usage(std::string(o.status().message()));
    if (!o->dest.empty()) o->dest = user_path(o->dest);
    cmd.outputs.push_back(*o);
  }
  const bool json = absl::GetFlag(FLAGS_json);
  auto say = [](absl::string_view line) { std::cerr << "kiln build: " << line << "\n"; };

  // Everything the host can check, before any VM.
  absl::StatusOr<PreparedBuild> prepared = PrepareBuild(cmd, env);
  if (!prepared.ok()) return Usage(std::string(prepared.status().message()));
  // The secrets are in memory now: no child (the VMM) inherits a variable that held one.
  for (const std::string& v : prepared->env_vars_used) unsetenv(v.c_str());

  BuilderArtifacts artifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                             absl::GetFlag(FLAGS_builder_disk)};
  if (absl::Status s = ValidateBuilderArtifacts(artifacts); !s.ok()) {
    return Usage(absl::StrCat(s.message(), " (pass --kernel, --initrd, --builder_disk; `bazel "
                                           "run //harness:build` passes them)"));
  }
  BuildRunOptions run;
  run.artifacts = artifacts;
  // A fresh id per run: a kept builder is recorded (and its logs saved) under it.
  run.vm.id = absl::StrCat("kiln-build-",
                           absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::UTCTimeZone()),
                           "-", getpid());
  run.vm.builder_mode = absl::GetFlag(FLAGS_builder_mode);
  run.vm.vcpus = absl::GetFlag(FLAGS_vcpus);
  run.vm.memory_mib = absl::GetFlag(FLAGS_memory);
  run.vm.memory_flag = "--memory";
  run.vm.deadline = absl::GetFlag(FLAGS_deadline);
  run.vm.stall_timeout = absl::GetFlag(FLAGS_stall_timeout);
  run.vm.keep.keep_failed_builders = absl::GetFlag(FLAGS_keep_failed_builders);
  run.vm.keep.ttl = absl::GetFlag(FLAGS_keep_ttl);
  run.vm.keep.state_dir =
      absl::GetFlag(FLAGS_state_dir).empty() ? "" : user_path(absl::GetFlag(FLAGS_state_dir));
  if (absl::Status s = ApplyWarmFlags(
          absl::GetFlag(FLAGS_warm),
          absl::GetFlag(FLAGS_snapshot_dir).empty() ? "" : user_path(absl::GetFlag(FLAGS_snapshot_dir)),
          &run.vm);
      !s.ok()) {
    return Usage(std::string(s.message()));
  }
  if (run.vm.vcpus < 1 || run.vm.memory_mib < 256) {
    return Usage("--vcpus must be >= 1 and --memory >= 256 (MiB)");
  }
  if (absl::Status s = ValidateBuilderVmOptions(run.vm); !s.ok()) {
    return Usage(std::string(s.message()));
  }
  QemuOptions qemu;
  absl::StatusOr<Machine> machine = ParseMachine(absl::GetFlag(FLAGS_machine));
  absl::StatusOr<Accel> accel = ParseAccel(absl::GetFlag(FLAGS_accel));
  absl::StatusOr<VmmKind> vmm_kind = ParseVmmKind(absl::GetFlag(FLAGS_vmm));
  absl::StatusOr<SnapshotRam> snapshot_ram = ParseSnapshotRam(absl::GetFlag(FLAGS_snapshot_ram));
  for (const absl::Status& s :
       {machine.status(), accel.status(), vmm_kind.status(), snapshot_ram.status()}) {
    if (!s.ok()) return Usage(std::string(s.message()));
  }
  qemu.machine = *machine;
  qemu.accel = *accel;
  qemu.snapshot_ram = *snapshot_ram;
  std::string dir = absl::GetFlag(FLAGS_log_dir);
  if (!dir.empty()) {
    dir = user_path(dir);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Usage(absl::StrCat("--log_dir ", dir, ": ", ec.message()));
  } else {
    char tmpl[] = "/tmp/kiln-build-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return Usage("mkdtemp /tmp/kiln-build-XXXXXX failed");
    dir = tmpl;
  }
  run.work_dir = dir + "/work";
  say(absl::StrCat("choosing the VMM (--vmm=", VmmKindName(*vmm_kind), ") ..."));
  absl::StatusOr<SelectedVmm> vmm =
      MakeVmm({.kind = *vmm_kind,
               .ch_binary = absl::GetFlag(FLAGS_ch_binary),
               .qemu = qemu,
               .probe = ProbeArtifacts{artifacts.kernel, artifacts.initrd}});
  if (!vmm.ok()) {
    std::cerr << "kiln build: " << vmm.status().message() << "\n";
    return kBuildExitVm;
  }
  say(absl::StrCat(vmm->vmm->Describe(), " (", vmm->reason, ")"));
  run.vm.on_progress = say;
  run.progress = say;
  // The live log: BuildKit's lines as they stream (the agent redacted them).
  run.on_log = [](const agent::Log& l) { std::cerr << l.text << "\n"; };
  VmFactory factory(*vmm->vmm, dir + "/vms", dir + "/logs");
  BuildOutcome o = RunPreparedBuild(factory, *prepared, run);
  if (json) {
    std::cout << BuildOutcomeJson(o) << "\n";
  } else {
    std::cout << FormatSummary(o);
  }
  std::cout.flush();
  return o.exit_code;
}

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(absl::StrCat(
      "run a context + Dockerfile with secrets in a real builder VM (BuildKit, rootless, as\n"
      "production), stream its log, scan the result for the secrets, keep the VM on failure.\n"
      "  bazel run //harness:build -- [flags] CONTEXT\n"
      "  e.g. --secret id=tok,src=FILE --preload base.tar -t app:1 --output type=oci,dest=app.tar\n"
      "Bad input is refused before a VM boots. Flags as docker buildx build where they mean\n"
      "the same (-f, --secret, --build-arg, --target, -t, --output, --no-cache).\n"
      "CONTEXT/.dockerignore is honoured as docker does (excluded files are never sent; the\n"
      "Dockerfile and .dockerignore always are). --warm=auto|on restores the builder from a\n"
      "warm snapshot (--snapshot_dir), as verify --warm does.\n",
      kiln::harness::kBuildExitCodesHelp));
  std::vector<std::string> args(argv, argv + argc);
  absl::StatusOr<kiln::harness::SplitArgv> split = kiln::harness::SplitBuildArgv(args);
  if (!split.ok()) {
    std::cerr << "kiln build: " << split.status().message() << "\n";
    return kiln::harness::kBuildExitUsage;
  }
  std::vector<char*> rest;
  for (std::string& a : split->rest) rest.push_back(a.data());
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(rest.size()), rest.data());
  return kiln::harness::Main(*split, positional);
}
