// kiln-agent: the builder agent (guest side). Finds its channel, answers Hello with Ready, and
// serves health (Ping), Exec and build jobs (the build runner, agent/job_runner.h: dockerd's
// built-in BuildKit). See agent/README.md.
//
//   agent --channel=virtio-serial:kiln.agent     QEMU: the virtio-serial port of that name
//   agent --channel=vsock:1024                   Cloud Hypervisor: AF_VSOCK, CID any, port 1024
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/connection.h"
#include "agent/fresh_machine.h"
#include "agent/job_runner.h"
#include "agent/process/process.h"
#include "agent/server.h"
#include "agent/transport.h"
#include "agent/work_dir.h"
#include "third_party/absl_ext/monotonic_deadline.h"

ABSL_FLAG(std::string, channel, "",
          "where to serve the host: virtio-serial:<port name> or vsock:<port>");
ABSL_FLAG(std::string, sysfs_root, "/sys", "sysfs mount point (virtio-serial port lookup)");
ABSL_FLAG(std::string, dev_root, "/dev", "device directory holding /dev/vportNpM");
ABSL_FLAG(std::string, proc_root, "/proc", "procfs mount point (health)");
ABSL_FLAG(std::string, work_dir, "/run/kiln-agent", "where job inputs are received");
ABSL_FLAG(int, retry_ms, 200,
          "wait between attempts to open the channel, and on an idle virtio-serial port (no "
          "host connected) between end-of-stream reads, ms");
ABSL_FLAG(bool, once, false,
          "serve one session, then exit (a builder VM: the host closes the channel, the agent "
          "exits, init powers the VM off)");
ABSL_FLAG(bool, keep_failed_jobs, false,
          "leave a failed job's dir (context, build work dir, daemon logs and data roots) for "
          "inspection: a kept builder (keep_failed_builders); secrets are wiped regardless");
ABSL_FLAG(bool, build, true, "offer the \"build\" capability (dockerd + BuildKit)");
ABSL_FLAG(std::string, secret_dir, "",
          "tmpfs directory for build secret files; empty: /run/kiln-secrets or "
          "/dev/shm/kiln-secrets");
ABSL_FLAG(std::string, builder_mode, "rootless",
          "how the BuildKit daemon runs: rootless (production: dockerd-rootless.sh under "
          "rootlesskit as uid/gid 1000 in the cgroup v2 subtree init delegates with "
          "kiln.delegate=1000; needs the Debian 13 builder disk) or rootful (dockerd as root with "
          "its own containerd)");
ABSL_FLAG(std::string, containerd, "/usr/bin/containerd", "containerd binary");
ABSL_FLAG(std::string, dockerd, "/usr/sbin/dockerd", "dockerd binary");
ABSL_FLAG(std::string, docker, "/usr/bin/docker", "docker CLI binary (Debian's)");
ABSL_FLAG(std::string, buildx, "/usr/libexec/docker/cli-plugins/docker-buildx",
          "buildx plugin binary: when executable, builds run it directly (`docker-buildx build`, "
          "two Go process starts fewer than `docker build`); empty or missing: `docker build`");
ABSL_FLAG(bool, fresh_machine, false,
          "do not serve: read the host's clock and seed bytes from stdin (agent/fresh_machine.h), "
          "set the wall clock, add the seed to the kernel's entropy pool, reseed the CRNG, print "
          "what was done and exit (0, or 1 naming the failed step). The host runs this through "
          "Exec in every VM restored from a warm snapshot, before its job");
ABSL_FLAG(bool, prewarm, false,
          "at start, run `<dockerd|docker|runc> --version` once each in the background, so that "
          "their pages are in the page cache (and, under TCG, their startup code translated) "
          "before the first job starts them). Off by default: measured in TCG builder VMs it "
          "competes with the job's own daemon start (dockerd_start 13.4/13.6 s with vs "
          "10.5/12.2 s without, host load ~5)");

