#!/usr/bin/env bash
# publish_benchmark: kiln publish vs `skopeo copy` of the same OCI layout to Debian's
# docker-registry on loopback, in the same run, plus the bytes a re-push uploads after a
# one-layer change.
#
#   bazel run //publish:publish_benchmark -- [--rounds N] [--layers N] [--layer-mib N]
#
# Each round starts a fresh registry (temp storage, free port; not timed), then times, in
# alternating order, kiln (`publish_bin --registry ...`) and `skopeo copy oci:... docker://...`
# into two empty repositories. Layers are gzip tar of incompressible bytes (so skopeo copies
# them as is). Prints one line per sample (dimensions: tool, round, layers, MiB) and a summary
# with medians and the kiln/skopeo ratio; --json FILE also writes the summary as JSON.
set -euo pipefail

rounds=3 layers=4 layer_mib=16 json_out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --layer-mib) layer_mib=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "publish_benchmark: unknown argument $1" >&2; exit 2 ;;
  esac
done

r="${RUNFILES_DIR:-$0.runfiles}/kiln"
[[ -d "$r" ]] || r="$PWD"
publish="$r/publish/publish_bin"
make_layout="$r/publish/testing/make_layout"
for t in docker-registry skopeo python3; do
  command -v "$t" >/dev/null || { echo "publish_benchmark: $t not found (tools/setup)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/kiln-publish-bench.XXXXXX)
reg_pid=""
cleanup() {
  if [[ -n "$reg_pid" ]]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() {
  local dir="$work/reg-$1"
  port=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/config.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $dir/data}}
http: {addr: 127.0.0.1:$port}
YML
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0
    sleep 0.05
  done
  echo "publish_benchmark: registry did not start" >&2; cat "$dir/log" >&2; exit 1
}
stop_registry() { kill "$reg_pid"; wait "$reg_pid" 2>/dev/null || true; reg_pid=""; }
now() { date +%s.%N; }

bytes=$((layer_mib * 1024 * 1024))
"$make_layout" "$work/a" --layers "$layers" --layer-bytes "$bytes" --seed 7 --gzip 1 >/dev/null
"$make_layout" "$work/b" --layers "$layers" --layer-bytes "$bytes" --seed 7 --gzip 1 --change 1 >/dev/null
total=$(du -sb "$work/a/blobs" | cut -f1)
export SOURCE_DATE_EPOCH=0
common=(--source-commit benchmark --package-lock "$0" --json)

kiln_times=() skopeo_times=()
echo "# publish_benchmark: $layers layers x $layer_mib MiB (gzip), $rounds rounds, $(nproc) cores"
for i in $(seq "$rounds"); do
  start_registry "$i"
  order=(kiln skopeo); (( i % 2 == 0 )) && order=(skopeo kiln)
  for tool in "${order[@]}"; do
    t0=$(now)
    if [[ $tool == kiln ]]; then
      "$publish" --layout "$work/a" --version 1.0.0 --registry "127.0.0.1:$port/bench/kiln" \
        --lock "$work/lock-$i.json" "${common[@]}" >"$work/kiln-$i.json"
    else
      skopeo copy -q --dest-tls-verify=false "oci:$work/a:builder" \
        "docker://127.0.0.1:$port/bench/skopeo:1.0.0" >/dev/null
    fi
    t1=$(now)
    secs=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
    echo "sample tool=$tool round=$i layers=$layers layer_mib=$layer_mib seconds=$secs"
    if [[ $tool == kiln ]]; then kiln_times+=("$secs"); else skopeo_times+=("$secs"); fi
  done
  if [[ $i -eq 1 ]]; then
    # Re-push after a one-layer change (same registry, same repository).
    "$publish" --layout "$work/b" --version 1.1.0 --registry "127.0.0.1:$port/bench/kiln" \
      --lock "$work/lock-$i.json" "${common[@]}" >"$work/kiln-delta.json"
  fi
  stop_registry
done

python3 - "$work/kiln-delta.json" "$total" "$json_out" "${kiln_times[*]}" "${skopeo_times[*]}" \
    "$work/a" "$work/b" <<'PY'
import json, os, statistics, sys
delta = json.load(open(sys.argv[1]))
total = int(sys.argv[2])
kiln = [float(x) for x in sys.argv[4].split()]
skopeo = [float(x) for x in sys.argv[5].split()]
def blobs(layout):
    md = json.load(open(os.path.join(layout, "index.json")))["manifests"][0]["digest"]
    m = json.load(open(os.path.join(layout, "blobs/sha256", md[7:])))
    return {d["digest"]: d["size"] for d in m["layers"] + [m["config"]]}
a, b = blobs(sys.argv[6]), blobs(sys.argv[7])
changed = sum(s for d, s in b.items() if d not in a)
km, sm = statistics.median(kiln), statistics.median(skopeo)
out = {
    "image_bytes": total,
    "kiln_seconds_median": round(km, 3), "skopeo_seconds_median": round(sm, 3),
    "kiln_over_skopeo_ratio": round(km / sm, 3),
    "kiln_mib_per_s": round(total / km / 2**20, 1), "skopeo_mib_per_s": round(total / sm / 2**20, 1),
    "kiln_samples": kiln, "skopeo_samples": skopeo,
    "repush_one_layer_bytes_uploaded": delta["bytes_uploaded"],
    "repush_one_layer_bytes_skipped": delta["bytes_skipped"],
    "repush_changed_blob_bytes": changed,
}
print("summary " + " ".join(f"{k}={v}" for k, v in out.items() if not k.endswith("samples")))
if sys.argv[3]:
    json.dump(out, open(sys.argv[3], "w"), indent=2)
PY
