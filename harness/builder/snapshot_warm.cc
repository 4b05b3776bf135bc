// File: harness/builder/snapshot_warm.cc
// The warm parts of the builder client (harness/builder/builder_client.h: WarmMode, BuilderVm::BootWarm,
// BuilderVm::BootForRun; issue 12). Part of //harness/builder:builder_client.
//
// The flow of a warm start (QEMU):
//   1. the snapshot key (harness/vmm/snapshot.h) of this builder config: file digests (memoized),
//      the QEMU argv with the per-VM names blanked, the kernel command line, the VMM version;
//   2. SnapshotCache::GetOrMake: if missing (made once, under the key's flock), boot a VM
//      "<id>-snapshot" with a QMP socket, wait for the agent's Ready (no job, no secret has been
//      sent: the channel carried only Hello/Ready), close the channel, SaveQemuSnapshot (stop,
//      migrate to the cache's temp file, quit);
//   3. boot the same config with restore_from (QEMU -incoming), ResumeQemuVm (`cont`), connect
//      and Hello/Ready again: the guest agent has kept its virtio-serial port open across the
//      save (ServeLoopOptions::keep_open_on_eof), so when the new QEMU's chardev gets a client the
//      port reopens and it reads the new Hello;
//   4. FreshMachine: Exec `kiln-agent --fresh_machine` with the host's clock and 64 seed bytes.
// The guest disk is attached read-only (BuilderVmConfig) and every job's data lives in guest RAM
// (tmpfs), which dies with the restored QEMU: nothing a job does reaches the snapshot file.
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/fresh_machine.h"
#include "agent/protocol/stream.h"
#include "harness/builder/builder_client.h"
#include "harness/vmm/qemu.h"
#include "harness/vmm/snapshot.h"
#include "harness/vmm/snapshot_qmp.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

constexpr int kWarmWriteTimeoutMs = 60000;
constexpr absl::Duration kSaveTimeout = absl::Seconds(120);
constexpr absl::Duration kResumeTimeout = absl::Seconds(60);
constexpr absl::Duration kFreshMachineTimeout = absl::Seconds(30);
// kWarmUpTimeout: the agent's budget for the daemon start + base image loads (rootless under
// TCG on a loaded host: 20-60 s).
constexpr absl::Duration kWarmUpTimeout = absl::Seconds(180);

// WarmKeyInputs: the snapshot key inputs of `options` booted by `qemu`.
absl::StatusOr<SnapshotKeyInputs> WarmKeyInputs(SnapshotCache& cache, const QemuVmm& qemu,
                                                const BuilderArtifacts& a,
                                                const BuilderVmOptions& o) {
  SnapshotKeyInputs in;
  in.vmm = qemu.Name();
  in.vmm_version = qemu.version();
  ASSIGN_OR_RETURN(in.kernel_digest, cache.FileDigest(a.kernel));
  ASSIGN_OR_RETURN(in.initrd_digest, cache.FileDigest(a.initrd));
  ASSIGN_OR_RETURN(std::string disk, cache.FileDigest(a.builder_disk));
  in.disk_digests.push_back(absl::StrCat(disk, " ro"));
  in.memory_mib = o.memory_mib;
  in.vcpus = o.vcpus;
  // The argv shape: per-VM names and paths replaced by placeholders (their contents are in the
  // digests above).
  BuilderVmOptions shape = o;
  shape.id = "warm";
  BuilderArtifacts placeholders{"/KERNEL", "/INITRD", "/DISK"};
  VmConfig c = BuilderVmConfig(shape, placeholders, "/CHANNEL");
  c.work_dir = "/WORK";
  c.control_socket_path = "/QMP";
  ASSIGN_OR_RETURN(std::vector<std::string> argv,
                   QemuArgv(c, qemu.options(), qemu.tsc_khz()));
  in.devices = absl::StrJoin(argv, " ");
  in.cmdline = BuilderCmdline(o);
  in.cgroup = o.cgroup;
  in.builder_mode = o.builder_mode;
  if (o.warm_daemon) {
    in.daemon = "up";
    for (const auto& [ref, path] : o.warm_preload) {
      ASSIGN_OR_RETURN(std::string digest, cache.FileDigest(path));
      in.preloaded_images.push_back(absl::StrCat(ref, " ", digest));
    }
  }
  RETURN_IF_ERROR(ValidateSnapshotKeyInputs(in));
  return in;
}

}  // namespace

const char* WarmModeName(WarmMode mode) {
  switch (mode) {
    case WarmMode::kOff:
      return "off";
    case WarmMode::kAuto:
      return "auto";
    case WarmMode::kOn:
      return "on";
  }
  return "unknown";
}

