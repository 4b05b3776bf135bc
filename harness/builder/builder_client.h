// File: harness/builder/builder_client.h
// -----------------------------------------------------------------------------
//
// The builder client: the host side of kiln's main flow (DESIGN.md "The main flow"). It boots a
// builder VM from the builder disk (VmFactory + a Vmm; the agent runs as init's kiln.exec and
// serves the channel the backend offers: a virtio-serial port under QEMU, AF_VSOCK under Cloud
// Hypervisor, see Vmm::channel_transport()), connects to the channel's unix socket (for CH with
// the hybrid vsock CONNECT/OK handshake, harness/vmm/channel.h), handshakes, sends the
// secrets and build jobs (context tar, Dockerfile, build args, target, base images to preload),
// collects the live log lines, the BuildResult and the image archive (OCI archive), and tears
// the VM down: the host closes the channel, the agent (--once) exits, init powers off; if the VM
// is not gone within a grace period it is killed.
//
// Every wait is bounded: connect + Ready by BuilderVmOptions::ready_timeout, each job by its
// stall timeout (no frame from the agent for that long) and by the VM's deadline. While it
// waits, the client follows the serial log (SerialLogFollower: only new bytes, head and tail
// kept): a soft lockup / kernel panic of the guest, or a stall, cuts the VM off at once (a
// *lockup event*); RunBuilderJobs then retries the whole VM once (a fresh VM, id
// "<id>-retry1") and counts the events. A guest whose kernel OOM killer killed a process
// (`Out of memory: Killed process ...`) is *out of memory*, not stuck: it is reported as
// ResourceExhausted "guest out of memory (OOM killer killed <process>); the VM had N MiB;
// raise <memory_flag>", never counted as a lockup and never retried (it would run out again).
//
// What a guest sends is bounded on the host (a hostile or broken guest must not exhaust it):
//   - a job's Log lines: at most BuilderVmOptions::max_log_bytes are kept (JobLog: the first
//     half and the last half, each line charged its text + kLogLineOverheadBytes), with one
//     line saying how much was dropped. The agent caps a job's log itself at
//     agent::kMaxJobLogBytes (8 MiB of text: head 6 MiB + tail 2 MiB, agent/protocol/
//     messages.h); the host's default (24 MiB) is above that, so the host cuts only a log that
//     is not from a well-behaved agent, or one of more than ~250000 lines (then both cuts
//     apply and both say so);
//   - the image: at most BuilderVmOptions::max_image_bytes (default 8 GiB) are written;
//     larger is ResourceExhausted, and a partial image file is deleted on every failure;
//   - the serial log: read incrementally, parsed line by line, its first and last 2 MiB kept;
//   - frames: at most agent::kMaxPayload (1 MiB) each (the frame decoder).
// Host memory bound: while a job runs, one BuilderVm holds at most
// BuilderHostMemoryBound(options) bytes of guest-controlled data (64 MiB with the defaults;
// builder_client_test floods 100 MiB of log: the peak RSS grew by 24-25 MiB).
//
// Timings (host clock): VMM start -> agent Ready, job sent -> BuildResult, job sent -> image
// received, last result -> VM gone; the guest reports its own phases in BuildResult.phases
// (receive_context, validate, dockerd_start, preload, build, export, teardown, total).
//
// Example:
//
//   BuilderArtifacts a{kernel, initrd, builder_disk};
//   BuildRequest job;
//   job.job_id = "ref";
//   job.context_tar = "/tmp/ctx.tar";                 // WriteDirectoryTar(dir, path)
//   job.secrets = {{"build_token", token}};
//   job.secret_ids = {"build_token"};
//   job.preload = {{"kiln-busybox:1", "/tmp/busybox.tar"}};
//   job.image_out = "/tmp/image.oci.tar";
//   BuilderRun run = RunBuilderJobs(factory, a, BuilderVmOptions{.id = "builder-ref"}, {job});
//   if (run.status.ok() && run.jobs[0].result && run.jobs[0].result->exit_status == 0) ...
#ifndef KILN_HARNESS_BUILDER_CLIENT_H_
#define KILN_HARNESS_BUILDER_CLIENT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/connection.h"
#include "agent/protocol/messages.h"
#include "agent/transport.h"
#include "harness/vmm/channel.h"
#include "harness/vmm/console.h"
#include "harness/keep/keep_store.h"
#include "harness/vmm/runner.h"
#include "harness/vmm/snapshot.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// BuilderArtifacts: the host files a builder VM boots from.
struct BuilderArtifacts {
  std::string kernel;        // PVH vmlinux (//images:vmlinux)
  std::string initrd;        // kiln initrd (//images:initrd)
  std::string builder_disk;  // ext4 builder root with /usr/local/bin/kiln-agent: Debian 13
                             // (//images/rootfs:builder_trixie_disk; rootless or rootful) or
                             // Debian 12 (//images/rootfs:builder_disk; rootful only)
};

