// File: init/cgroup_names.h
// -----------------------------------------------------------------------------
//
// The names of kiln's cgroup v2 layout, in one place for the two sides that use them: init
// (which mounts cgroup2 and, with `kiln.delegate=<uid>[:<gid>]`, delegates a subtree, see
// init/cgroup_delegation.h) and the builder agent (which moves the rootless BuildKit daemon
// into that subtree and checks the delegation before it starts a build). Header-only, no
// dependencies beyond absl::string_view: `//init:cgroup_names`.
//
// The delegation follows the kernel's cgroup-v2 "Delegation" rules
// (Documentation/admin-guide/cgroup-v2.rst, 2-5 "Delegation": 2-5-1 "Model of Delegation",
// 2-5-2 "Delegation Containment"), the way systemd does it for `user@<uid>.service` with
// `Delegate=cpu cpuset io memory pids`:
//   - the delegatee gets write access to the directory and to its `cgroup.procs`,
//     `cgroup.threads` and `cgroup.subtree_control` (kDelegatedFiles), and to nothing else:
//     the resource knobs in the directory (memory.max, ...) distribute the *parent's*
//     resources and stay root's;
//   - controllers are enabled top-down: the parent (the root cgroup) lists them in its
//     `cgroup.subtree_control` (kDelegatedControllers, those the kernel offers);
//   - moving a process needs write access to `cgroup.procs` of the common ancestor of the
//     source and destination cgroups, so a process in the root cgroup must be moved into the
//     subtree by root; inside the subtree the delegatee moves its own processes;
//   - "no internal processes": a cgroup with controllers enabled in its subtree_control holds
//     no processes, so the delegatee puts its daemon in a leaf (e.g. kiln-builder/daemon)
//     before it enables controllers in kiln-builder/cgroup.subtree_control.
//
// Example (agent side, as root, before dropping to the delegatee):
//
//   std::string leaf = absl::StrCat(kiln::cgroup::kDelegatedPath, "/daemon");
//   // mkdir(leaf), chown it and its kDelegatedFiles to 1000:1000, write the daemon's pid to
//   // <leaf>/cgroup.procs, then start dockerd-rootless.sh with
//   // --cgroup-parent=/kiln-builder/buildkit
#ifndef KILN_INIT_CGROUP_NAMES_H_
#define KILN_INIT_CGROUP_NAMES_H_

#include <array>

#include "absl/strings/string_view.h"

namespace kiln::cgroup {

// kMountPoint: where init mounts the cgroup v2 unified hierarchy (kiln.cgroup=rw|ro).
inline constexpr absl::string_view kMountPoint = "/sys/fs/cgroup";

// kDelegatedName: the child of the root cgroup that init delegates with kiln.delegate.
inline constexpr absl::string_view kDelegatedName = "kiln-builder";

// kDelegatedPath: kMountPoint + "/" + kDelegatedName.
inline constexpr absl::string_view kDelegatedPath = "/sys/fs/cgroup/kiln-builder";

// kDelegatedControllers: the controllers init enables in the root's cgroup.subtree_control
// for the delegated subtree (those of them the kernel lists in the root's
// cgroup.controllers), in this order: what the rootless Docker documentation asks systemd to
// delegate (`Delegate=cpu cpuset io memory pids`).
inline constexpr std::array<absl::string_view, 5> kDelegatedControllers = {
    "cpu", "cpuset", "io", "memory", "pids"};

// kDelegatedFiles: the interface files of a delegated cgroup that the delegatee owns (besides
// the directory itself), per the kernel's "Model of Delegation".
inline constexpr std::array<absl::string_view, 3> kDelegatedFiles = {
    "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"};

// kControllersFile / kSubtreeControlFile / kProcsFile: interface file names of every cgroup.
inline constexpr absl::string_view kControllersFile = "cgroup.controllers";
inline constexpr absl::string_view kSubtreeControlFile = "cgroup.subtree_control";
inline constexpr absl::string_view kProcsFile = "cgroup.procs";

}  // namespace kiln::cgroup

#endif  // KILN_INIT_CGROUP_NAMES_H_
