// File: agent/job_runner.cc
#include "agent/job_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <memory>
#include <mutex>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/protocol/secure_wipe.h"
#include "agent/runner/context_tar.h"
#include "third_party/absl_ext/posix_error.h"

namespace kiln::agent {

static_assert(kMaxSecretValue == static_cast<size_t>(runner::kMaxSecretBytes),
              "the runner accepts every secret the protocol delivers");

namespace {

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

absl::Status MakeDir(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return PosixError(ec.value(), "mkdir", path);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<runner::BuildSpec> JobToSpec(const BuildInputs& in, const std::string& job_dir,
                                            const JobRunnerOptions& options) {
  if (in.job == nullptr) return absl::InvalidArgumentError("BuildInputs without a job");
  const BuildJob& job = *in.job;
  runner::BuildSpec spec;
  if (job.dockerfile.empty()) {
    spec.context_tar = in.context_tar;
  } else {
    spec.context_dir = job_dir + "/context";
  }
  spec.dockerfile = job.dockerfile_path.empty() ? "Dockerfile" : job.dockerfile_path;
  for (const BuildArg& a : job.build_args) spec.build_args.emplace_back(a.key, a.value);
  spec.target = job.target;
  switch (job.network) {
    case NetworkMode::kNone:
      spec.network = runner::NetworkMode::kNone;
      break;
    case NetworkMode::kHost:
      spec.network = runner::NetworkMode::kHost;
      break;
    default:
      return absl::InvalidArgumentError(
          "BuildJob.network: \"default\" is not offered (the builder's dockerd runs with "
          "--bridge=none); use none or host");
  }
  spec.secrets = in.secrets;
  spec.preload_images = in.preload_paths;
  spec.tag = job.tag.empty() ? kDefaultTag : job.tag;
  spec.deadline_ms =
      job.deadline_ms == 0 ? kDefaultDeadlineMs : static_cast<int64_t>(job.deadline_ms);
  spec.work_dir = job_dir + "/build";
  spec.secret_dir = options.secret_dir;
  spec.no_cache = options.no_cache;
  spec.tools = options.tools;
  spec.mode = options.mode;
  return spec;
}

std::vector<Phase> PhasesOf(const runner::PhaseDurationsMs& d) {
  auto ms = [](int64_t v) { return static_cast<uint64_t>(v < 0 ? 0 : v); };
  return {{"validate", ms(d.validate)},      {"dockerd_start", ms(d.dockerd_start)},
          {"preload", ms(d.preload)},        {"build", ms(d.build)},
          {"export", ms(d.export_image)},    {"teardown", ms(d.teardown)},
          {"total", ms(d.total)}};
}

bool Refused(const runner::BuildResult& result) {
  return !result.status.ok() && result.durations_ms.dockerd_start == 0 &&
         result.build_exit_code < 0;
}

absl::StatusOr<BuildOutcome> ResultToOutcome(const runner::BuildResult& result) {
  if (Refused(result)) {
    // The runner's message names the problem (never a secret value); keep its code.
    return absl::Status(result.status.code(),
                        absl::StrCat("job refused before BuildKit ran: ",
                                     result.error_message.empty() ? result.status.message()
                                                                  : result.error_message));
  }
  BuildOutcome out;
  out.phases = PhasesOf(result.durations_ms);
  if (result.status.ok()) {
    out.exit_status = 0;
    out.image_digest = result.manifest_digest;
    out.image_path = result.image_archive_path;
    return out;
  }
  out.exit_status = result.build_exit_code > 0 ? result.build_exit_code : 1;
  out.error = absl::StrCat(absl::StatusCodeToString(result.status.code()), ": ",
                           result.error_message.empty() ? result.status.message()
                                                        : result.error_message);
  return out;
}

absl::Status PrepareContext(const BuildInputs& in, runner::BuildSpec* spec,
                            const std::string& job_dir) {
  if (absl::Status s = MakeDir(spec->work_dir); !s.ok()) return s;
  if (spec->context_dir.empty()) return absl::OkStatus();
  if (absl::Status s = runner::ValidateRelativePath("BuildJob.dockerfile_path", spec->dockerfile);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = MakeDir(spec->context_dir); !s.ok()) return s;
  absl::StatusOr<runner::ContextTarStats> stats =
      runner::ExtractContextTar(in.context_tar, spec->context_dir, {});
  if (!stats.ok()) return stats.status();
  // Write the Dockerfile contents at dockerfile_path; its directory must stay inside the
  // context even through the context's own symlinks.
  const std::string path = spec->context_dir + "/" + spec->dockerfile;
  if (absl::Status s = MakeDir(Parent(path)); !s.ok()) return s;
  std::error_code ec;
  const std::filesystem::path root = std::filesystem::canonical(spec->context_dir, ec);
  if (ec) return PosixError(ec.value(), "realpath", spec->context_dir);
  const std::filesystem::path dir = std::filesystem::canonical(Parent(path), ec);
  if (ec) return PosixError(ec.value(), "realpath", Parent(path));
  const std::string r = root.string() + "/";
  if ((dir.string() + "/").compare(0, r.size(), r) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "BuildJob.dockerfile_path ", spec->dockerfile, " resolves outside the context"));
  }
  const std::string final_path =
      dir.string() + "/" + std::filesystem::path(path).filename().string();
  const int fd = ::open(final_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                        0644);
  if (fd < 0) return PosixError(errno, "create", final_path);
  const std::string& data = in.job->dockerfile;
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      return PosixError(e, "write", final_path);
    }
    off += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return PosixError(errno, "close", final_path);
  return absl::OkStatus();
}

