// kiln publish: push the builder OCI image to a registry (or a local OCI layout) under a
// strict semver version. See publish/README.md (usage, policy, lock file, exit codes).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/file/file.h"
#include "agent/process/process.h"
#include "publish/http.h"
#include "publish/oci.h"
#include "publish/publisher.h"
#include "publish/pull.h"
#include "publish/registry.h"
#include "publish/semver.h"
#include "third_party/absl_ext/command_flags.h"

// The flags (see kUsage and publish/README.md; parsed by ParseFlags with the spellings there).
ABSL_FLAG(std::string, publish_version, "", "--version X.Y.Z: strict semver (required)");
ABSL_FLAG(std::string, registry, "", "HOST[:PORT]/REPO to push to (default: a local OCI layout)");
ABSL_FLAG(std::string, oci_dir, "", "local OCI image layout to publish into without --registry");
ABSL_FLAG(std::string, layout, "", "the image: an OCI image layout directory or a tar of one");
ABSL_FLAG(std::string, ref, "", "the manifest in --layout with this ref name");
ABSL_FLAG(std::string, lock, "", "version lock file");
ABSL_FLAG(bool, latest, false, "also point the tag latest at the image");
ABSL_FLAG(bool, minor, false, "also point the tag MAJOR.MINOR at the image");
ABSL_FLAG(bool, force, false, "allow a version not newer than the newest published");
ABSL_FLAG(bool, dry_run, false, "decide and plan (HEAD requests only); write nothing");
ABSL_FLAG(bool, json, false, "print the outcome as JSON on stdout");
ABSL_FLAG(std::string, username, "", "registry user; the password is read from stdin");
ABSL_FLAG(std::string, docker_config, "", "Docker config.json for credentials");
ABSL_FLAG(bool, tls, false, "force HTTPS");
ABSL_FLAG(bool, plain_http, false, "force plain HTTP");
ABSL_FLAG(std::string, ca_cert, "", "PEM CA certificate(s) to trust for HTTPS");
ABSL_FLAG(std::vector<std::string>, mount_from, {}, "try cross-repository mounts from REPO");
ABSL_FLAG(std::string, source_commit, "", "org.opencontainers.image.revision");
ABSL_FLAG(std::string, package_lock, "", "file whose digest goes in dev.kiln.package-lock.digest");
ABSL_FLAG(int64_t, retries, 5, "attempts per request (1..100)");
ABSL_FLAG(int64_t, retry_base_ms, 200, "first backoff delay in ms (doubling, max 5000)");
ABSL_FLAG(int64_t, chunk_bytes, 16 << 20, "PATCH chunk size in bytes");
ABSL_FLAG(int64_t, stall_timeout_s, 60, "seconds without progress that fail a request (1..3600)");
ABSL_FLAG(std::string, verifier, "", "the verify program that gates a registry push's tags");
ABSL_FLAG(std::string, verify_suites, "builder", "the suites that gate the tags");
ABSL_FLAG(std::vector<std::string>, verify_arg, {}, "one more argument for the verifier");
ABSL_FLAG(std::string, verify_dir, "", "where the pulled image and the verifier's logs go");
ABSL_FLAG(int64_t, verify_timeout_s, 3600, "the verifier's deadline in seconds (>= 1)");
ABSL_FLAG(bool, skip_verify, false, "emergencies only: tag without verification");

namespace kiln::publish {
namespace {

// Exit codes (publish/README.md).
constexpr int kExitOk = 0;
constexpr int kExitInternal = 1;
constexpr int kExitUsage = 2;
constexpr int kExitPolicy = 3;
constexpr int kExitAuth = 4;
constexpr int kExitRegistry = 5;
constexpr int kExitVerification = 6;

constexpr const char* kUsage = R"(usage: publish --version X.Y.Z [options]

Publishes the builder OCI image under an immutable semver version.

