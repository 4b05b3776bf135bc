// kiln-build: runs one BuildKit build with the kiln build runner (agent/runner/runner.h) on
// this machine, for host-side comparisons with builds inside the builder VM.
//
//   kiln-build --context=DIR --secret=id=tok,src=FILE --preload=busybox.tar \
//              --tag=app:1 --out=image.oci.tar [--work_dir=DIR] [--deadline_ms=N]
//
// Flags are absl flags (`--help` lists them; `--flag=value` or `--flag value`); --secret,
// --build_arg and --preload may be repeated. Prints each redacted log line to stderr, then one
// summary line to stdout:
//   kiln-build: ok digest=sha256:... bytes=N dockerd_start_ms=... preload_ms=... build_ms=...
//   export_ms=... teardown_ms=... total_ms=...
// Exit status: 0 ok, 1 build failed (or absl's own flag errors, e.g. an unknown flag), 2 a bad
// flag value.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/file/file.h"
#include "agent/runner/base_image.h"
#include "agent/runner/runner.h"
#include "third_party/absl_ext/repeated_flag.h"

ABSL_FLAG(std::string, context, "", "build context directory (absolute or relative)");
ABSL_FLAG(std::string, context_tar, "",
          "build context as a tar (validated, extracted safely); instead of --context");
ABSL_FLAG(std::string, file, "Dockerfile", "Dockerfile path inside the context");
ABSL_FLAG(std::vector<std::string>, secret, {},
          "id=X,src=FILE: a build secret (repeatable); the file is read, never passed on");
ABSL_FLAG(std::vector<std::string>, build_arg, {}, "K=V: a build arg (repeatable)");
ABSL_FLAG(std::string, target, "", "stage to build (default: the last)");
ABSL_FLAG(std::string, network, "none", "RUN step network: none or host");
ABSL_FLAG(std::vector<std::string>, preload, {},
          "a docker-archive to load before the build (repeatable)");
ABSL_FLAG(std::string, tag, "kiln-build:latest", "image tag");
ABSL_FLAG(std::string, out, "", "OCI archive to write (default <work_dir>/image.oci.tar)");
ABSL_FLAG(std::string, work_dir, "", "work directory (default: a new /var/tmp/kiln-build-XXXXXX)");
ABSL_FLAG(std::string, secret_dir, "", "tmpfs dir for secret files (default /run or /dev/shm)");
ABSL_FLAG(int64_t, deadline_ms, 600000, "whole-build deadline, in milliseconds");
ABSL_FLAG(bool, no_cache, false, "run every step (docker build --no-cache)");
ABSL_FLAG(std::string, builder_mode, "rootful",
          "rootful (root dockerd + its own containerd) or rootless (dockerd-rootless.sh as uid "
          "1000; runner/rootless.h)");
ABSL_FLAG(std::string, make_busybox_image, "",
          "write a busybox docker-archive tagged kiln-busybox:1 (from /bin/busybox) to this file "
          "and exit; load it with --preload");

namespace {

std::string Absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) return p;
  return absl::StrCat(cwd, "/", p);
}

}  // namespace

