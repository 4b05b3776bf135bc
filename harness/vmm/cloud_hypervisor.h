// File: harness/vmm/cloud_hypervisor.h
// -----------------------------------------------------------------------------
//
// The Cloud Hypervisor backend of the VMM interface (harness/vmm/vmm.h). Cloud Hypervisor (CH) is
// driven through its REST API (docs/api.md of cloud-hypervisor; HTTP/1.1 over the unix socket
// given by `--api-socket`, endpoints under /api/v1):
//
//   cloud-hypervisor --api-socket <sock>        start the VMM, no VM yet
//   GET  /api/v1/vmm.ping                       readiness (200, {"version": ...})
//   PUT  /api/v1/vm.create   <VmConfig JSON>    store the VM's config (204)
//   PUT  /api/v1/vm.boot                        build and boot it (204)
//   GET  /api/v1/vm.info                        {"state": "Created|Running|Paused|...", ...}
//   PUT  /api/v1/vm.shutdown                    stop the VM (204)
//   PUT  /api/v1/vmm.shutdown                   the VMM process exits (200)
//
// What the real CH (v53; read in its source, see harness/README.md) does beyond its API
// document, and kiln relies on:
//   - vmm.shutdown answers 200 with no body (the document says 204): any 2xx is success.
//   - An error body is a JSON array of strings, the chain of error messages outermost first
//     (["Error from API","The VM could not boot","Cannot open kernel file",...]);
//     ChApiErrorText turns it into "Error from API: The VM could not boot: ..." for the Status.
//   - vm.create only deserializes and stores the config (unknown keys are ignored: kiln's own
//     schema test is the guard against a misspelt key); devices are built, files opened and
//     locked at vm.boot, so most config errors come from vm.boot (HTTP 500).
//   - vm.info answers 404 before vm.create, and state Created (not Shutdown) after
//     vm.shutdown: CH drops the VM and keeps its config.
//   - The vsock unix socket is created at vm.boot.
//   - CH (>= v53) creates `<api-socket>.lock` beside the API socket, locks it, and never
//     removes it; on exit it removes only the socket. kiln removes the lock (a regular file of
//     exactly that name only) with the socket when the VM is gone.
//
// CH needs working KVM (it has no emulator): see harness/vmm/vmm_select.h for the fail-fast check.
//
// Split as everywhere in kiln: pure functions build the plan (CloudHypervisorVmConfigJson,
// CloudHypervisorKernelCmdline, CloudHypervisorPathsFor) and are unit-tested against the
// documented schema; ChApiClient is the thin HTTP executor (kiln's one HTTP client, publish/http.h's
// CurlTransport, over the unix socket);
// CloudHypervisorVmm starts the process (agent/process/process.h: own process group,
// PR_SET_PDEATHSIG) and tears it down on every path: vm.shutdown, vmm.shutdown, then SIGTERM /
// SIGKILL to the group after a grace period.
//
// The VmConfig's Channel becomes CH's vsock device {cid, socket}: CH listens on the unix socket
// (hybrid vsock, docs/vsock.md); ConnectChannel() connects with the "CONNECT <port>\n" /
// "OK <n>\n" handshake of agent/transport.h, retrying with backoff while the VM is alive.
//
// Example:
//
//   ASSIGN_OR_RETURN(std::unique_ptr<CloudHypervisorVmm> vmm,
//                    CloudHypervisorVmm::Create(CloudHypervisorOptions{}));
//   ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, vmm->Boot(config));     // create + boot
//   ASSIGN_OR_RETURN(std::unique_ptr<agent::FdStream> s,
//                    ConnectChannel(*vm, absl::Seconds(30)));        // guest agent on vsock
//   vm->Kill();                                                       // or the destructor
#ifndef KILN_HARNESS_CLOUD_HYPERVISOR_H_
#define KILN_HARNESS_CLOUD_HYPERVISOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/transport.h"
#include "harness/vmm/channel.h"
#include "harness/vmm/vmm.h"
#include "nlohmann/json.hpp"

