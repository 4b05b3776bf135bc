// File: images/tool/modules.h
// -----------------------------------------------------------------------------
//
// Kernel module selection for VM images, resolved at image-build time so that the guest init
// only loads a list (there is no modprobe in the guest and libkmod is shared-only).
//
// The resolver (ResolveProbeOrder, in modules_kmod.h) asks libkmod, exactly as
// `modprobe --show-depends` does (dry-run probe, loaded state ignored, no host modprobe.d
// configuration), for the insmod order of each requested module: pre-softdeps, dependencies
// (from modules.dep), the module, post-softdeps. This file holds the pure half: merging the
// per-module orders into one load order and deriving the files that ship in the image.
//
// Example:
//   ModuleSet set = MergeProbeOrders({{"kernel/lib/libcrc32c.ko", "kernel/fs/erofs/erofs.ko"},
//                                     {"kernel/fs/overlayfs/overlay.ko"}});
//   std::string load = ModulesLoadText("6.1.0-57-cloud-amd64", set);
//   // "/lib/modules/6.1.0-57-cloud-amd64/kernel/lib/libcrc32c.ko\n..."
#ifndef KILN_IMAGES_TOOL_MODULES_H_
#define KILN_IMAGES_TOOL_MODULES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::images {

// ModuleSet: module files (paths relative to /lib/modules/<kver>, e.g.
// "kernel/fs/erofs/erofs.ko") in load order, each once.
struct ModuleSet {
  std::vector<std::string> load_order;
};

// MergeProbeOrders(orders): concatenates the per-module probe orders, keeping the first
// occurrence of each path. Every module still comes after its dependencies, because each
// probe order lists them first.
ModuleSet MergeProbeOrders(const std::vector<std::vector<std::string>>& orders);

// ModulesLoadText(kernel_release, set): the guest's /etc/kiln/modules.load: one absolute
// path "/lib/modules/<kernel_release>/<path>" per line, in load order, each line ending in
// "\n" (docs/interfaces.md). Empty for an empty set.
std::string ModulesLoadText(absl::string_view kernel_release, const ModuleSet& set);

// FilterModulesDep(modules_dep, set): the lines of a depmod-generated modules.dep
// ("<path>: <dep> <dep>...") whose module is in `set`, in load order. Returns NOT_FOUND if
// a module of `set` has no line, FAILED_PRECONDITION if a kept line depends on a module
// outside `set` (the set would not load), INVALID_ARGUMENT for a line without ':'.
absl::StatusOr<std::string> FilterModulesDep(absl::string_view modules_dep, const ModuleSet& set);

// CheckModuleName(name): OK for a module name or alias as given on the command line
// ([A-Za-z0-9_-], at most 64 bytes); INVALID_ARGUMENT otherwise (e.g. a path).
absl::Status CheckModuleName(absl::string_view name);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_MODULES_H_
