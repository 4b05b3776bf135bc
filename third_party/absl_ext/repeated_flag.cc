#include "third_party/absl_ext/repeated_flag.h"

#include <map>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace kiln {

std::vector<char*> ParseCommandLineWithRepeated(int argc, char** argv,
                                                std::initializer_list<RepeatedFlag*> repeated) {
  std::map<std::string, RepeatedFlag*, std::less<>> by_name;
  for (RepeatedFlag* f : repeated) by_name[std::string(absl::GetFlagReflectionHandle(*f).Name())] = f;
  std::map<RepeatedFlag*, std::vector<std::string>> given;
  std::vector<char*> rest;
  int i = 0;
  if (argc > 0) rest.push_back(argv[i++]);
  for (; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    absl::string_view name = arg;
    if (!absl::ConsumePrefix(&name, "--") && !absl::ConsumePrefix(&name, "-")) {
      rest.push_back(argv[i]);
      continue;
    }
    const size_t eq = name.find('=');
    auto it = by_name.find(name.substr(0, eq));
    if (it == by_name.end()) {
      rest.push_back(argv[i]);
      continue;
    }
    if (eq != absl::string_view::npos) {
      given[it->second].emplace_back(name.substr(eq + 1));
    } else if (i + 1 < argc) {
      given[it->second].emplace_back(argv[++i]);
    } else {
      rest.push_back(argv[i]);  // no value: absl says so
    }
  }
  for (; i < argc; ++i) rest.push_back(argv[i]);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(rest.size()), rest.data());
  for (auto& [flag, values] : given) absl::SetFlag(flag, values);
  return positional;
}

}  // namespace kiln
