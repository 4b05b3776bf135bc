// File: harness/builder/snapshot_warm.cc
// The warm parts of the builder client (harness/builder/builder_client.h: WarmMode, BuilderVm::BootWarm,
// BuilderVm::BootForRun; issue 12). Part of //harness/builder:builder_client. What differs
// between VMMs is the WarmBackend's (harness/builder/warm_backend.h: QEMU, Cloud Hypervisor).
//
// The flow of a warm start:
//   1. the snapshot key (harness/vmm/snapshot.h) of this builder config: file digests (memoized),
//      the VMM's view of the config with per-VM names blanked (QEMU's argv, CH's VmConfig JSON),
//      the kernel command line, the VMM and its version (WarmSnapshotKeyInputs);
//   2. SnapshotCache::GetOrMakeDir: if missing (made once, under the key's flock), boot a VM
//      "<id>-snapshot" (WarmBackend::PrepareSave: QEMU's QMP socket and RAM file), wait for the
//      agent's Ready (no job, no secret has been sent: the channel carried only Hello/Ready and
//      the WarmUp with its base images), close the channel, WarmBackend::Save into the entry
//      (QEMU: stop, migrate to <entry>/state, quit; CH: vm.pause, vm.snapshot: config.json,
//      state.json, memory-ranges);
//   3. boot the same config restored (WarmBackend::PrepareRestore: VmConfig::restore_from),
//      WarmBackend::Resume (QEMU `cont`; CH's Restore resumed it), connect and Hello/Ready
//      again. The guest agent (without --once) serves again after the snapshot session: under
//      QEMU it kept its virtio-serial port open across the save (ServeLoopOptions::
//      keep_open_on_eof), so when the new QEMU's chardev gets a client the port reopens and it
//      reads the new Hello; under CH its AF_VSOCK listener survives the restore and accepts the
//      host's new hybrid vsock CONNECT (the old connection does not survive, docs/vsock.md);
//   4. FreshMachine: Exec `kiln-agent --fresh_machine` with the host's clock and 64 seed bytes.
// The guest disk is attached read-only (BuilderVmConfig) and every job's data lives in guest RAM
// (tmpfs), which dies with the restored VMM: nothing a job does reaches the snapshot files.
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
#include "harness/builder/warm_backend.h"
#include "harness/vmm/snapshot.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

