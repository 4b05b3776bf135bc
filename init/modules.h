// File: init/modules.h
// -----------------------------------------------------------------------------
//
// Kernel modules: init loads the modules listed in /etc/kiln/modules.load (docs/interfaces.md
// "initrd layout"): absolute paths of uncompressed .ko files, one per line, in load order
// (dependencies and softdeps first), resolved at image build time. Init has no modprobe and
// no libkmod: it only calls finit_module(2) for each path, in order.
//
// File format: one absolute path per line; leading/trailing whitespace is trimmed; empty
// lines and lines starting with '#' are ignored.
//
// Example:
//
//   ASSIGN_OR_RETURN(std::vector<std::string> paths, ParseModuleList(text));
//   RETURN_IF_ERROR(LoadModules(sys, console, kModulesLoadPath));
#ifndef KILN_INIT_MODULES_H_
#define KILN_INIT_MODULES_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "init/console.h"
#include "init/syscalls.h"

namespace kiln::init {

// kModulesLoadPath: where the initrd carries the module list.
inline constexpr absl::string_view kModulesLoadPath = "/etc/kiln/modules.load";

// ParseModuleList: the module paths in `text`, in order. Returns INVALID_ARGUMENT naming the
// line number for a line that is not an absolute path, or that contains whitespace inside.
absl::StatusOr<std::vector<std::string>> ParseModuleList(absl::string_view text);

// LoadModules: reads `list_path` (a missing file means no modules: OK) and loads each module
// with Sys::FinitModule, printing "step=modules loaded=<path>" per module (or
// "already-loaded=<path>" for EEXIST, which is success) and "step=modules count=<n>".
// ENODEV (the module's hardware or CPU feature is absent, e.g. crc32c-intel under QEMU TCG)
// is a warning line, not an error.
// Returns the PosixError of the first read or load failure, or INVALID_ARGUMENT for a
// malformed list.
absl::Status LoadModules(Sys& sys, Console& console, absl::string_view list_path);

}  // namespace kiln::init

#endif  // KILN_INIT_MODULES_H_
