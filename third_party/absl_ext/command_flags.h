// File: third_party/absl_ext/command_flags.h
// -----------------------------------------------------------------------------
//
// absl flags for a command (or one subcommand of a tool) that must report usage errors as a
// Status instead of exiting. absl::ParseCommandLine (abseil 20220623) accepts every registered
// flag in every binary, exits 1 on an unknown flag or a bad value, and exits 1 after --help.
// kiln-image (one flag set per subcommand, usage errors exit 2) and publish (usage errors exit
// 2, `--dry-run` spellings, a `--version X.Y.Z` value flag) document other contracts, so they
// declare their flags with ABSL_FLAG as usual and parse them with ParseCommandFlags():
//
//   - Only the flags the CommandFlagSpec lists are accepted; any other `--NAME` (another
//     subcommand's flag, an absl built-in such as --flagfile, a typo) is InvalidArgument
//     `unknown argument "--NAME" (CMD takes --a, --b; see --help)` (the list only up to 8
//     flags: `(CMD: see --help)` beyond).
//   - Values are parsed by absl's own marshalling (CommandLineFlag::ParseFrom), so a flag reads
//     the same here as in absl::ParseCommandLine: `--NAME=VALUE`, `--NAME VALUE`, one leading
//     dash as well as two; booleans as `--NAME`, `--noNAME`, `--NAME=true|false`, and (as
//     kiln-image always took them) `--NAME true|false` with the word exactly true or false.
//   - A std::vector<std::string> flag is repeatable: each occurrence adds one value, as
//     written (no splitting on commas), as in repeated_flag.h.
//   - `--help` or `-h` anywhere before `--` stops parsing: `help` is set, nothing else checked.
//   - `--` ends the flags; everything else not starting with `-` is positional (the caller
//     decides whether it takes any).
//   - `dashes`: `--dry-run` is the flag dry_run (both spellings accepted). `aliases`: a spelling
//     for a flag whose absl name differs, e.g. publish's `--version` for the flag
//     publish_version (abseil's usage library already owns the global symbol FLAGS_version, a
//     bool: a flag named `version` would collide with it). An alias target is accepted only
//     through its alias.
//
// The flags are absl's globals: a process parses one command line. Tests wrap each parse in
// an absl::FlagSaver.
//
// Example:
//   ABSL_FLAG(std::string, out, "", "output file");
//   ABSL_FLAG(std::vector<std::string>, module, {}, "module name (repeatable)");
//   ...
//   CommandFlagSpec spec{.command = "kiln-image modules", .flags = {"out", "module"},
//                        .repeated = {&FLAGS_module}};
//   ASSIGN_OR_RETURN(ParsedCommandFlags p, ParseCommandFlags(args, spec));
//   if (p.help) { std::cout << CommandFlagsHelp(spec); return 0; }
//   RETURN_IF_ERROR(p.Require("out"));
//   for (const std::string& m : absl::GetFlag(FLAGS_module)) ...
#ifndef KILN_THIRD_PARTY_ABSL_EXT_COMMAND_FLAGS_H_
#define KILN_THIRD_PARTY_ABSL_EXT_COMMAND_FLAGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "third_party/absl_ext/repeated_flag.h"

namespace kiln {

// CommandFlagSpec: which absl flags one command takes and how users spell them.
struct CommandFlagSpec {
  std::string command;             // for messages: "kiln-image cpio", "publish"
  std::vector<std::string> flags;  // absl names of the flags it takes (each an ABSL_FLAG)
  // repeated: the handles of the std::vector<std::string> flags among `flags` (each must be
  // here): one value per occurrence.
  std::vector<RepeatedFlag*> repeated;
  // aliases: spelling (without dashes) -> absl name, e.g. {"version", "publish_version"}.
  std::map<std::string, std::string> aliases;
  bool dashes = false;  // `-` in a flag name stands for `_` (--dry-run is dry_run)
};

// ParsedCommandFlags: what ParseCommandFlags found besides the flag values (which it set).
struct ParsedCommandFlags {
  std::vector<std::string> positional;
  std::set<std::string, std::less<>> given;  // absl names of the flags given at least once
  bool help = false;                           // --help or -h was given
  std::string command;                         // spec.command, for messages
  std::map<std::string, std::string, std::less<>> spelling;  // absl name -> user's spelling

  // Has(name): whether the flag (absl name) was given.
  bool Has(absl::string_view name) const { return given.find(name) != given.end(); }
  // Require(name): OK if given, else InvalidArgument "missing --<spelling>".
  absl::Status Require(absl::string_view name) const;
};

// ParseCommandFlags(args, spec): parses `args` (without the program or subcommand name) and
// sets the flags given. InvalidArgument for an unknown flag, a flag missing its value (`flag
// --NAME needs a value`), or a value absl cannot parse (naming the flag and absl's reason);
// Internal if spec names a flag that is not registered (a programming error).
absl::StatusOr<ParsedCommandFlags> ParseCommandFlags(const std::vector<std::string>& args,
                                                     const CommandFlagSpec& spec);

// CommandFlagsHelp(spec): one entry per flag of spec, in spec order, from the flags' own
// help strings: "  --NAME=VALUE" (just "  --NAME" for a bool), then "      HELP (default: X)"
// ("(repeatable)" for list flags; no default when it is empty), spelled as the user spells it.
std::string CommandFlagsHelp(const CommandFlagSpec& spec);

}  // namespace kiln

#endif  // KILN_THIRD_PARTY_ABSL_EXT_COMMAND_FLAGS_H_
