#!/bin/sh
# Builds agent/fuzz/redact_fuzzer.cc with clang's libFuzzer + ASan + UBSan against the system
# abseil, seeds its corpus via seed_driver.cc (which also runs its deterministic mutations),
# and runs it until `runs` executions or `seconds`, whichever comes first.
# Usage: agent/fuzz/run_redact_libfuzzer.sh [runs (default 1000000)] [seconds (default 900)]
#          [out dir]
# (Outside Bazel: the workspace's C++ toolchain is gcc.)
set -eu
runs=${1:-1000000}
secs=${2:-900}
out=${3:-/tmp/kiln-fuzz-redact}
root=$(cd "$(dirname "$0")/../.." && pwd)
a=$root/agent
srcs="$a/secret_forms.cc $a/runner/redact.cc"
absl="absl_strings absl_str_format absl_hash absl_raw_hash_set"
mkdir -p "$out/corpus"
flags="-std=c++20 -O1 -g -I$root $(pkg-config --cflags $absl)"
ldflags="$(pkg-config --libs $absl)"
clang++ $flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  "$a/fuzz/redact_fuzzer.cc" $srcs $ldflags -o "$out/redact_fuzzer"
clang++ $flags "$a/fuzz/seed_driver.cc" "$a/fuzz/redact_fuzzer.cc" $srcs $ldflags \
  -o "$out/seed_driver"
KILN_FUZZ_WRITE_CORPUS="$out/corpus" "$out/seed_driver"
cd "$out"
exec ./redact_fuzzer -runs="$runs" -max_total_time="$secs" -max_len=8192 -print_final_stats=1 \
  corpus
