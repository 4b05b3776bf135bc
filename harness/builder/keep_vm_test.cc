// File: harness/builder/keep_vm_test.cc
// VM test (tag `vm`) of keep_failed_builders (issue 6): a real builder VM under QEMU runs the
// failing example (agent/runner/examples/failing/, RUN exits 3).
//   - keep on: the builder is listed in the state dir; `cat /proc/self/mountinfo` through the
//     agent's Exec shows the cgroup2 mount; the serial log shows the failure; the agent's
//     secret dir is empty; the failed job's context and daemon state are kept (agent
//     --keep_failed_jobs); removing it (agent power-off, then signals) leaves no QEMU process
//     and no socket.
//   - keep off: right after RunBuilderJobs returns, no VMM child of this process is running
//     and no record exists.
//   - TTL expiry, harness killed while its builder is kept: a forked harness process keeps a
//     failed builder (ttl 20 s) and is SIGKILLed. The builder outlives it (kept builders are
//     for people, not for the harness): the real `kilnctl builders gc` reaps nothing and exec
//     still works; once the TTL passes, exec answers "expired" and `gc` reaps it: no QEMU, no
//     socket, no work dir, no record.
//   - harness killed mid-build: a forked harness process is SIGKILLed while its builder runs
//     a job (record state "building"); the detachable QEMU survives it, and `kilnctl builders
//     gc` reaps it as an orphan: no QEMU left.
// This process is a child subreaper (PR_SET_CHILD_SUBREAPER), so the QEMU of a killed harness
// is re-parented here and "no QEMU left" is checked on its own children.
// Artifacts come from flags (same as builder_vm_test).
#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "harness/builder/builder_client.h"
#include "harness/builder/builder_scenarios.h"
#include "harness/keep/keep_store.h"
#include "harness/vmm/runner.h"
#include "harness/vmm/vm_test_support.h"
#include "harness/keep/agent_exec.h"

ABSL_FLAG(std::string, kernel, "", "guest kernel (PVH vmlinux)");
ABSL_FLAG(std::string, initrd, "", "kiln initrd");
ABSL_FLAG(std::string, builder_disk, "", "ext4 builder root disk with the agent");
ABSL_FLAG(std::string, busybox_image, "", "docker-archive of kiln-busybox:1");
ABSL_FLAG(std::string, examples_readme, "", "agent/runner/examples/README.md (locates the dir)");
ABSL_FLAG(std::string, accel, "auto", "accel: auto, kvm or tcg");
ABSL_FLAG(std::string, kilnctl, "", "the kilnctl binary (//tools/kilnctl)");

