// File: agent/runner/runner.h
// -----------------------------------------------------------------------------
//
// RunBuild: one container image build with dockerd 20.10's built-in BuildKit, from a
// BuildSpec to a BuildResult, with the phases (each timed, see PhaseDurationsMs):
//   1. validate  ValidateSpec, secret dir on tmpfs, context tar extracted safely, Dockerfile
//                scanned: a secret it names that the host did not deliver, env= secret mounts
//                and `# syntax=` are refused here, before any process starts;
//   2. dockerd_start  containerd (own config/sockets/state) then dockerd --containerd=...;
//                ready when GET /_ping answers "OK" on the unix socket; if dockerd exits first
//                the error quotes its log (e.g. "Devices cgroup isn't mounted");
//   3. preload   POST /images/load of each preload archive (Engine API, no CLI);
//   4. build     secrets written to a tmpfs directory (mode 0400), then
//                DOCKER_BUILDKIT=1 /usr/bin/docker build --secret id=X,src=FILE ...; every
//                output line is redacted (redact.h) and passed to `on_log` as it arrives;
//   5. export    GET /images/{tag}/get (docker-archive), converted to an OCI archive
//                (oci_archive.h); the manifest digest is reported;
//   6. teardown  secrets wiped (overwritten with zeros, fsync, unlinked) whatever happened,
//                dockerd then containerd stopped (SIGTERM, then SIGKILL after a grace).
//
// Status codes in BuildResult::status: InvalidArgument / ResourceExhausted /
// PermissionDenied / FailedPrecondition from validation (nothing was started);
// FailedPrecondition "dockerd exited ..." / Unavailable when the daemons did not come up;
// Aborted when `docker build` exited non-zero (build_exit_code, log_tail); DeadlineExceeded
// when spec.deadline_ms passed (the build is killed); DataLoss / Internal from export.
//
// Example:
//
//   BuildSpec spec = ...;
//   BuildResult r = RunBuild(spec, [](absl::string_view line) { SendLog(line); });
//   if (r.status.ok()) Upload(r.image_archive_path, r.manifest_digest);
#ifndef KILN_AGENT_RUNNER_RUNNER_H_
#define KILN_AGENT_RUNNER_RUNNER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "agent/runner/spec.h"

namespace kiln::agent::runner {

// LogSink: receives each redacted log line (no trailing newline), on the calling thread.
using LogSink = std::function<void(absl::string_view line)>;

// kLogTailLines: how many last lines BuildResult::log_tail keeps.
inline constexpr int kLogTailLines = 40;

// PreflightDockerfile(context_dir, spec): reads spec.dockerfile inside context_dir and checks
// it against spec.secrets (ScanDockerfile + CheckSecretsDelivered). The same check RunBuild
// does; the agent may call it to refuse a job early. Codes as in dockerfile.h.
absl::Status PreflightDockerfile(const std::string& context_dir, const BuildSpec& spec);

// DefaultSecretDir(): "/run/kiln-secrets" when /run is tmpfs, else "/dev/shm/kiln-secrets".
std::string DefaultSecretDir();

// RunBuild(spec, on_log): runs the build (see the file comment). Never throws; always tears
// down what it started. `on_log` may be empty.
BuildResult RunBuild(const BuildSpec& spec, const LogSink& on_log);

// Warm daemons (warm builders): the daemon started, and the base images loaded, before any
// job, so that a VM snapshot taken afterwards holds a running daemon. Isolation: a warm daemon
// serves exactly one build (RunBuild with it stops it at teardown, as its own daemons), and
// its data root lives in WarmDaemonSpec::work_dir, not in a job's dir.
struct DaemonState;  // opaque: the processes and paths of one daemon
struct DaemonStateDeleter {
  void operator()(DaemonState* d) const;  // stops the daemons, then frees
};
// WarmDaemon: a running daemon waiting for its one build; destroying it stops the daemon.
using WarmDaemon = std::unique_ptr<DaemonState, DaemonStateDeleter>;

// WarmDaemonSpec: what StartWarmDaemon starts.
struct WarmDaemonSpec {
  std::string work_dir;  // existing dir for the daemon's data root, sockets and logs
  std::vector<std::string> preload_images;  // archives loaded into it (as BuildSpec's)
  int64_t deadline_ms = 10 * 60 * 1000;      // budget of start + loads, ms (> 0)
  ToolPaths tools;
  BuilderMode mode = BuilderMode::kRootful;
};

// WarmUpResult: StartWarmDaemon's outcome: status OK and `daemon` set, or the error (the daemon
// then stopped), the phase times (dockerd_start, preload, total; ms) and the log tail.
struct WarmUpResult {
  absl::Status status;
  PhaseDurationsMs durations_ms;
  std::vector<std::string> log_tail;
  WarmDaemon daemon;
};

// StartWarmDaemon(spec, on_log): starts the daemon as RunBuild's dockerd_start phase does
// (rootless preconditions first), ready on GET /_ping, then POST /images/load of each preload
// image. Errors: FailedPrecondition (work_dir, rootless preconditions, a daemon exiting),
// InvalidArgument (deadline, an archive that is neither docker nor OCI), DeadlineExceeded.
WarmUpResult StartWarmDaemon(const WarmDaemonSpec& spec, const LogSink& on_log);

// RunBuild(spec, on_log, warm): RunBuild with `warm`'s daemon instead of starting one: the
// dockerd_start phase is a GET /_ping of it (Unavailable if it does not answer, e.g. after a
// bad restore); the job's own preload images are still loaded. The daemon is stopped when the
// build ends. A null `warm`, or one of another BuilderMode, is ignored (the build starts its own).
BuildResult RunBuild(const BuildSpec& spec, const LogSink& on_log, WarmDaemon warm);

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_RUNNER_H_
