// File: harness/builder/builder_scenarios.h
// -----------------------------------------------------------------------------
//
// kiln's builder VM scenarios: real builds with dockerd's built-in BuildKit in builder VMs,
// driven by the builder client (builder_client.h), with their checks: the one group that VM
// tests drive with their own VM options (snapshot_vm_test, build_vm_test). The default builder
// is production's:
// the Debian 13 disk (dockerd 26.1, BuildKit 0.13, runc 1.1.15) with the daemon rootless as
// uid 1000 in a delegated cgroup v2 subtree (BuilderVmOptions::builder_mode,
// delegate_cgroup); the Debian 12 disk (dockerd 20.10) runs rootful only.
//
// Scenarios are grouped by the VM they run in (a *group* = one builder VM, its jobs, its
// checks). A fresh VM per job is the production model; a group that runs several jobs in one
// VM stays honest because the agent gives every job fresh daemons with a fresh data root and
// wipes the job's secrets after it (so a later "missing secret" job proves the wipe).
//
// Secrets (fresh per group, NewScenarioSecrets): build_token, 120 bytes ("ghp_" + 116
// characters of base64 text, a GitHub token's shape; longer than the 57 bytes after which
// `base64` wraps), and build_blob, 16 KiB of random bytes. "Leaks" below are what
// harness/builder/leak_scan.h reports for either secret (ScanOciArchiveForSecret,
// ScanLogsForSecret), in the job's image, its log lines, and the serial log.
//
//   group builder-reference  (the inputs' builder_mode; the measured reference build)
//     run-no-secret       RUN without secrets ran (runc works): "step-one" in the log
//     secret-default      RUN --mount=type=secret,id=build_token saw the value: its sha256
//                         in the log
//     leak-scan           0 occurrences of the secret in the OCI archive (raw, every blob,
//                         every layer decompressed entry by entry, config, history) and in
//                         every log line the host received
//
// Every other builder scenario is a folder under harness/builder/scenarios/ (Dockerfile +
// spec.json, checked by the one generic checker of harness/builder/builder_spec.h): secret mount forms,
// redaction, refusals, a failing step, the {rootless, rootful} x {cgroup rw, ro, off} x {RUN,
// RUN with a secret} matrix and the undelegated rootless builder. builder-reference stays a
// group here because the warm-snapshot and build-command VM tests drive it with their own VM
// options (snapshot_vm_test.cc, build_vm_test.cc); its folder twin is scenarios/builder/reference.
//
// Example (build_vm_test):
//
//   BuilderScenarioInputs in = ...;
//   for (const BuilderGroupOutcome& g : RunAllBuilderGroups(factory, in)) PrintBuilderGroup(g, std::cerr);
#ifndef KILN_HARNESS_BUILDER_SCENARIOS_H_
#define KILN_HARNESS_BUILDER_SCENARIOS_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "harness/builder/builder_client.h"
#include "harness/builder/leak_scan.h"
#include "harness/vmm/runner.h"
#include "images/oci/digest.h"

