// File: harness/builder/builder_client_test.cc
// The builder client without a VM: a fake VMM whose "guest" is the real agent session
// (agent/server.h) with a fake build runner, served on the channel's unix socket. Covers the
// pure config/cmdline, the handshake, a job with secrets, logs and an image stream, a refusal,
// a guest that locks up (cut off, retried once, counted), a guest out of memory (named, not
// retried), a hostile guest that floods 100 MiB of log and an oversized image (host memory
// measured against BuilderHostMemoryBound, partial image deleted), JobLog, and
// WriteDirectoryTar.
#include "harness/builder/builder_client.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/server.h"
#include "agent/transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

// Under AddressSanitizer freed memory sits in a quarantine (256 MiB by default) and every
// allocation has redzones, so peak RSS says nothing about the client's bound: the memory
// assertions run only in normal builds (CI runs this test both ways); the rest runs in both.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kRssIsMeaningful = false;
#else
inline constexpr bool kRssIsMeaningful = true;
#endif

namespace kiln::harness {
namespace {

using ::kiln_testing::IsOk;
using ::kiln_testing::StatusIs;
using ::testing::AllOf;
using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

std::string TmpDir() {
  const char* t = getenv("TEST_TMPDIR");
  std::string templ = std::string(t ? t : "/tmp") + "/bc-XXXXXX";
  EXPECT_NE(mkdtemp(templ.data()), nullptr);
  return templ;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Behaviour of one fake guest. kAgent: the real agent session. kLockup: a soft lockup in the
// serial log, no answer. kSilent: FakeVmm::silent_serial appended to the serial log, then no
// answer. kFlood: a hostile agent (FloodScript) that floods the channel.
// kPanic: a soft lockup and the softlockup panic in the serial log, then the channel closes
// and the VMM exits a moment later (QEMU with -no-reboot), before the host looked again.
enum class Guest { kAgent, kLockup, kSilent, kFlood, kPanic };

// FloodScript: what a kFlood guest sends after it has read the whole job: `log_bytes` of Log
// lines of `line_bytes` each (forever if `forever`), then a BuildResult and an image stream of
// `image_bytes`.
struct FloodScript {
  uint64_t log_bytes = 100ull << 20;
  size_t line_bytes = agent::kMaxLogLine;
  bool forever = false;
  uint64_t image_bytes = 70000;
  std::string tmp_dir;  // where the (sparse) image file is made
};

std::string TestdataText(const std::string& name) {
  return ReadFile(absl::StrCat(getenv("TEST_SRCDIR"), "/", getenv("TEST_WORKSPACE"),
                               "/harness/vmm/testdata/", name));
}

// PlayFloodingAgent(conn, flood): the kFlood guest's side of the session.
void PlayFloodingAgent(agent::Connection& conn, const FloodScript& flood) {
  if (!conn.ReadMessage(5000).ok()) return;  // Hello
  if (!conn.Send(agent::Ready{agent::kProtocolMajor, agent::kProtocolMinor, "flood 0.1",
                              {agent::kCapBuild}},
                 5000)
           .ok()) {
    return;
  }
  std::string job_id;
  int ends_needed = -1, ends = 0;
  while (ends_needed < 0 || ends < ends_needed) {  // secrets, the job, its streams
    absl::StatusOr<agent::Frame> f = conn.ReadFrame(5000);
    if (!f.ok()) return;
    if (f->type == static_cast<uint8_t>(agent::FrameType::kStreamEnd)) ++ends;
    if (f->type != static_cast<uint8_t>(agent::FrameType::kBuildJob)) continue;
    absl::StatusOr<agent::BuildJob> job = agent::DecodeAs<agent::BuildJob>(*f);
    if (!job.ok()) return;
    job_id = job->job_id;
    ends_needed = 1 + static_cast<int>(job->preload_images.size());
  }
  const std::string text(flood.line_bytes, 'x');
  for (uint64_t sent = 0; flood.forever || sent < flood.log_bytes; sent += text.size()) {
    if (!conn.Send(agent::Log{agent::LogStream::kStdout, sent >> 20, text}, 5000).ok()) return;
  }
  if (!conn.Send(agent::BuildResult{job_id, 0, "sha256:" + std::string(64, 'e'), 2, {}, ""},
                 5000)
           .ok()) {
    return;
  }
  const std::string image = flood.tmp_dir + "/flood-image";
  const int fd = open(image.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(flood.image_bytes)) != 0) return;  // sparse
  (void)conn.SendFd(2, fd, 5000);
  close(fd);
}

// HybridVsockScript: how a FakeVm plays Cloud Hypervisor's vsock muxer (transport
// kHybridVsock): each connection first sends "CONNECT <port>\n" (recorded); the first
// `refuse_first` are closed at once (the guest agent does not listen yet), later ones get
// `reply`; only "OK ..." replies go on to the agent session.
struct HybridVsockScript {
  bool enabled = false;
  int refuse_first = 0;
  std::string reply = "OK 1073741824\n";
  absl::Mutex mu;
  std::vector<std::string> connect_lines ABSL_GUARDED_BY(mu);
};

// ReadLine(fd): bytes up to '\n' (at most 64), or what came before EOF.
std::string ReadLine(int fd) {
  std::string line;
  char c;
  while (line.size() < 64 && read(fd, &c, 1) == 1) {
    line.push_back(c);
    if (c == '\n') break;
  }
  return line;
}

// FakeVm: serves the real AgentSession on the channel socket (Guest::kAgent), or writes a soft
// lockup to its serial log and never answers (Guest::kLockup). With a HybridVsockScript it
// first plays the CONNECT/OK handshake on each connection.
class FakeVm : public Vm {
 public:
  FakeVm(VmConfig config, Guest guest, agent::BuildRunner runner,
         HybridVsockScript* vsock = nullptr, std::string silent_serial = "",
         FloodScript flood = FloodScript())
      : config_(std::move(config)), guest_(guest) {
    serial_ = config_.work_dir + "/serial.log";
    WriteFile(serial_, "Linux version 6.1.0-test\nKILN-INIT: ready uptime_ms=10\n");
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, config_.channel->host_socket_path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 4), 0);
    thread_ = std::thread([this, runner, vsock, silent_serial, flood] {
      int fd = -1;
      for (int n = 0;; ++n) {
        fd = accept(listen_fd_, nullptr, nullptr);
        if (fd < 0) return;
        if (vsock == nullptr || !vsock->enabled) break;
        const std::string line = ReadLine(fd);
        absl::MutexLock lock(&vsock->mu);
        vsock->connect_lines.push_back(line);
        if (n < vsock->refuse_first) {
          close(fd);  // CH: no guest listener on the port yet
          continue;
        }
        (void)!write(fd, vsock->reply.data(), vsock->reply.size());
        if (absl::StartsWith(vsock->reply, "OK ")) break;
        close(fd);
      }
      conn_fd_ = fd;
      if (guest_ == Guest::kPanic) {
        usleep(300 * 1000);  // the host is waiting for Ready
        std::ofstream(serial_, std::ios::app)
            << "[   64.66] watchdog: BUG: soft lockup - CPU#0 stuck for 45s! [dockerd:96]\n"
            << "[   64.67] Kernel panic - not syncing: softlockup: hung tasks\n";
        shutdown(fd, SHUT_RDWR);  // QEMU exits: its chardev closes first
        usleep(300 * 1000);
        exited_ = true;
        while (!killed_) usleep(10000);
        close(fd);
        return;
      }
      if (guest_ == Guest::kLockup || guest_ == Guest::kSilent) {
        std::ofstream(serial_, std::ios::app)
            << (guest_ == Guest::kLockup
                    ? "[   30.1] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [runc:5]\n"
                    : silent_serial);
        while (!killed_) usleep(10000);
        close(fd);
        return;
      }
      agent::FdStream stream(fd, "fake-guest");
      agent::Connection conn(&stream);
      if (guest_ == Guest::kFlood) {
        PlayFloodingAgent(conn, flood);
        while (!killed_) usleep(10000);  // a hostile guest does not power off
        return;
      }
      agent::AgentOptions o;
      o.work_dir = config_.work_dir + "/agent";
      o.runner = runner;
      agent::AgentSession session(&conn, o);
      (void)session.Serve();  // ends when the host closes the channel
      std::ofstream(serial_, std::ios::app) << "KILN-INIT: exit status=0 uptime_ms=99\n";
      exited_ = true;
    });
  }
  ~FakeVm() override { Kill(); }
  const VmConfig& config() const override { return config_; }
  bool Exited() override { return exited_ || killed_; }
  absl::StatusOr<VmExit> Wait(absl::Duration timeout) override {
    const absl::Time end = absl::Now() + timeout;
    while (!Exited()) {
      if (absl::Now() > end) return absl::DeadlineExceededError("wait");
      usleep(5000);
    }
    return VmExit{};
  }
  void Kill() override {
    killed_ = true;
    if (conn_fd_ >= 0) shutdown(conn_fd_, SHUT_RDWR);  // a killed guest's session ends
    if (listen_fd_ >= 0) {
      shutdown(listen_fd_, SHUT_RDWR);
      close(listen_fd_);
      listen_fd_ = -1;
    }
    if (thread_.joinable()) thread_.join();
  }
  std::string serial_log_path() const override { return serial_; }
  std::string vmm_log_path() const override { return serial_; }
  int64_t peak_rss_bytes() const override { return 123 << 20; }

