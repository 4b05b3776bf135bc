// File: agent/ustar.h
// -----------------------------------------------------------------------------
//
// UstarWriter: a minimal, deterministic POSIX ustar (tar) writer, shared by the guest and the
// host: the agent's OCI archive and test base image (agent/runner), the host's build-context
// tar (harness/builder_client) and tests that need a real tar. Every entry has mtime 0,
// uid/gid 0, owner "root", mode 0644 (files, symlinks 0777) or 0755 (directories); names and
// link targets are at most 100 bytes.
// libarchive's tar writers are not used because, linked statically, they drag in every format
// (xar -> libxml2 -> ICU, ~30 MB) into the static agent binary.
//
// Example:
//
//   UstarWriter w;
//   RETURN_IF_ERROR(w.Open("/tmp/x.tar"));
//   RETURN_IF_ERROR(w.Bytes("hello.txt", "hi\n"));
//   RETURN_IF_ERROR(w.Finish());
#ifndef KILN_AGENT_USTAR_H_
#define KILN_AGENT_USTAR_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kiln::agent {

// UstarWriter: see the file comment. Open() once, entries, then Finish(). Errors: the
// errno-derived status of a failed write, Internal for a name longer than 100 bytes.
class UstarWriter {
 public:
  UstarWriter() = default;
  UstarWriter(const UstarWriter&) = delete;
  UstarWriter& operator=(const UstarWriter&) = delete;
  ~UstarWriter();

  // Open(path): creates/truncates the output file (mode 0644).
  absl::Status Open(const std::string& path);

  // Header(name, typeflag, size, link, mode): one 512-byte header block. typeflag is the ustar
  // type ('0' file, '2' symlink, '5' directory); mode -1 picks 0644/0777/0755 by type. The
  // caller writes `size` bytes of data after it (Bytes() and File() do).
  absl::Status Header(const std::string& name, char typeflag, int64_t size,
                      const std::string& link = "", int mode = -1);

  // Dir(name): a directory entry (mode 0755).
  absl::Status Dir(const std::string& name);

  // Symlink(name, target): a symlink entry (target <= 100 bytes, mode 0777).
  absl::Status Symlink(const std::string& name, const std::string& target);

  // Bytes(name, data): a regular file entry (mode 0644) holding `data`.
  absl::Status Bytes(const std::string& name, absl::string_view data);

  // File(name, path, size, mode): an entry with the first `size` bytes of file `path`.
  // DataLoss if the file is shorter than `size` (it shrank while archiving).
  absl::Status File(const std::string& name, const std::string& path, int64_t size,
                    int mode = 0644);

  // Finish(): writes the two zero end blocks, fsyncs and closes.
  absl::Status Finish();

 private:
  absl::Status Pad(int64_t size);
  absl::Status Write(absl::string_view data);

  std::string path_;
  int fd_ = -1;
};

}  // namespace kiln::agent

#endif  // KILN_AGENT_USTAR_H_