namespace kiln::harness {

// ----------------------------------------------------------------------------
// Pure: the plan
// ----------------------------------------------------------------------------

// kCloudHypervisorBaseCmdline: the kernel command line keys always passed (docs/interfaces.md):
// the legacy serial port (CH's `serial` device is ttyS0 on x86_64) as console, a panic and a
// soft lockup reboot at once. CH has no -no-reboot: a guest reboot restarts the guest, so the
// harness detects panics from the serial log (harness/vmm/console.h), not from the VMM's exit.
inline constexpr absl::string_view kCloudHypervisorBaseCmdline =
    "console=ttyS0 panic=-1 softlockup_panic=1";

// kMaxUnixSocketPath: the longest unix socket path (sun_path minus the NUL), bytes.
inline constexpr size_t kMaxUnixSocketPath = 107;

// CloudHypervisorPaths: the host files of one CH VM.
struct CloudHypervisorPaths {
  std::string serial_log;  // <work_dir>/serial.log (guest ttyS0, CH serial mode File)
  std::string vmm_log;     // <work_dir>/cloud-hypervisor.log (CH's stdout+stderr)
  std::string api_socket;  // <socket_dir>/ch-api.sock (the --api-socket)
};

// ChApiSocketLockPath(api_socket): "<api_socket>.lock", the lock file CH >= v53 creates beside
// its API socket and leaves behind. Pure.
std::string ChApiSocketLockPath(absl::string_view api_socket);

// CloudHypervisorPathsFor(config, socket_dir): the paths for `config.work_dir`, the API socket
// in `socket_dir` (the executor passes work_dir, or a short temp dir when work_dir is too long
// for a unix socket path). Pure.
CloudHypervisorPaths CloudHypervisorPathsFor(const VmConfig& config, absl::string_view socket_dir);

// CloudHypervisorKernelCmdline(config): kCloudHypervisorBaseCmdline + " " + config.cmdline
// (stripped; nothing appended when empty). Pure.
std::string CloudHypervisorKernelCmdline(const VmConfig& config);

// CloudHypervisorVmConfigJson(config, paths): the body of PUT /api/v1/vm.create for `config`,
// following CH's VmConfig schema (cloud-hypervisor.yaml):
//   payload   {kernel, cmdline, initramfs?}
//   cpus      {boot_vcpus, max_vcpus}            (both = config.vcpus)
//   memory    {size}                             (bytes = memory_mib * 2^20)
//   disks     [{path, readonly}]                 (in order: /dev/vda, /dev/vdb, ...; omitted if none)
//   serial    {mode: "File", file: paths.serial_log}
//   console   {mode: "Off"}
//   rng       {src: "/dev/urandom"}
//   vsock     {cid, socket}                      (only with a Channel: vsock_cid, host_socket_path)
// Pure. InvalidArgument if ValidateVmConfig fails, if the channel's vsock_cid < 3 (0-2 are
// reserved: hypervisor, local, host), or its socket path is longer than kMaxUnixSocketPath.
absl::StatusOr<nlohmann::json> CloudHypervisorVmConfigJson(const VmConfig& config,
                                                           const CloudHypervisorPaths& paths);

// ChVmState: CH's VmState (the "state" of GET vm.info). After vm.shutdown CH reports kCreated
// (the VM is gone, its config kept; vm.boot would boot it again), not kShutdown.
enum class ChVmState { kCreated, kRunning, kShutdown, kPaused, kBreakPoint };

// ParseChVmInfoState(body): the state of a GET /api/v1/vm.info response body. Pure.
// InvalidArgument if the body is not JSON, has no string "state", or an unknown state.
absl::StatusOr<ChVmState> ParseChVmInfoState(absl::string_view body);

// ChVmStateName(state): "Created", "Running", "Shutdown", "Paused", "BreakPoint" (CH's names).
const char* ChVmStateName(ChVmState state);

// ChApiErrorText(body): the text of a CH error response body. Pure. CH's bodies are JSON
// arrays of strings (the error chain, outermost first): joined with ": ". An object with a
// string "error" (other VMMs' and older fakes' shape): that string. Anything else: the body
// with trailing whitespace stripped; "(empty body)" for an empty body. Control characters are
// escaped (C-style) and the result is cut at 2000 bytes, so a hostile body cannot flood or
// garble a log line.
std::string ChApiErrorText(absl::string_view body);

// ----------------------------------------------------------------------------
// Executor: the REST client
// ----------------------------------------------------------------------------

// ChApiResponse: one HTTP response.
struct ChApiResponse {
  long status = 0;   // HTTP status code
  std::string body;  // response body (may be empty)
};

// ChApiClient: HTTP/1.1 over CH's API unix socket through publish/http.h's CurlTransport
// (TransportOptions::unix_socket_path, ::timeout). Thread-compatible.
class ChApiClient {
 public:
  // ChApiClient(socket_path, timeout): every request may take at most `timeout` in total.
  ChApiClient(std::string socket_path, absl::Duration timeout);