 private:
  VmConfig config_;
  Guest guest_;
  std::string serial_;
  int listen_fd_ = -1;
  std::atomic<int> conn_fd_{-1};
  std::thread thread_;
  std::atomic<bool> killed_{false};
  std::atomic<bool> exited_{false};
};

class FakeVmm : public Vmm {
 public:
  std::string Name() const override { return "fake"; }
  std::string Describe() const override { return "fake"; }
  ChannelTransport channel_transport() const override {
    return vsock.enabled ? ChannelTransport::kHybridVsock : ChannelTransport::kVirtioSerial;
  }
  absl::StatusOr<std::unique_ptr<Vm>> Boot(const VmConfig& config) override {
    EXPECT_THAT(ValidateVmConfig(config), IsOk());
    mkdir(config.work_dir.substr(0, config.work_dir.rfind('/')).c_str(), 0755);
    EXPECT_EQ(mkdir(config.work_dir.c_str(), 0755), 0) << config.work_dir;
    configs.push_back(config);
    Guest g = script.empty() ? Guest::kAgent : script.front();
    if (!script.empty()) script.pop_front();
    return std::unique_ptr<Vm>(new FakeVm(config, g, runner, &vsock, silent_serial, flood));
  }
  std::deque<Guest> script;
  std::string silent_serial;
  FloodScript flood;
  HybridVsockScript vsock;
  std::vector<VmConfig> configs;
  agent::BuildRunner runner;
};

class BuilderClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TmpDir();
    for (const char* f : {"vmlinux", "initrd", "builder.ext4"}) WriteFile(dir_ + "/" + f, "x");
    artifacts_ = {dir_ + "/vmlinux", dir_ + "/initrd", dir_ + "/builder.ext4"};
    WriteFile(dir_ + "/ctx.tar", std::string(3000, 'c'));
    WriteFile(dir_ + "/bb.tar", std::string(5000, 'b'));
    // The fake runner: checks what the agent received, logs, returns an image.
    vmm_.runner = [this](const agent::BuildInputs& in) -> absl::StatusOr<agent::BuildOutcome> {
      seen_secrets_ = in.secrets;
      seen_context_ = ReadFile(in.context_tar);
      in.log(agent::LogStream::kStderr, "#5 [2/3] RUN echo step-one");
      in.log(agent::LogStream::kStderr, "step-one");
      agent::BuildOutcome out;
      out.image_digest = "sha256:" + std::string(64, 'e');
      out.image_path = dir_ + "/guest-image.tar";
      WriteFile(out.image_path, std::string(70000, 'i'));
      out.phases = {{"dockerd_start", 3000}, {"build", 2000}};
      return out;
    };
    vmm_.flood.tmp_dir = dir_;
    options_.id = "b1";
    options_.ready_timeout = absl::Seconds(5);
    options_.stall_timeout = absl::Seconds(2);
    options_.poweroff_grace = absl::Seconds(2);
  }

  BuildRequest Job(const std::string& id) {
    BuildRequest r;
    r.job_id = id;
    r.context_tar = dir_ + "/ctx.tar";
    r.secrets = {{"build_token", "s3cret-value"}};
    r.secret_ids = {"build_token"};
    r.preload = {{"kiln-busybox:1", dir_ + "/bb.tar"}};
    r.image_out = dir_ + "/" + id + ".oci.tar";
    return r;
  }

  std::string dir_;
  BuilderArtifacts artifacts_;
  BuilderVmOptions options_;
  FakeVmm vmm_;
  std::map<std::string, std::string> seen_secrets_;
  std::string seen_context_;
};

TEST(BuilderConfigTest, KeepModeDropsOnceKeepsFailedJobsAndBootsDetachable) {
  BuilderVmOptions o;
  o.keep.keep_failed_builders = true;
  EXPECT_EQ(BuilderCmdline(o),
            "kiln.root=/dev/vda kiln.cgroup=rw kiln.delegate=1000 "
            "kiln.exec=\"/usr/local/bin/kiln-agent --channel=virtio-serial:kiln.agent "
            "--keep_failed_jobs --retry_ms=50 --builder_mode=rootless\" cgroup.memory=nokmem");
  EXPECT_TRUE(BuilderVmConfig(o, {"/k", "/i", "/d.ext4"}, "/tmp/s/agent.sock").detachable);
  o.keep.keep_failed_builders = false;
  EXPECT_FALSE(BuilderVmConfig(o, {"/k", "/i", "/d.ext4"}, "/tmp/s/agent.sock").detachable);
}

TEST(BuilderConfigTest, CmdlineAndVmConfig) {
  BuilderVmOptions o;
  o.id = "builder-x";
  o.cgroup = "off";
  EXPECT_EQ(BuilderCmdline(o),
            "kiln.root=/dev/vda kiln.cgroup=off kiln.exec=\"/usr/local/bin/kiln-agent "
            "--channel=virtio-serial:kiln.agent --once --retry_ms=50 --builder_mode=rootless\" "
            "cgroup.memory=nokmem");
  VmConfig c = BuilderVmConfig(o, {"/k", "/i", "/d.ext4"}, "/tmp/s/agent.sock");
  EXPECT_EQ(c.id, "builder-x");
  ASSERT_EQ(c.disks.size(), 1u);
  EXPECT_EQ(c.disks[0].path, "/d.ext4");
  EXPECT_TRUE(c.disks[0].read_only);
  ASSERT_TRUE(c.channel.has_value());
  EXPECT_EQ(c.channel->name, "kiln.agent");
  EXPECT_EQ(c.channel->host_socket_path, "/tmp/s/agent.sock");
  EXPECT_EQ(c.memory_mib, 1024);
  EXPECT_EQ(c.vcpus, 2);
  c.work_dir = "/w";
  EXPECT_THAT(ValidateVmConfig(c), IsOk());
}

// Rootless (the default) with cgroup rw delegates the cgroup subtree to uid 1000; init refuses
// to delegate on a read-only or missing cgroup2, so only rw gets kiln.delegate; rootful passes
// its mode to the agent and, by default, delegates too (harmless: the root daemon ignores it).
TEST(BuilderConfigTest, BuilderModeAndDelegation) {
  BuilderVmOptions o;
  EXPECT_EQ(o.builder_mode, "rootless");
  EXPECT_TRUE(o.delegate_cgroup);
  EXPECT_THAT(BuilderCmdline(o), HasSubstr(" kiln.cgroup=rw kiln.delegate=1000 kiln.exec="));
  EXPECT_THAT(BuilderCmdline(o), HasSubstr(" --builder_mode=rootless\""));
  for (const char* cg : {"ro", "off"}) {
    o.cgroup = cg;
    EXPECT_THAT(BuilderCmdline(o), Not(HasSubstr("kiln.delegate"))) << cg;
  }
  o.cgroup = "rw";
  o.delegate_cgroup = false;
  EXPECT_THAT(BuilderCmdline(o), Not(HasSubstr("kiln.delegate")));
  o.builder_mode = kBuilderModeRootful;
  o.agent_flags = "--prewarm=false";
  EXPECT_THAT(BuilderCmdline(o), HasSubstr(" --builder_mode=rootful --prewarm=false\""));
  EXPECT_THAT(ValidateBuilderVmOptions(o), IsOk());
}

