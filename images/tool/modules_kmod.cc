// File: images/tool/modules_kmod.cc (see modules_kmod.h)
#include "images/tool/modules_kmod.h"

#include <libkmod.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "images/tool/modules.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::images {
namespace {

struct ProbeState {
  std::string prefix;  // module_dir + "/"
  ProbeOrder order;
  absl::Status error;
};

// libkmod's print_action callback takes no user data: the probe in progress is published
// here for the duration of one kmod_module_probe_insert_module call.
thread_local ProbeState* current_probe = nullptr;

// The probe's print callback (modprobe's print_action): record instead of loading.
void RecordAction(struct kmod_module* m, bool install, const char* /*options*/) {
  ProbeState* st = current_probe;
  if (st == nullptr) return;
  const char* name = kmod_module_get_name(m);
  if (install) {
    st->error = absl::FailedPreconditionError(
        absl::StrCat("module ", name, " has an install command; not supported"));
    return;
  }
  const char* path = kmod_module_get_path(m);
  if (path == nullptr) {  // builtin (or an alias with no module)
    st->order.builtin.push_back(name);
    return;
  }
  std::string p = path;
  if (!absl::StartsWith(p, st->prefix)) {
    st->error = absl::InternalError(absl::StrCat("module path ", p, " is outside ", st->prefix));
    return;
  }
  st->order.paths.push_back(p.substr(st->prefix.size()));
}

}  // namespace

absl::StatusOr<ProbeOrder> ResolveProbeOrder(const std::string& module_dir,
                                             const std::string& name) {
  if (absl::Status s = CheckModuleName(name); !s.ok()) return s;
  std::string dep_bin = module_dir + "/modules.dep.bin";
  struct stat st;
  if (stat(dep_bin.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        dep_bin, ": ", std::strerror(errno), " (run depmod -b <root> <kver> first)"));
  }
  // No configuration directories: only the module directory's own indexes (including the
  // depmod-generated modules.softdep) count, never the host's /etc/modprobe.d.
  const char* no_config[] = {nullptr};
  struct kmod_ctx* ctx = kmod_new(module_dir.c_str(), no_config);
  if (ctx == nullptr) return absl::InternalError(absl::StrCat("kmod_new(", module_dir, ") failed"));
  kmod_set_log_priority(ctx, 0);
  struct kmod_list* list = nullptr;
  int r = kmod_module_new_from_lookup(ctx, name.c_str(), &list);
  if (r < 0) {
    kmod_unref(ctx);
    return kiln::PosixError(-r, "kmod lookup", name);
  }
  if (list == nullptr) {
    kmod_unref(ctx);
    return absl::NotFoundError(absl::StrCat("module \"", name, "\" not found in ", module_dir));
  }
  ProbeState state;
  // libkmod makes the directory absolute against the working directory (without resolving
  // symlinks) and reports module paths below it; do the same to strip the prefix.
  std::string abs_dir = module_dir;
  if (abs_dir.empty() || abs_dir[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd)) == nullptr) return kiln::PosixError(errno, "getcwd");
    abs_dir = absl::StrCat(cwd, "/", module_dir);
  }
  while (abs_dir.size() > 1 && abs_dir.back() == '/') abs_dir.pop_back();
  state.prefix = abs_dir + "/";
  struct kmod_list* it;
  kmod_list_foreach(it, list) {
    struct kmod_module* m = kmod_module_get_module(it);
    current_probe = &state;
    r = kmod_module_probe_insert_module(
        m, KMOD_PROBE_DRY_RUN | KMOD_PROBE_IGNORE_LOADED | KMOD_PROBE_IGNORE_COMMAND, nullptr,
        nullptr, nullptr, RecordAction);
    current_probe = nullptr;
    kmod_module_unref(m);
    if (r < 0) {
      kmod_module_unref_list(list);
      kmod_unref(ctx);
      return kiln::PosixError(-r, "kmod dry-run probe", name);
    }
  }
  kmod_module_unref_list(list);
  kmod_unref(ctx);
  if (!state.error.ok()) return state.error;
  if (state.order.paths.empty() && state.order.builtin.empty()) {
    return absl::NotFoundError(absl::StrCat("module \"", name, "\" resolves to nothing"));
  }
  return state.order;
}

}  // namespace kiln::images
