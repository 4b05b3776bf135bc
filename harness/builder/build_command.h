// File: harness/builder/build_command.h
// -----------------------------------------------------------------------------
//
// "Bring your own build" (issue 18): the library behind `bazel run //harness:build -- [flags]
// CONTEXT`, which runs a user's context + Dockerfile with secrets in a real builder VM exactly
// as production runs it (harness/builder/builder_client.h: RunBuilderJobs), streams the live log, scans
// what came back for the secrets (harness/builder/leak_scan.h) and can keep the VM when the build
// fails (kilnctl builders).
//
// Three layers, each testable on its own:
//   1. Flag values as data (pure): ParseSecretFlag (`id=ID,src=FILE` / `id=ID,env=VAR`, as
//      `docker buildx build --secret`), ParseBuildArgFlag, ParseOutputFlag (`type=oci,dest=F`,
//      `type=docker[,dest=F]`), NormalizeImageRef, ExpandFromImage, CheckBasesPreloaded.
//   2. PrepareBuild: everything the host can check before a VM boots, reading the context,
//      the Dockerfile, the secret files/variables and the preload archives: a missing context
//      or Dockerfile, an unreadable secret file, a secret over BuildKit's 500 KiB limit, a
//      duplicate secret id, a bad .dockerignore pattern, a sent context symlink that escapes the context (or is absolute: the
//      builder refuses those), a `# syntax=` line, a secret the Dockerfile needs but the
//      command does not send (no `required=false`), and a FROM of an image that no --preload
//      archive holds (the guest has no network). Each is InvalidArgument / NotFound /
//      FailedPrecondition / ResourceExhausted naming the input, never a secret's value.
//   3. RunPreparedBuild: one builder VM, one job; the result as a BuildOutcome with the exit
//      code of the command (kBuildExit*), the digest, size, phase times, the leak findings, the
//      kept builder, and where the logs are. BuildOutcomeJson / FormatSummary render it.
//
// Secrets: values are read on the host into memory only; they travel over the agent channel
// (Secret messages) and live in the guest on tmpfs. They never appear in an argv, a child's
// environment (the caller unsets every `env=` variable after PrepareBuild: see
// PreparedBuild::env_vars_used), a log line (the agent redacts; the leak scan checks the log the
// host received, and the serial log), or a host file.
//
// Example:
//
//   BuildCommand cmd;
//   cmd.context = "/src/app";
//   ASSIGN_OR_RETURN(SecretSource s, ParseSecretFlag("id=tok,src=/home/me/tok"));
//   cmd.secrets.push_back(s);
//   cmd.preload = {"/tmp/busybox.tar"};
//   ASSIGN_OR_RETURN(PreparedBuild p, PrepareBuild(cmd, SystemEnv()));
//   for (const std::string& v : p.env_vars_used) unsetenv(v.c_str());
//   BuildOutcome o = RunPreparedBuild(factory, p, run_options);
//   return o.exit_code;   // 0 built + clean, 1 failed, 3 leaked, 4 VM failed
#ifndef KILN_HARNESS_BUILD_COMMAND_H_
#define KILN_HARNESS_BUILD_COMMAND_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/protocol/messages.h"
#include "agent/runner/dockerfile.h"
#include "harness/builder/builder_client.h"
#include "harness/vmm/runner.h"

