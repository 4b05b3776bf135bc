// File: harness/verify.cc
// //harness:verify, kiln's main job: boots real VMs and proves the builder works.
//
//   suite cgroup   the cgroup scenarios (harness/scenarios/scenarios.h): cgroup2 rw / ro / off (negative
//                  control) / a bad kiln.* value, in VMs booted from the cgroup test root;
//   suite builder  agent-vsock, then every builder scenario folder found under --scenario_dir
//                  (harness/builder/scenarios/<name>/: Dockerfile + spec.json, checked by the
//                  one generic checker of harness/builder/builder_spec.h), each in its own builder VM
//                  booted from the builder disk (Debian 13, the daemon rootless as uid 1000
//                  unless the spec says), run as //harness:build runs a command: real BuildKit
//                  builds with secrets, leak scans, refusals, the {rootless, rootful} x {cgroup
//                  rw, ro, off} x {RUN, RUN with a secret} matrix. --builder_root=debian12 runs
//                  the folders that do not pin a builder mode, rootful, on the Debian 12 disk
//                  (the ones that do were measured on Debian 13).
//
// Prints a report: kernel, VMM (and why it was chosen), machine/accel, each check PASS/FAIL
// with its duration, the builder phase timings. Exit status 0 if every check passed, 1 if any
// failed, 2 on a usage or setup error (e.g. --vmm=cloud-hypervisor where it cannot run).
//
//   bazel run //harness:verify
//   bazel run //harness:verify -- --suites=cgroup --scenarios=cgroup-rw,cgroup-off
//   bazel run //harness:verify -- --vmm=cloud-hypervisor      (fails fast without CH + KVM)
//   bazel run //harness:verify -- --suites=builder \
//       --builder_image=127.0.0.1:5000/kiln/builder@sha256:...  (the image a registry serves)
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "harness/builder/build_command.h"
#include "harness/builder/builder_scenarios.h"
#include "harness/builder/builder_spec.h"
#include "images/tool/image_disk.h"
#include "publish/http.h"
#include "publish/pull.h"
#include "publish/registry.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/runner.h"
#include "harness/scenarios/scenarios.h"
#include "harness/vmm/vmm_select.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel, a PVH vmlinux (default: //images:vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd (default: //images:initrd)");
ABSL_FLAG(std::string, root_disk, "",
          "ext4 cgroup test root disk (default: //images/rootfs:testroot_disk)");
ABSL_FLAG(std::string, builder_disk, "",
          "ext4 Debian 13 builder root disk with the agent (default: "
          "//images/rootfs:builder_trixie_disk)");
ABSL_FLAG(std::string, builder_disk_debian12, "",
          "ext4 Debian 12 builder root disk (default: //images/rootfs:builder_disk)");
ABSL_FLAG(std::string, builder_root, "debian13",
          "builder root: debian13 (--builder_disk; rootless by default, and the matrix) or "
          "debian12 (--builder_disk_debian12; rootful only, no matrix)");
ABSL_FLAG(std::string, builder_image, "",
          "run the builder suite on the disk made from this builder OCI image instead of "
          "--builder_disk: an OCI image layout directory, or HOST[:PORT]/REPO@sha256:<hex> (or "
          ":TAG, resolved and reported as its digest) pulled with publish's distribution client "
          "(loopback over plain HTTP, else HTTPS; credentials from Docker's config.json), every "
          "digest verified, the disk made by kiln-image image-to-disk; the report names the "
          "image digest");
ABSL_FLAG(std::string, mkext4, "", "images/rootfs/mkext4.sh (for --builder_image)");
ABSL_FLAG(std::string, mke2fs_conf, "", "images/rootfs/mke2fs.conf (for --builder_image)");
ABSL_FLAG(std::string, builder_mode, "",
          "the agent's --builder_mode for the reference and secrets groups: rootless or "
          "rootful (default: rootless on debian13, rootful on debian12)");
ABSL_FLAG(std::string, busybox_image, "",
          "docker-archive base image the builds preload (default: //harness/builder:busybox_image)");
ABSL_FLAG(std::string, examples_readme, "",
          "agent/runner/examples/README.md; locates the example Dockerfiles");
ABSL_FLAG(std::string, suites, "cgroup,builder", "comma-separated suites: cgroup, builder");
ABSL_FLAG(std::string, vmm, "auto",
          "VMM: auto (Cloud Hypervisor if its binary and usable KVM exist, else QEMU), "
          "cloud-hypervisor or qemu");
