// File: harness/keep/keep_builder_test.cc
// The builder client's keep hook with real child processes standing in for the VMM.
#include "harness/keep/keep_builder.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

class KeepBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/keep-builder-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    socket_ = root_ + "/work/b1/agent.sock";
    std::filesystem::create_directories(root_ + "/work/b1");
    // A fake VMM whose command line names the socket, as QEMU's does.
    vmm_ = ::fork();
    if (vmm_ == 0) {
      ::setpgid(0, 0);
      ::execl("/bin/sh", "sh", "-c", "sleep 1000; true", "fake-qemu", socket_.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::setpgid(vmm_, vmm_);
    ::usleep(100000);
    config_.id = "b1";
    config_.work_dir = root_ + "/work/b1";
    config_.channel = Channel{"kiln.agent", socket_};
  }
  void TearDown() override {
    ::kill(-vmm_, SIGKILL);
    ::waitpid(vmm_, nullptr, 0);
    std::filesystem::remove_all(root_);
  }
  std::string root_, socket_;
  pid_t vmm_ = 0;
  VmConfig config_;
};

TEST_F(KeepBuilderTest, FindVmmPidFindsTheChildNamingTheSocket) {
  ASSERT_OK_AND_ASSIGN(pid_t pid, FindVmmPid(socket_));
  EXPECT_EQ(pid, vmm_);
  EXPECT_THAT(FindVmmPid(root_ + "/other.sock"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(KeepBuilderTest, RecordForVmNeedsAChannel) {
  ASSERT_OK_AND_ASSIGN(ProcessIdentity id, IdentifyProcess(vmm_));
  ASSERT_OK_AND_ASSIGN(KeepRecord r, KeepRecordForVm(config_, config_.work_dir + "/serial.log",
                                                     "qemu", id, {}, "job j", absl::Now()));
  EXPECT_EQ(r.state, KeepState::kBuilding);
  EXPECT_EQ(r.channel_socket, socket_);
  EXPECT_EQ(r.channel_transport, ChannelTransport::kVirtioSerial);
  // Under Cloud Hypervisor the record carries the transport and the channel's vsock port.
  config_.channel->vsock_port = 2048;
  ASSERT_OK_AND_ASSIGN(KeepRecord ch,
                       KeepRecordForVm(config_, config_.work_dir + "/serial.log",
                                       "cloud-hypervisor", id, {}, "job j", absl::Now(),
                                       ChannelTransport::kHybridVsock));
  EXPECT_EQ(ch.channel_transport, ChannelTransport::kHybridVsock);
  EXPECT_EQ(ch.vsock_port, 2048u);
  config_.channel.reset();
  EXPECT_THAT(KeepRecordForVm(config_, "/s.log", "qemu", id, {}, "", absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("channel_socket")));
}

// StubVm: just enough of a Vm for RegisterBuilder.
class StubVm : public Vm {
 public:
  StubVm(VmConfig config, std::string socket_dir)
      : config_(std::move(config)), socket_dir_(std::move(socket_dir)) {}
  const VmConfig& config() const override { return config_; }
  bool Exited() override { return false; }
  absl::StatusOr<VmExit> Wait(absl::Duration) override { return absl::UnimplementedError("stub"); }
  void Kill() override {}
  std::string serial_log_path() const override { return config_.work_dir + "/serial.log"; }
  std::string vmm_log_path() const override { return config_.work_dir + "/vmm.log"; }
  int64_t peak_rss_bytes() const override { return 0; }
  std::string vmm_socket_dir() const override { return socket_dir_; }

 private:
  VmConfig config_;
  std::string socket_dir_;
};

// The VMM's short socket dir (Cloud Hypervisor's /tmp/kiln-ch-XXXXXX) goes into the record, so
// that whoever ends the kept builder removes it too.
TEST_F(KeepBuilderTest, RegisterRecordsTheVmmSocketDir) {
  KeepStore store(root_ + "/state");
  ASSERT_OK_AND_ASSIGN(KeepRecord r,
                       RegisterBuilder(store, StubVm(config_, "/tmp/kiln-ch-Ab12Cd"),
                                       "cloud-hypervisor", vmm_, "job j",
                                       ChannelTransport::kHybridVsock));
  EXPECT_EQ(r.vmm_socket_dir, "/tmp/kiln-ch-Ab12Cd");
  ASSERT_OK_AND_ASSIGN(KeepRecord back, store.Get("b1", absl::Now()));
  EXPECT_EQ(back.vmm_socket_dir, "/tmp/kiln-ch-Ab12Cd");
  ASSERT_OK_AND_ASSIGN(KeepRecord none,
                       RegisterBuilder(store, StubVm(config_, ""), "qemu", vmm_, "job j"));
  EXPECT_EQ(none.vmm_socket_dir, "");
  EXPECT_THAT(RegisterBuilder(store, StubVm(config_, "/etc"), "cloud-hypervisor", vmm_, "job j"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vmm_socket_dir")));
}

TEST_F(KeepBuilderTest, KeepFlipsToKeptWithTtlAndReleaseForgets) {
  KeepStore store(root_ + "/state");
  ASSERT_OK_AND_ASSIGN(ProcessIdentity id, IdentifyProcess(vmm_));
  ASSERT_OK_AND_ASSIGN(ProcessIdentity self, IdentifyProcess(::getpid()));
  ASSERT_OK_AND_ASSIGN(KeepRecord r, KeepRecordForVm(config_, config_.work_dir + "/serial.log",
                                                     "qemu", id, self, "job j", absl::Now()));
  ASSERT_OK(store.Put(r));
  KeepPolicy off;
  EXPECT_THAT(KeepFailedBuilder(store, r, "x", off),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("off")));
  KeepPolicy on;
  on.keep_failed_builders = true;
  on.ttl = absl::Minutes(5);
  ASSERT_OK(KeepFailedBuilder(store, r, "step 2\nRUN exit 1", on));
  ASSERT_OK_AND_ASSIGN(KeepRecord k, store.Get("b1", absl::Now()));
  EXPECT_EQ(k.state, KeepState::kKept);
  EXPECT_EQ(k.failure, "step 2 | RUN exit 1");
  EXPECT_LE(k.expires - absl::Now(), absl::Minutes(5));
  EXPECT_GT(k.expires - absl::Now(), absl::Minutes(4));
  EXPECT_THAT(store.Get("b1", absl::Now() + absl::Minutes(6)),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  ASSERT_OK(ReleaseBuilder(store, "b1"));
  EXPECT_THAT(store.Get("b1", absl::Now()), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_OK(ReleaseBuilder(store, "b1"));  // idempotent
}

TEST_F(KeepBuilderTest, ADeadVmCannotBeKept) {
  KeepStore store(root_ + "/state");
  ASSERT_OK_AND_ASSIGN(ProcessIdentity id, IdentifyProcess(vmm_));
  ASSERT_OK_AND_ASSIGN(KeepRecord r, KeepRecordForVm(config_, config_.work_dir + "/serial.log",
                                                     "qemu", id, {}, "job j", absl::Now()));
  ::kill(-vmm_, SIGKILL);
  ::waitpid(vmm_, nullptr, 0);
  KeepPolicy on;
  on.keep_failed_builders = true;
  EXPECT_THAT(KeepFailedBuilder(store, r, "x", on),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no longer running")));
}

}  // namespace
}  // namespace kiln::harness