  // Request(method, endpoint, body): sends `method` (GET or PUT) to
  // http://localhost/api/v1/<endpoint> with `body` as application/json (no body if empty).
  // Returns the response whatever its status. Errors: InvalidArgument for another method;
  // Unavailable if the socket does not connect, the server closed without a reply or the
  // transfer failed otherwise; DeadlineExceeded after the timeout; ResourceExhausted for a
  // body over 1 MiB (publish::kDefaultMaxResponseBytes); Internal if libcurl itself fails.
  // Each message names the method, the endpoint and the socket.
  absl::StatusOr<ChApiResponse> Request(absl::string_view method, absl::string_view endpoint,
                                        absl::string_view body = "") const;

  // Call(method, endpoint, body): Request; any 2xx is success (vmm.shutdown answers 200, the
  // others 204 or 200 with a body) and returns the body. Other statuses become an error whose
  // message has the status and ChApiErrorText(body) ("cloud-hypervisor API PUT vm.boot: HTTP
  // 500: Error from API: The VM could not boot: ..."): InvalidArgument for 400, NotFound for
  // 404 (e.g. vm.info or vm.boot before vm.create), FailedPrecondition for other 4xx,
  // Internal for 5xx and anything else.
  absl::StatusOr<std::string> Call(absl::string_view method, absl::string_view endpoint,
                                   absl::string_view body = "") const;

  const std::string& socket_path() const { return socket_path_; }

 private:
  std::string socket_path_;
  absl::Duration timeout_;
};

// ----------------------------------------------------------------------------
// Executor: the backend
// ----------------------------------------------------------------------------

// CloudHypervisorOptions: how CloudHypervisorVmm runs CH. Pure data.
struct CloudHypervisorOptions {
  // binary: the CH executable (looked up in PATH if it has no '/').
  std::string binary = "cloud-hypervisor";
  // api_timeout: per API request.
  absl::Duration api_timeout = absl::Seconds(10);
  // socket_timeout: how long Boot() waits for the API socket to answer vmm.ping.
  absl::Duration socket_timeout = absl::Seconds(10);
  // grace: Kill() waits this long after vmm.shutdown, then SIGTERM to the group, this long
  // again, then SIGKILL.
  absl::Duration grace = absl::Seconds(2);
};

// CloudHypervisorVm: a VM of CloudHypervisorVmm (exposes the API client for vm.info). It
// implements Vm::vmm_pid() and Vm::Detach() like QEMU's: a VmConfig::detachable VM's CH process
// is spawned without PR_SET_PDEATHSIG and, once detached (a kept failed builder, issue 6),
// keeps running with its sockets after the Vm, the factory and the harness are gone.
class CloudHypervisorVm : public Vm {
 public:
  // State(): GET vm.info -> its state (kCreated again after vm.shutdown). ChApiClient::Call's
  // errors (NotFound if CH has no VM: 404); FailedPrecondition once the VMM has exited.
  virtual absl::StatusOr<ChVmState> State() = 0;
  // api(): the API client of this VM's VMM.
  virtual const ChApiClient& api() const = 0;
};

// CloudHypervisorVmm: the CH backend. One CH process per VM.
class CloudHypervisorVmm : public Vmm {
 public:
  // Create(options): reads the version (`<binary> --version`). NotFound naming the binary
  // if it does not run. Does not check KVM (harness/vmm/vmm_select.h does).
  static absl::StatusOr<std::unique_ptr<CloudHypervisorVmm>> Create(CloudHypervisorOptions options);

