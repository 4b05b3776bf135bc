// File: agent/runner/dockerfile.h
// -----------------------------------------------------------------------------
//
// A small, fail-closed Dockerfile scanner: finds every `RUN --mount=type=secret,...` and the
// parser directives, so that a job whose Dockerfile names a secret the host did not deliver is
// refused before dockerd starts, and a `# syntax=` directive (which makes BuildKit pull a
// frontend image from a registry) is refused too. It is not a Dockerfile parser: it follows
// the rules that matter for those two questions (directives, comments, line continuations with
// the escape character, case-insensitive instructions, RUN flags before the command, the CSV
// syntax of --mount values).
//
// Secret-mount keys understood by the built-in frontend of dockerd 20.10 and 26.1 (measured):
// id, target (aliases dst, destination), required, mode, uid, gid. `env=` does NOT exist in
// either: 20.10 fails with `dockerfile parse error line N: unexpected key 'env' in 'env=X'`,
// 26.1 (BuildKit 0.13) with `ERROR: failed to solve: unexpected key 'env' in 'env=X'`; the
// scanner refuses it up front with the same meaning.
//
// Example:
//
//   ASSIGN_OR_RETURN(DockerfileInfo info, ScanDockerfile(text));
//   RETURN_IF_ERROR(CheckSecretsDelivered(info, spec.secrets));
#ifndef KILN_AGENT_RUNNER_DOCKERFILE_H_
#define KILN_AGENT_RUNNER_DOCKERFILE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::agent::runner {

// kMaxDockerfileBytes: the largest Dockerfile the runner accepts (1 MiB).
inline constexpr size_t kMaxDockerfileBytes = 1024 * 1024;

// SecretMount: one `--mount=type=secret` of a RUN instruction.
struct SecretMount {
  std::string id;      // the secret id (defaults to the basename of target, as BuildKit does)
  std::string target;  // mount path in the RUN container; empty = /run/secrets/<id>
  bool required = false;
  int line = 0;  // 1-based line of the RUN instruction
};

// DockerfileInfo: what ScanDockerfile found.
struct DockerfileInfo {
  std::vector<SecretMount> secret_mounts;
  std::map<std::string, std::string> directives;  // lowercase key -> value (escape, syntax...)
};

// ScanDockerfile(text): scans a Dockerfile. Returns InvalidArgument when text is larger than
// kMaxDockerfileBytes or has a NUL byte, when a secret mount has an invalid id (see
// ValidateSecretId; variable references such as `id=$X` are refused, since they cannot be
// checked before the build) or neither id nor target, or uses `env=` (unsupported by dockerd
// 20.10 and 26.1); FailedPrecondition when it has a `# syntax=` directive.
absl::StatusOr<DockerfileInfo> ScanDockerfile(absl::string_view text);

// CheckSecretsDelivered(info, secrets): OK iff every secret id used by a RUN mount is a key of
// `secrets`; else InvalidArgument naming the missing ids and the line of their first use.
absl::Status CheckSecretsDelivered(const DockerfileInfo& info,
                                   const std::map<std::string, std::string>& secrets);

// ReadDockerfileInContext(context_dir, relative_path): reads the Dockerfile, refusing a path
// that resolves outside context_dir (symlinks included), a non-regular file, or one larger
// than kMaxDockerfileBytes. NotFound when absent, InvalidArgument / PermissionDenied else.
absl::StatusOr<std::string> ReadDockerfileInContext(const std::string& context_dir,
                                                    const std::string& relative_path);

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_DOCKERFILE_H_
