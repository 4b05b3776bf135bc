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
// Optional secrets (issue 18, item 4): BuildKit builds a RUN step whose secret was not sent
// with the mount's file absent unless the mount says required (its default is required=false).
// kiln keeps failing closed for a mount with NO required= option (the author may not know
// that the file can silently be missing), but an explicit `required=false` is the author
// saying "optional": CheckSecretsDelivered lets it through and OptionalSecretsAbsent lists it,
// so the runner can say in the log that the step runs without the file. This is a deliberate
// difference from BuildKit for the implicit default only.
//
// The scanner also lists each FROM (image, stage name, line) and the ARGs declared before the
// first FROM (their defaults), so that the host can tell, before a VM boots, that a base image
// was not preloaded (the guest has no network).
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
  bool required = false;  // required, required=true (or 1, t, T, TRUE, True, as Go's ParseBool)
  // optional: the mount says required=false (or 0, f, F, FALSE, False) explicitly. A mount
  // with no required= option is neither required nor optional (kiln refuses it when its
  // secret is not sent; BuildKit would build without the file).
  bool optional = false;
  int line = 0;  // 1-based line of the RUN instruction
};

// FromInstruction: one FROM of the Dockerfile.
struct FromInstruction {
  std::string image;  // as written (variables not expanded), e.g. "kiln-busybox:1", "${BASE}"
  std::string stage;  // the `AS <name>` (lowercased, as BuildKit compares it), or ""
  int line = 0;       // 1-based line
};

// DockerfileInfo: what ScanDockerfile found.
struct DockerfileInfo {
  std::vector<SecretMount> secret_mounts;
  std::map<std::string, std::string> directives;  // lowercase key -> value (escape, syntax...)
  std::vector<FromInstruction> froms;             // in order
  // global_args: ARGs declared before the first FROM (the only ones a FROM can use): name ->
  // default value ("" when the ARG has none).
  std::map<std::string, std::string> global_args;
};

// ScanDockerfile(text): scans a Dockerfile. Returns InvalidArgument when text is larger than
// kMaxDockerfileBytes or has a NUL byte, when a secret mount has an invalid id (see
// ValidateSecretId; variable references such as `id=$X` are refused, since they cannot be
// checked before the build) or neither id nor target, or uses `env=` (unsupported by dockerd
// 20.10 and 26.1) or a required= value that is not a Go boolean (BuildKit refuses it too);
// FailedPrecondition when it has a `# syntax=` directive.
absl::StatusOr<DockerfileInfo> ScanDockerfile(absl::string_view text);

// CheckSecretsDelivered(info, secrets): OK iff every secret id used by a RUN mount that is not
// `optional` (explicit required=false) is a key of `secrets`; else InvalidArgument naming the
// missing ids and the line of their first non-optional use.
absl::Status CheckSecretsDelivered(const DockerfileInfo& info,
                                   const std::map<std::string, std::string>& secrets);

// OptionalSecretsAbsent(info, secrets): the optional mounts (explicit required=false) whose id
// is not a key of `secrets`, the first mount of each id, in Dockerfile order: BuildKit runs
// their steps without the file. Pure.
std::vector<SecretMount> OptionalSecretsAbsent(const DockerfileInfo& info,
                                               const std::map<std::string, std::string>& secrets);

// kAbsentSecretLogPrefix: the start of the log line the runner writes per
// OptionalSecretsAbsent entry: `[kiln-runner] optional secret "<id>" (line <n>, required=false)
// was not sent: the step runs without <target>`.
inline constexpr char kAbsentSecretLogPrefix[] = "[kiln-runner] optional secret ";

// AbsentSecretLogLine(mount): that line for `mount`.
std::string AbsentSecretLogLine(const SecretMount& mount);

// ReadDockerfileInContext(context_dir, relative_path): reads the Dockerfile, refusing a path
// that resolves outside context_dir (symlinks included), a non-regular file, or one larger
// than kMaxDockerfileBytes. NotFound when absent, InvalidArgument / PermissionDenied else.
absl::StatusOr<std::string> ReadDockerfileInContext(const std::string& context_dir,
                                                    const std::string& relative_path);

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_DOCKERFILE_H_
