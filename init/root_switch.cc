// File: init/root_switch.cc
#include "init/root_switch.h"

#include <errno.h>
#include <sys/mount.h>

#include "absl/strings/str_cat.h"
#include "init/mount_plan.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::init {
namespace {

RootOp Mkdir(absl::string_view path) {
  RootOp op;
  op.kind = RootOp::kMkdir;
  op.path = std::string(path);
  return op;
}

RootOp Mount(absl::string_view source, absl::string_view target, absl::string_view fstype,
             unsigned long flags, absl::string_view data, bool required = true) {
  RootOp op;
  op.kind = RootOp::kMount;
  op.source = std::string(source);
  op.path = std::string(target);
  op.fstype = std::string(fstype);
  op.flags = flags;
  op.data = std::string(data);
  op.required = required;
  return op;
}

RootOp Simple(RootOp::Kind kind, absl::string_view path, bool required = true) {
  RootOp op;
  op.kind = kind;
  op.path = std::string(path);
  op.required = required;
  return op;
}

RootOp WaitDevice(absl::string_view path, int64_t timeout_ms) {
  RootOp op = Simple(RootOp::kWaitDevice, path);
  op.timeout_ms = timeout_ms;
  return op;
}

}  // namespace

std::string RootOpString(const RootOp& op) {
  switch (op.kind) {
    case RootOp::kWaitDevice:
      return absl::StrCat("wait-device ", op.path, " timeout_ms=", op.timeout_ms);
    case RootOp::kMkdir:
      return absl::StrCat("mkdir ", op.path);
    case RootOp::kMount:
      return absl::StrCat("mount ", op.fstype.empty() ? "-" : op.fstype, " ",
                          op.source.empty() ? "-" : op.source, " on ", op.path,
                          " flags=", FlagsString(op.flags),
                          op.data.empty() ? "" : " data=", op.data);
    case RootOp::kChdir:
      return absl::StrCat("chdir ", op.path);
    case RootOp::kFreeInitramfs:
      return absl::StrCat("free-initramfs ", op.path);
    case RootOp::kChroot:
      return absl::StrCat("chroot ", op.path);
  }
  return "?";
}

std::vector<RootOp> RootSwitchPlan(const Config& config, const RootSwitchOptions& o) {
  const bool overlay_on_disk = config.overlay != kOverlayTmpfs;
  std::vector<RootOp> plan;
  plan.push_back(WaitDevice(config.root, o.device_wait_ms));
  if (overlay_on_disk) plan.push_back(WaitDevice(config.overlay, o.device_wait_ms));

  // The read-only lower layer.
  plan.push_back(Mkdir(o.lower_dir));
  plan.push_back(Mount(config.root, o.lower_dir, config.rootfstype, MS_RDONLY, ""));

  // The writable upper layer: tmpfs, or an ext4 fs on a second disk.
  plan.push_back(Mkdir(o.upper_fs_dir));
  if (overlay_on_disk) {
    plan.push_back(Mount(config.overlay, o.upper_fs_dir, "ext4", MS_NOATIME, ""));
  } else {
    plan.push_back(Mount("kiln-rw", o.upper_fs_dir, "tmpfs", MS_NOATIME, "mode=0755"));
  }
  const std::string upper = absl::StrCat(o.upper_fs_dir, "/upper");
  const std::string work = absl::StrCat(o.upper_fs_dir, "/work");
  plan.push_back(Mkdir(upper));
  plan.push_back(Mkdir(work));

  // The overlay that becomes "/".
  plan.push_back(Mkdir(o.new_root));
  plan.push_back(Mount("overlay", o.new_root, "overlay", 0,
                       absl::StrCat("lowerdir=", o.lower_dir, ",upperdir=", upper,
                                    ",workdir=", work)));

  // The API file systems, bound into the new root.
  auto bind = [&](absl::string_view dir, bool required) {
    const std::string target = absl::StrCat(o.new_root, dir);
    plan.push_back(Mkdir(target));
    plan.push_back(Mount(dir, target, "", MS_BIND, "", required));
  };
  bind("/proc", true);
  bind("/sys", true);
  if (config.cgroup != CgroupPolicy::kOff) {
    // Not required: init's own cgroup2 mount may have failed (already a warning).
    bind(kCgroupMountPoint, false);
    if (config.cgroup == CgroupPolicy::kReadOnly) {
      // A bind mount does not take MS_RDONLY from its flags: remount the bind read-only.
      // This one is required: an untrusted workload must never get a writable cgroupfs.
      plan.push_back(Mount("", absl::StrCat(o.new_root, kCgroupMountPoint), "",
                           MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                           ""));
    }
  }
  bind("/dev", true);
  bind("/dev/pts", true);
  bind("/dev/shm", true);
  bind("/run", true);

  // switch_root: chdir, free the initramfs, move the new root onto "/", chroot.
  plan.push_back(Simple(RootOp::kChdir, o.new_root));
  if (o.free_initramfs) plan.push_back(Simple(RootOp::kFreeInitramfs, "/", false));
  plan.push_back(Mount(".", "/", "", MS_MOVE, ""));
  plan.push_back(Simple(RootOp::kChroot, "."));
  plan.push_back(Simple(RootOp::kChdir, "/"));
  return plan;
}

absl::Status ExecuteRootSwitch(Sys& sys, Console& console, const std::vector<RootOp>& plan) {
  for (const RootOp& op : plan) {
    absl::Status s;
    switch (op.kind) {
      case RootOp::kWaitDevice: {
        const int64_t start = sys.BoottimeMs();
        bool found = sys.Exists(op.path);
        while (!found && sys.BoottimeMs() - start < op.timeout_ms) {
          sys.SleepMs(5);
          found = sys.Exists(op.path);
        }
        if (found) {
          console.Step("root", absl::StrCat("device=", op.path,
                                            " waited_ms=", sys.BoottimeMs() - start));
        } else {
          s = PosixError(ENOENT, "wait for device",
                         absl::StrCat(op.path, " (", op.timeout_ms, " ms)"));
        }
        break;
      }
      case RootOp::kMkdir:
        s = sys.MkdirAll(op.path, 0755);
        break;
      case RootOp::kMount:
        s = sys.Mount(op.source, op.path, op.fstype, op.flags, op.data);
        if (s.ok()) console.Step("root", RootOpString(op));
        break;
      case RootOp::kChdir:
        s = sys.Chdir(op.path);
        break;
      case RootOp::kFreeInitramfs:
        s = sys.DeleteTreeSameDevice(op.path);
        break;
      case RootOp::kChroot:
        s = sys.Chroot(op.path);
        break;
    }
    if (s.ok()) continue;
    if (op.required) return s;
    console.Warning("root", s);
  }
  return absl::OkStatus();
}

}  // namespace kiln::init
