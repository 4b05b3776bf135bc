// File: third_party/absl_ext/repeated_flag.h
// -----------------------------------------------------------------------------
//
// Repeatable absl flags. abseil 20220623 has none: a std::vector<std::string> flag splits its
// value on commas, and a second occurrence replaces the first. ParseCommandLineWithRepeated()
// is absl::ParseCommandLine() for a binary some of whose std::vector<std::string> flags may be
// given more than once: every occurrence of those adds one value, as written (no splitting on
// commas: `--secret id=a,src=f --secret id=b,src=g` is two values). Everything else -- the
// other flags, `--help`, unknown flags, errors, exit codes -- is absl's own.
//
// Example:
//
//   ABSL_FLAG(std::vector<std::string>, layer, {}, "PATH[=NOTE] of a layer tar (repeatable)");
//   ...
//   std::vector<char*> args = kiln::ParseCommandLineWithRepeated(argc, argv, {&FLAGS_layer});
//   for (const std::string& l : absl::GetFlag(FLAGS_layer)) ...
//
// An occurrence is `--NAME=VALUE` or `--NAME VALUE` (also with one dash, as absl accepts);
// `--NAME` as the last argument is left to absl, which reports the missing value. Arguments
// after `--` are positional and not looked at. Caveat of any pre-pass: the value of another
// flag given in the separate form (`--other --NAME=x`) is taken for an occurrence of NAME; use
// `--other=VALUE` for values that begin with a dash.
#ifndef KILN_THIRD_PARTY_ABSL_EXT_REPEATED_FLAG_H_
#define KILN_THIRD_PARTY_ABSL_EXT_REPEATED_FLAG_H_

#include <initializer_list>
#include <string>
#include <vector>

#include "absl/flags/flag.h"

namespace kiln {

// RepeatedFlag: a flag ParseCommandLineWithRepeated() collects; declare it with
// ABSL_FLAG(std::vector<std::string>, ...).
using RepeatedFlag = absl::Flag<std::vector<std::string>>;

// ParseCommandLineWithRepeated(argc, argv, repeated): collects every occurrence of the flags in
// `repeated` (in command-line order), parses the remaining arguments with
// absl::ParseCommandLine (which exits on --help and on errors, as it does everywhere), then
// sets each repeated flag that was given to its values. Returns absl's positional arguments
// (argv[0] first). A repeated flag not given keeps its default.
std::vector<char*> ParseCommandLineWithRepeated(int argc, char** argv,
                                                std::initializer_list<RepeatedFlag*> repeated);

}  // namespace kiln

#endif  // KILN_THIRD_PARTY_ABSL_EXT_REPEATED_FLAG_H_
