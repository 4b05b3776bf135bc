// File: harness/vmm/vmm.h
// -----------------------------------------------------------------------------
//
// The VMM interface of kiln's harness: what a VM is (VmConfig, pure data), how a backend boots
// one (Vmm::Boot), and what a running VM offers (Vm: wait with a deadline, idempotent kill that
// owns all cleanup, the guest serial log, the VMM process's peak RSS).
//
// One interface, several backends: harness/vmm/qemu.h (QEMU, TCG or KVM) and
// harness/vmm/cloud_hypervisor.h (Cloud Hypervisor, KVM only) behind the same Vmm/Vm; a backend
// says how its channel is spoken (Vmm::channel_transport(), ChannelTransport). Each backend
// turns a VmConfig into "what the VMM is asked to run" with a pure function (QEMU: an argv;
// CH: the vm.create JSON), which is unit-tested without starting anything.
//
// Example:
//
//   VmConfig config;
//   config.id = "cgroup-rw";
//   config.kernel_path = "images/vmlinux";
//   config.initrd_path = "images/initrd.cpio.gz";
//   config.disks.push_back({.path = "testroot.ext4", .read_only = true});
//   config.cmdline = "kiln.root=/dev/vda kiln.cgroup=rw";
//   config.work_dir = "/tmp/vm-cgroup-rw";
//   ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, vmm.Boot(config));
//   ASSIGN_OR_RETURN(VmExit exit, vm->Wait(absl::Seconds(30)));
//   // read vm->serial_log_path(); vm->Kill() (or the destructor) cleans up.
#ifndef KILN_HARNESS_VMM_H_
#define KILN_HARNESS_VMM_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kiln::harness {

// Disk: one block device given to the guest, in order (the first is /dev/vda, the second
// /dev/vdb, ...). `path` is a raw disk image on the host.
struct Disk {
  std::string path;
  bool read_only = true;
};

// ChannelTransport: how the host reaches the guest agent's channel. Both are a unix socket on
// the host; they differ in what happens after connect(2).
//   kVirtioSerial  QEMU: the socket is a virtio-serial chardev; bytes flow at once (the guest
//                  end is the virtio-serial port Channel::name).
//   kHybridVsock   Cloud Hypervisor (docs/vsock.md of cloud-hypervisor): the socket is CH's
//                  vsock muxer; the host sends "CONNECT <port>\n" and reads "OK <n>\n", then
//                  bytes flow to the guest's AF_VSOCK listener on Channel::vsock_port.
enum class ChannelTransport { kVirtioSerial, kHybridVsock };

// ChannelTransportName(t): "virtio-serial" or "hybrid-vsock" (the names in keep records and
// reports). Pure.
const char* ChannelTransportName(ChannelTransport t);

// ParseChannelTransport(name): the inverse of ChannelTransportName. InvalidArgument naming
// the text for anything else. Pure.
absl::StatusOr<ChannelTransport> ParseChannelTransport(absl::string_view name);

// Channel: a host<->guest byte stream. The host side is always a unix socket at
// `host_socket_path` (the VMM listens on it; the harness connects). In the guest it is the
// virtio-serial port named `name` (QEMU: /sys/class/virtio-ports/*/name == name), or AF_VSOCK
// `vsock_port` on guest CID `vsock_cid` for backends with vsock (Cloud Hypervisor; hybrid vsock:
// connect to the unix socket, send "CONNECT <port>\n"). Backends use the fields they support.
struct Channel {
  std::string name;
  std::string host_socket_path;
  uint32_t vsock_cid = 3;
  uint32_t vsock_port = 1024;
};

