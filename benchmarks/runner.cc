// benchmarks (runner): every kiln benchmark suite in one command, one JSON document, one table.
//
//   bazel run //benchmarks -- [--filter RE] [--repetitions N] [--out FILE.json]
//
// Suites (README.md): the micro suites (Google Benchmark binaries built with -c opt, timed
// with --benchmark_repetitions and counted under callgrind), then the end-to-end suites
// (boot_benchmark, publish_benchmark, ...), each a command that writes JSON which this runner
// turns into figures (results.h): absolute times (informational), ratios to the peer measured
// in the same run, and repeatable counts (gated). Writes the document to --out, a PNG of the
// end-to-end figures against --baseline next to it, and prints the figure table and the
// comparison with the baseline (informational here; `compare` is the gate, or pass --gate).
#include <fcntl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/file/file.h"
#include "agent/process/process.h"
#include "benchmarks/results.h"
#include "benchmarks/stats.h"

ABSL_FLAG(std::string, filter, "", "run only figures/suites matching this regex (ECMAScript, search)");
ABSL_FLAG(int, repetitions, 3, "micro benchmark and callgrind repetitions (>= 1)");
ABSL_FLAG(std::string, out, "kiln-benchmarks.json", "results document (PNG written next to it)");
ABSL_FLAG(std::string, baseline, "benchmarks/baseline.json", "baseline for the table and plot");
ABSL_FLAG(double, min_time, 0.05, "Google Benchmark --benchmark_min_time per repetition (s)");
ABSL_FLAG(bool, counts, true, "measure instruction counts under valgrind --tool=callgrind");
ABSL_FLAG(int, vm_runs, 5, "boot_benchmark --runs (VM boots per variant)");
ABSL_FLAG(int, publish_rounds, 5, "publish_benchmark --rounds");
ABSL_FLAG(std::string, micro, "archive=benchmarks/micro_opt/archive_benchmark,oci=benchmarks/micro_opt/oci_benchmark,protocol=benchmarks/micro_opt/protocol_benchmark",
          "micro suites: suite=binary,...");
ABSL_FLAG(std::string, boot_benchmark, "benchmarks/boot_benchmark", "boot suite binary");
ABSL_FLAG(std::string, publish_benchmark, "publish/publish_benchmark", "publish suite command");
ABSL_FLAG(std::vector<std::string>, boot_args, {}, "arguments for boot_benchmark (artifact paths)");
ABSL_FLAG(std::string, build_benchmark, "benchmarks/build_benchmark", "build suite binary");
ABSL_FLAG(std::vector<std::string>, build_args, {}, "arguments for build_benchmark (artifact paths)");
ABSL_FLAG(int, build_runs, 2, "build_benchmark --runs (builds per side; a VM build is ~20-40 s under TCG)");
ABSL_FLAG(std::string, slowdown, "", "test flag: micro operations matching RE run twice (micro.h)");
ABSL_FLAG(bool, gate, false, "exit 1 when the comparison with --baseline finds a regression");

