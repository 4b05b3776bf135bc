// File: harness/scenarios/scenarios.cc
#include "harness/scenarios/scenarios.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "init/cgroup_names.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

absl::Status Expected(absl::string_view what, absl::string_view got) {
  return absl::FailedPreconditionError(absl::StrCat("expected ", what, ", got ", got));
}

std::string Show(const std::optional<std::string>& v) {
  return v ? absl::StrCat("\"", *v, "\"") : "no such KILN-CHECK line";
}

// ProgramRan: init got to `ready`, ran the check program to `exit status=0`, and the program
// printed `KILN-CHECK done status=0` (not `KILN-CHECK error ...`).
absl::Status ProgramRan(const RunResult& run) {
  const ConsoleResult& c = run.console;
  if (c.fatal) return Expected("no init fatal error", c.fatal->line);
  if (!c.ready) return Expected("KILN-INIT: ready", "none");
  if (c.exit_signal) return Expected("exit status=0", absl::StrCat("signal=", *c.exit_signal));
  if (!c.exit_status || *c.exit_status != 0) {
    std::optional<std::string> err = c.Check("error");
    return Expected("check program exit status=0",
                    absl::StrCat("status=", c.exit_status ? *c.exit_status : -1,
                                 err ? absl::StrCat(" (KILN-CHECK error ", *err, ")") : ""));
  }
  if (c.Check("done") != "status=0") return Expected("KILN-CHECK done status=0", Show(c.Check("done")));
  return absl::OkStatus();
}

