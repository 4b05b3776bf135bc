#!/bin/sh
# Builds protocol_fuzzer.cc with clang's libFuzzer + ASan + UBSan against the system abseil
# and runs it. Usage: agent/protocol/fuzz/run_libfuzzer.sh [seconds (default 60)] [out dir]
# (Outside Bazel: the workspace's C++ toolchain is gcc.)
set -eu
secs=${1:-60}
out=${2:-/tmp/kiln-protocol-fuzz}
root=$(cd "$(dirname "$0")/../../.." && pwd)
mkdir -p "$out/corpus"
srcs="$root/agent/protocol/fuzz/protocol_fuzzer.cc $root/agent/protocol/crc32c.cc \
      $root/agent/protocol/frame.cc $root/agent/protocol/messages.cc \
      $root/agent/protocol/stream.cc $root/agent/protocol/text.cc"
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root" $srcs $(pkg-config --cflags --libs absl_status absl_statusor absl_strings absl_str_format) \
  -o "$out/protocol_fuzzer"
# Seed corpus: a valid frame of every message, raw and structured, written by the
# deterministic driver (which also runs its own 60k mutations first).
clang++ -std=c++20 -O1 -I"$root" "$root/agent/protocol/fuzz/fuzz_driver.cc" $srcs \
  $(pkg-config --cflags --libs absl_status absl_statusor absl_strings absl_str_format) \
  -o "$out/fuzz_driver"
KILN_FUZZ_WRITE_CORPUS="$out/corpus" "$out/fuzz_driver"
exec "$out/protocol_fuzzer" -max_total_time="$secs" -max_len=8192 "$out/corpus"
