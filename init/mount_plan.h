// File: init/mount_plan.h
// -----------------------------------------------------------------------------
//
// The mount plan of kiln's init: a table of MountRow {fstype, source, target, flags, data}
// applied in one loop by ApplyMounts (model: Kata agent mount.rs INIT_ROOTFS_MOUNTS /
// general_mount / get_cgroup_mounts). The rows are pure data, unit-tested per policy; the
// executor only calls Sys.
//
// PID 1 applies BaseMountPlan() first (it needs /proc to read the cmdline, /dev for the
// console), then parses the cmdline, then applies CgroupMountFor(config.cgroup).
//
// Example:
//
//   RETURN_IF_ERROR(ApplyMounts(sys, console, BaseMountPlan()));
//   if (auto row = CgroupMountFor(CgroupPolicy::kReadOnly)) {
//     RETURN_IF_ERROR(ApplyMounts(sys, console, {*row}));   // a failure is only a warning
//   }
#ifndef KILN_INIT_MOUNT_PLAN_H_
#define KILN_INIT_MOUNT_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "init/cgroup_names.h"
#include "init/config.h"
#include "init/console.h"
#include "init/syscalls.h"

namespace kiln::init {

// kCgroupMountPoint: where the cgroup v2 unified hierarchy is mounted (init/cgroup_names.h).
inline constexpr absl::string_view kCgroupMountPoint = cgroup::kMountPoint;

// MountRow: one mount(2) of the plan.
struct MountRow {
  std::string fstype;        // e.g. "proc", "cgroup2"
  std::string source;        // e.g. "proc"
  std::string target;        // absolute path; created (mode 0755) if missing
  unsigned long flags = 0;   // MS_* flags
  std::string data;          // fs-specific options, e.g. "mode=0755"
  std::string step;          // console step name of this row: "mount" or "cgroup"
  bool required = true;      // false: a failure is a warning line, not an error

  bool operator==(const MountRow&) const = default;
};

// BaseMountPlan: /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run (tmpfs), in that
// order, all required.
std::vector<MountRow> BaseMountPlan();

// CgroupMountFor: the cgroup2 row at /sys/fs/cgroup for `policy`: read-write for kReadWrite,
// MS_RDONLY for kReadOnly (both not required: a failure is a warning), nullopt for kOff.
std::optional<MountRow> CgroupMountFor(CgroupPolicy policy);

// InitMountPlan: BaseMountPlan() followed by CgroupMountFor(config.cgroup), if any.
std::vector<MountRow> InitMountPlan(const Config& config);

// FlagsString: `flags` as a comma-separated list of the MS_* names init uses ("nosuid,nodev,
// noexec,ro,bind,remount,move,rec"), or "none"; for console lines and test messages.
std::string FlagsString(unsigned long flags);

// ApplyMounts: for each row in order: MkdirAll(target, 0755); skip the row (a
// "step=<step> target=... skipped=already-mounted" line) if target is already a mount point;
// else mount it and print "step=<step> fstype=... target=...". A failing required row stops
// the loop and returns its PosixError; a failing optional row prints a warning line
// (step=<row.step>) and the loop goes on.
absl::Status ApplyMounts(Sys& sys, Console& console, const std::vector<MountRow>& rows);

}  // namespace kiln::init

#endif  // KILN_INIT_MOUNT_PLAN_H_
