#include "benchmarks/results.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kiln::bench {

nlohmann::json FigureToJson(const Figure& f) {
  Summary s = Summarize(f.samples);
  nlohmann::json j;
  j["name"] = f.name;
  j["suite"] = f.suite;
  j["kind"] = f.kind;
  j["unit"] = f.unit;
  j["gate"] = f.gate;
  j["samples"] = f.samples;
  j["n"] = s.n;
  j["median"] = s.median;
  j["min"] = s.min;
  j["max"] = s.max;
  j["relative_range"] = RelativeRange(f.samples);
  if (!f.peer.empty()) j["peer"] = f.peer;
  if (!f.note.empty()) j["note"] = f.note;
  return j;
}

absl::StatusOr<Figure> FigureFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("figure is not a JSON object");
  Figure f;
  for (auto [key, out] : {std::pair{"name", &f.name}, {"suite", &f.suite}, {"kind", &f.kind},
                          {"unit", &f.unit}}) {
    if (!j.contains(key) || !j[key].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("figure field '", key, "' missing or not a string"));
    }
    *out = j[key].get<std::string>();
  }
  if (f.kind != "count" && f.kind != "ratio" && f.kind != "time") {
    return absl::InvalidArgumentError(
        absl::StrCat("figure ", f.name, ": kind '", f.kind, "' is not count, ratio or time"));
  }
  if (!j.contains("samples") || !j["samples"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat("figure ", f.name, ": 'samples' missing or not an array"));
  }
  for (const auto& v : j["samples"]) {
    if (!v.is_number()) {
      return absl::InvalidArgumentError(absl::StrCat("figure ", f.name, ": a sample is not a number"));
    }
    f.samples.push_back(v.get<double>());
  }
  f.gate = j.value("gate", false);
  f.peer = j.value("peer", "");
  f.note = j.value("note", "");
  return f;
}

Samples PairRatios(const Samples& num, const Samples& den) {
  Samples out;
  for (size_t i = 0; i < std::min(num.size(), den.size()); ++i) {
    if (den[i] != 0) out.push_back(num[i] / den[i]);
  }
  return out;
}

double RelativeRange(const Samples& samples) {
  if (samples.size() < 2) return 0;
  Summary s = Summarize(samples);
  return s.median == 0 ? 0 : (s.max - s.min) / std::fabs(s.median);
}

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "ok";
    case Verdict::kBetter: return "better";
    case Verdict::kWorse: return "WORSE";
    case Verdict::kNoSpread: return "no-spread";
    case Verdict::kInfo: return "info";
    case Verdict::kNew: return "new";
    case Verdict::kMissing: return "missing";
  }
  return "?";
}

double Threshold(absl::string_view kind, const Samples& baseline, const Samples& current) {
  double floor = kind == "count" ? kFloorCount : kFloorRatio;
  return std::max({floor, RelativeRange(baseline), RelativeRange(current)});
}

Row CompareFigures(const Figure& baseline, const Figure& current) {
  Row r;
  r.name = current.name;
  r.kind = current.kind;
  r.unit = current.unit;
  r.gate = current.gate && baseline.gate;
  r.baseline = Summarize(baseline.samples).median;
  r.current = Summarize(current.samples).median;
  if (r.baseline != 0) {
    r.change = (r.current - r.baseline) / std::fabs(r.baseline);
  } else {
    r.change = r.current == 0 ? 0 : INFINITY;
  }
  r.threshold = Threshold(current.kind, baseline.samples, current.samples);
  if (!r.gate) {
    r.verdict = Verdict::kInfo;
  } else if (current.kind == "ratio" && baseline.samples.size() < 2 && current.samples.size() < 2) {
    r.verdict = Verdict::kNoSpread;
  } else if (r.change > r.threshold) {
    r.verdict = Verdict::kWorse;
  } else if (r.change < -r.threshold) {
    r.verdict = Verdict::kBetter;
  } else {
    r.verdict = Verdict::kOk;
  }
  return r;
}

Comparison Compare(const std::vector<Figure>& baseline, const std::vector<Figure>& current) {
  std::map<std::string, const Figure*> base;
  for (const Figure& f : baseline) base[f.name] = &f;
  Comparison c;
  std::map<std::string, bool> seen;
  for (const Figure& f : current) {
    seen[f.name] = true;
    auto it = base.find(f.name);
    if (it == base.end()) {
      Row r{.name = f.name, .kind = f.kind, .unit = f.unit, .gate = f.gate};
      r.current = Summarize(f.samples).median;
      r.verdict = Verdict::kNew;
      c.rows.push_back(r);
      continue;
    }
    c.rows.push_back(CompareFigures(*it->second, f));
    if (c.rows.back().verdict == Verdict::kWorse) ++c.regressions;
  }
  for (const Figure& f : baseline) {
    if (seen.count(f.name)) continue;
    Row r{.name = f.name, .kind = f.kind, .unit = f.unit, .gate = f.gate};
    r.baseline = Summarize(f.samples).median;
    r.verdict = Verdict::kMissing;
    c.rows.push_back(r);
  }
  return c;
}

absl::StatusOr<std::vector<Figure>> ParseFigures(const nlohmann::json& doc) {
  if (!doc.is_object() || !doc.contains("figures") || !doc["figures"].is_array()) {
    return absl::InvalidArgumentError("results document has no \"figures\" array");
  }
  std::vector<Figure> out;
  for (size_t i = 0; i < doc["figures"].size(); ++i) {
    absl::StatusOr<Figure> f = FigureFromJson(doc["figures"][i]);
    if (!f.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("figures[", i, "]: ", f.status().message()));
    }
    out.push_back(*std::move(f));
  }
  return out;
}

