#include "publish/semver.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::publish {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

TEST(SemVerTest, ParsesValidVersions) {
  struct Row {
    const char* text;
    uint64_t major, minor, patch;
    size_t npre, nbuild;
  };
  constexpr Row kRows[] = {
      {"0.0.0", 0, 0, 0, 0, 0},
      {"1.2.3", 1, 2, 3, 0, 0},
      {"10.20.30", 10, 20, 30, 0, 0},
      {"1.0.0-rc.1", 1, 0, 0, 2, 0},
      {"1.0.0-alpha-beta.0", 1, 0, 0, 2, 0},
      {"1.0.0+build.5", 1, 0, 0, 0, 2},
      {"1.0.0-0.3.7+exp.sha.5114f85", 1, 0, 0, 3, 3},
      {"1.0.0+001", 1, 0, 0, 0, 1},  // leading zeros are fine in build metadata
      {"9223372036854775807.0.0", 9223372036854775807ull, 0, 0, 0, 0},
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.text);
    ASSERT_OK_AND_ASSIGN(SemVer v, SemVer::Parse(r.text));
    EXPECT_EQ(v.major, r.major);
    EXPECT_EQ(v.minor, r.minor);
    EXPECT_EQ(v.patch, r.patch);
    EXPECT_EQ(v.prerelease.size(), r.npre);
    EXPECT_EQ(v.build.size(), r.nbuild);
    EXPECT_EQ(v.ToString(), r.text);
  }
}

TEST(SemVerTest, RefusesBadVersionsWithClearErrors) {
  struct Row {
    const char* text;
    const char* why;
  };
  constexpr Row kRows[] = {
      {"", "empty"},
      {"1.2", "has 2 numeric components, needs 3"},
      {"1", "has 1 numeric component, needs 3"},
      {"v1.2.3", "leading \"v\""},
      {"v1.2.3.4", "leading \"v\""},
      {"1.2.3.4", "has 4 numeric components, needs 3"},
      {"01.2.3", "major \"01\" has a leading zero"},
      {"1.02.3", "minor \"02\" has a leading zero"},
      {"1.2.03", "patch \"03\" has a leading zero"},
      {"1..3", "minor is empty"},
      {"1.2.x", "patch \"x\" is not a decimal number"},
      {"-1.2.3", "must start with the major version number"},
      {"1.2.3-", "empty pre-release"},
      {"1.2.3+", "empty build metadata"},
      {"1.2.3-01", "numeric pre-release identifier \"01\" has a leading zero"},
      {"1.2.3-a..b", "empty pre-release identifier"},
      {"1.2.3-a_b", "has characters other than"},
      {"1.2.3+a..b", "empty build identifier"},
      {"1.2.3 ", "whitespace"},
      {"99999999999999999999.0.0", "too large"},
      {"9223372036854775808.0.0", "too large"},
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.text);
    EXPECT_THAT(SemVer::Parse(r.text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(HasSubstr(r.why), HasSubstr("strict semver"))));
  }
}

TEST(SemVerTest, PrecedenceFollowsSemverOrgExample) {
  // semver.org section 11: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta <
  // 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0 < 1.0.1 < 1.1.0 < 2.0.0 < 10.0.0.
  const char* kOrdered[] = {"1.0.0-alpha",  "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                            "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1",       "1.0.0",
                            "1.0.1",        "1.1.0",         "2.0.0",            "10.0.0"};
  for (size_t i = 0; i + 1 < std::size(kOrdered); ++i) {
    SCOPED_TRACE(std::string(kOrdered[i]) + " < " + kOrdered[i + 1]);
    ASSERT_OK_AND_ASSIGN(SemVer a, SemVer::Parse(kOrdered[i]));
    ASSERT_OK_AND_ASSIGN(SemVer b, SemVer::Parse(kOrdered[i + 1]));
    EXPECT_LT(a, b);
    EXPECT_GT(b, a);
    EXPECT_FALSE(a == b);
  }
}

TEST(SemVerTest, BuildMetadataIgnoredForPrecedence) {
  ASSERT_OK_AND_ASSIGN(SemVer a, SemVer::Parse("1.2.3+a"));
  ASSERT_OK_AND_ASSIGN(SemVer b, SemVer::Parse("1.2.3+b"));
  EXPECT_TRUE(a == b);
  EXPECT_EQ(a.MinorTag(), "1.2");
  EXPECT_FALSE(a.IsPrerelease());
}

// A tag cannot hold "+": Tag() writes build metadata after "_" (as Helm does), and ParseTag
// reads both spellings back; every other semver character is kept.
TEST(SemVerTest, TagMapsBuildMetadataAndParsesBack) {
  struct Row {
    const char* version;
    const char* tag;
  };
  constexpr Row kRows[] = {
      {"1.2.3", "1.2.3"},
      {"1.0.0-rc.1", "1.0.0-rc.1"},
      {"1.0.0+build.5", "1.0.0_build.5"},
      {"1.0.0-0.3.7+exp.sha.5114f85", "1.0.0-0.3.7_exp.sha.5114f85"},
      {"1.0.0-x-y+Z-9", "1.0.0-x-y_Z-9"},
  };
  for (const Row& r : kRows) {
    SCOPED_TRACE(r.version);
    ASSERT_OK_AND_ASSIGN(SemVer v, SemVer::Parse(r.version));
    EXPECT_EQ(v.Tag(), r.tag);
    ASSERT_OK_AND_ASSIGN(SemVer back, SemVer::ParseTag(r.tag));
    EXPECT_EQ(back.ToString(), r.version);
    ASSERT_OK_AND_ASSIGN(SemVer plus, SemVer::ParseTag(r.version));
    EXPECT_EQ(plus.ToString(), r.version);
  }
  // "_" only stands for "+": a second one, or one in the pre-release, is not semver.
  EXPECT_THAT(SemVer::ParseTag("1.0.0_a_b"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("build identifier")));
  EXPECT_THAT(SemVer::ParseTag("latest"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("major")));
}

}  // namespace
}  // namespace kiln::publish
