// File: agent/runner/spec.h
// -----------------------------------------------------------------------------
//
// The build runner's plain data: what to build (BuildSpec) and what came out (BuildResult),
// plus the fail-closed validation of a spec that runs before any process is started.
// These types are independent of the agent wire protocol: the agent maps its messages to
// and from them.
//
// Example:
//
//   kiln::agent::runner::BuildSpec spec;
//   spec.context_dir = "/run/job/ctx";
//   spec.secrets["npm_token"] = "s3cr3t";
//   spec.work_dir = "/var/lib/kiln/job1";
//   if (absl::Status s = ValidateSpec(spec); !s.ok()) { /* refuse the job */ }
#ifndef KILN_AGENT_RUNNER_SPEC_H_
#define KILN_AGENT_RUNNER_SPEC_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kiln::agent::runner {

// kMaxSecretBytes: the largest value of one secret: BuildKit's own limit, 500 KiB (512000
// bytes; a CA bundle of a few hundred KiB must fit). The agent protocol's kMaxSecretValue.
inline constexpr int64_t kMaxSecretBytes = 500 * 1024;
// kMaxSecretsTotalBytes: the largest sum of all secret values of one build (4 MiB; the agent
// protocol's kMaxSecretsTotalBytes).
inline constexpr int64_t kMaxSecretsTotalBytes = 4 * 1024 * 1024;
// kMaxSecrets: the largest number of secrets of one build.
inline constexpr int kMaxSecrets = 64;
// kMaxBuildArgs: the largest number of build args of one build.
inline constexpr int kMaxBuildArgs = 256;

// NetworkMode: the network of RUN steps (`docker build --network=`). kNone is the default;
// dockerd here runs with --bridge=none, so "default"/"bridge" cannot work and are not offered.
enum class NetworkMode { kNone, kHost };

// NetworkModeName(mode): "none" or "host", as docker build spells it.
absl::string_view NetworkModeName(NetworkMode mode);

// BuilderMode: how the BuildKit daemon runs (rootless.h). kRootless: dockerd-rootless.sh under
// rootlesskit as uid/gid 1000 in a delegated cgroup v2 subtree (production's mode; the agent's
// --builder_mode default; needs the Debian 13 builder disk). kRootful: dockerd as root with its
// own containerd (the Debian 12 builder disk, the host's integration tests, kiln-build).
enum class BuilderMode { kRootless, kRootful };

// BuilderModeName(mode): "rootless" or "rootful".
absl::string_view BuilderModeName(BuilderMode mode);

// ParseBuilderMode(text, mode): true and sets *mode for "rootless" / "rootful"; false for
// anything else (the caller says what is accepted).
bool ParseBuilderMode(absl::string_view text, BuilderMode* mode);

// ToolPaths: the binaries the runner starts. Absolute paths; never looked up on PATH (another,
// newer docker client may come first on PATH and demand buildx).
struct ToolPaths {
  std::string containerd = "/usr/bin/containerd";
  std::string dockerd = "/usr/sbin/dockerd";
  std::string docker = "/usr/bin/docker";
  // buildx: the docker CLI's buildx plugin (Debian 13's docker-buildx installs it here). When
  // this file is executable the build runs it directly (`docker-buildx build ...`: buildx's
  // standalone mode, the daemon named by DOCKER_HOST) instead of `docker build`, which on
  // docker-cli >= 23 is three Go processes: the CLI, the plugin's `docker-cli-plugin-metadata`
  // probe, then the plugin itself (BuildClientFor, daemon_plan.h). "" or not executable
  // (Debian 12's docker 20.10 has no buildx): `docker build`.
  std::string buildx = "/usr/libexec/docker/cli-plugins/docker-buildx";
};

