// File: init/modules.cc
#include "init/modules.h"

#include <errno.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::init {

absl::StatusOr<std::vector<std::string>> ParseModuleList(absl::string_view text) {
  std::vector<std::string> paths;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    bool has_space = false;
    for (char c : line) has_space |= absl::ascii_isspace(static_cast<unsigned char>(c));
    if (line[0] != '/' || line.size() < 2 || has_space) {
      return absl::InvalidArgumentError(absl::StrCat(
          "modules list line ", line_no, ": \"", line,
          "\": not an absolute module path (one absolute .ko path per line)"));
    }
    paths.emplace_back(line);
  }
  return paths;
}

absl::Status LoadModules(Sys& sys, Console& console, absl::string_view list_path) {
  absl::StatusOr<std::string> text = sys.ReadFile(list_path);
  if (absl::IsNotFound(text.status())) {
    console.Step("modules", absl::StrCat("count=0 list=", list_path, " (absent)"));
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(text.status());
  absl::StatusOr<std::vector<std::string>> paths = ParseModuleList(*text);
  if (!paths.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(list_path, ": ", paths.status().message()));
  }
  for (const std::string& path : *paths) {
    absl::Status s = sys.FinitModule(path);
    if (absl::IsAlreadyExists(s)) {
      console.Step("modules", absl::StrCat("already-loaded=", path));
      continue;
    }
    if (ErrnoOf(s) == ENODEV) {
      // The module's hardware is absent (e.g. crc32c-intel on a CPU without SSE4.2, as
      // under QEMU TCG): the list is resolved at build time and cannot know the CPU.
      console.Warning("modules", s);
      continue;
    }
    RETURN_IF_ERROR(s);
    console.Step("modules", absl::StrCat("loaded=", path));
  }
  console.Step("modules", absl::StrCat("count=", paths->size()));
  return absl::OkStatus();
}

}  // namespace kiln::init
