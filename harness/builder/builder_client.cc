// File: harness/builder/builder_client.cc
#include "harness/builder/builder_client.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/protocol/stream.h"
#include "agent/ustar.h"
#include "harness/keep/keep_builder.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"

namespace kiln::harness {
namespace {

using agent::Frame;

constexpr int kSliceMs = 200;                       // one ReadFrame wait between checks
constexpr absl::Duration kSerialCheckEvery = absl::Milliseconds(500);
// While frames keep coming, the guest is still checked (VMM exit, deadline, serial log) this
// often: a guest that floods the channel does not escape its deadline.
constexpr absl::Duration kGuestCheckEvery = absl::Milliseconds(200);
constexpr int kWriteTimeoutMs = 60000;              // per frame write
constexpr int kSerialAttemptMs = 250;               // one virtio-serial connect attempt
constexpr int kHybridAttemptMs = 1000;              // one CONNECT/OK attempt (CH answers fast)
constexpr absl::Duration kConnectFirstPause = absl::Milliseconds(10);
constexpr absl::Duration kConnectMaxPause = absl::Milliseconds(250);

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// FileSink: the received image, written to a file. The file is deleted when the sink is
// destroyed without Commit() (any failure on the way: a partial image never stays behind).
class FileSink : public agent::StreamSink {
 public:
  explicit FileSink(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) open_error_ = PosixError(errno, "create", path_);
  }
  ~FileSink() override {
    if (fd_ >= 0) ::close(fd_);
    if (fd_ >= 0 && !committed_) ::unlink(path_.c_str());
  }
  const absl::Status& open_error() const { return open_error_; }
  absl::Status Write(absl::string_view bytes) override {
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError(errno, "write", path_);
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  // Commit(): the image is complete: keep the file.
  absl::Status Commit() {
    if (::fsync(fd_) != 0 && errno != EINVAL) return PosixError(errno, "fsync", path_);
    committed_ = true;
    return absl::OkStatus();
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
  absl::Status open_error_;
};

absl::Status ValidateRequest(const BuildRequest& r) {
  if (r.job_id.empty()) return absl::InvalidArgumentError("BuildRequest.job_id is empty");
  if (r.context_tar.empty()) {
    return absl::InvalidArgumentError("BuildRequest.context_tar is empty");
  }
  if (r.image_out.empty()) return absl::InvalidArgumentError("BuildRequest.image_out is empty");
  if (access(r.context_tar.c_str(), R_OK) != 0) {
    return PosixError(errno, "read context tar", r.context_tar);
  }
  for (const auto& [ref, path] : r.preload) {
    if (access(path.c_str(), R_OK) != 0) return PosixError(errno, "read preload image", path);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateBuilderArtifacts(const BuilderArtifacts& a) {
  const std::pair<const char*, const std::string*> files[] = {
      {"kernel", &a.kernel}, {"initrd", &a.initrd}, {"builder_disk", &a.builder_disk}};
  for (const auto& [name, path] : files) {
    if (path->empty()) return absl::InvalidArgumentError(absl::StrCat(name, " path is empty"));
    if (access(path->c_str(), R_OK) != 0) {
      return absl::NotFoundError(absl::StrCat(name, " not readable: ", *path, ": ",
                                              std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBuilderVmOptions(const BuilderVmOptions& o) {
  if (o.builder_mode != kBuilderModeRootless && o.builder_mode != kBuilderModeRootful) {
    return absl::InvalidArgumentError(absl::StrCat("builder_mode \"", o.builder_mode,
                                                   "\": want rootless or rootful"));
  }
  if (o.cgroup != "rw" && o.cgroup != "ro" && o.cgroup != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroup \"", o.cgroup, "\": want rw, ro or off"));
  }
  return absl::OkStatus();
}

std::string BuilderCmdline(const BuilderVmOptions& o) {
  const std::string channel = o.transport == ChannelTransport::kHybridVsock
                                  ? absl::StrCat("vsock:", o.vsock_port)
                                  : absl::StrCat("virtio-serial:", o.channel_name);
  const std::string delegate = o.delegate_cgroup && o.cgroup == "rw"
                                   ? absl::StrCat(" kiln.delegate=", kBuilderUid)
                                   : std::string();
  std::string s = absl::StrCat("kiln.root=/dev/vda kiln.cgroup=", o.cgroup, delegate,
                               " kiln.exec=\"", kAgentPath, " --channel=", channel,
                               o.keep.keep_failed_builders ? " --keep_failed_jobs"
                               : o.warm != WarmMode::kOff  ? ""
                                                           : " --once",
                               " --retry_ms=", o.agent_retry_ms, " --builder_mode=",
                               o.builder_mode, o.agent_flags.empty() ? "" : " ", o.agent_flags,
                               "\"");
  if (!o.extra_cmdline.empty()) absl::StrAppend(&s, " ", o.extra_cmdline);
  return s;
}

VmConfig BuilderVmConfig(const BuilderVmOptions& o, const BuilderArtifacts& a,
                         const std::string& socket_path) {
  VmConfig c;
  c.id = o.id;
  c.kernel_path = a.kernel;
  c.initrd_path = a.initrd;
  c.disks.push_back({a.builder_disk, /*read_only=*/true});
  c.cmdline = BuilderCmdline(o);
  c.channel = Channel{o.channel_name, socket_path, /*vsock_cid=*/3, o.vsock_port};
  c.vcpus = o.vcpus;
  c.memory_mib = o.memory_mib;
  c.deadline = o.deadline;
  c.detachable = o.keep.keep_failed_builders;
  return c;
}

int64_t BuildResponse::PhaseMs(absl::string_view name) const {
  if (!result) return -1;
  for (const agent::Phase& p : result->phases) {
    if (p.name == name) return static_cast<int64_t>(p.duration_ms);
  }
  return -1;
}

std::string BuildResponse::LogText() const {
  std::string s;
  for (const agent::Log& l : logs) absl::StrAppend(&s, l.text, "\n");
  return s;
}

// ---------------------------------------------------------------------------------------
// JobLog

// The host keeps at least what a well-behaved agent sends (its own cap, plus the line that
// crosses it), with room for the per-line charge of ~250000 lines.
static_assert(kDefaultMaxLogBytes >= 2 * (agent::kMaxJobLogBytes + agent::kMaxLogLine),
              "the host's log cap must stay above the agent's (agent/protocol/messages.h)");

JobLog::JobLog(uint64_t max_bytes)
    : max_bytes_(max_bytes), head_budget_(max_bytes / 2), tail_budget_(max_bytes - max_bytes / 2) {}

void JobLog::Add(agent::Log line) {
  const uint64_t cost = Cost(line);
  received_bytes_ += line.text.size();
  ++received_lines_;
  if (!cut_ && head_cost_ + cost <= head_budget_) {
    head_cost_ += cost;
    head_.push_back(std::move(line));
    return;
  }
  cut_ = true;
  tail_cost_ += cost;
  tail_.push_back(std::move(line));
  while (tail_cost_ > tail_budget_ && !tail_.empty()) {
    const agent::Log& old = tail_.front();
    tail_cost_ -= Cost(old);
    dropped_bytes_ += old.text.size();
    ++dropped_lines_;
    last_dropped_time_ms_ = old.time_ms;
    tail_.pop_front();
  }
}

std::vector<agent::Log> JobLog::Finish() {
  std::vector<agent::Log> out = std::move(head_);
  if (dropped_lines_ > 0) {
    out.push_back({agent::LogStream::kSystem, last_dropped_time_ms_,
                   absl::StrCat("[kiln host: dropped ", dropped_bytes_, " bytes in ",
                                dropped_lines_, " log lines of this job (the host keeps ",
                                max_bytes_, " bytes: the first and the last half)]")});
  }
  for (agent::Log& l : tail_) out.push_back(std::move(l));
  tail_.clear();
  return out;
}

uint64_t BuilderHostMemoryBound(const BuilderVmOptions& options) {
  const SerialLogLimits serial;
  const uint64_t parser = kMaxConsoleLineBytes + 5 * kMaxConsoleRecords * kMaxConsoleLineBytes;
  return 2 * options.max_log_bytes + 4 * uint64_t{agent::kMaxPayload} + serial.head_bytes +
         2 * serial.tail_bytes + (64 << 10) + parser + (1 << 20);
}

// ---------------------------------------------------------------------------------------
// BuilderVm

BuilderVm::BuilderVm(Vm* vm, BuilderVmOptions options, absl::Time boot_at,
                     std::string socket_path)
    : vm_(vm),
      options_(std::move(options)),
      socket_path_(std::move(socket_path)),
      boot_at_(boot_at),
      ready_at_(boot_at),
      serial_(vm->serial_log_path()) {}

BuilderVm::~BuilderVm() {
  if (stream_) (void)stream_->Close();
  if (vm_->detached()) return;  // kept: the VM, its socket and work dir stay
  vm_->Kill();  // also removes the socket
  unlink(socket_path_.c_str());
  unlink(control_socket().c_str());
  rmdir(socket_path_.substr(0, socket_path_.rfind('/')).c_str());
}

std::string BuilderVm::SerialLog() {
  (void)serial_.PollToEnd();
  return serial_.Text();
}

absl::Status BuilderVm::Fail(absl::StatusCode code, absl::string_view message) {
  (void)serial_.Poll();
  std::string tail = serial_.Tail(30);
  return absl::Status(code, absl::StrCat(message, "\n--- serial log tail (", vm_->config().id,
                                         ") ---\n", tail.empty() ? "(empty)\n" : tail));
}

absl::Status BuilderVm::OomError(absl::string_view what) {
  return Fail(absl::StatusCode::kResourceExhausted, absl::StrCat(oom_, " (while ", what, ")"));
}

absl::Status BuilderVm::CheckGuest(absl::string_view what) {
  last_guest_check_ = absl::Now();
  if (vm_->Exited()) {
    (void)serial_.PollToEnd();
    if (serial_.console().GuestOutOfMemory()) {
      oom_ = GuestOomMessage(serial_.console(), options_.memory_mib, options_.memory_flag);
      return OomError(what);
    }
    return Fail(absl::StatusCode::kAborted,
                absl::StrCat("the VMM exited while ", what));
  }
  const absl::Time now = absl::Now();
  if (now - boot_at_ > options_.deadline) {
    vm_->Kill();
    const std::string reason = absl::StrCat("VM deadline (", absl::FormatDuration(options_.deadline),
                                            ") passed while ", what);
    if (!oom_.empty()) return OomError(reason);
    stuck_reason_ = reason;
    return Fail(absl::StatusCode::kDeadlineExceeded, stuck_reason_);
  }
  if (now - last_serial_check_ >= kSerialCheckEvery) {
    last_serial_check_ = now;
    (void)serial_.Poll();
    const ConsoleResult& c = serial_.console();
    if (oom_.empty() && c.GuestOutOfMemory()) {
      oom_ = GuestOomMessage(c, options_.memory_mib, options_.memory_flag);
      oom_at_ = now;
    }
    if (c.Stuck()) {
      vm_->Kill();
      if (!oom_.empty()) return OomError(absl::StrCat(what, "; then: ", c.stuck_line));
      stuck_reason_ = absl::StrCat("guest stuck while ", what, ": ", c.stuck_line);
      return Fail(absl::StatusCode::kAborted, stuck_reason_);
    }
    if (c.fatal) {
      return Fail(absl::StatusCode::kAborted,
                  absl::StrCat("init failed while ", what, ": ", c.fatal->line));
    }
    if (c.HasEndMarker()) {
      if (!oom_.empty()) return OomError(absl::StrCat(what, "; then the agent exited"));
      return Fail(absl::StatusCode::kAborted,
                  absl::StrCat("the agent exited while ", what));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Frame> BuilderVm::ReadFrameWatched(absl::Time stall_deadline,
                                                  absl::string_view what) {
  while (true) {
    absl::StatusOr<Frame> f = conn_->ReadFrame(kSliceMs);
    if (f.ok()) {
      last_frame_at_ = absl::Now();
      if (last_frame_at_ - last_guest_check_ >= kGuestCheckEvery) RETURN_IF_ERROR(CheckGuest(what));
      return f;
    }
    if (!absl::IsDeadlineExceeded(f.status())) {
      RETURN_IF_ERROR(CheckGuest(what));
      return Fail(f.status().code(),
                  absl::StrCat("channel error while ", what, ": ", f.status().message()));
    }
    RETURN_IF_ERROR(CheckGuest(what));
    const absl::Time now = absl::Now();
    if (!oom_.empty() && now - std::max(last_frame_at_, oom_at_) > options_.oom_quiet_timeout) {
      vm_->Kill();
      return OomError(absl::StrCat(what, "; then no frame from the agent for ",
                                   absl::FormatDuration(options_.oom_quiet_timeout)));
    }
    if (now > stall_deadline) {
      stuck_reason_ = absl::StrCat("no frame from the agent for ",
                                   absl::FormatDuration(options_.stall_timeout), " while ", what);
      vm_->Kill();
      return Fail(absl::StatusCode::kDeadlineExceeded, stuck_reason_);
    }
  }
}

absl::StatusOr<std::unique_ptr<BuilderVm>> BuilderVm::Boot(VmFactory& factory,
                                                           const BuilderArtifacts& artifacts,
                                                           const BuilderVmOptions& options) {
  return BootConfig(factory, artifacts, options, /*adjust=*/nullptr);
}

absl::StatusOr<std::unique_ptr<BuilderVm>> BuilderVm::BootConfig(
    VmFactory& factory, const BuilderArtifacts& artifacts, const BuilderVmOptions& options,
    const std::function<void(const std::string& socket_dir, VmConfig* config)>& adjust) {
  RETURN_IF_ERROR(ValidateBuilderArtifacts(artifacts));
  RETURN_IF_ERROR(ValidateBuilderVmOptions(options));
  // A short socket dir: unix socket paths are limited to 107 bytes, test dirs are long.
  char templ[] = "/tmp/kiln-bc-XXXXXX";
  if (mkdtemp(templ) == nullptr) return PosixError(errno, "mkdtemp", templ);
  const std::string socket_path = absl::StrCat(templ, "/agent.sock");
  BuilderVmOptions o = options;
  o.transport = factory.vmm().channel_transport();  // the backend decides how it is spoken
  const absl::Time boot_at = absl::Now();
  VmConfig config = BuilderVmConfig(o, artifacts, socket_path);
  if (adjust) adjust(templ, &config);
  absl::StatusOr<Vm*> vm = factory.Boot(config);
  if (!vm.ok()) {
    rmdir(templ);
    return vm.status();
  }
  return std::unique_ptr<BuilderVm>(new BuilderVm(*vm, std::move(o), boot_at, socket_path));
}

absl::StatusOr<std::unique_ptr<BuilderVm>> BuilderVm::Start(VmFactory& factory,
                                                            const BuilderArtifacts& artifacts,
                                                            const BuilderVmOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<BuilderVm> b, Boot(factory, artifacts, options));
  RETURN_IF_ERROR(b->WaitReady());
  return b;
}

absl::Status BuilderVm::WaitReady() {
  if (conn_ && ready_at_ != absl::Time()) return absl::OkStatus();  // ready already (BootWarm)
  const absl::Time ready_deadline = boot_at_ + options_.ready_timeout;
  // 1. Connect. virtio-serial: QEMU creates the socket shortly after it starts. Hybrid vsock:
  // CH creates it at once, but closes each CONNECT until the guest agent listens on its port
  // (kernel boot, init, root switch, agent start), so retries are the normal case there.
  const ChannelAddress address = channel_address();
  const int attempt_ms =
      address.transport == ChannelTransport::kHybridVsock ? kHybridAttemptMs : kSerialAttemptMs;
  absl::Duration pause = kConnectFirstPause;
  absl::Status last;
  while (!stream_) {
    ++connect_attempts_;
    absl::StatusOr<std::unique_ptr<agent::FdStream>> s = ConnectChannelOnce(address, attempt_ms);
    if (s.ok()) {
      stream_ = std::move(*s);
      break;
    }
    last = s.status();
    if (!IsRetryableConnectError(last)) {
      return Fail(last.code(), absl::StrCat("cannot connect to the agent: ", last.message()));
    }
    RETURN_IF_ERROR(CheckGuest("connecting to the agent channel"));
    const absl::Duration left = ready_deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return Fail(absl::StatusCode::kDeadlineExceeded,
                  absl::StrCat("channel ", DescribeChannelAddress(address),
                               " not connected within ",
                               absl::FormatDuration(options_.ready_timeout), " after ",
                               connect_attempts_, " attempt(s) (last: ", last.message(), ")"));
    }
    absl::SleepFor(std::min(pause, left));
    pause = std::min(pause * 2, kConnectMaxPause);
  }
  conn_ = std::make_unique<agent::Connection>(stream_.get());
  // 2. Hello: QEMU holds it in the socket until the agent opens its port (under CH the agent
  // has already accepted the connection).
  RETURN_IF_ERROR(conn_->Send(agent::Hello{agent::kProtocolMajor, agent::kProtocolMinor,
                                           "kiln-harness builder_client 0.1"},
                              kWriteTimeoutMs));
  ASSIGN_OR_RETURN(Frame f, ReadFrameWatched(ready_deadline, "waiting for the agent's Ready"));
  absl::StatusOr<agent::Ready> ready = agent::DecodeAs<agent::Ready>(f);
  if (!ready.ok()) return ready.status();
  RETURN_IF_ERROR(agent::CheckCompatible(ready->protocol_major, ready->protocol_minor));
  if (std::find(ready->capabilities.begin(), ready->capabilities.end(),
                std::string(agent::kCapBuild)) == ready->capabilities.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent ", ready->agent_version, " does not offer \"build\" (capabilities: ",
                     absl::StrJoin(ready->capabilities, ","), ")"));
  }
  ready_ = *ready;
  ready_at_ = absl::Now();
  return absl::OkStatus();
}

absl::StatusOr<BuildResponse> BuilderVm::Build(const BuildRequest& r) {
  RETURN_IF_ERROR(ValidateRequest(r));
  if (!conn_ || shut_down_) return absl::FailedPreconditionError("the builder VM is shut down");
  BuildResponse resp;
  resp.job_id = r.job_id;
  const absl::Time t0 = absl::Now();
  for (const auto& [id, value] : r.secrets) {
    RETURN_IF_ERROR(conn_->Send(agent::Secret{id, value}, kWriteTimeoutMs));
  }
  agent::BuildJob job;
  job.job_id = r.job_id;
  job.context_stream = next_stream_;
  next_stream_ += 2;
  job.dockerfile_path = r.dockerfile_path;
  job.dockerfile = r.dockerfile;
  job.build_args = r.build_args;
  job.target = r.target;
  job.network = r.network;
  job.secret_ids = r.secret_ids;
  // The first job on a restored warm VM: the base images its daemon already holds are not
  // sent again (that daemon serves this job only, so later jobs send everything).
  std::vector<std::pair<std::string, std::string>> preload;
  for (const auto& p : r.preload) {
    if (!warm_preloaded_.count(absl::StrCat(p.first, "\n", p.second))) preload.push_back(p);
  }
  warm_preloaded_.clear();
  for (const auto& [ref, path] : preload) {
    job.preload_images.push_back({ref, next_stream_});
    next_stream_ += 2;
  }
  job.tag = r.tag;
  job.deadline_ms = r.deadline_ms;
  RETURN_IF_ERROR(conn_->Send(job, kWriteTimeoutMs));
  auto send_file = [&](uint32_t id, const std::string& path) -> absl::StatusOr<uint64_t> {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return PosixError(errno, "open", path);
    absl::StatusOr<uint64_t> n = conn_->SendFd(id, fd, kWriteTimeoutMs);
    ::close(fd);
    return n;
  };
  ASSIGN_OR_RETURN(resp.context_bytes, send_file(job.context_stream, r.context_tar));
  for (size_t i = 0; i < preload.size(); ++i) {
    ASSIGN_OR_RETURN(uint64_t n, send_file(job.preload_images[i].stream_id, preload[i].second));
    resp.preload_bytes += n;
  }
  // Read Log lines until the BuildResult or an Error.
  const std::string what = absl::StrCat("running job ", r.job_id);
  JobLog log(options_.max_log_bytes);
  auto finish_log = [&] {
    resp.log_bytes = log.received_bytes();
    resp.log_dropped_bytes = log.dropped_bytes();
    resp.log_dropped_lines = log.dropped_lines();
    resp.logs = log.Finish();
  };
  while (true) {
    ASSIGN_OR_RETURN(Frame f, ReadFrameWatched(absl::Now() + options_.stall_timeout, what));
    absl::StatusOr<agent::Message> m = agent::DecodeMessage(f);
    if (!m.ok()) return Fail(m.status().code(), absl::StrCat("bad frame from the agent: ",
                                                             m.status().message()));
    if (auto* line = std::get_if<agent::Log>(&*m)) {
      if (r.on_log) r.on_log(*line);
      log.Add(std::move(*line));
      continue;
    }
    if (auto* e = std::get_if<agent::ErrorMessage>(&*m)) {
      resp.refused = agent::ToStatus(*e);
      resp.result_at = absl::Now();
      resp.send_to_result = resp.send_to_image = resp.result_at - t0;
      finish_log();
      return resp;
    }
    if (auto* br = std::get_if<agent::BuildResult>(&*m)) {
      resp.result = std::move(*br);
      resp.result_at = absl::Now();
      resp.send_to_result = resp.result_at - t0;
      break;
    }
    return Fail(absl::StatusCode::kFailedPrecondition,
                absl::StrCat("unexpected ", agent::MessageName(*m), " while ", what));
  }
  if (resp.result->image_stream != 0) {
    FileSink sink(r.image_out);  // deleted again unless committed below
    RETURN_IF_ERROR(sink.open_error());
    agent::StreamReceiver rx;
    const uint32_t id = resp.result->image_stream;
    RETURN_IF_ERROR(rx.Expect(id, options_.max_image_bytes, &sink));
    while (!rx.Done(id)) {
      ASSIGN_OR_RETURN(Frame f, ReadFrameWatched(absl::Now() + options_.stall_timeout,
                                                 "receiving the image"));
      if (f.type == static_cast<uint8_t>(agent::FrameType::kChunk) ||
          f.type == static_cast<uint8_t>(agent::FrameType::kStreamEnd)) {
        if (absl::Status s = rx.OnFrame(f); !s.ok()) {
          if (absl::IsResourceExhausted(s)) {
            return absl::ResourceExhaustedError(absl::StrCat(
                "job ", r.job_id, ": the image from the agent is larger than the host accepts (",
                options_.max_image_bytes, " bytes, BuilderVmOptions::max_image_bytes); the "
                "partial file ", r.image_out, " was removed"));
          }
          return absl::Status(s.code(), absl::StrCat("job ", r.job_id, ": receiving the image: ",
                                                     s.message(), " (partial file removed)"));
        }
        continue;
      }
      absl::StatusOr<agent::Message> m = agent::DecodeMessage(f);
      if (m.ok() && std::holds_alternative<agent::Log>(*m)) {
        if (r.on_log) r.on_log(std::get<agent::Log>(*m));
        log.Add(std::get<agent::Log>(std::move(*m)));
        continue;
      }
      return Fail(absl::StatusCode::kFailedPrecondition,
                  "unexpected frame while receiving the image stream");
    }
    RETURN_IF_ERROR(sink.Commit());
    resp.image_path = r.image_out;
    resp.image_bytes = rx.Received(id);
  }
  finish_log();
  resp.send_to_image = absl::Now() - t0;
  return resp;
}

absl::Duration BuilderVm::Shutdown() {
  const absl::Time t0 = absl::Now();
  if (shut_down_) return absl::ZeroDuration();
  shut_down_ = true;
  if (stream_) (void)stream_->Close();
  if (options_.keep.keep_failed_builders || options_.warm != WarmMode::kOff) {
    vm_->Kill();  // the agent (no --once) would serve again: nothing powers the guest off
    return absl::Now() - t0;
  }
  absl::StatusOr<VmExit> exit = vm_->Wait(options_.poweroff_grace);
  if (!exit.ok()) vm_->Kill();
  return absl::Now() - t0;
}

absl::Status BuilderVm::Detach(VmFactory& factory) {
  RETURN_IF_ERROR(factory.Release(vm_));
  conn_.reset();
  if (stream_) (void)stream_->Close();
  shut_down_ = true;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// RunBuilderJobs

namespace {

// JobSummary(jobs): one line for the keep record: "job <id> [tag <tag>]; ...".
std::string JobSummary(const std::vector<BuildRequest>& jobs) {
  std::string s;
  for (const BuildRequest& j : jobs) {
    absl::StrAppend(&s, s.empty() ? "" : "; ", "job ", j.job_id,
                    j.tag.empty() ? "" : absl::StrCat(" tag ", j.tag));
  }
  return s.empty() ? "no jobs" : s;
}

// FirstFailure(jobs): why the first failed job failed ("" if every job passed).
std::string FirstFailure(const std::vector<BuildResponse>& jobs) {
  for (const BuildResponse& r : jobs) {
    if (!r.refused.ok()) {
      return absl::StrCat("job ", r.job_id, " refused: ", r.refused.message());
    }
    if (r.result && r.result->exit_status != 0) {
      return absl::StrCat("job ", r.job_id, " exit_status ", r.result->exit_status,
                          r.result->error.empty() ? "" : ": ", r.result->error);
    }
  }
  return "";
}

}  // namespace

BuilderRun RunBuilderJobs(VmFactory& factory, const BuilderArtifacts& artifacts,
                          const BuilderVmOptions& options,
                          const std::vector<BuildRequest>& jobs) {
  BuilderRun run;
  run.memory_mib = options.memory_mib;
  const absl::Time start = absl::Now();
  for (int attempt = 1; attempt <= 2; ++attempt) {
    BuilderVmOptions o = options;
    if (attempt > 1) o.id = absl::StrCat(options.id, "-retry1");
    if (o.warm != WarmMode::kOff && o.warm_daemon && o.warm_preload.empty() && !jobs.empty()) {
      o.warm_preload = jobs.front().preload;  // the declared base images: the first job's
    }
    run.attempts = attempt;
    run.vm_id = o.id;
    run.jobs.clear();
    auto progress = [&o](absl::string_view line) {
      if (o.on_progress) o.on_progress(line);
    };
    progress(absl::StrCat("booting VM ", o.id, " (", factory.vmm().Name(), ", ", o.vcpus,
                          " vCPUs, ", o.memory_mib, " MiB, ", o.builder_mode, ")"));
    absl::StatusOr<std::unique_ptr<BuilderVm>> b = BuilderVm::BootForRun(factory, artifacts, o, &run);
    if (!b.ok()) {
      run.status = b.status();
      break;
    }
    BuilderVm& vm = **b;
    run.status = vm.WaitReady();
    const bool keep_on = o.keep.keep_failed_builders;
    KeepStore store(o.keep.state_dir.empty() ? KeepStore::DefaultDir() : o.keep.state_dir);
    std::optional<KeepRecord> record;
    if (run.status.ok() && keep_on) {
      absl::StatusOr<KeepRecord> r =
          RegisterBuilder(store, vm.vm(), factory.vmm().Name(), vm.vm().vmm_pid(),
                          JobSummary(jobs), vm.channel_address().transport);
      if (r.ok()) {
        record = std::move(*r);
      } else {
        run.keep_status = r.status();
      }
    }
    bool kept = false;
    if (run.status.ok()) {
      run.vmm_start_to_ready = vm.vmm_start_to_ready();
      progress(absl::StrCat("agent ready in ", absl::ToInt64Milliseconds(run.vmm_start_to_ready),
                            " ms (", vm.ready().agent_version, ")"));
      absl::Time last_answer = absl::Now();
      for (const BuildRequest& j : jobs) {
        absl::StatusOr<BuildResponse> r = vm.Build(j);
        if (!r.ok()) {
          run.status = r.status();
          break;
        }
        last_answer = r->result_at + (r->send_to_image - r->send_to_result);
        if (run.jobs.empty()) {
          run.vmm_start_to_first_result = r->result_at - vm.boot_time();
          run.vmm_start_to_first_image = last_answer - vm.boot_time();
        }
        run.jobs.push_back(std::move(*r));
      }
      const std::string failure = run.status.ok() ? FirstFailure(run.jobs) : "";
      if (record && !failure.empty()) {
        run.keep_status = KeepFailedBuilder(store, *record, failure, o.keep);
        if (run.keep_status.ok()) run.keep_status = vm.Detach(factory);
        kept = run.keep_status.ok();
        if (kept) {
          run.kept_id = record->id;
          progress(absl::StrCat("VM ", run.vm_id, " kept as ", run.kept_id,
                                " for kilnctl builders"));
        }
      }
      if (record && !kept) (void)ReleaseBuilder(store, record->id);
      if (run.status.ok() && !kept) {
        vm.Shutdown();
        run.last_result_to_vm_gone = absl::Now() - last_answer;
      }
    } else if (record) {
      (void)ReleaseBuilder(store, record->id);
    }
    if (!kept) vm.vm().Kill();
    run.vmm_peak_rss_bytes = vm.vm().peak_rss_bytes();
    run.serial_log = vm.SerialLog();
    run.console = vm.console();
    run.log_dir = factory.SaveLogs(vm.vm());
    run.build_log_paths.clear();
    if (!run.log_dir.empty()) {
      for (const BuildResponse& j : run.jobs) {
        const std::string path = absl::StrCat(run.log_dir, "/build-", j.job_id, ".log");
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << j.LogText();
        if (out.good()) run.build_log_paths.push_back(path);
      }
    }
    run.oom = GuestOomMessage(run.console, o.memory_mib, o.memory_flag);
    const bool out_of_memory = run.console.GuestOutOfMemory();
    // A guest that locked up and panicked (softlockup_panic=1 with -no-reboot) makes the VMM
    // exit at once, so the host may first see only its channel closing: the whole serial log,
    // read now that the VM is gone, decides whether that was a lockup (retried once).
    const bool locked_up = !run.status.ok() && !vm.stuck() && run.console.Stuck();
    if (locked_up) {
      run.status = absl::AbortedError(absl::StrCat("guest stuck: ", run.console.stuck_line,
                                                   "; the host saw: ", run.status.message()));
    }
    // Out of memory is not a lockup: it would run out again on a retry.
    const bool stuck = (vm.stuck() || locked_up) && !out_of_memory;
    const std::string stuck_reason =
        locked_up ? absl::StrCat("guest stuck: ", run.console.stuck_line) : vm.stuck_reason();
    b->reset();
    if (out_of_memory) {
      const std::string failure = run.status.ok() ? FirstFailure(run.jobs) : "";
      if (!run.status.ok() && !absl::IsResourceExhausted(run.status)) {
        run.status = absl::ResourceExhaustedError(
            absl::StrCat(run.oom, "; then: ", run.status.message()));
      } else if (!failure.empty()) {
        run.status = absl::ResourceExhaustedError(absl::StrCat(run.oom, "; ", failure));
      }
    }
    if (stuck) {
      ++run.lockup_events;
      if (attempt == 1) {
        run.retry_reason = stuck_reason;
        progress(absl::StrCat("VM ", o.id, " got stuck (", stuck_reason, "); retrying once"));
        continue;
      }
    }
    break;
  }
  run.total = absl::Now() - start;
  return run;
}

// ---------------------------------------------------------------------------------------
// WriteDirectoryTar

namespace {

absl::Status ListTree(const std::string& root, const std::string& rel, SymlinkMode mode,
                      std::vector<std::string>* out) {
  const std::string path = rel.empty() ? root : absl::StrCat(root, "/", rel);
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return PosixError(errno, "opendir", path);
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    const std::string r = rel.empty() ? n : absl::StrCat(rel, "/", n);
    out->push_back(r);
    struct stat st;
    const std::string full = absl::StrCat(root, "/", r);
    if ((mode == SymlinkMode::kFollow ? stat(full.c_str(), &st) : lstat(full.c_str(), &st)) != 0) {
      return PosixError(errno, "stat", full);
    }
    if (S_ISDIR(st.st_mode)) RETURN_IF_ERROR(ListTree(root, r, mode, out));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> WriteDirectoryTar(const std::string& dir, const std::string& out_path,
                                           SymlinkMode mode) {
  std::vector<std::string> entries;
  RETURN_IF_ERROR(ListTree(dir, "", mode, &entries));
  agent::UstarWriter w;
  RETURN_IF_ERROR(w.Open(out_path));
  for (const std::string& rel : entries) {
    const std::string full = absl::StrCat(dir, "/", rel);
    struct stat st;
    if ((mode == SymlinkMode::kFollow ? stat(full.c_str(), &st) : lstat(full.c_str(), &st)) != 0) {
      return PosixError(errno, "stat", full);
    }
    if (rel.size() > 99) {
      return absl::InvalidArgumentError(absl::StrCat("context entry name too long: ", rel));
    }
    if (S_ISDIR(st.st_mode)) {
      RETURN_IF_ERROR(w.Dir(rel + "/"));
    } else if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      const ssize_t n = readlink(full.c_str(), buf, sizeof(buf));
      if (n < 0) return PosixError(errno, "readlink", full);
      RETURN_IF_ERROR(w.Symlink(rel, std::string(buf, static_cast<size_t>(n))));
    } else if (S_ISREG(st.st_mode)) {
      RETURN_IF_ERROR(w.Bytes(rel, ReadAll(full)));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("context entry is not a file, directory or symlink: ", rel));
    }
  }
  RETURN_IF_ERROR(w.Finish());
  struct stat st;
  if (stat(out_path.c_str(), &st) != 0) return PosixError(errno, "stat", out_path);
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace kiln::harness
