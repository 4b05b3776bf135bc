// kiln-oci: writes a deterministic OCI image layout from layer tars (images/oci/oci_layout.h).
//
//   kiln-oci --out=DIR --layer=rootfs.tar=debian --layer=kiln.tar=kiln \
//            --entrypoint=/usr/local/bin/kiln-agent --env=PATH=/usr/bin:/bin \
//            --created=1970-01-01T00:00:00Z --ref_name=latest --digest_out=image.digest
//
// Flags are absl flags (`--help` lists them; `--flag=value` or `--flag value`). Repeatable, in
// order: --layer, --entrypoint, --cmd, --env, --label, --annotation. Exit codes: 0 ok;
// 2 a missing or malformed flag value or an invalid image (message on stderr); 1 any other
// error (absl's own flag errors, e.g. an unknown flag, exit 1 too).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "images/oci/oci_layout.h"
#include "third_party/absl_ext/repeated_flag.h"

ABSL_FLAG(std::string, out, "", "the image layout directory to write; must be empty or absent");
ABSL_FLAG(std::vector<std::string>, layer, {},
          "PATH[=NOTE]: an uncompressed layer tar, stored gzip'd deterministically; NOTE becomes "
          "its history entry (repeatable, in order; at least one)");
ABSL_FLAG(std::vector<std::string>, entrypoint, {}, "one Entrypoint argument (repeatable)");
ABSL_FLAG(std::vector<std::string>, cmd, {}, "one Cmd argument (repeatable)");
ABSL_FLAG(std::vector<std::string>, env, {}, "K=V: one Env entry (repeatable)");
ABSL_FLAG(std::vector<std::string>, label, {}, "K=V: one config label (repeatable)");
ABSL_FLAG(std::vector<std::string>, annotation, {}, "K=V: one manifest annotation (repeatable)");
ABSL_FLAG(std::string, workdir, "", "the config's WorkingDir");
ABSL_FLAG(std::string, user, "", "the config's User");
ABSL_FLAG(std::string, created, "1970-01-01T00:00:00Z", "the config's created time (RFC 3339, UTC)");
ABSL_FLAG(std::string, ref_name, "", "org.opencontainers.image.ref.name of the index entry");
ABSL_FLAG(int, gzip_level, 6, "layer gzip level, 1..9");
ABSL_FLAG(std::string, digest_out, "", "also write the manifest digest (and a newline) here");

namespace {

bool SplitKv(const std::string& s, std::string* k, std::string* v) {
  size_t eq = s.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  *k = s.substr(0, eq);
  *v = s.substr(eq + 1);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "kiln-oci --out=DIR --layer=PATH[=NOTE]... [--entrypoint=ARG]... [--cmd=ARG]...\n"
      "  [--env=K=V]... [--label=K=V]... [--annotation=K=V]... [--workdir=DIR] [--user=U]\n"
      "  [--created=RFC3339] [--ref_name=NAME] [--gzip_level=1..9] [--digest_out=FILE]\n"
      "Writes an OCI image layout (oci-layout, index.json, blobs/sha256/) to DIR.");
  absl::FlagsUsageConfig usage;  // --help lists this file's flags (absl's default looks for
  usage.contains_help_flags = [](absl::string_view file) { return file == __FILE__; };
  usage.contains_helpshort_flags = usage.contains_help_flags;  // kiln-oci.cc)
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> args = kiln::ParseCommandLineWithRepeated(
      argc, argv,
      {&FLAGS_layer, &FLAGS_entrypoint, &FLAGS_cmd, &FLAGS_env, &FLAGS_label, &FLAGS_annotation});
  if (args.size() > 1) {
    std::fprintf(stderr, "kiln-oci: unexpected argument %s (see --help)\n", args[1]);
    return 2;
  }
  kiln::images::ImageSpec spec;
  std::vector<kiln::images::LayerInput> layers;
  const std::string out = absl::GetFlag(FLAGS_out);
  const std::string digest_out = absl::GetFlag(FLAGS_digest_out);
  for (const std::string& value : absl::GetFlag(FLAGS_layer)) {
    size_t eq = value.find('=');
    layers.push_back({value.substr(0, eq), eq == std::string::npos ? "" : value.substr(eq + 1)});
  }
  spec.entrypoint = absl::GetFlag(FLAGS_entrypoint);
  spec.cmd = absl::GetFlag(FLAGS_cmd);
  spec.env = absl::GetFlag(FLAGS_env);
  for (const auto& [flag, values, dst] :
       {std::tuple{"--label", absl::GetFlag(FLAGS_label), &spec.labels},
        std::tuple{"--annotation", absl::GetFlag(FLAGS_annotation), &spec.annotations}}) {
    for (const std::string& value : values) {
      std::string k, v;
      if (!SplitKv(value, &k, &v)) {
        std::fprintf(stderr, "kiln-oci: %s=%s: want KEY=value\n", flag, value.c_str());
        return 2;
      }
      (*dst)[k] = v;
    }
  }
  spec.working_dir = absl::GetFlag(FLAGS_workdir);
  spec.user = absl::GetFlag(FLAGS_user);
  spec.created = absl::GetFlag(FLAGS_created);
  spec.ref_name = absl::GetFlag(FLAGS_ref_name);
  spec.gzip_level = absl::GetFlag(FLAGS_gzip_level);
  if (out.empty() || layers.empty()) {
    std::fprintf(stderr, "kiln-oci: --out and at least one --layer are required (see --help)\n");
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
