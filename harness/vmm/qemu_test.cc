// File: harness/vmm/qemu_test.cc
// Pure parts of the QEMU backend: argv, kernel cmdline, accel decision, cpuinfo readers.
#include "harness/vmm/qemu.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

VmConfig BaseConfig() {
  VmConfig c;
  c.id = "cgroup-rw";
  c.kernel_path = "/k/vmlinux";
  c.initrd_path = "/k/initrd.cpio.gz";
  c.cmdline = "kiln.root=/dev/vda kiln.cgroup=rw";
  c.vcpus = 2;
  c.memory_mib = 512;
  c.work_dir = "/w/cgroup-rw";
  return c;
}

QemuOptions Tcg(Machine m = Machine::kQ35) {
  QemuOptions o;
  o.machine = m;
  o.accel = Accel::kTcg;
  return o;
}

// Value(argv, flag): the argument after the first `flag`.
std::string Value(const std::vector<std::string>& argv, const std::string& flag) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag) return argv[i + 1];
  }
  return "<absent>";
}

std::vector<std::string> Values(const std::vector<std::string>& argv, const std::string& flag) {
  std::vector<std::string> out;
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag) out.push_back(argv[i + 1]);
  }
  return out;
}

TEST(QemuArgvTest, Q35TcgExactArgv) {
  VmConfig c = BaseConfig();
  c.disks.push_back({"/d/root.ext4", true});
  c.disks.push_back({"/d/scratch.ext4", false});
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> argv, QemuArgv(c, Tcg(), 2096000));
  EXPECT_THAT(argv, ElementsAre(
      "qemu-system-x86_64", "-M", "q35", "-accel", "tcg,tb-size=256", "-m", "512", "-smp", "2",
      "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
      "-serial", "file:/w/cgroup-rw/serial.log", "-kernel", "/k/vmlinux",
      "-initrd", "/k/initrd.cpio.gz", "-append",
      "console=ttyS0 panic=-1 softlockup_panic=1 reboot=t kiln.root=/dev/vda kiln.cgroup=rw",
      "-drive", "file=/d/root.ext4,if=none,id=disk0,format=raw,readonly=on",
      "-device", "virtio-blk-pci,drive=disk0",
      "-drive", "file=/d/scratch.ext4,if=none,id=disk1,format=raw,readonly=off",
      "-device", "virtio-blk-pci,drive=disk1"));
}

TEST(QemuArgvTest, MicrovmTcgUsesMmioAndTscKeys) {
  VmConfig c = BaseConfig();
  c.disks.push_back({"/d/root.ext4", true});
  c.channel = Channel{"kiln.agent", "/w/agent.sock"};
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> argv,
                       QemuArgv(c, Tcg(Machine::kMicrovm), 2096000));
  EXPECT_EQ(Value(argv, "-M"), "microvm");
  EXPECT_EQ(Value(argv, "-append"),
            "console=ttyS0 panic=-1 softlockup_panic=1 reboot=t tsc_early_khz=2096000 "
            "tsc=reliable kiln.root=/dev/vda kiln.cgroup=rw");
  EXPECT_THAT(Values(argv, "-device"),
              ElementsAre("virtio-blk-device,drive=disk0", "virtio-serial-device,id=vser0",
                          "virtserialport,bus=vser0.0,chardev=chan0,name=kiln.agent"));
  EXPECT_EQ(Value(argv, "-chardev"), "socket,id=chan0,path=/w/agent.sock,server=on,wait=off");
  for (const std::string& a : argv) EXPECT_THAT(a, Not(HasSubstr("-pci")));
}

TEST(QemuArgvTest, Q35ChannelIsPci) {
  VmConfig c = BaseConfig();
  c.channel = Channel{"kiln.agent", "/w/agent.sock"};
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> argv, QemuArgv(c, Tcg(), 1));
  EXPECT_THAT(argv, Contains("virtio-serial-pci,id=vser0"));
  // q35 under TCG does not need the TSC keys.
  EXPECT_THAT(Value(argv, "-append"), Not(HasSubstr("tsc_early_khz")));
}