// ValidateBuilderArtifacts(a): OkStatus if every path is set and readable; InvalidArgument
// naming an empty one, NotFound naming a missing one.
absl::Status ValidateBuilderArtifacts(const BuilderArtifacts& artifacts);

// kAgentPath: where the builder disk holds the agent.
inline constexpr char kAgentPath[] = "/usr/local/bin/kiln-agent";
// kBuilderUid: the unprivileged build user of the Debian 13 builder disk (`builder`, uid and
// gid 1000, subordinate ids 100000-165535): a rootless daemon runs as it, and
// BuilderVmOptions::delegate_cgroup delegates the cgroup v2 subtree to it.
inline constexpr int kBuilderUid = 1000;
// kBuilderModeRootless, kBuilderModeRootful: the values of BuilderVmOptions::builder_mode (the
// agent's --builder_mode). Rootless: dockerd + BuildKit under rootlesskit as kBuilderUid (the
// production stack; a RUN step's processes are uid 1000 in the guest). Rootful: dockerd as
// the guest's root (the only mode of the Debian 12 disk, whose stack has no rootless parts).
inline constexpr char kBuilderModeRootless[] = "rootless";
inline constexpr char kBuilderModeRootful[] = "rootful";

// kDefaultChannelName: the virtio-serial port name the agent serves.
inline constexpr char kDefaultChannelName[] = "kiln.agent";

// kDefaultMaxLogBytes: BuilderVmOptions::max_log_bytes' default (24 MiB; the agent's own cap,
// agent::kMaxJobLogBytes, is 8 MiB of text).
inline constexpr uint64_t kDefaultMaxLogBytes = uint64_t{24} << 20;
// kLogLineOverheadBytes: what JobLog charges per kept line on top of its text (the
// agent::Log object and its allocation).
inline constexpr uint64_t kLogLineOverheadBytes = 64;
// kDefaultMaxImageBytes: BuilderVmOptions::max_image_bytes' default (8 GiB).
inline constexpr uint64_t kDefaultMaxImageBytes = uint64_t{8} << 30;

// WarmMode: whether a builder VM is booted or restored from a warm snapshot (issue 12;
// harness/vmm/snapshot.h, docs in harness/README.md "Warm builders"). QEMU and Cloud
// Hypervisor (harness/builder/warm_backend.h).
//   kOff   boot it (cold).
//   kAuto  restore it from the snapshot of this exact configuration, making the snapshot first
//          if the cache has none; a backend without snapshots (MakeWarmBackend fails) boots
//          cold.
//   kOn    the same, but a backend without snapshots is an error (FailedPrecondition).
// In both warm modes a snapshot that cannot be made or restored falls back to a cold boot,
// and BuilderRun::warm says so.
enum class WarmMode { kOff, kAuto, kOn };
// WarmModeName(m): "off" / "auto" / "on". ParseWarmMode: the inverse; InvalidArgument naming
// the text otherwise.
const char* WarmModeName(WarmMode mode);
absl::StatusOr<WarmMode> ParseWarmMode(absl::string_view text);