TEST(BuilderConfigTest, BadModeOrCgroupIsRefusedBeforeBooting) {
  BuilderVmOptions o;
  o.builder_mode = "root";
  absl::Status s = ValidateBuilderVmOptions(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("builder_mode \"root\": want rootless or rootful"));
  o.builder_mode = "rootful";
  o.cgroup = "RW";
  s = ValidateBuilderVmOptions(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("cgroup \"RW\": want rw, ro or off"));
}

TEST(BuilderConfigTest, HybridVsockTransportServesVsockPort) {
  BuilderVmOptions o;
  o.transport = ChannelTransport::kHybridVsock;
  EXPECT_EQ(BuilderCmdline(o),
            "kiln.root=/dev/vda kiln.cgroup=rw kiln.delegate=1000 "
            "kiln.exec=\"/usr/local/bin/kiln-agent --channel=vsock:1024 --once --retry_ms=50 "
            "--builder_mode=rootless\" cgroup.memory=nokmem");
  o.vsock_port = 2048;
  EXPECT_THAT(BuilderCmdline(o), HasSubstr("--channel=vsock:2048 "));
  VmConfig c = BuilderVmConfig(o, {"/k", "/i", "/d.ext4"}, "/tmp/s/agent.sock");
  ASSERT_TRUE(c.channel.has_value());
  EXPECT_EQ(c.channel->vsock_port, 2048u);
  EXPECT_EQ(c.channel->vsock_cid, 3u);
  EXPECT_EQ(c.channel->host_socket_path, "/tmp/s/agent.sock");
}

