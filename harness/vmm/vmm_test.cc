// File: harness/vmm/vmm_test.cc
#include "harness/vmm/vmm.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

VmConfig Good() {
  VmConfig c;
  c.id = "a.b_c-1";
  c.kernel_path = "/k";
  c.work_dir = "/w";
  return c;
}

TEST(ValidateVmConfigTest, GoodConfig) { EXPECT_OK(ValidateVmConfig(Good())); }

TEST(ValidateVmConfigTest, EachBadFieldIsNamed) {
  struct Row {
    const char* field;
    void (*mutate)(VmConfig&);
  };
  const Row rows[] = {
      {"id", [](VmConfig& c) { c.id = ""; }},
      {"id", [](VmConfig& c) { c.id = "a/b"; }},
      {"id", [](VmConfig& c) { c.id = ".."; }},
      {"id", [](VmConfig& c) { c.id = std::string(65, 'a'); }},
      {"kernel_path", [](VmConfig& c) { c.kernel_path = ""; }},
      {"work_dir", [](VmConfig& c) { c.work_dir = ""; }},
      {"vcpus", [](VmConfig& c) { c.vcpus = 0; }},
      {"vcpus", [](VmConfig& c) { c.vcpus = 65; }},
      {"memory_mib", [](VmConfig& c) { c.memory_mib = 63; }},
      {"deadline", [](VmConfig& c) { c.deadline = absl::ZeroDuration(); }},
      {"disks[1].path", [](VmConfig& c) { c.disks = {{"/a", true}, {"", false}}; }},
      {"channel.name", [](VmConfig& c) { c.channel = Channel{"", "/s"}; }},
      {"channel.host_socket_path", [](VmConfig& c) { c.channel = Channel{"n", ""}; }},
      {"channel.host_socket_path",
       [](VmConfig& c) { c.channel = Channel{"n", "/" + std::string(107, 's')}; }},
      {"cmdline", [](VmConfig& c) { c.cmdline = "a\nb"; }},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.field);
    VmConfig c = Good();
    row.mutate(c);
    EXPECT_THAT(ValidateVmConfig(c),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(row.field)));
  }
}

TEST(CheckDetachableTest, OnlyADetachableRunningVm) {
  VmConfig c = Good();
  EXPECT_THAT(CheckDetachable(c, /*exited=*/false),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not booted detachable")));
  c.detachable = true;
  EXPECT_OK(CheckDetachable(c, /*exited=*/false));
  EXPECT_THAT(CheckDetachable(c, /*exited=*/true),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("has exited")));
}

TEST(VmExitKindNameTest, Names) {
  EXPECT_STREQ(VmExitKindName(VmExit::Kind::kExited), "exited");
  EXPECT_STREQ(VmExitKindName(VmExit::Kind::kSignaled), "signaled");
  EXPECT_STREQ(VmExitKindName(VmExit::Kind::kDeadline), "deadline");
  EXPECT_STREQ(VmExitKindName(VmExit::Kind::kKilled), "killed");
}

TEST(ChannelTransportTest, NamesRoundTripAndBadNamesAreRefused) {
  for (ChannelTransport t : {ChannelTransport::kVirtioSerial, ChannelTransport::kHybridVsock}) {
    SCOPED_TRACE(ChannelTransportName(t));
    ASSERT_OK_AND_ASSIGN(ChannelTransport back, ParseChannelTransport(ChannelTransportName(t)));
    EXPECT_EQ(back, t);
  }
  EXPECT_STREQ(ChannelTransportName(ChannelTransport::kHybridVsock), "hybrid-vsock");
  EXPECT_THAT(ParseChannelTransport("vsock"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"vsock\"")));
  EXPECT_THAT(ParseChannelTransport(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("virtio-serial")));
}

TEST(ChannelTransportTest, BackendsDefaultToVirtioSerial) {
  struct Minimal : Vmm {
    std::string Name() const override { return "m"; }
    std::string Describe() const override { return "m"; }
    absl::StatusOr<std::unique_ptr<Vm>> Boot(const VmConfig&) override {
      return absl::UnimplementedError("m");
    }
  } m;
  EXPECT_EQ(m.channel_transport(), ChannelTransport::kVirtioSerial);
}

}  // namespace
}  // namespace kiln::harness
