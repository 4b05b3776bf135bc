// File: harness/keep_vm_test.cc
// VM test (tag `vm`) of keep_failed_builders (issue 6): a real builder VM under QEMU runs the
// failing example (agent/runner/examples/failing/, RUN exits 3).
//   - keep on: the builder is listed in the state dir; `cat /proc/self/mountinfo` through the
//     agent's Exec shows the cgroup2 mount; the serial log shows the failure; the agent's
//     secret dir is empty; removing it (agent power-off, then signals) leaves no QEMU process
//     and no socket.
//   - keep off: right after RunBuilderJobs returns, no VMM child of this process is running
//     and no record exists.
// Artifacts come from flags (same as builder_vm_test).
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "harness/builder_client.h"
#include "harness/builder_scenarios.h"
#include "harness/keep_store.h"
#include "harness/qemu.h"
#include "harness/runner.h"
#include "tools/kilnctl/agent_exec.h"

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
  kilnctl::ExecRequest req;
  req.argv = std::move(argv);
  req.connect_timeout_ms = 30000;
  absl::StatusOr<agent::ExecResult> r = kilnctl::ExecOverChannel(socket, req, fd, fd);
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

class KeepVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    QemuOptions options;
    absl::StatusOr<Accel> accel = ParseAccel(absl::GetFlag(FLAGS_accel));
    ASSERT_TRUE(accel.ok()) << accel.status();
    options.accel = *accel;
    absl::StatusOr<std::unique_ptr<QemuVmm>> vmm = QemuVmm::Create(
        options, ProbeArtifacts{absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd)});
    ASSERT_TRUE(vmm.ok()) << vmm.status();
    vmm_ = std::move(*vmm);
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = tmp ? tmp : "/tmp";
    factory_ = std::make_unique<VmFactory>(*vmm_, root_ + "/vms", OutputDirFromEnv());
    in_.artifacts = {absl::GetFlag(FLAGS_kernel), absl::GetFlag(FLAGS_initrd),
                     absl::GetFlag(FLAGS_builder_disk)};
    in_.busybox_image = absl::GetFlag(FLAGS_busybox_image);
    in_.examples_dir = Dirname(absl::GetFlag(FLAGS_examples_readme));
    in_.work_dir = root_;
    ASSERT_TRUE(ValidateBuilderScenarioInputs(in_).ok())
        << ValidateBuilderScenarioInputs(in_).ToString();
  }

  std::unique_ptr<QemuVmm> vmm_;
  std::string root_;
  std::unique_ptr<VmFactory> factory_;
  BuilderScenarioInputs in_;
};

TEST_F(KeepVmTest, FailedBuilderIsKeptExecdAndRemoved) {
  const std::string state_dir = root_ + "/state-on";
  absl::StatusOr<BuildRequest> job = FailingJob(in_, "keep-on", "kiln-keep-secret-4f1c");
  ASSERT_TRUE(job.ok()) << job.status();
  BuilderVmOptions o;
  o.id = "keep-on";
  o.keep.keep_failed_builders = true;
  o.keep.state_dir = state_dir;
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
  // The agent wiped the job's secrets (it was sent one): the secret dir has no files.
  auto [ls_code, ls] = ExecCapture(
      rec.channel_socket,
      {"sh", "-c", "for d in /run/kiln-secrets /dev/shm/kiln-secrets; do "
                   "[ -d $d ] && ls -A $d; done; grep -rl kiln-keep-secret-4f1c /run /dev/shm "
                   "2>/dev/null; echo done"});
  EXPECT_EQ(ls_code, 0) << ls;
  EXPECT_EQ(ls, "done\n") << "secret files left in the kept builder";

  std::ifstream serial(rec.serial_log);
  std::stringstream ss;
  ss << serial.rdbuf();
  EXPECT_TRUE(absl::StrContains(ss.str(), "kiln-agent")) << "serial log: " << ss.str();
  EXPECT_TRUE(absl::StrContains(run.jobs[0].LogText(), "kiln-about-to-fail"));

  TeardownOptions t;
  t.clean_shutdown = [](const KeepRecord& r) {
    return kilnctl::AgentPowerOff(r.channel_socket, 10000);
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
  BuilderVmOptions o;
  o.id = "keep-off";
  o.keep.state_dir = state_dir;
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

}  // namespace
}  // namespace kiln::harness

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  absl::ParseCommandLine(argc, argv);
  return RUN_ALL_TESTS();
}