namespace {

int64_t NowMsForLog() { return kiln::MonotonicMicros() / 1000; }

void Say(const std::string& line) { std::fprintf(stderr, "kiln-agent: %s\n", line.c_str()); }

// Prewarm: runs each binary with --version, one after the other, in a background thread;
// output discarded, failures ignored (a missing binary shows up when a job needs it).
void Prewarm(std::vector<std::string> binaries) {
  std::thread([binaries = std::move(binaries)] {
    const int64_t t0 = NowMsForLog();
    for (const std::string& b : binaries) {
      kiln::process::SpawnOptions o;  // stdio /dev/null
      o.argv = {b, "--version"};
      if (absl::StatusOr<kiln::process::Process> p = kiln::process::Process::Spawn(o); p.ok()) {
        (void)p->Wait(absl::InfiniteFuture());
      }
    }
    Say(absl::StrCat("prewarmed ", binaries.size(), " binaries in ", NowMsForLog() - t0, " ms"));
  }).detach();
}

// CheckWorkDir: creates the work dir with its marker (work_dir.h: the agent clears only a dir
// it marked) and warns when that fails, when it is on overlayfs (dockerd's overlay2 data
// root, which lives below it, cannot be on overlayfs) or not writable.
void CheckWorkDir(const std::string& dir) {
  if (absl::Status s = kiln::agent::PrepareWorkDir(dir); !s.ok()) {
    Say(absl::StrCat("warning: ", s.ToString(), " (build jobs will be refused)"));
  }
  struct statfs fs;
  if (statfs(dir.c_str(), &fs) != 0) {
    Say(absl::StrCat("warning: work dir ", dir, " unusable: ", std::strerror(errno)));
    return;
  }
  constexpr long kOverlayfsMagic = 0x794c7630;
  if (static_cast<long>(fs.f_type) == kOverlayfsMagic) {
    Say(absl::StrCat("warning: work dir ", dir,
                     " is on overlayfs: dockerd's overlay2 data root will fail there; use a "
                     "tmpfs or an ext4 disk"));
  }
}

// FreshMachineMain: --fresh_machine (see the flag).
int FreshMachineMain() {
  std::string in;
  char buf[4096];
  ssize_t n;
  while ((n = read(0, buf, sizeof(buf))) > 0 && in.size() < 8192) in.append(buf, n);
  absl::StatusOr<kiln::agent::FreshMachineInput> input = kiln::agent::ParseFreshMachineInput(in);
  if (!input.ok()) {
    Say(input.status().ToString());
    return 1;
  }
  // This process started after the request had arrived: add its age to the host's time.
  int64_t late_ns = 0;
  std::string stat;
  if (FILE* f = std::fopen("/proc/self/stat", "r")) {
    char b[1024];
    stat.assign(b, std::fread(b, 1, sizeof(b), f));
    std::fclose(f);
  }
  timespec boot;
  clock_gettime(CLOCK_BOOTTIME, &boot);
  if (absl::StatusOr<int64_t> age = kiln::agent::ProcessAgeNs(
          stat, int64_t{boot.tv_sec} * 1000000000 + boot.tv_nsec, sysconf(_SC_CLK_TCK));
      age.ok()) {
    late_ns = *age;
  }
  absl::StatusOr<kiln::agent::FreshMachineReport> r =
      kiln::agent::ApplyFreshMachine(*input, late_ns);
  if (!r.ok()) {
    Say(r.status().ToString());
    return 1;
  }
  std::printf(
      "fresh machine: clock stepped by %lld ms (host time + %lld ms of this process's start); "
      "%zu seed bytes added; crng %s\n",
      static_cast<long long>(r->clock_step_ms), static_cast<long long>(late_ns / 1000000),
      r->seed_bytes,
              r->reseeded ? "reseeded" : "not reseeded");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "kiln builder agent.\n  agent --channel=virtio-serial:<name> | --channel=vsock:<port>");
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if (absl::GetFlag(FLAGS_fresh_machine)) return FreshMachineMain();
  // The OOM killer must not pick the agent: it is what reports the OOM kill of dockerd or a
  // build step to the host (a silent agent looks like a hung VM). Its children reset this to
  // 0 (runner::ResetSignalsInChild).
  if (FILE* f = std::fopen("/proc/self/oom_score_adj", "w")) {
    std::fputs("-1000", f);
    std::fclose(f);
  }
  kiln::agent::runner::BuilderMode mode;
  if (!kiln::agent::runner::ParseBuilderMode(absl::GetFlag(FLAGS_builder_mode), &mode)) {
    Say(absl::StrCat("--builder_mode must be rootless or rootful, got \"",
                     absl::GetFlag(FLAGS_builder_mode), "\""));
    return 2;
  }
  const std::string channel = absl::GetFlag(FLAGS_channel);
  kiln::agent::AgentOptions options;
  options.proc_root = absl::GetFlag(FLAGS_proc_root);
  options.work_dir = absl::GetFlag(FLAGS_work_dir);
  options.keep_failed_jobs = absl::GetFlag(FLAGS_keep_failed_jobs);
  const int retry_ms = absl::GetFlag(FLAGS_retry_ms);
  if (absl::GetFlag(FLAGS_build)) {
    kiln::agent::JobRunnerOptions jr;
    jr.tools.containerd = absl::GetFlag(FLAGS_containerd);
    jr.tools.dockerd = absl::GetFlag(FLAGS_dockerd);
    jr.tools.docker = absl::GetFlag(FLAGS_docker);
    jr.tools.buildx = absl::GetFlag(FLAGS_buildx);
    jr.secret_dir = absl::GetFlag(FLAGS_secret_dir);
    jr.mode = mode;
    Say(absl::StrCat("builder mode ", kiln::agent::runner::BuilderModeName(mode)));
    kiln::agent::BuildRunners runners = kiln::agent::MakeBuildRunners(jr);
    options.runner = std::move(runners.build);
    options.warm_up = std::move(runners.warm_up);  // WarmUp (capability "warm"): warm builders
    CheckWorkDir(options.work_dir);
    if (absl::GetFlag(FLAGS_prewarm)) {
      Prewarm({jr.tools.dockerd, jr.tools.docker, "/usr/sbin/runc"});
    }
  }

