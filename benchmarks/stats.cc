#include "benchmarks/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kiln::bench {

Summary Summarize(const Samples& samples) {
  Summary s;
  s.n = samples.size();
  if (samples.empty()) return s;
  Samples sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  s.min = sorted.front();
  s.max = sorted.back();
  size_t mid = s.n / 2;
  s.median = (s.n % 2 == 1) ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2.0;
  size_t rank = static_cast<size_t>(std::ceil(0.9 * static_cast<double>(s.n)));
  s.p90 = sorted[std::max<size_t>(rank, 1) - 1];
  s.mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / static_cast<double>(s.n);
  return s;
}

double Ratio(double a, double b) { return b == 0 ? 0 : a / b; }

nlohmann::json Record(const std::string& name, const std::map<std::string, std::string>& dimensions,
                      const std::string& unit, const Samples& samples) {
  Summary s = Summarize(samples);
  nlohmann::json j;
  j["name"] = name;
  j["dimensions"] = dimensions;
  j["unit"] = unit;
  j["samples"] = samples;
  j["n"] = s.n;
  j["median"] = s.median;
  j["p90"] = s.p90;
  j["min"] = s.min;
  j["max"] = s.max;
  j["mean"] = s.mean;
  return j;
}

}  // namespace kiln::bench