// BuilderVmOptions: one builder VM.
struct BuilderVmOptions {
  std::string id = "builder";  // VM id ([A-Za-z0-9._-]+), names its work/log dirs
  std::string cgroup = "rw";   // kiln.cgroup: rw | ro | off (off: negative control)
  // builder_mode: the agent's --builder_mode, kBuilderModeRootless (default, as production
  // runs BuildKit) or kBuilderModeRootful. BuilderVm::Boot refuses another value.
  std::string builder_mode = kBuilderModeRootless;
  // delegate_cgroup: with cgroup "rw", add kiln.delegate=<kBuilderUid> to the cmdline: init
  // creates /sys/fs/cgroup/kiln-builder owned by uid 1000 (cgroup.procs, cgroup.threads,
  // cgroup.subtree_control writable, controllers enabled: cgroup v2 delegation, as systemd
  // does for a user session), which the rootless daemon needs (the agent refuses rootless
  // mode without it). Ignored with cgroup "ro"/"off" (init refuses to delegate there). Set
  // false only to show that refusal (group builder-rootless-undelegated).
  bool delegate_cgroup = true;
  int vcpus = 2;
  int memory_mib = 1024;
  // deadline: the VM's whole life; the VM is killed when it passes.
  absl::Duration deadline = absl::Seconds(300);
  // ready_timeout: from VMM start to the agent's Ready.
  absl::Duration ready_timeout = absl::Seconds(120);
  // stall_timeout: a job whose agent sends no frame for this long is cut off (lockup event).
  absl::Duration stall_timeout = absl::Seconds(90);
  // poweroff_grace: after the host closes the channel, how long the VM may take to go away
  // before it is killed.
  absl::Duration poweroff_grace = absl::Seconds(10);
  // oom_quiet_timeout: once the serial log shows an OOM kill, an agent silent for this long
  // is given up on (ResourceExhausted, out of memory) instead of waiting for stall_timeout.
  absl::Duration oom_quiet_timeout = absl::Seconds(20);
  // max_log_bytes: per job, the Log lines the host keeps (JobLog; head + tail). >= 2 * 64 KiB.
  uint64_t max_log_bytes = kDefaultMaxLogBytes;
  // max_image_bytes: the largest image archive accepted from the agent (ResourceExhausted
  // beyond it; the partial file is deleted).
  uint64_t max_image_bytes = kDefaultMaxImageBytes;
  // memory_flag: the option that sets memory_mib, named in the out-of-memory message.
  std::string memory_flag = "--builder_memory_mib";
  std::string channel_name = kDefaultChannelName;
  // transport: how the agent serves the channel and the host connects. BuilderVm::Boot sets it
  // from factory.vmm().channel_transport(), so callers leave it alone; the pure functions
  // below read it. kHybridVsock: the agent listens on AF_VSOCK `vsock_port`.
  ChannelTransport transport = ChannelTransport::kVirtioSerial;
  // vsock_port: the agent's AF_VSOCK port under kHybridVsock (VmConfig channel vsock_port).
  uint32_t vsock_port = kDefaultVsockPort;
  // extra_cmdline: more kernel command line (appended). The default avoids kmem accounting in
  // memory cgroups (the first runc memory cgroup was where TCG soft lockups hit, platform
  // notes).
  std::string extra_cmdline = "cgroup.memory=nokmem";
  // agent_retry_ms: the agent's --retry_ms (how fast it reopens the port).
  int agent_retry_ms = 50;
  // agent_flags: more agent flags (space-separated, no quotes), e.g. "--prewarm=false".
  std::string agent_flags;
  // on_progress: if set, called on the calling thread with one line per VM phase as it
  // happens (issue 18, for live progress): "booting VM <id> (<vmm>)", "agent ready in <n> ms
  // (<agent version>)", "retrying with VM <id>: <reason>", "VM <id> kept for kilnctl
  // builders". Never called with secret values.
  std::function<void(absl::string_view line)> on_progress;
  // keep: keep_failed_builders (issue 6). With keep.keep_failed_builders the agent runs
  // without --once (it serves again after the host closes the channel) and with
  // --keep_failed_jobs (a failed job's context and daemon state stay), the VM is booted
  // detachable, registered in keep.state_dir after Ready, and a failed build (non-zero
  // exit_status, or refused) leaves it running and recorded for `kilnctl builders` (ttl,
  // max_kept). Successful builders are always torn down.
  KeepPolicy keep;
  // warm: see WarmMode. A warm builder's agent runs without --once (it serves again after the
  // session that made the snapshot), and a warm VM is killed at Shutdown (its guest RAM dies
  // with QEMU; the snapshot file is never written after it was made).
  WarmMode warm = WarmMode::kOff;
  // warm_daemon: with warm on, the snapshot also holds the BuildKit daemon running (the agent's
  // WarmUp, agent/PROTOCOL.md 1.1) with warm_preload loaded into it, so the first job on a
  // restored VM skips the daemon start and those loads. The daemon serves that one job only
  // (later jobs in the same VM start their own, as cold ones do). Part of the snapshot key.
  // An agent without the "warm" capability fails the snapshot (FailedPrecondition), so the
  // run falls back to a cold boot and says why.
  bool warm_daemon = true;
  // warm_preload: the base images loaded into the warm daemon, (ref, host path) as
  // BuildRequest::preload. Empty: RunBuilderJobs uses its first job's preload. A job's preload
  // that is the same (ref, path) is not sent again to the first job of a restored VM.
  std::vector<std::pair<std::string, std::string>> warm_preload;
  // snapshot_dir: the snapshot cache (harness/vmm/snapshot.h); "": DefaultSnapshotDir().
  std::string snapshot_dir;
  uint64_t snapshot_max_bytes = kDefaultSnapshotMaxBytes;
};

