#!/bin/bash
# cgroup_check_test: cgroup-check's KILN-CHECK output for a rw, ro and missing cgroup2 mount,
# with a fake runc (success, and the "no cgroup mount found" failure), and its error paths.
set -uo pipefail
dir=$(dirname "$0")
[[ -f "$dir/cgroup-check.sh" ]] || dir=images/rootfs
check=$dir/cgroup-check.sh
td=$dir/testdata
failures=0
pass() { echo "PASS: $1"; }
failt() { echo "FAIL: $1"; failures=$((failures + 1)); }
expect_has() {  # NAME OUTPUT LINE
  if grep -qxF -- "$3" <<< "$2"; then pass "$1"; else failt "$1"; echo "  missing line: $3"; echo "$2" | sed 's/^/  | /'; fi
}

tmp=${TEST_TMPDIR:-$(mktemp -d)}
bundle=$tmp/bundle
mkdir -p "$bundle" && echo '{}' > "$bundle/config.json"

# fake runc: "run" behaves as FAKE_RUNC_MODE says; records its arguments.
cat > "$tmp/runc" <<'FAKE'
#!/bin/sh
case "$1" in
  --version) echo "runc version 1.1.5+fake"; exit 0 ;;
  delete) exit 0 ;;
  run) echo "$*" > "$FAKE_RUNC_ARGS"
       case "$FAKE_RUNC_MODE" in
         ok) echo "0::/kiln-check"; exit 0 ;;
         nocgroup) echo 'time="2026-01-01T00:00:00Z" level=error msg="runc run failed: no cgroup mount found in mountinfo"' >&2; exit 1 ;;
         hang) sleep 30; exit 0 ;;
       esac ;;
esac
exit 3
FAKE
chmod +x "$tmp/runc"
# A fake cgroup mount point (the host's /sys/fs/cgroup is not the VM's).
cg=$tmp/cgroup
mkdir -p "$cg"
export KILN_RUNC=$tmp/runc KILN_BUNDLE=$bundle FAKE_RUNC_ARGS=$tmp/args TMPDIR=$tmp KILN_CGROUP_DIR=$cg

out=$(KILN_MOUNTINFO=$td/mountinfo.rw FAKE_RUNC_MODE=ok "$check" 2>&1); rc=$?
expect_has "rw: mountinfo line" "$out" "KILN-CHECK cgroup.mountinfo $(grep ' /sys/fs/cgroup ' "$td/mountinfo.rw")"
expect_has "rw: fstype" "$out" "KILN-CHECK cgroup.fstype cgroup2"
expect_has "rw: mode" "$out" "KILN-CHECK cgroup.mode rw"
expect_has "rw: runc version" "$out" "KILN-CHECK runc.version runc version 1.1.5+fake"
expect_has "rw: runc exit 0" "$out" "KILN-CHECK runc.exit 0"
expect_has "rw: container stdout" "$out" "KILN-CHECK runc.stdout 0::/kiln-check"
expect_has "rw: one stdout line" "$out" "KILN-CHECK runc.stdout.lines 1"
expect_has "rw: no stderr" "$out" "KILN-CHECK runc.stderr.lines 0"
expect_has "rw: done" "$out" "KILN-CHECK done status=0"
[[ $rc -eq 0 ]] && pass "rw: exit 0" || failt "rw: exit 0 (got $rc)"
[[ "$(cat "$tmp/args")" == "run --bundle $bundle kiln-check" ]] && pass "runc arguments" || failt "runc arguments: $(cat "$tmp/args")"

out=$(KILN_MOUNTINFO=$td/mountinfo.ro FAKE_RUNC_MODE=ok "$check" my-id 2>&1); rc=$?
expect_has "ro: mode" "$out" "KILN-CHECK cgroup.mode ro"
[[ "$(cat "$tmp/args")" == "run --bundle $bundle my-id" ]] && pass "container id argument" || failt "container id argument: $(cat "$tmp/args")"

out=$(KILN_MOUNTINFO=$td/mountinfo.none FAKE_RUNC_MODE=nocgroup "$check" 2>&1); rc=$?
expect_has "none: mountinfo" "$out" "KILN-CHECK cgroup.mountinfo none"
expect_has "none: mode" "$out" "KILN-CHECK cgroup.mode none"
expect_has "none: runc exit 1" "$out" "KILN-CHECK runc.exit 1"
expect_has "none: the famous error" "$out" 'KILN-CHECK runc.stderr time="2026-01-01T00:00:00Z" level=error msg="runc run failed: no cgroup mount found in mountinfo"'
expect_has "none: no stdout" "$out" "KILN-CHECK runc.stdout.lines 0"
[[ $rc -eq 0 ]] && pass "none: still exit 0 (checks ran)" || failt "none: exit 0 (got $rc)"