absl::StatusOr<WarmMode> ParseWarmMode(absl::string_view text) {
  if (text == "off") return WarmMode::kOff;
  if (text == "auto") return WarmMode::kAuto;
  if (text == "on") return WarmMode::kOn;
  return absl::InvalidArgumentError(
      absl::StrCat("--warm=\"", text, "\": expected auto, on or off"));
}

std::string BuilderVm::control_socket() const {
  return absl::StrCat(socket_path_.substr(0, socket_path_.rfind('/')), "/qmp.sock");
}

absl::StatusOr<BuilderVm::GuestExec> BuilderVm::Exec(std::vector<std::string> argv,
                                                     std::string stdin_data,
                                                     absl::Duration timeout) {
  if (!conn_ || shut_down_) {
    return absl::FailedPreconditionError("the builder VM is not ready or shut down");
  }
  agent::Exec e;
  e.argv = std::move(argv);
  e.deadline_ms = absl::ToInt64Milliseconds(timeout);
  if (!stdin_data.empty()) {
    e.stdin_stream = next_stream_;
    next_stream_ += 2;
  }
  RETURN_IF_ERROR(agent::Validate(agent::Message(e)));
  RETURN_IF_ERROR(conn_->Send(e, kWarmWriteTimeoutMs));
  if (!stdin_data.empty()) {
    RETURN_IF_ERROR(conn_->SendBytes(e.stdin_stream, stdin_data, kWarmWriteTimeoutMs));
  }
  agent::StreamReceiver rx;
  agent::StringSink out, err;
  // The agent kills the command at its deadline and answers; give it 10 s more.
  const absl::Time deadline = absl::Now() + timeout + absl::Seconds(10);
  const std::string what = absl::StrCat("running ", e.argv[0], " in the guest");
  while (true) {
    ASSIGN_OR_RETURN(agent::Frame f, ReadFrameWatched(deadline, what));
    if (f.type == static_cast<uint8_t>(agent::FrameType::kChunk) ||
        f.type == static_cast<uint8_t>(agent::FrameType::kStreamEnd)) {
      RETURN_IF_ERROR(rx.OnFrame(f));
      continue;
    }
    ASSIGN_OR_RETURN(agent::Message m, agent::DecodeMessage(f));
    if (auto* s = std::get_if<agent::ExecStarted>(&m)) {
      RETURN_IF_ERROR(rx.Expect(s->stdout_stream, 64 << 10, &out));
      RETURN_IF_ERROR(rx.Expect(s->stderr_stream, 64 << 10, &err));
    } else if (auto* r = std::get_if<agent::ExecResult>(&m)) {
      GuestExec g;
      g.exit_code = r->exit_code;
      g.out = out.data();
      g.err = absl::StrCat(err.data(), r->error);
      return g;
    } else if (auto* em = std::get_if<agent::ErrorMessage>(&m)) {
      return agent::ToStatus(*em);
    } else {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": unexpected ", agent::MessageName(m), " from the agent"));
    }
  }
}

