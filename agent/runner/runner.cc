#include "agent/runner/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <deque>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/runner/context_tar.h"
#include "agent/runner/daemon_plan.h"
#include "agent/runner/dockerfile.h"
#include "agent/runner/oci_archive.h"
#include "agent/process/process.h"
#include "agent/runner/oom.h"
#include "agent/runner/redact.h"
#include "agent/runner/rootless.h"
#include "agent/runner/step_procs.h"
#include "agent/runner/unix_http.h"
#include "third_party/absl_ext/monotonic_deadline.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent::runner {
namespace {

// RunnerSpawnOptions(argv, env, log_path): how the runner starts containerd, dockerd and the
// docker CLI: argv[0] absolute (PATH never searched), exactly `env`, stdin /dev/null, stdout
// and stderr appended to `log_path` (0600), or to one pipe (pipe_fd(1)) when it is empty; no
// PR_SET_PDEATHSIG (a warm daemon outlives the thread that started it).
process::SpawnOptions RunnerSpawnOptions(std::vector<std::string> argv,
                                         std::vector<std::string> env,
                                         const std::string& log_path) {
  process::SpawnOptions o;
  o.argv = std::move(argv);
  o.search_path = false;
  o.env = std::move(env);
  o.out = log_path.empty() ? process::Stdio::Pipe()
                           : process::Stdio::File(log_path, /*append=*/true, 0600);
  o.err = process::Stdio::SameAsStdout();
  o.die_with_parent = false;
  return o;
}

// MsSince(t_us): ms since a MonotonicMicros() stamp. Phase times use CLOCK_MONOTONIC: a VM
// restored from a warm snapshot gets its wall clock set (or stepped) while it runs, which
// made wall-clock phases of restored builds read 48-94 s inside a 25 s job.
int64_t MsSince(int64_t t_us) { return (MonotonicMicros() - t_us) / 1000; }

int RemoveEntry(const char* path, const struct stat*, int type, struct FTW*) {
  if (type == FTW_DP) return rmdir(path) == 0 || errno == ENOENT ? 0 : 0;
  unlink(path);
  return 0;
}

// RemoveTree: rm -rf that stays on one file system and never follows symlinks.
void RemoveTree(const std::string& path) {
  nftw(path.c_str(), RemoveEntry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

absl::Status MkdirP(const std::string& path, mode_t mode) {
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    absl::StrAppend(&cur, "/", part);
    if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return PosixError(errno, "mkdir", cur);
  }
  return absl::OkStatus();
}

bool IsTmpfs(const std::string& path) {
  struct statfs sf;
  if (statfs(path.c_str(), &sf) != 0) return false;
  return sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
}

std::vector<std::string> FileTail(const std::string& path, int n) {
  std::ifstream in(path);
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (static_cast<int>(tail.size()) > n) tail.pop_front();
  }
  return {tail.begin(), tail.end()};
}

// DaemonReason: the most telling line of a daemon log (fatal/error level), else the last.
std::string DaemonReason(const std::vector<std::string>& tail) {
  for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
    if (absl::StrContains(*it, "level=fatal") || absl::StrContains(*it, "failed to start")) {
      return *it;
    }
  }
  for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
    if (absl::StrContains(*it, "level=error")) return *it;
  }
  return tail.empty() ? "(empty log)" : tail.back();
}

