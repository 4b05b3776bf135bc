// File: images/tool/args_test.cc
#include "images/tool/args.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::images {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ArgsTest, FlagsBothFormsRepeatedAndPositional) {
  ASSERT_OK_AND_ASSIGN(Args a, ParseArgs({"--out", "x", "--m=a", "pos", "--m", "b", "--", "--m"},
                                         {"out", "m"}));
  EXPECT_EQ(a.Get("out"), "x");
  EXPECT_THAT(a.GetAll("m"), ElementsAre("a", "b"));
  EXPECT_THAT(a.positional, ElementsAre("pos", "--m"));
  EXPECT_TRUE(a.Has("out"));
  EXPECT_FALSE(a.Has("zzz"));
  EXPECT_EQ(a.Get("zzz", "dflt"), "dflt");
}

TEST(ArgsTest, EmptyValueWithEquals) {
  ASSERT_OK_AND_ASSIGN(Args a, ParseArgs({"--out="}, {"out"}));
  EXPECT_EQ(a.Get("out", "x"), "");
}

TEST(ArgsTest, UnknownFlag) {
  EXPECT_THAT(ParseArgs({"--outt", "x"}, {"out"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown flag --outt")));
}

TEST(ArgsTest, MissingValue) {
  EXPECT_THAT(ParseArgs({"--out"}, {"out"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs a value")));
}

TEST(ArgsTest, Require) {
  ASSERT_OK_AND_ASSIGN(Args a, ParseArgs({}, {"out"}));
  EXPECT_THAT(a.Require("out"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--out")));
}

}  // namespace
}  // namespace kiln::images