TEST(BuilderConfigTest, ArtifactsAreChecked) {
  EXPECT_THAT(ValidateBuilderArtifacts({"", "/i", "/d"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kernel")));
  EXPECT_THAT(ValidateBuilderArtifacts({"/nonexistent/k", "/nonexistent/i", "/d"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/k")));
}

TEST_F(BuilderClientTest, JobWithSecretsLogsAndImage) {
  VmFactory factory(vmm_, dir_ + "/vms", "");
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {Job("j1")});
  ASSERT_THAT(run.status, IsOk()) << run.status;
  EXPECT_EQ(run.attempts, 1);
  EXPECT_EQ(run.lockup_events, 0);
  ASSERT_EQ(run.jobs.size(), 1u);
  const BuildResponse& r = run.jobs[0];
  EXPECT_THAT(r.refused, IsOk());
  ASSERT_TRUE(r.result.has_value());
  EXPECT_EQ(r.result->exit_status, 0);
  EXPECT_EQ(r.image_bytes, 70000u);
  EXPECT_EQ(ReadFile(r.image_path), std::string(70000, 'i'));
  EXPECT_EQ(r.context_bytes, 3000u);
  EXPECT_EQ(r.preload_bytes, 5000u);
  EXPECT_EQ(r.LogText(), "#5 [2/3] RUN echo step-one\nstep-one\n");
  EXPECT_EQ(r.PhaseMs("dockerd_start"), 3000);
  EXPECT_GE(r.PhaseMs("receive_context"), 0);
  EXPECT_EQ(r.PhaseMs("nope"), -1);
  EXPECT_EQ(seen_secrets_.at("build_token"), "s3cret-value");
  EXPECT_EQ(seen_context_, std::string(3000, 'c'));
  EXPECT_GT(run.vmm_start_to_first_result, absl::ZeroDuration());
  EXPECT_GE(run.vmm_start_to_first_image, run.vmm_start_to_first_result);
  EXPECT_EQ(run.vmm_peak_rss_bytes, 123 << 20);
  EXPECT_TRUE(run.console.HasEndMarker()) << run.serial_log;  // the agent exited
  ASSERT_EQ(vmm_.configs.size(), 1u);
  EXPECT_THAT(vmm_.configs[0].cmdline, HasSubstr("--once"));
}

TEST_F(BuilderClientTest, MissingSecretIsRefusedAndTheSessionGoesOn) {
  VmFactory factory(vmm_, dir_ + "/vms", "");
  BuildRequest missing = Job("j1");
  missing.secrets.clear();  // named, not sent
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {missing, Job("j2")});
  ASSERT_THAT(run.status, IsOk()) << run.status;
  ASSERT_EQ(run.jobs.size(), 2u);
  EXPECT_THAT(run.jobs[0].refused,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("did not deliver")));
  EXPECT_FALSE(run.jobs[0].result.has_value());
  ASSERT_TRUE(run.jobs[1].result.has_value());
  EXPECT_EQ(run.jobs[1].result->exit_status, 0);
}

// ExpectRetriedOnceAfterALockup(run): the first VM locked up, the retry built job j1.
void ExpectRetriedOnceAfterALockup(const BuilderRun& run) {
  ASSERT_THAT(run.status, IsOk()) << run.status;
  EXPECT_EQ(run.attempts, 2);
  EXPECT_EQ(run.lockup_events, 1);
  EXPECT_THAT(run.retry_reason, HasSubstr("soft lockup"));
  EXPECT_EQ(run.vm_id, "b1-retry1");
  ASSERT_EQ(run.jobs.size(), 1u);
  EXPECT_EQ(run.jobs[0].result->exit_status, 0);
}

// ExpectFailedAfterTwoLockups(run): both VMs locked up; the run fails naming the lockup.
void ExpectFailedAfterTwoLockups(const BuilderRun& run) {
  EXPECT_THAT(run.status, StatusIs(absl::StatusCode::kAborted, HasSubstr("soft lockup")));
  EXPECT_EQ(run.attempts, 2);
  EXPECT_EQ(run.lockup_events, 2);
}

TEST_F(BuilderClientTest, LockedUpGuestIsCutOffAndRetriedOnce) {
  vmm_.script = {Guest::kLockup, Guest::kAgent};
  VmFactory factory(vmm_, dir_ + "/vms", "");
  ExpectRetriedOnceAfterALockup(RunBuilderJobs(factory, artifacts_, options_, {Job("j1")}));
}

// A lockup that ends in the softlockup panic closes the channel and ends the VMM before the
// host's next look at the serial log: still a lockup, retried once (a CI run of
// builder_vm_test failed on exactly this: "peer closed the channel", attempts 1).
TEST_F(BuilderClientTest, PanickedGuestWhoseVmmExitedIsALockupAndRetried) {
  vmm_.script = {Guest::kPanic, Guest::kAgent};
  VmFactory factory(vmm_, dir_ + "/vms", "");
  ExpectRetriedOnceAfterALockup(RunBuilderJobs(factory, artifacts_, options_, {Job("j1")}));
}

TEST_F(BuilderClientTest, TwoPanicsFailNamingTheLockup) {
  vmm_.script = {Guest::kPanic, Guest::kPanic};
  VmFactory factory(vmm_, dir_ + "/vms", "");
  ExpectFailedAfterTwoLockups(RunBuilderJobs(factory, artifacts_, options_, {Job("j1")}));
}

TEST_F(BuilderClientTest, TwoLockupsFail) {
  vmm_.script = {Guest::kLockup, Guest::kLockup};
  VmFactory factory(vmm_, dir_ + "/vms", "");
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {Job("j1")});
  ExpectFailedAfterTwoLockups(run);
  EXPECT_THAT(run.status.message(), HasSubstr("serial log tail"));
}

TEST_F(BuilderClientTest, BadRequestIsRefusedBeforeSending) {
  VmFactory factory(vmm_, dir_ + "/vms", "");
  BuildRequest r = Job("j1");
  r.context_tar = dir_ + "/nope.tar";
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {r});
  EXPECT_THAT(run.status, StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope.tar")));
}

// Cloud Hypervisor's channel: the FakeVmm says kHybridVsock, so the client must configure the
// agent for vsock by itself, retry the CONNECTs CH refuses while the guest boots, and then run
// a whole job (secrets, context, preload, logs, image stream) through the muxed socket.
TEST_F(BuilderClientTest, HybridVsockJobAfterRefusedConnects) {
  vmm_.vsock.enabled = true;
  vmm_.vsock.refuse_first = 3;
  VmFactory factory(vmm_, dir_ + "/vms", "");
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {Job("j1")});
  ASSERT_THAT(run.status, IsOk()) << run.status;
  ASSERT_EQ(run.jobs.size(), 1u);
  const BuildResponse& r = run.jobs[0];
  ASSERT_TRUE(r.result.has_value());
  EXPECT_EQ(r.result->exit_status, 0);
  EXPECT_EQ(r.image_bytes, 70000u);
  EXPECT_EQ(ReadFile(r.image_path), std::string(70000, 'i'));
  EXPECT_EQ(r.context_bytes, 3000u);
  EXPECT_EQ(r.preload_bytes, 5000u);
  EXPECT_EQ(r.LogText(), "#5 [2/3] RUN echo step-one\nstep-one\n");
  EXPECT_EQ(seen_secrets_.at("build_token"), "s3cret-value");
  EXPECT_EQ(seen_context_, std::string(3000, 'c'));
  EXPECT_TRUE(run.console.HasEndMarker()) << run.serial_log;
  ASSERT_EQ(vmm_.configs.size(), 1u);
  EXPECT_THAT(vmm_.configs[0].cmdline,
              AllOf(HasSubstr("--channel=vsock:1024 "), Not(HasSubstr("virtio-serial"))));
  EXPECT_EQ(vmm_.configs[0].channel->vsock_port, 1024u);
  absl::MutexLock lock(&vmm_.vsock.mu);
  EXPECT_THAT(vmm_.vsock.connect_lines, SizeIs(4));  // 3 refused + the one that got OK
  EXPECT_THAT(vmm_.vsock.connect_lines, Each(std::string("CONNECT 1024\n")));
}

TEST_F(BuilderClientTest, HybridVsockGarbageReplyFailsFastWithTheReply) {
  vmm_.vsock.enabled = true;
  vmm_.vsock.reply = "HTTP/1.1 400 Bad Request\n";
  VmFactory factory(vmm_, dir_ + "/vms", "");
  const absl::Time t0 = absl::Now();
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {Job("j1")});
  EXPECT_THAT(run.status, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   AllOf(HasSubstr("hybrid-vsock"), HasSubstr("port 1024"),
                                         HasSubstr("HTTP/1.1 400 Bad Request"))));
  EXPECT_LT(absl::Now() - t0, options_.ready_timeout);  // not retried to the deadline
  EXPECT_EQ(run.attempts, 1);
  EXPECT_TRUE(run.jobs.empty());
}

