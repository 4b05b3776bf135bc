#include "benchmarks/micro/micro.h"

#include <benchmark/benchmark.h>
#include <valgrind/callgrind.h>

#include <cstdio>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"

namespace kiln::bench {
namespace {

struct MicroCase {
  std::string name;
  MicroOp op;
};

std::vector<MicroCase>& Registry() {
  static auto* cases = new std::vector<MicroCase>;
  return *cases;
}

// Slowdown: operations whose name matches it run twice (set from --kiln_slowdown).
std::regex* g_slowdown = nullptr;

bool Slowed(const std::string& name) {
  return g_slowdown != nullptr && std::regex_search(name, *g_slowdown);
}

absl::StatusOr<int64_t> RunOp(const MicroCase& c, bool slowed) {
  absl::StatusOr<int64_t> r = c.op();
  if (slowed && r.ok()) r = c.op();
  return r;
}

void RunTimed(benchmark::State& state, const MicroCase* c) {
  const bool slowed = Slowed(c->name);
  int64_t bytes = 0;
  for (auto _ : state) {
    absl::StatusOr<int64_t> r = RunOp(*c, slowed);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
    // No benchmark::DoNotOptimize(bytes): 1.7.1's "+m,r" asm constraint makes GCC -O2 emit
    // wrong code here (bytes_out read back as garbage). The op sits behind std::function and
    // has side effects (allocations), so it is not optimized away.
    bytes = *r;
  }
  if (bytes > 0) {  // a zero counter makes Google Benchmark print a NaN coefficient of variation
    state.counters["bytes_out"] = static_cast<double>(bytes);
    state.SetBytesProcessed(state.iterations() * bytes);
  }
}

// RunCounts: each selected case once untimed (warm-up: fixtures, lazy library init), then
// `repetitions` times inside callgrind's collection window, dumping after each.
int RunCounts(const std::regex& filter, int repetitions) {
  std::vector<const MicroCase*> selected;
  for (const MicroCase& c : Registry()) {
    if (std::regex_search(c.name, filter)) selected.push_back(&c);
  }
  for (const MicroCase* c : selected) {
    absl::StatusOr<int64_t> r = RunOp(*c, Slowed(c->name));
    if (!r.ok()) {
      std::fprintf(stderr, "%s: %s\n", c->name.c_str(), r.status().ToString().c_str());
      return 1;
    }
  }
  for (int rep = 0; rep < repetitions; ++rep) {
    for (const MicroCase* c : selected) {
      const bool slowed = Slowed(c->name);
      CALLGRIND_TOGGLE_COLLECT;
      absl::StatusOr<int64_t> r = RunOp(*c, slowed);
      CALLGRIND_TOGGLE_COLLECT;
      std::string tag = absl::StrCat("kiln-count ", c->name, " rep ", rep);
      CALLGRIND_DUMP_STATS_AT(tag.c_str());
      if (!r.ok()) {
        std::fprintf(stderr, "%s: %s\n", c->name.c_str(), r.status().ToString().c_str());
        return 1;
      }
      std::printf("{\"name\":\"%s\",\"bytes_out\":%lld,\"repetition\":%d,\"under_valgrind\":%s}\n",
                  c->name.c_str(), static_cast<long long>(*r), rep,
                  RUNNING_ON_VALGRIND ? "true" : "false");
    }
  }
  return 0;
}

}  // namespace

bool RegisterMicro(const std::string& name, MicroOp op) {
  Registry().push_back({name, std::move(op)});
  return true;
}

int MicroMain(int argc, char** argv) {
  bool counts = false;
  std::string filter = ".*", slowdown;
  int repetitions = 1;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (a == "--kiln_counts") {
      counts = true;
    } else if (absl::ConsumePrefix(&a, "--kiln_filter=")) {
      filter = std::string(a);
    } else if (absl::ConsumePrefix(&a, "--kiln_slowdown=")) {
      slowdown = std::string(a);
    } else if (absl::ConsumePrefix(&a, "--kiln_repetitions=")) {
      if (!absl::SimpleAtoi(a, &repetitions) || repetitions < 1) {
        std::fprintf(stderr, "--kiln_repetitions: want an integer >= 1, got '%s'\n", argv[i]);
        return 2;
      }
    } else if (absl::StartsWith(a, "--kiln_")) {
      std::fprintf(stderr, "unknown flag %s (see benchmarks/micro/micro.h)\n", argv[i]);
      return 2;
    } else {
      rest.push_back(argv[i]);
    }
  }
  std::regex filter_re, slowdown_re;
  try {
    filter_re = std::regex(filter);
    if (!slowdown.empty()) {
      slowdown_re = std::regex(slowdown);
      g_slowdown = &slowdown_re;
    }
  } catch (const std::regex_error& e) {
    std::fprintf(stderr, "bad regular expression: %s\n", e.what());
    return 2;
  }
  if (counts) return RunCounts(filter_re, repetitions);

  for (const MicroCase& c : Registry()) {
    benchmark::RegisterBenchmark(c.name.c_str(), RunTimed, &c);
  }
  int n = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 2;
  size_t ran = benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return ran > 0 ? 0 : 1;
}

}  // namespace kiln::bench