// VmConfig: everything a VMM is asked to boot. Pure data; validate with ValidateVmConfig().
struct VmConfig {
  // id: short name of the VM, [A-Za-z0-9._-]+; names its work and output directories.
  std::string id;
  // kernel_path: the guest kernel (a PVH ELF vmlinux or a bzImage).
  std::string kernel_path;
  // initrd_path: the initramfs (newc cpio, optionally compressed); empty: none.
  std::string initrd_path;
  std::vector<Disk> disks;
  // cmdline: the caller's part of the kernel command line (kiln.* keys, see
  // docs/interfaces.md). Backends prepend the console/panic keys they always pass.
  std::string cmdline;
  std::optional<Channel> channel;
  int vcpus = 2;
  int memory_mib = 512;
  // deadline: how long the VM may run in total before the harness kills it.
  absl::Duration deadline = absl::Seconds(120);
  // work_dir: host directory (created if missing) for the serial log, sockets, VMM logs.
  std::string work_dir;
  // detachable: the VMM may outlive the harness (no PR_SET_PDEATHSIG) once Vm::Detach() was
  // called, e.g. a kept failed builder (issue 6). While attached it is killed as usual.
  bool detachable = false;
  // Snapshots (issue 12; harness/builder/warm_backend.h). control_socket_path (QEMU only:
  // harness/vmm/qemu.h, harness/vmm/snapshot_qmp.h): the VMM also listens on this unix socket
  // for its control protocol (QMP), which SaveQemuSnapshot uses to pause and save the VM.
  // restore_from: start the guest from this saved VM state, saved from a VM with the same
  // config apart from id, work_dir, the socket paths and deadline, instead of booting it.
  // QEMU: a migration stream file; the guest comes back paused and is resumed by the caller
  // (QMP `cont`, ResumeQemuVm). Cloud Hypervisor: a snapshot directory (SaveChSnapshot);
  // CloudHypervisorVmm::Boot restores it and resumes it (harness/vmm/cloud_hypervisor.h).
  std::string control_socket_path;
  std::string restore_from;
  // memory_file (QEMU only): back the guest RAM with this host file (QEMU memory-backend-file,
  // size memory_mib) instead of anonymous memory. memory_file_shared: true maps it MAP_SHARED
  // (the guest's writes land in the file: the VM that makes a file-mode snapshot); false maps
  // it MAP_PRIVATE (copy-on-write: the guest reads the file's pages, its writes stay in the
  // VMM's own anonymous memory and never reach the file: a VM restored from that snapshot).
  // With restore_from set, a memory_file makes the restore a deferred incoming migration that
  // skips shared RAM (QemuArgv: -incoming defer; ResumeQemuVm(const VmConfig&) starts it).
  std::string memory_file;
  bool memory_file_shared = false;
};

// ValidateVmConfig(config): OkStatus, or InvalidArgument naming the first bad field (empty or
// malformed id, empty kernel_path or work_dir, vcpus outside 1..64, memory_mib outside
// 64..65536, deadline <= 0, a disk with an empty path, a channel without name or socket path,
// a cmdline with a newline or NUL). Does not touch the file system.
absl::Status ValidateVmConfig(const VmConfig& config);

// ResolveArtifacts(config): `config` with kernel_path, initrd_path and every disk path made
// absolute against the current directory (a VMM runs in its own work directory, so a caller
// may pass paths relative to its own, e.g. bazel run's runfiles tree), after checking that
// each is readable. Errors: the errno-derived code (NotFound, PermissionDenied) naming the
// artifact ("VM kernel", "VM initrd", "VM disk") and its path. Every backend's Boot calls it.
absl::StatusOr<VmConfig> ResolveArtifacts(VmConfig config);

// VmExit: how the VMM process ended.
struct VmExit {
  enum class Kind {
    kExited,    // the VMM exited by itself (e.g. the guest powered off) with `exit_code`
    kSignaled,  // the VMM died from signal `signal` that the harness did not send
    kDeadline,  // the harness killed it because the VmConfig deadline passed
    kKilled,    // the harness killed it on request (Kill(), destructor)
  };
  Kind kind = Kind::kExited;
  int exit_code = 0;
  int signal = 0;
  // wall: from Boot() to the VMM's exit.
  absl::Duration wall = absl::ZeroDuration();
  // peak_rss_bytes: the VMM process's peak resident set size (wait4 ru_maxrss), bytes.
  int64_t peak_rss_bytes = 0;
};

// VmExitKindName(kind): "exited", "signaled", "deadline", "killed".
const char* VmExitKindName(VmExit::Kind kind);