// Warm builders (issue 12): a control socket adds QMP; a restore adds -incoming, and nothing
// else differs (QEMU restores only onto the same machine and devices).
TEST(QemuArgvTest, SnapshotControlAndRestoreAddOnlyQmpAndIncoming) {
  VmConfig c = BaseConfig();
  c.channel = Channel{"kiln.agent", "/w/agent.sock"};
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> plain, QemuArgv(c, Tcg(), 1));
  c.control_socket_path = "/t/qmp.sock";
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> save, QemuArgv(c, Tcg(), 1));
  std::vector<std::string> expected = plain;
  expected.insert(expected.end(), {"-qmp", "unix:/t/qmp.sock,server=on,wait=off"});
  EXPECT_EQ(save, expected);
  c.restore_from = "/cache/it's/state";
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> restore, QemuArgv(c, Tcg(), 1));
  expected.insert(expected.end(), {"-incoming", "exec:cat '/cache/it'\\''s/state'"});
  EXPECT_EQ(restore, expected);
  EXPECT_EQ(QemuIncomingUri("/a b"), "exec:cat '/a b'");
}

TEST(QemuArgvTest, ControlSocketPathTooLongIsRefused) {
  VmConfig c = BaseConfig();
  c.control_socket_path = "/" + std::string(107, 'q');
  EXPECT_THAT(QemuArgv(c, Tcg(), 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control_socket_path")));
}

TEST(QemuArgvTest, KvmUsesHostCpuAndNoTscKeys) {
  QemuOptions o = Tcg(Machine::kMicrovm);
  o.accel = Accel::kKvm;
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> argv, QemuArgv(BaseConfig(), o, 0));
  EXPECT_EQ(Value(argv, "-accel"), "kvm");
  EXPECT_EQ(Value(argv, "-cpu"), "host");
  EXPECT_THAT(Value(argv, "-append"), Not(HasSubstr("tsc_early_khz")));
}

TEST(QemuArgvTest, TcgOptions) {
  QemuOptions o = Tcg();
  o.tcg_tb_size_mib = 0;
  o.tcg_single_thread = true;
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> argv, QemuArgv(BaseConfig(), o, 1));
  EXPECT_EQ(Value(argv, "-accel"), "tcg,thread=single");
}

TEST(QemuArgvTest, CommasAreEscaped) {
  VmConfig c = BaseConfig();
  c.work_dir = "/w/a,b";
  c.disks.push_back({"/d/x,readonly=off", true});
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> argv, QemuArgv(c, Tcg(), 1));
  EXPECT_EQ(Value(argv, "-serial"), "file:/w/a,,b/serial.log");
  EXPECT_EQ(Value(argv, "-drive"), "file=/d/x,,readonly=off,if=none,id=disk0,format=raw,readonly=on");
}

TEST(QemuArgvTest, NoInitrd) {
  VmConfig c = BaseConfig();
  c.initrd_path.clear();
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> argv, QemuArgv(c, Tcg(), 1));
  EXPECT_THAT(argv, Not(Contains("-initrd")));
}