// ValidateBuilderVmOptions(options): OkStatus, or InvalidArgument naming a builder_mode other
// than rootless/rootful or a cgroup other than rw/ro/off.
absl::Status ValidateBuilderVmOptions(const BuilderVmOptions& options);

// BuilderCmdline(options): the kiln.* kernel command line of a builder VM (pure):
//   kiln.root=/dev/vda kiln.cgroup=<cgroup> [kiln.delegate=1000] kiln.exec="<agent>
//   --channel=<channel> --once --retry_ms=<n> --builder_mode=<mode> [agent_flags]"
//   <extra_cmdline>
// kiln.delegate=1000 when delegate_cgroup and cgroup is "rw";
// where <channel> is virtio-serial:<channel_name> (transport kVirtioSerial) or
// vsock:<vsock_port> (kHybridVsock; agent/agent_main.cc); with
// options.keep.keep_failed_builders, --keep_failed_jobs instead of --once (the agent serves
// again after a session, and leaves a failed job's dir for inspection); with options.warm other
// than kOff, no --once either.
std::string BuilderCmdline(const BuilderVmOptions& options);

// BuilderVmConfig(options, artifacts, socket_path): the VmConfig (pure): id, kernel, initrd,
// the builder disk read-only as /dev/vda, BuilderCmdline, the channel (name, host unix socket
// `socket_path`, guest CID 3, vsock_port), vCPUs, memory, deadline, detachable =
// keep.keep_failed_builders. work_dir is left to VmFactory.
VmConfig BuilderVmConfig(const BuilderVmOptions& options, const BuilderArtifacts& artifacts,
                         const std::string& socket_path);

// BuildRequest: one build job as the host sends it.
struct BuildRequest {
  std::string job_id;       // identifier ([A-Za-z0-9][A-Za-z0-9_.-]*)
  std::string context_tar;  // host path of the context tar (required)
  std::string dockerfile;   // Dockerfile contents; empty: dockerfile_path inside the context
  std::string dockerfile_path = "Dockerfile";
  std::vector<agent::BuildArg> build_args;
  std::string target;
  agent::NetworkMode network = agent::NetworkMode::kNone;
  // secrets: sent as Secret messages before the job (id -> value bytes).
  std::map<std::string, std::string> secrets;
  // secret_ids: the ids the job names (normally the keys of `secrets`; a test may name one
  // it did not send, which the agent must refuse).
  std::vector<std::string> secret_ids;
  // preload: base images, (ref, host path of a docker-archive / OCI archive).
  std::vector<std::pair<std::string, std::string>> preload;
  std::string tag;
  uint64_t deadline_ms = 0;  // the agent's budget for the job; 0: the agent's default
  // image_out: where the received image archive is written (required if one comes back).
  std::string image_out;
  // on_log: if set, called with each Log line as it arrives from the agent (before JobLog
  // keeps or drops it; issue 18's live log), on the calling thread. The agent has redacted it.
  std::function<void(const agent::Log& line)> on_log;
};

// JobLog: the Log lines of one job as the host keeps them: lines are kept in order while their
// cost (text bytes + kLogLineOverheadBytes each) fits in the first half of max_bytes; after
// that the last lines that fit in the second half are kept. Finish() returns head, then (if
// anything was dropped) one kSystem line "[kiln host: dropped <n> bytes in <m> log lines of
// this job (the host keeps <max_bytes> bytes: the first and the last half)]", then tail.
// Memory: at most about 2 * max_bytes (container growth included). Not thread-safe.
class JobLog {
 public:
  // REQUIRES: max_bytes >= 2 * kLogLineOverheadBytes.
  explicit JobLog(uint64_t max_bytes);
  void Add(agent::Log line);
  // Finish(): the kept lines (see above). Call once.
  std::vector<agent::Log> Finish();
  uint64_t received_bytes() const { return received_bytes_; }  // text bytes of every line
  uint64_t received_lines() const { return received_lines_; }
  uint64_t dropped_bytes() const { return dropped_bytes_; }    // text bytes not kept
  uint64_t dropped_lines() const { return dropped_lines_; }