namespace kiln::harness {
namespace {

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// LiveChildren(): pids of running (not zombie) children of this process.
std::vector<pid_t> LiveChildren() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string s = ss.str();
    const size_t paren = s.rfind(')');
    if (paren == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (sscanf(s.c_str() + paren + 1, " %c %d", &state, &ppid) != 2) continue;
    if (ppid == getpid() && state != 'Z' && state != 'X') out.push_back(pid);
  }
  closedir(d);
  return out;
}

// ExecCapture(socket, argv): runs argv in the guest; (exit code, stdout+stderr).
std::pair<int, std::string> ExecCapture(const std::string& socket,
                                        std::vector<std::string> argv) {
  char tmpl[] = "/tmp/kiln-keep-exec-XXXXXX";
  const int fd = mkstemp(tmpl);
  ExecRequest req;
  req.argv = std::move(argv);
  req.connect_timeout_ms = 30000;
  absl::StatusOr<agent::ExecResult> r = ExecOverChannel(socket, req, fd, fd);
  close(fd);
  std::ifstream in(tmpl);
  std::stringstream ss;
  ss << in.rdbuf();
  unlink(tmpl);
  if (!r.ok()) return {-1, r.status().ToString()};
  return {r->exit_code, ss.str()};
}

// FailingJob(in, name, secret): the failing example as a job (busybox preloaded); `secret`
// non-empty: sent and named as build_token (the Dockerfile does not use it).
absl::StatusOr<BuildRequest> FailingJob(const BuilderScenarioInputs& in, const std::string& name,
                                        const std::string& secret) {
  BuildRequest r;
  r.job_id = name;
  r.context_tar = absl::StrCat(in.work_dir, "/", name, ".context.tar");
  r.image_out = absl::StrCat(in.work_dir, "/", name, ".oci.tar");
  absl::StatusOr<uint64_t> n = WriteDirectoryTar(absl::StrCat(in.examples_dir, "/failing"),
                                                 r.context_tar, SymlinkMode::kFollow);
  if (!n.ok()) return n.status();
  if (!secret.empty()) {
    r.secrets["build_token"] = secret;
    r.secret_ids = {"build_token"};
  }
  r.preload = {{"kiln-busybox:1", in.busybox_image}};
  r.tag = absl::StrCat("kiln-test/", name, ":1");
  r.deadline_ms = 240000;
  return r;
}

// Options(id, state_dir, keep): a builder VM `id` with keep_failed_builders on or off.
BuilderVmOptions Options(const std::string& id, const std::string& state_dir, bool keep) {
  BuilderVmOptions o;
  o.id = id;
  o.keep.keep_failed_builders = keep;
  o.keep.state_dir = state_dir;
  return o;
}

// CommandResult: what a kilnctl run printed and its exit code.
struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Kilnctl(state_dir, args): runs the real kilnctl binary (--state_dir, short agent timeouts)
// and captures its output.
CommandResult Kilnctl(const std::string& state_dir, const std::string& args) {
  const std::string cmd =
      absl::StrCat(absl::GetFlag(FLAGS_kilnctl), " --state_dir=", state_dir,
                   " --grace_s=5 ", args, " 2>&1");
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::cerr << "$ kilnctl " << args << "  -> " << r.exit_code << "\n" << r.output;
  return r;
}

// WaitForRecord(store, state, timeout): the first record in `state`, polled every 200 ms.
std::optional<KeepRecord> WaitForRecord(KeepStore& store, KeepState state,
                                        absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    absl::StatusOr<KeepListing> l = store.List(absl::Now());
    if (l.ok()) {
      for (const KeepRecord& r : l->records) {
        if (r.state == state) return r;
      }
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  return std::nullopt;
}

// ReapChild(pid, timeout): waits for child `pid` (a QEMU re-parented to this subreaper) to be
// reaped; true if it exited within `timeout`.
bool ReapChild(pid_t pid, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return true;
    if (r < 0) return errno == ECHILD && kill(pid, 0) != 0;  // not ours: gone?
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

class KeepVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<SelectedVmm> vmm =
        MakeTestVmm({.vmm = "qemu", .accel = absl::GetFlag(FLAGS_accel)},
                    ProbeArtifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd)});
    ASSERT_TRUE(vmm.ok()) << vmm.status();
    vmm_ = std::move(vmm->vmm);
    root_ = TestTmpRoot();
    factory_ = std::make_unique<VmFactory>(*vmm_, root_ + "/vms", OutputDirFromEnv());
    in_.artifacts = {absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                     absl::GetFlag(FLAGS_builder_disk)};
    in_.busybox_image = absl::GetFlag(FLAGS_busybox_image);
    in_.examples_dir = Dirname(absl::GetFlag(FLAGS_examples_readme));
    in_.work_dir = root_;
    ASSERT_TRUE(ValidateBuilderScenarioInputs(in_).ok())
        << ValidateBuilderScenarioInputs(in_).ToString();
  }

  // ForkHarness(name, options, job, then_pause): a harness process (fork of this one) that
  // runs RunBuilderJobs with its own VmFactory, writes "<kept_id>\n<status>" to
  // <root>/<name>.result, then pauses until killed (then_pause) or exits. Returns its pid.
  pid_t ForkHarness(const std::string& name, const BuilderVmOptions& options,
                    const BuildRequest& job, bool then_pause) {
    std::cerr.flush();
    const pid_t pid = fork();
    if (pid != 0) return pid;
    // The child: never returns into gtest.
    {
      VmFactory factory(*vmm_, root_ + "/vms-" + name, OutputDirFromEnv());
      BuilderRun run = RunBuilderJobs(factory, in_.artifacts, options, {job});
      std::ofstream(root_ + "/" + name + ".result")
          << run.kept_id << "\n" << run.status.ToString() << "\n";
      std::cerr << name << ": harness child: kept_id=" << run.kept_id << " status=" << run.status
                << std::endl;
      while (then_pause) pause();
    }
    _exit(0);
  }

  std::unique_ptr<Vmm> vmm_;
  std::string root_;
  std::unique_ptr<VmFactory> factory_;
  BuilderScenarioInputs in_;
};

