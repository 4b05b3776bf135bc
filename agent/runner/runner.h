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
#include <string>

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

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_RUNNER_H_
