// kiln-oci: writes a deterministic OCI image layout from layer tars (images/oci/oci_layout.h).
//
//   kiln-oci --out DIR --layer rootfs.tar=debian --layer kiln.tar=kiln \
//            --entrypoint /usr/local/bin/kiln-agent --env PATH=/usr/bin:/bin \
//            --created 1970-01-01T00:00:00Z --ref-name latest --digest-out image.digest
//
// Repeatable: --layer PATH[=NOTE], --entrypoint ARG, --cmd ARG, --env K=V, --label K=V,
// --annotation K=V. Exit codes: 0 ok, 2 usage, 1 any other error (message on stderr).
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "images/oci/oci_layout.h"

namespace {

constexpr char kUsage[] =
    "usage: kiln-oci --out DIR --layer PATH[=NOTE]... [--entrypoint ARG]... [--cmd ARG]...\n"
    "                [--env K=V]... [--label K=V]... [--annotation K=V]... [--workdir DIR]\n"
    "                [--user U] [--created RFC3339] [--ref-name NAME] [--gzip-level 1..9]\n"
    "                [--digest-out FILE]\n"
    "Writes an OCI image layout (oci-layout, index.json, blobs/sha256/) to DIR, which must be\n"
    "empty or absent. Layers are uncompressed tars, stored gzip'd deterministically.\n";

bool SplitKv(const std::string& s, std::string* k, std::string* v) {
  size_t eq = s.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  *k = s.substr(0, eq);
  *v = s.substr(eq + 1);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  kiln::images::ImageSpec spec;
  std::vector<kiln::images::LayerInput> layers;
  std::string out, digest_out;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "kiln-oci: %s needs a value\n%s", flag.c_str(), kUsage);
      return 2;
    }
    std::string value = argv[++i], k, v;
    if (flag == "--out") {
      out = value;
    } else if (flag == "--layer") {
      size_t eq = value.find('=');
      layers.push_back({value.substr(0, eq), eq == std::string::npos ? "" : value.substr(eq + 1)});
    } else if (flag == "--entrypoint") {
      spec.entrypoint.push_back(value);
    } else if (flag == "--cmd") {
      spec.cmd.push_back(value);
    } else if (flag == "--env") {
      spec.env.push_back(value);
    } else if (flag == "--label" || flag == "--annotation") {
      if (!SplitKv(value, &k, &v)) {
        std::fprintf(stderr, "kiln-oci: %s %s: want KEY=value\n", flag.c_str(), value.c_str());
        return 2;
      }
      (flag == "--label" ? spec.labels : spec.annotations)[k] = v;
    } else if (flag == "--workdir") {
      spec.working_dir = value;
    } else if (flag == "--user") {
      spec.user = value;
    } else if (flag == "--created") {
      spec.created = value;
    } else if (flag == "--ref-name") {
      spec.ref_name = value;
    } else if (flag == "--gzip-level") {
      spec.gzip_level = std::atoi(value.c_str());
    } else if (flag == "--digest-out") {
      digest_out = value;
    } else {
      std::fprintf(stderr, "kiln-oci: unknown flag %s\n%s", flag.c_str(), kUsage);
      return 2;
    }
  }
  if (out.empty() || layers.empty()) {
    std::fprintf(stderr, "kiln-oci: --out and at least one --layer are required\n%s", kUsage);
    return 2;
  }
  auto r = kiln::images::WriteOciLayout(layers, spec, out);
  if (!r.ok()) {
    std::fprintf(stderr, "kiln-oci: %s\n", r.status().ToString().c_str());
    return r.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  if (!digest_out.empty()) {
    FILE* f = std::fopen(digest_out.c_str(), "w");
    if (f == nullptr || std::fprintf(f, "%s\n", r->manifest.digest.c_str()) < 0 || std::fclose(f) != 0) {
      std::fprintf(stderr, "kiln-oci: cannot write %s: %s\n", digest_out.c_str(), std::strerror(errno));
      return 1;
    }
  }
  std::printf("kiln-oci: %s: manifest %s (%zu layers)\n", out.c_str(), r->manifest.digest.c_str(),
              r->layers.size());
  return 0;
}
