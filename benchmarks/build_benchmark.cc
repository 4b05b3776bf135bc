// build_benchmark: the secret build of agent/runner/examples/reference (FROM kiln-busybox:1,
// two RUN steps, one reading a build secret) in builder VMs (harness/builder/builder_client.h:
// RunBuilderJobs, fresh VM per build) against the same build by dockerd on the host
// (//agent/runner:kiln-build). The VM side runs every builder variant of --variants in the
// same run (issue 11):
//   rootless-debian13  production's: Debian 13 disk, daemon rootless as uid 1000, cgroup
//                      delegated (the default builder; its figures are also build/vm/*)
//   rootful-debian13   the same disk, daemon as the guest's root
//   rootful-debian12   the Debian 12 disk (dockerd 20.10), today's other path
//   <variant>-warm     the same builder restored from a warm snapshot (issue 12,
//                      BuilderVmOptions::warm): the snapshot is made once before the rounds
//                      (figure build/<variant>-warm/snapshot_make), then every round restores
//                      it; build/warm_over_cold/<phase> pairs it with <variant> per round
// alternated per round (host, then each variant, the order rotated every round) so that all
// see the same host load; per-pair ratios rootless/rootful (Debian 13) and Debian 13/Debian
// 12 (rootful) for the phases daemon start (guest dockerd_start), build (guest build) and
// total (VMM start to VM gone), and each builder disk's size. Writes a kiln results document
// ({"figures": [...], "records": [...]}, benchmarks/results.h) to --json_out, which
// //benchmarks reads as it is.
//
//   bazel run //benchmarks:build_benchmark -- --runs=2 --json_out=/tmp/build.json
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmarks/results.h"
#include "benchmarks/stats.h"
#include "harness/builder/builder_client.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/runner.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel (PVH vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd");
ABSL_FLAG(std::string, builder_disk, "", "ext4 Debian 13 builder root disk with the agent");
ABSL_FLAG(std::string, builder_disk_debian12, "",
          "ext4 Debian 12 builder root disk (rootful-debian12)");
ABSL_FLAG(std::string, variants, "rootless-debian13,rootful-debian13,rootful-debian12",
          "builder variants, comma-separated: rootless-debian13, rootful-debian13, "
          "rootful-debian12");
ABSL_FLAG(std::string, warm, "off",
          "warm snapshots for the plain variants: off, auto or on (BuilderVmOptions::warm); a "
          "variant named <variant>-warm is always warm");
ABSL_FLAG(std::string, snapshot_ram, "file",
          "where the -warm variants' snapshot keeps guest RAM: file (a RAM file the restored VM "
          "maps copy-on-write) or stream (in the migration stream; the restore copies it)");
ABSL_FLAG(bool, host, true, "also build on the host (kiln-build) and report vm/host ratios");
ABSL_FLAG(std::string, busybox_image, "", "docker-archive of kiln-busybox:1");
ABSL_FLAG(std::string, context, "", "build context dir (agent/runner/examples/reference)");
ABSL_FLAG(std::string, kiln_build, "", "//agent/runner:kiln-build");
ABSL_FLAG(int, runs, 2, "builds per side (>= 1)");
ABSL_FLAG(std::string, jobs, "",
          "after the rounds, for each N of this comma-separated list (e.g. 1,2,4): N builds of the "
          "first warm variant at once, in N VMs restored from its one snapshot (total wall time, "
          "per-build VMM start to result, ratio to N x the single build)");
ABSL_FLAG(int, memory_mib, 1024, "builder VM memory, MiB");
ABSL_FLAG(std::string, accel, "auto", "auto, kvm or tcg");
ABSL_FLAG(std::string, json_out, "", "write the results document here");
ABSL_FLAG(std::string, work_dir, "/tmp/kiln-build-benchmark", "scratch directory");