  --version X.Y.Z        strict semver (required); its tag is the version with "+"
                         (build metadata) written "_", as Helm does: 1.2.3+b.7 is
                         tagged 1.2.3_b.7 (a tag may not hold "+"); a version longer
                         than a tag's 128 characters is refused (exit 2)
  --registry H[:P]/REPO  push to this registry repository (OCI distribution-spec);
                         without it, write to the local OCI layout of --oci-dir
  --oci-dir DIR          local OCI image layout to publish into when no --registry
                         (default: $KILN_OCI_DIR, else ~/.local/share/kiln/oci/builder)
  --layout DIR|TAR       the image to publish: an OCI image layout directory, or a
                         tar of one (default: set by the //publish target)
  --ref NAME             the manifest in --layout named NAME (default: its only one)
  --lock FILE            version lock file (default: publish/builder.lock.json in the
                         workspace)
  --latest               also point the tag "latest" at the image
  --minor                also point the tag "MAJOR.MINOR" at the image
  --force                allow a version lower than or equal to the newest published
  --dry-run              decide and plan (HEAD requests only); write nothing
  --json                 print the outcome as JSON on stdout
  --username USER        registry user; the password is read from stdin
  --docker-config FILE   Docker config.json for credentials
                         (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json)
  --tls | --plain-http   force HTTPS or plain HTTP (default: plain HTTP for loopback
                         registries, HTTPS otherwise)
  --ca-cert FILE         PEM CA certificate(s) to trust for HTTPS
  --mount-from REPO      try cross-repository mounts from REPO (repeatable)
  --source-commit SHA    org.opencontainers.image.revision (default: git rev-parse HEAD)
  --package-lock FILE    file whose digest goes in dev.kiln.package-lock.digest
                         (default: images/rootfs/builder-trixie.lock, the lock of
                         the Debian 13 root the builder image is made of)
  --retries N            attempts per request (default 5)
  --retry-base-ms MS     first backoff delay (default 200, doubling, max 5000)
  --chunk-bytes N        PATCH chunk size (default 16777216)
  --stall-timeout-s S    fail a request in which nothing moves for S seconds, or that
                         averages under 1 KiB/s after S seconds (default 60)

Verification gate (registry pushes): after the manifest is in the registry by digest,
publish pulls that digest back into a clean directory (every blob checked against its
digest), runs the verifier's suites on the pulled image (a builder disk made from it,
booted in real VMs), and only then writes the tags. A failure leaves the digest untagged.
  --verifier PATH        the verify program (//harness:verify; set by `bazel run //publish`),
                         run as PATH --builder_image=DIR --suites=SUITES --log_dir=DIR/verify
  --verify-suites LIST   the suites that gate the tags (default builder)
  --verify-arg ARG       one more argument for the verifier (repeatable), e.g.
                         --verify-arg=--accel=tcg, --verify-arg=--vmm=qemu
  --verify-dir DIR       where the pulled image and the verifier's logs go (default: a new
                         temporary directory, removed after a pass, kept after a failure)
  --verify-timeout-s S   the verifier's deadline (default 3600)
  --skip-verify          emergencies only: tag without verification; recorded in the
                         image as the annotation dev.kiln.publish.verification=skipped
                         (so it is another digest than a verified push of the same image)
  --help                 this text
Flag names may be written with "_" for "-" (--skip_verify, --dry_run, --oci_dir, ...);
values as --flag=VALUE or --flag VALUE; switches also as --flag=false or --noflag.

Exit codes: 0 published or already published (no-op), 1 internal error, 2 usage or bad
version or bad input image, 3 refused by the version policy, 4 authentication failed,
5 registry or network failure (also a registry breaking the protocol, stalling,
sending more than the caps, or pointing kiln at another origin), 6 the pushed image did not
pass verification (a pulled-back blob or manifest not matching its digest, or a gate suite
failing): the digest is in the registry untagged, and the message names it.
SOURCE_DATE_EPOCH sets org.opencontainers.image.created (default: the commit time, else 0).
)";

// The parsed command line. Spans are absl::Duration; the flags spell them in the units the
// README documents (--verify-timeout-s, --retry-base-ms, --stall-timeout-s).
struct Flags {
  std::string version, registry, oci_dir, layout, ref, lock, username, docker_config, ca_cert,
      source_commit, package_lock, verifier, verify_suites, verify_dir;
  bool latest = false, minor = false, force = false, dry_run = false, json = false, tls = false,
       plain_http = false, help = false, skip_verify = false;
  std::vector<std::string> mount_from, verify_args;
  absl::Duration verify_timeout, retry_base, stall_timeout;
  int retries = 5;
  int64_t chunk_bytes = 16 << 20;
};

int Fail(int code, absl::string_view msg) {
  std::cerr << "publish: " << msg << "\n";
  return code;
}

// The flags' spec: absl names (dashes accepted for "_": --dry-run), and `--version` spelling
// publish_version (abseil's usage library owns the global FLAGS_version).
const CommandFlagSpec& Spec() {
  static const auto* spec = new CommandFlagSpec{
      .command = "publish",
      .flags = {"publish_version", "registry", "oci_dir", "layout", "ref", "lock", "latest",
                "minor", "force", "dry_run", "json", "username", "docker_config", "tls",
                "plain_http", "ca_cert", "mount_from", "source_commit", "package_lock",
                "retries", "retry_base_ms", "chunk_bytes", "stall_timeout_s", "verifier",
                "verify_suites", "verify_arg", "verify_dir", "verify_timeout_s", "skip_verify"},
      .repeated = {&FLAGS_mount_from, &FLAGS_verify_arg},
      .aliases = {{"version", "publish_version"}},
      .dashes = true};
  return *spec;
}

// ParseFlags: the command line into *f (usage errors as the message to print, exit 2).
std::optional<std::string> ParseFlags(int argc, char** argv, Flags* f) {
  absl::StatusOr<ParsedCommandFlags> parsed =
      ParseCommandFlags(std::vector<std::string>(argv + 1, argv + argc), Spec());
  if (!parsed.ok()) return std::string(parsed.status().message());
  if (parsed->help) {
    f->help = true;
    return std::nullopt;
  }
  if (!parsed->positional.empty())
    return absl::StrCat("unknown argument \"", parsed->positional[0], "\" (see --help)");
  f->version = absl::GetFlag(FLAGS_publish_version);
  f->registry = absl::GetFlag(FLAGS_registry);
  f->oci_dir = absl::GetFlag(FLAGS_oci_dir);
  f->layout = absl::GetFlag(FLAGS_layout);
  f->ref = absl::GetFlag(FLAGS_ref);
  f->lock = absl::GetFlag(FLAGS_lock);
  f->username = absl::GetFlag(FLAGS_username);
  f->docker_config = absl::GetFlag(FLAGS_docker_config);
  f->ca_cert = absl::GetFlag(FLAGS_ca_cert);
  f->source_commit = absl::GetFlag(FLAGS_source_commit);
  f->package_lock = absl::GetFlag(FLAGS_package_lock);
  f->verifier = absl::GetFlag(FLAGS_verifier);
  f->verify_suites = absl::GetFlag(FLAGS_verify_suites);
  f->verify_dir = absl::GetFlag(FLAGS_verify_dir);
  f->latest = absl::GetFlag(FLAGS_latest);
  f->minor = absl::GetFlag(FLAGS_minor);
  f->force = absl::GetFlag(FLAGS_force);
  f->dry_run = absl::GetFlag(FLAGS_dry_run);
  f->json = absl::GetFlag(FLAGS_json);
  f->tls = absl::GetFlag(FLAGS_tls);
  f->plain_http = absl::GetFlag(FLAGS_plain_http);
  f->skip_verify = absl::GetFlag(FLAGS_skip_verify);
  f->mount_from = absl::GetFlag(FLAGS_mount_from);
  f->verify_args = absl::GetFlag(FLAGS_verify_arg);
  const int64_t verify_timeout_s = absl::GetFlag(FLAGS_verify_timeout_s);
  if (verify_timeout_s < 1) return "--verify-timeout-s must be >= 1";
  f->verify_timeout = absl::Seconds(verify_timeout_s);
  const int64_t retries = absl::GetFlag(FLAGS_retries);
  if (retries < 1 || retries > 100) return "--retries must be 1..100";
  f->retries = static_cast<int>(retries);
  const int64_t retry_base_ms = absl::GetFlag(FLAGS_retry_base_ms);
  if (retry_base_ms < 0) return "--retry-base-ms must be >= 0";
  f->retry_base = absl::Milliseconds(retry_base_ms);
  f->chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  if (f->chunk_bytes < 1) return "--chunk-bytes must be >= 1";
  const int64_t stall_timeout_s = absl::GetFlag(FLAGS_stall_timeout_s);
  if (stall_timeout_s < 1 || stall_timeout_s > 3600) return "--stall-timeout-s must be 1..3600";
  f->stall_timeout = absl::Seconds(stall_timeout_s);
  return std::nullopt;
}

int ExitCodeFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk: return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange: return kExitUsage;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition: return kExitPolicy;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied: return kExitAuth;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDataLoss: return kExitRegistry;
    default: return kExitInternal;
  }
}