  std::unique_ptr<kiln::agent::VsockListener> vsock;
  std::string port_name;
  if (absl::StartsWith(channel, "vsock:")) {
    uint32_t port;
    if (!absl::SimpleAtoi(channel.substr(6), &port)) {
      Say(absl::StrCat("bad --channel=", channel, ": vsock port must be a number"));
      return 2;
    }
    auto l = kiln::agent::VsockListener::Listen(port);
    if (!l.ok()) {
      Say(l.status().ToString());
      return 1;
    }
    vsock = std::move(*l);
  } else if (absl::StartsWith(channel, "virtio-serial:") && channel.size() > 14) {
    port_name = channel.substr(14);
  } else {
    Say(absl::StrCat("--channel must be virtio-serial:<name> or vsock:<port>, got \"", channel,
                     "\" (see --help)"));
    return 2;
  }
  Say(absl::StrCat("serving ", channel));
  kiln::agent::ServeLoopOptions loop;
  loop.once = absl::GetFlag(FLAGS_once);
  loop.retry_ms = retry_ms;
  // virtio-serial: the port stays open across host sessions (closing it discards a Hello
  // that arrived meanwhile; see ServeLoopOptions::keep_open_on_eof).
  loop.keep_open_on_eof = !vsock;
  loop.say = Say;
  const std::string sysfs_root = absl::GetFlag(FLAGS_sysfs_root);
  const std::string dev_root = absl::GetFlag(FLAGS_dev_root);
  absl::Status s = kiln::agent::ServeChannel(
      [&]() -> absl::StatusOr<std::unique_ptr<kiln::agent::ByteStream>> {
        if (vsock) return vsock->Accept(kiln::agent::kNoDeadline);
        return kiln::agent::OpenVirtioSerial(sysfs_root, port_name, dev_root);
      },
      options, loop);
  return s.ok() ? 0 : 1;
}
