// File: images/tool/modules_kmod.h
// -----------------------------------------------------------------------------
//
// The libkmod executor of module resolution (modules.h is the pure half). It reads a module
// directory prepared by `depmod -b <root> <kver>` (modules.dep.bin, modules.alias.bin,
// modules.softdep, modules.builtin.bin, ...) and answers what `modprobe --show-depends -d
// <root> -S <kver> -C <none> <name>` prints, without running modprobe: libkmod's dry-run
// probe with KMOD_PROBE_IGNORE_LOADED, so the host's loaded modules and its modprobe.d
// configuration never leak into an image.
//
// Example:
//   ASSIGN_OR_RETURN(ProbeOrder o, ResolveProbeOrder("root/lib/modules/6.1.0-57-cloud-amd64",
//                                                    "erofs"));
//   // o.paths: {"kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/lib/libcrc32c.ko",
//   //           "kernel/fs/erofs/erofs.ko"}
#ifndef KILN_IMAGES_TOOL_MODULES_KMOD_H_
#define KILN_IMAGES_TOOL_MODULES_KMOD_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::images {

// ProbeOrder: what loading one module takes. `paths` are relative to the module directory,
// in insmod order (softdeps and dependencies first); `builtin` names the modules of the
// probe that are built into the kernel (nothing to load).
struct ProbeOrder {
  std::vector<std::string> paths;
  std::vector<std::string> builtin;
};

// ResolveProbeOrder(module_dir, name): the probe order of module or alias `name` in
// `module_dir` (/lib/modules/<kver> of an unpacked kernel, after depmod). Returns
// NOT_FOUND if `name` resolves to no module (neither file nor builtin), INVALID_ARGUMENT for
// a bad name, FAILED_PRECONDITION if the directory has no depmod indexes, INTERNAL for other
// libkmod errors.
absl::StatusOr<ProbeOrder> ResolveProbeOrder(const std::string& module_dir,
                                             const std::string& name);

}  // namespace kiln::images

#endif  // KILN_IMAGES_TOOL_MODULES_KMOD_H_
