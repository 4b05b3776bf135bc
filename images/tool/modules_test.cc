// File: images/tool/modules_test.cc
// The pure half of module selection: merging probe orders, modules.load, modules.dep.
#include "images/tool/modules.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kDep[] =
    "kernel/drivers/virtio/virtio_ring.ko:\n"
    "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/arch/x86/crypto/crc32c-intel.ko:\n"
    "kernel/lib/libcrc32c.ko:\n"
    "kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\n"
    "kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\n";

TEST(ModulesTest, MergeKeepsFirstOccurrence) {
  ModuleSet s = MergeProbeOrders({
      {"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
       "kernel/drivers/block/virtio_blk.ko"},
      {"kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/lib/libcrc32c.ko",
       "kernel/fs/erofs/erofs.ko"},
      {"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko"},
      {},
  });
  EXPECT_THAT(s.load_order,
              ElementsAre("kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                          "kernel/drivers/block/virtio_blk.ko",
                          "kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/lib/libcrc32c.ko",
                          "kernel/fs/erofs/erofs.ko"));
}

TEST(ModulesTest, LoadTextHasAbsoluteGuestPaths) {
  ModuleSet s{{"kernel/lib/libcrc32c.ko", "kernel/fs/erofs/erofs.ko"}};
  EXPECT_EQ(ModulesLoadText("6.1.0-57-cloud-amd64", s),
            "/lib/modules/6.1.0-57-cloud-amd64/kernel/lib/libcrc32c.ko\n"
            "/lib/modules/6.1.0-57-cloud-amd64/kernel/fs/erofs/erofs.ko\n");
  EXPECT_EQ(ModulesLoadText("k", ModuleSet{}), "");
}

TEST(ModulesTest, FilterModulesDepKeepsOnlyTheSetInLoadOrder) {
  ModuleSet s{{"kernel/lib/libcrc32c.ko", "kernel/fs/erofs/erofs.ko"}};
  ASSERT_OK_AND_ASSIGN(std::string dep, FilterModulesDep(kDep, s));
  EXPECT_EQ(dep, "kernel/lib/libcrc32c.ko:\nkernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\n");
}

TEST(ModulesTest, FilterModulesDepMissingDependency) {
  ModuleSet s{{"kernel/fs/erofs/erofs.ko"}};
  EXPECT_THAT(FilterModulesDep(kDep, s),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("libcrc32c")));
}

TEST(ModulesTest, FilterModulesDepUnknownModule) {
  ModuleSet s{{"kernel/fs/nope.ko"}};
  EXPECT_THAT(FilterModulesDep(kDep, s),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope.ko")));
}

TEST(ModulesTest, FilterModulesDepMalformedLine) {
  EXPECT_THAT(FilterModulesDep("kernel/x.ko\n", ModuleSet{{"kernel/x.ko"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without ':'")));
}

TEST(ModulesTest, CheckModuleName) {
  EXPECT_OK(CheckModuleName("vmw_vsock_virtio_transport"));
  EXPECT_OK(CheckModuleName("crc32c-intel"));
  EXPECT_THAT(CheckModuleName("../x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a path")));
  EXPECT_THAT(CheckModuleName(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("length")));
  EXPECT_THAT(CheckModuleName(std::string(65, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("length")));
}

}  // namespace
}  // namespace kiln::images
