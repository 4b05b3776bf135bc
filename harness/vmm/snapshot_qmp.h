// File: harness/vmm/snapshot_qmp.h
// -----------------------------------------------------------------------------
//
// Saving and restoring a QEMU VM through QMP, the QEMU Machine Protocol (QEMU's
// docs/interop/qmp-spec: a greeting, `qmp_capabilities`, then one JSON command per line
// answered by {"return": ...} or {"error": {"class", "desc"}}, with asynchronous {"event": ...}
// lines in between). Used by the warm builders (issue 12, harness/vmm/snapshot.h):
//
//   save:    the VM was booted with VmConfig::control_socket_path (QemuArgv adds -qmp);
//            SaveQemuSnapshot: `stop` (vCPUs paused), `migrate-set-parameters max-bandwidth`
//            (the default cap is 128 MiB/s), `migrate` to the state file, poll `query-migrate`
//            until "completed", `quit`. The migration stream holds guest RAM and device state;
//            disks are not in it (the caller's disks are read-only).
//   restore: boot the identical config with VmConfig::restore_from (QemuArgv adds
//            `-incoming exec:cat <file>`), then ResumeQemuVm: poll `query-status` until the
//            incoming migration is done ("paused": the source was stopped, QEMU carries that
//            run state over), then `cont`.
//
// RAM in a file (SnapshotRam::kFile, harness/vmm/qemu.h; Kata Containers' VM templating): the
// saved VM ran with VmConfig::memory_file shared (memory-backend-file,share=on), so its RAM is
// in that file; SaveQemuSnapshot(..., kFile) sets the migration capability x-ignore-shared
// before `migrate`, and the stream skips shared RAM blocks (it holds device state and the small
// ROM blocks: ~1 MB). The restored VM maps the same file private (share=off, copy-on-write) and
// starts with `-incoming defer`; ResumeQemuVm(const VmConfig&, ...) sets x-ignore-shared (the
// destination must parse the stream's per-block address fields the same way) and sends
// `migrate-incoming exec:cat <state>`. The destination loads only the pages the stream holds;
// all others stay as the private mapping shows them: the file's contents. Its writes go to
// anonymous copy-on-write pages, never to the file.
//
// The URI: QEMU 7.2 (this machine) has only `exec:` for files (`exec:cat > <file>`); QEMU 8.2
// added `file:` and 9.0 the `mapped-ram` capability. MigrationFeaturesFrom reads the version
// from the greeting and the capability list, ChooseSaveUri picks `file:` where it exists (the
// stream format is the same, so the exec:cat restore reads it). mapped-ram (a fixed-offset
// RAM layout that a restore can map instead of copy) is detected and reported, not used.
//
// Example:
//
//   ASSIGN_OR_RETURN(SaveStats s, SaveQemuSnapshot(config.control_socket_path, "/x/state",
//                                                  absl::Seconds(60)));
//   ... boot config2 with restore_from = "/x/state" ...
//   ASSIGN_OR_RETURN(absl::Duration restore, ResumeQemuVm(config2.control_socket_path,
//                                                         absl::Seconds(30)));
#ifndef KILN_HARNESS_SNAPSHOT_QMP_H_
#define KILN_HARNESS_SNAPSHOT_QMP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/vmm.h"
#include "nlohmann/json.hpp"

namespace kiln::harness {

// QmpClient: one QMP connection (a unix socket). Not thread-safe.
class QmpClient {
 public:
  // Connect(path, timeout): connects (retrying while the socket does not exist yet or refuses:
  // QEMU creates it shortly after it starts), reads the greeting and negotiates
  // (`qmp_capabilities`). DeadlineExceeded if that does not happen within `timeout`;
  // InvalidArgument for a path longer than 107 bytes; DataLoss for a reply that is not JSON.
  // `gone` (may be empty) is asked between attempts: true (the VMM exited) ends the wait with
  // Unavailable "QEMU exited".
  static absl::StatusOr<std::unique_ptr<QmpClient>> Connect(
      const std::string& path, absl::Duration timeout,
      const std::function<bool()>& gone = nullptr);
  ~QmpClient();

  // Execute(command, arguments, timeout): sends {"execute": command, "arguments": ...} and
  // returns the "return" value. Events read meanwhile are skipped. Errors: FailedPrecondition
  // "<command>: <class>: <desc>" for a QMP error reply; DeadlineExceeded; Unavailable if QEMU
  // closed the socket (expected after `quit`).
  absl::StatusOr<nlohmann::json> Execute(absl::string_view command,
                                         const nlohmann::json& arguments,
                                         absl::Duration timeout);

  // greeting(): the server's greeting object ({"QMP": {"version": ..., "capabilities": ...}}).
  const nlohmann::json& greeting() const { return greeting_; }

