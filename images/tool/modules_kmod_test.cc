// File: images/tool/modules_kmod_test.cc
// ResolveProbeOrder on the real Debian cloud kernel's module tree (argv[1]: its
// modules.dep.bin). Expectations match `modprobe --show-depends -d <root> -S <kver> -C
// /dev/null <name>` on the same tree.
#include "images/tool/modules_kmod.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string* module_dir = nullptr;

TEST(ModulesKmodTest, SoftdepComesFirst) {
  // erofs depends on libcrc32c, whose modules.softdep line is "pre: crc32c"; the alias
  // crc32c resolves to crc32c-intel.
  ASSERT_OK_AND_ASSIGN(ProbeOrder o, ResolveProbeOrder(*module_dir, "erofs"));
  EXPECT_THAT(o.paths, ElementsAre("kernel/arch/x86/crypto/crc32c-intel.ko",
                                   "kernel/lib/libcrc32c.ko", "kernel/fs/erofs/erofs.ko"));
}

TEST(ModulesKmodTest, DependenciesFirst) {
  ASSERT_OK_AND_ASSIGN(ProbeOrder o, ResolveProbeOrder(*module_dir, "vmw_vsock_virtio_transport"));
  EXPECT_THAT(o.paths, ElementsAre("kernel/drivers/virtio/virtio_ring.ko",
                                   "kernel/drivers/virtio/virtio.ko",
                                   "kernel/net/vmw_vsock/vsock.ko",
                                   "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko",
                                   "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko"));
}

TEST(ModulesKmodTest, AliasResolves) {
  ASSERT_OK_AND_ASSIGN(ProbeOrder o, ResolveProbeOrder(*module_dir, "crc32c"));
  EXPECT_THAT(o.paths, ElementsAre("kernel/arch/x86/crypto/crc32c-intel.ko"));
}

TEST(ModulesKmodTest, BuiltinHasNothingToLoad) {
  ASSERT_OK_AND_ASSIGN(ProbeOrder o, ResolveProbeOrder(*module_dir, "ext4"));
  EXPECT_THAT(o.paths, IsEmpty());
  EXPECT_THAT(o.builtin, ElementsAre("ext4"));
}

TEST(ModulesKmodTest, UnknownModule) {
  EXPECT_THAT(ResolveProbeOrder(*module_dir, "no_such_module_kiln"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no_such_module_kiln")));
}

TEST(ModulesKmodTest, BadName) {
  EXPECT_THAT(ResolveProbeOrder(*module_dir, "../../etc/passwd"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a path")));
}

TEST(ModulesKmodTest, DirectoryWithoutDepmod) {
  EXPECT_THAT(ResolveProbeOrder(std::getenv("TEST_TMPDIR"), "erofs"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("depmod")));
}

}  // namespace
}  // namespace kiln::images

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <lib/modules/KVER/modules.dep.bin>\n", argv[0]);
    return 2;
  }
  std::string p = argv[1];
  kiln::images::module_dir = new std::string(p.substr(0, p.rfind('/')));
  return RUN_ALL_TESTS();
}
