#!/usr/bin/env bash
# builder_oci_test: //images:builder is a valid OCI image layout (oci-image-tool validate), its
# entrypoint is the agent, every blob matches its digest, and an independent second build
# (:builder_twin) has the same manifest digest.
set -euo pipefail
layout="$1"
twin="$2"
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v oci-image-tool >/dev/null || fail "oci-image-tool missing (run tools/setup)"
oci-image-tool validate --type image --ref name=latest "$layout" || fail "oci-image-tool validate rejected $layout"

manifest=$(jq -r '.manifests[0].digest' "$layout/index.json")
[[ "$manifest" == sha256:* ]] || fail "index.json has no manifest digest"
for blob in "$layout"/blobs/sha256/*; do
  want=$(basename "$blob")
  got=$(sha256sum "$blob" | cut -d' ' -f1)
  [[ "$want" == "$got" ]] || fail "blob $want has sha256 $got"
done
config=$(jq -r '.config.digest' "$layout/blobs/sha256/${manifest#sha256:}")
entry=$(jq -c '.config.Entrypoint' "$layout/blobs/sha256/${config#sha256:}")
[[ "$entry" == '["/usr/local/bin/kiln-agent"]' ]] || fail "entrypoint is $entry"
layers=$(jq '.layers | length' "$layout/blobs/sha256/${manifest#sha256:}")
[[ "$layers" -eq 2 ]] || fail "want 2 layers, got $layers"

twin_manifest=$(jq -r '.manifests[0].digest' "$twin/index.json")
[[ "$manifest" == "$twin_manifest" ]] || fail "two builds differ: $manifest vs $twin_manifest"
echo "PASS: $manifest ($layers layers), valid, reproducible"