// SecretOwner: who owns the secret files (rootless: the daemon's uid/gid; rootful: root).
struct SecretOwner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// SecretFiles: the tmpfs copies of the secrets, in a per-job directory <base>/job-XXXXXX:
// <base> root 0711 (nobody else can list the jobs), the job directory root:<gid> 0750 (the
// owner's group can list its own job, not change it), each file <uid>:<gid> 0400. Written and
// wiped through the directory's fd (openat, O_NOFOLLOW|O_EXCL). Wipe() overwrites, fsyncs and
// unlinks them.
class SecretFiles {
 public:
  ~SecretFiles() { Wipe(); }
  absl::Status Write(const std::string& base, const std::map<std::string, std::string>& secrets,
                     SecretOwner owner) {
    if (secrets.empty()) return absl::OkStatus();
    if (absl::Status s = MkdirP(base, 0711); !s.ok()) return s;
    if (!IsTmpfs(base)) {
      return absl::FailedPreconditionError(
          absl::StrCat("secret dir ", base, " is not on tmpfs; refusing to write secrets there"));
    }
    if (chmod(base.c_str(), 0711) != 0) return PosixError(errno, "chmod", base);
    std::string tmpl = base + "/job-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) return PosixError(errno, "mkdtemp", tmpl);
    dir_ = tmpl;
    dir_fd_ = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd_ < 0) return PosixError(errno, "open", dir_);
    if (fchown(dir_fd_, 0, owner.gid) != 0) return PosixError(errno, "chown", dir_);
    if (fchmod(dir_fd_, owner.gid == 0 ? 0700 : 0750) != 0) return PosixError(errno, "chmod", dir_);
    for (const auto& [id, value] : secrets) {
      const std::string path = absl::StrCat(dir_, "/", id);
      int fd = openat(dir_fd_, id.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0400);
      if (fd < 0) return PosixError(errno, "create secret file", path);
      files_[id] = {path, value.size()};
      if (fchown(fd, owner.uid, owner.gid) != 0) {
        int e = errno;
        close(fd);
        return PosixError(e, "chown secret file", path);
      }
      absl::string_view rest = value;
      while (!rest.empty()) {
        ssize_t n = write(fd, rest.data(), rest.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          int e = errno;
          close(fd);
          return PosixError(e, "write secret file", path);
        }
        rest.remove_prefix(static_cast<size_t>(n));
      }
      close(fd);
    }
    return absl::OkStatus();
  }
  std::map<std::string, std::string> Paths() const {
    std::map<std::string, std::string> out;
    for (const auto& [id, f] : files_) out[id] = f.first;
    return out;
  }
  void Wipe() {
    for (const auto& [id, f] : files_) {
      int fd = openat(dir_fd_, id.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) {
        std::string zeros(f.second, '\0');
        absl::string_view rest = zeros;
        while (!rest.empty()) {
          ssize_t n = write(fd, rest.data(), rest.size());
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) break;
          rest.remove_prefix(static_cast<size_t>(n));
        }
        fsync(fd);
        close(fd);
      }
      unlinkat(dir_fd_, id.c_str(), 0);
    }
    files_.clear();
    if (dir_fd_ >= 0) close(dir_fd_);
    dir_fd_ = -1;
    if (!dir_.empty()) rmdir(dir_.c_str());
    dir_.clear();
  }

 private:
  std::string dir_;
  int dir_fd_ = -1;
  std::map<std::string, std::pair<std::string, size_t>> files_;
};

}  // namespace

// DaemonState: the daemons of one build (or of a warm daemon waiting for its one job) and
// where they live.
struct DaemonState {
  std::string temp_run_dir;
  RunLayout layout;
  std::optional<process::Process> containerd;
  std::optional<process::Process> dockerd;
  RootlessConfig rootless_config;
  RealRootlessOps rootless_ops;
  std::optional<RootlessDaemon> rootless;
  BuilderMode mode = BuilderMode::kRootful;
  int64_t ready_at_us = 0;  // MonotonicMicros() when the daemon answered /_ping (warm daemons)
};

namespace {

// StopDaemons(d): dockerd then containerd stopped (rootless: the daemon's cgroup killed), the
// short run dir removed. Idempotent.
void StopDaemons(DaemonState& d) {
  if (d.dockerd.has_value()) d.dockerd->Kill(absl::Seconds(10));
  if (d.containerd.has_value()) d.containerd->Kill(absl::Seconds(5));
  d.dockerd.reset();
  d.containerd.reset();
  if (d.rootless.has_value()) d.rootless->Stop();
  d.rootless.reset();
  if (!d.temp_run_dir.empty()) RemoveTree(d.temp_run_dir);
  d.temp_run_dir.clear();
}

// Runner: one RunBuild's state; every step returns Status and records into result_.
class Runner {
 public:
  Runner(const BuildSpec& spec, const LogSink& on_log)
      : spec_(spec), on_log_(on_log), redactor_(spec.secrets) {
    d_->mode = spec.mode;
  }
  // Adopts a warm daemon (StartWarmDaemon): the build skips its daemon start and stops the
  // daemon when it ends. A daemon of another mode than spec.mode is not adopted.
  Runner(const BuildSpec& spec, const LogSink& on_log, WarmDaemon warm)
      : Runner(spec, on_log) {
    if (warm && warm->mode == spec.mode) {
      d_.reset(warm.release());
      warm_ = true;
    }
  }

