// File: benchmarks/micro/micro.h
// -----------------------------------------------------------------------------
//
// kiln's micro benchmark registry: one operation is registered once and becomes both
//   - a Google Benchmark (timed; reports the `bytes_out` counter and bytes/s), and
//   - a count case: run exactly once between callgrind client requests, so that
//     `valgrind --tool=callgrind --collect-atstart=no` measures its instructions (Ir), a count
//     that does not move with host load. //benchmarks:benchmarks reads those dumps.
// MicroMain() is the main() of every micro benchmark binary (see micro_main.cc).
//
// Example (images/tool/archive_benchmark.cc):
//
//   KILN_MICRO("archive/cpio_newc/files:256", [] () -> absl::StatusOr<int64_t> {
//     ASSIGN_OR_RETURN(std::string bytes, WriteArchive(Plan(), {}, Reader()));
//     return static_cast<int64_t>(bytes.size());       // the repeatable bytes_out count
//   });
//
// Binary flags (besides Google Benchmark's own --benchmark_*):
//   --kiln_counts           run each count case instead of the timed benchmarks; prints one
//                           JSON line per case: {"name":..,"bytes_out":..,"repetition":..}
//   --kiln_filter=RE        count cases whose name matches RE (ECMAScript, search)
//   --kiln_repetitions=N    count-case repetitions (default 1)
//   --kiln_slowdown=RE      test flag: operations matching RE run twice per call (a
//                           deliberate regression for compare's tests); empty: none
#ifndef KILN_BENCHMARKS_MICRO_MICRO_H_
#define KILN_BENCHMARKS_MICRO_MICRO_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace kiln::bench {

// MicroOp: one operation under measurement. Returns the bytes it produced (deterministic for
// a given input: the `bytes_out` count), or the operation's error, which aborts the run.
// Build fixtures lazily in a function-local static: count mode calls the op once untimed
// (warm-up) before measuring, so fixture construction never enters a count.
using MicroOp = std::function<absl::StatusOr<int64_t>()>;

// RegisterMicro(name, op): registers `op` under `name` ("<suite>/<operation>/<params>", e.g.
// "archive/cpio_newc/files:256"). Returns true (for static registration). REQUIRES: called
// before MicroMain(); names unique.
bool RegisterMicro(const std::string& name, MicroOp op);

// MicroMain(argc, argv): the binary's main: count mode when --kiln_counts is given, else
// Google Benchmark (benchmark::Initialize + RunSpecifiedBenchmarks). Returns the exit code:
// 0, 1 when an operation failed (its status printed to stderr), 2 for bad flags.
int MicroMain(int argc, char** argv);

}  // namespace kiln::bench

#define KILN_MICRO_CONCAT_INNER(a, b) a##b
#define KILN_MICRO_CONCAT(a, b) KILN_MICRO_CONCAT_INNER(a, b)
// KILN_MICRO(name, op): RegisterMicro at static-initialization time.
#define KILN_MICRO(name, ...)                                               \
  [[maybe_unused]] static const bool KILN_MICRO_CONCAT(kiln_micro_, __LINE__) = \
      ::kiln::bench::RegisterMicro(name, __VA_ARGS__)

#endif  // KILN_BENCHMARKS_MICRO_MICRO_H_
