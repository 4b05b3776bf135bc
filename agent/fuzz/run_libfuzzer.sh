#!/bin/sh
# Builds one of the agent's libFuzzer targets (agent/fuzz/<target>.cc) with clang's libFuzzer
# + ASan + UBSan against the system abseil/libarchive, seeds its corpus from the target's
# KilnFuzzSeeds() (via seed_driver.cc, which also runs its deterministic mutations first),
# and runs it until `runs` executions or `seconds`, whichever comes first.
# Usage: agent/fuzz/run_libfuzzer.sh <session_fuzzer|context_tar_fuzzer|dockerfile_fuzzer|
#          chunked_fuzzer> [runs (default 1000000)] [seconds (default 600)] [out dir]
# (Outside Bazel: the workspace's C++ toolchain is gcc.) libFuzzer prints its stats at the end
# (stat::number_of_executed_units, corpus size in the last "#N DONE cov: ... corp: X/Yb" line).
set -eu
target=$1
runs=${2:-1000000}
secs=${3:-600}
out=${4:-/tmp/kiln-fuzz-$target}
root=$(cd "$(dirname "$0")/../.." && pwd)
a=$root/agent
proto="$a/protocol/crc32c.cc $a/protocol/frame.cc $a/protocol/messages.cc $a/protocol/stream.cc \
       $a/protocol/text.cc"
absl="absl_status absl_statusor absl_strings absl_str_format absl_time"
libs=""
case $target in
  session_fuzzer)
    srcs="$proto $a/server.cc $a/health.cc $a/work_dir.cc $a/connection.cc $a/transport.cc \
          $a/runner/process.cc" ;;
  context_tar_fuzzer)
    srcs="$a/runner/context_tar.cc"; libs="-larchive" ;;
  dockerfile_fuzzer)
    srcs="$a/runner/dockerfile.cc $a/runner/spec.cc" ;;
  chunked_fuzzer)
    srcs="$a/runner/unix_http.cc" ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
mkdir -p "$out/corpus"
flags="-std=c++20 -O1 -g -I$root $(pkg-config --cflags $absl)"
ldflags="$(pkg-config --libs $absl) $libs"
clang++ $flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  "$a/fuzz/$target.cc" $srcs $ldflags -o "$out/$target"
clang++ $flags "$a/fuzz/seed_driver.cc" "$a/fuzz/$target.cc" $srcs $ldflags -o "$out/seed_driver"
KILN_FUZZ_WRITE_CORPUS="$out/corpus" "$out/seed_driver"
cd "$out"
exec "./$target" -runs="$runs" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 \
  corpus
