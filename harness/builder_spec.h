// File: harness/builder_spec.h
// -----------------------------------------------------------------------------
//
// Builder scenarios as data (issue 18, item 2; first cut): a scenario is a folder
// harness/scenarios/builder/<name>/ holding its Dockerfile (and any context files) and one
// spec.json that says what the job sends and what must hold. One generic checker
// (CheckScenario) evaluates every spec; the runner is //harness:build's own library
// (build_command.h), so a scenario runs exactly as `bazel run //harness:build` would run it.
//
// spec.json (unknown keys are refused, so a typo cannot silently weaken a scenario):
//
//   {
//     "title": "a RUN step reads the secret (default mount)",
//     "vm": {"builder_mode": "rootless"},                   // optional; rootless | rootful
//     "secrets": {                                           // id -> how its value is made
//       "build_token": {"generate": {"bytes": 120, "alphabet": "alnum", "prefix": "ghp_"}},
//       "cert": {"file": "cert.pem"}                         // a file of the scenario folder
//     },
//     "send": {                                              // optional
//       "secrets": ["build_token"],                          // default: every secret above
//       "build_args": {"V": "1"}, "target": "", "tag": "", "preload_busybox": true
//     },
//     "expect": {
//       "result": "built",              // built | failed | refused (before a VM) | vm-failed
//       "exit_code": 0,                 // //harness:build's exit code (build_command.h)
//       "log_contains": ["{{sha256:build_token}}"],   // substrings of the live log
//       "log_excludes": ["{{value:build_token}}"],
//       "leak": false,                  // true: the leak scan must find a secret
//       "leak_where": ["leaked-token.txt"],            // substrings of some leak finding
//       "error_contains": ["not preloaded"]            // substrings of the error / refusal
//     }
//   }
//
// Placeholders in expected strings: {{sha256:ID}} (lowercase hex SHA-256 of the secret's value,
// what `sha256sum` prints) and {{value:ID}} (the value itself: only sensible in log_excludes).
//
// Example:
//
//   ASSIGN_OR_RETURN(ScenarioSpec spec, LoadScenario("harness/scenarios/builder/reference"));
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
#include "harness/build_command.h"
#include "harness/runner.h"

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
  std::vector<std::string> log_contains;
  std::vector<std::string> log_excludes;
  bool leak = false;
  std::vector<std::string> leak_where;
  std::vector<std::string> error_contains;
};

// ScenarioSpec: one folder, parsed.
struct ScenarioSpec {
  std::string name;  // the folder's name
  std::string dir;   // the folder (the build context)
  std::string title;
  std::string builder_mode = "rootless";
  std::map<std::string, SecretRecipe> secrets;
  std::vector<std::string> send_secrets;  // ids sent with the job
  std::map<std::string, std::string> build_args;
  std::string target;
  std::string tag;
  bool preload_busybox = true;
  ScenarioExpect expect;
};

// ParseScenarioSpec(name, dir, json): the spec (pure). InvalidArgument naming the key for
// malformed JSON, an unknown key, a wrong type, a result word not in the list, a secret with
// neither or both of generate/file, bytes outside 1..512000, an unknown alphabet, a sent
// secret that is not declared, or a placeholder naming an undeclared secret.
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
};

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
