// File: init/root_switch.h
// -----------------------------------------------------------------------------
//
// The root switch of kiln's init, as a plan (a list of RootOp values, pure data, unit-tested)
// carried out by a thin executor (ExecuteRootSwitch) through Sys.
//
// The plan for kiln.root=/dev/vda kiln.overlay=tmpfs (the default):
//
//   wait-device /dev/vda (bounded: the virtio_blk module was just loaded)
//   mount /dev/vda on /kiln/ro read-only (kiln.rootfstype, default ext4)
//   mount tmpfs on /kiln/rw; mkdir /kiln/rw/upper, /kiln/rw/work   (or: kiln.overlay=<dev>,
//                                                                  an ext4 fs mounted rw)
//   mount overlay on /newroot (lowerdir=/kiln/ro,upperdir=/kiln/rw/upper,workdir=...)
//   bind /proc, /sys, /sys/fs/cgroup (unless kiln.cgroup=off; kiln.cgroup=ro also remounts
//     the bind read-only explicitly), /dev, /dev/pts, /dev/shm, /run into /newroot
//   chdir /newroot; free the initramfs (busybox switch_root's delete_contents, optional);
//   mount . on / with MS_MOVE; chroot .; chdir /
//
// pivot_root(2) is refused on an initramfs (rootfs cannot be unmounted), hence MS_MOVE +
// chroot, as busybox switch_root and systemd do.
//
// Example:
//
//   std::vector<RootOp> plan = RootSwitchPlan(config, RootSwitchOptions{});
//   RETURN_IF_ERROR(ExecuteRootSwitch(sys, console, plan));
#ifndef KILN_INIT_ROOT_SWITCH_H_
#define KILN_INIT_ROOT_SWITCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "init/config.h"
#include "init/console.h"
#include "init/syscalls.h"

namespace kiln::init {

// RootOp: one step of the root switch.
struct RootOp {
  enum Kind {
    kWaitDevice,      // wait until `path` exists, up to `timeout_ms`
    kMkdir,           // MkdirAll(path, 0755)
    kMount,           // Mount(source, path, fstype, flags, data)
    kChdir,           // Chdir(path)
    kFreeInitramfs,   // DeleteTreeSameDevice(path)
    kChroot,          // Chroot(path)
  };
  Kind kind = kMkdir;
  std::string path;          // device, directory, or mount target
  std::string source;        // kMount only
  std::string fstype;        // kMount only
  unsigned long flags = 0;   // kMount only
  std::string data;          // kMount only
  int64_t timeout_ms = 0;    // kWaitDevice only
  bool required = true;      // false: a failure is a warning line and the plan goes on

  bool operator==(const RootOp&) const = default;
};

// RootOpString: a one-line description of `op` for console lines and test messages, e.g.
// "mount overlay overlay on /newroot flags=none data=lowerdir=...".
std::string RootOpString(const RootOp& op);

// RootSwitchOptions: the paths and bounds of the plan (defaults are what PID 1 uses).
struct RootSwitchOptions {
  std::string lower_dir = "/kiln/ro";    // the read-only root disk
  std::string upper_fs_dir = "/kiln/rw"; // the writable fs holding upper/ and work/
  std::string new_root = "/newroot";     // the overlay; becomes "/"
  int64_t device_wait_ms = 10000;        // bound on waiting for a device node
  bool free_initramfs = true;            // delete the initramfs contents before the switch
};

// RootSwitchPlan: the ops that switch to `config.root`. REQUIRES: !config.root.empty().
std::vector<RootOp> RootSwitchPlan(const Config& config, const RootSwitchOptions& options);

// ExecuteRootSwitch: carries out `plan` in order. A failing required op stops it and returns
// its PosixError (NOT_FOUND with ENOENT for a device that did not appear in time); a failing
// optional op prints a warning line (step=root) and the plan goes on. Prints a
// "step=root ..." line per wait and mount op.
absl::Status ExecuteRootSwitch(Sys& sys, Console& console, const std::vector<RootOp>& plan);

}  // namespace kiln::init

#endif  // KILN_INIT_ROOT_SWITCH_H_
