#!/bin/bash
# config_json_test: the checked-in OCI runtime config of the busybox bundle says what the cgroup
# scenarios rely on (no terminal, read-only rootfs "rootfs", prints /proc/self/cgroup, the
# cgroup mount), and is valid JSON.
set -uo pipefail
dir=$(dirname "$0")
[[ -f "$dir/bundle/config.json" ]] || dir=images/rootfs
cfg=$dir/bundle/config.json
python3 - "$cfg" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
fails = []
def want(name, cond):
    print(("PASS: " if cond else "FAIL: ") + name)
    if not cond: fails.append(name)
want("ociVersion 1.0.x", c.get("ociVersion", "").startswith("1.0."))
want("no terminal", c["process"]["terminal"] is False)
want("args print /proc/self/cgroup", c["process"]["args"] == ["/bin/cat", "/proc/self/cgroup"])
want("root is rootfs, read-only", c["root"] == {"path": "rootfs", "readonly": True})
want("cgroup mounted at /sys/fs/cgroup", any(m["destination"] == "/sys/fs/cgroup" for m in c["mounts"]))
want("proc mounted", any(m["destination"] == "/proc" and m["type"] == "proc" for m in c["mounts"]))
want("no cgroup namespace (the path shows /<id>)", all(n["type"] != "cgroup" for n in c["linux"]["namespaces"]))
sys.exit(1 if fails else 0)
PY
