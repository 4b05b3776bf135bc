#!/bin/bash
# The builder agent's flag errors: a --builder_mode other than rootless|rootful is a usage error
# (exit 2) that names the bad value, before the agent opens any channel; an unknown flag is one
# too (absl's parser exits 1 there). Runs the real static agent binary.
set -u
agent="$1"
fail=0
out=$("$agent" --builder_mode=rootles --channel=virtio-serial:none 2>&1); rc=$?
if [[ $rc -ne 2 ]]; then echo "FAIL: --builder_mode=rootles exited $rc, want 2: $out"; fail=1; fi
if [[ "$out" != *'--builder_mode must be rootless or rootful, got "rootles"'* ]]; then
  echo "FAIL: --builder_mode=rootles message: $out"; fail=1
fi
out=$("$agent" --builder_mode= --channel=virtio-serial:none 2>&1); rc=$?
if [[ $rc -ne 2 ]]; then echo "FAIL: empty --builder_mode exited $rc, want 2: $out"; fail=1; fi
out=$("$agent" --no_such_flag 2>&1); rc=$?
if [[ $rc -eq 0 ]]; then echo "FAIL: an unknown flag exited 0: $out"; fail=1; fi
if [[ "$out" != *no_such_flag* ]]; then echo "FAIL: unknown flag not named: $out"; fail=1; fi
out=$("$agent" --help 2>&1)
if [[ "$out" != *builder_mode* ]]; then echo "FAIL: --help does not list --builder_mode"; fail=1; fi
[[ $fail -eq 0 ]] && echo PASS
exit $fail
