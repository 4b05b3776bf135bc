// File: benchmarks/results.h
// -----------------------------------------------------------------------------
//
// The results document of `bazel run //benchmarks` and the regression gate of
// `bazel run //benchmarks:compare`: pure data and pure functions (no I/O besides Load/Save).
//
// Document (README.md "JSON schema"): Google Benchmark's top level, extended:
//   {"context":    {..Google Benchmark's context.., "kiln": {cores, accel, vmm, kernel, ...}},
//    "benchmarks": [..Google Benchmark run entries of the micro suites, verbatim..],
//    "figures":    [Figure...],        // what the gate reads
//    "records":    [stats.h Record...]} // raw end-to-end samples with their dimensions
//
// A Figure is one number to watch, with the samples it was measured from:
//   {"name": "boot/cgroup_over_bare", "suite": "boot", "kind": "ratio", "unit": "x",
//    "gate": true, "samples": [2.1, 2.3, 2.2], "median": 2.2, "min": 2.1, "max": 2.3,
//    "peer": "boot/bare/wall", "note": "..."}
// Kinds: "count" (instructions, bytes: repeatable), "ratio" (a figure over its peer measured
// in the same run), "time" (absolute, informational: moves with host load). Lower is better
// for every kind. Only gate=true figures (counts and ratios) can fail a comparison.
//
// Thresholds (Compare): a gated figure fails when its median grew, relative to the
// baseline's, by more than
//   threshold = max(floor(kind), max(range(baseline), range(current)))
// where range(x) = (max - min) / median of that run's samples: the spread measured over
// repetitions, so a figure that was noisy in either run tolerates that much. floor: 1 % for
// counts (instruction counts move ~1 % between processes: ASLR changes hash-table probing), 2 % for ratios. A ratio with fewer than 2 samples in
// both runs has no measured spread: its verdict is "no-spread" and it does not fail.
//
// Example:
//   ASSIGN_OR_RETURN(nlohmann::json base, LoadDocument("benchmarks/baseline.json"));
//   ASSIGN_OR_RETURN(nlohmann::json cur, LoadDocument("current.json"));
//   Comparison c = Compare(base, cur);
//   std::cout << FormatComparison(c);
//   return c.regressions ? 1 : 0;
#ifndef KILN_BENCHMARKS_RESULTS_H_
#define KILN_BENCHMARKS_RESULTS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "benchmarks/stats.h"
#include "nlohmann/json.hpp"

namespace kiln::bench {

// kFloorCount, kFloorRatio: the smallest thresholds (relative growth) for counts and ratios.
inline constexpr double kFloorCount = 0.01;
inline constexpr double kFloorRatio = 0.02;

// Figure: one watched number (see the file comment).
struct Figure {
  std::string name;   // "<suite>/...", unique in a document
  std::string suite;  // "archive", "oci", "protocol", "boot", "publish", ...
  std::string kind;   // "count", "ratio" or "time"
  std::string unit;   // "instructions", "bytes", "x", "ms", "ns", ...
  bool gate = false;  // may fail a comparison (counts and ratios)
  Samples samples;
  std::string peer;   // ratios: the denominator figure; times: the peer it is compared with
  std::string note;
};

// FigureToJson(f) / FigureFromJson(j): the Figure's JSON object (with median/min/max added).
// FigureFromJson returns INVALID_ARGUMENT naming the missing or mistyped field.
nlohmann::json FigureToJson(const Figure& f);
absl::StatusOr<Figure> FigureFromJson(const nlohmann::json& j);

// PairRatios(num, den): element-wise num[i]/den[i] for i < min(sizes), skipping den[i] == 0.
// Used for ratios of alternated A/B samples (boot, publish), whose pairs share host load.
Samples PairRatios(const Samples& num, const Samples& den);

// RelativeRange(samples): (max - min) / median; 0 for fewer than 2 samples or median 0.
double RelativeRange(const Samples& samples);

// Verdict: the outcome for one figure.
enum class Verdict {
  kOk,        // within threshold
  kBetter,    // improved by more than the threshold (refresh the baseline)
  kWorse,     // grew by more than the threshold: a regression (gated figures only)
  kNoSpread,  // gated ratio without repetitions in either run: not judged
  kInfo,      // not gated (absolute times): shown, never fails
  kNew,       // in current only
  kMissing,   // in baseline only (e.g. filtered out, or a suite failed)
};

// VerdictName(v): "ok", "better", "WORSE", "no-spread", "info", "new", "missing".
const char* VerdictName(Verdict v);

// Row: one line of a comparison. change and threshold are relative (0.1 == +10 %).
struct Row {
  std::string name, kind, unit;
  bool gate = false;
  double baseline = 0, current = 0;  // medians
  double change = 0, threshold = 0;
  Verdict verdict = Verdict::kInfo;
};

// Comparison: rows in current's figure order, then figures missing from current.
struct Comparison {
  std::vector<Row> rows;
  int regressions = 0;  // rows with kWorse
};

// Threshold(kind, baseline, current): the relative growth allowed (file comment).
double Threshold(absl::string_view kind, const Samples& baseline, const Samples& current);

// CompareFigures(baseline, current): one Row (Threshold + verdict rules of the file comment).
Row CompareFigures(const Figure& baseline, const Figure& current);

// Compare(baseline, current): all figures of two documents. Figures that fail to parse are
// skipped (a document's figures are checked by ParseFigures when loaded).
Comparison Compare(const std::vector<Figure>& baseline, const std::vector<Figure>& current);

// ParseFigures(doc): the "figures" array of a results document. INVALID_ARGUMENT when it is
// missing or any entry is malformed (naming its index).
absl::StatusOr<std::vector<Figure>> ParseFigures(const nlohmann::json& doc);

// LoadDocument(path): a results document from a file. NOT_FOUND if it cannot be opened,
// INVALID_ARGUMENT if it is not JSON or has no "figures" array.
absl::StatusOr<nlohmann::json> LoadDocument(const std::string& path);

// FormatComparison(c): the table printed by compare (one line per row, then a summary line
// naming each regressed figure).
std::string FormatComparison(const Comparison& c);

// FormatFigures(figures): the table printed by the runner: median, min, max, n, unit.
std::string FormatFigures(const std::vector<Figure>& figures);

// GnuplotScript(baseline, current, png_path): a self-contained gnuplot script (inline data)
// that draws the end-to-end figures (suites other than the micro ones: kind "time" in ms and
// kind "ratio"), baseline vs current medians with min..max error bars, into `png_path`.
// Returns an empty string when there is nothing to draw. `baseline` may be empty.
std::string GnuplotScript(const std::vector<Figure>& baseline, const std::vector<Figure>& current,
                          const std::string& png_path);

}  // namespace kiln::bench

#endif  // KILN_BENCHMARKS_RESULTS_H_
