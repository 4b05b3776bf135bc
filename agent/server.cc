#include "agent/server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "agent/health.h"
#include "agent/protocol/secure_wipe.h"
#include "agent/protocol/stream.h"
#include "agent/protocol/text.h"
#include "agent/process/process.h"
#include "agent/work_dir.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_macros.h"
#include "third_party/absl_ext/monotonic_deadline.h"

extern char** environ;

namespace kiln::agent {
namespace {

// NowMs(): CLOCK_MONOTONIC in ms (deadlines are not moved by wall-clock steps).
int64_t NowMs() { return MonotonicMicros() / 1000; }

// FdSink: writes a received stream to a file.
class FdSink : public StreamSink {
 public:
  FdSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~FdSink() override { ::close(fd_); }
  absl::Status Write(absl::string_view bytes) override {
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError(errno, "write", path_);
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

 private:
  int fd_;
  std::string path_;
};

bool IsStreamFrame(const Frame& f) {
  return f.type == static_cast<uint8_t>(FrameType::kChunk) ||
         f.type == static_cast<uint8_t>(FrameType::kStreamEnd);
}

// ReceiveStreams: reads frames until every stream announced in `rx` ended. Returns a
// channel error (the session ends); a request error (a stream over its limit, a bad total,
// an aborted stream, another frame in the middle) goes to *request_error instead.
absl::Status ReceiveStreams(Connection& conn, StreamReceiver& rx, int timeout_ms,
                            absl::Status* request_error) {
  while (!rx.AllDone()) {
    ASSIGN_OR_RETURN(Frame f, conn.ReadFrame(timeout_ms));
    if (!IsStreamFrame(f)) {
      *request_error = absl::FailedPreconditionError(absl::StrCat(
          FrameTypeName(f.type), " frame while the request's streams were still arriving"));
      return absl::OkStatus();
    }
    if (absl::Status s = rx.OnFrame(f); !s.ok()) {
      *request_error = s;
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

void WipeAll(std::map<std::string, std::string>& secrets) { SecureWipe(secrets); }

// JobLog: the per-job cap on Log text (messages.h kMaxJobLogBytes): the first
// kJobLogHeadBytes are sent live, later lines are held back keeping only the last
// kJobLogTailBytes; Finish() sends one system line naming what was dropped, then the tail.
class JobLog {
 public:
  explicit JobLog(std::function<void(const Log&)> send) : send_(std::move(send)) {}

  void Line(Log log) {
    if (tail_.empty() && head_bytes_ + log.text.size() <= kJobLogHeadBytes) {
      head_bytes_ += log.text.size();
      send_(log);
      return;
    }
    tail_bytes_ += log.text.size();
    tail_.push_back(std::move(log));
    while (tail_bytes_ > kJobLogTailBytes) {
      tail_bytes_ -= tail_.front().text.size();
      dropped_bytes_ += tail_.front().text.size();
      ++dropped_lines_;
      tail_.pop_front();
    }
  }

  void Finish(uint64_t time_ms) {
    if (dropped_lines_ > 0) {
      send_(Log{LogStream::kSystem, time_ms,
                absl::StrCat("[kiln-agent] log truncated: ", dropped_bytes_, " bytes in ",
                             dropped_lines_, " lines dropped here (a job sends at most the first ",
                             kJobLogHeadBytes, " and the last ", kJobLogTailBytes,
                             " bytes of its log)")});
    }
    for (const Log& l : tail_) send_(l);
    tail_.clear();
    tail_bytes_ = 0;
  }

 private:
  std::function<void(const Log&)> send_;
  size_t head_bytes_ = 0;
  std::deque<Log> tail_;
  size_t tail_bytes_ = 0;
  uint64_t dropped_bytes_ = 0;
  uint64_t dropped_lines_ = 0;
};

}  // namespace

absl::Status AgentSession::Serve() {
  while (true) {
    absl::StatusOr<Frame> f = conn_->ReadFrame(kNoDeadline);
    if (!f.ok()) {
      WipeAll(secrets_);
      if (!absl::IsUnavailable(f.status())) {
        (void)conn_->SendError(f.status(), options_.io_timeout_ms);
      }
      return f.status();
    }
    if (IsStreamFrame(*f)) {
      // Streams belong to a request; those of a refused request are dropped.
      if (discard_.count(f->stream_id)) {
        if (f->type == static_cast<uint8_t>(FrameType::kStreamEnd)) discard_.erase(f->stream_id);
        continue;
      }
      RETURN_IF_ERROR(Reply(absl::InvalidArgumentError(
          absl::StrCat(FrameTypeName(f->type), " frame on stream ", f->stream_id,
                       " outside of a request that announced it"))));
      continue;
    }
    absl::Status s = Handle(*f);
    if (f->type == static_cast<uint8_t>(FrameType::kSecret)) SecureWipe(f->payload);
    if (!s.ok()) {
      WipeAll(secrets_);
      if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) {
        (void)conn_->SendError(s, options_.io_timeout_ms);
      }
      return s;
    }
  }
}

absl::Status AgentSession::Reply(const absl::Status& s) {
  if (s.ok()) return s;
  return conn_->SendError(s, options_.io_timeout_ms);
}

absl::Status AgentSession::Handle(const Frame& frame) {
  absl::StatusOr<Message> m = DecodeMessage(frame);
  if (!m.ok()) return Reply(m.status());
  if (!hello_ && !std::holds_alternative<Hello>(*m)) {
    return Reply(absl::FailedPreconditionError(
        absl::StrCat(MessageName(*m), " before Hello: send Hello first")));
  }
  absl::Status s = std::visit(
      [this](const auto& msg) -> absl::Status {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, Hello>) return OnHello(msg);
        if constexpr (std::is_same_v<T, Ping>) return OnPing(msg);
        if constexpr (std::is_same_v<T, Secret>) return OnSecret(msg);
        if constexpr (std::is_same_v<T, BuildJob>) return OnBuildJob(msg);
        if constexpr (std::is_same_v<T, WarmUp>) return OnWarmUp(msg);
        if constexpr (std::is_same_v<T, Exec>) return OnExec(msg);
        if constexpr (std::is_same_v<T, ErrorMessage>) return absl::OkStatus();  // host's note
        return Reply(absl::InvalidArgumentError(
            absl::StrCat(MessageName(Message(msg)), " is not a host -> agent message")));
      },
      *m);
  if (Secret* secret = std::get_if<Secret>(&*m)) SecureWipe(secret->value);
  return s;
}

absl::Status AgentSession::OnHello(const Hello& m) {
  WipeAll(secrets_);  // a new session
  if (absl::Status s = CheckCompatible(m.protocol_major, m.protocol_minor); !s.ok()) {
    hello_ = false;
    return Reply(s);
  }
  hello_ = true;
  Ready ready{kProtocolMajor, kProtocolMinor, options_.agent_version, {kCapHealth}};
  if (options_.allow_exec) ready.capabilities.push_back(kCapExec);
  if (options_.runner) ready.capabilities.push_back(kCapBuild);
  if (options_.runner && options_.warm_up) ready.capabilities.push_back(kCapWarm);
  return conn_->Send(ready, options_.io_timeout_ms);
}

absl::Status AgentSession::OnPing(const Ping& m) {
  absl::StatusOr<Pong> pong = ReadHealth(options_.proc_root, m.nonce);
  if (!pong.ok()) return Reply(pong.status());
  return conn_->Send(*pong, options_.io_timeout_ms);
}

absl::Status AgentSession::OnSecret(const Secret& m) {
  if (secrets_.size() >= kMaxSecretsPerJob && !secrets_.count(m.id)) {
    return Reply(absl::ResourceExhaustedError(
        absl::StrCat("more than ", kMaxSecretsPerJob, " secrets in one session")));
  }
  size_t total = m.value.size();
  for (const auto& [id, value] : secrets_) total += id == m.id ? 0 : value.size();
  if (total > kMaxSecretsTotalBytes) {
    return Reply(absl::ResourceExhaustedError(absl::StrCat(
        "Secret ", m.id, ": the secrets sent for one job would total ", total,
        " bytes (limit ", kMaxSecretsTotalBytes, ")")));
  }
  std::string& value = secrets_[m.id];
  SecureWipe(value);  // a resent id: the old value's bytes go before the buffer is reused
  value = m.value;  // no reply: a Secret is acknowledged by the BuildJob's outcome
  return absl::OkStatus();
}

absl::Status AgentSession::OnWarmUp(const WarmUp& m) {
  auto refuse = [&](const absl::Status& s) {
    for (const PreloadImage& p : m.preload_images) discard_.insert(p.stream_id);
    return Reply(s);
  };
  if (!secrets_.empty()) {
    // A warm daemon is started before any job so that a snapshot of the VM holds no job data:
    // a secret sent before it is a host bug. Wipe it and refuse.
    WipeAll(secrets_);
    return refuse(absl::FailedPreconditionError(
        "WarmUp with secrets pending: a warm-up comes before any job and its secrets (the "
        "secrets were wiped)"));
  }
  if (!options_.runner || !options_.warm_up) {
    return refuse(absl::UnimplementedError(
        "this agent does not warm up a daemon (capability \"warm\" not offered)"));
  }
  const std::string dir = absl::StrCat(options_.work_dir, "/warm-up");
  if (absl::Status s = PrepareWorkDir(options_.work_dir); !s.ok()) return refuse(s);
  (void)RemoveTree(dir);
  std::error_code ec;
  std::filesystem::create_directory(dir, ec);
  if (ec) return refuse(absl::InternalError(absl::StrCat("mkdir ", dir, ": ", ec.message())));
  WarmUpInputs in;
  in.deadline_ms = m.deadline_ms;
  StreamReceiver rx;
  std::vector<std::unique_ptr<FdSink>> sinks;
  absl::Status setup = [&]() -> absl::Status {
    for (size_t i = 0; i < m.preload_images.size(); ++i) {
      in.preload_paths.push_back(absl::StrCat(dir, "/preload-", i, ".tar"));
      int fd = ::open(in.preload_paths.back().c_str(),
                      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) return PosixError(errno, "create", in.preload_paths.back());
      sinks.push_back(std::make_unique<FdSink>(fd, in.preload_paths.back()));
      RETURN_IF_ERROR(rx.Expect(m.preload_images[i].stream_id, options_.max_context_bytes,
                                sinks.back().get()));
    }
    return absl::OkStatus();
  }();
  if (!setup.ok()) {
    (void)RemoveTree(dir);
    return refuse(setup);
  }
  const int64_t t0 = NowMs();
  absl::Status request_error;
  absl::Status channel = ReceiveStreams(*conn_, rx, options_.io_timeout_ms, &request_error);
  if (!channel.ok() || !request_error.ok()) {
    (void)RemoveTree(dir);
    if (!channel.ok()) return channel;
    for (uint32_t id : rx.Unfinished()) discard_.insert(id);
    return Reply(request_error);
  }
  sinks.clear();
  const uint64_t receive_ms = static_cast<uint64_t>(NowMs() - t0);
  JobLog job_log([this](const Log& l) { (void)conn_->Send(l, options_.io_timeout_ms); });
  in.log = [&job_log, t0](LogStream stream, absl::string_view text) {
    job_log.Line(Log{stream, static_cast<uint64_t>(NowMs() - t0),
                     SanitizeUtf8(text.substr(0, kMaxLogLine / 3))});
  };
  absl::StatusOr<BuildOutcome> out = options_.warm_up(in);
  job_log.Finish(static_cast<uint64_t>(NowMs() - t0));
  (void)RemoveTree(dir);  // the images are in the daemon now
  if (!out.ok()) return Reply(out.status());
  BuildResult result{kWarmUpJobId, out->exit_status, "", 0, {}, out->error};
  result.phases.push_back({"receive_images", receive_ms});
  for (const Phase& p : out->phases) result.phases.push_back(p);
  return conn_->Send(result, options_.io_timeout_ms);
}

absl::Status AgentSession::OnBuildJob(const BuildJob& job) {
  // Secrets are consumed by this job, whatever its outcome: a later job must send them again.
  // Every path out of this function (refusal, stream error, runner error, success) wipes them.
  std::map<std::string, std::string> secrets;
  secrets.swap(secrets_);
  struct WipeOnExit {
    std::map<std::string, std::string>& m;
    ~WipeOnExit() { SecureWipe(m); }
  } wipe_secrets{secrets};
  auto refuse = [&](const absl::Status& s) {
    discard_.insert(job.context_stream);
    for (const PreloadImage& p : job.preload_images) discard_.insert(p.stream_id);
    return Reply(s);
  };
  std::vector<std::string> missing;
  for (const std::string& id : job.secret_ids) {
    if (!secrets.count(id)) missing.push_back(id);
  }
  if (!missing.empty()) {
    return refuse(absl::FailedPreconditionError(
        absl::StrCat("BuildJob ", job.job_id, " names secrets the host did not deliver: [",
                     absl::StrJoin(missing, ", "),
                     "] (secrets are consumed by one job: send them again before each job)")));
  }
  if (!options_.runner) {
    return refuse(absl::UnimplementedError(
        "this agent has no build runner (capability \"build\" not offered)"));
  }
  // Receive the inputs. Only the last failed job's dir is kept, across host sessions too: a
  // new job clears what earlier jobs left below the work dir (jobs run one at a time per
  // agent), but only in a dir the agent marked as its own, and never below a mount point.
  const std::string dir = absl::StrCat(options_.work_dir, "/", job.job_id);
  if (absl::Status s = PrepareWorkDir(options_.work_dir); !s.ok()) return refuse(s);
  if (absl::Status s = ClearWorkDir(options_.work_dir); !s.ok()) {
    std::fprintf(stderr, "kiln-agent: clearing the work dir: %s\n", s.ToString().c_str());
    if (!absl::IsFailedPrecondition(s) || absl::StrContains(s.message(), kWorkDirMarker)) {
      return refuse(s);
    }
  }
  std::error_code ec;
  std::filesystem::create_directory(dir, ec);
  if (ec) return refuse(absl::InternalError(absl::StrCat("mkdir ", dir, ": ", ec.message())));
  auto open_sink = [&](const std::string& path) -> absl::StatusOr<std::unique_ptr<FdSink>> {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return PosixError(errno, "create", path);
    return std::make_unique<FdSink>(fd, path);
  };
  BuildInputs in;
  in.job = &job;
  in.context_tar = dir + "/context.tar";
  StreamReceiver rx;
  std::vector<std::unique_ptr<FdSink>> sinks;
  absl::Status setup = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(auto sink, open_sink(in.context_tar));
    RETURN_IF_ERROR(rx.Expect(job.context_stream, options_.max_context_bytes, sink.get()));
    sinks.push_back(std::move(sink));
    for (size_t i = 0; i < job.preload_images.size(); ++i) {
      in.preload_paths.push_back(absl::StrCat(dir, "/preload-", i, ".tar"));
      ASSIGN_OR_RETURN(auto s, open_sink(in.preload_paths.back()));
      RETURN_IF_ERROR(
          rx.Expect(job.preload_images[i].stream_id, options_.max_context_bytes, s.get()));
      sinks.push_back(std::move(s));
    }
    return absl::OkStatus();
  }();
  if (!setup.ok()) return refuse(setup);
  const int64_t t0 = NowMs();
  absl::Status request_error;
  absl::Status channel = ReceiveStreams(*conn_, rx, options_.io_timeout_ms, &request_error);
  if (!channel.ok() || !request_error.ok()) {
    (void)RemoveTree(dir);
    if (!channel.ok()) return channel;
    for (uint32_t id : rx.Unfinished()) discard_.insert(id);
    return Reply(request_error);
  }
  sinks.clear();  // close the files
  const uint64_t receive_ms = static_cast<uint64_t>(NowMs() - t0);
  for (const std::string& id : job.secret_ids) in.secrets[id] = secrets[id];
  JobLog job_log([this](const Log& l) { (void)conn_->Send(l, options_.io_timeout_ms); });
  in.log = [&job_log, t0](LogStream stream, absl::string_view text) {
    job_log.Line(Log{stream, static_cast<uint64_t>(NowMs() - t0),
                     SanitizeUtf8(text.substr(0, kMaxLogLine / 3))});
  };
  absl::StatusOr<BuildOutcome> out = options_.runner(in);
  WipeAll(in.secrets);
  WipeAll(secrets);  // secrets live for one job
  job_log.Finish(static_cast<uint64_t>(NowMs() - t0));
  // A failed job's dir stays for inspection in a kept builder; else it goes.
  const bool keep_dir = options_.keep_failed_jobs && (!out.ok() || out->exit_status != 0);
  if (keep_dir) {  // said before the result, so that it is the job's last Log line
    const std::string line = absl::StrCat(
        "[kiln-agent] job ", job.job_id, " failed: kept for inspection in ", dir,
        " (context/, build/ with the daemons' logs and data roots, layers built so far "
        "included; the secret files are wiped)");
    std::fprintf(stderr, "kiln-agent: %s\n", line.c_str());
    (void)conn_->Send(Log{LogStream::kSystem, static_cast<uint64_t>(NowMs() - t0), line},
                      options_.io_timeout_ms);
  }
  auto finish_dir = [&] {
    if (!keep_dir) (void)RemoveTree(dir);
  };
  if (!out.ok()) {
    finish_dir();
    return Reply(out.status());
  }
  BuildResult result{job.job_id, out->exit_status, out->image_digest, 0, {}, out->error};
  result.phases.push_back({"receive_context", receive_ms});
  for (const Phase& p : out->phases) result.phases.push_back(p);
  int image_fd = -1;
  if (!out->image_path.empty()) {
    image_fd = ::open(out->image_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (image_fd < 0) {
      result.error = absl::StrCat(result.error, result.error.empty() ? "" : "; ",
                                  "open image ", out->image_path, ": ", std::strerror(errno));
    } else {
      result.image_stream = next_stream_;
      next_stream_ += 2;
    }
  }
  absl::Status sent = conn_->Send(result, options_.io_timeout_ms);
  if (sent.ok() && image_fd >= 0) {
    sent = conn_->SendFd(result.image_stream, image_fd, options_.io_timeout_ms).status();
  }
  if (image_fd >= 0) ::close(image_fd);
  finish_dir();
  return sent;
}

absl::Status AgentSession::OnExec(const Exec& m) {
  if (!options_.allow_exec) {
    if (m.stdin_stream != 0) discard_.insert(m.stdin_stream);
    return Reply(absl::UnimplementedError("this agent does not run Exec (capability \"exec\" not offered)"));
  }
  std::string stdin_data;
  if (m.stdin_stream != 0) {
    StreamReceiver rx;
    StringSink sink;
    RETURN_IF_ERROR(rx.Expect(m.stdin_stream, options_.max_exec_stdin_bytes, &sink));
    absl::Status request_error;
    RETURN_IF_ERROR(ReceiveStreams(*conn_, rx, options_.io_timeout_ms, &request_error));
    if (!request_error.ok()) {
      for (uint32_t id : rx.Unfinished()) discard_.insert(id);
      return Reply(request_error);
    }
    stdin_data = sink.data();
  }
  const uint32_t first = next_stream_;
  next_stream_ += 4;
  return RunExec(*conn_, m, stdin_data, first, options_.io_timeout_ms,
                 options_.default_exec_deadline_ms);
}

// ---------------------------------------------------------------------------------------

absl::Status ServeChannel(const ChannelOpener& open, const AgentOptions& options,
                          const ServeLoopOptions& loop) {
  auto say = [&](const std::string& line) {
    if (loop.say) loop.say(line);
  };
  std::unique_ptr<ByteStream> stream;
  bool reported = false;
  for (int sessions = 0; loop.max_sessions <= 0 || sessions < loop.max_sessions;) {
    if (stream == nullptr) {
      absl::StatusOr<std::unique_ptr<ByteStream>> s = open();
      if (!s.ok()) {
        if (!reported) say(s.status().ToString());
        reported = true;
        usleep(static_cast<useconds_t>(loop.retry_ms) * 1000);
        continue;
      }
      reported = false;
      stream = *std::move(s);
    }
    Connection conn(stream.get());
    AgentSession session(&conn, options);
    absl::Status s = session.Serve();
    ++sessions;
    if (!absl::IsUnavailable(s)) say(absl::StrCat("session ended: ", s.ToString()));
    if (loop.once) return s.ok() || absl::IsUnavailable(s) ? absl::OkStatus() : s;
    if (absl::IsUnavailable(s) && loop.keep_open_on_eof) {
      // No host connected (a virtio-serial port reads end of stream then): wait without
      // closing, so that the next host's Hello stays queued in the port.
      usleep(static_cast<useconds_t>(loop.retry_ms) * 1000);
      continue;
    }
    (void)stream->Close();
    stream.reset();
  }
  return absl::OkStatus();
}

absl::Status RunExec(Connection& conn, const Exec& exec, const std::string& stdin_data,
                     uint32_t first_stream, int timeout_ms, uint64_t default_deadline_ms) {
  // A child that exits without reading all of stdin must not kill the agent with SIGPIPE;
  // the child gets SIGPIPE's default back before exec.
  signal(SIGPIPE, SIG_IGN);
  const int64_t t0 = NowMs();
  auto fail = [&](absl::string_view what) {
    return conn.Send(ExecResult{127, 0, static_cast<uint64_t>(NowMs() - t0), std::string(what)},
                     timeout_ms);
  };
  const std::string cwd = exec.cwd.empty() ? "/" : exec.cwd;
  process::SpawnOptions o;
  o.argv = exec.argv;
  if (!exec.env.empty()) o.env = exec.env;
  o.cwd = cwd;
  o.in = process::Stdio::Pipe();
  o.out = process::Stdio::Pipe();
  o.err = process::Stdio::Pipe();
  o.new_session = true;
  o.die_with_parent = false;
  absl::StatusOr<process::Process> child = process::Process::Spawn(o);
  if (!child.ok()) return fail(child.status().message());
  const pid_t pid = child->pid();
  const uint32_t out_sid = first_stream, err_sid = first_stream + 2;
  absl::Status s = conn.Send(ExecStarted{static_cast<uint32_t>(pid), out_sid, err_sid}, timeout_ms);
  // Pump: stdin from memory, stdout/stderr to Chunk frames, until both outputs end.
  size_t in_off = 0;
  int in_fd = child->TakePipe(0);
  if (stdin_data.empty()) {
    ::close(in_fd);
    in_fd = -1;
  } else {
    fcntl(in_fd, F_SETFL, O_NONBLOCK);
  }
  int fds[2] = {child->TakePipe(1), child->TakePipe(2)};
  uint64_t totals[2] = {0, 0};
  const uint64_t deadline_ms = exec.deadline_ms ? exec.deadline_ms : default_deadline_ms;
  const int64_t deadline = t0 + static_cast<int64_t>(deadline_ms);
  bool killed = false;
  // The child's exit ends the exec even when a process it left behind (`sleep 1d &`) still
  // holds the output pipes: a pidfd becomes readable at exit (a 100 ms waitpid poll where the
  // kernel has no pidfd_open), then what is already in the pipes is read and sent.
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  bool exited = false;
  int wstatus = 0;
  auto reap = [&]() {
    if (exited) return;
    if (std::optional<process::ProcessExit> e = child->Poll()) {
      exited = true;
      wstatus = e->wait_status;
    }
  };
  std::string buf(64 << 10, '\0');
  auto pump = [&](int i) {  // one read of output i; false at its end
    ssize_t k;
    do {
      k = read(fds[i], buf.data(), buf.size());
    } while (k < 0 && errno == EINTR);
    if (k < 0 && errno == EAGAIN) return false;
    if (k <= 0) {
      ::close(fds[i]);
      fds[i] = -1;
      return false;
    }
    totals[i] += static_cast<uint64_t>(k);
    s = conn.SendFrame(Frame(FrameType::kChunk, i == 0 ? out_sid : err_sid, buf.substr(0, k)),
                       timeout_ms);
    return s.ok();
  };
  while ((fds[0] >= 0 || fds[1] >= 0) && s.ok() && !exited) {
    pollfd p[4];
    int n = 0;
    for (int i = 0; i < 2; ++i) p[n++] = {fds[i], POLLIN, 0};
    p[n++] = {in_fd, POLLOUT, 0};
    p[n++] = {pidfd, POLLIN, 0};
    int wait = pidfd >= 0 ? -1 : 100;
    if (!killed) {
      const int left = static_cast<int>(std::max<int64_t>(0, deadline - NowMs()));
      wait = wait < 0 ? left : std::min(wait, left);
    }
    int r = poll(p, n, wait);
    if (r < 0 && errno == EINTR) continue;
    if (!killed && NowMs() >= deadline) {
      child->SignalGroup(SIGKILL);
      killed = true;
    }
    if (pidfd < 0 || (p[3].revents & (POLLIN | POLLHUP | POLLERR))) reap();
    if (r <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      pump(i);
    }
    if (in_fd >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t k = write(in_fd, stdin_data.data() + in_off, stdin_data.size() - in_off);
      if (k > 0) in_off += static_cast<size_t>(k);
      if ((k < 0 && errno != EAGAIN && errno != EINTR) || in_off == stdin_data.size()) {
        ::close(in_fd);
        in_fd = -1;
      }
    }
  }
  // The child exited: its own output is complete in the pipes; read it without waiting for
  // writers it left behind.
  // At most what a pipe can hold (1 MiB, /proc/sys/fs/pipe-max-size's default): a leftover
  // process that keeps writing must not keep the exec going.
  for (int i = 0; i < 2 && exited; ++i) {
    if (fds[i] < 0) continue;
    fcntl(fds[i], F_SETFL, O_NONBLOCK);
    const uint64_t stop_at = totals[i] + (1u << 20);
    while (s.ok() && fds[i] >= 0 && totals[i] < stop_at && pump(i)) {
    }
  }
  for (int fd : {fds[0], fds[1], in_fd, pidfd}) {
    if (fd >= 0) ::close(fd);
  }
  if (!exited) {
    if (!s.ok()) child->SignalGroup(SIGKILL);
    absl::StatusOr<process::ProcessExit> e = child->Wait(absl::InfiniteFuture());
    if (e.ok()) wstatus = e->wait_status;
  }
  RETURN_IF_ERROR(s);
  RETURN_IF_ERROR(conn.Send(StreamEnd{out_sid, totals[0], false, ""}, timeout_ms));
  RETURN_IF_ERROR(conn.Send(StreamEnd{err_sid, totals[1], false, ""}, timeout_ms));
  ExecResult result;
  result.duration_ms = static_cast<uint64_t>(NowMs() - t0);
  if (WIFEXITED(wstatus)) {
    result.exit_code = WEXITSTATUS(wstatus);
  } else {
    result.exit_code = -1;
    result.signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  }
  if (killed) {
    result.error = absl::StrCat("deadline of ", deadline_ms, " ms exceeded",
                                exec.deadline_ms ? "" : " (the agent's default for an Exec "
                                                        "without deadline_ms)");
  }
  return conn.Send(result, timeout_ms);
}

}  // namespace kiln::agent