namespace kiln::harness {

// ---------------------------------------------------------------------------------------------
// Exit codes of //harness:build (documented in its --help).

inline constexpr int kBuildExitOk = 0;      // built, and the leak scan found no secret
inline constexpr int kBuildExitFailed = 1;  // the build failed (a step failed, or the builder
                                            // refused the job before BuildKit ran)
inline constexpr int kBuildExitUsage = 2;   // usage or input error (nothing booted)
inline constexpr int kBuildExitLeak = 3;    // a secret was found in the image or a log
inline constexpr int kBuildExitVm = 4;      // the VM or VMM failed (after the one retry)

// kBuildExitCodesHelp: the table above as --help prints it.
extern const char kBuildExitCodesHelp[];

// ---------------------------------------------------------------------------------------------
// Flag values (pure).

// SecretSource: one --secret. The value is read by PrepareBuild, never stored here.
struct SecretSource {
  enum class Kind { kFile, kEnv };
  std::string id;
  Kind kind = Kind::kFile;
  std::string src;  // kFile: a host path; kEnv: an environment variable's name
};

// ParseSecretFlag(value): `docker buildx build --secret` syntax, comma-separated key=value:
// id=ID (optional with src=: the file's basename), src=|source=FILE, env=VAR, type=file|env
// (type=env with src= names the variable). Examples: "id=tok,src=/run/tok",
// "id=npm,env=NPM_TOKEN", "src=/x/token" (id "token"). InvalidArgument for an unknown key, a
// missing id/source, both src and env, or an id that is not [A-Za-z0-9][A-Za-z0-9_.-]{0,127}.
absl::StatusOr<SecretSource> ParseSecretFlag(absl::string_view value);

// EnvLookup: reads an environment variable (nullopt if unset); SystemEnv() is getenv.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup SystemEnv();

// ParseBuildArgFlag(value, env): "KEY=VALUE", or "KEY" (its value from the environment, as
// docker does; nullopt when the variable is unset: docker then drops the arg). InvalidArgument
// for a key that is not [A-Za-z_][A-Za-z0-9_]{0,255}.
absl::StatusOr<std::optional<agent::BuildArg>> ParseBuildArgFlag(absl::string_view value,
                                                                 const EnvLookup& env);

// OutputSpec: one --output. The builder returns an OCI archive that also carries a docker
// manifest.json (agent/runner/oci_archive.h), so both kinds are that file: kOci for OCI tools
// (skopeo, oci-image-tool), kDocker for `docker load`.
struct OutputSpec {
  enum class Kind { kOci, kDocker };
  Kind kind = Kind::kOci;
  std::string dest;  // the file written; "" (type=docker only): loaded into the host's dockerd
};

// ParseOutputFlag(value): "type=oci,dest=FILE" or "type=docker[,dest=FILE]" (dest= alias
// output=). InvalidArgument for another type (local, tar, image, registry: not offered: the
// builder has no registry), a missing dest for oci, or an unknown key.
absl::StatusOr<OutputSpec> ParseOutputFlag(absl::string_view value);

// NormalizeImageRef(ref): the reference as docker compares local images: "busybox" ->
// "busybox:latest", "docker.io/library/busybox:1" -> "busybox:1", "docker.io/me/x" ->
// "me/x:latest"; a digest reference keeps its digest ("x@sha256:..."). Pure.
std::string NormalizeImageRef(absl::string_view ref);

// ExpandFromImage(image, args): expands $NAME, ${NAME}, ${NAME:-word} and ${NAME:+word} in a
// FROM's image with `args` (the global ARG defaults overridden by --build-arg; an unset name
// expands to ""). Unimplemented for another ${...} form (the host cannot tell what it means).
absl::StatusOr<std::string> ExpandFromImage(absl::string_view image,
                                            const std::map<std::string, std::string>& args);

// CheckBasesPreloaded(info, build_args, preloaded, target): OK if every FROM that is not
// `scratch` or an earlier stage's name names (after ExpandFromImage and NormalizeImageRef) an
// image in `preloaded` (normalized refs). With a target, FROMs after the target stage are not
// checked (BuildKit never builds them). A FROM whose image cannot be expanded is let through.
// Else FailedPrecondition: "Dockerfile line N: FROM <image> is not preloaded: the builder VM
// has no network. Save it on a machine that has it (docker save IMAGE -o FILE) and pass
// --preload FILE (preloaded: ...)".
absl::Status CheckBasesPreloaded(const agent::runner::DockerfileInfo& info,
                                 const std::vector<agent::BuildArg>& build_args,
                                 const std::vector<std::string>& preloaded,
                                 absl::string_view target);

// ArchiveImageRefs(path): the image names a --preload input holds: a docker-archive tar
// (manifest.json RepoTags), an OCI archive tar or an OCI image layout directory (index.json:
// io.containerd.image.name, or org.opencontainers.image.ref.name when it is a full reference).
// NotFound if `path` is missing; InvalidArgument if it is none of those or names no image;
// DataLoss for an unreadable tar or JSON.
absl::StatusOr<std::vector<std::string>> ArchiveImageRefs(const std::string& path);

// ContextListing: what of a context directory is sent to the builder (ListContext).
struct ContextListing {
  struct Entry {
    std::string path;  // relative to the context, `/` separated, e.g. "src/main.go"
    enum class Kind { kFile, kDir, kSymlink } kind = Kind::kFile;
  };
  std::vector<Entry> entries;  // sorted per directory, each directory before what it holds
  bool has_dockerignore = false;
  int patterns = 0;  // patterns in .dockerignore
  // excluded: entries .dockerignore left out, counted where the walk stopped (an excluded
  // directory whose contents are all left out counts once).
  int excluded = 0;
};

// ListContext(dir, dockerfile_path): walks the context directory `dir` as BuildKit sends it:
// CONTEXT/.dockerignore (harness/builder/dockerignore.h; docker's rules) leaves paths out; the
// .dockerignore itself and the Dockerfile (`dockerfile_path`, when it lies inside `dir`) are
// always sent, as BuildKit sends the frontend's files. Only what is sent is checked: OK, or
// InvalidArgument naming the first sent symlink whose target is absolute or resolves outside
// `dir` (agent/runner/context_tar.h refuses both in the guest), the first sent entry that is
// not a file, directory or symlink, a sent name over 99 bytes (ustar), or a bad .dockerignore
// pattern (".dockerignore line N: ..."). NotFound / FailedPrecondition (not a directory) for
// `dir` itself; errno-derived codes for unreadable entries that would be sent.
absl::StatusOr<ContextListing> ListContext(const std::string& dir,
                                           const std::string& dockerfile_path);

// WriteContextTar(dir, listing, out_path): the deterministic ustar of exactly listing's entries
// (mtime 0, root-owned, symlinks kept as docker sends them), the context the builder receives.
// Returns the bytes written; errno-derived codes for file errors, DataLoss for a file that
// shrank while being read.
absl::StatusOr<uint64_t> WriteContextTar(const std::string& dir, const ContextListing& listing,
                                         const std::string& out_path);

// ApplyWarmFlags(warm, snapshot_dir, vm): --warm=auto|on|off and --snapshot_dir as
// //harness:verify passes them: vm->warm (harness/builder/builder_client.h WarmMode) and
// vm->snapshot_dir. InvalidArgument naming the value for another mode.
absl::Status ApplyWarmFlags(absl::string_view warm, const std::string& snapshot_dir,
                            BuilderVmOptions* vm);

// SplitArgv: the command line with the repeatable docker-style flags taken out.
struct SplitArgv {
  // values: "secret", "build-arg", "output", "preload", "file", "tag", "target" -> values in
  // order (a value may contain commas: id=a,src=b).
  std::map<std::string, std::vector<std::string>> values;
  std::vector<std::string> rest;  // argv[0], the other flags and the positional arguments
};

// SplitBuildArgv(args): takes --secret, --build-arg, --output/-o, --preload, --file/-f,
// --tag/-t, --target (each as `--x=V` or `--x V`, one or two dashes) out of `args` (absl flags
// keep one value per flag and split lists at commas); everything after `--` stays in rest.
// InvalidArgument for such a flag without a value. Pure.
absl::StatusOr<SplitArgv> SplitBuildArgv(const std::vector<std::string>& args);

// ResolveUserPath(path, base): `path` if it is absolute or `base` is empty, else base/path
// (under `bazel run`, base is $BUILD_WORKING_DIRECTORY: where the user ran bazel). Pure.
std::string ResolveUserPath(const std::string& path, const std::string& base);

// ---------------------------------------------------------------------------------------------
// The command.

// BuildCommand: the parsed command line (values, not yet read).
struct BuildCommand {
  std::string context;     // CONTEXT: a directory
  std::string dockerfile;  // -f/--file; "" = CONTEXT/Dockerfile. May lie outside the context
                           // (its text is sent with the job, as docker does).
  std::vector<SecretSource> secrets;
  std::vector<agent::BuildArg> build_args;
  std::string target;
  std::string tag;  // -t/--tag; "" = the agent's kiln-build:latest
  std::vector<OutputSpec> outputs;
  std::vector<std::string> preload;  // docker-archive / OCI archive tars, OCI layout dirs
  bool no_cache = false;  // accepted: every job gets a fresh data root, so nothing is cached
  bool leak_scan = true;
  // check_secret_use: PrepareBuild's check that every secret the Dockerfile needs is sent
  // (and that its secret mounts parse). false leaves both to the builder, which refuses such
  // a job itself before BuildKit runs: only the scenario tests of those refusals turn it off.
  bool check_secret_use = true;
};

// PreloadInput: one --preload as it will be sent.
struct PreloadInput {
  std::string path;                // a tar (an OCI layout directory is tarred by RunPreparedBuild)
  bool is_directory = false;
  std::vector<std::string> refs;   // ArchiveImageRefs, as found
};

// PreparedBuild: a command whose inputs were all read and checked.
struct PreparedBuild {
  BuildCommand command;
  std::string context_dir;      // absolute
  std::string dockerfile_path;  // the file read
  std::string dockerfile_text;
  agent::runner::DockerfileInfo dockerfile_info;
  std::map<std::string, std::string> secrets;  // id -> value (memory only)
  std::vector<std::string> env_vars_used;      // variables secrets came from: unset them
  std::vector<PreloadInput> preload;
  ContextListing context;  // ListContext: what RunPreparedBuild tars and sends
  // unsent_secret_ids: ids the job names without sending a value (the builder must refuse it:
  // the scenario test of that refusal; empty for the command).
  std::vector<std::string> unsent_secret_ids;
};

// PrepareBuild(cmd, env): the checks listed in the file comment, in that order, before any VM.
absl::StatusOr<PreparedBuild> PrepareBuild(const BuildCommand& cmd, const EnvLookup& env);

// BuildRunOptions: how RunPreparedBuild runs the job.
struct BuildRunOptions {
  BuilderArtifacts artifacts;
  BuilderVmOptions vm;    // id, builder_mode, vcpus, memory, keep, on_progress ...
  std::string work_dir;   // scratch for the context tar and the image (created if missing)
  uint64_t job_deadline_ms = 0;
  // on_log: each Log line as it streams from the agent (already redacted by the agent).
  std::function<void(const agent::Log&)> on_log;
  // progress: RunPreparedBuild's own progress lines (context tar, leak scan, outputs).
  std::function<void(absl::string_view)> progress;
};

// LeakFinding: where one secret was found.
struct LeakFinding {
  std::string secret_id;
  std::string artifact;  // "image", "log" or "serial log"
  std::string where;     // leak_scan.h's "<blob>[:<entry>] (<form>) bytes [b, e)" / log line
};

// BuildOutcome: what the command reports.
struct BuildOutcome {
  int exit_code = kBuildExitVm;
  std::string result;           // "built", "failed", "refused", "vm-failed"
  std::string error;            // why it failed ("" when built)
  std::string refusal_code;     // the builder's refusal: absl::StatusCodeToString ("" if none)
  int build_exit_status = -1;   // the guest's BuildResult exit status (-1: no BuildResult)
  std::string image_path;       // the OCI archive the builder returned ("" = none), in work_dir
  std::string digest;           // manifest digest, "sha256:..."
  uint64_t image_bytes = 0;
  std::string tag;
  bool leak_scanned = false;
  std::vector<LeakFinding> leaks;
  std::vector<std::pair<std::string, int64_t>> phases_ms;  // the guest's phases, in order
  int64_t vmm_start_to_ready_ms = -1;
  int64_t total_ms = 0;         // RunPreparedBuild's wall time
  int64_t vm_total_ms = 0;      // of that, RunBuilderJobs (boot to VM gone, all attempts)
  int attempts = 0;
  std::string vm_id;
  std::string kept_id;          // kept builder for `kilnctl builders`, or ""
  std::string log_dir;          // the VM's saved logs (serial.log, build-<job>.log)
  std::string build_log;        // the redacted build log file
  std::vector<std::string> outputs;  // files written / "docker load" done
};

// RunPreparedBuild(factory, p, options): tars the context, boots one builder VM
// (RunBuilderJobs: retried once after a lockup; kept on failure with options.vm.keep), sends
// the job, streams the log, scans the image, the log and the serial log for every secret
// (p.command.leak_scan), writes the --output files. Never fails: the outcome says what
// happened (exit_code: see kBuildExit*; a leak wins over a failed build).
BuildOutcome RunPreparedBuild(VmFactory& factory, const PreparedBuild& p,
                              const BuildRunOptions& options);

// ClassifyOutcome(run, leaks_found): the exit code and result word for a finished run (pure):
// run.status not OK -> kBuildExitVm "vm-failed"; a leak -> kBuildExitLeak (with the build's
// own result word); the job refused -> kBuildExitFailed "refused"; exit_status != 0 or no
// image -> kBuildExitFailed "failed"; else kBuildExitOk "built".
std::pair<int, std::string> ClassifyOutcome(const BuilderRun& run, bool leaks_found);

// FormatSummary(o): the human summary: one line "kiln build: <result> <digest> <size> bytes,
// tag <tag>; phases: boot->ready N ms, receive_context N ms, ...; total N ms", one line
// "leak scan: clean (<n> secrets: image, log, serial log)" or "leak scan: LEAK: secret <id> in
// <artifact>: <where>" per finding, the kept builder and the log paths. Pure.
std::string FormatSummary(const BuildOutcome& o);

// BuildOutcomeJson(o): one JSON document with every field of `o` (secret ids, never values).
std::string BuildOutcomeJson(const BuildOutcome& o);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_BUILD_COMMAND_H_
