// File: agent/job_runner.h
// -----------------------------------------------------------------------------
//
// The glue between the agent's session (server.h: BuildInputs / BuildOutcome, wire-protocol
// shaped) and the build runner (runner/runner.h: BuildSpec / BuildResult, plain structs).
// Split as everywhere in kiln: JobToSpec and ResultToOutcome are pure mappings (unit-tested),
// MakeJobRunner returns the thin executor the agent plugs into AgentOptions::runner.
//
// Mapping (BuildJob -> BuildSpec):
//   context_stream tar    -> spec.context_tar (the runner validates + extracts it), or, when
//                            the job carries the Dockerfile's contents, an extracted
//                            spec.context_dir with the contents written at dockerfile_path
//   dockerfile_path       -> spec.dockerfile
//   build_args, target    -> the same
//   network none|host     -> the same; `default` is refused (dockerd runs with --bridge=none)
//   secrets (delivered)   -> spec.secrets (exactly the job's secret_ids)
//   preload streams       -> spec.preload_images (received archive files, job order)
//   tag                   -> spec.tag ("" -> kDefaultTag)
//   deadline_ms           -> spec.deadline_ms (0 -> kDefaultDeadlineMs)
//   (options.mode)        -> spec.mode (the agent's --builder_mode)
//
// Mapping (runner BuildResult -> the session's answer):
//   ok                                  BuildOutcome{exit 0, digest, image path, phases}
//   failed before any daemon started    the status itself (the host gets an Error frame with
//   (validation: missing secret, env=,  its code: the job was refused, BuildKit never ran)
//   bad context, ...)
//   failed later (dockerd, build,       BuildOutcome{exit = docker build's exit code (1 when
//   export, deadline)                   it did not run), error "<CODE>: <message + log tail>",
//                                       the phases reached}
//
// Example (agent main):
//
//   AgentOptions options;
//   options.runner = MakeJobRunner(JobRunnerOptions{});
//   AgentSession session(&conn, options);
#ifndef KILN_AGENT_JOB_RUNNER_H_
#define KILN_AGENT_JOB_RUNNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/runner/runner.h"
#include "agent/runner/spec.h"
#include "agent/server.h"

namespace kiln::agent {

// kDefaultTag: the tag of a job that names none.
inline constexpr char kDefaultTag[] = "kiln-build:latest";
// kDefaultDeadlineMs: the runner's budget for a job without deadline_ms (10 min).
inline constexpr int64_t kDefaultDeadlineMs = 10 * 60 * 1000;

// JobRunnerOptions: how the agent runs builds.
struct JobRunnerOptions {
  runner::ToolPaths tools;  // containerd, dockerd, docker (absolute paths)
  std::string secret_dir;   // tmpfs dir for secret files; "" = runner::DefaultSecretDir()
  bool no_cache = false;    // pass --no-cache (every job has a fresh data root anyway)
  // mode: the agent's --builder_mode (rootless by default, as production).
  runner::BuilderMode mode = runner::BuilderMode::kRootless;
  // warm_dir: where a WarmUp's daemon keeps its data root, sockets and logs (outside the
  // agent's work dir, which is cleared before each job). Recreated empty by each WarmUp.
  std::string warm_dir = "/run/kiln-warm";
};

// JobToSpec(in, job_dir, options): the BuildSpec of one job (see the file comment). Pure.
// `job_dir` is the job's directory (the server received the streams into it); the runner's
// work dir is <job_dir>/build, an extracted context (when the job carries the Dockerfile's
// contents) <job_dir>/context. Returns InvalidArgument for network `default` or a missing
// job. REQUIRES: in.job != nullptr.
absl::StatusOr<runner::BuildSpec> JobToSpec(const BuildInputs& in, const std::string& job_dir,
                                            const JobRunnerOptions& options);

// PhasesOf(durations): the runner's phase durations as protocol Phases, in order:
// validate, dockerd_start, preload, build, export, teardown, total (phases not reached are
// reported as 0 ms, except that total is always present). Pure.
std::vector<Phase> PhasesOf(const runner::PhaseDurationsMs& durations);

// Refused(result): true when the runner failed before starting any daemon (validation), i.e.
// the job was refused and BuildKit never ran. Pure.
bool Refused(const runner::BuildResult& result);

// ResultToOutcome(result): the session's answer for a runner result (file comment): the
// status when Refused(result), else a BuildOutcome. Pure.
absl::StatusOr<BuildOutcome> ResultToOutcome(const runner::BuildResult& result);

// PrepareContext(in, spec, job_dir): the executor step before RunBuild: creates
// <job_dir>/build; when the job carries Dockerfile contents, extracts the context tar into
// <job_dir>/context (runner::ExtractContextTar: the same hostile-tar checks) and writes the
// contents at spec->dockerfile inside it (refused with PermissionDenied if that path resolves
// outside the context through a symlink of the context). Errno-derived codes otherwise.
absl::Status PrepareContext(const BuildInputs& in, runner::BuildSpec* spec,
                            const std::string& job_dir);

// MakeJobRunner(options): the BuildRunner the agent plugs in: JobToSpec, PrepareContext,
// runner::RunBuild with every log line sent live to the host (already redacted by the
// runner), ResultToOutcome. The job dir is the parent of in.context_tar.
BuildRunner MakeJobRunner(JobRunnerOptions options);

// BuildRunners: the agent's build runner and its WarmUp runner (AgentOptions::runner, warm_up).
struct BuildRunners {
  BuildRunner build;
  WarmUpRunner warm_up;
};

// MakeBuildRunners(options): MakeJobRunner plus the WarmUp handler, sharing one warm slot:
// warm_up starts the daemon (runner::StartWarmDaemon in options.warm_dir, the agent's mode)
// and loads the received base images; the next build takes that daemon (RunBuild with it)
// and it is stopped when that build ends, so a warm daemon serves one job. warm_up answers
// FailedPrecondition once a WarmUp succeeded or a job ran in this agent; a failed start is an
// outcome (exit_status 1, "<CODE>: <message + log tail>", phases dockerd_start, preload).
BuildRunners MakeBuildRunners(JobRunnerOptions options);

}  // namespace kiln::agent

#endif  // KILN_AGENT_JOB_RUNNER_H_
