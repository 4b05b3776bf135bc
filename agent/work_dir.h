// File: agent/work_dir.h
// -----------------------------------------------------------------------------
//
// The agent's work dir (AgentOptions::work_dir, default /run/kiln-agent): job inputs and the
// build's state (dockerd's data root) live below it, and every new job clears it. Clearing a
// directory tree as root is dangerous if the path is wrong (a typo'd --work_dir=/) or if
// something is mounted below it (a bind mount of a host dir, an overlay left by a crashed
// dockerd), so:
//   - the agent only clears a dir that holds its marker file kWorkDirMarker, which it writes
//     when it creates the dir (PrepareWorkDir); an existing non-empty dir without the marker
//     is refused;
//   - removal never crosses a mount point: an entry on another file system (st_dev) or that
//     is the root of a mount (statx STATX_ATTR_MOUNT_ROOT) is left in place, with everything
//     below it, and named in the returned error.
//
// Example:
//
//   RETURN_IF_ERROR(PrepareWorkDir("/run/kiln-agent"));
//   RETURN_IF_ERROR(ClearWorkDir("/run/kiln-agent"));   // all but the marker
//   RETURN_IF_ERROR(RemoveTree("/run/kiln-agent/job1"));
#ifndef KILN_AGENT_WORK_DIR_H_
#define KILN_AGENT_WORK_DIR_H_

#include <string>

#include "absl/status/status.h"

namespace kiln::agent {

// kWorkDirMarker: the marker file's name inside the work dir.
inline constexpr char kWorkDirMarker[] = ".kiln-agent-work-dir";

// PrepareWorkDir(dir): creates `dir` (mode 0700; its parent must exist) and the marker if
// `dir` is missing; adopts an existing empty dir (writes the marker). OK if the marker is
// there. FailedPrecondition if `dir` is not a directory (a symlink is refused) or holds
// entries but no marker; the errno-derived status of a failed mkdir/create.
absl::Status PrepareWorkDir(const std::string& dir);

// ClearWorkDir(dir): removes every entry of `dir` except the marker, without crossing mount
// points. FailedPrecondition when `dir` has no marker (nothing is removed then) or when
// entries could not be removed because they are or hold a mount point (the message names
// them; the rest is removed); the errno-derived status of another failure.
absl::Status ClearWorkDir(const std::string& dir);

// RemoveTree(path): removes `path` (a file, a symlink, or a directory and everything below it)
// without crossing mount points (as ClearWorkDir). OK if `path` does not exist.
absl::Status RemoveTree(const std::string& path);

}  // namespace kiln::agent

#endif  // KILN_AGENT_WORK_DIR_H_
