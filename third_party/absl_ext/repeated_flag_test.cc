// repeated_flag_test: ParseCommandLineWithRepeated through the real absl parser: every
// occurrence kept in order, commas not split, `--f value` and `--f=value` alike, other flags
// and positional arguments as absl parses them, a repeated flag not given keeps its default.
#include "third_party/absl_ext/repeated_flag.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(std::vector<std::string>, item, {}, "an item (repeatable)");
ABSL_FLAG(std::vector<std::string>, unused, {"kept"}, "never given");
ABSL_FLAG(std::string, single, "", "a plain flag");

namespace kiln {
namespace {

using ::testing::ElementsAre;

TEST(RepeatedFlagTest, KeepsEveryOccurrenceInOrderWithoutSplittingCommas) {
  std::vector<std::string> args = {"prog",      "--item=id=a,src=f", "--single", "x",
                                   "--item",    "second",            "pos",      "-item=",
                                   "--item=last", "--",              "--item=after"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  std::vector<char*> rest =
      ParseCommandLineWithRepeated(static_cast<int>(argv.size()), argv.data(),
                                   {&FLAGS_item, &FLAGS_unused});
  EXPECT_THAT(absl::GetFlag(FLAGS_item), ElementsAre("id=a,src=f", "second", "", "last"));
  EXPECT_EQ(absl::GetFlag(FLAGS_single), "x");
  EXPECT_THAT(absl::GetFlag(FLAGS_unused), ElementsAre("kept"));
  ASSERT_EQ(rest.size(), 3u);
  EXPECT_STREQ(rest[1], "pos");
  EXPECT_STREQ(rest[2], "--item=after");
}

}  // namespace
}  // namespace kiln
