// File: init/modules_test.cc
#include "init/modules.h"

#include <errno.h>

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

TEST(ParseModuleListTest, Good) {
  ASSERT_OK_AND_ASSIGN(
      auto paths,
      ParseModuleList("# resolved at build time\n/lib/modules/k/virtio.ko\n\n  "
                      "/lib/modules/k/virtio_blk.ko  \r\n/lib/modules/k/overlay.ko"));
  EXPECT_THAT(paths, ElementsAre("/lib/modules/k/virtio.ko", "/lib/modules/k/virtio_blk.ko",
                                 "/lib/modules/k/overlay.ko"));
  ASSERT_OK_AND_ASSIGN(paths, ParseModuleList(""));
  EXPECT_TRUE(paths.empty());
}

TEST(ParseModuleListTest, Bad) {
  struct Row {
    const char* text;
    const char* want;
  };
  const Row rows[] = {
      {"virtio.ko\n", "line 1: \"virtio.ko\""},
      {"/a.ko\n/b.ko x=1\n", "line 2: \"/b.ko x=1\""},
      {"/a.ko\n\n/\n", "line 3: \"/\""},
      {"./rel.ko", "line 1"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.text);
    EXPECT_THAT(ParseModuleList(row.text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(row.want)));
  }
}

TEST(LoadModulesTest, MissingListMeansNoModules) {
  FakeSys sys;
  Console console(sys);
  ASSERT_OK(LoadModules(sys, console, kModulesLoadPath));
  EXPECT_TRUE(sys.calls.empty());
  EXPECT_THAT(sys.console, HasSubstr("step=modules count=0"));
}

TEST(LoadModulesTest, LoadsInOrderAndEexistIsSuccess) {
  FakeSys sys;
  sys.files[std::string(kModulesLoadPath)] = "/m/a.ko\n/m/b.ko\n/m/c.ko\n";
  sys.module_errors["/m/b.ko"] = PosixError(EEXIST, "finit_module", "/m/b.ko");
  Console console(sys);
  ASSERT_OK(LoadModules(sys, console, kModulesLoadPath));
  EXPECT_THAT(sys.calls, ElementsAre("finit_module /m/a.ko", "finit_module /m/b.ko",
                                     "finit_module /m/c.ko"));
  EXPECT_THAT(sys.console, HasSubstr("step=modules already-loaded=/m/b.ko"));
  EXPECT_THAT(sys.console, HasSubstr("step=modules count=3"));
}

TEST(LoadModulesTest, EnodevIsAWarning) {
  FakeSys sys;
  sys.files[std::string(kModulesLoadPath)] = "/m/crc32c-intel.ko\n/m/b.ko\n";
  sys.module_errors["/m/crc32c-intel.ko"] =
      PosixError(ENODEV, "finit_module", "/m/crc32c-intel.ko");
  Console console(sys);
  ASSERT_OK(LoadModules(sys, console, kModulesLoadPath));
  EXPECT_THAT(sys.console, HasSubstr("warning step=modules errno=19"));
  EXPECT_EQ(sys.calls.back(), "finit_module /m/b.ko");
}

TEST(LoadModulesTest, LoadFailureStops) {
  FakeSys sys;
  sys.files[std::string(kModulesLoadPath)] = "/m/a.ko\n/m/b.ko\n";
  sys.module_errors["/m/a.ko"] = PosixError(EPERM, "finit_module", "/m/a.ko");
  Console console(sys);
  EXPECT_THAT(LoadModules(sys, console, kModulesLoadPath),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("/m/a.ko")));
  EXPECT_THAT(sys.calls, ElementsAre("finit_module /m/a.ko"));
}

TEST(LoadModulesTest, MalformedListIsInvalidArgument) {
  FakeSys sys;
  sys.files[std::string(kModulesLoadPath)] = "virtio.ko\n";
  Console console(sys);
  EXPECT_THAT(LoadModules(sys, console, kModulesLoadPath),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("/etc/kiln/modules.load: modules list line 1")));
  EXPECT_TRUE(sys.calls.empty());
}

}  // namespace
}  // namespace kiln::init
