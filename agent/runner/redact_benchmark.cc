// File: agent/runner/redact_benchmark.cc
// redact_benchmark: micro benchmarks (benchmarks/micro/micro.h) of the log redactor on 1 MiB of
// realistic BuildKit plain progress output (interleaved steps, "#<step> <seconds> " prefixes,
// package-manager and compiler lines, hex digests, a base64 blob that is not the secret), fed
// in 64 KiB reads as runner.cc reads docker build's output, against a plain copy of the same
// bytes in the same run. bytes_out: bytes handed to the sink.
//
//   bazel run -c opt //agent/runner:redact_benchmark -- --benchmark_filter=redact
#include <cstdint>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "agent/runner/redact.h"
#include "benchmarks/micro/micro.h"

namespace kiln::agent::runner {
namespace {

constexpr size_t kLogBytes = 1u << 20;
constexpr size_t kReadSize = 64u << 10;

const std::string& Log() {
  static const std::string* log = [] {
    auto* s = new std::string;
    std::mt19937 rng(6);
    const char* kLines[] = {
        "Get:12 http://deb.debian.org/debian bookworm/main amd64 libssl3 amd64 3.0.11-1 [2016 kB]",
        "Setting up ca-certificates (20230311) ...",
        "gcc -O2 -Wall -c src/parser.c -o build/parser.o",
        "npm WARN deprecated inflight@1.0.6: This module is not supported, and leaks memory.",
        "writing image sha256:4f5e0a7a9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e done",
        "  Downloading https://files.pythonhosted.org/packages/requests-2.31.0-py3-none-any.whl (62 kB)",
        "[ 42%] Building CXX object CMakeFiles/app.dir/main.cc.o"};
    std::string blob(3000, '\0');
    for (char& c : blob) c = static_cast<char>(rng());
    const std::string b64 = absl::Base64Escape(blob);
    size_t b = 0;
    int t = 0;
    while (s->size() < kLogBytes) {
      const int step = 5 + static_cast<int>(rng() % 4);
      absl::StrAppend(s, "#", step, " ", t / 1000, ".", 100 + t % 900, " ");
      ++t;
      if (rng() % 8 == 0) {  // a line of base64 output (not the secret)
        s->append(b64, b, 76);
        b = (b + 76) % (b64.size() - 76);
      } else {
        s->append(kLines[rng() % 7]);
      }
      s->push_back('\n');
    }
    return s;
  }();
  return *log;
}

std::string Secret(size_t n) {
  std::mt19937 rng(static_cast<uint32_t>(n));
  std::string s = "ghp_";
  const char kAlpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  while (s.size() < n) s.push_back(kAlpha[rng() % 62]);
  return s;
}

absl::StatusOr<int64_t> RedactLog(const Redactor& r) {
  int64_t out = 0;
  LineRedactor lines(&r, [&](absl::string_view l) { out += static_cast<int64_t>(l.size()) + 1; });
  const std::string& log = Log();
  for (size_t i = 0; i < log.size(); i += kReadSize) {
    lines.Feed(absl::string_view(log).substr(i, kReadSize));
  }
  lines.Flush();
  return out;
}

KILN_MICRO("redact/copy/log:1MiB", []() -> absl::StatusOr<int64_t> {
  const std::string& log = Log();
  std::string copy;
  for (size_t i = 0; i < log.size(); i += kReadSize) {
    copy.append(log, i, kReadSize);
  }
  return static_cast<int64_t>(copy.size());
});

KILN_MICRO("redact/lines/log:1MiB,secrets:0", []() -> absl::StatusOr<int64_t> {
  static const Redactor* r = new Redactor({});
  return RedactLog(*r);
});

KILN_MICRO("redact/lines/log:1MiB,secret:124B", []() -> absl::StatusOr<int64_t> {
  static const Redactor* r = new Redactor({{"tok", Secret(124)}});
  return RedactLog(*r);
});

KILN_MICRO("redact/lines/log:1MiB,secret:64KiB", []() -> absl::StatusOr<int64_t> {
  static const Redactor* r = new Redactor({{"big", Secret(64 * 1024)}});
  return RedactLog(*r);
});

}  // namespace
}  // namespace kiln::agent::runner