TEST_F(KeepVmTest, FailedBuilderIsKeptExecdAndRemoved) {
  const std::string state_dir = root_ + "/state-on";
  absl::StatusOr<BuildRequest> job = FailingJob(in_, "keep-on", "kiln-keep-secret-4f1c");
  ASSERT_TRUE(job.ok()) << job.status();
  const BuilderVmOptions o = Options("keep-on", state_dir, /*keep=*/true);
  const absl::Time t0 = absl::Now();
  BuilderRun run = RunBuilderJobs(*factory_, in_.artifacts, o, {*job});
  std::cerr << "keep-on: RunBuilderJobs " << absl::FormatDuration(absl::Now() - t0) << "\n";
  ASSERT_TRUE(run.status.ok()) << run.status;
  ASSERT_EQ(run.jobs.size(), 1u);
  ASSERT_TRUE(run.jobs[0].result.has_value()) << run.jobs[0].refused;
  EXPECT_NE(run.jobs[0].result->exit_status, 0);
  ASSERT_TRUE(run.keep_status.ok()) << run.keep_status;
  ASSERT_EQ(run.kept_id, run.vm_id);
  factory_.reset();  // the factory's teardown must leave the kept VM running

  KeepStore store(state_dir);
  absl::StatusOr<KeepListing> listing = store.List(absl::Now());
  ASSERT_TRUE(listing.ok()) << listing.status();
  ASSERT_EQ(listing->records.size(), 1u);
  const KeepRecord rec = listing->records[0];
  EXPECT_EQ(rec.id, run.kept_id);
  EXPECT_EQ(rec.state, KeepState::kKept);
  EXPECT_TRUE(ProcessAlive(rec.vmm_process));
  EXPECT_TRUE(absl::StrContains(rec.failure, "exit_status")) << rec.failure;
  EXPECT_GT(rec.expires - rec.created, absl::Minutes(29));

  // The exec comes a while after the builder client detached, as `kilnctl builders exec` by
  // hand does: by then the agent has read the end of the client's session and waits on the
  // idle port (it reads end of stream while no host is connected). Its Hello must still be
  // answered (issue 6: the agent closed and reopened the port between sessions, and the
  // guest driver discarded the Hello that arrived meanwhile). An exec right after the
  // detach did not show it: the host reconnected before the agent saw the end of stream.
  absl::SleepFor(absl::Seconds(2));
  const absl::Time t1 = absl::Now();
  auto [mi_code, mountinfo] = ExecCapture(rec.channel_socket, {"cat", "/proc/self/mountinfo"});
  std::cerr << "keep-on: exec cat mountinfo " << absl::FormatDuration(absl::Now() - t1) << "\n";
  EXPECT_EQ(mi_code, 0) << mountinfo;
  EXPECT_TRUE(absl::StrContains(mountinfo, " - cgroup2 ")) << mountinfo;

  absl::SleepFor(absl::Seconds(2));  // again idle between two host sessions
  // The agent wiped the job's secrets (it was sent one): the secret dirs of both modes
  // (rootful /run/kiln-secrets, rootless per-job dirs under the build user's runtime dir)
  // hold no files with it, and nothing under /run, /dev/shm or the build user's home does.
  auto [ls_code, ls] = ExecCapture(
      rec.channel_socket,
      {"sh", "-c", "for d in /run/kiln-secrets /dev/shm/kiln-secrets; do "
                   "[ -d $d ] && ls -A $d; done; grep -rl kiln-keep-secret-4f1c /run /dev/shm "
                   "/home/builder 2>/dev/null; echo done"});
  EXPECT_EQ(ls_code, 0) << ls;
  EXPECT_EQ(ls, "done\n") << "secret files left in the kept builder";

  std::ifstream serial(rec.serial_log);
  std::stringstream ss;
  ss << serial.rdbuf();
  EXPECT_TRUE(absl::StrContains(ss.str(), "kiln-agent")) << "serial log: " << ss.str();
  EXPECT_TRUE(absl::StrContains(run.jobs[0].LogText(), "kiln-about-to-fail"));

  // The failed job's dir stays for inspection (agent --keep_failed_jobs): the context with
  // its Dockerfile, and the build dir with dockerd's log and data root.
  const std::string job_dir = "/run/kiln-agent/keep-on";
  EXPECT_TRUE(absl::StrContains(run.jobs[0].LogText(),
                                absl::StrCat("kept for inspection in ", job_dir)))
      << run.jobs[0].LogText();
  absl::SleepFor(absl::Seconds(1));
  auto [jd_code, jd] = ExecCapture(
      rec.channel_socket,
      {"sh", "-c", absl::StrCat("cd ", job_dir, " && find . -maxdepth 4 -name Dockerfile -o "
                                "-maxdepth 4 -name context.tar -o -maxdepth 4 -name '*.log' | "
                                "sort")});
  EXPECT_EQ(jd_code, 0) << jd;
  EXPECT_TRUE(absl::StrContains(jd, "./context.tar\n")) << jd;
  EXPECT_TRUE(absl::StrContains(jd, "/Dockerfile\n")) << jd;
  EXPECT_TRUE(absl::StrContains(jd, "dockerd.log\n")) << jd;

  TeardownOptions t;
  t.clean_shutdown = [](const KeepRecord& r) {
    return AgentPowerOff(r.channel_socket, 10000);
  };
  const absl::Time t2 = absl::Now();
  ASSERT_TRUE(store.Remove(rec.id, t).ok());
  std::cerr << "keep-on: rm " << absl::FormatDuration(absl::Now() - t2) << "\n";
  EXPECT_FALSE(ProcessAlive(rec.vmm_process));
  int status = 0;
  EXPECT_EQ(waitpid(rec.vmm_process.pid, &status, 0), rec.vmm_process.pid);  // our child
  struct stat st;
  EXPECT_NE(stat(rec.channel_socket.c_str(), &st), 0) << "socket left: " << rec.channel_socket;
  EXPECT_TRUE(LiveChildren().empty());
  listing = store.List(absl::Now());
  ASSERT_TRUE(listing.ok());
  EXPECT_TRUE(listing->records.empty());
}