 private:
  static uint64_t Cost(const agent::Log& l) { return l.text.size() + kLogLineOverheadBytes; }
  uint64_t max_bytes_, head_budget_, tail_budget_;
  uint64_t head_cost_ = 0, tail_cost_ = 0;
  bool cut_ = false;  // the head is full: every later line goes to the tail
  std::vector<agent::Log> head_;
  std::deque<agent::Log> tail_;
  uint64_t received_bytes_ = 0, received_lines_ = 0, dropped_bytes_ = 0, dropped_lines_ = 0;
  uint64_t last_dropped_time_ms_ = 0;
};

// BuilderHostMemoryBound(options): the stated bound, in bytes, of the guest-controlled data one
// BuilderVm holds while a job runs: 2 * max_log_bytes (JobLog) + 4 * agent::kMaxPayload (the
// frame decoder's buffer, a frame, its decoded message) + the SerialLogFollower's (2 MiB head
// + 2 * 2 MiB tail + 64 KiB read buffer + 5 MiB parser worst case) + 1 MiB: 64 MiB (and
// 68 KiB) with the defaults.
uint64_t BuilderHostMemoryBound(const BuilderVmOptions& options);

// BuildResponse: what came back for one job.
struct BuildResponse {
  std::string job_id;
  // refused: the agent's Error reply instead of a BuildResult (the job was refused; BuildKit
  // never ran). OK when a BuildResult came.
  absl::Status refused;
  std::optional<agent::BuildResult> result;
  std::vector<agent::Log> logs;  // the Log lines kept (JobLog: all, or head + note + tail)
  uint64_t log_bytes = 0;          // text bytes of every Log line received
  uint64_t log_dropped_bytes = 0;  // of those, not kept (over max_log_bytes)
  uint64_t log_dropped_lines = 0;
  std::string image_path;        // "" if no image came back
  uint64_t image_bytes = 0;
  uint64_t context_bytes = 0;    // bytes of the context tar sent
  uint64_t preload_bytes = 0;    // bytes of all preload archives sent
  absl::Duration send_to_result;  // job sending started -> BuildResult (or Error) read
  absl::Duration send_to_image;   // job sending started -> image stream complete
  absl::Time result_at;           // when the BuildResult (or Error) was read

  // PhaseMs(name): the guest-reported duration of phase `name`, or -1.
  int64_t PhaseMs(absl::string_view name) const;
  // LogText(): all log lines joined with '\n'.
  std::string LogText() const;
};

struct BuilderRun;

// BuilderVm: one booted builder VM and its channel. Not thread-safe.
class BuilderVm {
 public:
  // Boot(factory, artifacts, options): boots the VM (factory.Boot; the factory owns it, this
  // object kills it when destroyed), with options.transport replaced by
  // factory.vmm().channel_transport(). Errors: ValidateBuilderArtifacts's,
  // ValidateBuilderVmOptions's (nothing booted); Vmm::Boot's.
  static absl::StatusOr<std::unique_ptr<BuilderVm>> Boot(VmFactory& factory,
                                                         const BuilderArtifacts& artifacts,
                                                         const BuilderVmOptions& options);

  // WaitReady(): connects to the channel (ConnectChannelOnce, retried with backoff while
  // IsRetryableConnectError: the socket is not there yet, or under CH the guest agent does not
  // listen yet; the guest is checked between attempts) and handshakes (Hello -> Ready) within
  // options.ready_timeout of the boot. Errors: Aborted if the VMM exited, init failed or the
  // guest got stuck (stuck() tells) before Ready; DeadlineExceeded if the channel did not
  // connect or Ready did not come in time (with the attempt count and last connect error);
  // FailedPrecondition if the agent does not offer "build" or speaks another major version,
  // or the hybrid vsock peer answered something other than "OK <n>"; InvalidArgument for a
  // bad socket path. Messages end with the serial log tail.
  absl::Status WaitReady();

