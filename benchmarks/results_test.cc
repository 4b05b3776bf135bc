#include "benchmarks/results.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/absl_ext/status_matchers.h"

namespace kiln::bench {
namespace {

using ::kiln_testing::StatusIs;
using ::testing::HasSubstr;

Figure Count(const std::string& name, Samples s) {
  return {.name = name, .suite = "archive", .kind = "count", .unit = "instructions", .gate = true,
          .samples = std::move(s)};
}
Figure Ratio_(const std::string& name, Samples s) {
  return {.name = name, .suite = "boot", .kind = "ratio", .unit = "x", .gate = true,
          .samples = std::move(s)};
}
Figure Time(const std::string& name, Samples s) {
  return {.name = name, .suite = "boot", .kind = "time", .unit = "ms", .samples = std::move(s)};
}

TEST(RelativeRange, SpreadOverMedian) {
  EXPECT_DOUBLE_EQ(RelativeRange({90, 100, 110}), 0.2);
  EXPECT_DOUBLE_EQ(RelativeRange({100}), 0);  // one sample: no spread measured
  EXPECT_DOUBLE_EQ(RelativeRange({}), 0);
  EXPECT_DOUBLE_EQ(RelativeRange({0, 0}), 0);
}

TEST(Threshold, FloorsAndMeasuredSpread) {
  EXPECT_DOUBLE_EQ(Threshold("count", {1000, 1000}, {1000, 1000}), kFloorCount);
  EXPECT_DOUBLE_EQ(Threshold("ratio", {2, 2}, {2, 2}), kFloorRatio);
  // The noisier run sets the threshold.
  EXPECT_DOUBLE_EQ(Threshold("ratio", {1.8, 2.0, 2.2}, {2.0, 2.0}), 0.2);
  EXPECT_DOUBLE_EQ(Threshold("ratio", {2.0, 2.0}, {1.5, 2.0, 2.5}), 0.5);
}

TEST(PairRatios, ElementWiseSkippingZeroDenominators) {
  EXPECT_EQ(PairRatios({4, 6, 9}, {2, 0, 3}), (Samples{2, 3}));
  EXPECT_EQ(PairRatios({4, 6}, {2}), (Samples{2}));
}

TEST(Compare, SameCommitPasses) {
  // Two runs of the same code: counts within callgrind's jitter, ratios within their spread.
  std::vector<Figure> a = {Count("archive/cpio/instructions", {22788518, 22788819}),
                           Ratio_("boot/cgroup_over_bare", {2.05, 2.31, 2.12}),
                           Time("boot/cgroup_vm/wall", {5200, 6100, 5600})};
  std::vector<Figure> b = {Count("archive/cpio/instructions", {22790001, 22789000}),
                           Ratio_("boot/cgroup_over_bare", {2.25, 2.18, 2.40}),
                           Time("boot/cgroup_vm/wall", {9000, 9500, 9900})};  // host got busy
  Comparison c = Compare(a, b);
  EXPECT_EQ(c.regressions, 0) << FormatComparison(c);
  ASSERT_EQ(c.rows.size(), 3u);
  EXPECT_EQ(c.rows[0].verdict, Verdict::kOk);
  EXPECT_EQ(c.rows[1].verdict, Verdict::kOk);
  EXPECT_EQ(c.rows[2].verdict, Verdict::kInfo);  // absolute times never fail
  EXPECT_THAT(FormatComparison(c), HasSubstr("no regression"));
}

TEST(Compare, SlowedCountFailsAndNamesTheFigure) {
  std::vector<Figure> a = {Count("archive/cpio/instructions", {22788518, 22788819}),
                           Count("oci/sha256/instructions", {5e7, 5e7})};
  std::vector<Figure> b = {Count("archive/cpio/instructions", {25000000, 25000100}),
                           Count("oci/sha256/instructions", {5e7, 5e7})};
  Comparison c = Compare(a, b);
  EXPECT_EQ(c.regressions, 1);
  EXPECT_EQ(c.rows[0].verdict, Verdict::kWorse);
  EXPECT_THAT(FormatComparison(c), HasSubstr("1 regression(s): archive/cpio/instructions"));
}

TEST(Compare, SlowedBootRatioFails) {
  // A 1 s sleep in the cgroup VM's boot (bare ~2.5 s): the ratio moves beyond its spread.
  std::vector<Figure> a = {Ratio_("boot/cgroup_over_bare", {2.05, 2.20, 2.12})};
  std::vector<Figure> b = {Ratio_("boot/cgroup_over_bare", {2.45, 2.60, 2.52})};
  Comparison c = Compare(a, b);
  EXPECT_EQ(c.regressions, 1);
  EXPECT_EQ(c.rows[0].verdict, Verdict::kWorse);
}

TEST(Compare, NoisyRatioToleratesItsSpread) {
  std::vector<Figure> a = {Ratio_("publish/kiln_over_skopeo", {0.6, 0.9, 0.75})};
  std::vector<Figure> b = {Ratio_("publish/kiln_over_skopeo", {0.8, 0.85, 0.9})};  // +13 %, range 40 %
  EXPECT_EQ(Compare(a, b).regressions, 0);
}

TEST(Compare, BetterNewMissingNoSpread) {
  std::vector<Figure> a = {Count("x/instructions", {100}), Ratio_("y/ratio", {2}),
                           Count("gone/instructions", {5})};
  std::vector<Figure> b = {Count("x/instructions", {50}), Ratio_("y/ratio", {4}),
                           Count("new/instructions", {5})};
  Comparison c = Compare(a, b);
  EXPECT_EQ(c.regressions, 0);
  ASSERT_EQ(c.rows.size(), 4u);
  EXPECT_EQ(c.rows[0].verdict, Verdict::kBetter);
  EXPECT_EQ(c.rows[1].verdict, Verdict::kNoSpread);  // one sample each: spread unknown
  EXPECT_EQ(c.rows[2].verdict, Verdict::kNew);
  EXPECT_EQ(c.rows[3].verdict, Verdict::kMissing);
}

TEST(Compare, CountGrowingFromZeroIsWorse) {
  Comparison c = Compare({Count("b/bytes_out", {0})}, {Count("b/bytes_out", {10})});
  EXPECT_EQ(c.regressions, 1);
  EXPECT_THAT(FormatComparison(c), HasSubstr("+inf"));
}

TEST(FigureJson, RoundTrip) {
  Figure f = Ratio_("boot/cgroup_over_bare", {2, 3});
  f.peer = "boot/bare/wall";
  nlohmann::json j = FigureToJson(f);
  EXPECT_EQ(j["median"], 2.5);
  ASSERT_OK_AND_ASSIGN(Figure back, FigureFromJson(j));
  EXPECT_EQ(back.name, f.name);
  EXPECT_EQ(back.samples, f.samples);
  EXPECT_EQ(back.peer, f.peer);
  EXPECT_TRUE(back.gate);
}

TEST(FigureJson, BadInputIsRejected) {
  EXPECT_THAT(FigureFromJson(nlohmann::json::array()), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  nlohmann::json j = FigureToJson(Count("a", {1}));
  j.erase("unit");
  EXPECT_THAT(FigureFromJson(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'unit'")));
  j = FigureToJson(Count("a", {1}));
  j["kind"] = "speed";
  EXPECT_THAT(FigureFromJson(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("speed")));
  j = FigureToJson(Count("a", {1}));
  j["samples"] = {1, "two"};
  EXPECT_THAT(FigureFromJson(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a number")));
  EXPECT_THAT(ParseFigures(nlohmann::json::object()), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  nlohmann::json doc = {{"figures", {FigureToJson(Count("a", {1})), 7}}};
  EXPECT_THAT(ParseFigures(doc), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("figures[1]")));
}

TEST(LoadDocument, Errors) {
  EXPECT_THAT(LoadDocument("/nonexistent/x.json"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST(GnuplotScript, EndToEndFiguresOnly) {
  std::vector<Figure> cur = {Count("archive/cpio/instructions", {1}),
                             Time("boot/cgroup_vm/wall", {5000, 6000}),
                             Ratio_("boot/cgroup_over_bare", {2.1, 2.3})};
  std::string s = GnuplotScript({}, cur, "/tmp/x.png");
  EXPECT_THAT(s, HasSubstr("set output '/tmp/x.png'"));
  EXPECT_THAT(s, HasSubstr("\"boot/cgroup_vm/wall\" 0 0 0 5.5 5 6"));  // seconds
  EXPECT_THAT(s, HasSubstr("\"boot/cgroup_over_bare\""));
  EXPECT_THAT(s, ::testing::Not(HasSubstr("archive/cpio")));
  EXPECT_EQ(GnuplotScript({}, {Count("a", {1})}, "/tmp/x.png"), "");
}

}  // namespace
}  // namespace kiln::bench