TEST_F(KeepVmTest, KeepOffTearsTheFailedBuilderDown) {
  const std::string state_dir = root_ + "/state-off";
  absl::StatusOr<BuildRequest> job =
      FailingJob(in_, "keep-off", "");
  ASSERT_TRUE(job.ok()) << job.status();
  const BuilderVmOptions o = Options("keep-off", state_dir, /*keep=*/false);
  BuilderRun run = RunBuilderJobs(*factory_, in_.artifacts, o, {*job});
  ASSERT_TRUE(run.status.ok()) << run.status;
  ASSERT_EQ(run.jobs.size(), 1u);
  ASSERT_TRUE(run.jobs[0].result.has_value()) << run.jobs[0].refused;
  EXPECT_NE(run.jobs[0].result->exit_status, 0);
  EXPECT_EQ(run.kept_id, "");
  EXPECT_TRUE(LiveChildren().empty()) << "a VMM is still running after the failure";
  absl::StatusOr<KeepListing> listing = KeepStore(state_dir).List(absl::Now());
  EXPECT_TRUE(!listing.ok() || listing->records.empty());
}

TEST_F(KeepVmTest, HarnessKilledWhileKeptThenTtlExpiresAndGcReapsIt) {
  const std::string state_dir = root_ + "/state-ttl";
  absl::StatusOr<BuildRequest> job = FailingJob(in_, "keep-ttl", "kiln-ttl-secret-77aa");
  ASSERT_TRUE(job.ok()) << job.status();
  BuilderVmOptions o = Options("keep-ttl", state_dir, /*keep=*/true);
  o.keep.ttl = absl::Seconds(20);
  const pid_t harness = ForkHarness("keep-ttl", o, *job, /*then_pause=*/true);
  ASSERT_GT(harness, 0);
  KeepStore store(state_dir);
  // The harness keeps the failed builder (boot + failing build: ~40-90 s under TCG).
  std::optional<KeepRecord> rec = WaitForRecord(store, KeepState::kKept, absl::Seconds(240));
  ASSERT_TRUE(rec.has_value()) << "no kept builder recorded";
  EXPECT_EQ(rec->owner.pid, harness);
  ASSERT_TRUE(ProcessAlive(rec->vmm_process));

  // The harness is killed while its builder is kept.
  ASSERT_EQ(kill(harness, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(harness, &status, 0), harness);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(ProcessAlive(rec->owner));

  // Before the TTL: the builder is still there for a person; gc leaves it; exec works.
  CommandResult gc1 = Kilnctl(state_dir, "builders gc");
  EXPECT_EQ(gc1.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(gc1.output, "nothing to reap")) << gc1.output;
  EXPECT_TRUE(ProcessAlive(rec->vmm_process)) << "gc reaped an unexpired kept builder";
  CommandResult ex = Kilnctl(state_dir, absl::StrCat("builders exec ", rec->id,
                                                     " -- cat /sys/fs/cgroup/cgroup.controllers"));
  EXPECT_EQ(ex.exit_code, 0) << ex.output;
  EXPECT_TRUE(absl::StrContains(ex.output, "memory")) << ex.output;

  // After the TTL: exec refuses (expired), gc reaps it and nothing is left.
  const absl::Duration left = rec->expires - absl::Now();
  if (left > absl::ZeroDuration()) absl::SleepFor(left + absl::Milliseconds(500));
  CommandResult ex2 = Kilnctl(state_dir, absl::StrCat("builders exec ", rec->id, " -- true"));
  EXPECT_EQ(ex2.exit_code, 125) << ex2.output;
  EXPECT_TRUE(absl::StrContains(ex2.output, "expired")) << ex2.output;
  const absl::Time t0 = absl::Now();
  CommandResult gc2 = Kilnctl(state_dir, "builders gc");
  std::cerr << "keep-ttl: gc of the expired builder " << absl::FormatDuration(absl::Now() - t0)
            << "\n";
  EXPECT_EQ(gc2.exit_code, 0) << gc2.output;
  EXPECT_TRUE(absl::StrContains(gc2.output, absl::StrCat("reaped ", rec->id, " (expired)")))
      << gc2.output;
  EXPECT_TRUE(ReapChild(rec->vmm_process.pid, absl::Seconds(10))) << "QEMU still running";
  EXPECT_FALSE(ProcessAlive(rec->vmm_process));
  struct stat st;
  EXPECT_NE(stat(rec->channel_socket.c_str(), &st), 0) << "socket left: " << rec->channel_socket;
  EXPECT_NE(stat(rec->work_dir.c_str(), &st), 0) << "work dir left: " << rec->work_dir;
  EXPECT_TRUE(LiveChildren().empty()) << "a process is still running";
  CommandResult list = Kilnctl(state_dir, "builders list");
  EXPECT_TRUE(absl::StrContains(list.output, "no kept builders")) << list.output;
}

TEST_F(KeepVmTest, HarnessKilledMidBuildGcReapsTheOrphan) {
  const std::string state_dir = root_ + "/state-orphan";
  absl::StatusOr<BuildRequest> job = FailingJob(in_, "keep-orphan", "");
  ASSERT_TRUE(job.ok()) << job.status();
  // A build that runs until the harness is gone.
  job->dockerfile = "FROM kiln-busybox:1\nRUN echo kiln-long-build && sleep 600\n";
  const BuilderVmOptions o = Options("keep-orphan", state_dir, /*keep=*/true);
  const pid_t harness = ForkHarness("keep-orphan", o, *job, /*then_pause=*/false);
  ASSERT_GT(harness, 0);
  KeepStore store(state_dir);
  // Registered as "building" once the agent is Ready; the job follows at once.
  std::optional<KeepRecord> rec = WaitForRecord(store, KeepState::kBuilding, absl::Seconds(180));
  ASSERT_TRUE(rec.has_value()) << "no building record";
  absl::SleepFor(absl::Seconds(3));  // the job and its streams are on their way
  ASSERT_EQ(kill(harness, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(harness, &status, 0), harness);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the harness ended before it was killed";
  // The detachable QEMU outlives its harness: only gc can clean it up.
  absl::SleepFor(absl::Seconds(1));
  ASSERT_TRUE(ProcessAlive(rec->vmm_process)) << "the VM died with its harness";
  const absl::Time t0 = absl::Now();
  CommandResult gc = Kilnctl(state_dir, "builders gc");
  std::cerr << "keep-orphan: gc of the orphan " << absl::FormatDuration(absl::Now() - t0) << "\n";
  EXPECT_EQ(gc.exit_code, 0) << gc.output;
  EXPECT_TRUE(absl::StrContains(gc.output, absl::StrCat("reaped ", rec->id, " (orphan)")))
      << gc.output;
  EXPECT_TRUE(ReapChild(rec->vmm_process.pid, absl::Seconds(10))) << "QEMU still running";
  EXPECT_FALSE(ProcessAlive(rec->vmm_process));
  struct stat st;
  EXPECT_NE(stat(rec->channel_socket.c_str(), &st), 0) << "socket left: " << rec->channel_socket;
  EXPECT_TRUE(LiveChildren().empty()) << "a process is still running";
  absl::StatusOr<KeepListing> listing = store.List(absl::Now());
  ASSERT_TRUE(listing.ok()) << listing.status();
  EXPECT_TRUE(listing->records.empty());
}

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) {
  // The QEMU of a killed harness child is re-parented here (and reaped by the tests).
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  return kiln::harness::VmTestMain(argc, argv);
}
