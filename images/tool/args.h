// File: images/tool/args.h
// -----------------------------------------------------------------------------
//
// Command-line parsing for kiln-image's subcommands: `--name value`, `--name=value` and
// repeated flags; everything not starting with `--` is a positional argument; `--` ends the
// flags. Pure: no I/O. Each subcommand declares which flags it takes, so a typo is an error
// instead of being ignored.
//
// Example:
//   ASSIGN_OR_RETURN(Args a, ParseArgs({"--out", "x", "--module=a", "--module=b"},
//                                      {"out", "module"}));
//   a.Get("out");   // "x"
//   a.GetAll("module");  // {"a", "b"}
#ifndef KILN_IMAGES_TOOL_ARGS_H_
#define KILN_IMAGES_TOOL_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::images {

// Args: parsed flags (name -> values in command-line order) and positional arguments.
struct Args {
  std::map<std::string, std::vector<std::string>> flags;
  std::vector<std::string> positional;

  // Has(name): whether --name was given at least once.
  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  // Get(name, fallback): the last value of --name, or `fallback` if absent.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // GetAll(name): every value of --name, in order (empty if absent).
  std::vector<std::string> GetAll(const std::string& name) const;
  // Require(name): the last value of --name; INVALID_ARGUMENT "missing --name" if absent.
  absl::StatusOr<std::string> Require(const std::string& name) const;
};

// ParseArgs(argv, known): parses `argv` (without the program and subcommand names).
// Returns INVALID_ARGUMENT for an unknown flag (not in `known`), or a flag missing its value.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv,
                               const std::set<std::string>& known);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_ARGS_H_