  std::string Name() const override { return "cloud-hypervisor"; }
  std::string Describe() const override;
  // channel_transport(): kHybridVsock (the channel is CH's vsock device; see ConnectChannel).
  ChannelTransport channel_transport() const override { return ChannelTransport::kHybridVsock; }

  // Boot(config): with config.restore_from set, Restore(config, config.restore_from) (a
  // snapshot directory SaveChSnapshot wrote; the VM comes back running: the warm builders boot
  // restored VMs through VmFactory this way). Otherwise: validates, builds the vm.create JSON,
  // creates work_dir, starts
  // `<binary> --api-socket <sock>` (output to <work_dir>/cloud-hypervisor.log), waits for
  // vmm.ping (options.socket_timeout), PUT vm.create, PUT vm.boot. Any failure after the
  // start kills the process and returns the error with the tail of CH's log appended. The
  // socket is <work_dir>/ch-api.sock, or in a fresh /tmp/kiln-ch-XXXXXX dir when that path is
  // too long for a unix socket; once the process is gone (any way: Kill, deadline, guest
  // power-off, a failed Boot) the socket, its CH lock file (ChApiSocketLockPath) and that temp
  // dir are removed. A detached VM keeps them (whoever ends it removes the socket dir).
  // Errors: InvalidArgument (config); NotFound (binary, kernel, initrd or disk missing);
  // DeadlineExceeded (socket never answered); FailedPrecondition if CH exited early;
  // ChApiClient::Call's errors.
  absl::StatusOr<std::unique_ptr<Vm>> Boot(const VmConfig& config) override;

  // Restore(config, snapshot_dir): a new VM `config` from a snapshot SaveChSnapshot made:
  // PrepareChRestoreDir(snapshot_dir, <work_dir>/restore), starts ChRestoreArgv (the old vsock
  // socket file is removed first: CH binds it again), waits for vmm.ping, checks vm.info says
  // Paused, PUT vm.resume. The host then connects to the vsock socket anew (ConnectChannel).
  // Socket and teardown as Boot. Errors (each message starts "restoring cloud-hypervisor from
  // <snapshot_dir>: "): as Boot; NotFound if snapshot_dir or one of its files is missing, and
  // PrepareChRestoreDir's for a corrupt one (checked before CH starts); FailedPrecondition if
  // CH exited (e.g. its restore failed: the log tail has CH's error chain), the restored VM is
  // not Paused, or config does not match the snapshot (RewriteChSnapshotConfig).
  absl::StatusOr<std::unique_ptr<Vm>> Restore(const VmConfig& config,
                                              const std::string& snapshot_dir);

  const CloudHypervisorOptions& options() const { return options_; }
  // version(): e.g. "v38.0.0" (the text after "cloud-hypervisor " of --version).
  const std::string& version() const { return version_; }

