// File: agent/fuzz/context_tar_fuzzer.cc
// libFuzzer target for runner::ExtractContextTar (context_tar.h), the validator/extractor of
// the host's build context tar. The input is the tar file (any compression libarchive
// reads). It is extracted into a fresh dir next to a sentinel dir. Invariants (abort on
// violation):
//   - nothing crashes; a refusal is a non-OK status with a message;
//   - nothing is written outside the destination: the sentinel stays empty and the scratch
//     dir holds only the input, the destination and the sentinel;
//   - after a successful extraction the destination holds only regular files (no
//     setuid/setgid/sticky bits), directories and symlinks, and every symlink resolves
//     (realpath, when its target exists) inside the destination.
#include <archive.h>
#include <archive_entry.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "agent/runner/context_tar.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

const std::string& Scratch() {
  static const std::string dir = [] {
    const char* shm = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : nullptr;
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string t = std::string(shm ? shm : (tmp ? tmp : "/tmp")) + "/kiln-ctx-fuzz-XXXXXX";
    Check(mkdtemp(t.data()) != nullptr);
    return t;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  using namespace kiln::agent::runner;
  const std::string& base = Scratch();
  const std::string tar = base + "/in.tar", dest = base + "/dest", sentinel = base + "/outside";
  std::error_code ec;
  fs::remove_all(dest, ec);
  fs::create_directory(dest);
  fs::create_directory(sentinel, ec);
  std::ofstream(tar, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  ContextTarLimits limits;
  limits.max_entry_bytes = 1 << 20;
  limits.max_total_bytes = 4 << 20;
  limits.max_entries = 2000;
  absl::StatusOr<ContextTarStats> st = ExtractContextTar(tar, dest, limits);
  if (!st.ok()) Check(!st.status().message().empty());
  Check(fs::is_empty(sentinel));
  int top = 0;
  for (const auto& e : fs::directory_iterator(base)) {
    const std::string n = e.path().filename();
    Check(n == "in.tar" || n == "dest" || n == "outside");
    ++top;
  }
  Check(top == 3);
  if (st.ok()) {
    char real_dest[PATH_MAX];
    Check(realpath(dest.c_str(), real_dest) != nullptr);
    const std::string root = std::string(real_dest) + "/";
    for (auto it = fs::recursive_directory_iterator(dest); it != fs::recursive_directory_iterator();
         ++it) {
      struct stat sb;
      Check(lstat(it->path().c_str(), &sb) == 0);
      Check(S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode) || S_ISLNK(sb.st_mode));
      Check((sb.st_mode & 07000) == 0);
      if (S_ISLNK(sb.st_mode)) {
        char r[PATH_MAX];
        if (realpath(it->path().c_str(), r) != nullptr) {
          Check((std::string(r) + "/").compare(0, root.size(), root) == 0);
        }
      }
    }
  }
  fs::remove_all(dest, ec);
  return 0;
}

namespace {

struct E {
  std::string path;
  int type;  // AE_IFREG / AE_IFDIR / AE_IFLNK, or 0 for a hard link
  std::string data_or_target;
  int mode = 0644;
};

std::string Tar(const std::vector<E>& entries, bool gzip = false) {
  std::string out(1 << 20, '\0');
  size_t used = 0;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (gzip) archive_write_add_filter_gzip(a);
  archive_write_open_memory(a, out.data(), out.size(), &used);
  for (const E& e : entries) {
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    if (e.type == 0) {
      archive_entry_set_filetype(ae, AE_IFREG);
      archive_entry_set_hardlink(ae, e.data_or_target.c_str());
    } else {
      archive_entry_set_filetype(ae, e.type);
    }
    archive_entry_set_perm(ae, e.mode);
    if (e.type == AE_IFLNK) archive_entry_set_symlink(ae, e.data_or_target.c_str());
    if (e.type == AE_IFREG) archive_entry_set_size(ae, e.data_or_target.size());
    archive_write_header(a, ae);
    if (e.type == AE_IFREG) archive_write_data(a, e.data_or_target.data(), e.data_or_target.size());
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  return out;
}

}  // namespace

std::vector<std::string> KilnFuzzSeeds() {
  return {
      Tar({{"Dockerfile", AE_IFREG, "FROM busybox\n"}, {"src", AE_IFDIR, ""},
           {"src/a.txt", AE_IFREG, "a"}, {"link", AE_IFLNK, "src/a.txt"},
           {"hard", 0, "src/a.txt"}}),
      Tar({{"up", AE_IFLNK, "../etc"}, {"up/passwd", AE_IFREG, "x"}}),
      Tar({{"a", AE_IFLNK, "b"}, {"b", AE_IFLNK, "a"}}),
      Tar({{"d", AE_IFDIR, ""}, {"d/l", AE_IFLNK, "../d/../x"}, {"x", AE_IFREG, "1", 06755}}),
      Tar({{"abs", AE_IFLNK, "/etc/passwd"}}),
      Tar({{"./x/../y", AE_IFREG, "y"}}),
      Tar({{"f", AE_IFREG, "one"}, {"f", AE_IFREG, "two"}}),
      Tar({{"Dockerfile", AE_IFREG, "FROM x\n"}, {"sub", AE_IFDIR, ""}}, /*gzip=*/true),
      Tar({{"s1", AE_IFLNK, "s2/s2/s2/s2"}, {"s2", AE_IFLNK, "."}}),
  };
}
extern const char kKilnFuzzName[] = "context_tar_fuzzer";
extern const int kKilnFuzzMutations = 3000;
