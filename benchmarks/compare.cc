// compare: the regression gate. `bazel run //benchmarks:compare -- BASELINE.json CURRENT.json
// [--plot=FILE.png]` prints a table of every figure (baseline, current, change, allowed change,
// verdict) and exits 1 when a gated figure (a count or a ratio) grew by more than its
// threshold, which comes from the spread of its samples (results.h). Exit 2: not two
// documents, or an unreadable one. Flags are absl flags (`--help`); absl's own flag errors (an
// unknown flag) exit 1, so a gate never passes on a mistyped command line.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "benchmarks/results.h"

ABSL_FLAG(std::string, plot, "",
          "also draw the end-to-end figures of both documents to this PNG (gnuplot)");

namespace kiln::bench {
namespace {

std::string Resolve(const std::string& path) {
  const char* wd = std::getenv("BUILD_WORKING_DIRECTORY");  // set by `bazel run`
  if (path.empty() || path[0] == '/' || wd == nullptr) return path;
  return std::string(wd) + "/" + path;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage("compare BASELINE.json CURRENT.json [--plot=FILE.png]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> files;
  for (size_t i = 1; i < args.size(); ++i) files.push_back(Resolve(args[i]));
  const std::string plot = Resolve(absl::GetFlag(FLAGS_plot));
  if (files.size() != 2) {
    std::fprintf(stderr, "usage: compare BASELINE.json CURRENT.json [--plot=FILE.png]\n");
    return 2;
  }
  std::vector<std::vector<Figure>> figures;
  for (const std::string& f : files) {
    absl::StatusOr<nlohmann::json> doc = LoadDocument(f);
    absl::StatusOr<std::vector<Figure>> figs =
        doc.ok() ? ParseFigures(*doc) : absl::StatusOr<std::vector<Figure>>(doc.status());
    if (!figs.ok()) {
      std::fprintf(stderr, "compare: %s: %s\n", f.c_str(), figs.status().ToString().c_str());
      return 2;
    }
    figures.push_back(*std::move(figs));
  }
  Comparison c = Compare(figures[0], figures[1]);
  std::fputs(FormatComparison(c).c_str(), stdout);
  if (!plot.empty()) {
    std::string script = GnuplotScript(figures[0], figures[1], plot);
    std::string gp = plot + ".gp";
    std::ofstream(gp) << script;
    std::string cmd = "gnuplot '" + gp + "'";
    if (script.empty() || std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "compare: no plot written (no end-to-end figures, or gnuplot failed)\n");
    } else {
      std::printf("compare: plot %s\n", plot.c_str());
    }
  }
  return c.regressions > 0 ? 1 : 0;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) { return kiln::bench::Main(argc, argv); }