  // WarmUp(): the daemon start and the preloads of StartWarmDaemon (spec_ carries work_dir,
  // mode, tools, preload_images, deadline_ms). On success the daemons are handed over.
  WarmUpResult WarmUp() {
    const int64_t start_mono = MonotonicMicros();
    deadline_ = MonotonicDeadline::After(absl::Milliseconds(spec_.deadline_ms));
    WarmUpResult out;
    absl::Status s = [&]() -> absl::Status {
      struct stat st;
      if (stat(spec_.work_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return absl::FailedPreconditionError(
            absl::StrCat("work_dir ", spec_.work_dir, " is not an existing directory"));
      }
      if (spec_.deadline_ms <= 0) return absl::InvalidArgumentError("deadline_ms must be > 0");
      if (spec_.mode == BuilderMode::kRootless) {
        absl::Status pre = CheckRootlessPreconditions(d_->rootless_config,
                                                      GatherRootlessFacts(d_->rootless_config));
        if (!pre.ok()) return pre;
      }
      int64_t t = MonotonicMicros();
      absl::Status started = StartDaemons();
      result_.durations_ms.dockerd_start = MsSince(t);
      if (!started.ok()) return started;
      d_->ready_at_us = MonotonicMicros();
      Log(absl::StrCat("[kiln-runner] dockerd ready in ", result_.durations_ms.dockerd_start,
                       " ms (warm: before any job)"));
      t = MonotonicMicros();
      absl::Status loaded = Preload();
      result_.durations_ms.preload = MsSince(t);
      return loaded;
    }();
    result_.durations_ms.total = MsSince(start_mono);
    out.status = s;
    out.durations_ms = result_.durations_ms;
    out.log_tail = result_.log_tail;
    if (s.ok()) {
      out.daemon.reset(d_.release());
      d_ = std::make_unique<DaemonState>();
    } else {
      StopDaemons(*d_);
    }
    return out;
  }

  BuildResult Run() {
    const int64_t start_us = MonotonicMicros();
    const int64_t start_mono = start_us;
    deadline_ = MonotonicDeadline::After(absl::Milliseconds(spec_.deadline_ms));
    absl::Status s = RunPhases();
    if (!s.ok()) {
      // A daemon, the CLI or a build step killed for lack of memory: say so (the kernel log
      // names it) instead of leaving "killed by signal 9 ... (empty log)" to guess from.
      std::string oom = OomReport(start_us);
      if (oom.empty() && absl::StrContains(s.message(), "killed by signal 9")) oom = OomHint();
      if (!oom.empty()) s = absl::Status(s.code(), absl::StrCat(s.message(), " [", oom, "]"));
    }
    int64_t t = MonotonicMicros();
    Teardown();
    result_.durations_ms.teardown = MsSince(t);
    result_.durations_ms.total = MsSince(start_mono);
    result_.status = s;
    if (!s.ok()) {
      result_.error_message = std::string(s.message());
      if (!result_.log_tail.empty()) {
        absl::StrAppend(&result_.error_message, "\n--- last ", result_.log_tail.size(),
                        " log lines ---\n", absl::StrJoin(result_.log_tail, "\n"));
      }
      result_.manifest_digest.clear();
    }
    return result_;
  }

 private:
  void Log(absl::string_view line) {
    if (on_log_) on_log_(line);
  }

  absl::Status RunPhases() {
    int64_t t = MonotonicMicros();
    std::string context_dir;
    absl::Status s = Validate(&context_dir);
    result_.durations_ms.validate = MsSince(t);
    if (!s.ok()) return s;

    t = MonotonicMicros();
    s = warm_ ? CheckWarmDaemon() : StartDaemons();
    result_.durations_ms.dockerd_start = MsSince(t);
    if (!s.ok()) return s;
    if (!warm_) {
      Log(absl::StrCat("[kiln-runner] dockerd ready in ", result_.durations_ms.dockerd_start,
                       " ms"));
    }

    t = MonotonicMicros();
    s = Preload();
    result_.durations_ms.preload = MsSince(t);
    if (!s.ok()) return s;

    t = MonotonicMicros();
    s = Build(context_dir);
    secrets_.Wipe();
    result_.durations_ms.build = MsSince(t);
    if (!s.ok()) return s;

    t = MonotonicMicros();
    s = Export();
    result_.durations_ms.export_image = MsSince(t);
    return s;
  }

  absl::Status Validate(std::string* context_dir) {
    if (absl::Status s = ValidateSpec(spec_); !s.ok()) return s;
    struct stat st;
    if (stat(spec_.work_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("work_dir ", spec_.work_dir, " is not an existing directory"));
    }
    secret_base_ = spec_.secret_dir.empty() ? DefaultSecretDir() : spec_.secret_dir;
    if (!spec_.secrets.empty()) {
      if (absl::Status s = MkdirP(secret_base_, 0700); !s.ok()) return s;
      if (!IsTmpfs(secret_base_)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "secret dir ", secret_base_, " is not on tmpfs; refusing to write secrets there"));
      }
    }
    if (!spec_.context_tar.empty()) {
      *context_dir = spec_.work_dir + "/context";
      if (mkdir(context_dir->c_str(), 0755) != 0) {
        return PosixError(errno, "mkdir (must not exist yet)", *context_dir);
      }
      absl::StatusOr<ContextTarStats> x = ExtractContextTar(spec_.context_tar, *context_dir, {});
      if (!x.ok()) return x.status();
    } else {
      *context_dir = spec_.context_dir;
    }
    for (const std::string& img : spec_.preload_images) {
      if (access(img.c_str(), R_OK) != 0) return PosixError(errno, "preload image", img);
    }
    if (absl::Status s = PreflightDockerfile(*context_dir, spec_); !s.ok()) return s;
    // Optional secrets (explicit required=false) the host did not send: BuildKit runs their
    // steps without the file; say so (dockerfile.h).
    if (absl::StatusOr<std::string> text = ReadDockerfileInContext(*context_dir, spec_.dockerfile);
        text.ok()) {
      if (absl::StatusOr<DockerfileInfo> info = ScanDockerfile(*text); info.ok()) {
        for (const SecretMount& m : OptionalSecretsAbsent(*info, spec_.secrets)) {
          Log(AbsentSecretLogLine(m));
        }
      }
    }
    if (spec_.mode == BuilderMode::kRootless) {
      // Before any daemon starts (rootless.h): the stack, /dev/net/tun, the delegation.
      return CheckRootlessPreconditions(d_->rootless_config, GatherRootlessFacts(d_->rootless_config));
    }
    return absl::OkStatus();
  }

