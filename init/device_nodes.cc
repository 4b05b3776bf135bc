// File: init/device_nodes.cc
#include "init/device_nodes.h"

#include <sys/stat.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace kiln::init {
namespace {

std::string Octal(uint32_t mode) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%04o", mode);
  return buf;
}

// What: what `info` describes, for the error message.
std::string What(const FileInfo& info) {
  if (S_ISCHR(info.mode)) return absl::StrCat("character device ", info.rdev_major, ":", info.rdev_minor);
  if (S_ISBLK(info.mode)) return absl::StrCat("block device ", info.rdev_major, ":", info.rdev_minor);
  if (S_ISDIR(info.mode)) return "a directory";
  if (S_ISREG(info.mode)) return "a regular file";
  if (S_ISLNK(info.mode)) return "a symlink";
  return absl::StrCat("a file of type ", Octal(info.mode & S_IFMT));
}

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

}  // namespace

std::vector<DeviceNode> BaseDeviceNodes() {
  return {
      {"/dev/net/tun", 10, 200, 0666},
  };
}

absl::Status CreateDeviceNodes(Sys& sys, Console& console,
                               const std::vector<DeviceNode>& nodes) {
  for (const DeviceNode& node : nodes) {
    if (absl::Status s = sys.MkdirAll(Parent(node.path), 0755); !s.ok()) return s;
    absl::Status made = sys.MknodChar(node.path, node.major, node.minor, node.mode);
    bool existed = absl::IsAlreadyExists(made);
    if (!made.ok() && !existed) return made;
    absl::StatusOr<FileInfo> info = sys.Stat(node.path);
    if (!info.ok()) return info.status();
    if (!S_ISCHR(info->mode) || info->rdev_major != node.major ||
        info->rdev_minor != node.minor) {
      return absl::FailedPreconditionError(absl::StrCat(
          node.path, ": expected a character device ", node.major, ":", node.minor,
          ", found ", What(*info)));
    }
    if (absl::Status s = sys.Chmod(node.path, node.mode); !s.ok()) return s;
    console.Step("devices", absl::StrCat("node=", node.path, " char=", node.major, ":",
                                         node.minor, " mode=", Octal(node.mode & 07777u),
                                         existed ? " existed=yes" : ""));
  }
  return absl::OkStatus();
}

}  // namespace kiln::init