absl::Status BuilderVm::FreshMachine() {
  std::string seed(64, '\0');
  if (getrandom(seed.data(), seed.size(), 0) != static_cast<ssize_t>(seed.size())) {
    return PosixError(errno, "getrandom", "fresh machine seed");
  }
  // The host clock is read right before the request leaves (the Exec and its stdin follow
  // back to back; the guest sets it a process start later: tens of ms under TCG).
  ASSIGN_OR_RETURN(
      GuestExec g,
      Exec({kAgentPath, agent::kFreshMachineFlag},
           agent::FormatFreshMachineInput(absl::ToUnixNanos(absl::Now()), seed),
           kFreshMachineTimeout));
  if (g.exit_code != 0) {
    return absl::InternalError(absl::StrCat("kiln-agent --fresh_machine exited ", g.exit_code,
                                            ": ", g.err));
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Duration> BuilderVm::WarmUpDaemon(
    const std::vector<std::pair<std::string, std::string>>& preload) {
  if (!conn_ || shut_down_) {
    return absl::FailedPreconditionError("the builder VM is not ready or shut down");
  }
  if (std::find(ready_.capabilities.begin(), ready_.capabilities.end(),
                std::string(agent::kCapWarm)) == ready_.capabilities.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "agent ", ready_.agent_version, " does not offer \"warm\" (capabilities: ",
        absl::StrJoin(ready_.capabilities, ","), "): rebuild the builder disk"));
  }
  agent::WarmUp w;
  w.deadline_ms = absl::ToInt64Milliseconds(kWarmUpTimeout);
  for (const auto& [ref, path] : preload) {
    w.preload_images.push_back({ref, next_stream_});
    next_stream_ += 2;
  }
  RETURN_IF_ERROR(agent::Validate(agent::Message(w)));
  RETURN_IF_ERROR(conn_->Send(w, kWarmWriteTimeoutMs));
  for (size_t i = 0; i < preload.size(); ++i) {
    const int fd = ::open(preload[i].second.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return PosixError(errno, "open", preload[i].second);
    absl::StatusOr<uint64_t> n = conn_->SendFd(w.preload_images[i].stream_id, fd,
                                               kWarmWriteTimeoutMs);
    ::close(fd);
    RETURN_IF_ERROR(n.status());
  }
  const absl::Time deadline = absl::Now() + kWarmUpTimeout + absl::Seconds(30);
  std::vector<std::string> tail;
  while (true) {
    ASSIGN_OR_RETURN(agent::Frame f, ReadFrameWatched(deadline, "warming up the daemon"));
    ASSIGN_OR_RETURN(agent::Message m, agent::DecodeMessage(f));
    if (auto* l = std::get_if<agent::Log>(&m)) {
      tail.push_back(l->text);
      if (tail.size() > 20) tail.erase(tail.begin());
      continue;
    }
    if (auto* em = std::get_if<agent::ErrorMessage>(&m)) return agent::ToStatus(*em);
    auto* r = std::get_if<agent::BuildResult>(&m);
    if (r == nullptr || r->job_id != agent::kWarmUpJobId) {
      return absl::FailedPreconditionError(
          absl::StrCat("warming up the daemon: unexpected ", agent::MessageName(m)));
    }
    if (r->exit_status != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("the agent's WarmUp failed: ", r->error));
    }
    uint64_t ms = 0;
    for (const agent::Phase& p : r->phases) {
      if (p.name == "dockerd_start" || p.name == "preload") ms += p.duration_ms;
    }
    return absl::Milliseconds(ms);
  }
}