  absl::Status StartDaemons() {
    std::string run_dir = spec_.work_dir + "/run";
    if (run_dir.size() + std::string("/containerd.sock.ttrpc").size() > kMaxSocketPathBytes) {
      std::string tmpl = "/tmp/kiln-run-XXXXXX";
      if (mkdtemp(tmpl.data()) == nullptr) return PosixError(errno, "mkdtemp", tmpl);
      run_dir = tmpl;
      d_->temp_run_dir = run_dir;
    } else if (mkdir(run_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return PosixError(errno, "mkdir", run_dir);
    }
    d_->layout = MakeRunLayout(spec_.work_dir, run_dir);
    if (spec_.mode == BuilderMode::kRootless) return StartRootless();
    for (const std::string& d : {d_->layout.containerd_root, d_->layout.containerd_state,
                                 d_->layout.docker_data_root, d_->layout.docker_exec_root,
                                 d_->layout.docker_config_dir}) {
      if (absl::Status s = MkdirP(d, 0700); !s.ok()) return s;
    }
    {
      std::ofstream toml(d_->layout.containerd_config);
      toml << ContainerdConfigToml(d_->layout);
      if (!toml) return absl::InternalError("writing " + d_->layout.containerd_config);
    }
    absl::StatusOr<process::Process> c = process::Process::Spawn(
        RunnerSpawnOptions(ContainerdArgv(spec_.tools, d_->layout), DaemonEnv(),
                           d_->layout.containerd_log));
    if (!c.ok()) return c.status();
    d_->containerd.emplace(std::move(*c));
    // containerd is ready when its gRPC socket accepts connections.
    UnixHttpClient probe(d_->layout.containerd_socket);
    while (true) {
      if (std::optional<process::ProcessExit> st = d_->containerd->Poll(); st.has_value()) {
        result_.log_tail = FileTail(d_->layout.containerd_log, kLogTailLines);
        return absl::FailedPreconditionError(
            absl::StrCat("containerd exited (", st->Describe(),
                         ") before it was ready: ", DaemonReason(result_.log_tail)));
      }
      if (access(d_->layout.containerd_socket.c_str(), F_OK) == 0) break;
      if (deadline_.Passed()) {
        return absl::DeadlineExceededError("containerd did not create its socket in time");
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    absl::StatusOr<process::Process> d = process::Process::Spawn(RunnerSpawnOptions(
        DockerdArgv(spec_.tools, d_->layout), DaemonEnv(), d_->layout.dockerd_log));
    if (!d.ok()) return d.status();
    d_->dockerd.emplace(std::move(*d));
    UnixHttpClient docker(d_->layout.docker_socket);
    absl::Status last = absl::UnavailableError("no answer yet");
    while (true) {
      if (std::optional<process::ProcessExit> st = d_->dockerd->Poll(); st.has_value()) {
        result_.log_tail = FileTail(d_->layout.dockerd_log, kLogTailLines);
        return absl::FailedPreconditionError(
            absl::StrCat("dockerd exited (", st->Describe(),
                         ") before it was ready: ", DaemonReason(result_.log_tail)));
      }
      absl::StatusOr<HttpResponse> r = docker.Get("/_ping", Soon(absl::Seconds(2)));
      if (r.ok() && r->status == 200 && r->body == "OK") return absl::OkStatus();
      last = r.ok() ? absl::UnavailableError(absl::StrCat("GET /_ping: HTTP ", r->status))
                    : r.status();
      if (deadline_.Passed()) {
        result_.log_tail = FileTail(d_->layout.dockerd_log, kLogTailLines);
        return absl::DeadlineExceededError(
            absl::StrCat("dockerd was not ready before the deadline: ", last.message()));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  // CheckWarmDaemon: the adopted daemon still runs and answers GET /_ping (a VM restored from
  // a snapshot resumes it where it was paused).
  absl::Status CheckWarmDaemon() {
    process::Process* p = d_->rootless.has_value() ? d_->rootless->daemon()
                                                   : (d_->dockerd ? &*d_->dockerd : nullptr);
    if (p == nullptr) return absl::FailedPreconditionError("the warm daemon is gone");
    if (std::optional<process::ProcessExit> st = p->Poll(); st.has_value()) {
      result_.log_tail = FileTail(d_->layout.dockerd_log, kLogTailLines);
      return absl::FailedPreconditionError(
          absl::StrCat("the warm dockerd exited (", st->Describe(),
                       ") before the job: ", DaemonReason(result_.log_tail)));
    }
    UnixHttpClient docker(d_->layout.docker_socket);
    absl::StatusOr<HttpResponse> r =
        docker.Get("/_ping", Soon(absl::Seconds(10)));
    if (!r.ok() || r->status != 200 || r->body != "OK") {
      result_.log_tail = FileTail(d_->layout.dockerd_log, kLogTailLines);
      return absl::UnavailableError(absl::StrCat(
          "the warm dockerd does not answer GET /_ping: ",
          r.ok() ? absl::StrCat("HTTP ", r->status) : std::string(r.status().message())));
    }
    Log(absl::StrCat("[kiln-runner] dockerd started before the job (warm, up ",
                     (MonotonicMicros() - d_->ready_at_us) / 1000000,
                     " s of this VM's run time); it serves this job only"));
    return absl::OkStatus();
  }

  // StartRootless: dockerd-rootless.sh as uid 1000 (rootless.h); ready on GET /_ping = OK.
  absl::Status StartRootless() {
    if (absl::Status s = MkdirP(d_->layout.docker_config_dir, 0700); !s.ok()) return s;
    d_->rootless.emplace(d_->rootless_config, &d_->rootless_ops);
    if (absl::Status s = d_->rootless->Prepare(); !s.ok()) return s;
    d_->layout.docker_socket = d_->rootless->layout().socket;
    if (absl::Status s = d_->rootless->Start(d_->layout.dockerd_log); !s.ok()) return s;
    Log(absl::StrCat("[kiln-runner] rootless dockerd (uid ", d_->rootless_config.uid, ", cgroup parent ",
                     d_->rootless->layout().cgroup_parent, ") starting"));
    UnixHttpClient docker(d_->layout.docker_socket);
    absl::Status last = absl::UnavailableError("no answer yet");
    while (true) {
      if (std::optional<process::ProcessExit> st = d_->rootless->daemon()->Poll();
          st.has_value()) {
        result_.log_tail = FileTail(d_->layout.dockerd_log, kLogTailLines);
        return absl::FailedPreconditionError(
            absl::StrCat("rootless dockerd exited (", st->Describe(),
                         ") before it was ready: ", DaemonReason(result_.log_tail)));
      }
      absl::StatusOr<HttpResponse> r =
          docker.Get("/_ping", Soon(absl::Seconds(2)));
      if (r.ok() && r->status == 200 && r->body == "OK") return absl::OkStatus();
      last = r.ok() ? absl::UnavailableError(absl::StrCat("GET /_ping: HTTP ", r->status))
                    : r.status();
      if (deadline_.Passed()) {
        result_.log_tail = FileTail(d_->layout.dockerd_log, kLogTailLines);
        return absl::DeadlineExceededError(
            absl::StrCat("rootless dockerd was not ready before the deadline: ", last.message()));
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  absl::Status Preload() {
    UnixHttpClient docker(d_->layout.docker_socket);
    int n = 0;
    for (const std::string& original : spec_.preload_images) {
      std::string img = original;
      absl::StatusOr<ArchiveKind> kind = DetectArchiveKind(img);
      if (!kind.ok()) return kind.status();
      if (*kind == ArchiveKind::kUnknown) {
        return absl::InvalidArgumentError(absl::StrCat(
            "preload image ", img, " is neither a docker-archive (manifest.json) nor an OCI "
            "archive (index.json + oci-layout)"));
      }
      std::string converted, scratch;
      absl::Cleanup rm_converted = [&] {
        if (!converted.empty()) unlink(converted.c_str());
        if (!scratch.empty()) RemoveTree(scratch);
      };
      if (*kind == ArchiveKind::kOciArchive) {
        // dockerd 20.10's /images/load reads only manifest.json: add one.
        ++n;
        scratch = absl::StrCat(spec_.work_dir, "/preload-", n, ".d");
        converted = absl::StrCat(spec_.work_dir, "/preload-", n, ".docker.tar");
        absl::StatusOr<std::string> tag = OciArchiveToDockerArchive(img, scratch, converted);
        if (!tag.ok()) return tag.status();
        img = converted;
      }
      int fd = open(img.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return PosixError(errno, "open preload image", img);
      absl::StatusOr<HttpResponse> r =
          docker.PostFile("/v1.41/images/load?quiet=1", "application/x-tar", fd,
                          deadline_.AsWallDeadline());
      close(fd);
      if (!r.ok()) {
        return absl::Status(r.status().code(),
                            absl::StrCat("POST /images/load ", img, ": ", r.status().message()));
      }
      if (r->status != 200 || absl::StrContains(r->body, "\"errorDetail\"") ||
          absl::StrContains(r->body, "\"error\"")) {
        return absl::FailedPreconditionError(absl::StrCat(
            "dockerd refused preload image ", img, ": HTTP ", r->status, ": ", r->body));
      }
      Log(absl::StrCat("[kiln-runner] preloaded ", original));
    }
    return absl::OkStatus();
  }

  absl::Status Build(const std::string& context_dir) {
    SecretOwner owner;
    if (spec_.mode == BuilderMode::kRootless) owner = {d_->rootless_config.uid, d_->rootless_config.gid};
    if (absl::Status s = secrets_.Write(secret_base_, spec_.secrets, owner); !s.ok()) return s;
    // The RUN steps' processes, seen from here (step_procs.h).
    StepWatcher steps = spec_.mode == BuilderMode::kRootless
                            ? StepWatcher("/proc", {d_->rootless->layout().cgroup_prefix},
                                          {d_->rootless->layout().daemon_cgroup})
                            : StepWatcher("/proc", {"/docker/"}, {});
    int64_t last_scan_us = MonotonicMicros() - 100000;  // scan on the first turn
    // buildx run directly where it exists: two Go process starts fewer (daemon_plan.h).
    const BuildClient client = BuildClientFor(
        spec_.tools, !spec_.tools.buildx.empty() && access(spec_.tools.buildx.c_str(), X_OK) == 0);
    Log(absl::StrCat("[kiln-runner] build client: ", BuildClientName(client)));
    absl::StatusOr<process::Process> p = process::Process::Spawn(RunnerSpawnOptions(
        DockerBuildArgv(spec_, d_->layout, context_dir, secrets_.Paths(), client),
        DockerBuildEnv(d_->layout), /*log_path=*/""));
    if (!p.ok()) return p.status();
    std::deque<std::string> tail;
    LineRedactor lines(&redactor_, [&](absl::string_view line) {
      Log(line);
      tail.emplace_back(line);
      if (static_cast<int>(tail.size()) > kLogTailLines) tail.pop_front();
    });
    std::vector<char> buf(64 * 1024);
    bool timed_out = false;
    while (true) {
      if (deadline_.Passed()) {
        timed_out = true;
        break;
      }
      if (MonotonicMicros() - last_scan_us >= 100000) {
        for (const std::string& line : steps.Poll()) Log(line);
        last_scan_us = MonotonicMicros();
      }
      struct pollfd pfd = {p->pipe_fd(1), POLLIN, 0};
      int r = poll(&pfd, 1, deadline_.RemainingMsForPoll(100));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return PosixError(errno, "poll", "docker build output");
      if (r == 0) continue;
      ssize_t n = read(p->pipe_fd(1), buf.data(), buf.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) break;  // EOF: the CLI closed its output
      lines.Feed(absl::string_view(buf.data(), static_cast<size_t>(n)));
    }
    lines.Flush();
    result_.log_tail.assign(tail.begin(), tail.end());
    if (timed_out) {
      p->Kill(absl::Seconds(1));
      return absl::DeadlineExceededError(absl::StrCat(
          "build exceeded the deadline of ", spec_.deadline_ms, " ms; docker build was killed"));
    }
    absl::StatusOr<process::ProcessExit> st = p->Wait(deadline_.AsWallDeadline());
    if (!st.ok()) {
      p->Kill(absl::Seconds(1));
      return absl::DeadlineExceededError("docker build did not exit before the deadline");
    }
    result_.build_exit_code = st->signaled ? -1 : st->exit_code;
    if (result_.build_exit_code != 0) {
      return absl::AbortedError(
          absl::StrCat("docker build failed (", st->Describe(), ")"));
    }
    return absl::OkStatus();
  }

  absl::Status Export() {
    UnixHttpClient docker(d_->layout.docker_socket);
    int fd = open(d_->layout.image_tar.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return PosixError(errno, "create", d_->layout.image_tar);
    absl::StatusOr<HttpResponse> r =
        docker.GetToFile(absl::StrCat("/v1.41/images/", spec_.tag, "/get"), fd,
                         deadline_.AsWallDeadline());
    close(fd);
    absl::Cleanup rm = [&] {
      unlink(d_->layout.image_tar.c_str());
      RemoveTree(d_->layout.export_dir);
    };
    if (!r.ok()) return r.status();
    if (r->status != 200) {
      return absl::InternalError(
          absl::StrCat("GET /images/", spec_.tag, "/get: HTTP ", r->status, ": ", r->body));
    }
    std::string out = spec_.output_path.empty() ? spec_.work_dir + "/image.oci.tar"
                                                : spec_.output_path;
    absl::StatusOr<OciImage> img =
        ConvertDockerArchiveToOci(d_->layout.image_tar, d_->layout.export_dir, out, spec_.tag);
    if (!img.ok()) return img.status();
    result_.manifest_digest = img->manifest_digest;
    result_.image_archive_path = out;
    result_.image_archive_bytes = img->archive_bytes;
    Log(absl::StrCat("[kiln-runner] image ", spec_.tag, " ", img->manifest_digest, " (",
                     img->archive_bytes, " bytes) -> ", out));
    return absl::OkStatus();
  }

  void Teardown() {
    secrets_.Wipe();
    StopDaemons(*d_);
  }

  const BuildSpec& spec_;
  const LogSink& on_log_;
  Redactor redactor_;
  BuildResult result_;
  // deadline_: the job's (or the warm-up's) budget on CLOCK_MONOTONIC: the host sets a restored
  // VM's wall clock, which must not shorten or stretch it.
  MonotonicDeadline deadline_ = MonotonicDeadline::Never();
  // Soon(d): d from now, or the deadline if that comes first, as an absl::Time for UnixHttpClient.
  absl::Time Soon(absl::Duration d) const {
    return deadline_.Earlier(MonotonicDeadline::After(d)).AsWallDeadline();
  }
  std::string secret_base_;
  SecretFiles secrets_;
  // d_: the daemons; adopted from a WarmDaemon (warm_ true) or started by this build.
  std::unique_ptr<DaemonState> d_ = std::make_unique<DaemonState>();
  bool warm_ = false;
};

}  // namespace

absl::Status PreflightDockerfile(const std::string& context_dir, const BuildSpec& spec) {
  absl::StatusOr<std::string> text = ReadDockerfileInContext(context_dir, spec.dockerfile);
  if (!text.ok()) return text.status();
  absl::StatusOr<DockerfileInfo> info = ScanDockerfile(*text);
  if (!info.ok()) return info.status();
  return CheckSecretsDelivered(*info, spec.secrets);
}

std::string DefaultSecretDir() {
  return IsTmpfs("/run") ? "/run/kiln-secrets" : "/dev/shm/kiln-secrets";
}

BuildResult RunBuild(const BuildSpec& spec, const LogSink& on_log) {
  Runner runner(spec, on_log);
  return runner.Run();
}

void DaemonStateDeleter::operator()(DaemonState* d) const {
  if (d == nullptr) return;
  StopDaemons(*d);
  delete d;
}

WarmUpResult StartWarmDaemon(const WarmDaemonSpec& warm, const LogSink& on_log) {
  BuildSpec spec;
  spec.work_dir = warm.work_dir;
  spec.preload_images = warm.preload_images;
  spec.deadline_ms = warm.deadline_ms;
  spec.tools = warm.tools;
  spec.mode = warm.mode;
  Runner runner(spec, on_log);
  return runner.WarmUp();
}

BuildResult RunBuild(const BuildSpec& spec, const LogSink& on_log, WarmDaemon warm) {
  Runner runner(spec, on_log, std::move(warm));
  return runner.Run();
}

}  // namespace kiln::agent::runner