// BuildSpec: one container image build.
struct BuildSpec {
  // Exactly one of context_dir (already unpacked by the caller) and context_tar (a tar the
  // runner validates and extracts safely, see context_tar.h) is set. Absolute paths.
  std::string context_dir;
  std::string context_tar;
  // dockerfile: path of the Dockerfile relative to the context root (no "..", not absolute).
  std::string dockerfile = "Dockerfile";
  // build_args: `--build-arg KEY=VALUE`, in order. KEY matches [A-Za-z_][A-Za-z0-9_]*.
  std::vector<std::pair<std::string, std::string>> build_args;
  // target: the stage to build (`--target`), empty for the last stage.
  std::string target;
  NetworkMode network = NetworkMode::kNone;
  // secrets: id -> value bytes. Ids match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}; each value is at
  // most kMaxSecretBytes, all together at most kMaxSecretsTotalBytes.
  std::map<std::string, std::string> secrets;
  // preload_images: paths of docker-archive tars (or OCI archives written by this runner,
  // which carry a docker-compatible manifest.json too) loaded before the build.
  std::vector<std::string> preload_images;
  // tag: the image reference the build is tagged with (lowercase docker reference).
  std::string tag = "kiln-build:latest";
  // deadline_ms: budget of the whole RunBuild, in milliseconds (> 0), counted on CLOCK_MONOTONIC
  // from the start (a step of the wall clock, as when the host sets a restored VM's clock, does
  // not move it).
  int64_t deadline_ms = 10 * 60 * 1000;
  // work_dir: an existing, writable directory for dockerd's data root, logs and the image.
  std::string work_dir;
  // output_path: where the OCI archive is written; default <work_dir>/image.oci.tar.
  std::string output_path;
  // secret_dir: tmpfs directory under which the secret files are written (mode 0400).
  // Default: /run/kiln-secrets when /run is tmpfs, else /dev/shm/kiln-secrets. The runner
  // refuses a directory that is not on tmpfs.
  std::string secret_dir;
  // no_cache: pass --no-cache (each RUN step runs even if dockerd has it cached).
  bool no_cache = false;
  ToolPaths tools;
  // mode: rootful by default here (the host-side users of the runner); the agent passes its
  // --builder_mode (default rootless).
  BuilderMode mode = BuilderMode::kRootful;
};

// PhaseDurationsMs: wall time of each phase of RunBuild, in milliseconds (0 = not reached).
struct PhaseDurationsMs {
  int64_t validate = 0;       // spec + Dockerfile checks, context tar extraction
  int64_t dockerd_start = 0;  // containerd + dockerd start until GET /_ping answers OK
  int64_t preload = 0;        // POST /images/load of every preload image
  int64_t build = 0;          // docker build (the BuildKit session)
  int64_t export_image = 0;   // GET /images/{name}/get + conversion to an OCI archive
  int64_t teardown = 0;       // secret wipe, dockerd + containerd stop
  int64_t total = 0;
};

// BuildResult: what RunBuild returns. `status` is OK iff the image was built and exported.
struct BuildResult {
  absl::Status status;
  // build_exit_code: exit status of `docker build` (-1 when it did not run or was killed).
  int build_exit_code = -1;
  // manifest_digest: "sha256:<64 hex>" of the OCI image manifest (empty on failure).
  std::string manifest_digest;
  // image_archive_path / image_archive_bytes: the OCI archive and its size in bytes.
  std::string image_archive_path;
  int64_t image_archive_bytes = 0;
  PhaseDurationsMs durations_ms;
  // error_message: on failure, what failed, followed by the last log lines (redacted).
  std::string error_message;
  // log_tail: the last (up to 40) redacted log lines of the failed step (docker build output,
  // or dockerd's log when dockerd did not start).
  std::vector<std::string> log_tail;
};

// ValidateSecretId(id): OK iff `id` matches [A-Za-z0-9][A-Za-z0-9_.-]{0,127}; else
// InvalidArgument naming the id.
absl::Status ValidateSecretId(absl::string_view id);

// ValidateSecrets(secrets): checks every id (ValidateSecretId), the count (kMaxSecrets), each
// value's size (kMaxSecretBytes, and non-empty) and the total (kMaxSecretsTotalBytes).
// Returns InvalidArgument (bad id, empty value) or ResourceExhausted (a bound exceeded),
// naming the secret id but never its value.
absl::Status ValidateSecrets(const std::map<std::string, std::string>& secrets);

// ValidateRelativePath(what, path): OK iff `path` is non-empty, relative, has no "..", "."
// or empty components and no NUL; else InvalidArgument "<what> ...".
absl::Status ValidateRelativePath(absl::string_view what, absl::string_view path);

// ValidateImageTag(tag): OK iff `tag` is a lowercase docker reference
// (name components [a-z0-9]+([._-][a-z0-9]+)* separated by '/', optional ":tag" with tag
// [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}); else InvalidArgument. Digest references are refused.
absl::Status ValidateImageTag(absl::string_view tag);

// ValidateSpec(spec): the checks that need no file system: exactly one context source,
// absolute paths, Dockerfile path, build args (key syntax, count, no NUL), target syntax,
// tag, secrets (ValidateSecrets), deadline > 0, work_dir set. Returns InvalidArgument /
// ResourceExhausted with a message naming the offending field.
absl::Status ValidateSpec(const BuildSpec& spec);

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_SPEC_H_
