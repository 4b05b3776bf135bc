// File: images/tool/commands.h
// -----------------------------------------------------------------------------
//
// The subcommands of kiln-image, as a table: each row names the command, documents its flags
// and runs it on the arguments after the command name. Each Run* function parses its flags
// (images/tool/args.h), reads its inputs, calls the pure library (bzimage.h, archive.h,
// manifest.h, modules.h) and writes its outputs.
//
// Example:
//   for (const Command& c : Commands()) if (c.name == "cpio"s) return c.run(args);
#ifndef KILN_IMAGES_TOOL_COMMANDS_H_
#define KILN_IMAGES_TOOL_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace kiln::images {

// Command: one kiln-image subcommand. `run` returns INVALID_ARGUMENT for bad flags, and the
// library's codes otherwise.
struct Command {
  const char* name;
  const char* summary;  // one line for `kiln-image --help`
  const char* usage;    // flags synopsis
  const char* help;     // paragraph for `kiln-image <name> --help`
  absl::Status (*run)(const std::vector<std::string>& args);
};

// Commands(): every subcommand, in --help order.
const std::vector<Command>& Commands();

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_COMMANDS_H_
