// File: init/device_nodes_test.cc
// The device node table and CreateDeviceNodes against FakeSys.
#include "init/device_nodes.h"

#include <errno.h>
#include <sys/stat.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "init/fake_sys.h"
#include "third_party/absl_ext/posix_error.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::init {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DeviceNodesTest, TunIsCharTenTwoHundredForEveryone) {
  EXPECT_THAT(BaseDeviceNodes(), ElementsAre(DeviceNode{"/dev/net/tun", 10, 200, 0666}));
}

// No node yet (the tun module not loaded, or devtmpfs not there): made, then chmod'ed to the
// exact mode (mknod's mode goes through the umask).
TEST(CreateDeviceNodesTest, MakesAMissingNode) {
  FakeSys sys;
  Console console(sys);
  ASSERT_OK(CreateDeviceNodes(sys, console, BaseDeviceNodes()));
  EXPECT_THAT(sys.calls, ElementsAre("mkdir /dev/net", "mknod /dev/net/tun c 10:200",
                                     "chmod /dev/net/tun 0666"));
  ASSERT_OK_AND_ASSIGN(FileInfo info, sys.Stat("/dev/net/tun"));
  EXPECT_TRUE(S_ISCHR(info.mode));
  EXPECT_EQ(info.mode & 07777, 0666u);
  EXPECT_EQ(sys.console, "KILN-INIT: step=devices node=/dev/net/tun char=10:200 mode=0666\n");
}

// devtmpfs made it when tun.ko was loaded, 0600 root: kept, and opened up to 0666.
TEST(CreateDeviceNodesTest, OpensUpTheNodeDevtmpfsMade) {
  FakeSys sys;
  Console console(sys);
  sys.nodes["/dev/net/tun"] = FileInfo{S_IFCHR | 0600, 0, 0, 10, 200};
  ASSERT_OK(CreateDeviceNodes(sys, console, BaseDeviceNodes()));
  EXPECT_EQ(sys.nodes["/dev/net/tun"].mode, static_cast<uint32_t>(S_IFCHR | 0666));
  EXPECT_EQ(sys.console,
            "KILN-INIT: step=devices node=/dev/net/tun char=10:200 mode=0666 existed=yes\n");
}

// Something else at the path is an error naming what is there; it is not chmod'ed.
TEST(CreateDeviceNodesTest, RefusesWhatIsNotTheDevice) {
  struct Row {
    FileInfo there;
    const char* want;
  };
  const Row rows[] = {
      {FileInfo{S_IFCHR | 0600, 0, 0, 10, 201}, "found character device 10:201"},
      {FileInfo{S_IFREG | 0644, 0, 0, 0, 0}, "found a regular file"},
      {FileInfo{S_IFDIR | 0755, 0, 0, 0, 0}, "found a directory"},
      {FileInfo{S_IFBLK | 0600, 0, 0, 10, 200}, "found block device 10:200"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.want);
    FakeSys sys;
    Console console(sys);
    sys.nodes["/dev/net/tun"] = row.there;
    EXPECT_THAT(CreateDeviceNodes(sys, console, BaseDeviceNodes()),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr(std::string("/dev/net/tun: expected a character device "
                                               "10:200, ") + row.want)));
    EXPECT_EQ(sys.calls.back(), "mknod /dev/net/tun c 10:200");
    EXPECT_EQ(sys.console, "");
  }
}

TEST(CreateDeviceNodesTest, SyscallFailuresAreReturned) {
  FakeSys sys;
  Console console(sys);
  sys.mknod_errors["/dev/net/tun"] = PosixError(EROFS, "mknod c 10:200", "/dev/net/tun");
  EXPECT_THAT(CreateDeviceNodes(sys, console, BaseDeviceNodes()),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("Read-only file system")));

  FakeSys sys2;
  Console console2(sys2);
  sys2.mkdir_errors["/dev/net"] = PosixError(ENOSPC, "mkdir", "/dev/net");
  EXPECT_THAT(CreateDeviceNodes(sys2, console2, BaseDeviceNodes()),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("mkdir /dev/net")));

  FakeSys sys3;
  Console console3(sys3);
  sys3.chmod_errors["/dev/net/tun"] = PosixError(EPERM, "chmod 0666", "/dev/net/tun");
  EXPECT_THAT(CreateDeviceNodes(sys3, console3, BaseDeviceNodes()),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("chmod 0666")));
  EXPECT_EQ(sys3.console, "");
}

}  // namespace
}  // namespace kiln::init