constexpr int kWarmWriteTimeoutMs = 60000;
constexpr absl::Duration kResumeTimeout = absl::Seconds(60);
constexpr absl::Duration kFreshMachineTimeout = absl::Seconds(30);
// kVsockCloseSettle: under hybrid vsock, how long the host waits after closing the snapshot
// session's channel before the VM is paused, so that the guest's vsock driver has taken the
// close (the agent back at accept) when its state is saved.
constexpr absl::Duration kVsockCloseSettle = absl::Milliseconds(300);
// kWarmUpTimeout: the agent's budget for the daemon start + base image loads (rootless under
// TCG on a loaded host: 20-60 s).
constexpr absl::Duration kWarmUpTimeout = absl::Seconds(180);

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
  ASSIGN_OR_RETURN(std::unique_ptr<WarmBackend> backend, MakeWarmBackend(factory.vmm()));
  RETURN_IF_ERROR(ValidateBuilderArtifacts(artifacts));
  RETURN_IF_ERROR(ValidateBuilderVmOptions(options));
  BuilderVmOptions o = options;
  o.transport = factory.vmm().channel_transport();
  auto progress = [&o](absl::string_view line) {
    if (o.on_progress) o.on_progress(line);
  };
  ASSIGN_OR_RETURN(SnapshotCache cache,
                   SnapshotCache::Open({o.snapshot_dir, o.snapshot_max_bytes}));
  ASSIGN_OR_RETURN(SnapshotKeyInputs in, WarmSnapshotKeyInputs(cache, *backend, artifacts, o));
  run->snapshot_ram = backend->ram();
  const std::string key = SnapshotKey(in);
  run->snapshot_key = key;
  const absl::Time make_start = absl::Now();
  ASSIGN_OR_RETURN(
      SnapshotLease lease,
      cache.GetOrMakeDir(key, SnapshotKeyText(in), [&](const std::string& entry) -> absl::Status {
        BuilderVmOptions so = o;
        so.id = absl::StrCat(o.id, "-snapshot");
        progress(absl::StrCat("making warm snapshot ", key.substr(0, 12), " (VM ", so.id, ", ",
                              backend->name(), ")"));
        ASSIGN_OR_RETURN(std::unique_ptr<BuilderVm> maker,
                         BootConfig(factory, artifacts, so,
                                    [&](const std::string& socket_dir, VmConfig* c) {
                                      backend->PrepareSave(entry, socket_dir, c);
                                    }));
        RETURN_IF_ERROR(maker->WaitReady());
        if (o.warm_daemon) {
          // The daemon up and the base images loaded before any job: no secret, no job data.
          ASSIGN_OR_RETURN(absl::Duration up, maker->WarmUpDaemon(o.warm_preload));
          run->warm_up = up;
          progress(absl::StrCat("warm daemon up with ", o.warm_preload.size(),
                                " base images in ", absl::ToInt64Milliseconds(up), " ms"));
        }
        // Only Hello/Ready (and the WarmUp with its base images) went over the channel. Close
        // it: the agent reads end of stream and waits for the next host.
        maker->conn_.reset();
        if (maker->stream_) (void)maker->stream_->Close();
        maker->stream_.reset();
        if (o.transport == ChannelTransport::kHybridVsock) absl::SleepFor(kVsockCloseSettle);
        ASSIGN_OR_RETURN(WarmSaveResult saved, backend->Save(maker->vm(), entry));
        progress(absl::StrCat("snapshot saved: ", saved.bytes, " bytes in ",
                              absl::ToInt64Milliseconds(saved.duration), " ms (", saved.detail,
                              ")"));
        maker->vm().Kill();  // paused or gone: a snapshot VM never runs a job
        maker->shut_down_ = true;
        return absl::OkStatus();
      }));
  if (lease.made()) run->snapshot_make = absl::Now() - make_start;
  // A snapshot the VMM cannot restore is useless: drop it so the next run makes a new one.
  auto drop = [&](const absl::Status& s, const std::string& vmm_log) {
    lease = SnapshotLease();
    (void)cache.Remove(key);
    return absl::Status(s.code(), absl::StrCat(s.message(), vmm_log.empty() ? "" : "; VMM log: ",
                                               vmm_log));
  };
  absl::StatusOr<std::unique_ptr<BuilderVm>> booted =
      BootConfig(factory, artifacts, o, [&](const std::string& socket_dir, VmConfig* c) {
        backend->PrepareRestore(lease.dir(), socket_dir, c);
      });
  if (!booted.ok()) return drop(booted.status(), "");
  std::unique_ptr<BuilderVm> vm = *std::move(booted);
  BuilderVm* restored = vm.get();
  absl::StatusOr<absl::Duration> resumed = backend->Resume(
      vm->vm(), kResumeTimeout, [restored] { return restored->vm().Exited(); });
  if (!resumed.ok()) {
    vm->vm().Kill();
    return drop(resumed.status(), vm->vm().vmm_log_path());
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
                        " ms after ", backend->name(), " start; clock and entropy fresh in ",
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
  BuilderVmOptions cold = options;
  cold.warm = WarmMode::kOff;
  if (absl::StatusOr<std::unique_ptr<WarmBackend>> backend = MakeWarmBackend(factory.vmm());
      !backend.ok()) {
    if (options.warm == WarmMode::kOn) {
      return absl::Status(backend.status().code(),
                          absl::StrCat("--warm=on: ", backend.status().message()));
    }
    return Boot(factory, artifacts, cold);
  }
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
