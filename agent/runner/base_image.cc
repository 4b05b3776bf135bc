#include "agent/runner/base_image.h"

#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "agent/ustar.h"
#include "images/oci/digest.h"
#include "images/oci/image.h"
#include "nlohmann/json.hpp"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {

const char* const kBusyboxApplets[] = {
    "sh",   "cat",  "sha256sum", "echo", "ls",    "env",  "base64", "od",   "hexdump", "grep",
    "true", "false", "test",     "mkdir", "rm",   "sleep", "wc",    "head", "tail",    "printf",
    "id",   "stat", nullptr};

absl::StatusOr<std::string> WriteBusyboxDockerArchive(const std::string& busybox,
                                                      absl::string_view tag,
                                                      const std::string& out_path) {
  struct stat st;
  if (stat(busybox.c_str(), &st) != 0) return PosixError(errno, "stat busybox", busybox);
  const std::string layer_path = out_path + ".layer.tmp";
  {
    UstarWriter w;
    absl::Status s = w.Open(layer_path);
    for (const char* d : {"bin/", "etc/", "run/", "tmp/"}) {
      if (s.ok()) s = w.Header(d, '5', 0, "", std::string(d) == "tmp/" ? 01777 : 0755);
    }
    if (s.ok()) s = w.File("bin/busybox", busybox, st.st_size, 0755);
    for (int i = 0; s.ok() && kBusyboxApplets[i] != nullptr; ++i) {
      s = w.Symlink(absl::StrCat("bin/", kBusyboxApplets[i]), "busybox");
    }
    if (s.ok()) s = w.Bytes("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    if (s.ok()) s = w.Bytes("etc/group", "root:x:0:\n");
    if (s.ok()) s = w.Finish();
    if (!s.ok()) {
      unlink(layer_path.c_str());
      return s;
    }
  }
  int64_t layer_size = 0;
  absl::StatusOr<std::string> layer_digest = oci::Sha256FileDigest(layer_path, &layer_size);
  if (!layer_digest.ok()) return layer_digest.status();
  const std::string layer_hex(oci::DigestHex(*layer_digest));
  oci::ImageConfig cfg;
  cfg.env = {"PATH=/bin"};
  cfg.cmd = {"/bin/sh"};
  cfg.diff_ids = {*layer_digest};
  cfg.history = {{cfg.created, "kiln agent/runner base_image: busybox-static"}};
  const std::string config = oci::ImageConfigJson(cfg);
  const std::string config_hex = oci::Sha256Hex(config);
  // The docker-archive's own manifest.json (docker save's format, not an OCI document).
  nlohmann::json manifest = nlohmann::json::array(
      {{{"Config", config_hex + ".json"},
        {"RepoTags", {std::string(tag)}},
        {"Layers", {layer_hex + "/layer.tar"}}}});
  UstarWriter w;
  absl::Status s = w.Open(out_path);
  if (s.ok()) s = w.Dir(layer_hex + "/");
  if (s.ok()) s = w.File(layer_hex + "/layer.tar", layer_path, layer_size);
  if (s.ok()) s = w.Bytes(config_hex + ".json", config);
  if (s.ok()) s = w.Bytes("manifest.json", manifest.dump());
  if (s.ok()) s = w.Finish();
  unlink(layer_path.c_str());
  if (!s.ok()) return s;
  return absl::StrCat(oci::kSha256Prefix, config_hex);
}

}  // namespace kiln::agent::runner
