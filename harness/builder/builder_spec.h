// File: harness/builder/builder_spec.h
// -----------------------------------------------------------------------------
//
// Builder scenarios as data (issue 18, item 2; first cut): a scenario is a folder
// harness/builder/scenarios/<name>/ holding its Dockerfile (and any context files) and one
// spec.json that says what the job sends and what must hold. One generic checker
// (CheckScenario) evaluates every spec; the runner is //harness:build's own library
// (build_command.h), so a scenario runs exactly as `bazel run //harness:build` would run it.
//
// spec.json (unknown keys are refused, so a typo cannot silently weaken a scenario):
//
//   {
//     "title": "a RUN step reads the secret (default mount)",
//     "vm": {                                                // optional
//       "builder_mode": "rootless",                          // rootless | rootful
//       "cgroup": "rw",                                      // kiln.cgroup: rw | ro | off
//       "delegate": true                                     // rw delegated to uid 1000
//     },
//     "secrets": {                                           // id -> how its value is made
//       "build_token": {"generate": {"bytes": 120, "alphabet": "alnum", "prefix": "ghp_"}},
//       "cert": {"file": "cert.pem"}                         // a file of the scenario folder
//     },
//     "send": {                                              // optional
//       "secrets": ["build_token"],                          // default: every secret above
//       "name_secrets": ["build_token"],  // ids the job names (default: the sent ones); a
//                                         // named id that is not sent tests the agent's refusal
//       "host_checks": true,              // false: PrepareBuild leaves the Dockerfile's secret
//                                         // use to the builder (tests of the guest's refusals)
//       "build_args": {"V": "1"}, "target": "", "tag": "", "preload_busybox": true
//     },
//     "expect": {
//       "result": "built",              // built | failed | refused | vm-failed
//       "exit_code": 0,                 // //harness:build's exit code (build_command.h): a
//                                       // refusal before a VM is 2, the builder's refusal 1
//       "error_code": "FAILED_PRECONDITION",  // the builder's refusal's absl code
//                                       // (absl::StatusCodeToString)
//       "build_exit_status": 1,         // the guest's BuildResult exit status
//       "build_ran": true,              // the guest's build phase ran (false: the daemon failed)
//       "step_uid": "1000 1000 1000 1000",  // Uid of the agent's `kiln: RUN step process`
//                                       // line (the first one; log or error)
//       "log_contains": ["{{sha256:build_token}}"],   // substrings of the live log
//       "log_excludes": ["{{value:build_token}}"],
//       "log_count_min": {"[REDACTED:build_token]": 33},  // at least N occurrences in the log
//       "log_empty": false,             // true: the host received no log line
//       "output_contains": ["runc run failed"],       // in the log or the error
//       "leak": false,                  // true: the leak scan must find a secret
//       "leak_where": ["leaked-token.txt"],            // substrings of some leak finding
//       "error_contains": ["not preloaded"],           // substrings of the error / refusal
//       "image_files": {"etc/motd": "hello\n"},        // files of the built image (layers
//                                       // applied in order, whiteouts honoured): exact bytes
//       "image_absent": ["run/secrets/build_token"]    // paths the built image must not have
//     }
//   }
//
// Rules the checker applies to every scenario: a result other than built returns no image and
// a refused job has no BuildResult; a built scenario that sends secrets must have been leak-
// scanned (image, log, serial log) completely.
//
// Placeholders in expected strings (log_*, output_contains, error_contains, image_files
// values): {{sha256:ID}} (lowercase hex SHA-256 of the secret's value, what `sha256sum`
// prints) and {{value:ID}} (the value itself: only sensible in log_excludes).
//
// Example:
//
//   ASSIGN_OR_RETURN(ScenarioSpec spec, LoadScenario("harness/builder/scenarios/reference"));
//   ASSIGN_OR_RETURN(ScenarioSecrets secrets, MakeScenarioSecrets(spec));
//   ... run it (build_command.h) into a ScenarioObservation ...
//   std::vector<std::string> failures = CheckScenario(spec, secrets, observed);
#ifndef KILN_HARNESS_BUILDER_SPEC_H_
#define KILN_HARNESS_BUILDER_SPEC_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "harness/builder/build_command.h"
#include "harness/vmm/runner.h"