TEST_F(BuilderClientTest, HybridVsockGuestThatNeverListensHitsTheReadyTimeout) {
  vmm_.vsock.enabled = true;
  vmm_.vsock.refuse_first = 1 << 30;
  options_.ready_timeout = absl::Milliseconds(800);
  VmFactory factory(vmm_, dir_ + "/vms", "");
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {Job("j1")});
  EXPECT_THAT(run.status, StatusIs(absl::StatusCode::kDeadlineExceeded,
                                   AllOf(HasSubstr("not connected within"),
                                         HasSubstr("attempt(s)"), HasSubstr("port 1024"))));
  absl::MutexLock lock(&vmm_.vsock.mu);
  EXPECT_GE(vmm_.vsock.connect_lines.size(), 2u);
}

// ---------------------------------------------------------------------------------------
// A guest out of memory (real kernel text: testdata/builder-oom-*.serial.log).

// The OOM killer took dockerd; the agent still answers (the job failed: "dockerd exited
// (killed by signal 9)"). The run says what happened, and is not retried.
TEST_F(BuilderClientTest, OomKilledDaemonIsReportedAsOutOfMemory) {
  const std::string oom = TestdataText("builder-oom-dockerd.serial.log");
  const std::string excerpt = oom.substr(oom.find("dockerd invoked oom-killer") - 15,
                                         oom.find("KILN-INIT: exit") - oom.find("dockerd invoked oom-killer") + 15);
  ASSERT_THAT(excerpt, HasSubstr("Out of memory: Killed process 244 (dockerd)"));
  const std::string serial = dir_ + "/vms/b1/serial.log";
  vmm_.runner = [&](const agent::BuildInputs&) -> absl::StatusOr<agent::BuildOutcome> {
    std::ofstream(serial, std::ios::app) << excerpt;
    agent::BuildOutcome out;
    out.exit_status = 1;
    out.error = "FAILED_PRECONDITION: dockerd exited (killed by signal 9) before it was ready "
                "(empty log)";
    return out;
  };
  options_.memory_mib = 80;
  VmFactory factory(vmm_, dir_ + "/vms", "");
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {Job("j1")});
  EXPECT_THAT(run.status,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("guest out of memory (OOM killer killed dockerd (pid 244)); "
                                       "the VM had 80 MiB; raise --builder_memory_mib"),
                             HasSubstr("job j1 exit_status 1"),
                             HasSubstr("killed by signal 9"))));
  EXPECT_THAT(run.oom, HasSubstr("dockerd (pid 244)"));
  EXPECT_EQ(run.attempts, 1);
  EXPECT_EQ(run.lockup_events, 0);
  ASSERT_EQ(run.jobs.size(), 1u);  // the answer is still there
}

// The OOM killer took containerd, the agent went silent: given up on after oom_quiet_timeout
// (not the stall timeout), named as out of memory, not counted as a lockup, not retried.
TEST_F(BuilderClientTest, OomThenSilentAgentIsOutOfMemoryNotALockup) {
  // The real serial log of an 80 MiB builder VM (verify --builder_memory_mib=80).
  vmm_.silent_serial = TestdataText("builder-oom-real.serial.log");
  ASSERT_THAT(vmm_.silent_serial, HasSubstr("Killed process 87 (containerd)"));
  vmm_.script = {Guest::kSilent, Guest::kAgent};
  options_.memory_mib = 80;
  options_.stall_timeout = absl::Seconds(30);
  options_.oom_quiet_timeout = absl::Milliseconds(700);
  VmFactory factory(vmm_, dir_ + "/vms", "");
  const absl::Time t0 = absl::Now();
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {Job("j1")});
  EXPECT_LT(absl::Now() - t0, absl::Seconds(10));
  EXPECT_THAT(run.status,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("guest out of memory (OOM killer killed containerd (pid "
                                       "87)); the VM had 80 MiB; raise --builder_memory_mib"),
                             HasSubstr("no frame from the agent for"))));
  EXPECT_EQ(run.attempts, 1);
  EXPECT_EQ(run.lockup_events, 0);
  EXPECT_TRUE(run.retry_reason.empty());
  EXPECT_EQ(vmm_.configs.size(), 1u);
}

// The OOM killer, then a soft lockup and the softlockup panic: still out of memory, not a
// lockup to retry (today's main counted it as a lockup event and booted a second VM).
TEST_F(BuilderClientTest, OomThenSoftLockupIsNotRetried) {
  vmm_.silent_serial = TestdataText("builder-oom-lockup.serial.log");
  vmm_.script = {Guest::kSilent, Guest::kAgent};
  options_.memory_mib = 80;
  options_.memory_flag = "--memory_mib";
  VmFactory factory(vmm_, dir_ + "/vms", "");
  BuilderRun run = RunBuilderJobs(factory, artifacts_, options_, {Job("j1")});
  EXPECT_THAT(run.status, StatusIs(absl::StatusCode::kResourceExhausted,
                                   AllOf(HasSubstr("OOM killer killed containerd"),
                                         HasSubstr("raise --memory_mib"),
                                         HasSubstr("soft lockup"))));
  EXPECT_EQ(run.attempts, 1);
  EXPECT_EQ(run.lockup_events, 0);
  EXPECT_EQ(vmm_.configs.size(), 1u);
}

