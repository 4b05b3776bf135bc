#include "publish/oci.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include <archive.h>
#include <archive_entry.h>
#include <nlohmann/json.hpp>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::publish {
namespace {

using json = nlohmann::json;

}  // namespace

absl::StatusOr<std::string> AnnotateManifest(
    absl::string_view bytes, const std::map<std::string, std::string>& annotations) {
  json m = json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (!m.is_object()) return absl::InvalidArgumentError("manifest is not a JSON object");
  json& a = m["annotations"];
  if (!a.is_object()) a = json::object();
  for (const auto& [k, v] : annotations) a[k] = v;
  return m.dump();  // nlohmann::json objects are std::map: keys sorted, compact
}

absl::Status ExtractLayoutArchive(const std::string& archive_path, const std::string& dest_dir) {
  struct archive* a = archive_read_new();
  absl::Cleanup free_a = [a] { archive_read_free(a); };
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  if (archive_read_open_filename(a, archive_path.c_str(), 1 << 16) != ARCHIVE_OK)
    return absl::InvalidArgumentError(
        absl::StrCat("open archive ", archive_path, ": ", archive_error_string(a)));
  struct archive_entry* e;
  int rc;
  while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    std::string name = archive_entry_pathname(e);
    while (absl::StartsWith(name, "./")) name = name.substr(2);
    if (name.empty() || name == ".") continue;
    if (name[0] == '/' || name == ".." || absl::StartsWith(name, "../") ||
        absl::StrContains(name, "/../") || absl::EndsWith(name, "/.."))
      return absl::InvalidArgumentError(
          absl::StrCat(archive_path, ": unsafe path \"", name, "\" in archive"));
    std::string path = absl::StrCat(dest_dir, "/", name);
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFDIR) {
      if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return PosixError(errno, "mkdir", path);
      continue;
    }
    if (type != AE_IFREG)
      return absl::InvalidArgumentError(absl::StrCat(
          archive_path, ": \"", name, "\" is not a regular file or directory"));
    // Parent directories may be implicit in the archive.
    for (size_t i = dest_dir.size() + 1; i < path.size(); ++i)
      if (path[i] == '/') {
        std::string dir = path.substr(0, i);
        if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return PosixError(errno, "mkdir", dir);
      }
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return PosixError(errno, "create", path);
    absl::Cleanup close_fd = [fd] { close(fd); };
    if (archive_read_data_into_fd(a, fd) != ARCHIVE_OK)
      return absl::InvalidArgumentError(
          absl::StrCat(archive_path, ": reading \"", name, "\": ", archive_error_string(a)));
  }
  if (rc != ARCHIVE_EOF)
    return absl::InvalidArgumentError(
        absl::StrCat(archive_path, ": ", archive_error_string(a)));
  return absl::OkStatus();
}

std::string Rfc3339FromEpoch(int64_t seconds) {
  time_t t = static_cast<time_t>(seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace kiln::publish
