// kiln-build: runs one BuildKit build with the kiln build runner (agent/runner/runner.h) on
// this machine, for host-side comparisons with builds inside the builder VM.
//
//   kiln-build --context DIR --secret id=tok,src=FILE --preload busybox.tar \
//              --tag app:1 --out image.oci.tar [--work-dir DIR] [--deadline-ms N]
//
// Prints each redacted log line to stderr, then one summary line to stdout:
//   kiln-build: ok digest=sha256:... bytes=N dockerd_start_ms=... preload_ms=... build_ms=...
//   export_ms=... teardown_ms=... total_ms=...
// Exit status: 0 ok, 1 build failed, 2 bad usage.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/runner/base_image.h"
#include "agent/runner/runner.h"

namespace {

constexpr char kUsage[] =
    "usage: kiln-build --context DIR | --context-tar FILE [options]\n"
    "  --context DIR            build context directory (absolute or relative)\n"
    "  --context-tar FILE       build context as a tar (validated, extracted safely)\n"
    "  --file PATH              Dockerfile path inside the context (default Dockerfile)\n"
    "  --secret id=X,src=FILE   a build secret (repeatable); the file is read, never passed on\n"
    "  --build-arg K=V          a build arg (repeatable)\n"
    "  --target STAGE           stage to build\n"
    "  --network none|host      RUN step network (default none)\n"
    "  --preload FILE           docker-archive to load first (repeatable)\n"
    "  --tag NAME               image tag (default kiln-build:latest)\n"
    "  --out FILE               OCI archive to write (default <work-dir>/image.oci.tar)\n"
    "  --work-dir DIR           work directory (default: a new /var/tmp/kiln-build-XXXXXX)\n"
    "  --secret-dir DIR         tmpfs dir for secret files (default /run or /dev/shm)\n"
    "  --deadline-ms N          whole-build deadline (default 600000)\n"
    "  --no-cache               run every step\n"
    "  --builder-mode M         rootful (default here: root dockerd + own containerd) or\n"
    "                           rootless (dockerd-rootless.sh as uid 1000; runner/rootless.h)\n"
    "  --make-busybox-image OUT write a busybox docker-archive tagged kiln-busybox:1 (from\n"
    "                           /bin/busybox) to OUT and exit; load it with --preload OUT\n"
    "  --help                   this text\n";

std::string Absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) return p;
  return absl::StrCat(cwd, "/", p);
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using kiln::agent::runner::BuildSpec;
  BuildSpec spec;
  std::string work_dir;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      std::cerr << "kiln-build: " << argv[i] << " needs a value\n" << kUsage;
      exit(2);
    }
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--make-busybox-image") {
      std::string out = Absolute(need(i));
      absl::StatusOr<std::string> id = kiln::agent::runner::WriteBusyboxDockerArchive(
          "/bin/busybox", "kiln-busybox:1", out);
      if (!id.ok()) {
        std::cerr << "kiln-build: " << id.status() << "\n";
        return 1;
      }
      std::cout << "kiln-build: wrote " << out << " (kiln-busybox:1, image id " << *id << ")\n";
      return 0;
    } else if (a == "--context") {
      spec.context_dir = Absolute(need(i));
    } else if (a == "--context-tar") {
      spec.context_tar = Absolute(need(i));
    } else if (a == "--file" || a == "-f") {
      spec.dockerfile = need(i);
    } else if (a == "--secret") {
      std::string id, src;
      for (absl::string_view kv : absl::StrSplit(need(i), ',')) {
        if (absl::ConsumePrefix(&kv, "id=")) id = std::string(kv);
        else if (absl::ConsumePrefix(&kv, "src=")) src = std::string(kv);
      }
      std::string value;
      if (id.empty() || src.empty() || !ReadFile(src, &value)) {
        std::cerr << "kiln-build: --secret needs id=X,src=FILE with a readable FILE\n";
        return 2;
      }
      spec.secrets[id] = value;
    } else if (a == "--build-arg") {
      std::string kv = need(i);
      size_t eq = kv.find('=');
      if (eq == std::string::npos) {
        std::cerr << "kiln-build: --build-arg needs K=V\n";
        return 2;
      }
      spec.build_args.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    } else if (a == "--target") {
      spec.target = need(i);
    } else if (a == "--network") {
      std::string n = need(i);
      if (n == "host") {
        spec.network = kiln::agent::runner::NetworkMode::kHost;
      } else if (n != "none") {
        std::cerr << "kiln-build: --network must be none or host\n";
        return 2;
      }
    } else if (a == "--preload") {
      spec.preload_images.push_back(Absolute(need(i)));
    } else if (a == "--tag" || a == "-t") {
      spec.tag = need(i);
    } else if (a == "--out" || a == "-o") {
      spec.output_path = Absolute(need(i));
    } else if (a == "--work-dir") {
      work_dir = Absolute(need(i));
    } else if (a == "--secret-dir") {
      spec.secret_dir = Absolute(need(i));
    } else if (a == "--deadline-ms") {
      if (!absl::SimpleAtoi(need(i), &spec.deadline_ms)) {
        std::cerr << "kiln-build: --deadline-ms needs a number\n";
        return 2;
      }
    } else if (a == "--no-cache") {
      spec.no_cache = true;
    } else if (a == "--builder-mode") {
      const std::string m = need(i);
      if (!kiln::agent::runner::ParseBuilderMode(m, &spec.mode)) {
        std::cerr << "kiln-build: --builder-mode must be rootless or rootful, got \"" << m
                  << "\"\n";
        return 2;
      }
    } else {
      std::cerr << "kiln-build: unknown argument " << a << "\n" << kUsage;
      return 2;
    }
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
