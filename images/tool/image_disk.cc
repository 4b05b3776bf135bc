// File: images/tool/image_disk.cc (see image_disk.h)
#include "images/tool/image_disk.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/process/process.h"
#include "images/oci/layout.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::images {
namespace {

bool IsUuid(absl::string_view u) {
  if (u.size() != 36) return false;
  for (size_t i = 0; i < u.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? u[i] != '-' : !(absl::ascii_isdigit(u[i]) || (u[i] >= 'a' && u[i] <= 'f')))
      return false;
  }
  return true;
}

int64_t MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t)
      .count();
}

// Run(argv): runs argv[0] (a path, as Bazel passes tools: relative to the working directory)
// with the arguments, stdout/stderr inherited; Internal unless it exits 0.
absl::Status Run(const std::vector<std::string>& argv) {
  process::SpawnOptions o;
  o.argv = argv;
  o.out = process::Stdio::Inherit();
  o.err = process::Stdio::Inherit();
  ASSIGN_OR_RETURN(process::Process p, process::Process::Spawn(o));
  ASSIGN_OR_RETURN(process::ProcessExit e, p.Wait(absl::InfiniteFuture()));
  if (!e.signaled && e.exit_code == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(argv[0], ": ", e.Describe()));
}

}  // namespace

absl::StatusOr<DiskStats> ImageToDisk(const std::string& layout_dir, absl::string_view ref,
                                      const std::string& out, const DiskOptions& options) {
  if (!IsUuid(options.uuid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("uuid \"", options.uuid, "\" is not a lower-case 8-4-4-4-12 UUID"));
  }
  const std::string seed = options.hash_seed.empty() ? options.uuid : options.hash_seed;
  if (!IsUuid(seed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hash seed \"", seed, "\" is not a lower-case 8-4-4-4-12 UUID"));
  }
  if (options.label.size() > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("label \"", options.label, "\" is longer than 16 bytes (ext4's limit)"));
  }
  if (options.mkext4.empty() || options.mke2fs_conf.empty()) {
    return absl::InvalidArgumentError("the paths of mkext4.sh and mke2fs.conf are required");
  }
  DiskStats stats;
  auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(oci::LayoutImage img, oci::ReadImageLayout(layout_dir, ref));
  stats.manifest_digest = img.manifest_digest;

  std::string base = options.work_dir;
  if (base.empty()) {
    const char* t = std::getenv("TMPDIR");
    base = t != nullptr && *t != '\0' ? t : "/tmp";
  }
  std::string tmpl = absl::StrCat(base, "/kiln-image-disk.XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) return PosixError(errno, "mkdtemp", tmpl);
  absl::Cleanup remove = [&tmpl] {
    std::error_code ec;
    std::filesystem::remove_all(tmpl, ec);
  };
  const std::string tree = tmpl + "/root";
  if (mkdir(tree.c_str(), 0755) != 0) return PosixError(errno, "mkdir", tree);
  if (chmod(tree.c_str(), 0755) != 0) return PosixError(errno, "chmod", tree);
  ASSIGN_OR_RETURN(stats.unpack, UnpackImage(img, tree, options.unpack));
  stats.unpack_ms = MsSince(start);

  // mkext4.sh OUT BASE ENTRIES MKE2FS_CONF EPOCH UUID HASH_SEED LABEL HEADROOM_PCT EXTRA_MIB
  const std::string entries = tmpl + "/entries";
  if (FILE* f = fopen(entries.c_str(), "w"); f != nullptr) {
    fclose(f);
  } else {
    return PosixError(errno, "create", entries);
  }
  auto mkfs_start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(Run({options.mkext4, out, tree, entries, options.mke2fs_conf,
                       absl::StrCat(options.epoch), options.uuid, seed, options.label,
                       absl::StrCat(options.headroom_percent), absl::StrCat(options.extra_mib)}));
  stats.mkfs_ms = MsSince(mkfs_start);
  return stats;
}

}  // namespace kiln::images
