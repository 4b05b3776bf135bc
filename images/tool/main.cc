// File: images/tool/main.cc
// -----------------------------------------------------------------------------
//
// kiln-image: kiln's image tool, called by the Starlark rules of images/defs.bzl (one action
// per target) and usable by hand. Each subcommand is a row of Commands() with the absl flags
// it takes (parsed by RunCommand; a flag of another subcommand is an error); `kiln-image
// --help` lists them, `kiln-image <command> --help` describes one (exit 0). Usage errors
// (unknown command or flag, missing or bad value: INVALID_ARGUMENT) exit 2, other errors 1.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "images/tool/commands.h"

namespace {

using kiln::images::Command;

void PrintUsage(FILE* f) {
  std::fprintf(f,
               "usage: kiln-image <command> [flags]\n\n"
               "kiln's deterministic image tool (archives, kernel, modules).\n\ncommands:\n");
  for (const Command& c : kiln::images::Commands()) {
    std::fprintf(f, "  %-16s %s\n", c.name, c.summary);
  }
  std::fprintf(f, "\n`kiln-image <command> --help` describes a command's flags.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintUsage(stdout);
    return 0;
  }
  std::vector<std::string> rest(argv + 2, argv + argc);
  for (const Command& c : kiln::images::Commands()) {
    if (name != c.name) continue;
    bool help = false;
    absl::Status s = kiln::images::RunCommand(c, rest, &help);
    if (help) {
      std::printf("%s", kiln::images::CommandHelp(c).c_str());
      return 0;
    }
    if (!s.ok()) {
      std::fprintf(stderr, "kiln-image %s: %s\n", c.name, s.ToString().c_str());
      return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
    }
    return 0;
  }
  std::fprintf(stderr, "kiln-image: unknown command \"%s\"\n\n", name.c_str());
  PrintUsage(stderr);
  return 2;
}
