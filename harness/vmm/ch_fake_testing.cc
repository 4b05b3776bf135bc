// File: harness/vmm/ch_fake_testing.cc
#include "harness/vmm/ch_fake_testing.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/time/time.h"
#include "harness/vmm/vm_test_support.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::harness {

std::string RunfilePath(const std::string& rel) {
  return std::string(std::getenv("TEST_SRCDIR")) + "/" + std::getenv("TEST_WORKSPACE") + "/" + rel;
}

std::string ChFakeBinaryPath() { return RunfilePath("harness/vmm/ch_fake_cloud_hypervisor"); }

std::string SlurpFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> FileLines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string EchoOverChannel(agent::ByteStream& stream, const std::string& text) {
  EXPECT_THAT(stream.Write(text, 1000), ::kiln_testing::IsOk());
  std::string got;
  char buf[64];
  while (got.size() < text.size()) {
    absl::StatusOr<size_t> n = stream.Read(buf, sizeof(buf), 2000);
    if (!n.ok() || *n == 0) break;
    got.append(buf, *n);
  }
  return got;
}

void ChFakeVmmTest::SetUp() {
  CloudHypervisorOptions options;
  options.binary = ChFakeBinaryPath();
  options.grace = absl::Milliseconds(300);
  ASSERT_OK_AND_ASSIGN(vmm_, CloudHypervisorVmm::Create(options));
  kernel_ = TestTmpRoot() + "/vmlinux";
  std::ofstream(kernel_) << "not a kernel";
  char tmpl[] = "/tmp/kiln-ch-fake-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr) << "mkdtemp " << tmpl;
  sock_dir_ = tmpl;
}

void ChFakeVmmTest::TearDown() {
  if (sock_dir_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(sock_dir_, ignored);
}

VmConfig ChFakeVmmTest::FakeVmConfig(const std::string& id, const std::string& mode) const {
  VmConfig c;
  c.id = id;
  c.kernel_path = kernel_;
  c.cmdline = "fake.mode=" + mode;
  c.work_dir = TestTmpRoot() + "/" + id;
  return c;
}

Channel ChFakeVmmTest::FakeChannel(const std::string& socket_name) const {
  return Channel{"agent", sock_dir_ + "/" + socket_name, 3, 1024};
}

}  // namespace kiln::harness