// ---------------------------------------------------------------------------------------
// A hostile guest: host memory stays within the stated bound.

// PeakRssGrowth: resets the kernel's peak-RSS mark (/proc/self/clear_refs "5") and reads
// VmHWM - the VmRSS at the start.
class PeakRssGrowth {
 public:
  PeakRssGrowth() {
    std::ofstream("/proc/self/clear_refs") << "5";
    start_ = Field("VmRSS:");
  }
  int64_t Bytes() const { return Field("VmHWM:") - start_; }

 private:
  static int64_t Field(const std::string& name) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
      if (absl::StartsWith(line, name)) return std::stoll(line.substr(name.size())) * 1024;
    }
    ADD_FAILURE() << "no " << name << " in /proc/self/status";
    return 0;
  }
  int64_t start_ = 0;
};

struct FloodCase {
  const char* name;
  size_t line_bytes;
};

class BuilderClientFloodTest : public BuilderClientTest,
                               public ::testing::WithParamInterface<FloodCase> {};

// `RUN head -c 100M /dev/zero | tr '\0' x` as the guest sends it: 100 MiB of Log lines (the
// agent splits a long line at 64 KiB; also as 1000-byte lines). The host keeps head + tail,
// says what it dropped, and its peak RSS grows less than BuilderHostMemoryBound.
TEST_P(BuilderClientFloodTest, HundredMiBOfLogIsCutAndMemoryStaysBounded) {
  vmm_.script = {Guest::kFlood};
  vmm_.flood.line_bytes = GetParam().line_bytes;
  vmm_.flood.log_bytes = 100ull << 20;
  options_.stall_timeout = absl::Seconds(20);
  const uint64_t bound = BuilderHostMemoryBound(options_);
  EXPECT_LT(BuilderHostMemoryBound(BuilderVmOptions()), 65ull << 20);  // "64 MiB", the header
  VmFactory factory(vmm_, dir_ + "/vms", "");
  absl::StatusOr<std::unique_ptr<BuilderVm>> vm =
      BuilderVm::Start(factory, artifacts_, options_);
  ASSERT_THAT(vm.status(), IsOk());
  PeakRssGrowth rss;
  absl::StatusOr<BuildResponse> r = (*vm)->Build(Job("j1"));
  const int64_t growth = rss.Bytes();
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_GE(r->log_bytes, 100ull << 20);
  EXPECT_GT(r->log_dropped_bytes, (100ull - 24) << 20);
  uint64_t kept = 0;
  int notes = 0;
  for (const agent::Log& l : r->logs) {
    kept += l.text.size() + kLogLineOverheadBytes;
    if (absl::StartsWith(l.text, "[kiln host: dropped ")) ++notes;
  }
  EXPECT_EQ(notes, 1);
  EXPECT_LE(kept, options_.max_log_bytes + 1000);
  EXPECT_GT(kept, options_.max_log_bytes * 9 / 10);
  const auto note = std::find_if(r->logs.begin(), r->logs.end(), [](const agent::Log& l) {
    return absl::StartsWith(l.text, "[kiln host: dropped ");
  });
  EXPECT_THAT(note->text, HasSubstr(absl::StrCat("dropped ", r->log_dropped_bytes, " bytes in ",
                                                 r->log_dropped_lines, " log lines")));
  EXPECT_EQ(note->stream, agent::LogStream::kSystem);
  EXPECT_EQ(r->image_bytes, 70000u);  // the job itself still completes
  std::cerr << "flood of " << (r->log_bytes >> 20) << " MiB in " << GetParam().line_bytes
            << "-byte lines: host peak RSS growth " << (growth >> 20) << " MiB (bound "
            << (bound >> 20) << " MiB), kept " << r->logs.size() << " lines\n";
  EXPECT_GT(growth, 0);
  if (kRssIsMeaningful) EXPECT_LT(growth, static_cast<int64_t>(bound));
}

INSTANTIATE_TEST_SUITE_P(Lines, BuilderClientFloodTest,
                         ::testing::Values(FloodCase{"split_64k", agent::kMaxLogLine},
                                           FloodCase{"lines_1000", 1000}),
                         [](const ::testing::TestParamInfo<FloodCase>& i) {
                           return std::string(i.param.name);
                         });

// An image over max_image_bytes: ResourceExhausted naming the cap, the partial file deleted,
// and (with a 100 MiB log flood before it) the host's memory still within the bound.
TEST_F(BuilderClientTest, OversizedImageIsRefusedAndThePartialFileDeleted) {
  vmm_.script = {Guest::kFlood};
  vmm_.flood.line_bytes = agent::kMaxLogLine;
  vmm_.flood.image_bytes = 64ull << 20;  // sparse on the guest side
  options_.max_image_bytes = 8ull << 20;
  VmFactory factory(vmm_, dir_ + "/vms", "");
  absl::StatusOr<std::unique_ptr<BuilderVm>> vm =
      BuilderVm::Start(factory, artifacts_, options_);
  ASSERT_THAT(vm.status(), IsOk());
  PeakRssGrowth rss;
  BuildRequest job = Job("j1");
  absl::StatusOr<BuildResponse> r = (*vm)->Build(job);
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kResourceExhausted,
                                   AllOf(HasSubstr("larger than the host accepts (8388608 bytes"),
                                         HasSubstr("max_image_bytes"),
                                         HasSubstr(job.image_out + " was removed"))));
  EXPECT_NE(access(job.image_out.c_str(), F_OK), 0) << "the partial image is still there";
  if (kRssIsMeaningful) {
    EXPECT_LT(rss.Bytes(), static_cast<int64_t>(BuilderHostMemoryBound(options_)));
  }
}

