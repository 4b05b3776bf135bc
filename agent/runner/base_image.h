// File: agent/runner/base_image.h
// -----------------------------------------------------------------------------
//
// A tiny base image without a registry: a one-layer docker-archive holding a static busybox
// (/bin/busybox of Debian's busybox-static) and applet symlinks, loadable by dockerd with
// POST /images/load (BuildSpec::preload_images). Used by the runner's integration tests, the
// kiln-build CLI (--make-busybox-image) and the harness's VM build scenarios.
//
// Example:
//
//   ASSIGN_OR_RETURN(std::string id, WriteBusyboxDockerArchive("/bin/busybox",
//                                                              "kiln-busybox:1", "/w/bb.tar"));
#ifndef KILN_AGENT_RUNNER_BASE_IMAGE_H_
#define KILN_AGENT_RUNNER_BASE_IMAGE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::agent::runner {

// kBusyboxApplets: the applets linked in /bin (sh, cat, sha256sum, echo, ls, env, base64, od,
// hexdump, grep, true, false, test, mkdir, rm, sleep, wc, head, tail, printf, id, stat).
extern const char* const kBusyboxApplets[];

// WriteBusyboxDockerArchive(busybox, tag, out_path): writes the docker-archive (manifest.json
// with RepoTags [tag], the config, one uncompressed layer: bin/busybox 0755, bin/<applet>
// symlinks, tmp/, run/, etc/passwd with root). Deterministic for a given busybox binary.
// Returns the image config digest ("sha256:..."), which is the image ID dockerd reports.
// NotFound when `busybox` is missing; errno-derived codes for file errors.
absl::StatusOr<std::string> WriteBusyboxDockerArchive(const std::string& busybox,
                                                      absl::string_view tag,
                                                      const std::string& out_path);

}  // namespace kiln::agent::runner

#endif  // KILN_AGENT_RUNNER_BASE_IMAGE_H_