  // BootWarm(factory, artifacts, options, run): the warm start (WarmMode): makes or finds the
  // snapshot (through the VMM's WarmBackend, harness/builder/warm_backend.h), restores a VM
  // from it, WaitReady (the host connects anew), then makes it its own machine (Exec of
  // `kiln-agent --fresh_machine`: the host's clock and 64 fresh seed bytes). Fills run's warm
  // fields. A snapshot that fails to restore is removed from the cache. Errors: any step's; the
  // caller falls back to Boot (cold). FailedPrecondition if the backend has no snapshots
  // (MakeWarmBackend).
  static absl::StatusOr<std::unique_ptr<BuilderVm>> BootWarm(VmFactory& factory,
                                                             const BuilderArtifacts& artifacts,
                                                             const BuilderVmOptions& options,
                                                             BuilderRun* run);

  // BootForRun(factory, artifacts, options, run): RunBuilderJobs's boot step. options.warm
  // kOff: Boot. kAuto/kOn: BootWarm; if that fails (or kAuto on a backend without snapshots),
  // Boot cold with warm off, run->warm saying why. kOn on a backend without snapshots:
  // FailedPrecondition (nothing booted).
  static absl::StatusOr<std::unique_ptr<BuilderVm>> BootForRun(VmFactory& factory,
                                                               const BuilderArtifacts& artifacts,
                                                               const BuilderVmOptions& options,
                                                               BuilderRun* run);

  // Start(factory, artifacts, options): Boot + WaitReady.
  static absl::StatusOr<std::unique_ptr<BuilderVm>> Start(VmFactory& factory,
                                                          const BuilderArtifacts& artifacts,
                                                          const BuilderVmOptions& options);
  ~BuilderVm();

  // Build(request): sends the secrets, the BuildJob and its streams, then reads Log lines
  // (JobLog, options.max_log_bytes) until the BuildResult (or the agent's Error:
  // BuildResponse::refused), then the image stream into request.image_out (at most
  // options.max_image_bytes; the file is deleted if the stream fails). Errors (the channel or
  // the VM failed; the VM should be discarded): InvalidArgument for a bad request (nothing
  // sent); ResourceExhausted for an image over max_image_bytes, or a guest out of memory (the
  // OOM killer ran and then the guest locked up, exited or stayed silent for
  // oom_quiet_timeout); Aborted when the guest got stuck or the VMM exited; DeadlineExceeded
  // on a stall or the VM deadline; the channel's errors. On any error the VM has been killed
  // if it was stuck/stalled/out of memory.
  absl::StatusOr<BuildResponse> Build(const BuildRequest& request);

  // GuestExec: what Exec returned: the command's exit code (-1 if killed by a signal) and its
  // stdout/stderr (each at most 64 KiB kept).
  struct GuestExec {
    int exit_code = 0;
    std::string out, err;
  };
  // Exec(argv, stdin_data, timeout): runs a command in the guest through the agent's Exec on
  // this VM's channel (after WaitReady, between jobs; the warm start's --fresh_machine and the
  // warm VM test use it). Errors: FailedPrecondition if the VM is not ready or shut down; the
  // agent's Error reply; the channel's and the watched VM's (ReadFrameWatched) errors.
  absl::StatusOr<GuestExec> Exec(std::vector<std::string> argv, std::string stdin_data,
                                 absl::Duration timeout);

  // Shutdown(): closes the channel (the agent exits, init powers off), waits up to
  // poweroff_grace for the VMM to exit, then kills it. Returns how long the VM took to go
  // away (host clock, from the call). Idempotent. In keep mode the agent does not exit on
  // close, so the VM is killed at once (QEMU quits on SIGTERM).
  absl::Duration Shutdown();

  // Detach(factory): for a kept builder: closes the channel (the agent, without --once,
  // serves again) and releases the VM from `factory` (VmFactory::Release): it keeps running
  // with its socket and work dir after this object and the factory are gone. Errors:
  // Release's (FailedPrecondition if not booted detachable or already exited).
  absl::Status Detach(VmFactory& factory);

