// File: harness/vmm/snapshot_qmp_test.cc
// Pure parts of the QMP snapshot code: which migration features a QEMU offers, the save URI.
#include "harness/vmm/snapshot_qmp.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::harness {
namespace {

using nlohmann::json;

json Greeting(int major, int minor) {
  return json::parse(absl::StrCat(R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": )",
                                  minor, R"(, "major": )", major,
                                  R"(}, "package": "Debian"}, "capabilities": ["oob"]}})"));
}

TEST(MigrationFeaturesTest, Qemu72HasNeitherFileNorMappedRam) {
  // What QEMU 7.2.22 here answers (abridged).
  const json caps = json::parse(
      R"([{"state": false, "capability": "xbzrle"}, {"state": false, "capability": "x-ignore-shared"}])");
  MigrationFeatures f = MigrationFeaturesFrom(Greeting(7, 2), caps);
  EXPECT_EQ(f.major, 7);
  EXPECT_EQ(f.minor, 2);
  EXPECT_EQ(f.micro, 22);
  EXPECT_FALSE(f.file_uri);
  EXPECT_FALSE(f.mapped_ram);
  EXPECT_EQ(ChooseSaveUri(f, "/c/k/state"), "exec:cat > '/c/k/state'");
}

TEST(MigrationFeaturesTest, NewerQemuUsesFileAndReportsMappedRam) {
  const json caps = json::parse(R"([{"state": false, "capability": "mapped-ram"}])");
  MigrationFeatures f = MigrationFeaturesFrom(Greeting(9, 1), caps);
  EXPECT_TRUE(f.file_uri);
  EXPECT_TRUE(f.mapped_ram);
  EXPECT_EQ(ChooseSaveUri(f, "/c/k/state"), "file:/c/k/state");
  EXPECT_TRUE(MigrationFeaturesFrom(Greeting(8, 2), json::array()).file_uri);
  EXPECT_FALSE(MigrationFeaturesFrom(Greeting(8, 1), json::array()).file_uri);
}

TEST(MigrationFeaturesTest, MissingFieldsLeaveDefaults) {
  MigrationFeatures f = MigrationFeaturesFrom(json::object(), json::object());
  EXPECT_EQ(f.major, 0);
  EXPECT_FALSE(f.file_uri);
  EXPECT_FALSE(f.mapped_ram);
}

}  // namespace
}  // namespace kiln::harness