 private:
  CloudHypervisorVmm(CloudHypervisorOptions options, std::string version)
      : options_(std::move(options)), version_(std::move(version)) {}
  CloudHypervisorOptions options_;
  std::string version_;
};

// ----------------------------------------------------------------------------
// Snapshot and restore (warm builders, issue 12 item 3)
// ----------------------------------------------------------------------------
//
// Follows CH's docs/snapshot_restore.md and its API document (cloud-hypervisor.yaml:
// VmSnapshotConfig {destination_url}, RestoreConfig {source_url}):
//
//   save:     PUT /api/v1/vm.pause                                   (204; VM Running -> Paused)
//             PUT /api/v1/vm.snapshot {"destination_url":"file:///<dir>"}
//                       CH writes config.json (the VmConfig), state.json (vCPU and device
//                       state) and memory-ranges (guest RAM) into the existing <dir>; only a
//                       paused VM can be snapshotted. Disks are not in it.
//   restore:  cloud-hypervisor --api-socket <sock> --restore source_url=file:///<dir>
//                       a new CH process builds the VM from <dir> in state Paused;
//             PUT /api/v1/vm.resume                                  (204; Paused -> Running)
//
// Hybrid vsock across a restore (docs/vsock.md, snapshot_restore.md): connections do not
// survive; the restored CH creates the vsock unix socket again at the path in config.json, and
// the host connects anew (ConnectChannel). kiln restores each VM from its own restore dir
// (PrepareChRestoreDir): config.json rewritten for the new VM's serial log and vsock socket,
// state.json and memory-ranges symlinked to the snapshot, so restored VMs do not share a socket.

// kChSnapshotFiles: the files CH writes into a snapshot directory (and a restore reads).
inline constexpr const char* kChSnapshotFiles[] = {"config.json", "state.json", "memory-ranges"};

// ChFileUrl(dir): "file://" + dir, the URL form of CH's destination_url / source_url. Pure.
// InvalidArgument if dir is not absolute or has a character that would end the CLI value
// (',' separates --restore options) or a control character.
absl::StatusOr<std::string> ChFileUrl(absl::string_view dir);

// ChSnapshotRequestBody(dir): the body of PUT vm.snapshot, {"destination_url":"file://<dir>"}.
// Pure. ChFileUrl's errors.
absl::StatusOr<std::string> ChSnapshotRequestBody(absl::string_view dir);

// ChRestoreArgv(binary, api_socket, dir): {binary, "--api-socket", api_socket, "--restore",
// "source_url=file://<dir>"} (CH's --restore is exclusive with the VM config flags: the config
// comes from <dir>/config.json). Pure. ChFileUrl's errors.
absl::StatusOr<std::vector<std::string>> ChRestoreArgv(absl::string_view binary,
                                                       absl::string_view api_socket,
                                                       absl::string_view dir);

// RewriteChSnapshotConfig(snapshot_config, config, paths): the config.json of a snapshot
// (CH's VmConfig) made for the VM `config`: serial.file = paths.serial_log, vsock.socket =
// config.channel->host_socket_path (and vsock.cid), everything else kept. Pure.
// FailedPrecondition if the snapshot's cpus.boot_vcpus or memory.size differ from
// config.vcpus / memory_mib (a restore cannot change them), or the snapshot has a vsock device
// and config no channel (or the reverse); InvalidArgument if snapshot_config is not an object.
absl::StatusOr<nlohmann::json> RewriteChSnapshotConfig(const nlohmann::json& snapshot_config,
                                                       const VmConfig& config,
                                                       const CloudHypervisorPaths& paths);

// ChSaveStats: how a save went.
struct ChSaveStats {
  uint64_t state_bytes = 0;  // all files CH wrote (memory-ranges dominates), bytes
  absl::Duration pause;      // vm.pause answered
  absl::Duration snapshot;   // vm.snapshot answered
};

// SaveChSnapshot(vm, dir): pauses `vm` (PUT vm.pause), snapshots it into `dir` (PUT
// vm.snapshot, ChSnapshotRequestBody(dir)), then makes every file in `dir` mode 0600. `dir`
// must exist (CH does not create it; the snapshot cache's temp dir, 0700). The VM is left
// paused: the caller kills it (a snapshot VM never runs a job). Errors: InvalidArgument (dir);
// NotFound if dir is missing; FailedPrecondition if the VMM has exited or CH wrote none of
// kChSnapshotFiles; ChApiClient::Call's errors (CH answers 500 — Internal — to a pause of a VM
// that is not running and to a snapshot of one that is not paused).
absl::StatusOr<ChSaveStats> SaveChSnapshot(CloudHypervisorVm& vm, const std::string& dir);

// PrepareChRestoreDir(snapshot_dir, restore_dir, config, paths): makes `restore_dir` (0700)
// with config.json = RewriteChSnapshotConfig(<snapshot_dir>/config.json) (0600), and
// state.json, memory-ranges symlinked to the snapshot's. Before anything is written it checks
// what CH would report without naming the file: Errors: NotFound naming the missing snapshot
// file; InvalidArgument naming config.json or state.json when it is not JSON, or memory-ranges
// when it is shorter than the config's guest RAM (a truncated snapshot);
// RewriteChSnapshotConfig's; errno-derived codes for file errors.
absl::Status PrepareChRestoreDir(const std::string& snapshot_dir, const std::string& restore_dir,
                                 const VmConfig& config, const CloudHypervisorPaths& paths);

// ReadCloudHypervisorVersion(binary): the text after "cloud-hypervisor " on the first line
// of `<binary> --version`; NotFound if it does not run or prints no such line.
absl::StatusOr<std::string> ReadCloudHypervisorVersion(const std::string& binary);

// ----------------------------------------------------------------------------
// Host side of the channel
// ----------------------------------------------------------------------------

// kChVsockConnectRequestTimeoutMs: CH's muxer closes a host-initiated hybrid vsock connection
// whose guest-side request the guest has not answered within this long (CH's
// virtio-devices/src/vsock/csm/mod.rs CONN_REQUEST_TIMEOUT_MS). A guest without a listener on
// the port answers at once (RST: CH closes at once); a guest whose vsock driver or agent is not
// up yet does not answer, and CH closes after 2000 ms.
inline constexpr int kChVsockConnectRequestTimeoutMs = 2000;

// HybridVsockRetry: backoff of ConnectHybridVsockWithRetry (ms).
struct HybridVsockRetry {
  int initial_backoff_ms = 10;
  int max_backoff_ms = 500;
  // attempt_timeout_ms: the most one CONNECT/OK handshake may take. Deliberately 1 s above
  // kChVsockConnectRequestTimeoutMs, so CH's drop always wins the race: an unanswered CONNECT
  // ends with CH closing it (Unavailable, retried at once after the backoff), and kiln never
  // abandons a request that the guest may still answer within CH's window (a slow guest under
  // load). kiln's own timeout only fires if the muxer itself hangs.
  int attempt_timeout_ms = kChVsockConnectRequestTimeoutMs + 1000;
  // attempt_errors: if set, each failed attempt's status is appended (diagnostics, tests).
  std::vector<absl::Status>* attempt_errors = nullptr;
};

// ConnectHybridVsockWithRetry(uds_path, port, timeout, alive, retry): ConnectChannelOnce
// (harness/vmm/channel.h, transport kHybridVsock) repeatedly, doubling the pause between attempts
// (initial..max backoff), until it succeeds, `timeout` passes, or `alive()` returns false
// (checked before each attempt). Retried (IsRetryableConnectError): the socket missing or
// refusing (VMM not up yet), Unavailable (no guest listener yet: CH closes the connection)
// and a per-attempt DeadlineExceeded. Not retried: InvalidArgument (bad path, overlong reply),
// FailedPrecondition (a reply line other than "OK <n>": not a hybrid vsock socket). Errors:
// DeadlineExceeded with the attempt count and the last error; FailedPrecondition "VM exited"
// when alive() is false; the non-retried error.
absl::StatusOr<std::unique_ptr<agent::FdStream>> ConnectHybridVsockWithRetry(
    absl::string_view uds_path, uint32_t port, absl::Duration timeout,
    const std::function<bool()>& alive, const HybridVsockRetry& retry = HybridVsockRetry());

// ConnectChannel(vm, timeout): the host side of vm.config().channel for a CH VM:
// ConnectHybridVsockWithRetry(channel.host_socket_path, channel.vsock_port, timeout,
// [&] { return !vm.Exited(); }). FailedPrecondition if the VM has no channel.
absl::StatusOr<std::unique_ptr<agent::FdStream>> ConnectChannel(Vm& vm, absl::Duration timeout);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_CLOUD_HYPERVISOR_H_