// A guest that never stops sending is still cut off at the VM's deadline (frames keep
// arriving, so no stall fires).
TEST_F(BuilderClientTest, EndlessFloodHitsTheVmDeadline) {
  vmm_.script = {Guest::kFlood};
  vmm_.flood.forever = true;
  options_.deadline = absl::Seconds(3);
  VmFactory factory(vmm_, dir_ + "/vms", "");
  absl::StatusOr<std::unique_ptr<BuilderVm>> vm =
      BuilderVm::Start(factory, artifacts_, options_);
  ASSERT_THAT(vm.status(), IsOk());
  const absl::Time t0 = absl::Now();
  EXPECT_THAT((*vm)->Build(Job("j1")).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("VM deadline")));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(10));
}

TEST(JobLogTest, KeepsEverythingUnderTheCap) {
  JobLog log(10000);
  for (int i = 0; i < 10; ++i) log.Add({agent::LogStream::kStdout, 1, absl::StrCat("line ", i)});
  std::vector<agent::Log> out = log.Finish();
  ASSERT_EQ(out.size(), 10u);
  EXPECT_EQ(out[9].text, "line 9");
  EXPECT_EQ(log.dropped_lines(), 0u);
}

TEST(JobLogTest, HeadAndTailAndOneNoteInOrder) {
  // 100 lines of 36 bytes (100 charged each); the cap keeps 5 + 5.
  JobLog log(1000);
  for (int i = 0; i < 100; ++i) {
    log.Add({agent::LogStream::kStdout, static_cast<uint64_t>(i),
             absl::StrCat("line-", 100 + i, std::string(28, '.'))});
  }
  EXPECT_EQ(log.received_lines(), 100u);
  EXPECT_EQ(log.dropped_lines(), 90u);
  EXPECT_EQ(log.dropped_bytes(), 90u * 36);
  std::vector<agent::Log> out = log.Finish();
  ASSERT_EQ(out.size(), 11u);
  EXPECT_THAT(out[0].text, HasSubstr("line-100"));
  EXPECT_THAT(out[4].text, HasSubstr("line-104"));
  EXPECT_EQ(out[5].text,
            "[kiln host: dropped 3240 bytes in 90 log lines of this job (the host keeps 1000 "
            "bytes: the first and the last half)]");
  EXPECT_EQ(out[5].time_ms, 94u);
  EXPECT_THAT(out[6].text, HasSubstr("line-195"));
  EXPECT_THAT(out[10].text, HasSubstr("line-199"));
}

TEST(JobLogTest, TinyLinesAreChargedTheirOverhead) {
  // A guest sending millions of empty lines cannot make the host keep millions of objects.
  JobLog log(64 * 1000);
  for (int i = 0; i < 1000000; ++i) log.Add({agent::LogStream::kStdout, 0, ""});
  std::vector<agent::Log> out = log.Finish();
  EXPECT_EQ(out.size(), 1000u + 1);
}

TEST(WriteDirectoryTarTest, SortedFilesDirsAndLinks) {
  const std::string d = TmpDir();
  mkdir((d + "/ctx").c_str(), 0755);
  mkdir((d + "/ctx/sub").c_str(), 0755);
  WriteFile(d + "/ctx/Dockerfile", "FROM x\n");
  WriteFile(d + "/ctx/sub/a", "aaa");
  ASSERT_EQ(symlink("a", (d + "/ctx/sub/l").c_str()), 0);
  ASSERT_OK_AND_ASSIGN(uint64_t n, WriteDirectoryTar(d + "/ctx", d + "/ctx.tar"));
  const std::string tar = ReadFile(d + "/ctx.tar");
  EXPECT_EQ(n, tar.size());
  EXPECT_EQ(n % 512, 0u);
  const size_t df = tar.find("Dockerfile"), sub = tar.find("sub/"), a = tar.find("sub/a");
  ASSERT_NE(df, std::string::npos);
  EXPECT_LT(df, sub);
  EXPECT_LE(sub, a);
  EXPECT_NE(tar.find("FROM x\n"), std::string::npos);
  // Deterministic.
  ASSERT_OK_AND_ASSIGN(uint64_t n2, WriteDirectoryTar(d + "/ctx", d + "/ctx2.tar"));
  EXPECT_EQ(n2, n);
  EXPECT_EQ(ReadFile(d + "/ctx2.tar"), tar);
  // Following links: the link becomes a copy of its target.
  ASSERT_OK_AND_ASSIGN(uint64_t n4, WriteDirectoryTar(d + "/ctx", d + "/ctx4.tar",
                                                      SymlinkMode::kFollow));
  const std::string followed = ReadFile(d + "/ctx4.tar");
  EXPECT_EQ(n4, followed.size());
  EXPECT_EQ(followed.find("aaa"), followed.rfind("aaa") - 512 * 2) << "a and l both hold aaa";
  // A FIFO is refused.
  ASSERT_EQ(mkfifo((d + "/ctx/fifo").c_str(), 0644), 0);
  EXPECT_THAT(WriteDirectoryTar(d + "/ctx", d + "/ctx3.tar"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fifo")));
}

}  // namespace
}  // namespace kiln::harness
