#!/usr/bin/env bash
# kiln_build_cli_test: the kiln-build binary's flags (absl), before any daemon starts: a bad
# --builder_mode, --network, --build_arg or --secret and a stray argument exit 2 naming the
# problem; an unknown flag is refused and named; --help lists the flags; --make_busybox_image
# writes a docker-archive (when /bin/busybox exists). Args: the kiln-build binary.
set -uo pipefail
bin="$1"
t="$TEST_TMPDIR"
fail=0
expect() {  # expect RC SUBSTRING ARGS...
  local want_rc="$1" want="$2"; shift 2
  local out rc
  out=$("$bin" "$@" 2>&1); rc=$?
  if [[ $rc -ne $want_rc || "$out" != *"$want"* ]]; then
    echo "FAIL: kiln-build $*: exit $rc (want $want_rc), output: $out"; fail=1
  fi
}
expect 2 '--builder_mode must be rootless or rootful, got "rootles"' --context=. --builder_mode=rootles
expect 2 "--network must be none or host" --context . --network bridge
expect 2 "--build_arg needs K=V" --context . --build_arg=NOEQUALS
expect 2 "--secret needs id=X,src=FILE" --context . --secret id=a,src="$t/missing"
expect 2 "--secret needs id=X,src=FILE" --context . --secret=src=x
expect 2 "unexpected argument stray" --context . stray
out=$("$bin" --work-dir=x 2>&1); rc=$?
[[ $rc -ne 0 && "$out" == *work-dir* ]] || { echo "FAIL: unknown flag: exit $rc: $out"; fail=1; }
out=$("$bin" --help 2>&1)
for f in context context_tar file secret build_arg target network preload tag out work_dir \
         secret_dir deadline_ms no_cache builder_mode make_busybox_image; do
  [[ "$out" == *"--$f "* ]] || { echo "FAIL: --help does not list --$f"; fail=1; }
done
if [[ -x /bin/busybox ]]; then
  out=$("$bin" --make_busybox_image "$t/bb.tar" 2>&1); rc=$?
  [[ $rc -eq 0 && "$out" == *"wrote $t/bb.tar (kiln-busybox:1"* ]] || { echo "FAIL: busybox image: $rc $out"; fail=1; }
  tar -tf "$t/bb.tar" | grep -qx manifest.json || { echo "FAIL: no manifest.json in bb.tar"; fail=1; }
else
  echo "SKIP: --make_busybox_image (no /bin/busybox)"
fi
[[ $fail -eq 0 ]] && echo PASS
exit $fail
