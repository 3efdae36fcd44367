#!/usr/bin/env bash
# `make lint-workflows`: lints .github/workflows offline and fails on any finding.
#   actionlint (syntax, expressions, action inputs, runner labels; the shell of every `run:` is checked
#   with ShellCheck) and zizmor --offline (security: template injection, credential persistence, excessive
#   permissions, unpinned actions, cache poisoning, ...). Also checks CHANGELOG.md's structure, which the
#   release workflow reads. The linters come from PyPI (scripts/lint-requirements.txt) into .venv-test.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-test
REQ=scripts/lint-requirements.txt
STAMP=$VENV/.lint-installed
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || ! cmp -s "$REQ" "$STAMP"; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$STAMP"
fi
export PATH="$PWD/$VENV/bin:$PATH"
fail=0

echo "== actionlint $(actionlint --version | head -1), $(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
actionlint -no-color -shellcheck "$VENV/bin/shellcheck" || fail=1

echo "== zizmor --offline .github/workflows .github/dependabot.yml ($(zizmor --version))"
zizmor --offline --no-progress --format plain .github/workflows .github/dependabot.yml || fail=1

echo "== CHANGELOG.md (Keep a Changelog, read by the release workflow)"
python3 scripts/changelog-section.py --check && python3 scripts/changelog-section.py Unreleased >/dev/null || fail=1

if [ "$fail" -ne 0 ]; then echo "lint-workflows: FAILED"; exit 1; fi
echo "lint-workflows: all checks passed"
