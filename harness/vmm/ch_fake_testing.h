// File: harness/vmm/ch_fake_testing.h
// -----------------------------------------------------------------------------
//
// What the tests that drive the fake `cloud-hypervisor` (testdata/ch_fake_cloud_hypervisor.cc:
// the REST API, snapshot/restore and a vsock channel whose guest echoes, no VM) share:
// a gtest fixture holding a CloudHypervisorVmm on the fake binary, the VmConfig and Channel
// of a fake VM, and the small file and channel helpers their checks use. Users:
// cloud_hypervisor_vm_lifecycle_test, cloud_hypervisor_snapshot_test and
// //harness/builder:warm_backend_test. The library carries the fake binary as its data.
//
// Example:
//
//   class ChLifecycleTest : public ChFakeVmmTest {};
//
//   TEST_F(ChLifecycleTest, Echo) {
//     VmConfig c = FakeVmConfig("echo", "run");
//     c.channel = FakeChannel("echo.sock");
//     ASSERT_OK_AND_ASSIGN(std::unique_ptr<Vm> vm, vmm_->Boot(c));
//     ASSERT_OK_AND_ASSIGN(std::unique_ptr<agent::FdStream> s,
//                          ConnectChannel(*vm, absl::Seconds(5)));
//     EXPECT_EQ(EchoOverChannel(*s, "ping"), "ping");
//     EXPECT_THAT(FileLines(c.work_dir + "/requests.log"), Contains("PUT /api/v1/vm.boot"));
//   }
#ifndef KILN_HARNESS_CH_FAKE_TESTING_H_
#define KILN_HARNESS_CH_FAKE_TESTING_H_

#include <memory>
#include <string>
#include <vector>

#include "agent/transport.h"
#include "gtest/gtest.h"
#include "harness/vmm/cloud_hypervisor.h"
#include "harness/vmm/vmm.h"

namespace kiln::harness {

// -----------------------------------------------------------------------------
// Files
// -----------------------------------------------------------------------------

// RunfilePath(rel): the absolute path of the runfile `rel` (relative to the workspace root,
// e.g. "harness/vmm/ch_fake_cloud_hypervisor").
// REQUIRES: running under `bazel test` ($TEST_SRCDIR and $TEST_WORKSPACE set).
std::string RunfilePath(const std::string& rel);

// ChFakeBinaryPath(): RunfilePath of the fake `cloud-hypervisor` executable.
std::string ChFakeBinaryPath();

// SlurpFile(path): the whole file's bytes, or "" if it cannot be read.
std::string SlurpFile(const std::string& path);

// FileLines(path): the file's lines without their '\n', or {} if it cannot be read.
std::vector<std::string> FileLines(const std::string& path);

// PathExists(path): whether anything is at `path` (lstat(2): a dangling symlink counts).
bool PathExists(const std::string& path);

// -----------------------------------------------------------------------------
// The fake guest's channel
// -----------------------------------------------------------------------------

// EchoOverChannel(stream, text): writes `text` (1 s) and reads back until as many bytes came
// (2 s per read), end of stream or an error. Returns what was read: `text` when the fake
// guest echoed it. A failed write is a test failure (EXPECT).
std::string EchoOverChannel(agent::ByteStream& stream, const std::string& text);

// -----------------------------------------------------------------------------
// ChFakeVmmTest
// -----------------------------------------------------------------------------

// ChFakeVmmTest: a fixture whose SetUp makes `vmm_`, a CloudHypervisorVmm on the fake binary
// with a 300 ms grace, writes a fake kernel file `kernel_` ($TEST_TMPDIR/vmlinux, "not a
// kernel") and makes `sock_dir_`, a fresh short directory under /tmp for unix sockets (a path
// in $TEST_TMPDIR may be too long for one); TearDown removes `sock_dir_` and all in it. A test
// suite derives from it (its name stays the suite's), and a subclass's SetUp calls
// ChFakeVmmTest::SetUp() first and returns if HasFatalFailure().
class ChFakeVmmTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // FakeVmConfig(id, mode): a VmConfig for the fake: `id`, the fake kernel, cmdline
  // "fake.mode=<mode>" (the fake reads fake.* keys: run, poweroff, hang, bad-boot, ...),
  // work dir $TEST_TMPDIR/<id> (long enough that CloudHypervisorVmm puts the API socket in a
  // short temp dir of its own). Everything else (deadline, memory, channel) is VmConfig's
  // default.
  VmConfig FakeVmConfig(const std::string& id, const std::string& mode) const;

  // FakeChannel(socket_name): the "agent" channel on guest CID 3, port 1024, its host socket
  // `sock_dir_`/<socket_name>.
  Channel FakeChannel(const std::string& socket_name) const;

  std::unique_ptr<CloudHypervisorVmm> vmm_;
  std::string kernel_;
  std::string sock_dir_;
};

}  // namespace kiln::harness

#endif  // KILN_HARNESS_CH_FAKE_TESTING_H_
