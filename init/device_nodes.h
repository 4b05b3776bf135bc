// File: init/device_nodes.h
// -----------------------------------------------------------------------------
//
// Device nodes init makes beyond what devtmpfs gives: a table of DeviceNode rows (pure data)
// applied by CreateDeviceNodes (the thin executor over Sys). Today one row:
//
//   /dev/net/tun   char 10:200   0666   the TUN/TAP clone device. slirp4netns, the network
//                                       of rootless BuildKit's user namespace (rootlesskit
//                                       --net=slirp4netns), opens it as uid 1000. The `tun`
//                                       module (in the initrd's modules.load) makes devtmpfs
//                                       create the node, but 0600 root (the misc device sets
//                                       no mode), which uid 1000 cannot open.
//
// Init runs this after loading the modules and before the root switch (which binds /dev into
// the new root). A node that already exists (devtmpfs made it) is checked, not replaced: it
// must be a character device with the row's major:minor; then its mode is set exactly.
//
// Example (init/pid1.cc):
//
//   RETURN_IF_ERROR(CreateDeviceNodes(sys, console, BaseDeviceNodes()));
//   // console: "KILN-INIT: step=devices node=/dev/net/tun char=10:200 mode=0666"
#ifndef KILN_INIT_DEVICE_NODES_H_
#define KILN_INIT_DEVICE_NODES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "init/console.h"
#include "init/syscalls.h"

namespace kiln::init {

// DeviceNode: one character device node init guarantees.
struct DeviceNode {
  std::string path;    // absolute; its parent is created (0755) if missing
  uint32_t major = 0;
  uint32_t minor = 0;
  uint32_t mode = 0;   // exact permission bits after CreateDeviceNodes, e.g. 0666

  bool operator==(const DeviceNode&) const = default;
};

// BaseDeviceNodes: the rows above (/dev/net/tun, char 10:200, 0666).
std::vector<DeviceNode> BaseDeviceNodes();

// CreateDeviceNodes: for each row in order: MkdirAll(parent, 0755); MknodChar (ALREADY_EXISTS
// is fine); Stat: it must be a character device with major:minor, else FAILED_PRECONDITION
// naming what is there; Chmod(mode); print "step=devices node=<path> char=<maj>:<min>
// mode=<octal>" (with " existed=yes" if it was there already). Returns the first error (a
// PosixError of the failing call, or that FAILED_PRECONDITION).
absl::Status CreateDeviceNodes(Sys& sys, Console& console, const std::vector<DeviceNode>& nodes);

}  // namespace kiln::init

#endif  // KILN_INIT_DEVICE_NODES_H_