absl::StatusOr<nlohmann::json> LoadDocument(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  nlohmann::json doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not JSON"));
  if (!doc.is_object() || !doc.contains("figures") || !doc["figures"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no \"figures\" array (not a kiln results document)"));
  }
  return doc;
}

namespace {

std::string Num(double v) {
  if (std::isinf(v)) return "inf";
  double a = std::fabs(v);
  if (a >= 1e9) return absl::StrFormat("%.4gG", v / 1e9);
  if (a >= 1e6) return absl::StrFormat("%.4gM", v / 1e6);
  if (a >= 1e4) return absl::StrFormat("%.4gk", v / 1e3);
  return absl::StrFormat("%.4g", v);
}

std::string Pct(double v) {
  if (std::isinf(v)) return "+inf";
  return absl::StrFormat("%+.1f%%", v * 100);
}

}  // namespace

std::string FormatComparison(const Comparison& c) {
  std::string out = absl::StrFormat("%-52s %-6s %-12s %10s %10s %8s %8s  %s\n", "figure", "kind",
                                    "unit", "baseline", "current", "change", "allowed", "verdict");
  std::vector<std::string> worse;
  for (const Row& r : c.rows) {
    bool both = r.verdict != Verdict::kNew && r.verdict != Verdict::kMissing;
    absl::StrAppend(
        &out, absl::StrFormat("%-52s %-6s %-12s %10s %10s %8s %8s  %s\n", r.name, r.kind, r.unit,
                              r.verdict == Verdict::kNew ? "-" : Num(r.baseline),
                              r.verdict == Verdict::kMissing ? "-" : Num(r.current),
                              both ? Pct(r.change) : "", both && r.gate ? absl::StrFormat("%.1f%%", r.threshold * 100) : "",
                              VerdictName(r.verdict)));
    if (r.verdict == Verdict::kWorse) worse.push_back(r.name);
  }
  if (worse.empty()) {
    absl::StrAppend(&out, "compare: no regression (", c.rows.size(), " figures)\n");
  } else {
    absl::StrAppend(&out, "compare: ", worse.size(), " regression(s): ", absl::StrJoin(worse, ", "), "\n");
  }
  return out;
}

std::string FormatFigures(const std::vector<Figure>& figures) {
  std::string out = absl::StrFormat("%-52s %-6s %-12s %10s %10s %10s %4s %7s\n", "figure", "kind",
                                    "unit", "median", "min", "max", "n", "range");
  for (const Figure& f : figures) {
    Summary s = Summarize(f.samples);
    absl::StrAppend(&out, absl::StrFormat("%-52s %-6s %-12s %10s %10s %10s %4d %6.1f%%%s\n", f.name,
                                          f.kind, f.unit, Num(s.median), Num(s.min), Num(s.max),
                                          s.n, RelativeRange(f.samples) * 100, f.gate ? " gate" : ""));
  }
  return out;
}

namespace {

bool IsEndToEnd(const Figure& f) {
  return (f.kind == "time" && (f.unit == "ms" || f.unit == "s")) || (f.kind == "ratio");
}

// Block(figures, base, pick): gnuplot inline data lines "label base med min max cur med min max".
std::string Block(const std::vector<Figure>& current, const std::map<std::string, const Figure*>& base,
                  bool ratios) {
  std::string out;
  for (const Figure& f : current) {
    if (!IsEndToEnd(f) || (f.kind == "ratio") != ratios) continue;
    double scale = (!ratios && f.unit == "ms") ? 1e-3 : 1.0;  // seconds on the plot
    Summary c = Summarize(f.samples);
    Summary b;
    auto it = base.find(f.name);
    if (it != base.end()) b = Summarize(it->second->samples);
    absl::StrAppend(&out, absl::StrFormat("\"%s\" %g %g %g %g %g %g\n", f.name, b.median * scale,
                                          b.min * scale, b.max * scale, c.median * scale,
                                          c.min * scale, c.max * scale));
  }
  return out;
}

}  // namespace

std::string GnuplotScript(const std::vector<Figure>& baseline, const std::vector<Figure>& current,
                          const std::string& png_path) {
  std::map<std::string, const Figure*> base;
  for (const Figure& f : baseline) base[f.name] = &f;
  std::string times = Block(current, base, false), ratios = Block(current, base, true);
  if (times.empty() && ratios.empty()) return "";
  std::string s;
  absl::StrAppend(&s, "set terminal pngcairo size 1200,900 noenhanced font ',10'\n",
                  "set output '", png_path, "'\n",
                  "set style data histogram\nset style histogram errorbars gap 1 lw 1\n",
                  "set style fill solid 0.6 border -1\nset grid ytics\nset key top left\n",
                  "set xtics rotate by -25 left\nset yrange [0:*]\nset bmargin 8\n",
                  "set multiplot layout 2,1 title 'kiln end-to-end benchmarks: baseline vs current "
                  "(median, min..max)'\n");
  auto panel = [&](const std::string& data, const std::string& title, const std::string& ylabel) {
    if (data.empty()) return;
    absl::StrAppend(&s, "$", title == "times" ? "T" : "R", " << EOD\n", data, "EOD\n",
                    "set title '", title == "times" ? "end-to-end phases (wall time)" : "ratios to the peer measured in the same run", "'\n",
                    "set ylabel '", ylabel, "'\n",
                    "plot $", title == "times" ? "T" : "R",
                    " using 2:3:4:xtic(1) title 'baseline' lc rgb '#9e9e9e', '' using 5:6:7 title "
                    "'current' lc rgb '#1565c0'\n");
  };
  panel(times, "times", "seconds");
  panel(ratios, "ratios", "x (lower is better)");
  absl::StrAppend(&s, "unset multiplot\n");
  return s;
}

}  // namespace kiln::bench