  // stuck(): the guest showed a soft lockup / panic, or stalled past a timeout, and had not
  // run out of memory; stuck_reason().
  bool stuck() const { return !stuck_reason_.empty(); }
  // out_of_memory(): GuestOomMessage once the serial log showed the OOM killer ("" before).
  const std::string& out_of_memory() const { return oom_; }
  const std::string& stuck_reason() const { return stuck_reason_; }
  const agent::Ready& ready() const { return ready_; }
  // channel_address(): where and how WaitReady connects.
  ChannelAddress channel_address() const {
    return {options_.transport, socket_path_, options_.vsock_port};
  }
  // connect_attempts(): how many ConnectChannelOnce attempts WaitReady made.
  int connect_attempts() const { return connect_attempts_; }
  // vmm_start_to_ready(): VMM start (Boot) -> Ready received.
  absl::Duration vmm_start_to_ready() const { return ready_at_ - boot_at_; }
  absl::Time boot_time() const { return boot_at_; }
  Vm& vm() { return *vm_; }
  // SerialLog(): the guest serial log so far (SerialLogFollower::Text: head and tail if
  // long). Reads what was appended since the last read.
  std::string SerialLog();
  // console(): the parse of the whole serial log so far (as of the last read).
  const ConsoleResult& console() const { return serial_.console(); }

 private:
  BuilderVm(Vm* vm, BuilderVmOptions options, absl::Time boot_at, std::string socket_path);
  // BootConfig: Boot, with `adjust` (if set) called on the VmConfig before it boots, given the
  // VM's short socket dir (the warm flow's WarmBackend: a QMP socket, restore_from, a RAM file).
  static absl::StatusOr<std::unique_ptr<BuilderVm>> BootConfig(
      VmFactory& factory, const BuilderArtifacts& artifacts, const BuilderVmOptions& options,
      const std::function<void(const std::string& socket_dir, VmConfig* config)>& adjust);
  // FreshMachine(): the --fresh_machine Exec on the open channel (see BootWarm).
  absl::Status FreshMachine();
  // WarmUpDaemon(preload): the WarmUp request (agent/PROTOCOL.md 1.1) with `preload`'s
  // archives as its streams; reads Log lines until the BuildResult "warm-up". Returns the
  // agent's daemon start + load time (its phases). Errors: FailedPrecondition with the agent's
  // error when exit_status != 0; the agent's Error; the channel's.
  absl::StatusOr<absl::Duration> WarmUpDaemon(
      const std::vector<std::pair<std::string, std::string>>& preload);
  std::string control_socket() const;
  // Waits for one frame in slices, checking the VM (exit, lockup, deadlines) between them.
  absl::StatusOr<agent::Frame> ReadFrameWatched(absl::Time stall_deadline, absl::string_view what);
  // The VM's state as an error (or OK if it may go on); marks stuck_reason_.
  absl::Status CheckGuest(absl::string_view what);
  absl::Status Fail(absl::StatusCode code, absl::string_view message);
  // The out-of-memory error (ResourceExhausted: oom_, what was going on, the serial tail).
  absl::Status OomError(absl::string_view what);

  Vm* vm_;
  BuilderVmOptions options_;
  std::string socket_path_;
  absl::Time boot_at_;
  absl::Time ready_at_;
  absl::Time last_serial_check_ = absl::InfinitePast();
  absl::Time last_guest_check_ = absl::InfinitePast();
  absl::Time last_frame_at_ = absl::InfinitePast();
  absl::Time oom_at_ = absl::InfinitePast();
  SerialLogFollower serial_;
  std::string oom_;
  std::unique_ptr<agent::FdStream> stream_;
  std::unique_ptr<agent::Connection> conn_;
  agent::Ready ready_;
  uint32_t next_stream_ = 1;
  // warm_preloaded_: "<ref>\n<path>" of the base images the restored VM's warm daemon holds;
  // the first Build does not send them again (and clears this: the daemon serves one job).
  std::set<std::string> warm_preloaded_;
  int connect_attempts_ = 0;
  std::string stuck_reason_;
  bool shut_down_ = false;
};