ABSL_FLAG(std::string, ch_binary, "cloud-hypervisor", "Cloud Hypervisor executable");
ABSL_FLAG(std::string, machine, "q35", "QEMU machine: q35 or microvm");
ABSL_FLAG(std::string, accel, "auto",
          "QEMU accel: auto (KVM only where vmx/svm, /dev/kvm and a probe boot work), kvm or tcg");
ABSL_FLAG(std::string, scenarios, "", "comma-separated cgroup scenario names (default: all)");
ABSL_FLAG(std::string, builder_groups, "",
          "comma-separated builder suite VMs to run: agent-vsock, scenario folder names such as "
          "reference, or the C++ group builder-reference (default: agent-vsock and every "
          "folder; e.g. a reduced publish gate in a test)");
ABSL_FLAG(std::string, scenario_dir, "harness/builder/scenarios",
          "the builder scenario folders (each <name>/Dockerfile + spec.json) the builder suite "
          "runs");
ABSL_FLAG(std::string, log_dir, "",
          "where VM work dirs and serial logs go (default: $TEST_UNDECLARED_OUTPUTS_DIR, else "
          "a new /tmp/kiln-verify-XXXXXX)");
ABSL_FLAG(int, vcpus, 2, "vCPUs per VM");
ABSL_FLAG(bool, keep_failed_builders, false,
          "keep a builder VM whose build failed running for `kilnctl builders`");
ABSL_FLAG(int, keep_ttl_s, 1800, "time to live of a kept builder, seconds");
ABSL_FLAG(int, keep_max, 3, "cap on kept builders (the oldest is reaped first)");
ABSL_FLAG(std::string, state_dir, "",
          "keep state directory (default: $KILN_STATE_DIR, else kiln's default)");
ABSL_FLAG(std::string, warm, "off",
          "builder VMs from warm snapshots (QEMU, Cloud Hypervisor): off (boot each), auto (restore from "
          "the snapshot of each builder config, made once; cold on a VMM without snapshots) or "
          "on (the same; an error on such a VMM); a failed restore boots cold and says so");
ABSL_FLAG(std::string, snapshot_dir, "",
          "warm snapshot cache (default: $KILN_SNAPSHOT_DIR, else /var/lib/kiln/snapshots)");
ABSL_FLAG(std::string, snapshot_ram, "file",
          "where a QEMU warm snapshot keeps guest RAM: file (a RAM file restored VMs map "
          "copy-on-write; stream where QEMU lacks x-ignore-shared, saying so) or stream (in the "
          "migration stream; a restore copies it)");
ABSL_FLAG(int, memory_mib, 512, "guest memory per cgroup VM, MiB");
ABSL_FLAG(int, builder_memory_mib, 1024, "guest memory per builder VM, MiB");
ABSL_FLAG(int, max_image_mib, 8192,
          "largest image archive accepted from a builder VM, MiB (larger: the job fails, the "
          "partial file is deleted)");
ABSL_FLAG(int, deadline_s, 180, "deadline per cgroup VM, seconds");