// Vm: one running (or finished) VM. Not thread-safe: use from one thread.
class Vm {
 public:
  virtual ~Vm() = default;

  // config(): what this VM was booted with.
  virtual const VmConfig& config() const = 0;

  // Exited(): true once the VMM process has ended (reaped). Never blocks.
  virtual bool Exited() = 0;

  // Wait(timeout): blocks until the VMM exits, `timeout` passes, or the VM's own deadline
  // passes (then the VM is killed and the result has Kind::kDeadline). Returns the exit;
  // DeadlineExceeded if `timeout` passed first (the VM keeps running). Calling it again after
  // the exit returns the same VmExit.
  virtual absl::StatusOr<VmExit> Wait(absl::Duration timeout) = 0;

  // Kill(): stops the VMM and its whole process tree (if still running), reaps it, and removes
  // its sockets. Idempotent; never fails; the destructor calls it.
  virtual void Kill() = 0;

  // serial_log_path(): host file that receives the guest's serial console (ttyS0).
  virtual std::string serial_log_path() const = 0;

  // vmm_log_path(): host file with the VMM process's own stdout/stderr.
  virtual std::string vmm_log_path() const = 0;

  // peak_rss_bytes(): the VMM's peak RSS in bytes once it has exited; 0 before.
  virtual int64_t peak_rss_bytes() const = 0;
  // vmm_pid(): the VMM process's pid (leader of its own process group); 0 if the backend does
  // not expose it.
  virtual pid_t vmm_pid() const { return 0; }
  // Detach(): forgets the VMM process without stopping it: it keeps running (and keeps its
  // sockets and work dir), and Kill()/Wait()/the destructor no longer touch it. OkStatus;
  // FailedPrecondition if the VM was not booted with config.detachable or has already exited;
  // Unimplemented for backends without it. Idempotent once OK.
  virtual absl::Status Detach() {
    return absl::UnimplementedError("this VMM backend cannot detach a VM");
  }
  // detached(): Detach() succeeded.
  virtual bool detached() const { return false; }
  // vmm_socket_dir(): a directory outside config().work_dir that holds this VM's VMM sockets
  // and goes with the VM (Cloud Hypervisor: the short /tmp/kiln-ch-XXXXXX API socket dir made
  // when the work dir path is too long for a unix socket); "" if none. The Vm removes it when
  // the VMM is gone, unless detached: then whoever ends the VMM does (harness/keep/keep_store.h
  // KeepRecord::vmm_socket_dir).
  virtual std::string vmm_socket_dir() const { return ""; }
};

// CheckDetachable(config, exited): the shared precondition of every backend's Vm::Detach():
// OkStatus; FailedPrecondition "VM <id> was not booted detachable" unless config.detachable,
// or "VM <id> has exited" if `exited`. Pure.
absl::Status CheckDetachable(const VmConfig& config, bool exited);

// Vmm: a VMM backend (QEMU, Cloud Hypervisor). Thread-compatible.
class Vmm {
 public:
  virtual ~Vmm() = default;

  // Name(): short backend name, e.g. "qemu".
  virtual std::string Name() const = 0;

  // Describe(): one human line about the backend: version, machine, accel and why.
  virtual std::string Describe() const = 0;

  // channel_transport(): how the host side of a VmConfig::channel of this backend is spoken
  // (ChannelTransport). Default kVirtioSerial (QEMU); CloudHypervisorVmm returns kHybridVsock.
  // Callers (the builder client) use it to pick the agent's --channel flag and the connect
  // handshake, so that the same scenario runs on either backend.
  virtual ChannelTransport channel_transport() const { return ChannelTransport::kVirtioSerial; }

  // Boot(config): validates `config`, creates config.work_dir, and starts the VM. Returns the
  // running Vm; InvalidArgument for a bad config; NotFound if the VMM binary or an artifact is
  // missing; Internal/errno codes if the process cannot be started.
  virtual absl::StatusOr<std::unique_ptr<Vm>> Boot(const VmConfig& config) = 0;
};

}  // namespace kiln::harness

#endif  // KILN_HARNESS_VMM_H_
