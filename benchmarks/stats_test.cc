#include "benchmarks/stats.h"

#include "gtest/gtest.h"

namespace kiln::bench {
namespace {

TEST(Summarize, OddEvenAndEmpty) {
  Summary odd = Summarize({5, 1, 3});
  EXPECT_EQ(odd.n, 3u);
  EXPECT_DOUBLE_EQ(odd.median, 3);
  EXPECT_DOUBLE_EQ(odd.min, 1);
  EXPECT_DOUBLE_EQ(odd.max, 5);
  EXPECT_DOUBLE_EQ(odd.mean, 3);
  EXPECT_DOUBLE_EQ(Summarize({4, 1, 3, 2}).median, 2.5);
  Summary empty = Summarize({});
  EXPECT_EQ(empty.n, 0u);
  EXPECT_DOUBLE_EQ(empty.median, 0);
}

TEST(Summarize, P90IsNearestRank) {
  Samples s;
  for (int i = 1; i <= 10; ++i) s.push_back(i);
  EXPECT_DOUBLE_EQ(Summarize(s).p90, 9);
  EXPECT_DOUBLE_EQ(Summarize({7}).p90, 7);
}

TEST(Record, HasDimensionsSamplesAndSummary) {
  nlohmann::json j = Record("boot.bare", {{"accel", "tcg"}}, "ms", {2, 4, 6});
  EXPECT_EQ(j["name"], "boot.bare");
  EXPECT_EQ(j["dimensions"]["accel"], "tcg");
  EXPECT_EQ(j["samples"].size(), 3u);
  EXPECT_DOUBLE_EQ(j["median"].get<double>(), 4);
  EXPECT_DOUBLE_EQ(Ratio(6, 3), 2);
  EXPECT_DOUBLE_EQ(Ratio(6, 0), 0);
}

}  // namespace
}  // namespace kiln::bench