# No cgroup files, no delegated subtree.
out=$(KILN_MOUNTINFO=$td/mountinfo.rw FAKE_RUNC_MODE=ok "$check" 2>&1); rc=$?
expect_has "no cgroupfs: subtree_control none" "$out" "KILN-CHECK cgroup.subtree_control none"
expect_has "no cgroupfs: no delegated dir" "$out" "KILN-CHECK delegate.dir none"
grep -q '^KILN-CHECK dev.tun ' <<< "$out" && pass "dev.tun line" || failt "dev.tun line"

# The root's subtree_control and a kiln-builder owned by root: reported, the probe skipped.
printf 'cpuset cpu io memory pids\n' > "$cg/cgroup.subtree_control"
mkdir -m 755 "$cg/kiln-builder"
touch "$cg/kiln-builder/cgroup.procs" "$cg/kiln-builder/cgroup.subtree_control"
me="$(id -u):$(id -g)"
out=$(KILN_MOUNTINFO=$td/mountinfo.rw FAKE_RUNC_MODE=ok "$check" 2>&1); rc=$?
expect_has "delegated: root subtree_control" "$out" "KILN-CHECK cgroup.subtree_control cpuset cpu io memory pids"
expect_has "delegated: dir owner and mode" "$out" "KILN-CHECK delegate.dir $me 755"
expect_has "delegated: cgroup.procs owner" "$out" "KILN-CHECK delegate.file cgroup.procs $me"
expect_has "delegated: missing cgroup.threads" "$out" "KILN-CHECK delegate.file cgroup.threads missing"
if [[ $(id -u) == 0 ]]; then
  expect_has "delegated: probe skipped for root" "$out" "KILN-CHECK delegate.probe skipped owned-by-root"
else
  echo "SKIP: probe-skipped-for-root case needs uid 0 (running as $(id -u))"
fi
expect_has "delegated: runc still runs" "$out" "KILN-CHECK runc.exit 0"
: > "$cg/cgroup.subtree_control"
out=$(KILN_MOUNTINFO=$td/mountinfo.rw FAKE_RUNC_MODE=ok "$check" 2>&1)
expect_has "empty subtree_control" "$out" "KILN-CHECK cgroup.subtree_control (empty)"
rm -rf "$cg/kiln-builder" "$cg/cgroup.subtree_control"

out=$(KILN_MOUNTINFO=$td/mountinfo.rw FAKE_RUNC_MODE=hang KILN_CHECK_TIMEOUT=1 "$check" 2>&1); rc=$?
expect_has "hang: timeout exit 124" "$out" "KILN-CHECK runc.exit 124"

out=$(KILN_MOUNTINFO=$td/mountinfo.rw KILN_RUNC=/nonexistent/runc "$check" 2>&1); rc=$?
expect_has "no runc: error line" "$out" "KILN-CHECK error runc not found: /nonexistent/runc"
[[ $rc -eq 1 ]] && pass "no runc: exit 1" || failt "no runc: exit 1 (got $rc)"

out=$(KILN_MOUNTINFO=$td/mountinfo.rw KILN_BUNDLE=$tmp/nobundle "$check" 2>&1); rc=$?
expect_has "no bundle: error line" "$out" "KILN-CHECK error no OCI bundle at $tmp/nobundle (config.json missing)"
[[ $rc -eq 1 ]] && pass "no bundle: exit 1" || failt "no bundle: exit 1 (got $rc)"

out=$(KILN_MOUNTINFO=$td/mountinfo.rw "$check" 'bad id/../x' 2>&1); rc=$?
expect_has "bad id: error line" "$out" "KILN-CHECK error bad container id: bad id/../x"
[[ $rc -eq 1 ]] && pass "bad id: exit 1" || failt "bad id: exit 1 (got $rc)"

out=$(KILN_MOUNTINFO=$tmp/missing "$check" 2>&1); rc=$?
expect_has "no mountinfo: error line" "$out" "KILN-CHECK error cannot read $tmp/missing"

out=$(KILN_MOUNTINFO=$td/mountinfo.rw "$check" a b 2>&1); rc=$?
[[ $rc -eq 1 ]] && pass "two arguments: exit 1" || failt "two arguments: exit 1 (got $rc)"

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