// BuilderRun: the jobs of one builder VM (and its retry), with host-side timings.
struct BuilderRun {
  std::string vm_id;           // of the attempt reported (e.g. "builder-ref-retry1")
  absl::Status status;         // OK if the VM came up and every job got an answer
  std::vector<BuildResponse> jobs;
  int attempts = 0;            // 1, or 2 after a retry
  int lockup_events = 0;       // guests cut off for a soft lockup / panic / stall
  // oom: GuestOomMessage of the reported attempt ("" if the OOM killer never ran). When the
  // VM ran out of memory (not a cgroup limit) and the run or a job failed, status is
  // ResourceExhausted with this message first.
  std::string oom;
  std::string retry_reason;    // why the first attempt was retried
  absl::Duration vmm_start_to_ready;
  absl::Duration vmm_start_to_first_result;  // VMM start -> first BuildResult (or Error)
  absl::Duration vmm_start_to_first_image;   // VMM start -> first job's image received
  absl::Duration last_result_to_vm_gone;     // last answer -> VMM exited (or killed)
  absl::Duration total;                      // all attempts
  int64_t vmm_peak_rss_bytes = 0;
  int memory_mib = 0;
  std::string serial_log;      // the reported attempt's serial log
  ConsoleResult console;       // parsed
  std::string log_dir;         // where its logs were saved ("" if nowhere); each job's
                               // kept Log lines (redacted by the agent) are saved there too,
                               // as build-<job_id>.log, beside serial.log
  std::vector<std::string> build_log_paths;  // those build-<job_id>.log files, in job order
  // kept_id: with keep_failed_builders, the id of the builder kept for `kilnctl builders`
  // ("" if none was kept); keep_status: why keeping (registering, recording) failed, if it
  // did (the build's own result is in status/jobs; a failed keep tears the VM down).
  std::string kept_id;
  absl::Status keep_status;
  // Warm builders (BuilderVmOptions::warm): warm is "cold" (warm off), "restored" (from a
  // cached snapshot), "made+restored" (the snapshot was made first, by a VM "<id>-snapshot"),
  // or "cold (fallback: <why>)" when warm was asked for and the snapshot failed.
  std::string warm = "cold";
  std::string snapshot_key;           // "" when cold
  absl::Duration snapshot_make;       // making the snapshot (boot + save), if made
  absl::Duration restore_to_ready;    // restored VMM start -> agent Ready
  absl::Duration fresh_machine;       // the --fresh_machine Exec (clock + entropy)
  // snapshot_ram: where the snapshot keeps guest RAM: QEMU "file" or "stream"
  // (QemuVmm::SnapshotRamMode; "stream (fallback: ...)" says why file was not used); Cloud
  // Hypervisor "memory-ranges" (its snapshot file, copied into guest RAM on restore); "" cold.
  std::string snapshot_ram;
  // warm_daemon: "up" when the restored VM's snapshot holds a running daemon with the base
  // images loaded (BuilderVmOptions::warm_daemon), "" otherwise; warm_up: the agent's daemon
  // start + loads while the snapshot was made (only when made now).
  std::string warm_daemon;
  absl::Duration warm_up;
};

// RunBuilderJobs(factory, artifacts, options, jobs): boots a builder VM, runs `jobs` in order
// (one session; the agent gives each job fresh daemons and a fresh data root, and wipes the
// job's secrets after it), shuts the VM down, saves its logs. A stuck guest (lockup, panic,
// stall) is cut off, counted, and the whole VM is retried once with the same jobs; a guest
// out of memory is not (BuilderRun::oom). With
// options.keep.keep_failed_builders: the VM is registered (harness/keep/keep_builder.h) after
// Ready; if every job got an answer and one failed (refused, or exit_status != 0), it is kept
// (KeepFailedBuilder + Detach) instead of shut down, else its record is released. Never
// fails: BuilderRun::status says what went wrong.
BuilderRun RunBuilderJobs(VmFactory& factory, const BuilderArtifacts& artifacts,
                          const BuilderVmOptions& options, const std::vector<BuildRequest>& jobs);

// SymlinkMode: how WriteDirectoryTar treats symlinks below the directory.
enum class SymlinkMode {
  kKeep,    // archive them as symlinks (the context's own links)
  kFollow,  // archive what they point to (e.g. a Bazel runfiles tree, made of symlinks)
};

// WriteDirectoryTar(dir, out_path, mode): a deterministic ustar of the regular files,
// directories and symlinks below `dir` (sorted, mtime 0, root-owned), for a build context.
// Returns the number of bytes written. InvalidArgument for another file type or a name longer
// than 99 bytes; errno-derived codes for file errors (a dangling link with kFollow: NotFound).
absl::StatusOr<uint64_t> WriteDirectoryTar(const std::string& dir, const std::string& out_path,
                                           SymlinkMode mode = SymlinkMode::kKeep);

}  // namespace kiln::harness

#endif  // KILN_HARNESS_BUILDER_CLIENT_H_
