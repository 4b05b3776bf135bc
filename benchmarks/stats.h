// File: benchmarks/stats.h
// -----------------------------------------------------------------------------
//
// Samples of one end-to-end measurement and their summary (median, p90, min, max), plus the
// JSON record every kiln benchmark writes: the benchmark's name, its dimensions (what was
// measured where: VMM, accel, machine, kernel, memory...), the raw samples and the summary.
// Baselines and the regression gate read these records, so keep the shape stable.
//
//   Samples boot;
//   boot.Add(2310.5);  // ms
//   Summary s = Summarize(boot);            // s.median == 2310.5
//   nlohmann::json j = Record("boot.cgroup_vm", {{"accel", "tcg"}}, "ms", boot);
#ifndef KILN_BENCHMARKS_STATS_H_
#define KILN_BENCHMARKS_STATS_H_

#include <map>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace kiln::bench {

// Samples: raw values of one metric, in the order measured.
using Samples = std::vector<double>;

// Summary: order statistics of Samples. All zero for no samples.
struct Summary {
  size_t n = 0;
  double min = 0, median = 0, p90 = 0, max = 0, mean = 0;
};

// Summarize(samples): median is the middle value (mean of the two middle ones for even n);
// p90 the nearest-rank 90th percentile.
Summary Summarize(const Samples& samples);

// Ratio(a, b): a / b, or 0 when b is 0.
double Ratio(double a, double b);

// Record(name, dimensions, unit, samples): the JSON record
//   {"name":..., "dimensions":{...}, "unit":..., "samples":[...], "n":..,
//    "median":.., "p90":.., "min":.., "max":.., "mean":..}
nlohmann::json Record(const std::string& name, const std::map<std::string, std::string>& dimensions,
                      const std::string& unit, const Samples& samples);

}  // namespace kiln::bench

#endif  // KILN_BENCHMARKS_STATS_H_