namespace kiln::harness {

// kTokenSecretBytes, kBlobSecretBytes: the sizes of the scenario secrets.
inline constexpr size_t kTokenSecretBytes = 120;
inline constexpr size_t kBlobSecretBytes = 16 << 10;

// GroupSecrets: the secrets of one group's jobs.
struct GroupSecrets {
  std::string token;  // build_token
  std::string blob;   // build_blob
};

// NewScenarioSecrets(token): `token` (or, if empty, "ghp_" + base64 of 87 random bytes:
// kTokenSecretBytes) and kBlobSecretBytes random bytes.
GroupSecrets NewScenarioSecrets(absl::string_view token = "");

// BuilderScenarioInputs: what the builder scenarios need on the host.
struct BuilderScenarioInputs {
  BuilderArtifacts artifacts;
  std::string busybox_image;  // docker-archive of kiln-busybox:1 (kiln-build --make-busybox-image)
  std::string examples_dir;   // agent/runner/examples (reference/, secret-modes/, failing/, ...)
  std::string work_dir;       // host scratch dir for context tars and received images
  std::string secret;         // the build_token value; "" = a fresh random one per group
  BuilderVmOptions vm;        // VM size/timeouts (id and cgroup are set per group)
};

// ValidateBuilderScenarioInputs(in): OK, or InvalidArgument/NotFound naming what is missing.
absl::Status ValidateBuilderScenarioInputs(const BuilderScenarioInputs& in);

// Sha256Hex(data): lowercase hex SHA-256 (what `sha256sum` prints), the OCI library's
// (images/oci/digest.h). Pure.
using ::kiln::oci::Sha256Hex;

// JobEvidence: one job's response plus the scans of what came back (both secrets, merged;
// LeakReport::where names the secret id).
struct JobEvidence {
  BuildResponse response;
  absl::StatusOr<LeakReport> image_leaks = LeakReport{};  // no image: empty report
  LeakReport log_leaks;
};

// ScenarioResult: one checked scenario.
struct ScenarioResult {
  std::string name;
  std::string title;
  absl::Status status;  // OK = PASS; else FailedPrecondition "expected ..., got ..."
  std::string summary;  // what was seen (PASS) or the failure detail
};

// BuilderGroupOutcome: one group's VM run and its checked scenarios.
struct BuilderGroupOutcome {
  std::string name;
  BuilderRun run;
  std::vector<JobEvidence> evidence;  // per job, in order
  std::vector<ScenarioResult> scenarios;
  std::string secret_sha256;  // of build_token
  std::string blob_sha256;    // of build_blob
  size_t token_bytes = 0;
  size_t blob_bytes = 0;
  bool AllPassed() const;
};

// BuilderGroupChecks: the pure checks of a group, over its outcome (run + evidence).
using BuilderGroupChecks =
    std::function<std::vector<ScenarioResult>(const BuilderGroupOutcome& outcome,
                                              absl::string_view secret)>;

// BuilderGroup: one builder VM's scenarios. Pure data + pure checks.
struct BuilderGroup {
  std::string name;    // VM id and test name ([a-z0-9-]+)
  std::string title;
  std::string cgroup;  // kiln.cgroup of the VM
  // jobs(in, secrets): the requests (context tars/images are made below in.work_dir).
  std::function<absl::StatusOr<std::vector<BuildRequest>>(const BuilderScenarioInputs& in,
                                                          const GroupSecrets& secrets)>
      jobs;
  BuilderGroupChecks checks;
  std::vector<std::string> scenario_names;  // what checks() reports, in order
  // builder_mode: the VM's BuilderVmOptions::builder_mode; "" = the inputs' (in.vm).
  std::string builder_mode;
  // delegate_cgroup: BuilderVmOptions::delegate_cgroup of the VM.
  bool delegate_cgroup = true;
};

// PrintTo(group, os): gtest printer (prints the name).
void PrintTo(const BuilderGroup& group, std::ostream* os);

// BuilderGroups(): builder-reference (file comment).
const std::vector<BuilderGroup>& BuilderGroups();

// RunBuilderGroup(factory, group, in): makes the secrets and the jobs, runs them in one
// builder VM (RunBuilderJobs; a stuck VM is retried once, one out of memory is not), scans
// what came back (image, logs, serial log) for both secrets, applies the checks. Never fails:
// an infrastructure failure (VM did not come up, channel died) fails every scenario of the
// group with that message; a guest out of memory puts BuilderRun::oom first in every failed
// check; a secret in the serial log adds a failed "serial-log-clean".
BuilderGroupOutcome RunBuilderGroup(VmFactory& factory, const BuilderGroup& group,
                                    const BuilderScenarioInputs& in);

// RunAllBuilderGroups(factory, in): RunBuilderGroup for every group, one VM at a time.
std::vector<BuilderGroupOutcome> RunAllBuilderGroups(VmFactory& factory,
                                                     const BuilderScenarioInputs& in);

// PrintBuilderGroup(g, os): the readable report of a group: each scenario PASS/FAIL with its
// summary, the host timings (VMM start -> Ready -> result -> VM gone), the guest phases of
// each job, bytes moved (context, preload, image; log bytes the host's cap dropped), guest
// memory, VMM peak RSS, attempts and lockup events, the OOM killer's kills, the log dir.
void PrintBuilderGroup(const BuilderGroupOutcome& g, std::ostream& os);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_BUILDER_SCENARIOS_H_