 private:
  explicit QmpClient(int fd) : fd_(fd) {}
  absl::StatusOr<nlohmann::json> ReadObject(absl::Time deadline);

  int fd_;
  std::string buffer_;
  nlohmann::json greeting_;
};

// MigrationFeatures: what the QEMU on the other end of a QMP socket offers for saving to a file.
struct MigrationFeatures {
  int major = 0, minor = 0, micro = 0;  // QEMU's version from the greeting
  bool file_uri = false;    // `file:` migration URIs (QEMU >= 8.2)
  bool mapped_ram = false;  // the `mapped-ram` migration capability is listed (QEMU >= 9.0)
  bool ignore_shared = false;  // `x-ignore-shared` is listed (QEMU >= 4.0): SnapshotRam::kFile
};

// MigrationFeaturesFrom(greeting, capabilities): pure. `greeting` is QmpClient::greeting();
// `capabilities` the return of `query-migrate-capabilities` (an array of {"capability": name,
// "state": bool}). Missing fields leave the defaults.
MigrationFeatures MigrationFeaturesFrom(const nlohmann::json& greeting,
                                        const nlohmann::json& capabilities);

// ChooseSaveUri(features, state_path): "file:<state_path>" if features.file_uri, else
// "exec:cat > '<state_path>'". Pure.
std::string ChooseSaveUri(const MigrationFeatures& features, absl::string_view state_path);

// SetCapabilityArgs(name, state): the arguments of `migrate-set-capabilities` that set one
// capability: {"capabilities": [{"capability": name, "state": state}]}. Pure.
nlohmann::json SetCapabilityArgs(absl::string_view name, bool state);

// MigrateIncomingArgs(config): the arguments of `migrate-incoming` for a VM booted with
// `-incoming defer` (QemuIncomingDeferred): {"uri": QemuIncomingUri(config.restore_from)}. Pure.
nlohmann::json MigrateIncomingArgs(const VmConfig& config);

// SaveStats: how a save went.
struct SaveStats {
  std::string uri;                 // the migration URI used
  MigrationFeatures features;
  SnapshotRam ram = SnapshotRam::kStream;
  uint64_t state_bytes = 0;        // size of the state file
  uint64_t ram_stream_bytes = 0;   // what the stream carried of RAM (query-migrate ram.transferred)
  absl::Duration migrate;          // `migrate` sent -> "completed"
  absl::Duration total;            // connect -> QEMU quit
};

// SaveQemuSnapshot(control_socket, state_path, timeout): pauses the VM behind `control_socket`
// and writes its state to `state_path` (created; the caller's directory, mode from the umask:
// make the directory 0700), then makes QEMU quit. On any error the VM is left paused or gone:
// the caller kills it. Errors: QmpClient's; Internal "migration failed: <error-desc>";
// DeadlineExceeded if the whole save took longer than `timeout`.
// ram: kFile for a VM booted with a shared memory_file: x-ignore-shared is set before
// `migrate` (FailedPrecondition naming it if QEMU does not list it), and the RAM stays in that
// file (the caller fsyncs it); kStream: the stream holds the RAM.
absl::StatusOr<SaveStats> SaveQemuSnapshot(const std::string& control_socket,
                                           const std::string& state_path,
                                           absl::Duration timeout,
                                           SnapshotRam ram = SnapshotRam::kStream);

// ResumeQemuVm(control_socket, timeout): waits (polling `query-status` every 10 ms) until a VM
// started with -incoming has loaded its state, then sends `cont`. Returns the time from the
// call to `cont` answered. Errors: QmpClient's; Internal "incoming migration failed" if QEMU
// reports status "shutdown"/"internal-error"/"guest-panicked" or closes the socket
// (a bad or truncated state file makes QEMU exit: its log says why); DeadlineExceeded.
// `gone` (may be empty): as for QmpClient::Connect, also asked while polling.
absl::StatusOr<absl::Duration> ResumeQemuVm(const std::string& control_socket,
                                            absl::Duration timeout,
                                            const std::function<bool()>& gone = nullptr);

// ResumeQemuVm(restored, timeout, gone): the same for the VM booted from `restored` (its
// control_socket_path). When QemuArgv deferred its incoming migration (QemuIncomingDeferred:
// RAM in a file), first `migrate-set-capabilities` x-ignore-shared and `migrate-incoming`
// (MigrateIncomingArgs); otherwise exactly ResumeQemuVm(restored.control_socket_path, ...).
absl::StatusOr<absl::Duration> ResumeQemuVm(const VmConfig& restored, absl::Duration timeout,
                                            const std::function<bool()>& gone = nullptr);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_SNAPSHOT_QMP_H_
