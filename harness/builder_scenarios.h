// File: harness/builder_scenarios.h
// -----------------------------------------------------------------------------
//
// kiln's builder VM scenarios: real builds with dockerd's built-in BuildKit in builder VMs,
// driven by the builder client (builder_client.h), with their checks. Shared by the VM test
// (harness/builder_vm_test.cc) and //harness:verify. The default builder is production's:
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
// harness/leak_scan.h reports for either secret (ScanOciArchiveForSecret,
// ScanLogsForSecret), in the job's image, its log lines, and the serial log.
//
//   group builder-reference  (the inputs' builder_mode; the measured reference build)
//     run-no-secret       RUN without secrets ran (runc works): "step-one" in the log
//     secret-default      RUN --mount=type=secret,id=build_token saw the value: its sha256
//                         in the log
//     leak-scan           0 occurrences of the secret in the OCI archive (raw, every blob,
//                         every layer decompressed entry by entry, config, history) and in
//                         every log line the host received
//   group builder-secrets    (the inputs' builder_mode)
//     secret-modes        default mount, target=, required=true each print the sha256; the
//                         RUN that prints it raw/base64/hex leaks nothing
//     secret-redaction    examples/secret-redaction: the token printed raw, with `base64`,
//                         `base64 -w 0`, `od -An -tx1`, `xxd`, `xxd -p`, `hexdump -C`, and
//                         the 16 KiB blob with base64/od/xxd -p/hexdump -C (busybox 1.35 of
//                         kiln-busybox:1 has every one of these): at least
//                         kMinTokenRedactions [REDACTED:build_token] and kMinBlobRedactions
//                         [REDACTED:build_blob] markers (one per printed line), and 0 leaks
//                         (no 16-character window of any form) in the log or the image
//     secret-env-refused  env= (refused by the built-in Dockerfile frontend of dockerd 20.10
//                         and of 26.1: "unexpected key 'env'") refused by kiln before
//                         BuildKit runs, naming env
//     missing-secret      a job naming a secret the host did not send: refused
//                         (FailedPrecondition "did not deliver"), no BuildResult
//     undeclared-secret   a Dockerfile using a secret the job does not list: refused by the
//                         runner's Dockerfile check before any daemon starts
//     failing-step        RUN exiting 3: BuildResult with exit != 0, error with the log tail
//                         naming the failed step, no image
//   the matrix (BuilderMatrix): one group per {rootless, rootful} x {cgroup rw, ro, off}, on
//   the Debian 13 disk, each with two jobs, a RUN without a secret and a RUN with one; every
//   cell's outcome is asserted exactly as measured (the table is in BuilderMatrix()):
//     builder-rootless-rw builder-rootless-ro builder-rootless-off
//     builder-rootful-rw  builder-rootful-ro  builder-rootful-off
//   group builder-rootless-undelegated (rootless, cgroup rw, delegate_cgroup = false)
//     rootless-undelegated-refused  the agent refuses the job naming the missing delegation
//
// Example (verify):
//
//   BuilderScenarioInputs in = ...;
//   for (const BuilderGroupOutcome& g : RunAllBuilderGroups(factory, in)) PrintBuilderGroup(g, std::cout);
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
#include "harness/builder_client.h"
#include "harness/leak_scan.h"
#include "harness/runner.h"
#include "images/oci/digest.h"

namespace kiln::harness {

// kTokenSecretBytes, kBlobSecretBytes: the sizes of the scenario secrets.
inline constexpr size_t kTokenSecretBytes = 120;
inline constexpr size_t kBlobSecretBytes = 16 << 10;
// kMinTokenRedactions: the lines of examples/secret-redaction's output that hold a form of the
// 120-byte token, each of which must carry a marker: raw 1, base64 3 (76 columns), base64 -w 0
// 1, od -An -tx1 8 (16 bytes a line), xxd 8, xxd -p 4 (30 bytes a line), hexdump -C 8.
inline constexpr int64_t kMinTokenRedactions = 33;
// kMinBlobRedactions: the same for build_blob: base64, od, xxd -p, hexdump -C lines (8+8+4+4).
inline constexpr int64_t kMinBlobRedactions = 24;

// ScenarioSecrets: the secrets of one group's jobs.
struct ScenarioSecrets {
  std::string token;  // build_token
  std::string blob;   // build_blob
};

// NewScenarioSecrets(token): `token` (or, if empty, "ghp_" + base64 of 87 random bytes:
// kTokenSecretBytes) and kBlobSecretBytes random bytes.
ScenarioSecrets NewScenarioSecrets(absl::string_view token = "");

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
                                                          const ScenarioSecrets& secrets)>
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

// BuilderGroups(): builder-reference, builder-secrets, the six matrix rows and
// builder-rootless-undelegated (file comment), in that order.
const std::vector<BuilderGroup>& BuilderGroups();