namespace kiln::bench {
namespace {

// kPhases: the phases both sides report (guest: BuildResult.phases; host: kiln-build's line).
constexpr const char* kPhases[] = {"dockerd_start", "preload", "build", "export"};

struct HostRun {
  double wall_ms = 0;
  std::map<std::string, double> phases;
};

// Variant: one builder VM configuration.
struct Variant {
  std::string name;  // rootless-debian13 | rootful-debian13 | rootful-debian12 [-warm]
  std::string mode;  // harness::kBuilderModeRootless | kBuilderModeRootful
  std::string disk;  // builder disk path
  harness::WarmMode warm = harness::WarmMode::kOff;
};

// VmSamples: what the runs of one variant measured.
struct VmSamples {
  Samples total, ready, gone, rss, lockups, result;
  std::map<std::string, Samples> phase;
};

absl::StatusOr<std::vector<Variant>> ParseVariants(absl::string_view list) {
  std::vector<Variant> out;
  absl::StatusOr<harness::WarmMode> plain_warm = harness::ParseWarmMode(absl::GetFlag(FLAGS_warm));
  if (!plain_warm.ok()) return plain_warm.status();
  for (absl::string_view name : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    absl::string_view v = name;
    const bool warm = absl::ConsumeSuffix(&v, "-warm");
    if (v == "rootless-debian13") {
      out.push_back({std::string(v), harness::kBuilderModeRootless, absl::GetFlag(FLAGS_builder_disk)});
    } else if (v == "rootful-debian13") {
      out.push_back({std::string(v), harness::kBuilderModeRootful, absl::GetFlag(FLAGS_builder_disk)});
    } else if (v == "rootful-debian12") {
      out.push_back({std::string(v), harness::kBuilderModeRootful,
                     absl::GetFlag(FLAGS_builder_disk_debian12)});
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown variant \"", v, "\" (want rootless-debian13, rootful-debian13, rootful-debian12)"));
    }
    if (out.back().disk.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("variant ", v, " needs its disk flag"));
    }
    out.back().name = std::string(name);
    out.back().warm = warm ? harness::WarmMode::kOn : *plain_warm;
  }
  if (out.empty()) return absl::InvalidArgumentError("--variants is empty");
  return out;
}

// RunHost: kiln-build on this machine; parses "kiln-build: ok ... <phase>_ms=N ...".
absl::StatusOr<HostRun> RunHost(const std::string& work, const std::string& secret_file, int i) {
  std::string out = absl::StrCat(work, "/host-", i, ".out");
  std::system(absl::StrCat("mkdir -p '", work, "/host-", i, "'").c_str());
  std::string cmd = absl::StrCat(
      "'", absl::GetFlag(FLAGS_kiln_build), "' --context '", work, "/context",
      "' --secret id=build_token,src='", secret_file, "' --preload '",
      absl::GetFlag(FLAGS_busybox_image), "' --tag kiln-bench/ref:1 --out '", work,
      "/host-", i, ".oci.tar' --work_dir '", work, "/host-", i, "' >'", out, "' 2>'", out, ".log'");
  absl::Time t0 = absl::Now();
  int rc = std::system(cmd.c_str());
  HostRun r;
  r.wall_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
  std::ifstream in(out);
  std::string line;
  std::getline(in, line);
  if (rc != 0 || line.rfind("kiln-build: ok", 0) != 0) {
    return absl::InternalError(absl::StrCat("kiln-build failed (status ", rc, "): ", line, "; log ", out, ".log"));
  }
  for (absl::string_view kv : absl::StrSplit(line, ' ')) {
    std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    double v;
    if (absl::ConsumeSuffix(&p.first, "_ms") && absl::SimpleAtod(p.second, &v)) {
      r.phases[std::string(p.first)] = v;
    }
  }
  return r;
}

