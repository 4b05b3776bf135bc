// File: init/mount_plan.cc
#include "init/mount_plan.h"

#include <sys/mount.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kiln::init {

std::vector<MountRow> BaseMountPlan() {
  constexpr unsigned long kNoSuidDevExec = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  return {
      {"proc", "proc", "/proc", kNoSuidDevExec, "", "mount", true},
      {"sysfs", "sysfs", "/sys", kNoSuidDevExec, "", "mount", true},
      {"devtmpfs", "devtmpfs", "/dev", MS_NOSUID, "mode=0755", "mount", true},
      {"devpts", "devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666",
       "mount", true},
      {"tmpfs", "shm", "/dev/shm", MS_NOSUID | MS_NODEV, "mode=1777", "mount", true},
      {"tmpfs", "tmpfs", "/run", MS_NOSUID | MS_NODEV, "mode=0755", "mount", true},
  };
}

std::optional<MountRow> CgroupMountFor(CgroupPolicy policy) {
  unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  switch (policy) {
    case CgroupPolicy::kOff:
      return std::nullopt;
    case CgroupPolicy::kReadOnly:
      flags |= MS_RDONLY;
      break;
    case CgroupPolicy::kReadWrite:
      break;
  }
  return MountRow{"cgroup2", "cgroup2", std::string(kCgroupMountPoint), flags, "", "cgroup",
                  false};
}

std::vector<MountRow> InitMountPlan(const Config& config) {
  std::vector<MountRow> rows = BaseMountPlan();
  if (std::optional<MountRow> cg = CgroupMountFor(config.cgroup)) rows.push_back(*cg);
  return rows;
}

std::string FlagsString(unsigned long flags) {
  static constexpr struct {
    unsigned long flag;
    const char* name;
  } kNames[] = {{MS_RDONLY, "ro"},    {MS_NOSUID, "nosuid"},   {MS_NODEV, "nodev"},
                {MS_NOEXEC, "noexec"}, {MS_REMOUNT, "remount"}, {MS_BIND, "bind"},
                {MS_MOVE, "move"},     {MS_REC, "rec"}};
  std::vector<std::string> names;
  for (const auto& n : kNames) {
    if (flags & n.flag) {
      names.push_back(n.name);
      flags &= ~n.flag;
    }
  }
  if (flags != 0) names.push_back(absl::StrCat("0x", absl::Hex(flags)));
  return names.empty() ? "none" : absl::StrJoin(names, ",");
}

absl::Status ApplyMounts(Sys& sys, Console& console, const std::vector<MountRow>& rows) {
  for (const MountRow& row : rows) {
    absl::Status s = sys.MkdirAll(row.target, 0755);
    if (s.ok()) {
      absl::StatusOr<bool> mounted = sys.IsMountPoint(row.target);
      if (mounted.ok() && *mounted) {
        console.Step(row.step, absl::StrCat("target=", row.target, " skipped=already-mounted"));
        continue;
      }
      s = sys.Mount(row.source, row.target, row.fstype, row.flags, row.data);
    }
    if (s.ok()) {
      console.Step(row.step, absl::StrCat("fstype=", row.fstype, " target=", row.target,
                                          " flags=", FlagsString(row.flags)));
      continue;
    }
    if (row.required) return s;
    console.Warning(row.step, s);
  }
  return absl::OkStatus();
}

}  // namespace kiln::init