// ---------------------------------------------------------------------------------------
// The rootless/rootful matrix (issue 11)

// MatrixRun: the two builds of a matrix row.
enum class MatrixRun {
  kPlain,   // RUN sleep 2; echo kiln-matrix-run; id -u
  kSecret,  // RUN --mount=type=secret,id=build_token,required=true: prints its sha256 and
            // probes the guest's paths (MatrixCell file comment)
};

// MatrixOutcome: what a cell's job does.
enum class MatrixOutcome {
  kBuilt,         // BuildResult exit 0 with an image
  kStepFailed,    // BuildResult exit `exit_status`, the build ran, `text` in error or log
  kDaemonFailed,  // BuildResult exit `exit_status`, the daemon never came up (build phase
                  // 0), `text` in the error
  kRefused,       // the agent's Error reply (FailedPrecondition) containing `text`; no result
};

// MatrixCell: one cell, as measured in real VMs (QEMU TCG, Debian 13 disk: dockerd 26.1.5,
// BuildKit 0.13, runc 1.1.15, rootlesskit 2.0.2; images/rootfs/ROOTLESS.md). A kBuilt cell
// also pins the agent's `kiln: RUN step process <pid> (<comm>): Uid <r> <e> <s> <f> in cgroup
// <path>` log line (/proc/<pid>/status of the step's process, read from the guest's root
// side): `step_uid` is its four uids. A kBuilt kSecret cell also requires the step to have
// read its secret (the sha256 printed) and, from inside the step, that none of the guest's
// own secret and agent paths (kMatrixGuestPaths) exist and that the only file named
// build_token in the step's whole file system is its own mount, /run/secrets/build_token.
struct MatrixCell {
  const char* mode;    // kBuilderModeRootless | kBuilderModeRootful
  const char* cgroup;  // rw | ro | off (kiln.cgroup; rw is delegated to uid 1000)
  MatrixRun run;
  MatrixOutcome outcome;
  int exit_status;       // kStepFailed, kDaemonFailed (kBuilt: 0)
  const char* text;      // kStepFailed, kDaemonFailed, kRefused: the exact text to find
  const char* step_uid;  // kBuilt: "1000 1000 1000 1000" or "0 0 0 0"
};

// kMatrixGuestPaths: the guest paths a RUN step must not see (secret dirs of both modes, the
// agent's job dirs, the build user's home with the rootless daemon's data root).
inline constexpr const char* kMatrixGuestPaths[] = {
    "/run/kiln-secrets", "/dev/shm/kiln-secrets", "/run/user/1000", "/run/kiln-agent",
    "/home/builder"};

// BuilderMatrix(): the 12 cells, rows rootless rw/ro/off then rootful rw/ro/off, plain then
// secret in each row.
const std::vector<MatrixCell>& BuilderMatrix();

// MatrixCellName(cell): "<mode>-<cgroup>-run" or "<mode>-<cgroup>-run-secret" (the scenario
// name). MatrixOutcomeName(outcome): "built", "step fails", "daemon fails", "refused".
std::string MatrixCellName(const MatrixCell& cell);
const char* MatrixOutcomeName(MatrixOutcome outcome);

// StepUidLine: the agent's RUN-step line parsed.
struct StepUidLine {
  std::string uids;    // "1000 1000 1000 1000"
  std::string cgroup;  // "/kiln-builder/..."
  std::string comm;
};
// FindStepUidLine(log): the first `kiln: RUN step process <pid> (<comm>): Uid a b c d in
// cgroup <path>` line in `log`; NotFound if none. Pure.
absl::StatusOr<StepUidLine> FindStepUidLine(absl::string_view log);

// CheckMatrixCell(cell, r, secret_sha256): OkStatus with a one-line summary of what was seen
// if `r` is exactly the cell's outcome; FailedPrecondition "expected <...>, got <...>" (with
// the log tail) otherwise. Pure.
absl::StatusOr<std::string> CheckMatrixCell(const MatrixCell& cell, const BuildResponse& r,
                                            absl::string_view secret_sha256);

// MatrixCellResult: one checked cell of a run.
struct MatrixCellResult {
  MatrixCell cell;
  absl::Status status;   // OK: as expected
  std::string observed;  // the summary (OK) or the failure detail
  int64_t ms = -1;       // host: job sent -> result (or refusal); -1: the job never ran
};

// MatrixResults(groups): the cells found in these outcomes (matrix groups only, in
// BuilderMatrix() order; a row whose VM failed gives failed cells with the run error).
std::vector<MatrixCellResult> MatrixResults(const std::vector<BuilderGroupOutcome>& groups);

// FormatBuilderMatrix(results): the table verify prints: one line per cell with mode,
// cgroup, RUN kind, PASS/FAIL, the outcome seen (exit, step uid, or the error text) and the
// job's time. Pure.
std::string FormatBuilderMatrix(const std::vector<MatrixCellResult>& results);

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
