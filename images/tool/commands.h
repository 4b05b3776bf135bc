// File: images/tool/commands.h
// -----------------------------------------------------------------------------
//
// The subcommands of kiln-image, as a table: each row names the command, documents it, lists
// the absl flags it takes (a flag of another subcommand is an error for this one) and runs it
// once main has parsed them (RunCommand: third_party/absl_ext/command_flags.h). Each Run*
// function reads its flags, reads its inputs, calls the pure library (bzimage.h, archive.h,
// manifest.h, modules.h, image_disk.h) and writes its outputs.
//
// Example:
//   for (const Command& c : Commands()) if (c.name == "cpio"s) return RunCommand(c, args);
#ifndef KILN_IMAGES_TOOL_COMMANDS_H_
#define KILN_IMAGES_TOOL_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "third_party/absl_ext/command_flags.h"

namespace kiln::images {

// Command: one kiln-image subcommand. `run` is called with the flags parsed (and set); it
// returns INVALID_ARGUMENT for bad or missing flags, and the library's codes otherwise.
struct Command {
  const char* name;
  const char* summary;  // one line for `kiln-image --help`
  const char* usage;    // flags synopsis
  const char* help;     // paragraph for `kiln-image <name> --help`
  CommandFlagSpec flags;  // the absl flags it takes (command: "kiln-image <name>")
  absl::Status (*run)(const ParsedCommandFlags& flags);
};

// Commands(): every subcommand, in --help order.
const std::vector<Command>& Commands();

// CommandHelp(c): the text of `kiln-image <name> --help`: usage, paragraph, flags (from the
// flags' own help strings).
std::string CommandHelp(const Command& c);

// RunCommand(c, args, help): parses `args` (after the command name) with c.flags and runs c.
// Sets *help and returns OK without running when --help or -h is given. INVALID_ARGUMENT for
// a usage error: a flag c does not take, a missing or bad value, a positional argument.
absl::Status RunCommand(const Command& c, const std::vector<std::string>& args, bool* help);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_COMMANDS_H_