TEST(QemuArgvTest, Rejects) {
  EXPECT_THAT(QemuArgv(BaseConfig(), QemuOptions{}, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("auto")));
  EXPECT_THAT(QemuArgv(BaseConfig(), Tcg(Machine::kMicrovm), 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tsc_khz")));
  VmConfig bad = BaseConfig();
  bad.vcpus = 0;
  EXPECT_THAT(QemuArgv(bad, Tcg(), 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vcpus")));
  QemuOptions no_binary = Tcg();
  no_binary.binary = "";
  EXPECT_THAT(QemuArgv(BaseConfig(), no_binary, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("binary")));
}

TEST(QemuKernelCmdlineTest, EmptyUserPart) {
  VmConfig c = BaseConfig();
  c.cmdline = "  ";
  EXPECT_EQ(QemuKernelCmdline(c, Tcg(), 1), "console=ttyS0 panic=-1 softlockup_panic=1 reboot=t");
}

TEST(QemuPathsTest, InsideWorkDir) {
  QemuPaths p = QemuPathsFor(BaseConfig());
  EXPECT_EQ(p.serial_log, "/w/cgroup-rw/serial.log");
  EXPECT_EQ(p.vmm_log, "/w/cgroup-rw/qemu.log");
}

// The accel decision as a table: (requested, cpu flags, /dev/kvm, probe) -> accel.
TEST(DecideAccelTest, Table) {
  struct Row {
    Accel requested;
    bool virt;
    bool kvm_opens;
    ProbeResult probe;
    Accel want;
    bool needs_probe;
    const char* reason_part;
  };
  const Row rows[] = {
      {Accel::kAuto, false, false, ProbeResult::kNotRun, Accel::kTcg, false, "no vmx/svm"},
      // This machine class: a PVM /dev/kvm but no vmx/svm.
      {Accel::kAuto, false, true, ProbeResult::kNotRun, Accel::kTcg, false, "no vmx/svm"},
      {Accel::kAuto, false, true, ProbeResult::kPassed, Accel::kTcg, false, "no vmx/svm"},
      {Accel::kAuto, true, false, ProbeResult::kNotRun, Accel::kTcg, false, "/dev/kvm"},
      {Accel::kAuto, true, true, ProbeResult::kNotRun, Accel::kTcg, true, "pending"},
      {Accel::kAuto, true, true, ProbeResult::kFailed, Accel::kTcg, false, "probe boot failed"},
      {Accel::kAuto, true, true, ProbeResult::kPassed, Accel::kKvm, false, "passed"},
      {Accel::kTcg, true, true, ProbeResult::kPassed, Accel::kTcg, false, "requested"},
      {Accel::kKvm, false, false, ProbeResult::kNotRun, Accel::kKvm, false, "requested"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(::testing::Message() << AccelName(row.requested) << " virt=" << row.virt
                                      << " kvm=" << row.kvm_opens
                                      << " probe=" << static_cast<int>(row.probe));
    AccelFacts facts{row.virt, row.kvm_opens, row.probe, "boom"};
    AccelDecision d = DecideAccel(row.requested, facts);
    EXPECT_EQ(d.accel, row.want);
    EXPECT_EQ(d.needs_probe, row.needs_probe);
    EXPECT_THAT(d.reason, HasSubstr(row.reason_part));
  }
}

constexpr char kCpuinfoNoVirt[] =
    "processor\t: 0\n"
    "vendor_id\t: GenuineIntel\n"
    "model name\t: Intel(R) Xeon(R) Platinum\n"
    "cpu MHz\t\t: 2096.061\n"
    "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr hypervisor svmx vmxe\n"
    "\n"
    "processor\t: 1\n"
    "cpu MHz\t\t: 2200.000\n";

TEST(CpuinfoTest, VirtFlags) {
  EXPECT_FALSE(CpuinfoHasVirtFlags(kCpuinfoNoVirt));  // "svmx"/"vmxe" are not vmx/svm
  EXPECT_TRUE(CpuinfoHasVirtFlags("flags\t\t: fpu vmx tsc\n"));
  EXPECT_TRUE(CpuinfoHasVirtFlags("flags : svm\n"));
  EXPECT_FALSE(CpuinfoHasVirtFlags("model name : vmx svm\n"));  // not on a flags line
  EXPECT_FALSE(CpuinfoHasVirtFlags(""));
}

TEST(CpuinfoTest, TscKhz) {
  ASSERT_OK_AND_ASSIGN(int64_t khz, TscKhzFromCpuinfo(kCpuinfoNoVirt));
  EXPECT_EQ(khz, 2096061);
  EXPECT_THAT(TscKhzFromCpuinfo("flags : fpu\n"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no cpu MHz")));
  EXPECT_THAT(TscKhzFromCpuinfo("cpu MHz : fast\n"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("bad")));
  EXPECT_THAT(TscKhzFromCpuinfo("cpu MHz : -5\n"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("bad")));
}

TEST(ParseTest, MachineAndAccel) {
  EXPECT_EQ(*ParseMachine("microvm"), Machine::kMicrovm);
  EXPECT_EQ(*ParseMachine("q35"), Machine::kQ35);
  EXPECT_THAT(ParseMachine("pc"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pc")));
  EXPECT_EQ(*ParseAccel("auto"), Accel::kAuto);
  EXPECT_EQ(*ParseAccel("kvm"), Accel::kKvm);
  EXPECT_EQ(*ParseAccel("tcg"), Accel::kTcg);
  EXPECT_THAT(ParseAccel("hvf"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hvf")));
}

}  // namespace
}  // namespace kiln::harness