namespace kiln::bench {
namespace {

std::string Resolve(const std::string& path) {
  const char* wd = std::getenv("BUILD_WORKING_DIRECTORY");  // set by `bazel run`
  if (path.empty() || path[0] == '/' || wd == nullptr) return path;
  return std::string(wd) + "/" + path;
}

// Run(argv, stdout_path): runs argv (stdin /dev/null; stdout to stdout_path, or to our stderr
// when empty, so progress shows); returns the exit status (128+signal, 127 exec failure).
int Run(const std::vector<std::string>& argv, const std::string& stdout_path) {
  std::fflush(stdout);
  std::fprintf(stderr, "+ %s\n", absl::StrJoin(argv, " ").c_str());
  process::SpawnOptions o;
  o.argv = argv;
  o.out = stdout_path.empty() ? process::Stdio::ParentFd(2) : process::Stdio::File(stdout_path);
  o.err = process::Stdio::Inherit();
  absl::StatusOr<process::Process> p = process::Process::Spawn(o);
  if (!p.ok()) {
    std::fprintf(stderr, "%s\n", std::string(p.status().message()).c_str());
    return 127;
  }
  absl::StatusOr<process::ProcessExit> e = p->Wait(absl::InfiniteFuture());
  if (!e.ok()) return 127;
  return e->signaled ? 128 + e->signal : e->exit_code;
}

// Capture(cmd): first line of a shell command's output ("" on failure).
std::string Capture(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char buf[512] = {0};
  std::string out = fgets(buf, sizeof buf, p) ? buf : "";
  pclose(p);
  return std::string(absl::StripTrailingAsciiWhitespace(out));
}

// ---------------------------------------------------------------------------------------
// Micro suites.

double ToNs(double v, const std::string& unit) {
  if (unit == "us") return v * 1e3;
  if (unit == "ms") return v * 1e6;
  if (unit == "s") return v * 1e9;
  return v;
}

// MicroSuite: Google Benchmark timings + bytes_out, then callgrind instruction counts.
void RunMicro(const std::string& suite, const std::string& binary, const std::string& filter,
              const std::string& work, nlohmann::json& doc, std::vector<Figure>& figures,
              std::vector<std::string>& failures) {
  const int reps = absl::GetFlag(FLAGS_repetitions);
  std::string re = filter.empty() ? "." : filter;
  std::string list = work + "/" + suite + ".list";
  if (Run({binary, "--benchmark_list_tests=true", "--benchmark_filter=" + re}, list) != 0 ||
      file::ReadFileOrEmpty(list).empty()) {
    std::fprintf(stderr, "benchmarks: %s: no benchmark matches '%s', skipped\n", suite.c_str(), re.c_str());
    return;
  }
  std::string json = work + "/" + suite + ".gbench.json";
  std::vector<std::string> argv = {binary, "--benchmark_filter=" + re,
                                   absl::StrCat("--benchmark_repetitions=", reps),
                                   absl::StrCat("--benchmark_min_time=", absl::GetFlag(FLAGS_min_time)),
                                   "--benchmark_out_format=json", "--benchmark_out=" + json};
  if (!absl::GetFlag(FLAGS_slowdown).empty()) argv.push_back("--kiln_slowdown=" + absl::GetFlag(FLAGS_slowdown));
  if (Run(argv, "") != 0) failures.push_back(suite + " (timings)");
  // Google Benchmark writes NaN/inf aggregates (e.g. the cv of a constant counter) as bare
  // `nan`/`-nan`/`inf`, which is not JSON: turn them into null.
  static const std::regex kNonFinite(R"((:\s*)-?(nan|inf)\b)");
  nlohmann::json gb =
      nlohmann::json::parse(std::regex_replace(file::ReadFileOrEmpty(json), kNonFinite, "$1null"), nullptr, false);
  std::map<std::string, Figure> times, bytes;
  std::vector<std::string> order;
  if (gb.is_object()) {
    if (!doc["context"].contains("library_version") && gb.contains("context")) {
      for (auto& [k, v] : gb["context"].items()) doc["context"][k] = v;
    }
    for (const auto& b : gb.value("benchmarks", nlohmann::json::array())) {
      doc["benchmarks"].push_back(b);
      if (b.value("run_type", "") != "iteration") continue;
      std::string name = b.value("run_name", b.value("name", ""));
      if (b.value("error_occurred", false)) {
        failures.push_back(name + ": " + b.value("error_message", ""));
        continue;
      }
      if (!times.count(name)) {
        order.push_back(name);
        times[name] = Figure{.name = name + "/time", .suite = suite, .kind = "time", .unit = "ns",
                             .note = "real time per operation; absolute, moves with host load"};
        bytes[name] = Figure{.name = name + "/bytes_out", .suite = suite, .kind = "count",
                             .unit = "bytes", .gate = true, .note = "bytes the operation produced"};
      }
      if (b.contains("real_time") && b["real_time"].is_number()) {
        times[name].samples.push_back(ToNs(b["real_time"].get<double>(), b.value("time_unit", "ns")));
      }
      if (b.contains("bytes_out") && b["bytes_out"].is_number()) {
        bytes[name].samples.push_back(b["bytes_out"].get<double>());
      }
    }
  } else {
    failures.push_back(suite + ": no Google Benchmark JSON in " + json);
  }

  std::map<std::string, Figure> instr;
  if (absl::GetFlag(FLAGS_counts)) {
    // One valgrind process per repetition: address-space layout (ASLR) changes hash-table
    // probing and allocation patterns between processes, and the spread must include that.
    std::string cg = work + "/" + suite + ".callgrind";
    for (int rep = 0; rep < reps; ++rep) {
      std::vector<std::string> vg = {"valgrind", "--tool=callgrind", "--collect-atstart=no",
                                     absl::StrCat("--callgrind-out-file=", cg, ".", rep), binary,
                                     "--kiln_counts", "--kiln_filter=" + re};
      if (!absl::GetFlag(FLAGS_slowdown).empty()) vg.push_back("--kiln_slowdown=" + absl::GetFlag(FLAGS_slowdown));
      if (Run(vg, absl::StrCat(work, "/", suite, ".counts.", rep)) != 0) {
        failures.push_back(suite + " (callgrind counts; is valgrind installed? tools/setup)");
        break;
      }
    }
    // Each client-request dump is <cg>.<n>: "desc: Trigger: Client Request: kiln-count NAME rep R"
    // then "summary: IR".
    for (int rep = 0; rep < reps; ++rep) for (int n = 1; n < 10000; ++n) {
      std::string text = file::ReadFileOrEmpty(absl::StrCat(cg, ".", rep, ".", n));
      if (text.empty()) break;
      std::smatch m;
      static const std::regex kDesc("Client Request: kiln-count (\\S+) rep \\d+");
      static const std::regex kSummary("\nsummary: (\\d+)");
      std::smatch s;
      if (!std::regex_search(text, m, kDesc) || !std::regex_search(text, s, kSummary)) continue;
      std::string name = m[1];
      Figure& f = instr[name];
      if (f.name.empty()) {
        f = Figure{.name = name + "/instructions", .suite = suite, .kind = "count",
                   .unit = "instructions", .gate = true,
                   .note = "callgrind Ir of one operation (after a warm-up call)"};
      }
      f.samples.push_back(std::stod(s[1]));
    }
  }
  for (const std::string& name : order) {
    if (instr.count(name)) figures.push_back(instr[name]);
    Summary bs = Summarize(bytes[name].samples);
    if (bs.n > 0 && bs.max > 0) figures.push_back(bytes[name]);
    figures.push_back(times[name]);
  }
}

// ---------------------------------------------------------------------------------------
// End-to-end suites: a command writing JSON, and a parser turning it into figures.

struct EndToEnd {
  std::string suite;
  std::function<std::vector<std::string>(const std::string& json_path)> command;
  std::function<absl::Status(const std::string& json_path, nlohmann::json& doc,
                             std::vector<Figure>& figures)> parse;
};

absl::Status ParseBoot(const std::string& path, nlohmann::json& doc, std::vector<Figure>& figures) {
  std::map<std::string, Samples> by_name;
  for (absl::string_view line : absl::StrSplit(file::ReadFileOrEmpty(path), '\n', absl::SkipEmpty())) {
    nlohmann::json r = nlohmann::json::parse(line, nullptr, false);
    if (!r.is_object() || !r.contains("name")) continue;
    doc["records"].push_back(r);
    for (const auto& v : r.value("samples", nlohmann::json::array())) {
      by_name[r["name"].get<std::string>()].push_back(v.get<double>());
    }
    if (r.contains("dimensions")) {
      for (auto& [k, v] : r["dimensions"].items()) doc["context"]["kiln"]["boot_" + k] = v;
    }
  }
  const Samples& bare = by_name["boot.bare.wall"];
  const Samples& cg = by_name["boot.cgroup_vm.wall"];
  if (bare.empty() || cg.empty()) return absl::DataLossError("boot_benchmark wrote no wall samples");
  figures.push_back({.name = "boot/bare/wall", .suite = "boot", .kind = "time", .unit = "ms",
                     .samples = bare, .note = "VMM start to exit, PID 1 powers off at once"});
  figures.push_back({.name = "boot/cgroup_vm/wall", .suite = "boot", .kind = "time", .unit = "ms",
                     .samples = cg, .peer = "boot/bare/wall",
                     .note = "VMM start to exit after KILN-INIT: ready"});
  figures.push_back({.name = "boot/cgroup_vm/guest_ready", .suite = "boot", .kind = "time",
                     .unit = "ms", .samples = by_name["boot.cgroup_vm.guest_ready"],
                     .note = "guest uptime when init printed ready"});
  bool paired = bare.size() == cg.size();  // failed runs break the A/B pairing
  figures.push_back({.name = "boot/cgroup_over_bare", .suite = "boot", .kind = "ratio", .unit = "x",
                     .gate = true,
                     .samples = paired ? PairRatios(cg, bare)
                                       : Samples{Ratio(Summarize(cg).median, Summarize(bare).median)},
                     .peer = "boot/bare/wall",
                     .note = paired ? "per alternated pair" : "ratio of medians (a run failed)"});
  const Samples& br = by_name["boot.bare.vmm_peak_rss"];
  const Samples& cr = by_name["boot.cgroup_vm.vmm_peak_rss"];
  if (!br.empty() && br.size() == cr.size()) {
    figures.push_back({.name = "boot/cgroup_rss_over_bare", .suite = "boot", .kind = "ratio",
                       .unit = "x", .gate = true, .samples = PairRatios(cr, br),
                       .peer = "boot/bare/vmm_peak_rss", .note = "QEMU peak RSS, per pair"});
  }
  return absl::OkStatus();
}

absl::Status ParsePublish(const std::string& path, nlohmann::json& doc, std::vector<Figure>& figures) {
  nlohmann::json j = nlohmann::json::parse(file::ReadFileOrEmpty(path), nullptr, false);
  if (!j.is_object() || !j.contains("kiln_samples") || !j.contains("skopeo_samples")) {
    return absl::DataLossError("publish_benchmark wrote no samples");
  }
  nlohmann::json rec = j;
  rec["name"] = "publish";
  doc["records"].push_back(rec);
  Samples kiln, skopeo;
  for (const auto& v : j["kiln_samples"]) kiln.push_back(v.get<double>() * 1000);
  for (const auto& v : j["skopeo_samples"]) skopeo.push_back(v.get<double>() * 1000);
  figures.push_back({.name = "publish/skopeo/wall", .suite = "publish", .kind = "time", .unit = "ms",
                     .samples = skopeo, .note = "skopeo copy oci: -> docker:// (loopback registry)"});
  figures.push_back({.name = "publish/kiln/wall", .suite = "publish", .kind = "time", .unit = "ms",
                     .samples = kiln, .peer = "publish/skopeo/wall", .note = "kiln publish, same layout"});
  figures.push_back({.name = "publish/kiln_over_skopeo", .suite = "publish", .kind = "ratio",
                     .unit = "x", .gate = true, .samples = PairRatios(kiln, skopeo),
                     .peer = "publish/skopeo/wall", .note = "per round (alternated order)"});
  figures.push_back({.name = "publish/repush_one_layer/bytes_uploaded", .suite = "publish",
                     .kind = "count", .unit = "bytes", .gate = true,
                     .samples = {j.value("repush_one_layer_bytes_uploaded", 0.0)},
                     .peer = "publish/repush_one_layer/changed_blob_bytes",
                     .note = "re-push after a one-layer change"});
  figures.push_back({.name = "publish/repush_one_layer/changed_blob_bytes", .suite = "publish",
                     .kind = "count", .unit = "bytes",
                     .samples = {j.value("repush_changed_blob_bytes", 0.0)},
                     .note = "the floor: bytes of the blobs that changed"});
  return absl::OkStatus();
}

// ParseFiguresDoc: the generic plug-in format: a command that writes a kiln results document
// (or just {"figures": [...]}) needs no parser of its own.
absl::Status ParseFiguresDoc(const std::string& path, nlohmann::json& doc, std::vector<Figure>& figures) {
  absl::StatusOr<nlohmann::json> j = LoadDocument(path);
  if (!j.ok()) return j.status();
  absl::StatusOr<std::vector<Figure>> figs = ParseFigures(*j);
  if (!figs.ok()) return figs.status();
  for (Figure& f : *figs) figures.push_back(std::move(f));
  for (const auto& r : j->value("records", nlohmann::json::array())) doc["records"].push_back(r);
  return absl::OkStatus();
}

std::vector<EndToEnd> EndToEndSuites() {
  std::vector<EndToEnd> s;
  s.push_back({"boot",
               [](const std::string& json) {
                 std::vector<std::string> a = {absl::GetFlag(FLAGS_boot_benchmark),
                                               absl::StrCat("--runs=", absl::GetFlag(FLAGS_vm_runs)),
                                               "--json_out=" + json};
                 for (const std::string& x : absl::GetFlag(FLAGS_boot_args)) a.push_back(x);
                 return a;
               },
               ParseBoot});
  s.push_back({"publish",
               [](const std::string& json) {
                 return std::vector<std::string>{absl::GetFlag(FLAGS_publish_benchmark), "--rounds",
                                                 absl::StrCat(absl::GetFlag(FLAGS_publish_rounds)),
                                                 "--json", json};
               },
               ParsePublish});
  // The secret build, builder VM vs dockerd on the host: its binary writes a kiln document.
  s.push_back({"build",
               [](const std::string& json) {
                 std::vector<std::string> a = {absl::GetFlag(FLAGS_build_benchmark),
                                               absl::StrCat("--runs=", absl::GetFlag(FLAGS_build_runs)),
                                               "--json_out=" + json};
                 for (const std::string& x : absl::GetFlag(FLAGS_build_args)) a.push_back(x);
                 return a;
               },
               ParseFiguresDoc});
  return s;
}

// ---------------------------------------------------------------------------------------

nlohmann::json MachineContext(const std::string& boot_kernel) {
  nlohmann::json k;
  k["cores"] = sysconf(_SC_NPROCESSORS_ONLN);
  struct utsname u;
  if (uname(&u) == 0) {
    k["host_kernel"] = u.release;
    k["host_machine"] = u.machine;
  }
  std::string cpuinfo = file::ReadFileOrEmpty("/proc/cpuinfo");
  bool virt = absl::StrContains(cpuinfo, " vmx") || absl::StrContains(cpuinfo, " svm");
  k["accel"] = (virt && access("/dev/kvm", R_OK | W_OK) == 0) ? "kvm" : "tcg";
  k["accel_reason"] = virt ? "host CPU has vmx/svm" : "no vmx/svm on the host CPU: QEMU TCG";
  k["vmm"] = Capture("qemu-system-x86_64 --version 2>/dev/null");
  k["guest_kernel"] = boot_kernel;
  k["load_average_start"] = Capture("cut -d' ' -f1-3 /proc/loadavg");
  k["valgrind"] = Capture("valgrind --version 2>/dev/null");
  if (const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY")) {
    k["git_commit"] = Capture(absl::StrCat("git -C '", ws, "' rev-parse HEAD 2>/dev/null"));
    k["git_dirty"] = !Capture(absl::StrCat("git -C '", ws, "' status --porcelain --untracked-files=no 2>/dev/null")).empty();
  }
  return k;
}

int Main() {
  if (absl::GetFlag(FLAGS_repetitions) < 1) {
    std::fprintf(stderr, "benchmarks: --repetitions must be >= 1\n");
    return 2;
  }
  const std::string filter = absl::GetFlag(FLAGS_filter);
  std::regex re;
  try {
    re = std::regex(filter.empty() ? "." : filter);
  } catch (const std::regex_error& e) {
    std::fprintf(stderr, "benchmarks: bad --filter: %s\n", e.what());
    return 2;
  }
  const std::string out = Resolve(absl::GetFlag(FLAGS_out));
  char tmpl[] = "/tmp/kiln-benchmarks.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string work = tmpl;
  absl::Time start = absl::Now();
  // The baseline is read first: a refresh may write --out over the same file.
  std::vector<Figure> base;
  absl::StatusOr<nlohmann::json> bdoc = LoadDocument(absl::GetFlag(FLAGS_baseline));
  if (bdoc.ok()) {
    absl::StatusOr<std::vector<Figure>> b = ParseFigures(*bdoc);
    if (b.ok()) base = *b;
  }

  std::string guest_kernel;
  for (const std::string& a : absl::GetFlag(FLAGS_boot_args)) {
    if (absl::StartsWith(a, "--kernel=")) guest_kernel = a.substr(9);
  }
  nlohmann::json doc;
  doc["context"] = nlohmann::json::object();
  doc["context"]["kiln"] = MachineContext(guest_kernel);
  doc["context"]["kiln"]["repetitions"] = absl::GetFlag(FLAGS_repetitions);
  doc["context"]["kiln"]["vm_runs"] = absl::GetFlag(FLAGS_vm_runs);
  doc["context"]["kiln"]["publish_rounds"] = absl::GetFlag(FLAGS_publish_rounds);
  doc["context"]["kiln"]["build_runs"] = absl::GetFlag(FLAGS_build_runs);
  doc["context"]["kiln"]["filter"] = filter;
  doc["context"]["kiln"]["slowdown"] = absl::GetFlag(FLAGS_slowdown);
  doc["benchmarks"] = nlohmann::json::array();
  doc["records"] = nlohmann::json::array();
  std::vector<Figure> figures;
  std::vector<std::string> failures;

  for (absl::string_view entry : absl::StrSplit(absl::GetFlag(FLAGS_micro), ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    RunMicro(kv.first, kv.second, filter, work, doc, figures, failures);
  }
  for (const EndToEnd& e : EndToEndSuites()) {
    if (!std::regex_search(e.suite, re)) continue;
    std::string json = work + "/" + e.suite + ".json";
    int rc = Run(e.command(json), "");
    absl::Status s = e.parse(json, doc, figures);
    if (rc != 0 || !s.ok()) {
      failures.push_back(absl::StrCat(e.suite, ": exit ", rc, s.ok() ? "" : ", " + s.ToString()));
    }
  }

  doc["context"]["kiln"]["load_average_end"] = Capture("cut -d' ' -f1-3 /proc/loadavg");
  doc["context"]["kiln"]["wall_seconds"] = absl::ToDoubleSeconds(absl::Now() - start);
  doc["context"]["kiln"]["failures"] = failures;
  doc["figures"] = nlohmann::json::array();
  for (const Figure& f : figures) doc["figures"].push_back(FigureToJson(f));
  std::filesystem::create_directories(std::filesystem::path(out).parent_path().empty()
                                          ? "."
                                          : std::filesystem::path(out).parent_path());
  std::ofstream(out) << doc.dump(2) << "\n";

  std::printf("\n%s", FormatFigures(figures).c_str());
  std::printf("context: %s\n", doc["context"]["kiln"].dump().c_str());
  std::printf("wrote %s (%.0f s)\n", out.c_str(), absl::ToDoubleSeconds(absl::Now() - start));

  int rc = failures.empty() ? 0 : 1;
  if (!base.empty()) {
    Comparison c = Compare(base, figures);
    std::printf("\nagainst baseline %s:\n%s", absl::GetFlag(FLAGS_baseline).c_str(),
                FormatComparison(c).c_str());
    if (absl::GetFlag(FLAGS_gate) && c.regressions > 0) rc = 1;
  } else {
    std::printf("no baseline at %s: nothing to compare\n", absl::GetFlag(FLAGS_baseline).c_str());
  }
  std::string png = std::string(absl::StripSuffix(out, ".json")) + ".png";
  std::string script = GnuplotScript(base, figures, png);
  if (!script.empty()) {
    std::ofstream(work + "/plot.gp") << script;
    if (Run({"gnuplot", work + "/plot.gp"}, "") == 0) {
      std::printf("plot %s\n", png.c_str());
    } else {
      std::printf("no plot: gnuplot failed or is missing (tools/setup installs gnuplot-nox)\n");
    }
  }
  for (const std::string& f : failures) std::fprintf(stderr, "benchmarks: FAILED %s\n", f.c_str());
  std::filesystem::remove_all(work);
  return rc;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "every kiln benchmark suite: bazel run //benchmarks -- [--filter RE] [--repetitions N] "
      "[--out FILE.json]");
  absl::ParseCommandLine(argc, argv);
  return kiln::bench::Main();
}
