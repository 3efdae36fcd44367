#!/usr/bin/env bash
# `make demo`: secretsync end to end with no cloud account and no cluster.
# Starts the in-repo Kubernetes API emulator, creates an encrypted file store, lets the controller
# turn a SecretRef into a Secret, then changes the value and shows the rotation.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
[ -n "${DEMO_DEBUG:-}" ] && trap 'cat "$WORK/controller.log" >&2; cleanup' EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
K() { kubectl --kubeconfig "$WORK/kubeconfig" "$@"; }

say "Starting the Kubernetes API emulator (loads crds/)"
"$BIN/kube-emulator" --kubeconfig "$WORK/kubeconfig" --crds crds > "$WORK/emulator.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$WORK/kubeconfig" ] && K get ns >/dev/null 2>&1 && break; sleep 0.2; done
K get crd

say "Creating an encrypted file store with one secret"
"$BIN/secretsync" store init --file "$WORK/store.json" --master-key-file "$WORK/master.key"
echo '{"username":"app","password":"s3cr3t/pw"}' | "$BIN/secretsync" store put --file "$WORK/store.json" --master-key-file "$WORK/master.key" /demo/db
"$BIN/secretsync" store list --file "$WORK/store.json" --master-key-file "$WORK/master.key"

say "Putting the store (ciphertext) in a ConfigMap and the master key in a Secret"
# (`kubectl create ... --dry-run=client -o yaml | kubectl apply` keeps to the JSON/YAML requests the emulator speaks.)
apply() { K apply --server-side --force-conflicts --validate=false -f "$@"; }
K create namespace demo --dry-run=client -o yaml | apply -
K -n demo create configmap team-secrets --from-file=store.json="$WORK/store.json" --dry-run=client -o yaml | apply -
KEY_ID=$(cut -d: -f2 "$WORK/master.key")
K -n demo create secret generic secretsync-master-key --from-file="$KEY_ID"="$WORK/master.key" --dry-run=client -o yaml | apply -
apply examples/quickstart/

say "Starting the controller"
export KUBECONFIG="$WORK/kubeconfig"
"$BIN/secretsync" controller --namespace demo --pod-namespace demo --log-format text --log-level ${DEMO_LOG_LEVEL:-info} \
  --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 2>"$WORK/controller.log" &
PIDS+=($!)
wait_for() { for _ in $(seq 150); do if eval "$1"; then return 0; fi; sleep 0.2; done; echo "timed out: $1" >&2; tail -20 "$WORK/controller.log" >&2; K -n demo get secretref -o yaml >&2; return 1; }
wait_for '[ "$(K -n demo get secretref db -o jsonpath="{.status.conditions[?(@.type==\"Ready\")].status}" 2>/dev/null)" = True ]'
K -n demo get secretref db -o custom-columns='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,REASON:.status.conditions[?(@.type=="Ready")].reason,TARGET:.status.targetName'
echo
echo "Secret db-credentials:"
for k in username password url; do
  printf '  %-9s %s\n' "$k:" "$(K -n demo get secret db-credentials -o jsonpath="{.data.$k}" | base64 -d)"
done

say "Rotating the password at the source"
echo '{"username":"app","password":"n3w-pa55"}' | "$BIN/secretsync" store put --file "$WORK/store.json" --master-key-file "$WORK/master.key" /demo/db
K -n demo create configmap team-secrets --from-file=store.json="$WORK/store.json" --dry-run=client -o yaml | apply -
wait_for '[ "$(K -n demo get secret db-credentials -o jsonpath="{.data.password}" | base64 -d)" = n3w-pa55 ]'
printf '  password: %s\n' "$(K -n demo get secret db-credentials -o jsonpath='{.data.password}' | base64 -d)"
echo
echo "Events of SecretRef db:"
wait_for '[ -n "$(K -n demo get events.events.k8s.io -o jsonpath="{.items[?(@.reason==\"Rotated\")].note}")" ]'
K -n demo get events.events.k8s.io -o custom-columns=REASON:.reason,NOTE:.note
say "Done: a SecretRef became a Secret, and a value change became one Rotated event."