namespace kiln::harness {

// SecretRecipe: how a scenario secret's value is made.
struct SecretRecipe {
  // generate: `bytes` characters from `alphabet` ("alnum", "hex", "binary": any byte 0-255),
  // after `prefix`; or file: a file of the scenario folder (relative, no "..").
  int64_t bytes = 0;
  std::string alphabet = "alnum";
  std::string prefix;
  std::string file;
};

// ScenarioExpect: what must hold.
struct ScenarioExpect {
  std::string result;  // built | failed | refused | vm-failed
  std::optional<int> exit_code;
  std::string error_code;  // "" = not checked
  std::optional<int> build_exit_status;
  std::optional<bool> build_ran;
  std::string step_uid;  // "" = not checked
  std::vector<std::string> log_contains;
  std::vector<std::string> log_excludes;
  std::map<std::string, int64_t> log_count_min;
  bool log_empty = false;
  std::vector<std::string> output_contains;
  bool leak = false;
  std::vector<std::string> leak_where;
  std::vector<std::string> error_contains;
  std::map<std::string, std::string> image_files;  // root-relative path -> exact contents
  std::vector<std::string> image_absent;           // root-relative paths
};

// ScenarioSpec: one folder, parsed.
struct ScenarioSpec {
  std::string name;  // the folder's name
  std::string dir;   // the folder (the build context)
  std::string title;
  std::string builder_mode = "rootless";
  bool builder_mode_set = false;  // vm.builder_mode given (else a runner may pick the mode)
  std::string cgroup = "rw";  // kiln.cgroup of the VM
  bool delegate = true;       // BuilderVmOptions::delegate_cgroup
  std::map<std::string, SecretRecipe> secrets;
  std::vector<std::string> send_secrets;  // ids sent with the job
  std::vector<std::string> name_secrets;  // ids the job names (default: send_secrets)
  bool host_checks = true;                // BuildCommand::check_secret_use
  std::map<std::string, std::string> build_args;
  std::string target;
  std::string tag;
  bool preload_busybox = true;
  ScenarioExpect expect;
};

// ParseScenarioSpec(name, dir, json): the spec (pure). InvalidArgument naming the key for
// malformed JSON, an unknown key, a wrong type, a result word not in the list, a secret with
// neither or both of generate/file, bytes outside 1..512000, an unknown alphabet, a sent
// secret that is not declared, or a placeholder naming an undeclared secret, a cgroup word
// other than rw/ro/off, an error_code that is not an absl code (StatusCodeToString's words), a log_count_min below 1,
// an image path that is absolute or has a ".." component.
absl::StatusOr<ScenarioSpec> ParseScenarioSpec(absl::string_view name, const std::string& dir,
                                               absl::string_view json);

// LoadScenario(dir): reads dir/spec.json (and checks dir/Dockerfile exists). NotFound for a
// missing file; ParseScenarioSpec's errors prefixed with the path.
absl::StatusOr<ScenarioSpec> LoadScenario(const std::string& dir);

// ListScenarioDirs(root): the sub-directories of root that hold a spec.json, sorted.
absl::StatusOr<std::vector<std::string>> ListScenarioDirs(const std::string& root);

// ScenarioSecrets: id -> value, made from the recipes (fresh random values per call).
using ScenarioSecrets = std::map<std::string, std::string>;
absl::StatusOr<ScenarioSecrets> MakeScenarioSecrets(const ScenarioSpec& spec);

// ExpandPlaceholders(text, secrets): {{sha256:ID}} and {{value:ID}} replaced. Pure.
std::string ExpandPlaceholders(absl::string_view text, const ScenarioSecrets& secrets);

// ScenarioObservation: what a run produced (build_command.h's BuildOutcome + the live log).
struct ScenarioObservation {
  std::string result;      // BuildOutcome::result, or "refused" when PrepareBuild refused
  int exit_code = -1;
  std::string log;         // every live log line, '\n'-joined
  std::string error;       // BuildOutcome::error or PrepareBuild's message
  std::vector<std::string> leaks;  // "secret <id> in <artifact>: <where>"
  std::string error_code;  // the builder's refusal's code, absl::StatusCodeToString ("" if none)
  int build_exit_status = -1;  // the guest's BuildResult exit status; -1: no BuildResult
  bool build_ran = false;      // the guest's "build" phase took > 0 ms
  bool has_image = false;      // an image came back
  bool leak_scanned = false;   // BuildOutcome::leak_scanned
  // image_files: each path of the spec's image_files and image_absent, read from the built
  // image (ReadImageFiles); a path the image does not hold is absent from the map.
  std::map<std::string, std::string> image_files;
  std::string image_error;     // why the image could not be read ("" = read)
};

// StepUidLine: the agent's `kiln: RUN step process <pid> (<comm>): Uid a b c d in cgroup
// <path>` line parsed (/proc/<pid>/status of the RUN step's process, from the guest's root).
struct StepUidLine {
  std::string uids;    // "1000 1000 1000 1000"
  std::string cgroup;  // "/kiln-builder/..."
  std::string comm;
};
// FindStepUidLine(log): the first such line in `log`; NotFound if none. Pure.
absl::StatusOr<StepUidLine> FindStepUidLine(absl::string_view log);

// ReadImageFiles(oci_archive, paths, work_dir): the built image's file system as a container
// would see it (the OCI archive unpacked into work_dir: layers in manifest order, whiteouts
// applied, images/tool/unpack.h), and of it the regular files among `paths` (root-relative)
// with their contents; a path that is missing or not a regular file is left out. Errors: the
// archive cannot be extracted or read as an OCI layout (the unpacker's codes).
absl::StatusOr<std::map<std::string, std::string>> ReadImageFiles(
    const std::string& oci_archive, const std::vector<std::string>& paths,
    const std::string& work_dir);

// CheckScenario(spec, secrets, observed): every expectation that does not hold, as one line
// each ("expected result built, got failed (error: ...)"); empty when all hold. Pure.
std::vector<std::string> CheckScenario(const ScenarioSpec& spec, const ScenarioSecrets& secrets,
                                       const ScenarioObservation& observed);

// RunBuilderScenario(factory, spec, secrets, run, busybox_image): runs one scenario as
// //harness:build runs a command: the folder is copied (symlinks followed) to
// run.work_dir/context, a BuildCommand is made from the spec (secrets handed over in memory
// through an EnvLookup, never the process environment; kiln-busybox:1 preloaded from
// `busybox_image` unless the spec says not), PrepareBuild (a refusal is result "refused", exit
// kBuildExitUsage, no VM) and RunPreparedBuild with run.vm (builder_mode from the spec). The
// live log is collected (and passed on to run.on_log if set).
ScenarioObservation RunBuilderScenario(VmFactory& factory, const ScenarioSpec& spec,
                                       const ScenarioSecrets& secrets, BuildRunOptions run,
                                       const std::string& busybox_image);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_BUILDER_SPEC_H_
