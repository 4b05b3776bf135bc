// File: harness/vmm/qemu_test.cc
// Pure parts of the QEMU backend: argv, kernel cmdline, accel decision, cpuinfo readers.
#include "harness/vmm/qemu.h"

#include <algorithm>
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

// File-backed guest RAM (SnapshotRam::kFile): the VM that makes the snapshot maps the file
// shared; a restored VM maps it private and starts a deferred incoming migration; nothing else
// in the argv differs.
TEST(QemuArgvTest, MemoryFileSharedForTheSaveAndPrivateWithDeferredIncomingForTheRestore) {
  VmConfig c = BaseConfig();
  c.channel = Channel{"kiln.agent", "/w/agent.sock"};
  c.control_socket_path = "/t/qmp.sock";
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> plain, QemuArgv(c, Tcg(), 1));
  c.memory_file = "/cache/tmp.k.1/ram";
  c.memory_file_shared = true;
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> save, QemuArgv(c, Tcg(), 1));
  std::vector<std::string> expected = plain;
  auto after_m = std::find(expected.begin(), expected.end(), "-smp") + 2;
  expected.insert(after_m, {"-object",
                            "memory-backend-file,id=ram0,size=512M,mem-path=/cache/tmp.k.1/ram,"
                            "share=on",
                            "-machine", "memory-backend=ram0"});
  EXPECT_EQ(save, expected);
  EXPECT_FALSE(QemuIncomingDeferred(c));

  c.memory_file = "/cache/k/ram";
  c.memory_file_shared = false;
  c.restore_from = "/cache/k/state";
  EXPECT_TRUE(QemuIncomingDeferred(c));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> restore, QemuArgv(c, Tcg(), 1));
  EXPECT_EQ(Value(restore, "-object"),
            "memory-backend-file,id=ram0,size=512M,mem-path=/cache/k/ram,share=off");
  EXPECT_EQ(Value(restore, "-machine"), "memory-backend=ram0");
  EXPECT_EQ(Value(restore, "-incoming"), "defer");
  EXPECT_EQ(Values(restore, "-incoming").size(), 1u);
  // Apart from the backend's path and share mode and -incoming, the restore's argv is the save's.
  std::vector<std::string> normalized = restore;
  for (std::string& a : normalized) {
    if (a == "memory-backend-file,id=ram0,size=512M,mem-path=/cache/k/ram,share=off") {
      a = "memory-backend-file,id=ram0,size=512M,mem-path=/cache/tmp.k.1/ram,share=on";
    }
  }
  normalized.resize(normalized.size() - 2);  // "-incoming", "defer"
  EXPECT_EQ(normalized, save);
}

TEST(QemuArgvTest, MemoryFileCommasEscapedAndAbsentWithoutOne) {
  VmConfig c = BaseConfig();
  EXPECT_TRUE(QemuMemoryBackendArgs(c).empty());
  c.memory_file = "/a,share=on/ram";
  EXPECT_THAT(QemuMemoryBackendArgs(c),
              ElementsAre("-object",
                          "memory-backend-file,id=ram0,size=512M,mem-path=/a,,share=on/ram,"
                          "share=off",
                          "-machine", "memory-backend=ram0"));
  // Without restore_from the plain -incoming rule stays (nothing to defer).
  EXPECT_FALSE(QemuIncomingDeferred(c));
}

TEST(QemuArgvTest, RestoreRefusesASharedMemoryFileOrNoControlSocket) {
  VmConfig c = BaseConfig();
  c.restore_from = "/cache/k/state";
  c.memory_file = "/cache/k/ram";
  c.memory_file_shared = true;
  c.control_socket_path = "/t/qmp.sock";
  EXPECT_THAT(QemuArgv(c, Tcg(), 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("private")));
  c.memory_file_shared = false;
  c.control_socket_path.clear();
  EXPECT_THAT(QemuArgv(c, Tcg(), 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control_socket_path")));
}

TEST(SnapshotRamTest, ParseNameDecide) {
  ASSERT_OK_AND_ASSIGN(SnapshotRam file, ParseSnapshotRam("file"));
  EXPECT_EQ(file, SnapshotRam::kFile);
  ASSERT_OK_AND_ASSIGN(SnapshotRam stream, ParseSnapshotRam("stream"));
  EXPECT_EQ(stream, SnapshotRam::kStream);
  EXPECT_THAT(ParseSnapshotRam("mapped"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--snapshot_ram")));
  EXPECT_STREQ(SnapshotRamName(SnapshotRam::kFile), "file");
  EXPECT_STREQ(SnapshotRamName(SnapshotRam::kStream), "stream");
  EXPECT_EQ(QemuOptions{}.snapshot_ram, SnapshotRam::kFile);

  SnapshotRamDecision d = DecideSnapshotRam(SnapshotRam::kFile, true);
  EXPECT_EQ(d.mode, SnapshotRam::kFile);
  d = DecideSnapshotRam(SnapshotRam::kFile, false, "QEMU 3.1");
  EXPECT_EQ(d.mode, SnapshotRam::kStream);
  EXPECT_THAT(d.reason, HasSubstr("fallback"));
  EXPECT_THAT(d.reason, HasSubstr("x-ignore-shared"));
  EXPECT_THAT(d.reason, HasSubstr("QEMU 3.1"));
  d = DecideSnapshotRam(SnapshotRam::kStream, true);
  EXPECT_EQ(d.mode, SnapshotRam::kStream);
  EXPECT_EQ(d.reason, "stream requested");
}

TEST(SnapshotRamTest, QmpListsCapability) {
  // What QEMU 7.2.22 prints for query-migrate-capabilities (abridged).
  const std::string qemu72 =
      R"({"return": [{"state": false, "capability": "xbzrle"}, )"
      R"({"state": false, "capability": "x-ignore-shared"}, )"
      R"({"state": false, "capability": "validate-uuid"}]})";
  EXPECT_TRUE(QmpListsCapability(qemu72, "x-ignore-shared"));
  EXPECT_FALSE(QmpListsCapability(qemu72, "mapped-ram"));
  EXPECT_FALSE(QmpListsCapability(qemu72, "x-ignore"));
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