int Main() {
  const int runs = absl::GetFlag(FLAGS_runs);
  for (const auto* f : {&FLAGS_kernel, &FLAGS_initrd, &FLAGS_builder_disk, &FLAGS_busybox_image,
                        &FLAGS_context, &FLAGS_kiln_build}) {
    if (absl::GetFlag(*f).empty()) {
      std::fprintf(stderr, "build_benchmark: --kernel, --initrd, --builder_disk, --busybox_image, "
                           "--context and --kiln_build are required (bazel run sets them)\n");
      return 2;
    }
  }
  if (runs < 1) {
    std::fprintf(stderr, "build_benchmark: --runs must be >= 1\n");
    return 2;
  }
  const std::string work = absl::GetFlag(FLAGS_work_dir);
  std::system(absl::StrCat("rm -rf '", work, "' && mkdir -p '", work, "'").c_str());
  // The context as real files: in runfiles every file is a symlink to the source tree, which
  // a context tar must not carry (the agent refuses links that leave the context).
  if (std::system(absl::StrCat("cp -rL '", absl::GetFlag(FLAGS_context), "' '", work,
                               "/context'").c_str()) != 0) {
    std::fprintf(stderr, "build_benchmark: cannot copy the context %s\n", absl::GetFlag(FLAGS_context).c_str());
    return 1;
  }
  std::string secret = absl::StrCat("kiln-bench-", std::random_device{}(), "-", std::random_device{}());
  std::string secret_file = work + "/build_token";
  std::ofstream(secret_file) << secret;

  harness::QemuOptions qopt;
  absl::StatusOr<harness::Accel> accel = harness::ParseAccel(absl::GetFlag(FLAGS_accel));
  if (!accel.ok()) {
    std::fprintf(stderr, "build_benchmark: %s\n", accel.status().ToString().c_str());
    return 2;
  }
  qopt.accel = *accel;
  absl::StatusOr<harness::SnapshotRam> ram = harness::ParseSnapshotRam(absl::GetFlag(FLAGS_snapshot_ram));
  if (!ram.ok()) {
    std::fprintf(stderr, "build_benchmark: %s\n", ram.status().ToString().c_str());
    return 2;
  }
  qopt.snapshot_ram = *ram;
  absl::StatusOr<std::vector<Variant>> variants = ParseVariants(absl::GetFlag(FLAGS_variants));
  if (!variants.ok()) {
    std::fprintf(stderr, "build_benchmark: %s\n", variants.status().message().data());
    return 2;
  }
  const std::string kernel = absl::GetFlag(FLAGS_kernel), initrd = absl::GetFlag(FLAGS_initrd);
  auto vmm = harness::QemuVmm::Create(qopt, harness::ProbeArtifacts{kernel, initrd});
  if (!vmm.ok()) {
    std::fprintf(stderr, "build_benchmark: %s\n", vmm.status().ToString().c_str());
    return 1;
  }
  std::printf("build_benchmark: %s\n", (*vmm)->Describe().c_str());
  harness::VmFactory factory(**vmm, work + "/vms", work + "/logs");
  const std::string context_tar = absl::StrCat(work, "/context.tar");
  if (absl::StatusOr<uint64_t> n = harness::WriteDirectoryTar(work + "/context", context_tar);
      !n.ok()) {
    std::fprintf(stderr, "build_benchmark: context: %s\n", n.status().ToString().c_str());
    return 1;
  }

  Samples host_total;
  std::map<std::string, Samples> host_phase;
  std::map<std::string, VmSamples> vm;  // by variant name
  int failures = 0;
  // RunVm: one fresh builder VM of variant `v`, one job; true if it built.
  auto run_vm = [&](const Variant& v, int i) {
    harness::BuildRequest job;
    job.job_id = absl::StrCat("bench-", i);
    job.context_tar = context_tar;
    job.secrets["build_token"] = secret;
    job.secret_ids = {"build_token"};
    job.preload = {{"kiln-busybox:1", absl::GetFlag(FLAGS_busybox_image)}};
    job.tag = "kiln-bench/ref:1";
    job.image_out = absl::StrCat(work, "/", v.name, "-", i, ".oci.tar");
    harness::BuilderVmOptions opt;
    opt.id = absl::StrCat("bench-", v.name, "-", i);
    opt.memory_mib = absl::GetFlag(FLAGS_memory_mib);
    opt.builder_mode = v.mode;
    opt.deadline = absl::Seconds(420);
    opt.warm = v.warm;
    opt.snapshot_dir = work + "/snapshots";
    harness::BuilderRun run =
        harness::RunBuilderJobs(factory, harness::BuilderArtifacts{kernel, initrd, v.disk}, opt, {job});
    bool ok = run.status.ok() && run.jobs.size() == 1 && run.jobs[0].result &&
              run.jobs[0].result->exit_status == 0 && !run.jobs[0].image_path.empty();
    VmSamples& s = vm[v.name];
    s.lockups.push_back(run.lockup_events);
    if (!ok) {
      ++failures;
      std::string why = run.status.ToString();
      if (run.status.ok() && !run.jobs.empty()) {
        why = !run.jobs[0].refused.ok() ? run.jobs[0].refused.ToString()
              : run.jobs[0].result ? absl::StrCat("exit ", run.jobs[0].result->exit_status, ": ",
                                                  run.jobs[0].result->error.substr(0, 300))
                                   : "no result";
      }
      std::fprintf(stderr, "build_benchmark: %s run %d failed: %s (logs %s)\n", v.name.c_str(),
                   i, why.c_str(), run.log_dir.c_str());
      return;
    }
    if (v.warm != harness::WarmMode::kOff && run.warm.rfind("cold", 0) == 0) {
      std::fprintf(stderr, "build_benchmark: %s run %d booted cold: %s\n", v.name.c_str(), i,
                   run.warm.c_str());
    }
    s.total.push_back(absl::ToDoubleMilliseconds(run.total));
    s.result.push_back(absl::ToDoubleMilliseconds(run.vmm_start_to_first_result));
    s.ready.push_back(absl::ToDoubleMilliseconds(run.vmm_start_to_ready));
    s.gone.push_back(absl::ToDoubleMilliseconds(run.last_result_to_vm_gone));
    s.rss.push_back(static_cast<double>(run.vmm_peak_rss_bytes));
    for (const char* p : kPhases) {
      s.phase[p].push_back(static_cast<double>(std::max<int64_t>(0, run.jobs[0].PhaseMs(p))));
    }
    std::printf("  %-18s %d %8.0f ms  (result %.0f ms, ready %.0f ms, dockerd_start %.0f ms, "
                "build %.0f ms, peak RSS %.0f MiB, attempts %d, %s)\n", v.name.c_str(), i,
                s.total.back(), s.result.back(), s.ready.back(),
                s.phase["dockerd_start"].back(), s.phase["build"].back(), s.rss.back() / 1048576,
                run.attempts, run.warm.c_str());
    std::fflush(stdout);
  };
  // Warm variants: make each snapshot once before the rounds (a builder VM with no job), so
  // that every round measures a restore.
  std::map<std::string, double> snapshot_make_ms;
  for (const Variant& v : *variants) {
    if (v.warm == harness::WarmMode::kOff) continue;
    harness::BuilderVmOptions opt;
    opt.id = absl::StrCat("bench-", v.name, "-snapshot");
    opt.memory_mib = absl::GetFlag(FLAGS_memory_mib);
    opt.builder_mode = v.mode;
    opt.warm = v.warm;
    opt.snapshot_dir = work + "/snapshots";
    // The declared base image: loaded into the warm daemon inside the snapshot (the rounds'
    // jobs preload the same one, so they restore this snapshot).
    opt.warm_preload = {{"kiln-busybox:1", absl::GetFlag(FLAGS_busybox_image)}};
    harness::BuilderRun run = harness::RunBuilderJobs(
        factory, harness::BuilderArtifacts{kernel, initrd, v.disk}, opt, {});
    snapshot_make_ms[v.name] = absl::ToDoubleMilliseconds(run.snapshot_make);
    std::printf("  %-18s snapshot: %s, made in %.0f ms (%s; daemon %s, up + base images in "
                "%.0f ms; RAM %s)\n", v.name.c_str(),
                run.snapshot_key.substr(0, 12).c_str(), snapshot_make_ms[v.name],
                run.warm.c_str(), run.warm_daemon.empty() ? "not in it" : run.warm_daemon.c_str(),
                absl::ToDoubleMilliseconds(run.warm_up), run.snapshot_ram.c_str());
    std::fflush(stdout);
  }
  const size_t nv = variants->size();
  for (int i = 0; i < runs; ++i) {
    if (absl::GetFlag(FLAGS_host)) {
      absl::StatusOr<HostRun> h = RunHost(work, secret_file, i);
      if (!h.ok()) {
        ++failures;
        std::fprintf(stderr, "build_benchmark: host run %d: %s\n", i, h.status().ToString().c_str());
      } else {
        host_total.push_back(h->wall_ms);
        for (const char* p : kPhases) host_phase[p].push_back(h->phases.count(p) ? h->phases.at(p) : 0);
        std::printf("  host               %d %8.0f ms\n", i, h->wall_ms);
      }
      std::fflush(stdout);
    }
    for (size_t k = 0; k < nv; ++k) run_vm((*variants)[(k + i) % nv], i);  // rotated order
  }
  const Variant& def = variants->front();
  const VmSamples& d = vm[def.name];
  const Samples& vm_total = d.total;
  const Samples& vm_ready = d.ready;
  const Samples& vm_gone = d.gone;
  const Samples& vm_rss = d.rss;
  const Samples& lockups = d.lockups;
  std::map<std::string, Samples> vm_phase = d.phase;

  std::vector<Figure> f;
  f.push_back({.name = "build/host/total", .suite = "build", .kind = "time", .unit = "ms",
               .samples = host_total, .note = "kiln-build (dockerd+BuildKit on the host), process wall"});
  f.push_back({.name = "build/vm/total", .suite = "build", .kind = "time", .unit = "ms",
               .samples = vm_total, .peer = "build/host/total",
               .note = absl::StrCat("builder VM (", def.name, "): VMM start to VM gone, one job")});
  const bool paired = host_total.size() == vm_total.size();
  const bool host_side = !host_total.empty() && !vm_total.empty();
  // Not gated (gate=false): unlike boot and publish, this ratio is not load-invariant here.
  // The TCG VM is CPU-bound on both host cores while the host build mostly waits on process
  // starts and I/O, so host load moves the two sides differently: two runs of the same
  // commit gave medians 11.1x and 20.7x. Shown, plotted, compared as "info".
  if (host_side) f.push_back({.name = "build/vm_over_host", .suite = "build", .kind = "ratio", .unit = "x",
               .gate = false,
               .samples = paired ? PairRatios(vm_total, host_total)
                                 : Samples{Ratio(Summarize(vm_total).median, Summarize(host_total).median)},
               .peer = "build/host/total",
               .note = paired ? "per alternated pair; not gated: not load-invariant on a shared TCG host"
                              : "ratio of medians (a run failed); not gated"});
  f.push_back({.name = "build/vm/vmm_start_to_agent_ready", .suite = "build", .kind = "time",
               .unit = "ms", .samples = vm_ready});
  f.push_back({.name = "build/vm/last_result_to_vm_gone", .suite = "build", .kind = "time",
               .unit = "ms", .samples = vm_gone});
  for (const char* p : kPhases) {
    f.push_back({.name = absl::StrCat("build/host/", p), .suite = "build", .kind = "time",
                 .unit = "ms", .samples = host_phase[p]});
    f.push_back({.name = absl::StrCat("build/vm/", p), .suite = "build", .kind = "time",
                 .unit = "ms", .samples = vm_phase[p], .peer = absl::StrCat("build/host/", p),
                 .note = "guest-reported phase"});
    if (host_side && host_phase[p].size() == vm_phase[p].size()) {
      f.push_back({.name = absl::StrCat("build/", p, "_vm_over_host"), .suite = "build",
                   .kind = "ratio", .unit = "x", .gate = false,  // see build/vm_over_host
                   .samples = PairRatios(vm_phase[p], host_phase[p]),
                   .peer = absl::StrCat("build/host/", p)});
    }
  }
  f.push_back({.name = "build/vm/lockup_events", .suite = "build", .kind = "count", .unit = "events",
               .samples = lockups, .note = "guests cut off (soft lockup/panic/stall) and retried; not gated (random, platform notes)"});

  // The variants (issue 11): each one's phases, and the same-run ratios per pair of builds
  // (round i of both variants; a failed build drops its pair).
  auto phase_of = [&](const VmSamples& s, const std::string& p) -> Samples {
    if (p == "total") return s.total;
    return s.phase.count(p) ? s.phase.at(p) : Samples{};
  };
  for (const Variant& v : *variants) {
    const VmSamples& s = vm[v.name];
    const std::string what = v.warm != harness::WarmMode::kOff ? "restored QEMU start" : "VMM start";
    f.push_back({.name = absl::StrCat("build/", v.name, "/vmm_start_to_result"), .suite = "build",
                 .kind = "time", .unit = "ms", .samples = s.result,
                 .note = absl::StrCat(what, " to the BuildResult")});
    f.push_back({.name = absl::StrCat("build/", v.name, "/vmm_start_to_agent_ready"),
                 .suite = "build", .kind = "time", .unit = "ms", .samples = s.ready,
                 .note = absl::StrCat(what, " to the agent's Ready")});
    f.push_back({.name = absl::StrCat("build/", v.name, "/vmm_peak_rss"), .suite = "build",
                 .kind = "count", .unit = "bytes", .gate = false, .samples = s.rss,
                 .note = "QEMU's peak RSS (wait4 ru_maxrss)"});
    if (snapshot_make_ms.count(v.name)) {
      f.push_back({.name = absl::StrCat("build/", v.name, "/snapshot_make"), .suite = "build",
                   .kind = "time", .unit = "ms", .gate = false,
                   .samples = {snapshot_make_ms[v.name]},
                   .note = "cold boot to agent ready + save, once per snapshot key"});
    }
    for (const char* p : {"dockerd_start", "build", "total"}) {
      f.push_back({.name = absl::StrCat("build/", v.name, "/", p), .suite = "build",
                   .kind = "time", .unit = "ms", .samples = phase_of(s, p),
                   .note = absl::StrCat(v.mode, " on ", v.disk.substr(v.disk.rfind('/') + 1),
                                        p == std::string("total") ? ": VMM start to VM gone"
                                                                  : ": guest-reported phase")});
    }
    struct stat st{};
    if (stat(v.disk.c_str(), &st) == 0) {
      f.push_back({.name = absl::StrCat("build/", v.name, "/disk_bytes"), .suite = "build",
                   .kind = "count", .unit = "bytes", .gate = false,
                   .samples = {static_cast<double>(st.st_size)}, .note = "builder disk image size"});
    }
  }
  struct Pair {
    const char* name;
    const char* over;
    const char* under;
  };
  std::vector<Pair> pairs = {
      Pair{"rootless_over_rootful", "rootless-debian13", "rootful-debian13"},
      Pair{"debian13_over_debian12", "rootful-debian13", "rootful-debian12"}};
  std::vector<std::string> warm_names;
  for (const Variant& v : *variants) warm_names.push_back(v.name);
  for (const std::string& w : warm_names) {
    if (w.size() > 5 && w.substr(w.size() - 5) == "-warm") {
      pairs.push_back(Pair{"warm_over_cold", w.c_str(), nullptr});
    }
  }
  std::vector<std::string> unders;  // keeps the cold names alive for Pair::under
  unders.reserve(pairs.size());
  for (Pair& pr : pairs) {
    if (pr.under == nullptr) {
      const std::string over = pr.over;
      unders.push_back(over.substr(0, over.size() - 5));
      pr.under = unders.back().c_str();
    }
  }
  auto phase_or_result = [&](const VmSamples& s, const std::string& p) -> Samples {
    if (p == "vmm_start_to_result") return s.result;
    if (p == "vmm_peak_rss") return s.rss;
    return phase_of(s, p);
  };
  for (const Pair& pr : pairs) {
    if (!vm.count(pr.over) || !vm.count(pr.under)) continue;
    const bool warm_pair = std::string(pr.name) == "warm_over_cold";
    std::vector<std::string> ps = {"dockerd_start", "build", "total"};
    if (warm_pair) ps = {"vmm_start_to_result", "total", "vmm_peak_rss"};
    for (const std::string& p : ps) {
      const Samples a = phase_or_result(vm[pr.over], p), b = phase_or_result(vm[pr.under], p);
      f.push_back({.name = absl::StrCat("build/", pr.name, "/", p), .suite = "build",
                   .kind = "ratio", .unit = "x", .gate = false,
                   .samples = a.size() == b.size() ? PairRatios(a, b)
                                                   : Samples{Ratio(Summarize(a).median,
                                                                   Summarize(b).median)},
                   .peer = absl::StrCat("build/", pr.under, "/", p),
                   .note = a.size() == b.size() ? "per round; not gated (shared TCG host)"
                                                : "ratio of medians (a run failed); not gated"});
    }
  }

  // --jobs: N concurrent warm builds from one snapshot (each VM its own factory and thread;
  // the snapshot cache's per-key lock makes the snapshot once).
  const Variant* warm_variant = nullptr;
  for (const Variant& v : *variants) {
    if (v.warm != harness::WarmMode::kOff && warm_variant == nullptr) warm_variant = &v;
  }
  double single_ms = 0;
  for (absl::string_view nv_text : absl::StrSplit(absl::GetFlag(FLAGS_jobs), ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(nv_text, &n) || n < 1 || n > 16 || warm_variant == nullptr) {
      std::fprintf(stderr, "build_benchmark: --jobs: \"%s\" is not 1..16, or no warm variant\n",
                   std::string(nv_text).c_str());
      ++failures;
      continue;
    }
    std::vector<harness::BuilderRun> runs_n(n);
    std::vector<std::unique_ptr<harness::VmFactory>> factories;
    for (int j = 0; j < n; ++j) {
      factories.push_back(std::make_unique<harness::VmFactory>(
          **vmm, absl::StrCat(work, "/vms-n", n, "-", j), absl::StrCat(work, "/logs-n", n, "-", j)));
    }
    const absl::Time t0 = absl::Now();
    std::vector<std::thread> threads;
    for (int j = 0; j < n; ++j) {
      threads.emplace_back([&, j] {
        harness::BuildRequest job;
        job.job_id = absl::StrCat("par-", n, "-", j);
        job.context_tar = context_tar;
        job.secrets["build_token"] = secret;
        job.secret_ids = {"build_token"};
        job.preload = {{"kiln-busybox:1", absl::GetFlag(FLAGS_busybox_image)}};
        job.tag = "kiln-bench/ref:1";
        job.image_out = absl::StrCat(work, "/par-", n, "-", j, ".oci.tar");
        harness::BuilderVmOptions opt;
        opt.id = absl::StrCat("bench-par", n, "-", j);
        opt.memory_mib = absl::GetFlag(FLAGS_memory_mib);
        opt.builder_mode = warm_variant->mode;
        opt.deadline = absl::Seconds(600);
        opt.stall_timeout = absl::Seconds(240);
        opt.warm = warm_variant->warm;
        opt.snapshot_dir = work + "/snapshots";
        runs_n[j] = harness::RunBuilderJobs(
            *factories[j], harness::BuilderArtifacts{kernel, initrd, warm_variant->disk}, opt, {job});
      });
    }
    for (std::thread& t : threads) t.join();
    const double wall_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    Samples lat, ready, rss;
    int ok = 0;
    for (const harness::BuilderRun& r : runs_n) {
      const bool built = r.status.ok() && r.jobs.size() == 1 && r.jobs[0].result &&
                         r.jobs[0].result->exit_status == 0;
      if (!built) {
        std::fprintf(stderr, "build_benchmark: --jobs %d: %s failed: %s (%s)\n", n,
                     r.vm_id.c_str(), r.status.ToString().c_str(), r.warm.c_str());
        ++failures;
        continue;
      }
      ++ok;
      lat.push_back(absl::ToDoubleMilliseconds(r.vmm_start_to_first_result));
      ready.push_back(absl::ToDoubleMilliseconds(r.vmm_start_to_ready));
      rss.push_back(static_cast<double>(r.vmm_peak_rss_bytes));
    }
    if (n == 1 && ok == 1) single_ms = wall_ms;
    const Summary sl = Summarize(lat), sr = Summarize(ready);
    std::printf("  jobs %d (%s): %d/%d built, all done in %.0f ms (%.2f builds/min), per build "
                "VMM start->result p50 %.0f ms (%.0f-%.0f), restore->ready p50 %.0f ms, "
                "peak RSS p50 %.0f MiB%s\n",
                n, warm_variant->name.c_str(), ok, n, wall_ms, ok * 60000.0 / wall_ms, sl.median,
                sl.min, sl.max, sr.median, Summarize(rss).median / 1048576,
                single_ms > 0 ? absl::StrCat(", total / (N x single) ",
                                             absl::SixDigits(wall_ms / (n * single_ms))).c_str()
                              : "");
    std::fflush(stdout);
    f.push_back({.name = absl::StrCat("build/", warm_variant->name, "/jobs", n, "/wall"),
                 .suite = "build", .kind = "time", .unit = "ms", .samples = {wall_ms},
                 .note = absl::StrCat(n, " concurrent builds from one snapshot, all done")});
    f.push_back({.name = absl::StrCat("build/", warm_variant->name, "/jobs", n, "/vmm_start_to_result"),
                 .suite = "build", .kind = "time", .unit = "ms", .samples = lat,
                 .note = "per build, concurrent"});
  }

  std::printf("\n%s", FormatFigures(f).c_str());
  if (!absl::GetFlag(FLAGS_json_out).empty()) {
    nlohmann::json doc;
    doc["figures"] = nlohmann::json::array();
    for (const Figure& x : f) doc["figures"].push_back(FigureToJson(x));
    std::map<std::string, std::string> dims = {{"vmm", "qemu"},
                                               {"accel", harness::AccelName((*vmm)->options().accel)},
                                               {"memory_mib", absl::StrCat(absl::GetFlag(FLAGS_memory_mib))},
                                               {"example", "agent/runner/examples/reference"}};
    doc["records"] = {Record("build.host.total", dims, "ms", host_total),
                      Record("build.vm.total", dims, "ms", vm_total),
                      Record("build.vm.vmm_peak_rss", dims, "bytes", vm_rss)};
    for (const Variant& v : *variants) {
      std::map<std::string, std::string> vd = dims;
      vd["variant"] = v.name;
      vd["builder_mode"] = v.mode;
      doc["records"].push_back(Record("build.vm.total", vd, "ms", vm[v.name].total));
    }
    std::ofstream(absl::GetFlag(FLAGS_json_out)) << doc.dump(2) << "\n";
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the reference secret build in a builder VM vs dockerd on the host: bazel run "
      "//benchmarks:build_benchmark -- [--runs=N] [--json_out=F]");
  absl::ParseCommandLine(argc, argv);
  return kiln::bench::Main();
}
