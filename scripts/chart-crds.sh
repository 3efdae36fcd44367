#!/usr/bin/env bash
# Writes the Helm chart's copies of the generated CRDs: charts/secretsync/crds/<name>.yaml is crds/<name>.yaml
# with the annotation `helm.sh/resource-policy: keep` added under `metadata:` (so `helm uninstall` never
# deletes the CRDs and, with them, every SecretRef and the Secrets they own). Everything else stays
# byte-identical; tests/crds.rs checks that. Run by `make crds`; `chart-crds.sh DIR` writes to DIR instead
# (chart-lint compares).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=crds
DEST=${1:-charts/secretsync/crds}
mkdir -p "$DEST"
rm -f "$DEST"/*.yaml
for f in "$SRC"/*.yaml; do
  grep -q '^metadata:$' "$f" || { echo "$f: no top-level 'metadata:' line" >&2; exit 1; }
  if grep -q '^  annotations:' "$f"; then
    echo "$f already has metadata annotations; extend scripts/chart-crds.sh" >&2
    exit 1
  fi
  awk '{ print } /^metadata:$/ && !done { print "  annotations:"; print "    helm.sh/resource-policy: keep"; done = 1 }' \
    "$f" > "$DEST/$(basename "$f")"
done