int main(int argc, char** argv) {
  using kiln::agent::runner::BuildSpec;
  absl::SetProgramUsageMessage(
      "kiln-build --context=DIR | --context_tar=FILE [flags]\n"
      "Runs one BuildKit build on this machine with the kiln build runner.");
  absl::FlagsUsageConfig usage;  // --help lists this file's flags (absl's default looks for
  usage.contains_help_flags = [](absl::string_view file) { return file == __FILE__; };
  usage.contains_helpshort_flags = usage.contains_help_flags;  // kiln-build.cc)
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> args =
      kiln::ParseCommandLineWithRepeated(argc, argv, {&FLAGS_secret, &FLAGS_build_arg, &FLAGS_preload});
  if (args.size() > 1) {
    std::cerr << "kiln-build: unexpected argument " << args[1] << " (see --help)\n";
    return 2;
  }

  if (const std::string bb = absl::GetFlag(FLAGS_make_busybox_image); !bb.empty()) {
    std::string out = Absolute(bb);
    absl::StatusOr<std::string> id =
        kiln::agent::runner::WriteBusyboxDockerArchive("/bin/busybox", "kiln-busybox:1", out);
    if (!id.ok()) {
      std::cerr << "kiln-build: " << id.status() << "\n";
      return 1;
    }
    std::cout << "kiln-build: wrote " << out << " (kiln-busybox:1, image id " << *id << ")\n";
    return 0;
  }
  BuildSpec spec;
  spec.context_dir = Absolute(absl::GetFlag(FLAGS_context));
  spec.context_tar = Absolute(absl::GetFlag(FLAGS_context_tar));
  spec.dockerfile = absl::GetFlag(FLAGS_file);
  for (const std::string& secret : absl::GetFlag(FLAGS_secret)) {
    std::string id, src;
    for (absl::string_view kv : absl::StrSplit(secret, ',')) {
      if (absl::ConsumePrefix(&kv, "id=")) id = std::string(kv);
      else if (absl::ConsumePrefix(&kv, "src=")) src = std::string(kv);
    }
    absl::StatusOr<std::string> value =
        src.empty() ? absl::InvalidArgumentError("no src=") : kiln::file::ReadFile(src);
    if (id.empty() || !value.ok()) {
      std::cerr << "kiln-build: --secret needs id=X,src=FILE with a readable FILE\n";
      return 2;
    }
    spec.secrets[id] = *std::move(value);
  }
  for (const std::string& kv : absl::GetFlag(FLAGS_build_arg)) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      std::cerr << "kiln-build: --build_arg needs K=V\n";
      return 2;
    }
    spec.build_args.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  spec.target = absl::GetFlag(FLAGS_target);
  if (const std::string n = absl::GetFlag(FLAGS_network); n == "host") {
    spec.network = kiln::agent::runner::NetworkMode::kHost;
  } else if (n != "none") {
    std::cerr << "kiln-build: --network must be none or host\n";
    return 2;
  }
  for (const std::string& p : absl::GetFlag(FLAGS_preload)) spec.preload_images.push_back(Absolute(p));
  spec.tag = absl::GetFlag(FLAGS_tag);
  spec.output_path = Absolute(absl::GetFlag(FLAGS_out));
  std::string work_dir = Absolute(absl::GetFlag(FLAGS_work_dir));
  spec.secret_dir = Absolute(absl::GetFlag(FLAGS_secret_dir));
  spec.deadline_ms = absl::GetFlag(FLAGS_deadline_ms);
  spec.no_cache = absl::GetFlag(FLAGS_no_cache);
  if (const std::string m = absl::GetFlag(FLAGS_builder_mode);
      !kiln::agent::runner::ParseBuilderMode(m, &spec.mode)) {
    std::cerr << "kiln-build: --builder_mode must be rootless or rootful, got \"" << m << "\"\n";
    return 2;
  }
  if (work_dir.empty()) {
    char tmpl[] = "/var/tmp/kiln-build-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      perror("kiln-build: mkdtemp");
      return 1;
    }
    work_dir = tmpl;
  }
  spec.work_dir = work_dir;
  kiln::agent::runner::BuildResult r = kiln::agent::runner::RunBuild(
      spec, [](absl::string_view line) { std::cerr << line << "\n"; });
  const auto& d = r.durations_ms;
  std::string timings = absl::StrCat(
      "validate_ms=", d.validate, " dockerd_start_ms=", d.dockerd_start, " preload_ms=",
      d.preload, " build_ms=", d.build, " export_ms=", d.export_image, " teardown_ms=",
      d.teardown, " total_ms=", d.total);
  if (!r.status.ok()) {
    std::cout << "kiln-build: FAILED " << absl::StatusCodeToString(r.status.code()) << " "
              << timings << "\n";
    std::cerr << "kiln-build: " << r.error_message << "\n";
    return 1;
  }
  std::cout << "kiln-build: ok digest=" << r.manifest_digest << " bytes=" << r.image_archive_bytes
            << " out=" << r.image_archive_path << " " << timings << "\n";
  return 0;
}
