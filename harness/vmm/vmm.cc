// File: harness/vmm/vmm.cc
#include "harness/vmm/vmm.h"

#include <unistd.h>

#include <cerrno>
#include <climits>

#include "absl/strings/str_cat.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-';
}

// Resolve(what, path): `path` made absolute against the current directory, once readable.
absl::Status Resolve(absl::string_view what, std::string& path) {
  if (access(path.c_str(), R_OK) != 0) return PosixError(errno, absl::StrCat("VM ", what), path);
  if (!path.empty() && path[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == nullptr) return PosixError(errno, "getcwd");
    path = absl::StrCat(cwd, "/", path);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VmConfig> ResolveArtifacts(VmConfig config) {
  RETURN_IF_ERROR(Resolve("kernel", config.kernel_path));
  if (!config.initrd_path.empty()) RETURN_IF_ERROR(Resolve("initrd", config.initrd_path));
  for (Disk& d : config.disks) RETURN_IF_ERROR(Resolve("disk", d.path));
  return config;
}

absl::Status ValidateVmConfig(const VmConfig& config) {
  if (config.id.empty() || config.id.size() > 64) {
    return absl::InvalidArgumentError("VmConfig.id: must be 1..64 characters");
  }
  for (char c : config.id) {
    if (!IsIdChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("VmConfig.id \"", config.id, "\": only [A-Za-z0-9._-] allowed"));
    }
  }
  if (config.id == "." || config.id == "..") {
    return absl::InvalidArgumentError("VmConfig.id: must not be . or ..");
  }
  if (config.kernel_path.empty()) return absl::InvalidArgumentError("VmConfig.kernel_path: empty");
  if (config.work_dir.empty()) return absl::InvalidArgumentError("VmConfig.work_dir: empty");
  if (config.vcpus < 1 || config.vcpus > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("VmConfig.vcpus: ", config.vcpus, " not in 1..64"));
  }
  if (config.memory_mib < 64 || config.memory_mib > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("VmConfig.memory_mib: ", config.memory_mib, " not in 64..65536"));
  }
  if (config.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("VmConfig.deadline: must be > 0");
  }
  for (size_t i = 0; i < config.disks.size(); ++i) {
    if (config.disks[i].path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("VmConfig.disks[", i, "].path: empty"));
    }
  }
  if (config.channel) {
    if (config.channel->name.empty()) {
      return absl::InvalidArgumentError("VmConfig.channel.name: empty");
    }
    if (config.channel->host_socket_path.empty()) {
      return absl::InvalidArgumentError("VmConfig.channel.host_socket_path: empty");
    }
    // sun_path is 108 bytes including the NUL.
    if (config.channel->host_socket_path.size() > 107) {
      return absl::InvalidArgumentError(
          absl::StrCat("VmConfig.channel.host_socket_path: longer than 107 bytes: ",
                       config.channel->host_socket_path));
    }
  }
  if (config.control_socket_path.size() > 107) {
    return absl::InvalidArgumentError(absl::StrCat(
        "VmConfig.control_socket_path: longer than 107 bytes: ", config.control_socket_path));
  }
  for (char c : config.cmdline) {
    if (c == '\n' || c == '\0') {
      return absl::InvalidArgumentError("VmConfig.cmdline: contains a newline or NUL");
    }
  }
  return absl::OkStatus();
}

const char* ChannelTransportName(ChannelTransport t) {
  switch (t) {
    case ChannelTransport::kVirtioSerial:
      return "virtio-serial";
    case ChannelTransport::kHybridVsock:
      return "hybrid-vsock";
  }
  return "unknown";
}

absl::StatusOr<ChannelTransport> ParseChannelTransport(absl::string_view name) {
  for (ChannelTransport t : {ChannelTransport::kVirtioSerial, ChannelTransport::kHybridVsock}) {
    if (name == ChannelTransportName(t)) return t;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "channel transport \"", name, "\": must be virtio-serial or hybrid-vsock"));
}

const char* VmExitKindName(VmExit::Kind kind) {
  switch (kind) {
    case VmExit::Kind::kExited:
      return "exited";
    case VmExit::Kind::kSignaled:
      return "signaled";
    case VmExit::Kind::kDeadline:
      return "deadline";
    case VmExit::Kind::kKilled:
      return "killed";
  }
  return "unknown";
}

absl::Status CheckDetachable(const VmConfig& config, bool exited) {
  if (!config.detachable) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM ", config.id, " was not booted detachable (VmConfig::detachable)"));
  }
  if (exited) return absl::FailedPreconditionError(absl::StrCat("VM ", config.id, " has exited"));
  return absl::OkStatus();
}

}  // namespace kiln::harness
