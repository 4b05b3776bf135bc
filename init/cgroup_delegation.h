// File: init/cgroup_delegation.h
// -----------------------------------------------------------------------------
//
// cgroup v2 delegation by init: with `kiln.delegate=<uid>[:<gid>]` (init/config.h) init makes
// /sys/fs/cgroup/kiln-builder a cgroup that uid:gid may manage, following the kernel's
// cgroup-v2 "Delegation" rules (Documentation/admin-guide/cgroup-v2.rst 2-5; the names and
// the rules in brief: init/cgroup_names.h), as systemd does for `user@<uid>.service` with
// `Delegate=cpu cpuset io memory pids`. The rootless BuildKit daemon of a builder (uid 1000)
// then runs below it: the agent, as root, moves the daemon into a leaf of the subtree, and
// BuildKit creates its step cgroups there (`--cgroup-parent=/kiln-builder/...`).
//
// PlanDelegation is pure (the root's cgroup.controllers text in, CgroupOps out, unit-tested);
// ApplyDelegation is the thin executor over Sys. The plan, in order:
//
//   1. write "+cpu +cpuset +io +memory +pids" (those the root's cgroup.controllers lists) to
//      /sys/fs/cgroup/cgroup.subtree_control: controllers are enabled top-down, so the
//      children of the root, kiln-builder among them, get them;
//   2. mkdir /sys/fs/cgroup/kiln-builder (0755);
//   3. chown uid:gid the directory and its cgroup.procs, cgroup.subtree_control and
//      cgroup.threads, and nothing else (its resource knobs, e.g. memory.max, control the
//      parent's resources and stay root's).
//
// What it does not do: move any process (kiln-builder starts empty; root must move the
// delegatee's first process in, since a move needs write access to cgroup.procs of the common
// ancestor), or enable controllers inside kiln-builder (the delegatee's choice, after it has
// put its processes in leaves: "no internal processes").
//
// Example (init/pid1.cc):
//
//   ASSIGN_OR_RETURN(std::string controllers,
//                    sys.ReadFile("/sys/fs/cgroup/cgroup.controllers"));
//   ASSIGN_OR_RETURN(DelegationPlan plan, PlanDelegation(*config.delegate, controllers));
//   RETURN_IF_ERROR(ApplyDelegation(sys, console, plan));
//   // console: "KILN-INIT: step=delegate path=/sys/fs/cgroup/kiln-builder uid=1000
//   //           gid=1000 controllers=cpu,cpuset,io,memory,pids"
#ifndef KILN_INIT_CGROUP_DELEGATION_H_
#define KILN_INIT_CGROUP_DELEGATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "init/cgroup_names.h"
#include "init/config.h"
#include "init/console.h"
#include "init/syscalls.h"

namespace kiln::init {

// CgroupOp: one file-system operation of a delegation plan.
struct CgroupOp {
  enum Kind { kWrite, kMkdir, kChown };
  Kind kind = kWrite;
  std::string path;
  std::string content;  // kWrite: written with one write(2)
  uint32_t mode = 0;    // kMkdir: permission bits
  uint32_t uid = 0;     // kChown
  uint32_t gid = 0;     // kChown

  bool operator==(const CgroupOp&) const = default;
};

// CgroupOpString: one line for messages and tests, e.g. "write /sys/fs/cgroup/
// cgroup.subtree_control +cpu +pids", "mkdir /sys/fs/cgroup/kiln-builder 0755",
// "chown /sys/fs/cgroup/kiln-builder/cgroup.procs 1000:1000".
std::string CgroupOpString(const CgroupOp& op);

// DelegationPlan: what ApplyDelegation does, and what it reports.
struct DelegationPlan {
  std::string path;                      // the delegated cgroup, e.g. /sys/fs/cgroup/kiln-builder
  CgroupDelegate to;                     // uid:gid it is delegated to
  std::vector<std::string> controllers;  // enabled for it, kDelegatedControllers order
  std::vector<std::string> missing;      // wanted but absent from the root's cgroup.controllers
  std::vector<CgroupOp> ops;             // in order
};

// ParseControllers: the controller names of a cgroup.controllers (or cgroup.subtree_control)
// text: space-separated names on one line, e.g. "cpuset cpu io memory hugetlb pids rdma misc\n".
// Returns INVALID_ARGUMENT for a name that is not [a-z0-9_]+ (not such a file).
absl::StatusOr<std::vector<std::string>> ParseControllers(absl::string_view text);

// PlanDelegation: the plan that delegates <mount_point>/kiln-builder to `to`, enabling those
// of cgroup::kDelegatedControllers that `root_controllers` (the text of the root's
// cgroup.controllers) lists; with none of them listed, no write op (the directory is still
// delegated). Returns INVALID_ARGUMENT for uid 0 (root needs no delegation) or a malformed
// `root_controllers`.
absl::StatusOr<DelegationPlan> PlanDelegation(
    const CgroupDelegate& to, absl::string_view root_controllers,
    absl::string_view mount_point = cgroup::kMountPoint);

// ApplyDelegation: carries out plan.ops in order through `sys` (WriteFile, MkdirAll, Chown);
// the first failure stops it and is returned (a PosixError naming the operation and path,
// e.g. "write \"+cpu\" to /sys/fs/cgroup/cgroup.subtree_control: Device or resource busy").
// On success prints "step=delegate path=<path> uid=<uid> gid=<gid> controllers=<a,b|none>"
// (and " missing=<c,d>" if any wanted controller was absent).
absl::Status ApplyDelegation(Sys& sys, Console& console, const DelegationPlan& plan);

}  // namespace kiln::init

#endif  // KILN_INIT_CGROUP_DELEGATION_H_
