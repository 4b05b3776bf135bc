// File: images/tool/modules.cc (see modules.h)
#include "images/tool/modules.h"

#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kiln::images {

ModuleSet MergeProbeOrders(const std::vector<std::vector<std::string>>& orders) {
  ModuleSet set;
  std::set<std::string> seen;
  for (const auto& order : orders) {
    for (const std::string& p : order) {
      if (seen.insert(p).second) set.load_order.push_back(p);
    }
  }
  return set;
}

std::string ModulesLoadText(absl::string_view kernel_release, const ModuleSet& set) {
  std::string out;
  for (const std::string& p : set.load_order) {
    absl::StrAppend(&out, "/lib/modules/", kernel_release, "/", p, "\n");
  }
  return out;
}

absl::StatusOr<std::string> FilterModulesDep(absl::string_view modules_dep, const ModuleSet& set) {
  std::map<std::string, std::string> lines;  // module path -> its line
  const std::set<std::string> wanted(set.load_order.begin(), set.load_order.end());
  for (absl::string_view line : absl::StrSplit(modules_dep, '\n', absl::SkipWhitespace())) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("modules.dep: line without ':': \"", line, "\""));
    }
    std::string mod(line.substr(0, colon));
    if (!wanted.count(mod)) continue;
    for (absl::string_view dep : absl::StrSplit(line.substr(colon + 1), ' ', absl::SkipWhitespace())) {
      if (!wanted.count(std::string(dep))) {
        return absl::FailedPreconditionError(absl::StrCat(
            "modules.dep: ", mod, " depends on ", dep, ", which is not in the module set"));
      }
    }
    lines[mod] = std::string(absl::StripTrailingAsciiWhitespace(line));
  }
  std::string out;
  for (const std::string& p : set.load_order) {
    auto it = lines.find(p);
    if (it == lines.end()) {
      return absl::NotFoundError(absl::StrCat("modules.dep: no line for ", p));
    }
    absl::StrAppend(&out, it->second, "\n");
  }
  return out;
}

absl::Status CheckModuleName(absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat("bad module name \"", name, "\" (length)"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("bad module name \"", name, "\": want [A-Za-z0-9_-], not a path"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kiln::images