absl::StatusOr<std::unique_ptr<BuilderVm>> BuilderVm::BootWarm(VmFactory& factory,
                                                               const BuilderArtifacts& artifacts,
                                                               const BuilderVmOptions& options,
                                                               BuilderRun* run) {
  auto* qemu = dynamic_cast<QemuVmm*>(&factory.vmm());
  if (qemu == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "warm builders need QEMU (snapshots), the VMM is ", factory.vmm().Name()));
  }
  RETURN_IF_ERROR(ValidateBuilderArtifacts(artifacts));
  RETURN_IF_ERROR(ValidateBuilderVmOptions(options));
  BuilderVmOptions o = options;
  o.transport = factory.vmm().channel_transport();
  auto progress = [&o](absl::string_view line) {
    if (o.on_progress) o.on_progress(line);
  };
  ASSIGN_OR_RETURN(SnapshotCache cache,
                   SnapshotCache::Open({o.snapshot_dir, o.snapshot_max_bytes}));
  ASSIGN_OR_RETURN(SnapshotKeyInputs in, WarmKeyInputs(cache, *qemu, artifacts, o));
  // Guest RAM in the entry's `ram` file (mapped, copy-on-write, on restore) or in the stream.
  const SnapshotRamDecision& ram = qemu->SnapshotRamMode();
  const bool ram_file = ram.mode == SnapshotRam::kFile;
  in.ram_mode = SnapshotRamName(ram.mode);
  run->snapshot_ram = ram_file ? "file" : ram.reason;
  const std::string key = SnapshotKey(in);
  run->snapshot_key = key;
  const absl::Time make_start = absl::Now();
  ASSIGN_OR_RETURN(
      SnapshotLease lease,
      cache.GetOrMake(key, SnapshotKeyText(in), [&](const std::string& state_path) -> absl::Status {
        BuilderVmOptions so = o;
        so.id = absl::StrCat(o.id, "-snapshot");
        progress(absl::StrCat("making warm snapshot ", key.substr(0, 12), " (VM ", so.id, ")"));
        const std::string ram_path =
            absl::StrCat(state_path.substr(0, state_path.rfind('/')), "/ram");
        ASSIGN_OR_RETURN(std::unique_ptr<BuilderVm> maker,
                         BootConfig(factory, artifacts, so, /*control=*/true, "",
                                    ram_file ? ram_path : "", /*memory_shared=*/true));
        RETURN_IF_ERROR(maker->WaitReady());
        if (o.warm_daemon) {
          // The daemon up and the base images loaded before any job: no secret, no job data.
          ASSIGN_OR_RETURN(absl::Duration up, maker->WarmUpDaemon(o.warm_preload));
          run->warm_up = up;
          progress(absl::StrCat("warm daemon up with ", o.warm_preload.size(),
                                " base images in ", absl::ToInt64Milliseconds(up), " ms"));
        }
        // Only Hello/Ready (and the WarmUp with its base images) went over the channel. Close
        // it: the agent reads end of stream and waits for the next host on its open port.
        maker->conn_.reset();
        if (maker->stream_) (void)maker->stream_->Close();
        maker->stream_.reset();
        ASSIGN_OR_RETURN(SaveStats stats,
                         SaveQemuSnapshot(maker->control_socket(), state_path, kSaveTimeout,
                                          ram.mode));
        progress(absl::StrCat("snapshot saved (RAM: ", ram.reason, "): ", stats.state_bytes,
                              " bytes in ",
                              absl::ToInt64Milliseconds(stats.migrate), " ms (", stats.uri,
                              stats.features.mapped_ram ? ", mapped-ram available" : "", ")"));
        (void)maker->vm().Wait(absl::Seconds(10));
        maker->shut_down_ = true;
        return absl::OkStatus();
      }));
  if (lease.made()) run->snapshot_make = absl::Now() - make_start;
  ASSIGN_OR_RETURN(std::unique_ptr<BuilderVm> vm,
                   BootConfig(factory, artifacts, o, /*control=*/true, lease.state_path(),
                              ram_file ? lease.ram_path() : "", /*memory_shared=*/false));
  BuilderVm* restored = vm.get();
  absl::StatusOr<absl::Duration> resumed = ResumeQemuVm(
      vm->vm().config(), kResumeTimeout, [restored] { return restored->vm().Exited(); });
  if (!resumed.ok()) {
    // A state file QEMU cannot load is useless: drop it so the next run makes a new one.
    vm->vm().Kill();
    lease = SnapshotLease();
    (void)cache.Remove(key);
    return absl::Status(resumed.status().code(),
                        absl::StrCat(resumed.status().message(), "; QEMU log: ",
                                     vm->vm().vmm_log_path()));
  }
  RETURN_IF_ERROR(vm->WaitReady());
  run->restore_to_ready = vm->vmm_start_to_ready();
  const absl::Time f0 = absl::Now();
  RETURN_IF_ERROR(vm->FreshMachine());
  run->fresh_machine = absl::Now() - f0;
  run->warm = lease.made() ? "made+restored" : "restored";
  if (o.warm_daemon) {
    run->warm_daemon = "up";
    for (const auto& [ref, path] : o.warm_preload) {
      vm->warm_preloaded_.insert(absl::StrCat(ref, "\n", path));
    }
  }
  progress(absl::StrCat("VM ", o.id, " ", run->warm, " from snapshot ", key.substr(0, 12),
                        ": agent ready ", absl::ToInt64Milliseconds(run->restore_to_ready),
                        " ms after QEMU start; clock and entropy fresh in ",
                        absl::ToInt64Milliseconds(run->fresh_machine), " ms"));
  return vm;
}

absl::StatusOr<std::unique_ptr<BuilderVm>> BuilderVm::BootForRun(VmFactory& factory,
                                                                 const BuilderArtifacts& artifacts,
                                                                 const BuilderVmOptions& options,
                                                                 BuilderRun* run) {
  run->warm = "cold";
  run->snapshot_key.clear();
  if (options.warm == WarmMode::kOff) return Boot(factory, artifacts, options);
  const bool qemu = dynamic_cast<QemuVmm*>(&factory.vmm()) != nullptr;
  if (!qemu && options.warm == WarmMode::kOn) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--warm=on: the ", factory.vmm().Name(),
        " backend is not wired into the warm flow (QEMU only): Cloud Hypervisor's save/restore "
        "exists (SaveChSnapshot, CloudHypervisorVmm::Restore in harness/vmm/cloud_hypervisor.h) but "
        "BootWarm's snapshot key, WarmUp save and hybrid-vsock reconnect are QEMU's"));
  }
  BuilderVmOptions cold = options;
  cold.warm = WarmMode::kOff;
  if (!qemu) return Boot(factory, artifacts, cold);
  absl::StatusOr<std::unique_ptr<BuilderVm>> warm = BootWarm(factory, artifacts, options, run);
  if (warm.ok()) return warm;
  run->warm = absl::StrCat("cold (fallback: ", warm.status().ToString(), ")");
  if (options.on_progress) {
    options.on_progress(absl::StrCat("warm start failed, booting cold: ", warm.status().ToString()));
  }
  cold.id = absl::StrCat(options.id, "-cold");
  return Boot(factory, artifacts, cold);
}

}  // namespace kiln::harness