namespace {

// WarmSlot: the agent's one warm daemon (at most one, ever) and whether a job already ran.
struct WarmSlot {
  std::mutex mu;
  runner::WarmDaemon daemon;
  bool warmed = false;   // a WarmUp succeeded in this agent
  bool job_ran = false;  // a BuildJob reached the runner in this agent
};

BuildRunner MakeBuildRunner(JobRunnerOptions options, std::shared_ptr<WarmSlot> slot) {
  return [options, slot](const BuildInputs& in) -> absl::StatusOr<BuildOutcome> {
    const std::string job_dir = Parent(in.context_tar);
    absl::StatusOr<runner::BuildSpec> spec = JobToSpec(in, job_dir, options);
    if (!spec.ok()) return spec.status();
    // The spec's copy of the secrets is wiped on every way out (server.cc wipes its own).
    struct WipeOnExit {
      std::map<std::string, std::string>& m;
      ~WipeOnExit() { SecureWipe(m); }
    } wipe_secrets{spec->secrets};
    if (absl::Status s = PrepareContext(in, &*spec, job_dir); !s.ok()) return s;
    std::fprintf(stderr, "kiln-agent: job %s: building %s (%zu secrets, %zu preload images)\n",
                 in.job->job_id.c_str(), std::string(runner::BuilderModeName(spec->mode)).c_str(), spec->secrets.size(), spec->preload_images.size());
    runner::WarmDaemon warm;
    {
      std::lock_guard<std::mutex> lock(slot->mu);
      slot->job_ran = true;
      warm = std::move(slot->daemon);  // the warm daemon serves this job only
    }
    runner::BuildResult result = runner::RunBuild(
        *spec,
        [&in](absl::string_view line) {
          if (in.log) in.log(LogStream::kStderr, line);
        },
        std::move(warm));
    std::fprintf(stderr, "kiln-agent: job %s: %s exit=%d total_ms=%lld\n",
                 in.job->job_id.c_str(),
                 std::string(absl::StatusCodeToString(result.status.code())).c_str(),
                 result.build_exit_code, static_cast<long long>(result.durations_ms.total));
    return ResultToOutcome(result);
  };
}

}  // namespace

BuildRunner MakeJobRunner(JobRunnerOptions options) {
  return MakeBuildRunner(std::move(options), std::make_shared<WarmSlot>());
}

WarmUpRunner MakeWarmUpRunner(const JobRunnerOptions& options, std::shared_ptr<WarmSlot> slot) {
  return [options, slot](const WarmUpInputs& in) -> absl::StatusOr<BuildOutcome> {
    std::lock_guard<std::mutex> lock(slot->mu);
    if (slot->warmed || slot->daemon) {
      return absl::FailedPreconditionError(
          "WarmUp: this agent already warmed up a daemon (one warm daemon per VM)");
    }
    if (slot->job_ran) {
      return absl::FailedPreconditionError(
          "WarmUp after a BuildJob: a warm daemon must hold no job's data (warm up a fresh VM)");
    }
    runner::WarmDaemonSpec spec;
    spec.work_dir = options.warm_dir;
    spec.preload_images = in.preload_paths;
    spec.deadline_ms = in.deadline_ms == 0 ? kDefaultDeadlineMs
                                           : static_cast<int64_t>(std::min<uint64_t>(
                                                 in.deadline_ms, kDefaultDeadlineMs * 6));
    spec.tools = options.tools;
    spec.mode = options.mode;
    std::error_code ec;
    std::filesystem::remove_all(spec.work_dir, ec);
    if (absl::Status s = MakeDir(spec.work_dir); !s.ok()) return s;
    std::fprintf(stderr, "kiln-agent: warm-up: starting the %s daemon in %s (%zu base images)\n",
                 std::string(runner::BuilderModeName(spec.mode)).c_str(), spec.work_dir.c_str(),
                 spec.preload_images.size());
    runner::WarmUpResult r = runner::StartWarmDaemon(spec, [&in](absl::string_view line) {
      if (in.log) in.log(LogStream::kStderr, line);
    });
    std::fprintf(stderr, "kiln-agent: warm-up: %s dockerd_start_ms=%lld preload_ms=%lld\n",
                 std::string(absl::StatusCodeToString(r.status.code())).c_str(),
                 static_cast<long long>(r.durations_ms.dockerd_start),
                 static_cast<long long>(r.durations_ms.preload));
    BuildOutcome out;
    out.phases = {{"dockerd_start", static_cast<uint64_t>(r.durations_ms.dockerd_start)},
                  {"preload", static_cast<uint64_t>(r.durations_ms.preload)}};
    if (!r.status.ok()) {
      out.exit_status = 1;
      out.error = absl::StrCat(absl::StatusCodeToString(r.status.code()), ": ",
                               r.status.message());
      if (!r.log_tail.empty()) {
        absl::StrAppend(&out.error, "\n--- last ", r.log_tail.size(), " log lines ---\n",
                        absl::StrJoin(r.log_tail, "\n"));
      }
      return out;
    }
    slot->daemon = std::move(r.daemon);
    slot->warmed = true;
    return out;
  };
}

BuildRunners MakeBuildRunners(JobRunnerOptions options) {
  auto slot = std::make_shared<WarmSlot>();
  BuildRunners r;
  r.warm_up = MakeWarmUpRunner(options, slot);
  r.build = MakeBuildRunner(std::move(options), slot);
  return r;
}

}  // namespace kiln::agent
