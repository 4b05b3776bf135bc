#!/usr/bin/env bash
# images/tool/cli_test.sh: kiln-image end to end (argv[1]: the binary).
set -euo pipefail
tool="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
t="${TEST_TMPDIR:-$(mktemp -d)}/cli"
rm -rf "$t" && mkdir -p "$t/src/tree/sub" "$t/a" "$t/b"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$tool" --help | grep -q '^  cpio ' || fail "--help does not list cpio"
"$tool" cpio --help | grep -q -- '--manifest' || fail "cpio --help"
set +e; "$tool" frobnicate 2>/dev/null; rc=$?; set -e
[[ $rc -eq 2 ]] || fail "unknown command: exit $rc, want 2"

printf 'init\n' >"$t/src/init"
printf 'mod\n' >"$t/src/tree/sub/m.ko"
cat >"$t/manifest.json" <<JSON
{"entries": [
  {"type": "file", "path": "init", "mode": "0755", "source": "$t/src/init"},
  {"type": "chardev", "path": "dev/console", "major": 5, "minor": 1},
  {"type": "symlink", "path": "bin/sh", "target": "/init"},
  {"type": "tree", "path": "lib", "source": "$t/src/tree"}
]}
JSON
(cd "$t/a" && umask 022 && "$tool" cpio --manifest "$t/manifest.json" --out "$t/one.cpio.gz" --gzip=true)
touch -d '2001-02-03 04:05:06' "$t/src/init" "$t/src/tree/sub/m.ko"
chmod 0600 "$t/src/tree/sub/m.ko"
sleep 1
(cd "$t/b" && umask 077 && "$tool" cpio --manifest "$t/manifest.json" --out "$t/two.cpio.gz" --gzip=true)
one="$(sha256sum <"$t/one.cpio.gz")"; two="$(sha256sum <"$t/two.cpio.gz")"
[[ "$one" == "$two" ]] || fail "same manifest, different bytes: $one vs $two"
"$tool" list --archive "$t/one.cpio.gz" >"$t/list"
grep -qP '^chardev\t0600\t0:0\t0\tdev/console 5:1$' "$t/list" || fail "no dev/console: $(cat "$t/list")"
grep -qP '^file\t0644\t0:0\t0\tlib/sub/m.ko 4$' "$t/list" || fail "tree file: $(cat "$t/list")"
SOURCE_DATE_EPOCH=1700000000 "$tool" cpio --manifest "$t/manifest.json" --out "$t/sde.cpio"
"$tool" list --archive "$t/sde.cpio" | grep -qP '\t1700000000\tinit ' || fail "SOURCE_DATE_EPOCH ignored"
# Flag spellings (absl's, plus kiln-image's `--gzip true|false`): the same archive.
"$tool" cpio --manifest="$t/manifest.json" --out="$t/eq.cpio.gz" --gzip
"$tool" cpio -manifest "$t/manifest.json" -out "$t/sp.cpio.gz" --gzip true
cmp -s "$t/eq.cpio.gz" "$t/sp.cpio.gz" && cmp -s "$t/eq.cpio.gz" "$t/two.cpio.gz" || fail "--gzip spellings differ"
"$tool" cpio --manifest "$t/manifest.json" --out "$t/f1.cpio" --gzip false
"$tool" cpio --manifest "$t/manifest.json" --out "$t/f2.cpio" --nogzip
cmp -s "$t/f1.cpio" "$t/f2.cpio" && ! cmp -s "$t/f1.cpio" "$t/eq.cpio.gz" || fail "--gzip false"
"$tool" tar --manifest "$t/manifest.json" --out "$t/x.tar" --format=ustar
"$tool" list --archive "$t/x.tar" | grep -q 'bin/sh -> /init' || fail "tar symlink"

# Hostile manifests: exit 2 (INVALID_ARGUMENT) or 1, with a message naming the problem.
expect_error() {  # expect_error <rc> <message> <json>
  printf '%s' "$3" >"$t/bad.json"
  set +e; "$tool" cpio --manifest "$t/bad.json" --out "$t/bad.cpio" 2>"$t/err"; rc=$?; set -e
  [[ $rc -eq $1 ]] || fail "exit $rc, want $1 for $3: $(cat "$t/err")"
  grep -q -- "$2" "$t/err" || fail "no '$2' in: $(cat "$t/err")"
}
expect_error 2 "absolute guest path" '{"entries": [{"type": "dir", "path": "/etc"}]}'
expect_error 2 '".." in guest path' '{"entries": [{"type": "dir", "path": "a/../../etc"}]}'
expect_error 1 "duplicate entry" '{"entries": [{"type": "dir", "path": "etc"}, {"type": "dir", "path": "etc"}]}'
expect_error 2 "not valid JSON" '{"entries": ['
expect_error 1 "No such file" '{"entries": [{"type": "file", "path": "x", "source": "/nonexistent/kiln"}]}'
set +e; "$tool" cpio --manifest "$t/manifest.json" 2>"$t/err"; rc=$?; set -e
[[ $rc -eq 2 ]] && grep -q "missing --out" "$t/err" || fail "missing --out: exit $rc $(cat "$t/err")"
set +e; "$tool" extract-vmlinux --bzimage "$t/src/init" --out "$t/vmlinux" 2>"$t/err"; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "too short" "$t/err" || fail "extract-vmlinux on junk: exit $rc $(cat "$t/err")"
# Usage errors exit 2 naming the problem: another subcommand's flag, an absl built-in, a bad
# value, a stray argument; `<command> --help` wins over them and exits 0.
usage_error() {  # usage_error <message> <args...>
  local want=$1; shift
  set +e; "$tool" "$@" >/dev/null 2>"$t/err"; rc=$?; set -e
  [[ $rc -eq 2 ]] && grep -qF -- "$want" "$t/err" || fail "$*: exit $rc, want 2 and '$want': $(cat "$t/err")"
}
usage_error 'unknown argument "--archive" (kiln-image cpio takes --manifest, --out, --gzip' \
  cpio --archive "$t/x.tar" --out "$t/o"
usage_error 'unknown argument "--format=pax"' cpio --manifest "$t/manifest.json" --out "$t/o" --format=pax
usage_error 'unknown argument "--flagfile=/dev/null"' list --archive "$t/x.tar" --flagfile=/dev/null
usage_error "Illegal value 'maybe'" cpio --manifest "$t/manifest.json" --out "$t/o" --gzip=maybe
usage_error 'unexpected argument "extra"' list --archive "$t/x.tar" extra
usage_error 'flag --out needs a value' cpio --manifest "$t/manifest.json" --out
"$tool" image-to-disk --bogus --help | grep -q -- '--device_dir=VALUE' || fail "image-to-disk --help"
echo "PASS"