namespace kiln::harness {
namespace {

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// BuilderImage: what --builder_image made.
struct BuilderImage {
  std::string source;           // the flag's value
  std::string manifest_digest;  // the image tested
  std::string disk;             // the ext4 disk made from it
  int64_t pull_ms = 0, unpack_ms = 0, mkfs_ms = 0;
};

// DiskFromBuilderImage(ref, dir): pulls `ref` (unless it is a layout directory) into
// dir/builder-image, verifies every digest, makes dir/builder-image.ext4 the way
// //images:builder_disk is made (same UUID, label, /dev devices only).
absl::StatusOr<BuilderImage> DiskFromBuilderImage(const std::string& ref, const std::string& dir) {
  BuilderImage out;
  out.source = ref;
  std::string layout = ref;
  struct stat st;
  if (stat(ref.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    absl::StatusOr<publish::ImageRef> image = publish::ImageRef::Parse(ref);
    if (!image.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--builder_image: not a directory, and ", image.status().message()));
    }
    publish::RegistryOptions ro;
    ro.use_tls = !image->repository.IsLoopback();
    std::string cfg;
    if (const char* dc = std::getenv("DOCKER_CONFIG"); dc != nullptr && *dc != '\0') {
      cfg = absl::StrCat(dc, "/config.json");
    } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
      cfg = absl::StrCat(home, "/.docker/config.json");
    }
    if (FILE* f = cfg.empty() ? nullptr : std::fopen(cfg.c_str(), "r"); f != nullptr) {
      std::string text;
      char buf[4096];
      for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
      std::fclose(f);
      absl::StatusOr<std::optional<publish::Credentials>> c =
          publish::CredentialsFromDockerConfig(text, image->repository.host);
      if (!c.ok()) return absl::InvalidArgumentError(absl::StrCat(cfg, ": ", c.status().message()));
      ro.credentials = *c;
    }
    publish::CurlTransport http(publish::TransportOptions{});
    publish::RegistryClient client(image->repository, ro, &http);
    layout = dir + "/builder-image";
    std::error_code ec;
    std::filesystem::remove_all(layout, ec);
    const absl::Time start = absl::Now();
    absl::StatusOr<std::string> digest = publish::PullImage(&client, image->reference, layout);
    if (!digest.ok()) {
      return absl::Status(digest.status().code(), absl::StrCat("--builder_image: pulling ",
                                                               ref, ": ", digest.status().message()));
    }
    out.pull_ms = absl::ToInt64Milliseconds(absl::Now() - start);
  }
  images::DiskOptions o;
  o.mkext4 = absl::GetFlag(FLAGS_mkext4);
  o.mke2fs_conf = absl::GetFlag(FLAGS_mke2fs_conf);
  o.uuid = "6b696c6e-6275-4169-8c64-650000000013";  // //images:builder_disk's
  o.label = "kiln-builder13";
  o.unpack.device_dirs = {"dev"};
  o.work_dir = dir;
  out.disk = dir + "/builder-image.ext4";
  absl::StatusOr<images::DiskStats> d = images::ImageToDisk(layout, "", out.disk, o);
  if (!d.ok()) {
    return absl::Status(d.status().code(), absl::StrCat("--builder_image ", ref,
                                                        ": making the disk: ", d.status().message()));
  }
  out.manifest_digest = d->manifest_digest;
  out.unpack_ms = d->unpack_ms;
  out.mkfs_ms = d->mkfs_ms;
  return out;
}

struct CgroupReport {
  std::vector<ScenarioOutcome> outcomes;
  std::vector<std::string> titles;
};

int Main() {
  std::set<std::string> suites;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_suites), ',', absl::SkipEmpty())) {
    if (s != "cgroup" && s != "builder") {
      std::cerr << "verify: unknown suite \"" << s << "\" (want cgroup, builder)\n";
      return 2;
    }
    suites.insert(std::string(s));
  }
  if (suites.empty()) {
    std::cerr << "verify: --suites is empty\n";
    return 2;
  }
  const bool run_cgroup = suites.count("cgroup") > 0;
  const bool run_builder = suites.count("builder") > 0;
  std::set<std::string> only_groups;
  for (absl::string_view g :
       absl::StrSplit(absl::GetFlag(FLAGS_builder_groups), ',', absl::SkipEmpty())) {
    bool known = g == "agent-vsock";
    for (const BuilderGroup& b : BuilderGroups()) known = known || b.name == g;
    struct stat st;
    known = known || stat(absl::StrCat(absl::GetFlag(FLAGS_scenario_dir), "/", g, "/spec.json")
                              .c_str(), &st) == 0;
    if (!known) {
      std::cerr << "verify: --builder_groups: unknown builder group \"" << g << "\"\n";
      return 2;
    }
    only_groups.insert(std::string(g));
  }
  auto group_selected = [&only_groups](const std::string& name) {
    return only_groups.empty() || only_groups.count(name) > 0;
  };

  Artifacts artifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                      absl::GetFlag(FLAGS_root_disk)};
  if (run_cgroup) {
    if (absl::Status s = ValidateArtifacts(artifacts); !s.ok()) {
      std::cerr << "verify: " << s.message()
                << "\n(pass --kernel, --initrd, --root_disk; see --help)\n";
      return 2;
    }
  }
  const std::string builder_root = absl::GetFlag(FLAGS_builder_root);
  if (builder_root != "debian13" && builder_root != "debian12") {
    std::cerr << "verify: --builder_root=" << builder_root << ": want debian13 or debian12\n";
    return 2;
  }
  const bool debian13 = builder_root == "debian13";
  BuilderScenarioInputs builder_in;
  builder_in.artifacts = {artifacts.kernel, artifacts.initrd,
                          absl::GetFlag(debian13 ? FLAGS_builder_disk
                                                 : FLAGS_builder_disk_debian12)};
  builder_in.vm.builder_mode = absl::GetFlag(FLAGS_builder_mode);
  if (builder_in.vm.builder_mode.empty()) {
    builder_in.vm.builder_mode = debian13 ? kBuilderModeRootless : kBuilderModeRootful;
  }
  // 2 vCPUs under TCG on a loaded host: a rootless daemon start alone took 11-17 s.
  builder_in.vm.deadline = absl::Seconds(420);
  if (absl::Status s = ValidateBuilderVmOptions(builder_in.vm); !s.ok()) {
    std::cerr << "verify: " << s.message() << "\n";
    return 2;
  }
  builder_in.busybox_image = absl::GetFlag(FLAGS_busybox_image);
  builder_in.examples_dir = Dirname(absl::GetFlag(FLAGS_examples_readme));
  builder_in.vm.vcpus = absl::GetFlag(FLAGS_vcpus);
  builder_in.vm.memory_mib = absl::GetFlag(FLAGS_builder_memory_mib);
  builder_in.vm.memory_flag = "--builder_memory_mib";
  if (absl::GetFlag(FLAGS_max_image_mib) < 1) {
    std::cerr << "verify: --max_image_mib must be >= 1\n";
    return 2;
  }
  builder_in.vm.max_image_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_max_image_mib)) << 20;
  builder_in.vm.keep.keep_failed_builders = absl::GetFlag(FLAGS_keep_failed_builders);
  builder_in.vm.keep.ttl = absl::Seconds(absl::GetFlag(FLAGS_keep_ttl_s));
  builder_in.vm.keep.max_kept = absl::GetFlag(FLAGS_keep_max);
  builder_in.vm.keep.state_dir = absl::GetFlag(FLAGS_state_dir);
  absl::StatusOr<WarmMode> warm = ParseWarmMode(absl::GetFlag(FLAGS_warm));
  if (!warm.ok()) {
    std::cerr << "verify: " << warm.status().message() << "\n";
    return 2;
  }
  builder_in.vm.warm = *warm;
  builder_in.vm.snapshot_dir = absl::GetFlag(FLAGS_snapshot_dir);

  QemuOptions qemu;
  absl::StatusOr<Machine> machine = ParseMachine(absl::GetFlag(FLAGS_machine));
  absl::StatusOr<Accel> accel = ParseAccel(absl::GetFlag(FLAGS_accel));
  absl::StatusOr<VmmKind> vmm_kind = ParseVmmKind(absl::GetFlag(FLAGS_vmm));
  absl::StatusOr<SnapshotRam> snapshot_ram = ParseSnapshotRam(absl::GetFlag(FLAGS_snapshot_ram));
  for (const absl::Status& s :
       {machine.status(), accel.status(), vmm_kind.status(), snapshot_ram.status()}) {
    if (!s.ok()) {
      std::cerr << "verify: " << s.message() << "\n";
      return 2;
    }
  }
  qemu.machine = *machine;
  qemu.accel = *accel;
  qemu.snapshot_ram = *snapshot_ram;

  std::vector<Scenario> scenarios;
  if (absl::GetFlag(FLAGS_scenarios).empty()) {
    scenarios = CgroupScenarios();
  } else {
    for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_scenarios), ',', absl::SkipEmpty())) {
      absl::StatusOr<Scenario> s = FindScenario(name);
      if (!s.ok()) {
        std::cerr << "verify: " << s.status().message() << "\n";
        return 2;
      }
      scenarios.push_back(*s);
    }
  }

  std::string dir = absl::GetFlag(FLAGS_log_dir);
  if (dir.empty()) dir = OutputDirFromEnv();
  if (dir.empty()) {
    char tmpl[] = "/tmp/kiln-verify-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::perror("verify: mkdtemp");
      return 2;
    }
    dir = tmpl;
  }
  {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);  // --log_dir=a/new/dir is made, parents too
    if (ec) {
      std::cerr << "verify: cannot create --log_dir " << dir << ": " << ec.message() << "\n";
      return 2;
    }
  }
  builder_in.work_dir = dir + "/builder-work";
  std::optional<BuilderImage> builder_image;
  if (!absl::GetFlag(FLAGS_builder_image).empty()) {
    if (!run_builder || !debian13) {
      std::cerr << "verify: --builder_image needs the builder suite on the Debian 13 builder\n";
      return 2;
    }
    std::cerr << "verify: making the builder disk from --builder_image="
              << absl::GetFlag(FLAGS_builder_image) << " ...\n";
    absl::StatusOr<BuilderImage> b = DiskFromBuilderImage(absl::GetFlag(FLAGS_builder_image), dir);
    if (!b.ok()) {
      std::cerr << "verify: " << b.status().message() << "\n";
      return 2;
    }
    builder_image = *b;
    builder_in.artifacts.builder_disk = b->disk;
    std::cerr << "verify: builder image " << b->manifest_digest << " -> " << b->disk << "\n";
  }
  if (run_builder) {
    if (mkdir(builder_in.work_dir.c_str(), 0755) != 0 && errno != EEXIST) {
      std::perror(("verify: mkdir " + builder_in.work_dir).c_str());
      return 2;
    }
    if (absl::Status s = ValidateBuilderScenarioInputs(builder_in); !s.ok()) {
      std::cerr << "verify: " << s.message()
                << "\n(pass --builder_disk, --busybox_image, --examples_readme; see --help)\n";
      return 2;
    }
  }

  std::cerr << "verify: choosing the VMM (--vmm=" << VmmKindName(*vmm_kind) << ") ...\n";
  absl::StatusOr<SelectedVmm> vmm =
      MakeVmm({.kind = *vmm_kind,
               .ch_binary = absl::GetFlag(FLAGS_ch_binary),
               .qemu = qemu,
               .probe = ProbeArtifacts{artifacts.kernel, artifacts.initrd}});
  if (!vmm.ok()) {
    std::cerr << "verify: " << vmm.status().message() << "\n";
    return 2;
  }
  std::cerr << "verify: " << vmm->vmm->Describe() << " (" << vmm->reason << "); agent channel "
            << ChannelTransportName(vmm->vmm->channel_transport()) << "\n";

  // Scenario VMs (the cgroup suite, agent-vsock): size and deadline from the flags.
  ScenarioVmOptions vm_options;
  vm_options.vcpus = absl::GetFlag(FLAGS_vcpus);
  vm_options.memory_mib = absl::GetFlag(FLAGS_memory_mib);
  vm_options.deadline = absl::Seconds(absl::GetFlag(FLAGS_deadline_s));

  // --- the cgroup suite ---
  CgroupReport cgroup;
  int64_t peak_rss = 0;
  std::string kernel_version;
  if (run_cgroup) {
    VmFactory factory(*vmm->vmm, dir + "/work", dir + "/logs");
    for (size_t i = 0; i < scenarios.size(); ++i) {
      std::cerr << absl::StrFormat("verify: cgroup [%d/%d] booting %s ...\n", i + 1,
                                   scenarios.size(), scenarios[i].name);
      cgroup.outcomes.push_back(RunScenario(factory, scenarios[i], artifacts, vm_options));
      cgroup.titles.push_back(scenarios[i].title);
      const ScenarioOutcome& o = cgroup.outcomes.back();
      std::cerr << absl::StrFormat("verify: cgroup [%d/%d] %s %s in %d ms%s\n", i + 1,
                                   scenarios.size(), o.name, o.status.ok() ? "passed" : "FAILED",
                                   absl::ToInt64Milliseconds(o.duration),
                                   o.attempts > 1 ? " (retried once)" : "");
      if (kernel_version.empty()) kernel_version = o.kernel_version;
      peak_rss = std::max(peak_rss, o.vmm_peak_rss_bytes);
    }
    factory.KillAll();
  }

  // --- the builder suite ---
  std::vector<BuilderGroupOutcome> groups;
  // FolderResult: one scenario folder's run, as the report prints it.
  struct FolderResult {
    std::string name, title, observed, skipped;
    std::vector<std::string> failures;
    int64_t ms = 0;
  };
  std::vector<FolderResult> folders;
  std::string folder_setup_error;
  std::optional<ScenarioOutcome> vsock;
  if (run_builder) {
    VmFactory factory(*vmm->vmm, dir + "/builder-vms", dir + "/logs");
    if (group_selected("agent-vsock")) {
      // The agent's AF_VSOCK channel (Cloud Hypervisor's) in the builder guest, via
      // vsock_loopback: proven on every backend, QEMU included.
      ScenarioVmOptions builder_vm = vm_options;
      builder_vm.memory_mib = absl::GetFlag(FLAGS_builder_memory_mib);
      std::cerr << "verify: builder [0] booting agent-vsock ...\n";
      vsock = RunScenario(factory, AgentVsockScenario(),
                          Artifacts{artifacts.kernel, artifacts.initrd,
                                    builder_in.artifacts.builder_disk},
                          builder_vm);
      std::cerr << absl::StrFormat("verify: builder [0] agent-vsock %s in %d ms\n",
                                   vsock->status.ok() ? "passed" : "FAILED",
                                   absl::ToInt64Milliseconds(vsock->duration));
    }
    std::vector<BuilderGroup> all;
    for (const BuilderGroup& g : BuilderGroups()) {
      // The C++ group (the folder "reference" is its twin): only when named.
      if (only_groups.count(g.name) > 0) all.push_back(g);
    }
    for (size_t i = 0; i < all.size(); ++i) {
      std::cerr << absl::StrFormat("verify: builder [%d/%d] booting builder VM %s ...\n", i + 1,
                                   all.size(), all[i].name);
      groups.push_back(RunBuilderGroup(factory, all[i], builder_in));
      std::cerr << absl::StrFormat("verify: builder [%d/%d] %s %s\n", i + 1, all.size(),
                                   all[i].name, groups.back().AllPassed() ? "passed" : "FAILED");
    }
    // Every scenario folder, one builder VM each (none for a scenario refused before boot).
    absl::StatusOr<std::vector<std::string>> dirs =
        ListScenarioDirs(absl::GetFlag(FLAGS_scenario_dir));
    if (!dirs.ok()) {
      folder_setup_error = std::string(dirs.status().message());
      dirs = std::vector<std::string>{};
    }
    for (size_t i = 0; i < dirs->size(); ++i) {
      FolderResult f;
      f.name = (*dirs)[i].substr((*dirs)[i].rfind('/') + 1);
      if (!group_selected(f.name)) continue;
      const absl::Time t0 = absl::Now();
      absl::StatusOr<ScenarioSpec> spec = LoadScenario((*dirs)[i]);
      absl::StatusOr<ScenarioSecrets> secrets =
          spec.ok() ? MakeScenarioSecrets(*spec) : absl::StatusOr<ScenarioSecrets>(spec.status());
      if (!secrets.ok()) {
        f.failures = {std::string(secrets.status().message())};
        folders.push_back(std::move(f));
        continue;
      }
      f.title = spec->title;
      if (spec->builder_mode_set && !debian13) {
        f.skipped = "pins a builder mode measured on the Debian 13 builder";
        folders.push_back(std::move(f));
        continue;
      }
      if (!spec->builder_mode_set) spec->builder_mode = builder_in.vm.builder_mode;
      std::cerr << absl::StrFormat("verify: builder scenario [%d/%d] %s ...\n", i + 1,
                                   dirs->size(), f.name);
      BuildRunOptions run;
      run.artifacts = builder_in.artifacts;
      run.vm = builder_in.vm;
      run.work_dir = absl::StrCat(builder_in.work_dir, "/scenario-", f.name);
      const ScenarioObservation o =
          RunBuilderScenario(factory, *spec, *secrets, run, builder_in.busybox_image);
      f.failures = CheckScenario(*spec, *secrets, o);
      f.observed = absl::StrCat(o.result, ", exit ", o.exit_code,
                                o.leaks.empty() ? "" : absl::StrCat(", ", o.leaks.size(), " leak finding(s)"));
      f.ms = absl::ToInt64Milliseconds(absl::Now() - t0);
      std::cerr << absl::StrFormat("verify: builder scenario [%d/%d] %s %s\n", i + 1,
                                   dirs->size(), f.name, f.failures.empty() ? "passed" : "FAILED");
      folders.push_back(std::move(f));
    }
    factory.KillAll();
  }

  // --- the report ---
  int checks = 0, failed = 0;
  std::cout << "\nkiln verify\n";
  std::cout << "  kernel   " << (kernel_version.empty() ? "(see serial logs)" : kernel_version)
            << "  (" << artifacts.kernel << ")\n";
  std::cout << "  VMM      " << vmm->vmm->Describe() << "\n";
  std::cout << "           chosen: " << vmm->reason << "\n";
  if (peak_rss > 0) {
    std::cout << "  cgroup VMs: " << absl::GetFlag(FLAGS_vcpus) << " vCPUs, "
              << absl::GetFlag(FLAGS_memory_mib) << " MiB, VMM peak RSS "
              << peak_rss / (1024 * 1024) << " MiB\n";
  }
  std::cout << "  logs     " << dir << "/logs/<vm-id>/serial.log\n";
  if (builder_image) {
    std::cout << "  builder image " << builder_image->manifest_digest << "\n"
              << "           from " << builder_image->source << " (pull " << builder_image->pull_ms
              << " ms, digests verified; unpack " << builder_image->unpack_ms << " ms, mkext4 "
              << builder_image->mkfs_ms << " ms) -> " << builder_image->disk << "\n";
  }
  if (run_cgroup) {
    std::cout << "\n  suite cgroup: cgroup v2 in the VM, runc's view\n";
    for (size_t i = 0; i < cgroup.outcomes.size(); ++i) {
      const ScenarioOutcome& o = cgroup.outcomes[i];
      ++checks;
      if (!o.status.ok()) ++failed;
      std::cout << absl::StrFormat("  %-4s  %-20s %7d ms  %s\n", o.status.ok() ? "PASS" : "FAIL",
                                   o.name, absl::ToInt64Milliseconds(o.duration),
                                   o.status.ok() ? o.summary : cgroup.titles[i]);
      if (!o.retry_reason.empty()) std::cout << "        retried once after: " << o.retry_reason << "\n";
      if (!o.status.ok()) {
        for (absl::string_view line : absl::StrSplit(o.status.message(), '\n')) {
          std::cout << "        | " << line << "\n";
        }
      }
    }
  }
  if (run_builder) {
    std::cout << "\n  suite builder: BuildKit builds with secrets in builder VMs ("
              << (debian13 ? "Debian 13" : "Debian 12") << " builder, "
              << builder_in.vm.builder_mode << " by default)\n";
    if (vsock) {
      ++checks;
      if (!vsock->status.ok()) ++failed;
      std::cout << absl::StrFormat("  %-4s  %-20s %7d ms  %s\n", vsock->status.ok() ? "PASS" : "FAIL",
                                   vsock->name, absl::ToInt64Milliseconds(vsock->duration),
                                   vsock->status.ok() ? vsock->summary
                                                      : std::string(vsock->status.message()));
    }
    for (const BuilderGroupOutcome& g : groups) {
      PrintBuilderGroup(g, std::cout);
      for (const ScenarioResult& s : g.scenarios) {
        ++checks;
        if (!s.status.ok()) ++failed;
      }
      if (g.scenarios.empty()) {
        ++checks;
        ++failed;
      }
    }
  }
  if (run_builder) {
    std::cout << "\n  builder scenario folders (" << absl::GetFlag(FLAGS_scenario_dir)
              << "; one builder VM each, none for a refusal before boot)\n";
    if (!folder_setup_error.empty()) {
      ++checks;
      ++failed;
      std::cout << "  FAIL  scenario folders: " << folder_setup_error << "\n";
    }
    for (const FolderResult& f : folders) {
      if (!f.skipped.empty()) {
        std::cout << absl::StrFormat("  SKIP  %-34s %s\n", f.name, f.skipped);
        continue;
      }
      ++checks;
      if (!f.failures.empty()) ++failed;
      std::cout << absl::StrFormat("  %-4s  %-34s %7d ms  %s\n", f.failures.empty() ? "PASS" : "FAIL",
                                   f.name, f.ms, f.failures.empty() ? f.observed : f.title);
      for (const std::string& why : f.failures) std::cout << "        | " << why << "\n";
    }
  }
  std::cout << absl::StrFormat("\n%d checks: %d passed, %d failed\n", checks, checks - failed,
                               failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "kiln's main job: boots real VMs, runs the cgroup and builder (BuildKit + secrets)\n"
      "scenarios, and prints a PASS/FAIL report with timings.\n"
      "  bazel run //harness:verify [-- --suites=cgroup,builder --vmm=auto|qemu|cloud-hypervisor\n"
      "                                 --scenarios=cgroup-rw,... --machine=q35|microvm]\n"
      "Exit status: 0 all passed, 1 a check failed, 2 usage or setup error.");
  absl::ParseCommandLine(argc, argv);
  return kiln::harness::Main();
}
