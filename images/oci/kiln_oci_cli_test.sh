#!/usr/bin/env bash
# kiln_oci_cli_test: the kiln-oci binary's flags (absl): repeatable flags keep every occurrence
# in order with commas intact, --flag=value and --flag value alike; a missing --out/--layer and
# a --label without '=' exit 2 naming the problem; an unknown flag is refused and named;
# --help lists the flags. Args: the kiln-oci binary.
set -uo pipefail
bin="$1"
t="$TEST_TMPDIR"
fail=0
mkdir -p "$t/r/etc" && echo hi >"$t/r/etc/a" && tar --format=ustar -cf "$t/l.tar" -C "$t/r" etc

out=$("$bin" --out="$t/img" --layer "$t/l.tar=base" --env=A=1,2 --env B=3 --cmd=sh --cmd "echo a,b" \
  --label=k=v,w --ref_name=latest --digest_out="$t/d" 2>&1)
rc=$?
if [[ $rc -ne 0 ]]; then echo "FAIL: a valid call exited $rc: $out"; fail=1; fi
m=$(jq -r '.manifests[0].digest' "$t/img/index.json")
[[ "$(cat "$t/d")" == "$m" ]] || { echo "FAIL: --digest_out has $(cat "$t/d"), index $m"; fail=1; }
[[ "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$t/img/index.json")" == latest ]] ||
  { echo "FAIL: --ref_name not in index.json"; fail=1; }
c=$(jq -r '.config.digest' "$t/img/blobs/sha256/${m#sha256:}")
cfg="$t/img/blobs/sha256/${c#sha256:}"
[[ "$(jq -c '.config.Env' "$cfg")" == '["A=1,2","B=3"]' ]] || { echo "FAIL: Env $(jq -c '.config.Env' "$cfg")"; fail=1; }
[[ "$(jq -c '.config.Cmd' "$cfg")" == '["sh","echo a,b"]' ]] || { echo "FAIL: Cmd $(jq -c '.config.Cmd' "$cfg")"; fail=1; }
[[ "$(jq -r '.config.Labels.k' "$cfg")" == 'v,w' ]] || { echo "FAIL: Labels $(jq -c '.config.Labels' "$cfg")"; fail=1; }

out=$("$bin" --layer "$t/l.tar" 2>&1); rc=$?
[[ $rc -eq 2 && "$out" == *"--out and at least one --layer are required"* ]] ||
  { echo "FAIL: no --out: exit $rc: $out"; fail=1; }
out=$("$bin" --out "$t/x" --layer "$t/l.tar" --label nokv 2>&1); rc=$?
[[ $rc -eq 2 && "$out" == *"--label=nokv: want KEY=value"* ]] ||
  { echo "FAIL: --label nokv: exit $rc: $out"; fail=1; }
out=$("$bin" --out "$t/y" --layer "$t/l.tar" --gzip_level=0 2>&1); rc=$?
[[ $rc -eq 2 && "$out" == *gzip* ]] || { echo "FAIL: --gzip_level=0: exit $rc: $out"; fail=1; }
out=$("$bin" --out "$t/z" --layer "$t/l.tar" stray 2>&1); rc=$?
[[ $rc -eq 2 && "$out" == *"unexpected argument stray"* ]] || { echo "FAIL: positional: exit $rc: $out"; fail=1; }
out=$("$bin" --ref-name=latest 2>&1); rc=$?
[[ $rc -ne 0 && "$out" == *ref-name* ]] || { echo "FAIL: unknown flag: exit $rc: $out"; fail=1; }
out=$("$bin" --help 2>&1)
for f in out layer entrypoint cmd env label annotation workdir user created ref_name gzip_level digest_out; do
  [[ "$out" == *"--$f "* ]] || { echo "FAIL: --help does not list --$f"; fail=1; }
done
[[ $fail -eq 0 ]] && echo PASS
exit $fail
