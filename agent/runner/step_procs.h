// File: agent/runner/step_procs.h
// -----------------------------------------------------------------------------
//
// Who runs a RUN step, seen from the agent's (root) side: while a build runs, the runner looks
// for the step's processes (those in a BuildKit step cgroup: /kiln-builder/<id> under the
// rootless daemon's delegated subtree, /docker/buildkit/<id> under the rootful daemon) and
// logs one line per process into the job's log stream:
//
//   kiln: RUN step process 812 (sh): Uid 1000 1000 1000 1000 in cgroup /kiln-builder/x7q...
//
// from /proc/<pid>/status (proc(5): "Uid:\t<real>\t<effective>\t<saved>\t<fs>") and
// /proc/<pid>/cgroup (cgroup v2: "0::<path>"). Measured (images/rootfs/ROOTLESS.md): rootless
// gives Uid 1000 1000 1000 1000 (the container's root is uid 1000 in the guest), rootful
// Uid 0 0 0 0. Parsing is pure; StepWatcher reads /proc.
//
// Example:
//
//   StepWatcher w("/proc", {"/kiln-builder/"}, {"/kiln-builder/daemon"});
//   for (const std::string& line : w.Poll()) Log(line);   // repeatedly while building
#ifndef KILN_AGENT_RUNNER_STEP_PROCS_H_
#define KILN_AGENT_RUNNER_STEP_PROCS_H_

#include <array>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace kiln::agent::runner {

// ProcIds: the four ids of a "Uid:" or "Gid:" line of /proc/<pid>/status.
struct ProcIds {
  std::array<long, 4> ids = {-1, -1, -1, -1};  // real, effective, saved set, file system
};

// ParseStatusIds(status, key): the ids of the `key` ("Uid" or "Gid") line of
// /proc/<pid>/status text; nullopt when the line is missing or not four numbers. Pure.
std::optional<ProcIds> ParseStatusIds(absl::string_view status, absl::string_view key);

// ParseStatusName(status): the "Name:" (comm) of /proc/<pid>/status text, "" if none. Pure.
std::string ParseStatusName(absl::string_view status);

// UnifiedCgroupPath(cgroup): the path of the cgroup v2 line ("0::<path>") of
// /proc/<pid>/cgroup text; nullopt when there is none. Pure.
std::optional<std::string> UnifiedCgroupPath(absl::string_view cgroup);

// IsStepCgroup(path, prefixes, excluded): `path` starts with one of `prefixes` and with none
// of `excluded`. Pure.
bool IsStepCgroup(absl::string_view path, const std::vector<std::string>& prefixes,
                  const std::vector<std::string>& excluded);

// StepLine(pid, comm, uids, cgroup): "kiln: RUN step process <pid> (<comm>): Uid <real>
// <effective> <saved> <fs> in cgroup <cgroup>". Pure.
std::string StepLine(long pid, absl::string_view comm, const ProcIds& uids,
                     absl::string_view cgroup);

// StepWatcher: remembers the pids it reported; Poll() scans <proc_root>/[0-9]* and returns a
// StepLine for each new step process (runc's own processes, comm "runc*", are skipped).
class StepWatcher {
 public:
  StepWatcher(std::string proc_root, std::vector<std::string> prefixes,
              std::vector<std::string> excluded);
  std::vector<std::string> Poll();

 private:
  std::string proc_root_;
  std::vector<std::string> prefixes_;
  std::vector<std::string> excluded_;
  std::set<long> seen_;
};

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_STEP_PROCS_H_