std::string WorkspacePath(absl::string_view rel) {
  const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  return ws && *ws ? absl::StrCat(ws, "/", rel) : std::string(rel);
}

std::string RunCapture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[256];
  while (fgets(buf, sizeof buf, p)) out += buf;
  if (pclose(p) != 0) return "";
  return std::string(absl::StripAsciiWhitespace(out));
}

std::string HumanBytes(int64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 3) v /= 1024, ++u;
  char buf[32];
  snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

// VerifyPushed: the verification gate (PublishOptions::verify) for a registry push. Pulls
// `digest` back from the registry into DIR/image (PullImage: every blob against its digest;
// DataLoss there is the image's fault), then runs f.verifier --builder_image=DIR/image
// --suites=f.verify_suites --log_dir=DIR/verify [f.verify_args...] with its output in
// DIR/verify.log; anything but exit 0 is a verification failure. DIR (--verify-dir, else a
// new temporary directory) is removed after a pass and kept after a failure.
absl::Status VerifyPushed(RegistryClient* client, const std::string& target,
                          const std::string& digest, const Flags& f) {
  std::string dir = f.verify_dir;
  const bool temporary = dir.empty();
  if (temporary) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kiln-publish-verify.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    dir = tmpl;
  }
  bool passed = false;
  absl::Cleanup remove_dir = [&] {
    std::error_code ec;
    if (temporary && passed) std::filesystem::remove_all(dir, ec);
  };
  const std::string image = dir + "/image";
  std::error_code ec;
  std::filesystem::remove_all(image, ec);
  std::cerr << "publish: verifying " << target << "@" << digest << " (untagged until it passes): "
            << "pulling it back into " << image << "\n";
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> pulled = PullImage(client, digest, image);
  if (!pulled.ok()) {
    absl::Status s(pulled.status().code(),
                   absl::StrCat("pull-back: ", pulled.status().message(), " (nothing booted)"));
    return pulled.status().code() == absl::StatusCode::kDataLoss ? VerificationFailed(s) : s;
  }
  std::cerr << "publish: pulled back, every digest verified, in "
            << absl::ToInt64Milliseconds(absl::Now() - start) << " ms; running the verifier "
            << "(suites " << f.verify_suites << "; log " << dir << "/verify.log) ...\n";
  std::vector<std::string> argv = {f.verifier, absl::StrCat("--builder_image=", image),
                                   absl::StrCat("--suites=", f.verify_suites),
                                   absl::StrCat("--log_dir=", dir, "/verify")};
  argv.insert(argv.end(), f.verify_args.begin(), f.verify_args.end());
  const std::string log = dir + "/verify.log";
  absl::StatusOr<process::Process> p = process::Process::Spawn(
      {.argv = argv, .out = process::Stdio::File(log), .err = process::Stdio::SameAsStdout()});
  if (!p.ok()) {
    return absl::Status(p.status().code(), absl::StrCat("cannot run the verifier ", f.verifier,
                                                        ": ", p.status().message()));
  }
  absl::StatusOr<process::ProcessExit> exit = p->Wait(absl::Now() + f.verify_timeout);
  if (!exit.ok()) {
    p->Kill(absl::Seconds(10));
    return VerificationFailed(absl::DeadlineExceededError(absl::StrCat(
        "the verifier did not finish in --verify-timeout-s=", absl::ToInt64Seconds(f.verify_timeout),
        " s (killed); its log: ", log)));
  }
  if (exit->signaled || exit->exit_code != 0) {
    // The report's failed checks and its last line ("N checks: ...").
    std::string why;
    std::string text = file::ReadFileOrEmpty(log);
    std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
    bool last_included = false;
    for (absl::string_view l : lines) {
      absl::string_view t = absl::StripLeadingAsciiWhitespace(l);
      last_included = absl::StartsWith(t, "FAIL") || absl::StartsWith(t, "verify:");
      if (last_included) absl::StrAppend(&why, "\n  ", l);
    }
    if (!lines.empty() && !last_included) absl::StrAppend(&why, "\n  ", lines.back());
    return VerificationFailed(absl::AbortedError(absl::StrCat(
        "verification failed: the verifier (suites ", f.verify_suites, ") ",
        exit->signaled ? absl::StrCat("was killed by signal ", exit->signal)
                       : absl::StrCat("exited ", exit->exit_code),
        "; its log: ", log, why)));
  }
  passed = true;
  std::cerr << "publish: verification passed (suites " << f.verify_suites << ") in "
            << absl::ToInt64Milliseconds(absl::Now() - start) << " ms\n";
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  Flags f;
  if (auto err = ParseFlags(argc, argv, &f)) return Fail(kExitUsage, *err);
  if (f.help) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (f.version.empty()) return Fail(kExitUsage, "--version is required (see --help)");
  absl::StatusOr<SemVer> version = SemVer::Parse(f.version);
  if (!version.ok()) return Fail(kExitUsage, version.status().message());
  if (absl::Status s = ValidateTag(version->Tag()); !s.ok())
    return Fail(kExitUsage, absl::StrCat("version ", version->ToString(),
                                         " cannot be published: ", s.message()));
  if (f.tls && f.plain_http) return Fail(kExitUsage, "--tls and --plain-http exclude each other");
  if (f.layout.empty()) return Fail(kExitUsage, "--layout DIR is required (the image to publish)");
  if (f.registry.empty() && (!f.username.empty() || f.tls || f.plain_http || !f.ca_cert.empty()))
    return Fail(kExitUsage, "--username/--tls/--plain-http/--ca-cert need --registry");
  if (!f.registry.empty()) {
    if (absl::StatusOr<RegistryRef> ref = RegistryRef::Parse(f.registry); !ref.ok())
      return Fail(kExitUsage, ref.status().message());
  }
  // The gate: every registry push that writes tags is verified first, unless --skip-verify.
  const bool gate = !f.registry.empty() && !f.dry_run && !f.skip_verify;
  if (gate && f.verifier.empty())
    return Fail(kExitUsage, "a registry push is verified before its tags are written: pass "
                            "--verifier PATH (`bazel run //publish` does) or, in an "
                            "emergency, --skip-verify (see --help)");
  if (gate && access(f.verifier.c_str(), X_OK) != 0)
    return Fail(kExitUsage, absl::StrCat("--verifier ", f.verifier, ": not an executable file"));

  // --layout may be an OCI layout archive (tar): unpack it into a temporary directory.
  std::string layout_dir = f.layout;
  std::string tmp_layout;
  absl::Cleanup remove_tmp = [&tmp_layout] {
    if (!tmp_layout.empty()) std::filesystem::remove_all(tmp_layout);
  };
  if (std::filesystem::is_regular_file(f.layout)) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kiln-publish.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return Fail(kExitInternal, "mkdtemp failed");
    tmp_layout = tmpl;
    if (absl::Status s = ExtractLayoutArchive(f.layout, tmp_layout); !s.ok())
      return Fail(kExitUsage, absl::StrCat("--layout: ", s.message()));
    layout_dir = tmp_layout;
  }

  PublishOptions opts;
  opts.layout_dir = layout_dir;
  opts.ref = f.ref;
  opts.version = *version;
  opts.force = f.force;
  opts.move_latest = f.latest;
  opts.move_minor = f.minor;
  opts.dry_run = f.dry_run;
  opts.mount_from = f.mount_from;
  opts.lock_path = f.lock.empty() ? WorkspacePath("publish/builder.lock.json") : f.lock;

  // Annotations: revision, package lock digest, created.
  const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  std::string git = absl::StrCat("git -C '", ws && *ws ? ws : ".", "' ");
  std::string commit = f.source_commit;
  if (commit.empty()) commit = RunCapture(git + "rev-parse HEAD 2>/dev/null");
  if (commit.empty())
    return Fail(kExitUsage, "cannot find the source commit (not in a git checkout): pass "
                            "--source-commit SHA");
  opts.annotations[std::string(oci::kAnnotationRevision)] = commit;
  std::string package_lock =
      f.package_lock.empty() ? WorkspacePath("images/rootfs/builder-trixie.lock") : f.package_lock;
  absl::StatusOr<std::string> lock_digest = Sha256FileDigest(package_lock);
  if (lock_digest.ok()) {
    opts.annotations[std::string(kAnnotationPackageLock)] = *lock_digest;
  } else if (!f.package_lock.empty()) {
    return Fail(kExitUsage, absl::StrCat("--package-lock: ", lock_digest.status().message()));
  } else {
    std::cerr << "publish: warning: no package lock at " << package_lock
              << "; the image carries no " << kAnnotationPackageLock << " annotation\n";
  }
  int64_t epoch = 0;
  if (const char* sde = std::getenv("SOURCE_DATE_EPOCH"); sde && *sde) {
    if (!absl::SimpleAtoi(sde, &epoch) || epoch < 0)
      return Fail(kExitUsage, absl::StrCat("SOURCE_DATE_EPOCH=\"", sde, "\" is not a number"));
  } else if (f.source_commit.empty()) {
    std::string ct = RunCapture(git + "log -1 --format=%ct 2>/dev/null");
    if (!absl::SimpleAtoi(ct, &epoch)) epoch = 0;
  }
  opts.annotations[std::string(oci::kAnnotationCreated)] = Rfc3339FromEpoch(epoch);
  if (f.skip_verify) {
    // Decided before the push: the annotation is part of the digest.
    opts.annotations[std::string(kAnnotationVerification)] = "skipped";
    std::cerr << "publish: WARNING: --skip-verify: this image will be tagged WITHOUT "
                 "verification (no pull-back, no builder suite); recorded in the image as "
              << kAnnotationVerification << "=skipped\n";
  }

  const bool tty = isatty(STDERR_FILENO) && !f.json;
  absl::Time start = absl::Now();
  if (tty) {
    opts.log = [](absl::string_view s) { std::cerr << "publish: " << s << "\n"; };
    auto started = std::make_shared<std::map<std::string, absl::Time>>();
    opts.on_blob = [started](const BlobStep& step, int64_t done) {
      auto [it, fresh] = started->emplace(step.desc.digest, absl::Now());
      double secs = absl::ToDoubleSeconds(absl::Now() - it->second);
      std::cerr << "\r  " << step.desc.digest.substr(7, 12) << "  "
                << HumanBytes(done) << " / " << HumanBytes(step.desc.size) << "  "
                << HumanBytes(secs > 0 ? static_cast<int64_t>(done / secs) : 0) << "/s   "
                << (done >= step.desc.size ? "\n" : "") << std::flush;
    };
  }

  absl::StatusOr<PublishResult> result;
  std::string pushed_digest;  // set when the gate ran: in the registry, untagged until it passes
  std::optional<CurlTransport> http;
  std::optional<RegistryClient> client;
  std::optional<RegistryTarget> rtarget;
  std::optional<LayoutTarget> ltarget;
  PublishTarget* target = nullptr;
  if (!f.registry.empty()) {
    absl::StatusOr<RegistryRef> ref = RegistryRef::Parse(f.registry);
    if (!ref.ok()) return Fail(kExitUsage, ref.status().message());
    RegistryOptions ro;
    ro.use_tls = f.tls || (!f.plain_http && !ref->IsLoopback());
    ro.max_attempts = f.retries;
    ro.backoff_base = f.retry_base;
    ro.chunk_bytes = f.chunk_bytes;
    if (!f.username.empty()) {
      std::string password;
      std::getline(std::cin, password);
      if (!password.empty() && password.back() == '\r') password.pop_back();
      if (password.empty())
        return Fail(kExitUsage, "--username given but no password on stdin");
      ro.credentials = Credentials{f.username, password};
    } else {
      std::string cfg = f.docker_config;
      if (cfg.empty()) {
        if (const char* dc = std::getenv("DOCKER_CONFIG"); dc && *dc)
          cfg = absl::StrCat(dc, "/config.json");
        else if (const char* home = std::getenv("HOME"); home && *home)
          cfg = absl::StrCat(home, "/.docker/config.json");
      }
      std::ifstream in(cfg);
      if (in) {
        std::stringstream ss;
        ss << in.rdbuf();
        absl::StatusOr<std::optional<Credentials>> c = CredentialsFromDockerConfig(ss.str(), ref->host);
        if (!c.ok()) return Fail(kExitUsage, absl::StrCat(cfg, ": ", c.status().message()));
        ro.credentials = *c;
      } else if (!f.docker_config.empty()) {
        return Fail(kExitUsage, absl::StrCat("--docker-config ", cfg, ": cannot read"));
      }
    }
    http.emplace(TransportOptions{.ca_file = f.ca_cert,
                                  .stall_timeout_ms = absl::ToInt64Milliseconds(f.stall_timeout)});
    client.emplace(*ref, ro, &*http);
    if (absl::Status s = client->Ping(); !s.ok())
      return Fail(ExitCodeFor(s), absl::StrCat("registry ", ref->ToString(), ": ", s.message()));
    rtarget.emplace(&*client, *ref);
    target = &*rtarget;
    if (gate) {
      opts.verify = [&client, &f, &pushed_digest, name = ref->ToString()](const std::string& digest) {
        pushed_digest = digest;
        return VerifyPushed(&*client, name, digest, f);
      };
    }
  } else {
    std::string dir = f.oci_dir;
    if (dir.empty()) {
      if (const char* d = std::getenv("KILN_OCI_DIR"); d && *d) dir = d;
      else if (const char* home = std::getenv("HOME"); home && *home)
        dir = absl::StrCat(home, "/.local/share/kiln/oci/builder");
      else
        return Fail(kExitUsage, "no --registry, no --oci-dir and no $HOME");
    }
    ltarget.emplace(dir);
    if (!f.dry_run) {
      if (absl::Status s = ltarget->Init(); !s.ok()) return Fail(kExitUsage, s.message());
    }
    target = &*ltarget;
  }

  result = Publish(opts, target);
  if (!result.ok()) {
    int code = IsVerificationFailure(result.status()) ? kExitVerification
                                                      : ExitCodeFor(result.status());
    if (f.json) {
      nlohmann::json j = {{"ok", false}, {"exit_code", code},
                          {"error", std::string(result.status().message())}};
      if (!pushed_digest.empty()) j["digest"] = pushed_digest;
      std::cout << j.dump() << "\n";
    }
    return Fail(code, result.status().message());
  }
  const PublishResult& r = *result;
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  if (f.json) {
    nlohmann::json blobs = nlohmann::json::array();
    for (const BlobStep& b : r.blobs)
      blobs.push_back({{"digest", b.desc.digest},
                       {"size", b.desc.size},
                       {"action", b.action == BlobAction::kSkip    ? "skip"
                                  : b.action == BlobAction::kMount ? "mount"
                                                                   : "upload"}});
    nlohmann::json j = {{"ok", true},
                        {"digest", r.digest},
                        {"target", r.target},
                        {"version", opts.version.ToString()},
                        {"tags", r.tags},
                        {"noop", r.noop},
                        {"dry_run", r.dry_run},
                        {"bytes_uploaded", r.bytes_uploaded},
                        {"bytes_skipped", r.bytes_skipped},
                        {"blobs_mounted", r.blobs_mounted},
                        {"blobs", blobs},
                        {"seconds", secs},
                        {"verification", f.skip_verify ? "skipped"
                                         : r.verified  ? "passed"
                                                       : "none"},
                        {"verify_seconds", absl::ToDoubleSeconds(r.verify_time)},
                        {"note", r.note}};
    if (client) {
      j["retries"] = client->stats().retries;
      j["resumes"] = client->stats().resumes;
      j["restarts"] = client->stats().restarts;
    }
    std::cout << j.dump() << "\n";
  } else {
    if (tty)
      std::cerr << "publish: " << (r.dry_run ? "[dry run] " : "") << r.target << "@" << r.digest
              << (r.noop ? " (already published, no-op)" : "") << "  uploaded "
              << HumanBytes(r.bytes_uploaded) << ", skipped " << HumanBytes(r.bytes_skipped)
              << (r.tags.empty() ? "" : "  tags:");
    if (tty) {
      for (const std::string& t : r.tags) std::cerr << " " << t;
      std::cerr << "\n";
    }
    std::cout << r.digest << "\n";
  }
  return kExitOk;
}

}  // namespace
}  // namespace kiln::publish

int main(int argc, char** argv) { return kiln::publish::Main(argc, argv); }