// Cgroup2Mounted(run, mode): /sys/fs/cgroup in the new root's mountinfo is cgroup2, `mode`.
absl::Status Cgroup2Mounted(const RunResult& run, absl::string_view mode) {
  const ConsoleResult& c = run.console;
  std::optional<std::string> line = c.Check("cgroup.mountinfo");
  if (!line || !absl::StrContains(*line, " /sys/fs/cgroup ") ||
      !absl::StrContains(*line, " - cgroup2 ")) {
    return Expected("a cgroup2 line for /sys/fs/cgroup in /proc/self/mountinfo", Show(line));
  }
  if (c.Check("cgroup.fstype") != "cgroup2") {
    return Expected("cgroup.fstype cgroup2", Show(c.Check("cgroup.fstype")));
  }
  if (c.Check("cgroup.mode") != mode) {
    return Expected(absl::StrCat("cgroup.mode ", mode), Show(c.Check("cgroup.mode")));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> RuncExit(const RunResult& run) {
  std::optional<std::string> v = run.console.Check("runc.exit");
  int rc;
  if (!v || !absl::SimpleAtoi(*v, &rc)) return Expected("KILN-CHECK runc.exit <n>", Show(v));
  return rc;
}

// StderrHas(run, text): some runc.stderr line contains `text`.
absl::Status StderrHas(const RunResult& run, absl::string_view text) {
  std::vector<std::string> lines = run.console.CheckAll("runc.stderr");
  for (const std::string& l : lines) {
    if (absl::StrContains(l, text)) return absl::OkStatus();
  }
  return Expected(absl::StrCat("runc stderr containing \"", text, "\""),
                  lines.empty() ? "no stderr" : absl::StrCat("[", absl::StrJoin(lines, " | "), "]"));
}

}  // namespace

void PrintTo(const Scenario& scenario, std::ostream* os) { *os << scenario.name; }

absl::Status ValidateArtifacts(const Artifacts& a) {
  const std::pair<const char*, const std::string*> files[] = {
      {"kernel", &a.kernel}, {"initrd", &a.initrd}, {"root_disk", &a.root_disk}};
  for (const auto& [what, path] : files) {
    if (path->empty()) return absl::InvalidArgumentError(absl::StrCat("artifact ", what, ": empty path"));
    if (access(path->c_str(), R_OK) != 0) return PosixError(errno, absl::StrCat("artifact ", what), *path);
  }
  return absl::OkStatus();
}

// NotDelegated: without kiln.delegate init makes no kiln-builder (a guest check that predates
// the delegate.dir line passes).
absl::Status NotDelegated(const RunResult& run) {
  std::optional<std::string> dir = run.console.Check("delegate.dir");
  if (dir && *dir != "none") {
    return Expected(absl::StrCat("no ", cgroup::kDelegatedPath, " without kiln.delegate"),
                    absl::StrCat("delegate.dir ", *dir));
  }
  return absl::OkStatus();
}

// PowerOffAfterConfigError: init printed one fatal config line containing every `want`,
// never got to ready or ran the check program, and the guest powered off by itself.
absl::Status PowerOffAfterConfigError(const RunResult& run,
                                      const std::vector<std::string>& want) {
  const ConsoleResult& c = run.console;
  if (!c.fatal) {
    return Expected("KILN-INIT: fatal step=config", c.ready ? "init went on to ready" : "no fatal line");
  }
  for (const std::string& w : want) {
    if (c.fatal->step != "config" || !absl::StrContains(c.fatal->detail, w)) {
      return Expected(absl::StrCat("a fatal config error containing \"", w, "\""), c.fatal->line);
    }
  }
  if (c.ready) return Expected("no KILN-INIT: ready before the fatal error", "ready");
  if (!c.checks.empty()) return Expected("no check program run", c.checks[0].name);
  if (run.exit.kind != VmExit::Kind::kExited) {
    return Expected("the guest to power off by itself (VMM exited)",
                    absl::StrCat("VMM ", VmExitKindName(run.exit.kind)));
  }
  return absl::OkStatus();
}

// RuncRanInItsCgroup: runc run exit 0 and the container's 0::/<id> line; returns that line.
absl::StatusOr<std::string> RuncRanInItsCgroup(const RunResult& run) {
  ASSIGN_OR_RETURN(int rc, RuncExit(run));
  if (rc != 0) {
    std::vector<std::string> err = run.console.CheckAll("runc.stderr");
    return Expected("runc run exit 0",
                    absl::StrCat(rc, err.empty() ? "" : absl::StrCat(": ", absl::StrJoin(err, " | "))));
  }
  for (const std::string& out : run.console.CheckAll("runc.stdout")) {
    if (absl::StartsWith(out, "0::/") && out.size() > 4) return out;
  }
  return Expected("the container's /proc/self/cgroup line 0::/<id>",
                  absl::StrCat("[", absl::StrJoin(run.console.CheckAll("runc.stdout"), " | "), "]"));
}

absl::Status CheckLineIs(const RunResult& run, absl::string_view name, absl::string_view want) {
  std::optional<std::string> got = run.console.Check(name);
  if (got != want) return Expected(absl::StrCat("KILN-CHECK ", name, " ", want), Show(got));
  return absl::OkStatus();
}

absl::StatusOr<std::string> CheckCgroupRw(const RunResult& run) {
  RETURN_IF_ERROR(ProgramRan(run));
  RETURN_IF_ERROR(Cgroup2Mounted(run, "rw"));
  RETURN_IF_ERROR(NotDelegated(run));
  ASSIGN_OR_RETURN(std::string container, RuncRanInItsCgroup(run));
  return absl::StrCat("cgroup2 rw at /sys/fs/cgroup; runc run exit 0; container cgroup ", container);
}

absl::StatusOr<std::string> CheckCgroupRo(const RunResult& run) {
  RETURN_IF_ERROR(ProgramRan(run));
  RETURN_IF_ERROR(Cgroup2Mounted(run, "ro"));
  ASSIGN_OR_RETURN(int rc, RuncExit(run));
  if (rc != 1) return Expected("runc run exit 1 (cannot create its cgroup)", absl::StrCat(rc));
  RETURN_IF_ERROR(StderrHas(run, "unable to apply cgroup configuration"));
  RETURN_IF_ERROR(StderrHas(run, "mkdir /sys/fs/cgroup/"));
  RETURN_IF_ERROR(StderrHas(run, "read-only file system"));
  return std::string(
      "cgroup2 ro at /sys/fs/cgroup; runc run exit 1: unable to apply cgroup configuration: "
      "mkdir /sys/fs/cgroup/<id>: read-only file system");
}

absl::StatusOr<std::string> CheckCgroupOff(const RunResult& run) {
  RETURN_IF_ERROR(ProgramRan(run));
  const ConsoleResult& c = run.console;
  if (c.Check("cgroup.mountinfo") != "none" || c.Check("cgroup.fstype") != "none") {
    return Expected("no mount at /sys/fs/cgroup", Show(c.Check("cgroup.mountinfo")));
  }
  ASSIGN_OR_RETURN(int rc, RuncExit(run));
  if (rc == 0) return Expected("runc run to fail without a cgroup mount", "exit 0");
  RETURN_IF_ERROR(StderrHas(run, "no cgroup mount found in mountinfo"));
  return absl::StrCat("negative control: no cgroup mount; runc run exit ", rc,
                      ": no cgroup mount found in mountinfo");
}

absl::StatusOr<std::string> CheckBadValue(const RunResult& run) {
  const ConsoleResult& c = run.console;
  if (!c.fatal) {
    return Expected("KILN-INIT: fatal for kiln.cgroup=maybe",
                    c.ready ? "init went on to ready" : "no fatal line");
  }
  if (!absl::StrContains(c.fatal->detail, "kiln.cgroup") ||
      !absl::StrContains(c.fatal->detail, "maybe")) {
    return Expected("a fatal error naming kiln.cgroup and \"maybe\"", c.fatal->line);
  }
  if (c.ready) return Expected("no KILN-INIT: ready before the fatal error", "ready");
  if (!c.checks.empty()) return Expected("no check program run", c.checks[0].name);
  if (run.exit.kind != VmExit::Kind::kExited) {
    return Expected("the guest to power off by itself (VMM exited)",
                    absl::StrCat("VMM ", VmExitKindName(run.exit.kind)));
  }
  return absl::StrCat("init: fatal step=", c.fatal->step, ": ", c.fatal->detail,
                      "; VM powered off");
}

absl::StatusOr<std::string> CheckCgroupDelegated(const RunResult& run) {
  RETURN_IF_ERROR(ProgramRan(run));
  RETURN_IF_ERROR(Cgroup2Mounted(run, "rw"));
  const ConsoleResult& c = run.console;
  const std::string owner = absl::StrCat(kDelegateUid, ":", kDelegateUid);
  // Controllers enabled top-down in the root.
  std::optional<std::string> root_sc = c.Check("cgroup.subtree_control");
  std::vector<std::string> enabled =
      root_sc ? absl::StrSplit(*root_sc, ' ', absl::SkipEmpty()) : std::vector<std::string>{};
  for (absl::string_view want : cgroup::kDelegatedControllers) {
    if (std::find(enabled.begin(), enabled.end(), want) == enabled.end()) {
      return Expected(absl::StrCat("the root's cgroup.subtree_control to list ", want),
                      Show(root_sc));
    }
  }
  // The directory and exactly the delegated files, owned by the delegatee.
  RETURN_IF_ERROR(CheckLineIs(run, "delegate.dir", absl::StrCat(owner, " 755")));
  std::vector<std::string> files = c.CheckAll("delegate.file");
  for (absl::string_view f : cgroup::kDelegatedFiles) {
    std::string want = absl::StrCat(f, " ", owner);
    if (std::find(files.begin(), files.end(), want) == files.end()) {
      return Expected(absl::StrCat("KILN-CHECK delegate.file ", want),
                      absl::StrCat("[", absl::StrJoin(files, " | "), "]"));
    }
  }
  // The delegatee itself used it: a child cgroup, a move, a controller; not the parent's knob.
  std::vector<std::string> probe = c.CheckAll("delegate.probe");
  const std::string child = absl::StrCat("0::/", cgroup::kDelegatedName, "/probe");
  for (const std::string& want :
       {absl::StrCat("uid=", kDelegateUid), absl::StrCat("cgroup=", child),
        std::string("subtree_control=pids"), std::string("parent-knob=denied")}) {
    if (std::find(probe.begin(), probe.end(), want) == probe.end()) {
      return Expected(absl::StrCat("KILN-CHECK delegate.probe ", want),
                      absl::StrCat("[", absl::StrJoin(probe, " | "), "]"));
    }
  }
  RETURN_IF_ERROR(CheckLineIs(run, "delegate.probe.exit", "0"));
  // /dev/net/tun for slirp4netns: char 10:200 (hex a:c8), 0666.
  RETURN_IF_ERROR(CheckLineIs(run, "dev.tun", "character special file a:c8 666"));
  ASSIGN_OR_RETURN(std::string container, RuncRanInItsCgroup(run));
  return absl::StrCat("kiln.delegate=", kDelegateUid, ": ", cgroup::kDelegatedPath, " ", owner,
                      " with ", absl::StrJoin(cgroup::kDelegatedFiles, ", "),
                      "; root subtree_control ", *root_sc, "; uid ", kDelegateUid,
                      " made and entered ", child.substr(3),
                      ", enabled +pids, parent's pids.max denied; /dev/net/tun 10:200 0666; "
                      "runc run exit 0 in ",
                      container);
}

absl::StatusOr<std::string> CheckDelegateRo(const RunResult& run) {
  RETURN_IF_ERROR(PowerOffAfterConfigError(
      run, {absl::StrCat("kiln.delegate=\"", kDelegateUid, ":", kDelegateUid, "\""),
            "kiln.cgroup=ro", "cannot be delegated"}));
  return absl::StrCat("init: fatal step=config: ", run.console.fatal->detail, "; VM powered off");
}

const std::vector<Scenario>& CgroupScenarios() {
  static const std::vector<Scenario>* const kScenarios = new std::vector<Scenario>{
      {"cgroup-rw", "cgroup=rw: cgroup2 rw in the new root, runc run exits 0 in its own cgroup",
       absl::StrCat(kCgroupCheckCmdline, " kiln.cgroup=rw"), &CheckCgroupRw},
      {"cgroup-ro", "cgroup=ro: cgroup2 read-only, runc run fails creating its cgroup",
       absl::StrCat(kCgroupCheckCmdline, " kiln.cgroup=ro"), &CheckCgroupRo},
      {"cgroup-off", "cgroup=off (negative control): runc run fails: no cgroup mount",
       absl::StrCat(kCgroupCheckCmdline, " kiln.cgroup=off"), &CheckCgroupOff},
      {"cgroup-bad-value", "kiln.cgroup=maybe: init reports a fatal config error, powers off",
       absl::StrCat(kCgroupCheckCmdline, " kiln.cgroup=maybe"), &CheckBadValue},
      {"cgroup-delegated",
       "kiln.delegate=1000: kiln-builder delegated to uid 1000, which uses it; /dev/net/tun 0666",
       absl::StrCat(kCgroupCheckCmdline, " kiln.cgroup=rw kiln.delegate=", kDelegateUid),
       &CheckCgroupDelegated},
      {"cgroup-delegate-ro",
       "kiln.delegate=1000 with kiln.cgroup=ro: init reports a fatal config error, powers off",
       absl::StrCat(kCgroupCheckCmdline, " kiln.cgroup=ro kiln.delegate=", kDelegateUid),
       &CheckDelegateRo},
  };
  return *kScenarios;
}

absl::StatusOr<std::string> CheckAgentVsock(const RunResult& run) {
  RETURN_IF_ERROR(ProgramRan(run));
  const ConsoleResult& c = run.console;
  std::optional<std::string> connect = c.Check("vsock.connect");
  if (!connect || !absl::StartsWith(*connect, "ok ")) {
    return Expected("KILN-CHECK vsock.connect ok ...", Show(connect));
  }
  std::optional<std::string> ready = c.Check("vsock.ready");
  if (!ready || !absl::StartsWith(*ready, "kiln-agent")) {
    return Expected("KILN-CHECK vsock.ready kiln-agent ...", Show(ready));
  }
  std::optional<std::string> pong = c.Check("vsock.pong");
  if (!pong || !absl::StartsWith(*pong, "nonce=1802071150 ")) {  // 0x6b696c6e, "kiln"
    return Expected("KILN-CHECK vsock.pong nonce=1802071150 ...", Show(pong));
  }
  if (c.Check("vsock.agent-exit") != "0") {
    return Expected("KILN-CHECK vsock.agent-exit 0", Show(c.Check("vsock.agent-exit")));
  }
  return absl::StrCat("agent on AF_VSOCK: connect ", connect->substr(3), "; Ready from ",
                      *ready, "; Pong ", *pong, "; agent exit 0");
}

const Scenario& AgentVsockScenario() {
  static const Scenario* const kScenario = new Scenario{
      "agent-vsock",
      "the agent's AF_VSOCK channel (CH's) in a real guest, via vsock_loopback: Ready, Pong",
      std::string(kAgentVsockCmdline), &CheckAgentVsock};
  return *kScenario;
}

absl::StatusOr<Scenario> FindScenario(absl::string_view name) {
  std::vector<std::string> names;
  for (const Scenario& s : CgroupScenarios()) {
    if (s.name == name) return s;
    names.push_back(s.name);
  }
  return absl::NotFoundError(
      absl::StrCat("no scenario \"", name, "\"; known: ", absl::StrJoin(names, ", ")));
}

VmConfig ScenarioVmConfig(const Scenario& scenario, const Artifacts& artifacts,
                          const ScenarioVmOptions& options) {
  VmConfig c;
  c.id = scenario.name;
  c.kernel_path = artifacts.kernel;
  c.initrd_path = artifacts.initrd;
  c.disks.push_back({artifacts.root_disk, /*read_only=*/true});
  c.cmdline = scenario.cmdline;
  c.vcpus = options.vcpus;
  c.memory_mib = options.memory_mib;
  c.deadline = options.deadline;
  return c;
}

ScenarioOutcome RunScenario(VmFactory& factory, const Scenario& scenario,
                            const Artifacts& artifacts, const ScenarioVmOptions& options) {
  ScenarioOutcome o;
  o.name = scenario.name;
  absl::Time start = absl::Now();
  absl::StatusOr<RunResult> run = factory.Run(ScenarioVmConfig(scenario, artifacts, options));
  o.duration = absl::Now() - start;
  if (!run.ok()) {
    o.status = run.status();
    return o;
  }
  o.attempts = run->attempts;
  o.retry_reason = run->retry_reason;
  o.log_dir = run->saved_log_dir;
  o.kernel_version = run->console.kernel_version;
  o.vmm_peak_rss_bytes = run->exit.peak_rss_bytes;
  absl::StatusOr<std::string> checked = scenario.check(*run);
  if (checked.ok()) {
    o.summary = *checked;
  } else {
    o.status = absl::Status(
        checked.status().code(),
        absl::StrCat(scenario.name, ": ", checked.status().message(),
                     o.log_dir.empty() ? "" : absl::StrCat(" (logs: ", o.log_dir, ")"),
                     "\n--- serial log tail ---\n", LogTail(run->serial_log, 30)));
  }
  return o;
}

}  // namespace kiln::harness
